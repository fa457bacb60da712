//! A 3-stage pipeline of 2,000,000 u64 (produce → ×2 → sum) at link
//! capacity 1 and 64: weir's Pipeline beside hand-written tokio mpsc
//! stages, `futures` stream combinators, and a batched transfer (the
//! ceiling). Run with `cargo bench -p weir --bench pipeline`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use weir::pipeline::{Pipeline, Stage};

const ITEMS: u64 = 2_000_000;
const EXPECTED: u64 = ITEMS * (ITEMS - 1);

async fn weir_pipeline(capacity: usize) {
    let (sum, _) = Pipeline::builder()
        .capacity(capacity)
        .from_iter(0..ITEMS)
        .stage(Stage::map("double", |n: u64| async move { n * 2 }))
        .fold(0u64, |sum, n| sum + n)
        .await
        .expect("no stage fails");
    assert_eq!(sum, EXPECTED);
}

/// Go's shape written by hand: a task per stage, an mpsc channel between.
async fn tokio_mpsc(capacity: usize) {
    let (tx1, mut rx1) = mpsc::channel::<u64>(capacity);
    let (tx2, mut rx2) = mpsc::channel::<u64>(capacity);
    let producer = tokio::spawn(async move {
        for n in 0..ITEMS {
            if tx1.send(n).await.is_err() {
                return;
            }
        }
    });
    let doubler = tokio::spawn(async move {
        while let Some(n) = rx1.recv().await {
            if tx2.send(n * 2).await.is_err() {
                return;
            }
        }
    });
    let mut sum = 0u64;
    while let Some(n) = rx2.recv().await {
        sum += n;
    }
    producer.await.expect("producer");
    doubler.await.expect("doubler");
    assert_eq!(sum, EXPECTED);
}

/// The same through `futures` combinators in one task.
async fn stream_combinators(capacity: usize) {
    let sum = futures_util::stream::iter(0..ITEMS)
        .map(|n| async move { n * 2 })
        .buffered(capacity)
        .fold(0u64, |sum, n| async move { sum + n })
        .await;
    assert_eq!(sum, EXPECTED);
}

/// The ceiling: the same stages moving 1024-item vectors.
async fn batched() {
    let (tx1, mut rx1) = mpsc::channel::<Vec<u64>>(4);
    let (tx2, mut rx2) = mpsc::channel::<Vec<u64>>(4);
    let producer = tokio::spawn(async move {
        let mut n = 0;
        while n < ITEMS {
            let end = (n + 1024).min(ITEMS);
            if tx1.send((n..end).collect()).await.is_err() {
                return;
            }
            n = end;
        }
    });
    let doubler = tokio::spawn(async move {
        while let Some(mut batch) = rx1.recv().await {
            batch.iter_mut().for_each(|n| *n *= 2);
            if tx2.send(batch).await.is_err() {
                return;
            }
        }
    });
    let mut sum = 0u64;
    while let Some(batch) = rx2.recv().await {
        sum += batch.iter().sum::<u64>();
    }
    producer.await.expect("producer");
    doubler.await.expect("doubler");
    assert_eq!(sum, EXPECTED);
}

async fn in_task<F: std::future::Future<Output = ()> + Send + 'static>(work: F) {
    tokio::spawn(work).await.expect("the driver task ran");
}

fn three_stages(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("pipeline_3_stages_2M");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    for capacity in [1usize, 64] {
        group.bench_function(BenchmarkId::new("weir", capacity), |b| {
            b.to_async(&rt).iter(|| in_task(weir_pipeline(capacity)))
        });
        group.bench_function(BenchmarkId::new("tokio_mpsc", capacity), |b| {
            b.to_async(&rt).iter(|| in_task(tokio_mpsc(capacity)))
        });
        group.bench_function(BenchmarkId::new("stream_buffered", capacity), |b| {
            b.to_async(&rt).iter(|| in_task(stream_combinators(capacity)))
        });
    }
    group.bench_function("batched_ceiling", |b| b.to_async(&rt).iter(|| in_task(batched())));
    group.finish();
}

/// Items of about 20 µs of CPU each.
const CPU_ITEMS: u64 = 2_000;

/// A stage of 16 unordered workers doing CPU work: with 2 runtime threads
/// it should take about half the time it takes with 1.
async fn sixteen_cpu_workers() {
    let (count, _) = Pipeline::from_iter(0..CPU_ITEMS)
        .stage(
            Stage::map("spin", |n: u64| async move {
                let until = std::time::Instant::now() + std::time::Duration::from_micros(20);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                n
            })
            .workers(16),
        )
        .fold(0u64, |count, _| count + 1)
        .await
        .expect("no stage fails");
    assert_eq!(count, CPU_ITEMS);
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("stage_16_workers_cpu");
    group.throughput(Throughput::Elements(CPU_ITEMS));
    group.sample_size(10);
    for threads in [1usize, 2] {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
        group.bench_function(BenchmarkId::new("weir_threads", threads), |b| {
            b.to_async(&rt).iter(|| in_task(sixteen_cpu_workers()))
        });
    }
    group.finish();
}

criterion_group!(benches, three_stages, scaling);
criterion_main!(benches);
