//! Behaviour of `weir::policy::breaker` (seed task 15), on paused time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::error::BoxError;
use weir::policy::breaker::{Breaker, CircuitOpen, State, WindowKind, is_cancellation};

async fn fail(breaker: &Breaker) -> Result<(), BoxError> {
    breaker.call(|| async { Err::<(), BoxError>("down".into()) }).await
}

async fn succeed(breaker: &Breaker) -> Result<(), BoxError> {
    breaker.call(|| async { Ok::<(), BoxError>(()) }).await
}

fn seed_breaker() -> Breaker {
    Breaker::builder().name("payments").consecutive_failures(5).open_for(Duration::from_secs(30)).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn opens_after_five_failures_fails_fast_then_recovers_through_one_probe() {
    let breaker = seed_breaker();
    for _ in 0..4 {
        assert!(fail(&breaker).await.is_err());
    }
    assert_eq!(breaker.state(), State::Closed);
    assert!(fail(&breaker).await.is_err());
    assert_eq!(breaker.state(), State::Open);

    let calls = AtomicU32::new(0);
    let err = breaker
        .call(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<(), BoxError>(())
        })
        .await
        .unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().expect("fails fast with CircuitOpen");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the call did not run");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(open.to_string(), "circuit `payments` is open; next probe in 30s");

    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(succeed(&breaker).await.is_err(), "still open at 29 s");
    tokio::time::advance(Duration::from_secs(1)).await;
    succeed(&breaker).await.expect("the probe passes at 30 s");
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.metrics();
    assert_eq!((m.failures, m.successes, m.rejections, m.openings), (5, 1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_a_growing_duration() {
    let breaker = Breaker::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(10))
        .open_growth(2.0, Duration::from_secs(25))
        .build()
        .unwrap();
    let _ = fail(&breaker).await;
    for expected in [20, 25, 25] {
        tokio::time::advance(Duration::from_secs(10)).await;
        let _ = fail(&breaker).await; // the probe at the end of the open time fails
        assert_eq!(breaker.state(), State::Open);
        let err = succeed(&breaker).await.unwrap_err();
        let open = err.downcast_ref::<CircuitOpen>().unwrap();
        assert_eq!(open.retry_after(), Some(Duration::from_secs(expected)));
        tokio::time::advance(Duration::from_secs(expected - 10)).await;
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    let _ = fail(&breaker).await;
    let err = succeed(&breaker).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<CircuitOpen>().unwrap().retry_after(),
        Some(Duration::from_secs(10)),
        "growth resets on close"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count() {
    let breaker = seed_breaker();
    for _ in 0..3 {
        for _ in 0..4 {
            let _ = fail(&breaker).await;
        }
        succeed(&breaker).await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn only_the_permitted_probes_pass_under_concurrency() {
    let breaker = Breaker::builder()
        .consecutive_failures(1)
        .half_open_probes(3)
        .open_for(Duration::from_secs(1))
        .build()
        .unwrap();
    let _ = fail(&breaker).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let ran = Arc::new(AtomicU32::new(0));
    let (release, gate) = tokio::sync::watch::channel(false);
    let mut calls = Vec::new();
    for _ in 0..50 {
        let (breaker, ran, mut gate) = (breaker.clone(), ran.clone(), gate.clone());
        calls.push(tokio::spawn(async move {
            breaker
                .call(|| async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    Ok::<(), BoxError>(())
                })
                .await
        }));
    }
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 3, "exactly the 3 probes ran");
    release.send(true).unwrap();
    let mut rejected = 0;
    for call in calls {
        if call.await.unwrap().is_err() {
            rejected += 1;
        }
    }
    assert_eq!(rejected, 47);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_frees_its_slot_and_counts_nothing() {
    let breaker = Breaker::builder().consecutive_failures(1).open_for(Duration::from_secs(1)).build().unwrap();
    let _ = fail(&breaker).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = breaker.call(|| async {
        std::future::pending::<()>().await;
        Ok::<(), BoxError>(())
    });
    assert!(tokio::time::timeout(Duration::from_millis(10), probe).await.is_err(), "the probe was cancelled");
    assert_eq!(breaker.state(), State::HalfOpen);
    succeed(&breaker).await.expect("the slot was freed for the next probe");
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().ignored, 1);
}

#[tokio::test(start_paused = true)]
async fn results_of_calls_admitted_before_a_state_change_are_ignored() {
    let breaker = Breaker::builder().consecutive_failures(1).open_for(Duration::from_secs(1)).build().unwrap();
    let old = breaker.try_acquire().unwrap(); // admitted while closed
    let _ = fail(&breaker).await; // opens
    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = breaker.try_acquire().unwrap(); // half-open probe
    old.failure(); // late result of the old generation
    assert_eq!(breaker.state(), State::HalfOpen, "the stale failure did not reopen");
    probe.success();
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_over_a_count_window_opens_it() {
    let breaker =
        Breaker::builder().no_consecutive_threshold().failure_rate(0.5, WindowKind::Count(10), 10).build().unwrap();
    for i in 0..9 {
        let _ = if i % 2 == 0 { fail(&breaker).await } else { succeed(&breaker).await };
    }
    assert_eq!(breaker.state(), State::Closed, "9 calls are under the minimum");
    let _ = succeed(&breaker).await; // 10 calls, 5 failures: 50 %
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_over_a_time_window_forgets_old_calls() {
    let breaker = Breaker::builder()
        .no_consecutive_threshold()
        .failure_rate(0.5, WindowKind::Time(Duration::from_secs(10)), 4)
        .build()
        .unwrap();
    for _ in 0..3 {
        let _ = fail(&breaker).await;
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..3 {
        succeed(&breaker).await.unwrap();
    }
    let _ = fail(&breaker).await; // 4 calls in the window, 1 failure
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn force_open_and_reset_with_state_events_in_order() {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let breaker =
        Breaker::builder().on_state_change(move |c| seen.lock().unwrap().push((c.from, c.to))).build().unwrap();
    breaker.force_open();
    let err = succeed(&breaker).await.unwrap_err();
    assert_eq!(err.downcast_ref::<CircuitOpen>().unwrap().retry_after(), None);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(succeed(&breaker).await.is_err(), "forced open stays open");
    breaker.reset();
    succeed(&breaker).await.unwrap();
    assert_eq!(*changes.lock().unwrap(), [(State::Closed, State::ForcedOpen), (State::ForcedOpen, State::Closed)]);
}

#[tokio::test(start_paused = true)]
async fn classified_errors_and_cancellations_do_not_trip_it() {
    let breaker = Breaker::builder().consecutive_failures(1).build().unwrap();
    let not_found = breaker.call_if(|| async { Err::<(), BoxError>("404".into()) }, |e| e.to_string() != "404").await;
    assert!(not_found.is_err());
    let cancelled = weir::error::Cancelled::clone(&cancelled_error());
    let r = breaker.call_if(|| async { Err::<(), BoxError>(Box::new(cancelled)) }, |e| !is_cancellation(&**e)).await;
    assert!(r.is_err());
    assert_eq!(breaker.state(), State::Closed);
}

fn cancelled_error() -> weir::error::Cancelled {
    // The only public way to get one: a group cancelled before its task ran.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    std::thread::spawn(move || {
        rt.block_on(async {
            let group: weir::group::Group<BoxError> = weir::group::Group::new();
            group.cancel();
            group.spawn(async { Ok(()) }).await;
            let err = group.wait().await.unwrap_err();
            err.downcast_ref::<weir::error::Cancelled>().unwrap().clone()
        })
    })
    .join()
    .unwrap()
}

#[test]
fn bad_settings_are_configuration_errors() {
    assert_eq!(
        Breaker::builder().consecutive_failures(0).build().unwrap_err().setting(),
        "breaker consecutive_failures"
    );
    assert_eq!(Breaker::builder().no_consecutive_threshold().build().unwrap_err().setting(), "breaker thresholds");
    let rate = Breaker::builder().failure_rate(1.5, WindowKind::Count(10), 1).build().unwrap_err();
    assert!(rate.to_string().contains("(0, 1]"), "{rate}");
    assert!(Breaker::builder().half_open_probes(0).build().is_err());
    assert!(Breaker::builder().open_growth(0.5, Duration::from_secs(1)).build().is_err());
    // Each bound, just inside and just outside.
    let rate = |r: f64| Breaker::builder().failure_rate(r, WindowKind::Count(10), 1).build();
    assert!(rate(0.0).is_err() && rate(1.0).is_ok() && rate(1.0001).is_err());
    assert!(Breaker::builder().successes_to_close(0).build().is_err());
    assert!(Breaker::builder().half_open_probes(60_000).successes_to_close(1).build().is_ok());
    assert!(Breaker::builder().half_open_probes(60_001).successes_to_close(1).build().is_err());
    assert!(Breaker::builder().successes_to_close(16_000).build().is_ok());
    assert!(Breaker::builder().successes_to_close(16_001).build().is_err());
    let builder = Breaker::builder().name("inventory");
    assert!(format!("{builder:?}").contains("inventory"), "{builder:?}");
}

/// Opening clears the failure-rate window: the failures that opened the
/// breaker do not count again once it has closed.
#[tokio::test(start_paused = true)]
async fn the_rate_window_starts_empty_after_recovery() {
    let breaker = Breaker::builder()
        .no_consecutive_threshold()
        .failure_rate(0.5, WindowKind::Count(4), 4)
        .open_for(Duration::from_secs(1))
        .build()
        .unwrap();
    for _ in 0..4 {
        let _ = fail(&breaker).await;
    }
    assert_eq!(breaker.state(), State::Open);
    let open = succeed(&breaker).await.unwrap_err();
    assert_eq!(open.downcast_ref::<CircuitOpen>().unwrap().breaker(), "breaker");
    tokio::time::advance(Duration::from_secs(1)).await;
    succeed(&breaker).await.unwrap(); // the probe closes it
    succeed(&breaker).await.unwrap();
    let _ = fail(&breaker).await;
    assert_eq!(breaker.state(), State::Closed, "2 calls since recovery, under the 4-call minimum");
}

/// Seed task 15 wired into a pipeline stage: the breaker opens after 5
/// failures, later items fail fast without calling the dependency, and
/// after 30 s a probe closes it again.
#[tokio::test(start_paused = true)]
async fn in_a_pipeline_stage_it_opens_fails_fast_and_recovers() {
    use weir::pipeline::{OnError, Pipeline, Stage};
    let breaker = seed_breaker();
    let calls = Arc::new(AtomicU32::new(0));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stage = |breaker: &Breaker| {
        let (calls, healthy) = (calls.clone(), healthy.clone());
        Stage::try_map("charge", move |n: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            let ok = healthy.load(Ordering::SeqCst);
            async move { if ok { Ok(n) } else { Err("provider down") } }
        })
        .breaker(breaker.clone())
        .on_error(OnError::Collect)
    };
    let err = Pipeline::from_iter(0..20u32).stage(stage(&breaker)).collect().await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 5, "after 5 failures the provider is not called");
    let failures = err.collected().unwrap();
    assert_eq!(failures.len(), 20);
    assert_eq!(failures.errors().filter(|e| e.cause().is::<CircuitOpen>()).count(), 15, "15 failed fast");
    assert_eq!(breaker.state(), State::Open);

    healthy.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(30)).await;
    let (out, _) = Pipeline::from_iter(0..20u32).stage(stage(&breaker)).collect().await.unwrap();
    assert_eq!(out.len(), 20, "the probe closed the breaker and everything passed");
    assert_eq!(breaker.state(), State::Closed);
}

/// With `successes_to_close(2)`, one good probe is not enough: the breaker
/// stays half-open, admits a second probe, and closes on its success.
#[tokio::test(start_paused = true)]
async fn it_closes_only_after_the_required_probe_successes() {
    let breaker = Breaker::builder()
        .consecutive_failures(1)
        .open_for(Duration::from_secs(1))
        .half_open_probes(1)
        .successes_to_close(2)
        .build()
        .unwrap();
    let _ = fail(&breaker).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen, "one of two successes");
    succeed(&breaker).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

/// Results of calls admitted before a reset do not count in the new
/// failure-rate window.
#[tokio::test(start_paused = true)]
async fn stale_results_stay_out_of_the_rate_window() {
    let breaker =
        Breaker::builder().no_consecutive_threshold().failure_rate(0.5, WindowKind::Count(8), 4).build().unwrap();
    let stale: Vec<_> = (0..4).map(|_| breaker.try_acquire().unwrap()).collect();
    breaker.force_open();
    breaker.reset();
    for permit in stale {
        permit.failure();
    }
    let _ = fail(&breaker).await;
    assert_eq!(breaker.state(), State::Closed, "one counted failure is under the 4-call minimum");
    assert_eq!(breaker.metrics().openings, 0);
}

/// The owned permit (what the tower layer holds across `poll_ready` and
/// `call`) reports like the borrowed one; dropped without a report, it
/// counts nothing and frees its probe slot.
#[tokio::test(start_paused = true)]
async fn owned_permits_report_and_a_dropped_one_counts_nothing() {
    let breaker = Breaker::builder()
        .name("owned")
        .consecutive_failures(2)
        .open_for(Duration::from_secs(1))
        .half_open_probes(1)
        .build()
        .unwrap();
    breaker.try_acquire_owned().unwrap().failure();
    assert_eq!(breaker.metrics().failures, 1);
    breaker.try_acquire_owned().unwrap().success();
    breaker.try_acquire_owned().unwrap().failure();
    assert_eq!(breaker.state(), State::Closed, "the success reset the consecutive count");
    breaker.try_acquire_owned().unwrap().failure();
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    drop(breaker.try_acquire_owned().unwrap()); // a probe abandoned
    let probe = breaker.try_acquire_owned().expect("the dropped probe freed its slot");
    assert!(breaker.try_acquire_owned().is_err(), "one probe at a time");
    probe.success();
    assert_eq!(breaker.state(), State::Closed);
    let m = breaker.metrics();
    assert_eq!((m.successes, m.failures, m.ignored), (2, 3, 1));
}

#[tokio::test(start_paused = true)]
async fn it_names_itself_and_tells_cancellation_from_failure() {
    let breaker = Breaker::builder().name("payments").build().unwrap();
    assert_eq!(breaker.name(), "payments");
    let debug = format!("{breaker:?}");
    assert!(debug.contains("payments") && debug.contains("Closed"), "{debug}");
    let permit = breaker.try_acquire_owned().unwrap();
    assert!(format!("{permit:?}").contains("payments"), "{permit:?}");
    permit.success();
    let io = std::io::Error::other("connection reset");
    assert!(!is_cancellation(&io), "an ordinary failure is not a cancellation");
    assert!(is_cancellation(&cancelled_error()));
}
