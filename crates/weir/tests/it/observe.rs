//! Metrics through the `metrics` facade: what a pipeline, a saga engine
//! and the policies record, read back from a debugging recorder installed
//! for the test's thread; and the Prometheus endpoint serving them.
#![cfg(all(feature = "metrics", feature = "sqlite"))]

use std::collections::HashMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use weir::durable::saga::{SagaDefinition, SagaEngine, StepError};
use weir::durable::store::Store;
use weir::pipeline::{OnError, Pipeline, Stage};
use weir::policy::breaker::Breaker;
use weir::policy::bulkhead::Bulkhead;

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

/// The waker counts the sagas parked in the store, by definition key,
/// whichever worker parked them.
#[test]
fn the_waker_records_the_parked_sagas_by_definition() {
    let recorder = DebuggingRecorder::new();
    with_recorder(&recorder, async {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(&dir.path().join("parked.db")).await.unwrap();
        let nap = |version| {
            SagaDefinition::builder("metrics-nap")
                .version(version)
                .step("reserve", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
                .sleep("nap", Duration::from_secs(3600))
                .build()
                .unwrap()
        };
        let engine = SagaEngine::builder(store).definition(nap(1)).definition(nap(2)).build().unwrap();
        assert!(engine.run_with_id("p-1", "metrics-nap@v1", &()).await.unwrap_err().is_suspended());
        assert!(engine.run_with_id("p-2", "metrics-nap", &()).await.unwrap_err().is_suspended());
        engine.resume().await.unwrap();
        // The waker counts every 5 s (its first count came with the first
        // run, before anything was parked). Waited out in real time: the
        // store is a file. (A snapshot in a loop would reset the recorder.)
        tokio::time::sleep(Duration::from_secs(6)).await;
    });
    let got = recorded(&recorder);
    let parked = |key: &str| got.get(&format!("weir_saga_parked{{definition={key}}}")).copied();
    assert_eq!((parked("metrics-nap"), parked("metrics-nap@v2")), (Some(1.0), Some(1.0)), "{got:?}");
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
