//! Pipelines on NATS JetStream, across processes: messages/s with 1, 2
//! and 4 worker processes on one durable consumer, each item a simulated
//! 1 ms I/O call; and the cost per message of the broker's bookkeeping
//! (pull, ack, keep-alive) against the same pipeline fed in process.
//!
//! `WEIR_BENCH_NATS_URL=nats://127.0.0.1:4222 cargo bench -p weir --features nats --bench broker`
//! (skipped without the variable). Each run makes its own streams and
//! deletes them. The workers are this program started again with
//! `WEIR_BENCH_BROKER_WORKER` set.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, stream};
use weir::broker::nats::{Delivery, JetStreamDlq, JetStreamSource};
use weir::error::BoxError;
use weir::pipeline::{Pipeline, Stage};

/// Stage workers per process: an I/O-bound stage's concurrency.
const CONCURRENCY: usize = 16;

fn main() {
    if let Ok(stream) = std::env::var("WEIR_BENCH_BROKER_WORKER") {
        let work_ms: u64 = std::env::var("WEIR_BENCH_WORK_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        runtime().block_on(worker(&url(), &stream, Duration::from_millis(work_ms)));
        return;
    }
    let Ok(url) = std::env::var("WEIR_BENCH_NATS_URL") else {
        println!("broker bench skipped: set WEIR_BENCH_NATS_URL (a NATS server with JetStream)");
        return;
    };
    let rt = runtime();
    println!("messages/s, {CONCURRENCY} concurrent 1 ms calls per process, 20,000 messages:");
    let mut rates = Vec::new();
    for processes in [1, 2, 4] {
        let rate = rt.block_on(across_processes(&url, processes, 20_000, 1));
        println!("  {processes} process(es): {rate:>8.0} msg/s");
        rates.push(rate);
    }
    let local_rate = rt.block_on(in_process(20_000, Duration::from_millis(1)));
    println!("  in process, no broker: {local_rate:>8.0} msg/s");
    println!(
        "  scaling: 2 processes / 1 = {:.2} (bar >= 1.6); 4 / 1 = {:.2}",
        rates[1] / rates[0],
        rates[2] / rates[0]
    );

    println!("bookkeeping per message (no work per item), 50,000 messages, 1 process:");
    let broker = rt.block_on(across_processes(&url, 1, 50_000, 0));
    let local = rt.block_on(in_process(50_000, Duration::ZERO));
    println!("  JetStream source: {broker:>9.0} msg/s = {:.2} µs/msg", 1e6 / broker);
    println!("  in-process source: {local:>9.0} msg/s = {:.2} µs/msg", 1e6 / local);
    println!("  broker bookkeeping: {:.2} µs/msg", 1e6 / broker - 1e6 / local);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

fn url() -> String {
    std::env::var("WEIR_BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Publishes `messages`, starts `processes` workers, and times until every
/// message is acknowledged; messages/s.
async fn across_processes(url: &str, processes: usize, messages: u64, work_ms: u64) -> f64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let name = format!("weir_bench_{:08x}", fastrand::u32(..));
    js.create_stream(stream::Config { name: name.clone(), subjects: vec![format!("{name}.in")], ..Default::default() })
        .await
        .unwrap();
    let mut acks = Vec::with_capacity(1024);
    for n in 0..messages {
        acks.push(js.publish(format!("{name}.in"), format!("{n}").into()).await.unwrap());
        if acks.len() == 1024 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let mut consumer = consumer(&js, &name).await;
    let started = Instant::now();
    let mut children: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env("WEIR_BENCH_BROKER_WORKER", &name)
                .env("WEIR_BENCH_NATS_URL", url)
                .env("WEIR_BENCH_WORK_MS", work_ms.to_string())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    loop {
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_stream(format!("{name}_dlq")).await;
    messages as f64 / elapsed.as_secs_f64()
}

async fn consumer(js: &jetstream::Context, name: &str) -> jetstream::consumer::PullConsumer {
    js.get_stream(name)
        .await
        .unwrap()
        .get_or_create_consumer(
            "workers",
            pull::Config {
                durable_name: Some("workers".into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// One worker process: the pipeline on the shared consumer, until killed.
async fn worker(url: &str, name: &str, work: Duration) {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client.clone());
    let consumer = consumer(&js, name).await;
    let dlq_name = format!("{name}_dlq");
    let dlq = JetStreamDlq::create(js, &dlq_name, &dlq_name).await.unwrap();
    let pipeline = JetStreamSource::new(client, consumer, dlq)
        .batch(256)
        .pipeline(Pipeline::builder().capacity(256))
        .await
        .unwrap()
        .stage(Stage::map("call", move |delivery: Delivery| simulated_call(delivery, work)).workers(CONCURRENCY));
    let _ = pipeline.for_each(|_| async { Ok::<_, BoxError>(()) }).await;
}

async fn simulated_call(delivery: Delivery, work: Duration) -> u64 {
    if !work.is_zero() {
        tokio::time::sleep(work).await;
    }
    delivery.stream_sequence
}

/// The same pipeline fed from memory; messages/s.
async fn in_process(messages: u64, work: Duration) -> f64 {
    let started = Instant::now();
    let items = (0..messages).map(|n| Delivery::from_stored("bench.in", format!("{n}").into(), n));
    Pipeline::builder()
        .capacity(256)
        .from_iter(items)
        .stage(Stage::map("call", move |delivery: Delivery| simulated_call(delivery, work)).workers(CONCURRENCY))
        .for_each(|_| async { Ok::<_, BoxError>(()) })
        .await
        .unwrap();
    messages as f64 / started.elapsed().as_secs_f64()
}
