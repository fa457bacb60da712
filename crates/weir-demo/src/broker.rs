//! The demo on NATS JetStream, split over many processes:
//! `weir-demo publish` puts a file's lines on a stream, and each
//! `weir-demo work` (as many as you like, on any machine) takes its share
//! from one durable consumer and runs each order's saga on a shared
//! PostgreSQL store.
//!
//! ```text
//! file ─▶ publish (one message per line, Nats-Msg-Id = input:line) ─▶ stream ORDERS
//! ORDERS ─(consumer "workers", shared)─▶ work ×N: parse ─▶ saga ─▶ ack
//!          bad line / conflict ─▶ stream ORDERS_DLQ      store error ─▶ nak, later
//! ```
//! A line is acknowledged once its saga ended (or it was counted as a
//! duplicate, or dead-lettered); a worker killed midway leaves its lines
//! to come back to the others after `ack_wait`, and their sagas, keyed by
//! order id, are taken over or reported as duplicates: every order is
//! charged once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use weir::broker::nats::{Delivery, JetStreamDlq, JetStreamSink, JetStreamSource};
use weir::durable::dlq::{DeadLetterQueue, Envelope};
use weir::durable::store::Store;
use weir::error::{BoxError, Permanent};
use weir::pipeline::{DeadLetter, DeadLetterSink, Pipeline, Stage};
use weir::policy::bulkhead::{Bulkhead, KeyedBulkhead};
use weir::policy::retry::RetryPolicy;
use weir_demo::orders::{Line, Order, parse};

use crate::cursor::Cursor;
use crate::intake::{self, Started};
use crate::progress::Progress;
use crate::reader::read_lines;
use crate::run::{PER_TENANT, engine, input_name};
use crate::settle::settle;
use crate::signals::Signals;

/// Where the demo's messages live on a NATS server.
#[derive(Debug, Clone)]
pub struct Topology {
    pub url: String,
    /// The stream of order lines; its subject is `<stream>.lines`.
    pub stream: String,
}

impl Topology {
    fn subject(&self) -> String {
        format!("{}.lines", self.stream)
    }

    fn dead_letter_stream(&self) -> String {
        format!("{}_DLQ", self.stream)
    }

    async fn connect(&self) -> Result<(async_nats::Client, jetstream::Context), BoxError> {
        let client = async_nats::connect(&self.url)
            .await
            .map_err(|e| format!("cannot reach NATS at {}: {e}; start nats-server with -js", self.url))?;
        let context = jetstream::new(client.clone());
        Ok((client, context))
    }

    async fn ensure_stream(&self, context: &jetstream::Context) -> Result<(), BoxError> {
        let config = stream::Config { name: self.stream.clone(), subjects: vec![self.subject()], ..Default::default() };
        context.get_or_create_stream(config).await.map_err(|e| format!("stream `{}`: {e}", self.stream))?;
        Ok(())
    }

    async fn dead_letters(&self, context: &jetstream::Context) -> Result<JetStreamDlq, BoxError> {
        let name = self.dead_letter_stream();
        JetStreamDlq::create(context.clone(), &name, &format!("{name}.letters")).await
    }
}

