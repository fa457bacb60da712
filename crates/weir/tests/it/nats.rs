//! NATS JetStream as a pipeline source, sink and dead-letter stream,
//! against the real server (`WEIR_TEST_NATS_URL`; skipped without it).
//! Each test makes its own streams (a random name) and deletes them.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use weir::broker::nats::{Delivery, JetStreamDlq, JetStreamSink, JetStreamSource};
use weir::durable::dlq::DeadLetterQueue;
use weir::error::{BoxError, Permanent, Skip};
use weir::pipeline::{Control, Pipeline, Report, Stage};
use weir::policy::retry::{Jitter, RetryPolicy};

/// A connection and a stream of the test's own, `<name>` on subjects
/// `<name>.>`, with a dead-letter stream `<name>_dlq`.
struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    name: String,
}

async fn nats(test: &str) -> Option<Nats> {
    let Ok(url) = std::env::var("WEIR_TEST_NATS_URL") else {
        eprintln!("skipped {test}: set WEIR_TEST_NATS_URL to run it against a NATS server with JetStream");
        return None;
    };
    let client = async_nats::connect(&url).await.expect("connect to WEIR_TEST_NATS_URL");
    let js = jetstream::new(client.clone());
    let name = format!("weir_{test}_{}", fastrand::u32(..));
    js.create_stream(stream::Config { name: name.clone(), subjects: vec![format!("{name}.>")], ..Default::default() })
        .await
        .expect("create the test's stream");
    Some(Nats { client, js, name })
}

