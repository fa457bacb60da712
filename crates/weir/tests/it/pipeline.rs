//! Behaviour of `weir::pipeline`: seed tasks 1, 2, 4–10, 13 and bonus 3, 5.

use crate::support::{alive_tasks, settle};

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use weir::error::Panicked;
use weir::error::{BoxError, DeadlineExceeded, Skip, StageError, TimedOut, find, is};
use weir::pipeline::{DeadLetter, DeadLetterSink, OnError, Pipeline, Stage};
use weir::policy::retry::{Jitter, RetryPolicy};

#[derive(Debug, thiserror::Error)]
#[error("negative number {0}")]
struct Negative(i64);

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .initial_delay(Duration::from_millis(10))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

#[tokio::test]
async fn sum_of_one_to_five_is_fifteen() {
    let (sum, report) = Pipeline::from_iter(vec![1, 2, 3, 4, 5]).fold(0, |s, n| s + n).await.unwrap();
    assert_eq!(sum, 15);
    assert_eq!((report.source_emitted, report.sink_received), (5, 5));
    assert!(report.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_number_stops_the_producer_and_is_found_through_the_chain() {
    let err = Pipeline::builder()
        .capacity(8)
        .from_iter((0..1_000_000i64).map(|n| if n == 10 { -1 } else { n }))
        .stage(Stage::try_map("check", |n: i64| async move { if n < 0 { Err(Negative(n)) } else { Ok(n) } }))
        .fold(0i64, |s, n| s + n)
        .await
        .unwrap_err();
    assert_eq!(find::<Negative>(&err).map(|n| n.0), Some(-1));
    let stage = err.stage_error().expect("a stage failure");
    assert_eq!((stage.stage(), stage.item().index()), ("check", Some(10)));
    assert!(err.report().source_emitted < 1000, "the producer stopped early: {}", err.report().source_emitted);
}

/// Seed task 4: 1000 items, stage 2 fails on item 500; the error reaches
/// the caller and no task is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_item_500_drains_every_task() {
    let before = alive_tasks();
    let err = Pipeline::from_iter(0..1000u32)
        .map("produce", |n| async move { n })
        .stage(Stage::try_map("fail at 500", |n: u32| async move { if n == 500 { Err("bad item") } else { Ok(n) } }))
        .for_each(|_| async { Ok::<(), BoxError>(()) })
        .await
        .unwrap_err();
    assert_eq!(err.stage_error().unwrap().item().index(), Some(500));
    assert_eq!(err.report().stage("fail at 500").unwrap().failed, 1);
    settle(|| alive_tasks() == before).await;
    assert_eq!(alive_tasks(), before);
}

/// Seed task 5: every item fails twice, then succeeds.
#[tokio::test(start_paused = true)]
async fn items_that_fail_twice_succeed_on_the_third_attempt() {
    let attempts: Arc<Mutex<std::collections::HashMap<u32, u32>>> = Arc::default();
    let seen = attempts.clone();
    let (out, report) = Pipeline::from_iter(0..20u32)
        .stage(
            Stage::try_map("flaky", move |n: u32| {
                let seen = seen.clone();
                async move {
                    let mut seen = seen.lock().unwrap();
                    let count = seen.entry(n).or_insert(0);
                    *count += 1;
                    if *count <= 2 { Err("transient") } else { Ok(n) }
                }
            })
            .retry(fast_retry(3)),
        )
        .collect()
        .await
        .unwrap();
    assert_eq!(out, (0..20).collect::<Vec<_>>());
    let stage = report.stage("flaky").unwrap();
    assert_eq!((stage.emitted, stage.retries), (20, 40));
    assert!(attempts.lock().unwrap().values().all(|&n| n == 3));
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_fail_with_the_attempt_count() {
    let err = Pipeline::from_iter([1u8])
        .stage(Stage::try_map("always", |_: u8| async { Err::<u8, _>("down") }).retry(fast_retry(3)))
        .collect()
        .await
        .unwrap_err();
    let stage = err.stage_error().unwrap();
    assert_eq!(stage.attempt(), 3);
    assert_eq!(err.report().stage("always").unwrap().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_and_panics_are_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let err = Pipeline::from_iter([1u8])
        .stage(
            Stage::try_map("permanent", move |_: u8| {
                c.fetch_add(1, Ordering::SeqCst);
                async { Err::<u8, _>(weir::error::Permanent::new("bad request")) }
            })
            .retry(fast_retry(5)),
        )
        .collect()
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(err.stage_error().unwrap().attempt(), 1);
}

/// Seed task 6: empty strings are skipped, never a failure.
#[tokio::test]
async fn empty_items_are_skipped_and_counted() {
    let lines = ["a", "", "b", "", "", "c"].map(String::from);
    let (out, report) = Pipeline::from_iter(lines)
        .stage(Stage::try_map("non-empty", |s: String| async move { if s.is_empty() { Err(Skip) } else { Ok(s) } }))
        .map("upper", |s: String| async move { s.to_uppercase() })
        .collect()
        .await
        .unwrap();
    assert_eq!(out, ["A", "B", "C"]);
    let stage = report.stage("non-empty").unwrap();
    assert_eq!((stage.received, stage.emitted, stage.skipped, stage.failed), (6, 3, 3, 0));
    assert!(report.is_balanced());
}

/// Seed task 7: a stage fans out to 4 workers; ordered output keeps the
/// input order even when items finish out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_four_ordered_workers_keeps_input_order() {
    let (out, report) = Pipeline::builder()
        .capacity(4)
        .from_iter(0..500u64)
        .stage(
            Stage::map("slow square", |n: u64| async move {
                tokio::time::sleep(Duration::from_micros((n * 7919) % 300)).await;
                n * n
            })
            .workers(4)
            .ordered(),
        )
        .collect()
        .await
        .unwrap();
    assert_eq!(out, (0..500u64).map(|n| n * n).collect::<Vec<_>>());
    assert_eq!(report.stage("slow square").unwrap().workers, 4);
    assert!(report.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_fan_out_delivers_every_item() {
    let (mut out, report) = Pipeline::from_iter(0..10_000u64)
        .stage(Stage::map("id", |n: u64| async move { n }).workers(4))
        .collect()
        .await
        .unwrap();
    out.sort_unstable();
    assert_eq!(out, (0..10_000).collect::<Vec<_>>());
    assert!(report.is_balanced());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_fails_the_fanned_out_stage() {
    let err = Pipeline::from_iter(0..1000u32)
        .stage(
            Stage::try_map("fan", |n: u32| async move { if n == 777 { Err("worker failed") } else { Ok(n) } })
                .workers(4),
        )
        .collect()
        .await
        .unwrap_err();
    assert_eq!(err.stage_error().unwrap().item().index(), Some(777));
}

/// Seed task 8: every item is processed; every failure is returned.
#[tokio::test]
async fn collect_keeps_going_and_returns_every_failure() {
    let err = Pipeline::from_iter(0..100u32)
        .stage(
            Stage::try_map("validate", |n: u32| async move {
                if n % 10 == 3 { Err(format!("{n} is invalid")) } else { Ok(n) }
            })
            .on_error(OnError::Collect),
        )
        .collect()
        .await
        .unwrap_err();
    let all = err.collected().expect("collected errors");
    let mut indexes: Vec<u64> = all.errors().map(|e| e.item().index().unwrap()).collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [3, 13, 23, 33, 43, 53, 63, 73, 83, 93]);
    let stage = err.report().stage("validate").unwrap();
    assert_eq!((stage.received, stage.emitted, stage.failed), (100, 90, 10));
    assert!(err.report().is_balanced());
}

/// Seed task 9: parse, transform, store; the failing stage is named.
#[tokio::test]
async fn errors_name_the_stage_item_key_and_tenant() {
    let err = Pipeline::from_iter(["1", "2", "x3", "4"].map(String::from))
        .stage(Stage::try_map("parse", |s: String| async move { s.trim_start_matches('x').parse::<u32>() }))
        .stage(
            Stage::try_map("transform", |n: u32| async move {
                if n == 3 { Err(std::io::Error::other("overflow")) } else { Ok(n * 10) }
            })
            .key(|n| format!("order-{n}"))
            .tenant(|n| if n % 2 == 1 { "acme".into() } else { "globex".into() }),
        )
        .stage(Stage::try_map("store", |n: u32| async move { Ok::<u32, std::io::Error>(n) }))
        .collect()
        .await
        .unwrap_err();
    let stage = find::<StageError>(&err).expect("a StageError in the chain");
    assert_eq!(stage.stage(), "transform");
    assert_eq!(stage.item().key(), Some("order-3"));
    assert_eq!(stage.tenant(), Some("acme"));
    assert!(is::<std::io::Error>(&err));
    assert_eq!(
        err.to_string(),
        "pipeline failed: stage `transform` failed on item 2 (order-3) of tenant acme: overflow"
    );
}

/// Seed task 10: 100 items × 100 ms under a 5 s deadline.
#[tokio::test(start_paused = true)]
async fn ten_workers_beat_the_deadline_and_one_worker_misses_it() {
    async fn run(workers: usize) -> Result<weir::pipeline::Report, weir::pipeline::PipelineError> {
        Pipeline::builder()
            .timeout(Duration::from_secs(5))
            .from_iter(0..100u32)
            .stage(
                Stage::map("work", |n: u32| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    n
                })
                .workers(workers),
            )
            .for_each(|_| async { Ok::<(), BoxError>(()) })
            .await
    }
    let report = run(10).await.unwrap();
    assert_eq!(report.sink_received, 100);
    assert!(report.elapsed < Duration::from_secs(5), "{:?}", report.elapsed);
    let err = run(1).await.unwrap_err();
    assert!(err.is_deadline());
    assert!(is::<DeadlineExceeded>(&err));
    assert!(err.report().sink_received < 100);
}

/// Seed task 13: a panicking item is an error, never a crash.
#[tokio::test]
async fn a_panic_in_a_stage_fails_that_item_and_names_it() {
    let err = Pipeline::from_iter(0..10u32)
        .map("risky", |n: u32| async move {
            if n == 4 {
                panic!("cannot handle {n}");
            }
            n
        })
        .collect()
        .await
        .unwrap_err();
    let panic = find::<Panicked>(&err).expect("the panic in the chain");
    assert_eq!(panic.message(), "cannot handle 4");
    assert_eq!(err.stage_error().unwrap().item().index(), Some(4));
}

#[tokio::test]
async fn with_skip_a_panicking_item_is_skipped_and_the_rest_flows() {
    let (out, report) = Pipeline::from_iter(0..10u32)
        .stage(
            Stage::map("risky", |n: u32| async move {
                assert!(n != 4, "cannot handle {n}");
                n
            })
            .on_error(OnError::Skip),
        )
        .collect()
        .await
        .unwrap();
    assert_eq!(out.len(), 9);
    assert_eq!(report.stage("risky").unwrap().skipped, 1);
    assert!(report.is_balanced());
}

#[derive(Default)]
struct VecSink {
    items: Mutex<Vec<(u32, String)>>,
    fail: bool,
}

impl DeadLetterSink<u32> for VecSink {
    fn dead_letter(&self, letter: DeadLetter<u32>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            if self.fail {
                return Err("dead-letter store is down".into());
            }
            self.items.lock().unwrap().push((letter.item, letter.error.to_string()));
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn poison_items_go_to_the_dead_letter_sink_after_their_retries() {
    let sink = Arc::new(VecSink::default());
    let (out, report) = Pipeline::from_iter(0..50u32)
        .stage(
            Stage::try_map("charge", |n: u32| async move { if n.is_multiple_of(7) { Err("poison") } else { Ok(n) } })
                .retry(fast_retry(3))
                .dead_letter(sink.clone()),
        )
        .collect()
        .await
        .unwrap();
    let dead = sink.items.lock().unwrap().clone();
    assert_eq!(dead.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 7, 14, 21, 28, 35, 42, 49]);
    assert!(dead[1].1.contains("attempt 3"), "{}", dead[1].1);
    let stage = report.stage("charge").unwrap();
    assert_eq!((stage.emitted, stage.dead_lettered, stage.retries), (42, 8, 16));
    assert_eq!(out.len(), 42);
    assert!(report.is_balanced());
}

#[tokio::test]
async fn a_failing_dead_letter_sink_fails_the_run_naming_both_causes() {
    let sink = Arc::new(VecSink { fail: true, ..VecSink::default() });
    let err = Pipeline::from_iter([1u32])
        .stage(Stage::try_map("charge", |_: u32| async { Err::<u32, _>("poison") }).dead_letter(sink))
        .collect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("poison") && text.contains("dead-letter store is down"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_timeout_is_retried_then_fails_as_timed_out() {
    let err = Pipeline::from_iter([1u32])
        .stage(
            Stage::map("hang", |n: u32| async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                n
            })
            .timeout(Duration::from_millis(100))
            .retry(fast_retry(2)),
        )
        .collect()
        .await
        .unwrap_err();
    assert!(is::<TimedOut>(&err));
    assert_eq!(err.stage_error().unwrap().attempt(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_intake_and_finishes_what_is_inside() {
    let endless = futures_util::stream::iter(0u64..);
    let pipeline = Pipeline::builder().capacity(16).from_stream(endless).map("double", |n: u64| async move { n * 2 });
    let control = pipeline.control();
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    let report = pipeline
        .for_each(move |_| {
            if s.fetch_add(1, Ordering::SeqCst) == 1000 {
                control.drain();
            }
            async { Ok::<(), BoxError>(()) }
        })
        .await
        .unwrap();
    assert!(report.drained);
    assert!(report.is_balanced(), "every item taken reached the sink: {report}");
    assert!(report.sink_received > 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_stops_the_run_with_a_cancelled_error() {
    let before = alive_tasks();
    let pipeline = Pipeline::from_stream(futures_util::stream::iter(0u64..)).map("id", |n: u64| async move { n });
    let control = pipeline.control();
    let err = pipeline
        .for_each(move |n| {
            if n == 500 {
                control.abort();
            }
            async { Ok::<(), BoxError>(()) }
        })
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert!(!err.is_deadline());
    settle(|| alive_tasks() == before).await;
    assert_eq!(alive_tasks(), before);
}

/// The control tells why a run was cancelled: an abort with its reason, a
/// failed stage with its message, a deadline, a parent.
#[tokio::test(start_paused = true)]
async fn the_control_tells_why_the_run_was_cancelled() {
    use weir::group::CancelCause;

    let pipeline = Pipeline::from_stream(futures_util::stream::iter(0u64..)).map("id", |n: u64| async move { n });
    let control = pipeline.control();
    assert_eq!(control.cause(), None);
    let aborting = control.clone();
    let err = pipeline
        .for_each(move |n| {
            if n == 50 {
                aborting.abort_with("operator asked");
            }
            async { Ok::<(), BoxError>(()) }
        })
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(control.cause(), Some(CancelCause::Requested { reason: Some("operator asked".into()) }));

    let pipeline = Pipeline::from_iter(0..100u32)
        .stage(Stage::try_map("parse", |n: u32| async move { if n == 7 { Err("bad record 7") } else { Ok(n) } }));
    let control = pipeline.control();
    assert!(pipeline.collect().await.is_err());
    match control.cause() {
        Some(CancelCause::Failed { message, .. }) => assert!(message.contains("bad record 7"), "{message}"),
        other => panic!("{other:?}"),
    }

    let pipeline = Pipeline::builder()
        .timeout(Duration::from_millis(10))
        .from_stream(futures_util::stream::pending::<u32>())
        .map("id", |n: u32| async move { n });
    let control = pipeline.control();
    assert!(pipeline.collect().await.unwrap_err().is_deadline());
    assert!(matches!(control.cause(), Some(CancelCause::Deadline(_))), "{:?}", control.cause());

    let parent = tokio_util::sync::CancellationToken::new();
    let pipeline = Pipeline::builder()
        .parent(&parent)
        .from_stream(futures_util::stream::pending::<u32>())
        .map("id", |n: u32| async move { n });
    let control = pipeline.control();
    let run = tokio::spawn(pipeline.collect());
    tokio::task::yield_now().await;
    parent.cancel();
    assert!(run.await.unwrap().is_err());
    assert_eq!(control.cause(), Some(CancelCause::Parent));
}

#[tokio::test]
async fn a_sink_error_stops_the_run_and_is_returned() {
    let err = Pipeline::from_iter(0..1000u32)
        .for_each(|n| async move { if n == 10 { Err("disk full") } else { Ok(()) } })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "pipeline failed in the sink: disk full");
    assert_eq!(err.report().sink_received, 11);
}

#[tokio::test]
async fn the_output_is_a_stream() {
    let mut stream = Pipeline::from_iter(0..100u32).filter("even", |n| n % 2 == 0).into_stream().unwrap();
    let mut got = Vec::new();
    while let Some(n) = stream.next().await {
        got.push(n);
    }
    let report = stream.finish().await.unwrap();
    assert_eq!(got, (0..100).filter(|n| n % 2 == 0).collect::<Vec<_>>());
    assert_eq!(report.stage("even").unwrap().filtered, 50);
    assert!(report.is_balanced());
}

#[tokio::test]
async fn finishing_a_stream_early_reports_a_cancellation() {
    let mut stream = Pipeline::from_iter(0..100_000u32).into_stream().unwrap();
    assert_eq!(stream.next().await, Some(0));
    assert!(stream.finish().await.unwrap_err().is_cancelled());
}

#[tokio::test]
async fn bad_settings_are_reported_before_anything_runs() {
    let err = Pipeline::builder().capacity(0).from_iter([1]).collect().await.unwrap_err();
    assert_eq!(err.config_error().unwrap().setting(), "pipeline capacity");
    let err = Pipeline::from_iter([1])
        .stage(Stage::map("none", |n: i32| async move { n }).workers(0))
        .collect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stage `none`"), "{err}");
    // A zero per-attempt timeout would fail every item: refused before any
    // runs (before, every item failed with "timed out after 0ns").
    let err = Pipeline::from_iter([1])
        .stage(Stage::map("instant", |n: i32| async move { n }).timeout(Duration::ZERO))
        .collect()
        .await
        .unwrap_err();
    assert_eq!(err.config_error().map(|e| e.setting()), Some("stage timeout"), "{err}");
    assert!(err.to_string().contains("stage `instant`"), "{err}");
}

#[tokio::test]
async fn a_channel_can_feed_a_pipeline() {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for n in 0..10 {
            tx.send(n).await.unwrap();
        }
    });
    let (sum, _) = Pipeline::builder().from_receiver(rx).fold(0, |s, n| s + n).await.unwrap();
    assert_eq!(sum, 45);
}

/// Bonus 3: 1000 runs with random failures and panics; every run ends,
/// errors are never swallowed, counts add up, no task outlives its run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_1000_runs_with_injected_faults() {
    let before = alive_tasks();
    let mut rng = fastrand::Rng::with_seed(2026);
    let (mut ok, mut failed, mut collected) = (0, 0, 0);
    for _ in 0..1000 {
        let fail_at = rng.u32(0..400);
        let kind = rng.u8(0..4);
        let policy = if rng.bool() { OnError::Fail } else { OnError::Collect };
        let result = Pipeline::builder()
            .capacity(rng.usize(1..32))
            .from_iter(0..200u32)
            .stage(
                Stage::try_map("faulty", move |n: u32| async move {
                    tokio::task::yield_now().await;
                    match (n == fail_at, kind) {
                        (true, 0) => Err("injected"),
                        (true, 1) => panic!("injected panic"),
                        _ => Ok(n),
                    }
                })
                .workers(rng.usize(1..4))
                .on_error(policy),
            )
            .collect()
            .await;
        let injected = fail_at < 200 && kind < 2;
        match result {
            Ok((out, report)) => {
                assert!(!injected, "an injected fault was swallowed");
                assert_eq!(out.len(), 200);
                assert!(report.is_balanced());
                ok += 1;
            }
            Err(e) if e.collected().is_some() => {
                assert_eq!(e.collected().unwrap().len(), 1);
                assert!(e.report().is_balanced());
                collected += 1;
            }
            Err(e) => {
                assert_eq!(e.stage_error().unwrap().item().index(), Some(u64::from(fail_at)));
                failed += 1;
            }
        }
    }
    assert_eq!(ok + failed + collected, 1000);
    assert!(failed > 50 && collected > 50, "{ok} ok, {failed} failed, {collected} collected");
    settle(|| alive_tasks() == before).await;
    assert_eq!(alive_tasks(), before, "no task outlives its run");
}

/// A writer that keeps what a tracing subscriber writes, for assertions.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn tracing_shows_where_an_error_came_from() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let _ = Pipeline::from_iter([1u32, 2, 3])
        .stage(
            Stage::try_map("charge", |n: u32| async move { if n == 2 { Err("card declined") } else { Ok(n) } })
                .tenant(|_| "acme".into())
                .retry(fast_retry(2)),
        )
        .collect()
        .await
        .unwrap_err();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("retrying item") && log.contains("tenant=\"acme\"") && log.contains("attempt=1"), "{log}");
    assert!(
        log.contains("item failed; stopping the pipeline") && log.contains("stage{stage=charge worker=0}"),
        "{log}"
    );
}

/// Bonus 5 for pipelines: with every worker blocked inside a stage, the run
/// returns within 100 ms of an abort, and nothing is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_returns_within_100ms_with_every_worker_blocked() {
    let before = alive_tasks();
    let pipeline = Pipeline::from_iter(0..10_000u32).stage(
        Stage::map("stuck", |n: u32| async move {
            std::future::pending::<()>().await;
            n
        })
        .workers(16),
    );
    let control = pipeline.control();
    let run = tokio::spawn(pipeline.collect());
    tokio::time::sleep(Duration::from_millis(20)).await; // let the workers block
    let aborted_at = std::time::Instant::now();
    control.abort();
    let err = run.await.unwrap().unwrap_err();
    let took = aborted_at.elapsed();
    assert!(took < Duration::from_millis(100), "returned {took:?} after abort");
    assert!(err.is_cancelled());
    settle(|| alive_tasks() == before).await;
    assert_eq!(alive_tasks(), before);
}

/// A stage with several workers used to hold finished items until more
/// input came (a worker waiting for input held the shared input's lock,
/// so its siblings thought more was coming): with a source that goes
/// quiet and stays open (a broker, a channel), they never reached the
/// sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_items_reach_the_sink_while_the_source_is_quiet() {
    for workers in [1, 2, 4] {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let pipeline = Pipeline::builder()
            .from_receiver(rx)
            .stage(Stage::map("same", |n: u32| async move { n }).workers(workers))
            .stage(Stage::map("again", |n: u32| async move { n }).workers(workers));
        let run = tokio::spawn(pipeline.for_each(move |n| {
            let _ = seen_tx.send(n);
            async { Ok::<_, BoxError>(()) }
        }));
        for round in 0..5u32 {
            for n in 0..8 {
                tx.send(round * 8 + n).await.unwrap();
            }
            // The channel stays open: the source is quiet, not finished.
            for _ in 0..8 {
                let got = tokio::time::timeout(Duration::from_secs(5), seen.recv()).await;
                assert!(got.is_ok(), "{workers} worker(s), round {round}: a finished item never reached the sink");
            }
        }
        drop(tx);
        run.await.unwrap().unwrap();
    }
}

/// Items a stage finished are not held behind a later item whose call is
/// slow: the ones before it reach the next stage at once, so a failure
/// among them stops the run (and drops the slow call) without waiting for
/// it. Before, a worker kept them until its chunk filled, 30 s here.
#[tokio::test(start_paused = true)]
async fn a_slow_call_does_not_hold_back_the_items_finished_before_it() {
    // Without policies, and with one (the call then runs inside the policy
    // stack).
    for (workers, per_call_timeout) in [(1, None), (3, None), (1, Some(Duration::from_secs(3600)))] {
        // Passes items on at once, but waits 30 s on item `slow`.
        fn slow_at(
            slow: u32,
            workers: usize,
            per_call_timeout: Option<Duration>,
        ) -> Stage<u32, impl weir::pipeline::StageFn<u32, Output = u32>> {
            let stage = Stage::map("slow", move |n: u32| async move {
                if n == slow {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                n
            })
            .workers(workers);
            match per_call_timeout {
                Some(bound) => stage.timeout(bound),
                None => stage,
            }
        }

        let started = tokio::time::Instant::now();
        let arrived = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = arrived.clone();
        let (_, report) = Pipeline::builder()
            .capacity(16)
            .from_iter(0..10u32)
            .stage(slow_at(5, workers, per_call_timeout))
            .stage(Stage::map("arrive", move |n: u32| {
                seen.lock().unwrap().push((n, started.elapsed()));
                async move { n }
            }))
            .collect()
            .await
            .unwrap();
        assert_eq!(report.sink_received, 10);
        let arrived = arrived.lock().unwrap().clone();
        for (n, at) in arrived.iter().filter(|(n, _)| *n < 5) {
            assert!(*at < Duration::from_secs(1), "{workers} worker(s): item {n} waited {at:?} behind item 5");
        }

        // The same with a failure among them: the run stops at once.
        let started = tokio::time::Instant::now();
        let err = Pipeline::builder()
            .capacity(16)
            .from_iter(0..1000u32)
            .stage(slow_at(503, workers, per_call_timeout))
            .stage(Stage::try_map("fail at 500", |n: u32| async move { if n == 500 { Err("corrupt") } else { Ok(n) } }))
            .collect()
            .await
            .unwrap_err();
        assert_eq!(err.stage_error().and_then(|e| e.item().index()), Some(500));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{workers} worker(s): waited {:?} for the slow call",
            started.elapsed()
        );
    }
}