/// Publishes every line of `file` as one message; a line published twice
/// (a rerun after a crash) is stored once. The number of lines.
///
/// # Errors
/// The file unreadable, or NATS failing.
pub async fn publish(topology: &Topology, file: &std::path::Path, max_line_bytes: usize) -> Result<u64, BoxError> {
    let (client, context) = topology.connect().await?;
    topology.ensure_stream(&context).await?;
    let sink = JetStreamSink::new(context);
    let input = input_name(file);
    let failed = Arc::new(std::sync::Mutex::new(None));
    let lines = read_lines(file, &input, &Cursor::default(), max_line_bytes, Arc::clone(&failed)).await?;
    let subject = topology.subject();
    // Publish acknowledgements are awaited 256 at a time: one round trip
    // per line would be the slowest part of the demo.
    let published = lines
        .map(|line: Line| {
            let (sink, subject) = (sink.clone(), subject.clone());
            async move {
                let id = format!("{}:{}", line.input, line.number);
                let body = serde_json::to_vec(&line)?;
                sink.publish(&subject, &id, body.into()).await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(256)
        .fold(Ok::<u64, BoxError>(0), |count, published| async move { Ok(count? + published.map(|()| 1)?) })
        .await?;
    if let Some(error) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(error.into());
    }
    client.flush().await?;
    Ok(published)
}

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkOptions {
    pub topology: Topology,
    pub location: String,
    pub worker_id: Option<String>,
    /// Stop once the consumer has had nothing pending and nothing in
    /// flight (in any worker) for this long.
    pub idle_exit: Option<Duration>,
    /// How long a message may go without an acknowledgement or a sign of
    /// life before JetStream gives it to another worker.
    pub ack_wait: Duration,
    pub quiet: bool,
}

/// What one worker did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkFigures {
    pub taken: u64,
    pub completed: u64,
    pub compensated: u64,
    pub failed: u64,
    pub duplicates: u64,
    pub elsewhere: u64,
    pub dead_lettered: u64,
    pub released: u64,
    pub elapsed_ms: u64,
}

/// How one line ended in a worker.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Completed,
    Compensated,
    Failed,
    Duplicate,
    Elsewhere,
}

/// Parked lines of the saga stage go to the dead-letter stream as the
/// messages they came in.
struct ParkMessages(JetStreamDlq);

impl DeadLetterSink<(Delivery, Line, Order)> for ParkMessages {
    fn dead_letter(&self, letter: DeadLetter<(Delivery, Line, Order)>) -> BoxFuture<'_, Result<(), BoxError>> {
        let error = &letter.error;
        let mut envelope = Envelope::new(letter.item.0, error.stage(), error.attempt());
        envelope.error_chain = weir::error::chain(error).skip(1).map(ToString::to_string).collect();
        envelope.key = error.item().key().map(str::to_owned);
        envelope.tenant = error.tenant().map(str::to_owned);
        envelope.first_failure = letter.first_failure;
        envelope.last_failure = letter.last_failure;
        Box::pin(async move { self.0.push(envelope).await.map(drop) })
    }
}