impl Nats {
    fn subject(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    async fn consumer(&self, ack_wait: Duration) -> PullConsumer {
        let stream = self.js.get_stream(&self.name).await.unwrap();
        stream
            .get_or_create_consumer(
                "workers",
                pull::Config {
                    durable_name: Some("workers".into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    }

    async fn dlq(&self) -> JetStreamDlq {
        let name = format!("{}_dlq", self.name);
        JetStreamDlq::create(self.js.clone(), &name, &name).await.unwrap()
    }

    async fn publish(&self, key: &str, payload: impl Into<Bytes>) {
        self.js.publish(self.subject(key), payload.into()).await.unwrap().await.unwrap();
    }

    async fn source(&self, redelivery: RetryPolicy, ack_wait: Duration) -> JetStreamSource {
        JetStreamSource::new(self.client.clone(), self.consumer(ack_wait).await, self.dlq().await)
            .redelivery(redelivery)
    }

    /// The consumer's counts once every acknowledgement has landed:
    /// (waiting to be delivered, delivered and not acknowledged).
    async fn pending(&self) -> (u64, usize) {
        self.client.flush().await.unwrap();
        let mut consumer = self.consumer(Duration::from_secs(30)).await;
        let mut last = (0, 0);
        for _ in 0..50 {
            let info = consumer.info().await.unwrap();
            last = (info.num_pending, info.num_ack_pending);
            if last == (0, 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        last
    }

    async fn cleanup(self) {
        let _ = self.js.delete_stream(&self.name).await;
        let _ = self.js.delete_stream(format!("{}_dlq", self.name)).await;
    }
}

fn redelivery(deliveries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(deliveries)
        .initial_delay(Duration::from_millis(50))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

fn number(delivery: &Delivery) -> Result<u32, BoxError> {
    #[derive(serde::Deserialize)]
    struct Order {
        n: u32,
    }
    let order: Order = serde_json::from_slice(&delivery.payload).map_err(Permanent::new)?;
    Ok(order.n)
}

/// Drains `control` once `done` says the run has seen all it should.
fn drain_when(control: Control, done: impl Fn() -> bool + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        control.drain();
    })
}

async fn run_until(
    pipeline: Pipeline<u32>,
    seen: Arc<Mutex<Vec<u32>>>,
    done: impl Fn(&[u32]) -> bool + Send + 'static,
) -> Report {
    let watch = Arc::clone(&seen);
    let drainer = drain_when(pipeline.control(), move || done(&watch.lock().unwrap()));
    let run = pipeline.for_each(move |n| {
        seen.lock().unwrap().push(n);
        async { Ok::<_, BoxError>(()) }
    });
    let report = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the run finishes").unwrap();
    drainer.await.unwrap();
    report
}

#[tokio::test]
async fn nats_outcomes_map_onto_acknowledgements() {
    let Some(nats) = nats("outcomes").await else { return };
    for n in 1..=8 {
        nats.publish("order", format!(r#"{{"n":{n}}}"#)).await;
    }
    nats.publish("order", "not json").await;
    nats.publish("order", r#"{"n":50}"#).await; // skipped
    nats.publish("order", r#"{"n":99}"#).await; // fails twice, then goes through
    let flaky = Arc::new(AtomicU32::new(0));
    let calls = Arc::clone(&flaky);
    let handle = move |delivery: Delivery| {
        let calls = Arc::clone(&calls);
        async move {
            match number(&delivery)? {
                50 => Err(Skip.into()),
                99 if calls.fetch_add(1, Ordering::SeqCst) < 2 => Err("payment service unavailable".into()),
                n => Ok::<_, BoxError>(n),
            }
        }
    };
    let dlq = nats.dlq().await;
    let pipeline = nats
        .source(redelivery(5), Duration::from_secs(30))
        .await
        .pipeline(Pipeline::builder())
        .await
        .unwrap()
        .stage(Stage::try_map("handle", handle).dead_letter(Arc::new(dlq.clone())));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let report = run_until(pipeline, Arc::clone(&seen), |seen| seen.len() == 9).await;

    let seen: BTreeSet<u32> = seen.lock().unwrap().iter().copied().collect();
    assert_eq!(seen, (1..=8).chain([99]).collect());
    let stage = report.stage("handle").unwrap();
    assert_eq!((stage.released, stage.dead_lettered, stage.skipped), (2, 1, 1), "{report}");
    assert_eq!(flaky.load(Ordering::SeqCst), 3, "two naks, then a third delivery");
    assert_eq!(nats.pending().await, (0, 0), "every message acknowledged");

    let letters = dlq.list().await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(&letter.item.payload[..], b"not json");
    assert_eq!(letter.stage, "handle");
    assert_eq!(letter.item.subject, nats.subject("order"));
    assert!(letter.error_chain.iter().any(|e| e.contains("expected")), "{:?}", letter.error_chain);
    nats.cleanup().await;
}

#[tokio::test]
async fn nats_a_message_failing_on_every_delivery_is_dead_lettered_after_the_last() {
    let Some(nats) = nats("last_delivery").await else { return };
    nats.publish("order", r#"{"n":1}"#).await;
    nats.publish("order", r#"{"n":2}"#).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let dlq = nats.dlq().await;
    let pipeline =
        nats.source(redelivery(3), Duration::from_secs(30)).await.pipeline(Pipeline::builder()).await.unwrap().stage(
            Stage::try_map("handle", move |delivery: Delivery| {
                let counted = Arc::clone(&counted);
                async move {
                    let n = number(&delivery)?;
                    if n == 2 {
                        counted.fetch_add(1, Ordering::SeqCst);
                        return Err::<u32, BoxError>("still down".into());
                    }
                    Ok(n)
                }
            })
            .dead_letter(Arc::new(dlq.clone())),
        );
    let letters = dlq.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let parked = Arc::new(AtomicU32::new(0));
    let watch = Arc::clone(&parked);
    tokio::spawn(async move {
        while letters.count().await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        watch.store(1, Ordering::SeqCst);
    });
    let report = run_until(pipeline, seen, move |seen| seen.len() == 1 && parked.load(Ordering::SeqCst) == 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call per delivery, three deliveries");
    let stage = report.stage("handle").unwrap();
    assert_eq!((stage.released, stage.dead_lettered), (2, 1), "{report}");
    let letters = dlq.list().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].item.delivered, letters[0].error_chain.last().map(String::as_str)), (3, Some("still down")));
    assert_eq!(nats.pending().await, (0, 0));
    nats.cleanup().await;
}

#[tokio::test]
async fn nats_a_message_whose_workers_keep_dying_is_dead_lettered_without_running_again() {
    let Some(nats) = nats("poison").await else { return };
    nats.publish("order", r#"{"n":7}"#).await;
    // Two workers take it and die (never acknowledge): fetch it twice, each
    // time waiting out the acknowledgement deadline.
    let ack_wait = Duration::from_secs(1);
    let consumer = nats.consumer(ack_wait).await;
    for delivery in 1..=2 {
        let mut batch = consumer.fetch().max_messages(1).expires(Duration::from_secs(5)).messages().await.unwrap();
        let message = batch.next().await.expect("a delivery").unwrap();
        assert_eq!(message.info().unwrap().delivered, delivery);
        drop(batch);
        tokio::time::sleep(ack_wait + Duration::from_millis(200)).await;
    }
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let dlq = nats.dlq().await;
    let pipeline = nats.source(redelivery(2), ack_wait).await.pipeline(Pipeline::builder()).await.unwrap().stage(
        Stage::try_map("handle", move |delivery: Delivery| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { number(&delivery) }
        }),
    );
    let letters = dlq.clone();
    let control = pipeline.control();
    let run = tokio::spawn(pipeline.for_each(|_| async { Ok::<_, BoxError>(()) }));
    tokio::time::timeout(Duration::from_secs(30), async move {
        while letters.count().await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the poison message is dead-lettered");
    control.drain();
    let report = run.await.unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the poison message never ran again");
    assert_eq!(report.source_emitted, 0);
    assert_eq!(nats.pending().await, (0, 0), "and it was acknowledged");
    let letters = dlq.list().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].item.delivered, 3);
    assert!(letters[0].error_chain[0].contains("delivered 3 times without being settled"), "{:?}", letters[0]);
    nats.cleanup().await;
}

#[tokio::test]
async fn nats_a_long_item_is_kept_alive_and_not_redelivered() {
    let Some(nats) = nats("long_item").await else { return };
    nats.publish("order", r#"{"n":1}"#).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let pipeline =
        nats.source(redelivery(5), Duration::from_secs(1)).await.pipeline(Pipeline::builder()).await.unwrap().stage(
            Stage::try_map("slow", move |delivery: Delivery| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(3500)).await; // 3.5 × ack_wait
                    number(&delivery)
                }
            })
            .workers(2),
        );
    let seen = Arc::new(Mutex::new(Vec::new()));
    run_until(pipeline, Arc::clone(&seen), |seen| !seen.is_empty()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "redelivered while it was being worked on");
    assert_eq!(nats.pending().await, (0, 0));
    nats.cleanup().await;
}

#[tokio::test]
async fn nats_sink_stores_a_retried_publish_once() {
    let Some(nats) = nats("dedup").await else { return };
    let sink = JetStreamSink::new(nats.js.clone());
    let first = sink.publish(&nats.subject("out"), "order-1", Bytes::from_static(b"one")).await.unwrap();
    let again = sink.publish(&nats.subject("out"), "order-1", Bytes::from_static(b"one")).await.unwrap();
    let other = sink.publish(&nats.subject("out"), "order-2", Bytes::from_static(b"two")).await.unwrap();
    assert!(!first.duplicate && again.duplicate && !other.duplicate);
    assert_eq!(again.sequence, first.sequence);
    let mut stream = nats.js.get_stream(&nats.name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 2);
    let error = sink.publish("nowhere.at.all", "x", Bytes::new()).await.unwrap_err();
    assert!(error.to_string().contains("nowhere.at.all"), "{error}");
    nats.cleanup().await;
}

#[tokio::test]
async fn nats_two_workers_on_one_consumer_split_the_messages() {
    let Some(nats) = nats("split").await else { return };
    for n in 0..300 {
        nats.publish("order", format!(r#"{{"n":{n}}}"#)).await;
    }
    let total = Arc::new(Mutex::new(Vec::new()));
    let mut runs = Vec::new();
    let mut per_worker = Vec::new();
    for _ in 0..2 {
        let client = async_nats::connect(std::env::var("WEIR_TEST_NATS_URL").unwrap()).await.unwrap();
        let consumer = nats.consumer(Duration::from_secs(30)).await;
        let source = JetStreamSource::new(client, consumer, nats.dlq().await).batch(16);
        let pipeline = source.pipeline(Pipeline::builder()).await.unwrap().stage(Stage::try_map(
            "handle",
            |delivery: Delivery| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                number(&delivery)
            },
        ));
        let mine = Arc::new(Mutex::new(Vec::new()));
        per_worker.push(Arc::clone(&mine));
        let (all, watch) = (Arc::clone(&total), Arc::clone(&total));
        let drainer = drain_when(pipeline.control(), move || watch.lock().unwrap().len() >= 300);
        runs.push(tokio::spawn(async move {
            let report = pipeline
                .for_each(move |n| {
                    mine.lock().unwrap().push(n);
                    all.lock().unwrap().push(n);
                    async { Ok::<_, BoxError>(()) }
                })
                .await;
            drainer.await.unwrap();
            report
        }));
        // The drain takes effect when a message comes or the stream ends;
        // both workers see the last messages' neighbours, so nudge them
        // below once all are in.
    }
    while total.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..2 {
        nats.publish("late", r#"{"n":1000}"#).await; // wakes a worker waiting on its next pull
    }
    for run in runs {
        tokio::time::timeout(Duration::from_secs(60), run).await.unwrap().unwrap().unwrap();
    }
    let all: Vec<u32> = total.lock().unwrap().iter().copied().filter(|n| *n < 1000).collect();
    let distinct: BTreeSet<u32> = all.iter().copied().collect();
    assert_eq!(distinct, (0..300).collect(), "every message handled");
    assert_eq!(all.len(), 300, "none handled twice");
    for (worker, mine) in per_worker.iter().enumerate() {
        assert!(!mine.lock().unwrap().is_empty(), "worker {worker} got none of the 300");
    }
    nats.cleanup().await;
}

#[tokio::test]
async fn nats_an_aborted_run_leaves_its_messages_to_the_next() {
    let Some(nats) = nats("abort").await else { return };
    for n in 0..40 {
        nats.publish("order", format!(r#"{{"n":{n}}}"#)).await;
    }
    let handled: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let stage = |stuck_from: Option<u32>, handled: Arc<Mutex<HashMap<u32, u32>>>| {
        Stage::try_map("handle", move |delivery: Delivery| {
            let handled = Arc::clone(&handled);
            async move {
                let n = number(&delivery)?;
                if stuck_from.is_some_and(|from| n >= from) {
                    std::future::pending::<()>().await;
                }
                *handled.lock().unwrap().entry(n).or_default() += 1;
                Ok::<_, BoxError>(n)
            }
        })
        .workers(4)
    };
    // First run: stuck from message 20 on, then aborted.
    let pipeline = nats
        .source(redelivery(5), Duration::from_secs(2))
        .await
        .pipeline(Pipeline::builder())
        .await
        .unwrap()
        .stage(stage(Some(20), Arc::clone(&handled)));
    let control = pipeline.control();
    let first: Arc<Mutex<Vec<u32>>> = Arc::default();
    let delivered = Arc::clone(&first);
    let run = tokio::spawn(pipeline.for_each(move |n| {
        delivered.lock().unwrap().push(n);
        async { Ok::<_, BoxError>(()) }
    }));
    while handled.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    control.abort();
    assert!(run.await.unwrap().unwrap_err().is_cancelled());
    let first: BTreeSet<u32> = first.lock().unwrap().iter().copied().collect();
    // Second run: takes what the first left: nak'ed at once, or (pulled
    // but never taken) after ack_wait.
    let pipeline = nats
        .source(redelivery(5), Duration::from_secs(2))
        .await
        .pipeline(Pipeline::builder())
        .await
        .unwrap()
        .stage(stage(None, Arc::clone(&handled)));
    let second = Arc::new(Mutex::new(Vec::new()));
    let every = first.clone();
    run_until(pipeline, Arc::clone(&second), move |seen| {
        seen.iter().chain(every.iter()).collect::<BTreeSet<_>>().len() == 40
    })
    .await;
    let second: Vec<u32> = second.lock().unwrap().clone();
    assert!(second.iter().all(|n| !first.contains(n)), "a message the sink took came back: {first:?} {second:?}");
    let all: BTreeSet<u32> = first.iter().copied().chain(second.iter().copied()).collect();
    assert_eq!(all, (0..40).collect(), "nothing lost: first run {first:?}, second {second:?}");
    // At least once: a message may come twice (a pull request of the
    // aborted run outlives it on the server and is sent messages nobody
    // reads; they come back after ack_wait), but only one that was in
    // flight when the run stopped.
    assert!(second.len() <= 2 * (40 - first.len()), "redeliveries bounded by what was in flight: {second:?}");
    // Items a stage had finished but the sink had not taken when the run
    // was aborted run again (at least once): effects in stages must be
    // idempotent, as the module docs say.
    assert!(handled.lock().unwrap().values().all(|n| (1..=2).contains(n)));
    assert_eq!(nats.pending().await, (0, 0));
    nats.cleanup().await;
}

#[tokio::test]
async fn nats_dead_letters_replay_onto_their_subject() {
    let Some(nats) = nats("replay").await else { return };
    nats.publish("order", "not json").await;
    let dlq = nats.dlq().await;
    let pipeline = nats
        .source(redelivery(5), Duration::from_secs(30))
        .await
        .pipeline(Pipeline::builder())
        .await
        .unwrap()
        .stage(Stage::try_map("parse", |d: Delivery| async move { number(&d) }).dead_letter(Arc::new(dlq.clone())));
    let control = pipeline.control();
    let run = tokio::spawn(pipeline.for_each(|_| async { Ok::<_, BoxError>(()) }));
    while dlq.count().await.unwrap() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    control.abort();
    let _ = run.await;
    let sink = JetStreamSink::new(nats.js.clone());
    let report = dlq.replay(|delivery| sink.republish(delivery)).await.unwrap();
    assert_eq!((report.replayed, report.failed), (1, 0));
    assert_eq!(dlq.count().await.unwrap(), 0);
    let mut stream = nats.js.get_stream(&nats.name).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let message = stream.get_raw_message(last).await.unwrap();
    assert_eq!((&message.payload[..], message.subject.as_str()), (&b"not json"[..], nats.subject("order").as_str()));
    nats.cleanup().await;
}

/// A NATS server of the test's own on a free port, with its own data
/// folder, so that restarting it disturbs no other test.
struct PrivateServer {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateServer {
    fn start(port: u16, dir: tempfile::TempDir) -> Self {
        let child = std::process::Command::new("/usr/sbin/nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, dir }
    }

    /// Stops the server (SIGTERM: it flushes its store) and starts it again
    /// on the same port and data.
    fn restart(mut self, down_for: Duration) -> Self {
        let _ = std::process::Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        std::thread::sleep(down_for);
        let (port, dir) = (self.port, std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()));
        Self::start(port, dir)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_run_rides_out_a_server_restart() {
    if std::env::var("WEIR_TEST_NATS_URL").is_err() || !std::path::Path::new("/usr/sbin/nats-server").exists() {
        eprintln!("skipped nats_a_run_rides_out_a_server_restart: needs WEIR_TEST_NATS_URL and /usr/sbin/nats-server");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = PrivateServer::start(port, tempfile::tempdir().unwrap());
    let url = format!("nats://127.0.0.1:{port}");
    let client = async_nats::ConnectOptions::new().retry_on_initial_connect().connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let name = "restart".to_owned();
    js.create_stream(stream::Config { name: name.clone(), subjects: vec!["restart.>".into()], ..Default::default() })
        .await
        .unwrap();
    for n in 0..300 {
        js.publish("restart.order", format!(r#"{{"n":{n}}}"#).into()).await.unwrap().await.unwrap();
    }
    let consumer = js
        .get_stream(&name)
        .await
        .unwrap()
        .get_or_create_consumer(
            "workers",
            pull::Config {
                durable_name: Some("workers".into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dlq = JetStreamDlq::create(js.clone(), "restart_dlq", "restart_dlq").await.unwrap();
    let pipeline = JetStreamSource::new(client.clone(), consumer.clone(), dlq)
        .redelivery(redelivery(20))
        .batch(16)
        .pipeline(Pipeline::builder())
        .await
        .unwrap()
        .stage(
            Stage::try_map("handle", |delivery: Delivery| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                number(&delivery)
            })
            .workers(4),
        );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watch = Arc::clone(&seen);
    let run =
        tokio::spawn(run_until(pipeline, Arc::clone(&seen), |seen| seen.iter().collect::<BTreeSet<_>>().len() == 300));
    while watch.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = tokio::task::spawn_blocking(move || server.restart(Duration::from_millis(800))).await.unwrap();
    let report = run.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 300, "nothing lost across the restart");
    assert!(report.source_emitted >= 300);
    // What is left unacknowledged is at most what the drained run had
    // pulled and not taken (one pull batch): acks lost in the outage
    // brought their messages back, and those the run had no use for any
    // more wait for the next run.
    client.flush().await.unwrap();
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap();
    assert!(info.num_pending + info.num_ack_pending as u64 <= 16, "{info:?}");
    drop(server);
}
