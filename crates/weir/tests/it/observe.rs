//! Metrics through the `metrics` facade: what a pipeline, a saga engine
//! and the policies record, read back from a debugging recorder installed
//! for the test's thread; and the Prometheus endpoint serving them.
#![cfg(all(feature = "metrics", feature = "sqlite"))]

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use weir::durable::saga::{OnTimeout, SagaDefinition, SagaEngine, StepError};
use weir::durable::store::Store;
use weir::pipeline::{OnError, Pipeline, Stage};
use weir::policy::breaker::Breaker;
use weir::policy::bulkhead::Bulkhead;
use weir::policy::rate::RateLimiter;

/// What was recorded: `name{label=value,…}` (labels sorted) → value, with
/// a histogram as its number of samples.
fn recorded(recorder: &DebuggingRecorder) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in recorder.snapshotter().snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(samples) => samples.len() as f64,
        };
        out.insert(name, value);
    }
    out
}

/// Runs `work` on a one-thread runtime with `recorder` as the thread's
/// metrics recorder (every task of the runtime runs on this thread).
fn with_recorder<F: std::future::Future>(recorder: &DebuggingRecorder, work: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(recorder, || runtime.block_on(work))
}

/// A stage's items by outcome, its retries, its in-flight gauge back at
/// zero, and sampled item durations.
#[test]
fn a_stage_records_its_items_by_outcome() {
    let recorder = DebuggingRecorder::new();
    with_recorder(&recorder, async {
        let parse = Stage::try_map("metrics-parse", |s: &str| async move { s.parse::<u32>() }).on_error(OnError::Skip);
        let sum = Pipeline::from_iter(["1", "2", "three", "4"]).stage(parse).fold(0, |a, b| a + b).await.unwrap();
        assert_eq!(sum.0, 7);
    });
    let got = recorded(&recorder);
    let items = |outcome: &str| got.get(&format!("weir_stage_items_total{{outcome={outcome},stage=metrics-parse}}"));
    assert_eq!(
        (items("received"), items("emitted"), items("skipped")),
        (Some(&4.0), Some(&3.0), Some(&1.0)),
        "{got:?}"
    );
    assert_eq!(got.get("weir_stage_in_flight{stage=metrics-parse}"), Some(&0.0), "{got:?}");
    assert!(got.get("weir_stage_item_duration_seconds{stage=metrics-parse}").is_some_and(|n| *n >= 1.0), "{got:?}");
}

