//! weir's spans as OpenTelemetry exports them (feature `otel`), read back
//! from the SDK's in-memory exporter: names, parent links, attributes.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use weir::durable::checkpoint::{ChannelSource, CursorConsumer};
use weir::durable::saga::{SagaDefinition, SagaEngine, StepError};
use weir::durable::store::Store;
use weir::error::BoxError;
use weir::group::Group;
use weir::pipeline::batch::Batcher;
use weir::policy::retry::RetryPolicy;

/// Runs `work` on a one-thread runtime (so every task is polled on this
/// thread) with an OpenTelemetry layer as the thread's subscriber; returns
/// the finished spans.
fn traced<F: std::future::Future>(work: F) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry().with(weir::observe::otel_layer(&provider));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tracing::subscriber::with_default(subscriber, || runtime.block_on(work));
    drop(runtime);
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn attributes(span: &SpanData) -> HashMap<String, String> {
    span.attributes.iter().map(|kv| (kv.key.to_string(), kv.value.to_string())).collect()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn id_of(span: &SpanData) -> SpanId {
    span.span_context.span_id()
}

/// A saga whose second step fails: one `saga` span (id, definition,
/// outcome), a `saga.step` for each step and a `saga.compensate` for the
/// first, each a child of the saga, with attempts and outcomes; the
/// store's commits as `store.commit` spans.
#[test]
fn a_saga_traces_its_steps_and_compensations_under_one_span() {
    let dir = tempfile::tempdir().unwrap();
    let spans = traced(async {
        let store = Store::open(dir.path().join("traces.db").to_str().unwrap()).await.unwrap();
        let order = SagaDefinition::builder("traced-order")
            .step("charge", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
            .step_without_compensation("ship", |_| async { Err::<(), _>(StepError::terminal("no courier")) })
            .build()
            .unwrap();
        let engine = SagaEngine::builder(store).definition(order).build().unwrap();
        let error = engine.run_with_id("t-1", "traced-order", &()).await.unwrap_err();
        assert!(error.is_compensated(), "{error}");
    });
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    let sagas = named(&spans, "saga");
    assert_eq!(sagas.len(), 1, "{names:?}");
    let saga = sagas[0];
    let fields = attributes(saga);
    assert_eq!(fields["saga.id"], "t-1");
    assert_eq!(fields["saga.definition"], "traced-order");
    assert_eq!(fields["outcome"], "compensated");

    let steps = named(&spans, "saga.step");
    let by_step: HashMap<_, _> = steps.iter().map(|s| (attributes(s)["step"].clone(), attributes(s))).collect();
    assert_eq!(steps.len(), 2, "{names:?}");
    assert_eq!((by_step["charge"]["outcome"].as_str(), by_step["charge"]["attempts"].as_str()), ("done", "1"));
    assert_eq!(by_step["ship"]["outcome"], "failed");
    let undo = named(&spans, "saga.compensate");
    assert_eq!(undo.len(), 1, "{names:?}");
    assert_eq!(
        (attributes(undo[0])["step"].as_str(), attributes(undo[0])["outcome"].as_str()),
        ("charge", "compensated")
    );
    for child in steps.iter().chain(&undo) {
        assert_eq!(child.parent_span_id, id_of(saga), "{} is the saga's child", child.name);
        assert_eq!(child.span_context.trace_id(), saga.span_context.trace_id());
    }
    let commits = named(&spans, "store.commit");
    assert!(!commits.is_empty(), "{names:?}");
    // Every commit says how it ended: committed, except perhaps the last,
    // cut off when the runtime shut down (the engine's last writes are
    // not awaited by the run).
    let outcomes: Vec<String> = commits.iter().map(|c| attributes(c)["outcome"].clone()).collect();
    let committed = outcomes.iter().filter(|o| *o == "committed").count();
    let interrupted = outcomes.iter().filter(|o| *o == "interrupted").count();
    assert!(committed >= 1 && committed + interrupted == outcomes.len() && interrupted <= 1, "{outcomes:?}");
    assert!(commits.iter().all(|c| attributes(c)["db.system"] == "sqlite"));
    assert!(commits.iter().all(|c| c.parent_span_id == SpanId::INVALID), "a commit serves many callers: a root");
}

/// A child saga's span sits under its parent's step.
#[test]
fn a_child_saga_is_traced_under_its_parents_step() {
    let spans = traced(async {
        let payment = SagaDefinition::builder("traced-payment")
            .step("authorize", |_| async { Ok::<_, StepError>(1) }, |_| async { Ok(()) })
            .build()
            .unwrap();
        let order =
            SagaDefinition::builder("traced-parent").child("pay", "traced-payment", |_| Ok(())).build().unwrap();
        let engine = SagaEngine::builder(Store::memory()).definition(payment).definition(order).build().unwrap();
        engine.run_with_id("p-1", "traced-parent", &()).await.unwrap();
    });
    let sagas = named(&spans, "saga");
    let parent = sagas.iter().find(|s| attributes(s)["saga.id"] == "p-1").expect("the parent's span");
    let child = sagas.iter().find(|s| attributes(s)["saga.id"] == "p-1/pay").expect("the child's span");
    assert_eq!(attributes(child)["saga.parent"], "p-1");
    let pay = named(&spans, "saga.step").into_iter().find(|s| attributes(s)["step"] == "pay").expect("the step");
    assert_eq!(pay.parent_span_id, id_of(parent));
    assert_eq!(child.parent_span_id, id_of(pay), "the child saga runs inside the parent's step");
    assert_eq!(attributes(parent)["outcome"], "completed");
}

/// A group's tasks run inside the span they were spawned in, although a
/// worker task polls them.
#[test]
fn group_tasks_inherit_the_span_they_were_spawned_in() {
    let spans = traced(async {
        let request = tracing::info_span!("request");
        async {
            let group: Group<BoxError> = Group::new();
            for n in 0..3u32 {
                group
                    .spawn(async move {
                        tracing::info_span!("task", n).in_scope(|| {});
                        tokio::task::yield_now().await;
                        Ok(())
                    })
                    .await;
            }
            group.wait().await.unwrap();
        }
        .instrument(request)
        .await;
    });
    let request = named(&spans, "request")[0];
    let tasks = named(&spans, "task");
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t.parent_span_id == id_of(request)), "each task under `request`");
}

