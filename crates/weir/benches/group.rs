//! Spawn + wait of many no-op tasks: weir's Group beside tokio's JoinSet,
//! plain `tokio::spawn` with awaited handles, and `FuturesUnordered`.
//! (Cancel latency, as percentiles, is in the `latency` bench.) Run with
//! `cargo bench -p weir --bench group`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use weir::group::Group;

const TASKS: u64 = 200_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime")
}

/// Runs `work` as a task of the runtime, as application code would, rather
/// than on the benchmark's own thread.
async fn in_task<F: std::future::Future<Output = ()> + Send + 'static>(work: F) {
    tokio::spawn(work).await.expect("the driver task ran");
}

async fn weir_group(limit: Option<usize>) {
    let builder = Group::<BoxError>::builder();
    let builder = match limit {
        Some(limit) => builder.limit(limit),
        None => builder,
    };
    let group: Group<BoxError> = builder.build().expect("valid");
    for _ in 0..TASKS {
        group.spawn(async { Ok(()) }).await;
    }
    group.wait().await.expect("no task fails");
}

async fn join_set() {
    let mut set: tokio::task::JoinSet<Result<(), BoxError>> = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        set.spawn(async { Ok::<(), BoxError>(()) });
    }
    while let Some(result) = set.join_next().await {
        result.expect("joined").expect("ok");
    }
}

async fn join_set_limited(limit: usize) {
    let mut set: tokio::task::JoinSet<Result<(), BoxError>> = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        if set.len() >= limit {
            set.join_next().await.expect("a task").expect("joined").expect("ok");
        }
        set.spawn(async { Ok::<(), BoxError>(()) });
    }
    while let Some(result) = set.join_next().await {
        result.expect("joined").expect("ok");
    }
}

async fn plain_spawn() {
    let handles: Vec<_> = (0..TASKS).map(|_| tokio::spawn(async { Ok::<(), BoxError>(()) })).collect();
    for handle in handles {
        handle.await.expect("joined").expect("ok");
    }
}

async fn futures_unordered() {
    let mut all: FuturesUnordered<_> = (0..TASKS).map(|_| async { Ok::<(), BoxError>(()) }).collect();
    while let Some(result) = all.next().await {
        result.expect("ok");
    }
}

fn spawn_wait(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("spawn_wait");
    group.throughput(Throughput::Elements(TASKS));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("weir_group", "unlimited"), |b| {
        b.to_async(&rt).iter(|| in_task(weir_group(None)))
    });
    group.bench_function(BenchmarkId::new("weir_group", "limit_8"), |b| {
        b.to_async(&rt).iter(|| in_task(weir_group(Some(8))))
    });
    group.bench_function(BenchmarkId::new("join_set", "unlimited"), |b| b.to_async(&rt).iter(|| in_task(join_set())));
    group.bench_function(BenchmarkId::new("join_set", "limit_8"), |b| {
        b.to_async(&rt).iter(|| in_task(join_set_limited(8)))
    });
    group.bench_function(BenchmarkId::new("tokio_spawn", "unlimited"), |b| {
        b.to_async(&rt).iter(|| in_task(plain_spawn()))
    });
    group.bench_function(BenchmarkId::new("futures_unordered", "one_task"), |b| {
        b.to_async(&rt).iter(|| in_task(futures_unordered()))
    });
    group.finish();
}

criterion_group!(benches, spawn_wait);
criterion_main!(benches);