/// Sagas started and ended by status, step durations by outcome, and the
/// engine's in-flight gauge back at zero.
#[test]
fn a_saga_engine_records_starts_ends_and_steps() {
    let recorder = DebuggingRecorder::new();
    with_recorder(&recorder, async {
        let order = SagaDefinition::builder("metrics-order")
            .step("charge", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
            .step_without_compensation("ship", |ctx| async move {
                if ctx.input::<bool>()? { Ok(()) } else { Err(StepError::terminal("no courier")) }
            })
            .build()
            .unwrap();
        let engine = SagaEngine::builder(Store::memory()).definition(order).build().unwrap();
        engine.run_with_id("m-1", "metrics-order", &true).await.unwrap();
        assert!(engine.run_with_id("m-2", "metrics-order", &false).await.unwrap_err().is_compensated());
    });
    let got = recorded(&recorder);
    let get = |key: &str| got.get(key).copied();
    assert_eq!(get("weir_saga_started_total{definition=metrics-order}"), Some(2.0), "{got:?}");
    assert_eq!(get("weir_saga_ended_total{definition=metrics-order,status=completed}"), Some(1.0), "{got:?}");
    assert_eq!(get("weir_saga_ended_total{definition=metrics-order,status=compensated}"), Some(1.0), "{got:?}");
    let step = |name: &str, outcome: &str| {
        get(&format!("weir_saga_step_duration_seconds{{definition=metrics-order,outcome={outcome},step={name}}}"))
    };
    assert_eq!(
        (step("charge", "done"), step("ship", "done"), step("ship", "failed")),
        (Some(2.0), Some(1.0), Some(1.0))
    );
    assert_eq!(get("weir_saga_in_flight{}"), Some(0.0), "{got:?}");
}

/// A breaker's transitions and state, a bulkhead's rejections and slots
/// in use, a retry policy's attempts.
#[test]
fn policies_record_transitions_rejections_and_retries() {
    let recorder = DebuggingRecorder::new();
    with_recorder(&recorder, async {
        let breaker = Breaker::builder().name("metrics-breaker").consecutive_failures(1).build().unwrap();
        let _ = breaker.call(|| async { Err::<(), weir::error::BoxError>("down".into()) }).await;
        let bulkhead = Bulkhead::builder().name("metrics-bulkhead").limit(1).max_wait(Duration::ZERO).build().unwrap();
        let held = bulkhead.acquire().await.unwrap();
        assert!(bulkhead.acquire().await.is_err());
        drop(held);
        let retry =
            weir::policy::retry::RetryPolicy::builder().max_attempts(3).initial_delay(Duration::ZERO).build().unwrap();
        let _ = retry.call(|| async { Err::<(), _>("flaky") }).await;
    });
    let got = recorded(&recorder);
    let get = |key: &str| got.get(key).copied();
    assert_eq!(get("weir_breaker_transitions_total{breaker=metrics-breaker,to=open}"), Some(1.0), "{got:?}");
    assert_eq!(get("weir_breaker_state{breaker=metrics-breaker}"), Some(2.0), "{got:?}");
    assert_eq!(get("weir_bulkhead_rejected_total{bulkhead=metrics-bulkhead}"), Some(1.0), "{got:?}");
    assert_eq!(get("weir_bulkhead_in_use{bulkhead=metrics-bulkhead}"), Some(0.0), "{got:?}");
    assert_eq!(get("weir_retry_attempts_total{}"), Some(2.0), "{got:?}");
}

/// A worker taking jobs from a queue reads its depth by status into
/// gauges (at its first claim, then every 5 s), besides counting claims.
#[test]
fn a_queue_worker_records_the_depth_by_status() {
    use futures_util::StreamExt;
    use weir::durable::queue::{NewJob, WorkQueue};

    let recorder = DebuggingRecorder::new();
    with_recorder(&recorder, async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(&dir.path().join("queue.db")).await.unwrap();
        let queue = WorkQueue::new(store, "metrics-jobs");
        for n in 0..3 {
            queue.enqueue(NewJob::new(serde_json::json!(n))).await.unwrap();
        }
        let mut jobs = std::pin::pin!(queue.source("worker-1"));
        let (_, receipt) = jobs.next().await.unwrap().unwrap();
        drop(receipt); // given back: nothing is settled
    });
    let got = recorded(&recorder);
    let get = |key: &str| got.get(key).copied();
    assert_eq!(get("weir_queue_jobs{queue=metrics-jobs,status=queued}"), Some(3.0), "{got:?}");
    assert_eq!(get("weir_queue_jobs{queue=metrics-jobs,status=dead}"), Some(0.0), "{got:?}");
    assert!(get("weir_queue_claimed_total{queue=metrics-jobs}").is_some_and(|n| n >= 1.0), "{got:?}");
}