/// Runs one worker until it is drained (a signal, or `idle_exit`).
///
/// # Errors
/// NATS, the store or the ledger failing for good.
pub async fn work(
    opts: &WorkOptions,
    store: Store,
    environment: &crate::environment::Environment,
) -> Result<WorkFigures, BoxError> {
    let started = Instant::now();
    let (client, context) = opts.topology.connect().await?;
    opts.topology.ensure_stream(&context).await?;
    let dlq = opts.topology.dead_letters(&context).await?;
    let consumer: consumer::PullConsumer = context
        .get_stream(&opts.topology.stream)
        .await?
        .get_or_create_consumer(
            "workers",
            consumer::pull::Config {
                durable_name: Some("workers".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: opts.ack_wait,
                max_ack_pending: 4096,
                ..Default::default()
            },
        )
        .await?;
    // A worker that starts while the database drops connections (a
    // failover, an operator's `pg_terminate_backend`) tries again.
    let startup = RetryPolicy::builder().max_attempts(5).initial_delay(Duration::from_millis(200)).build()?;
    let (engine, ledger, _payments) = startup
        .call(|| engine(&store, &opts.location, environment, opts.worker_id.as_deref()))
        .await
        .map_err(|e| format!("starting the worker: {e}"))?;
    let redelivery = RetryPolicy::builder()
        .max_attempts(8)
        .initial_delay(Duration::from_millis(500))
        .max_delay(Duration::from_secs(10))
        .build()?;
    let source = JetStreamSource::new(client.clone(), consumer.clone(), dlq.clone()).redelivery(redelivery).batch(256);
    let taken = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&taken);
    let per_tenant = KeyedBulkhead::new(Bulkhead::builder().limit(PER_TENANT))?;
    let pool = ledger.pool().clone();
    let settling = engine.clone();
    let pipeline = source
        .pipeline(Pipeline::builder().capacity(512))
        .await?
        .stage(
            Stage::try_map("parse", move |delivery: Delivery| {
                counted.fetch_add(1, Ordering::Relaxed);
                async move {
                    let line: Line = serde_json::from_slice(&delivery.payload)
                        .map_err(|e| Permanent::new(format!("not a line of the demo: {e}")))?;
                    let order = parse(&line).map_err(Permanent::new)?;
                    Ok::<_, BoxError>((delivery, line, order))
                }
            })
            .workers(4)
            .dead_letter(Arc::new(dlq.clone())),
        )
        .stage(
            Stage::try_map("saga", move |(delivery, line, order): (Delivery, Line, Order)| {
                let (engine, pool) = (engine.clone(), pool.clone());
                async move {
                    let outcome = match intake::start(&engine, &pool, &line, order.clone(), None).await? {
                        Started::Completed => Outcome::Completed,
                        Started::Compensated => Outcome::Compensated,
                        Started::Failed => Outcome::Failed,
                        Started::Duplicate => Outcome::Duplicate,
                        Started::Elsewhere => Outcome::Elsewhere,
                        Started::Conflict(reason) => return Err(Permanent::new(reason).into()),
                    };
                    drop(delivery);
                    Ok::<_, BoxError>(outcome)
                }
            })
            .workers(2048)
            .tenant(|(_, _, order): &(Delivery, Line, Order)| order.tenant.clone())
            .bulkhead_per_tenant(per_tenant)
            .dead_letter(Arc::new(ParkMessages(dlq))),
        );
    let control = pipeline.control();
    let signals = Signals::default();
    let watcher = signals.watch(control.clone(), opts.quiet);
    let idle = opts.idle_exit.map(|after| tokio::spawn(drain_when_idle(consumer, control, after)));
    let counts = Arc::new(std::sync::Mutex::new([0u64; 5]));
    let tally = Arc::clone(&counts);
    let report = pipeline
        .for_each(move |outcome: Outcome| {
            tally.lock().unwrap_or_else(|p| p.into_inner())[outcome as usize] += 1;
            std::future::ready(Ok::<(), BoxError>(()))
        })
        .await;
    if let Some(idle) = idle {
        idle.abort();
    }
    if signals.seen() == 0 {
        // Sagas whose run failed midway (the store unreachable for a
        // moment) or whose worker died: finish them before leaving.
        let progress = Progress::new(opts.quiet, 0, 0);
        settle(&store, &settling, &signals, &progress).await?;
    }
    watcher.abort();
    // Acknowledgements are fire-and-forget: make sure they left.
    client.flush().await?;
    let report = report?;
    let [completed, compensated, failed, duplicates, elsewhere] = *counts.lock().unwrap_or_else(|p| p.into_inner());
    let dead_lettered = report.stages.iter().map(|s| s.dead_lettered).sum();
    let released = report.stages.iter().map(|s| s.released).sum();
    Ok(WorkFigures {
        taken: taken.load(Ordering::Relaxed),
        completed,
        compensated,
        failed,
        duplicates,
        elsewhere,
        dead_lettered,
        released,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Drains the run once the consumer has had no message waiting and none
/// in flight anywhere for `after`.
async fn drain_when_idle(mut consumer: consumer::PullConsumer, control: weir::pipeline::Control, after: Duration) {
    let mut quiet_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let idle = match consumer.info().await {
            Ok(info) => info.num_pending == 0 && info.num_ack_pending == 0,
            Err(_) => false,
        };
        match (idle, quiet_since) {
            (false, _) => quiet_since = None,
            (true, None) => quiet_since = Some(Instant::now()),
            (true, Some(since)) if since.elapsed() >= after => {
                control.drain();
                return;
            }
            (true, Some(_)) => {}
        }
    }
}