/// A batch flush (retried once) and a checkpoint save, each a span with
/// its fields.
#[test]
fn batch_flushes_and_checkpoint_saves_are_spans() {
    let spans = traced(async {
        let batcher = Batcher::builder()
            .name("traced-batcher")
            .max_items(4)
            .retry(RetryPolicy::builder().max_attempts(3).initial_delay(Duration::from_millis(1)).build().unwrap())
            .build()
            .unwrap();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let flush = |_batch: Vec<u32>| {
            let first = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
            async move { if first { Err::<(), BoxError>("blip".into()) } else { Ok(()) } }
        };
        batcher.run(futures_util::stream::iter(0..4u32), flush, None).await.unwrap();

        let (tx, rx) = tokio::sync::mpsc::channel(8);
        for n in 1..=3u64 {
            tx.send(n).await.unwrap();
        }
        drop(tx);
        let consumer = CursorConsumer::builder(Store::memory(), "traced-consumer").every(10).build().unwrap();
        consumer.run(&mut ChannelSource::new(rx), |_| async { Ok::<(), BoxError>(()) }).await.unwrap();
    });
    let flushes = named(&spans, "batch.flush");
    assert_eq!(flushes.len(), 1);
    let flush = attributes(flushes[0]);
    assert_eq!(
        (flush["batcher"].as_str(), flush["items"].as_str(), flush["attempts"].as_str(), flush["outcome"].as_str()),
        ("traced-batcher", "4", "2", "flushed")
    );
    let saves = named(&spans, "checkpoint.save");
    assert_eq!(saves.len(), 1, "the end of the input saves once");
    assert_eq!(
        (attributes(saves[0])["consumer"].as_str(), attributes(saves[0])["events"].as_str()),
        ("traced-consumer", "3")
    );
}