/// Sagas parked in `store`, one of each kind (two asleep under two
/// versions, one awaiting an event, one awaiting its child, which sleeps),
/// and what the waker recorded of them after its next count.
fn parked_gauges(store: impl std::future::Future<Output = Store>) -> HashMap<String, f64> {
    let recorder = DebuggingRecorder::new();
    with_recorder(&recorder, async {
        let store = store.await;
        let hour = Duration::from_secs(3600);
        let nap = |version| {
            SagaDefinition::builder("metrics-nap")
                .version(version)
                .step("reserve", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
                .sleep("nap", hour)
                .build()
                .unwrap()
        };
        let approval = SagaDefinition::builder("metrics-approval")
            .wait_event("approval", "approved", hour, OnTimeout::Compensate)
            .build()
            .unwrap();
        let child = SagaDefinition::builder("metrics-child").sleep("nap", hour).build().unwrap();
        let parent =
            SagaDefinition::builder("metrics-parent").child("pay", "metrics-child", |_| Ok(())).build().unwrap();
        let engine = SagaEngine::builder(store)
            .definition(nap(1))
            .definition(nap(2))
            .definition(approval)
            .definition(child)
            .definition(parent)
            .build()
            .unwrap();
        for (id, definition) in
            [("p-1", "metrics-nap@v1"), ("p-2", "metrics-nap"), ("a-1", "metrics-approval"), ("o-1", "metrics-parent")]
        {
            let parked = engine.run_with_id(id, definition, &()).await.unwrap_err();
            assert!(parked.is_suspended(), "{id}: {parked}");
        }
        engine.resume().await.unwrap();
        // The waker counts every 5 s (its first count came with the first
        // run, before anything was parked). Waited out in real time: the
        // store may be a file or a server. (A snapshot in a loop would
        // reset the recorder.)
        tokio::time::sleep(Duration::from_secs(6)).await;
    });
    recorded(&recorder)
}

/// The waker counts the sagas parked in the store, by definition key and
/// what they wait for, whichever worker parked them; on every store.
#[test]
fn the_waker_records_the_parked_sagas_by_definition_and_what_they_wait_for() {
    let memory = std::thread::spawn(|| parked_gauges(async { Store::memory() }));
    let sqlite = std::thread::spawn(|| {
        // The directory outlives the run: the store opens new connections to
        // the file while it works.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parked.db");
        parked_gauges(async move { Store::sqlite(&path).await.unwrap() })
    });
    #[allow(unused_mut)]
    let mut kinds = vec![("memory", memory), ("sqlite", sqlite)];
    #[cfg(feature = "postgres")]
    if std::env::var("WEIR_TEST_POSTGRES_URL").is_ok() {
        let postgres = std::thread::spawn(|| {
            parked_gauges(async {
                let test = "the_waker_records_the_parked_sagas_by_definition_and_what_they_wait_for";
                let url = crate::support::stores::postgres_url(test).await.unwrap();
                Store::open(&url).await.unwrap()
            })
        });
        kinds.push(("postgres", postgres));
    }
    for (kind, gauges) in kinds {
        let got = gauges.join().unwrap();
        let parked = |key: &str, waiting_for: &str| {
            got.get(&format!("weir_saga_parked{{definition={key},waiting_for={waiting_for}}}")).copied()
        };
        let figures = [
            parked("metrics-nap", "timer"),
            parked("metrics-nap@v2", "timer"),
            parked("metrics-approval", "event"),
            parked("metrics-parent", "child"),
            parked("metrics-child", "timer"),
        ];
        assert_eq!(figures, [Some(1.0); 5], "{kind}: {got:?}");
        // Every kind of wait of every definition is shown, at 0 when none.
        assert_eq!((parked("metrics-nap", "event"), parked("metrics-approval", "timer")), (Some(0.0), Some(0.0)));
        assert_eq!(parked("metrics-nap", "unknown"), None, "{kind}: {got:?}");
    }
}

/// A saga parked by a weir older than schema 10 has no `waiting_for`: it
/// counts as `unknown`, and is still counted.
#[test]
fn a_saga_parked_before_the_upgrade_counts_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upgraded.db");
    let got = parked_gauges(async {
        let store = Store::sqlite(&path).await.unwrap();
        // The column as an older weir left it: unset.
        let wiped = store
            .commit_effect(|tx| {
                Box::pin(async move {
                    use weir::durable::store::Tx;
                    let Tx::Sqlite(conn) = tx else { unreachable!("a SQLite store") };
                    sqlx::query(
                        "CREATE TRIGGER older_weir AFTER UPDATE OF waiting_for ON weir_sagas \
                                 BEGIN UPDATE weir_sagas SET waiting_for = NULL WHERE id = NEW.id; END",
                    )
                    .execute(&mut *conn)
                    .await?;
                    Ok::<_, weir::error::BoxError>(())
                })
            })
            .await;
        wiped.unwrap();
        store
    });
    let parked = |key: &str, waiting_for: &str| {
        got.get(&format!("weir_saga_parked{{definition={key},waiting_for={waiting_for}}}")).copied()
    };
    assert_eq!(parked("metrics-approval", "unknown"), Some(1.0), "{got:?}");
    assert_eq!(parked("metrics-approval", "event"), Some(0.0), "{got:?}");
}

/// A rate limiter's occupancy, sampled each second: the slots of its burst
/// in use and the calls waiting for a slot; back to 0 once it refills, with
/// nobody calling.
#[test]
fn a_rate_limiter_reports_how_full_it_is_and_refills() {
    let recorder = DebuggingRecorder::new();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    // One snapshot per look: taking one resets what it read.
    let occupancy = || {
        let got = recorded(&recorder);
        let gauge = |name: &str| got.get(&format!("{name}{{limiter=metrics-rate}}")).copied();
        (gauge("weir_rate_limit_in_use"), gauge("weir_rate_limit_waiting"))
    };
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let start = tokio::time::Instant::now();
            let limiter =
                RateLimiter::builder().name("metrics-rate").rate(1, Duration::from_secs(1)).burst(4).build().unwrap();
            for _ in 0..4 {
                limiter.try_acquire().unwrap();
            }
            // Two more wait: for the slots due 1 s and 2 s from now.
            let waiting: Vec<_> = (0..2)
                .map(|_| {
                    let limiter = limiter.clone();
                    tokio::spawn(async move { limiter.acquire().await })
                })
                .collect();
            // Sampled at 1 s: 5 slots ahead, the burst's 4 in use, one
            // call still waiting (the other's slot came).
            tokio::time::sleep_until(start + Duration::from_millis(1500)).await;
            assert_eq!(occupancy(), (Some(4.0), Some(1.0)));
            for call in waiting {
                call.await.unwrap().unwrap();
            }
            // Sampled at 4 s: 2 slots ahead (one refills each second).
            tokio::time::sleep_until(start + Duration::from_millis(4500)).await;
            assert_eq!(occupancy(), (Some(2.0), Some(0.0)));
            tokio::time::sleep_until(start + Duration::from_secs(10)).await;
            assert_eq!(occupancy(), (Some(0.0), Some(0.0)), "refilled");
            drop(limiter);
        })
    });
}

/// `serve_prometheus` serves weir's metrics in Prometheus' text format;
/// a taken address is a clear error.
#[cfg(feature = "prometheus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_serves_the_metrics_and_names_a_taken_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let error = weir::observe::serve_prometheus(taken.local_addr().unwrap()).unwrap_err();
    assert!(error.to_string().contains("pick a free local address"), "{error}");
    drop(taken);

    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    weir::observe::serve_prometheus(addr).unwrap();
    let parse = Stage::try_map("prom-parse", |s: &str| async move { s.parse::<u32>() }).on_error(OnError::Skip);
    Pipeline::from_iter(["1", "x"]).stage(parse).fold(0, |a, b| a + b).await.unwrap();

    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(format!("http://{addr}/metrics")).await {
            body = response.text().await.unwrap();
            if body.contains("prom-parse") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(body.contains(r#"weir_stage_items_total{stage="prom-parse",outcome="received"} 2"#), "{body}");
    assert!(body.contains(r#"weir_stage_items_total{stage="prom-parse",outcome="skipped"} 1"#), "{body}");
}
