//! Overhead per call of weir's bulkhead, timeout, retry, breaker, policy
//! stack and hedge on the path where nothing goes wrong, beside the tokio
//! primitive or peer crate each compares with; and the batcher beside tokio-stream's `chunks_timeout`. Run with
//! `cargo bench -p weir --bench policies`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use tokio_stream::StreamExt as _;
use weir::error::BoxError;
use weir::pipeline::batch::Batcher;
use weir::policy::bulkhead::Bulkhead;
use weir::policy::hedge::{Hedge, HedgeDelay};
use weir::policy::timeout::Timeout;

fn per_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let bulkhead = rt.block_on(async { Bulkhead::builder().limit(8).build().expect("valid") });
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let timeout = Timeout::new(Duration::from_secs(1)).expect("valid");
    let hedge = Hedge::builder().delay(HedgeDelay::Fixed(Duration::from_secs(1))).build().expect("valid");
    let mut group = c.benchmark_group("policy_call");
    group.bench_function("plain_await", |b| b.to_async(&rt).iter(|| async { Ok::<_, BoxError>(black_box(1)) }));
    group.bench_function("weir_bulkhead", |b| {
        b.to_async(&rt).iter(|| bulkhead.call(|| async { Ok::<_, BoxError>(black_box(1)) }))
    });
    group.bench_function("tokio_semaphore", |b| {
        b.to_async(&rt).iter(|| async {
            let _permit = semaphore.acquire().await.expect("open");
            black_box(1)
        })
    });
    group.bench_function("weir_timeout", |b| {
        b.to_async(&rt).iter(|| timeout.call(|| async { Ok::<_, BoxError>(black_box(1)) }))
    });
    group.bench_function("tokio_timeout", |b| {
        b.to_async(&rt).iter(|| tokio::time::timeout(Duration::from_secs(1), async { black_box(1) }))
    });
    let policy = weir::policy::retry::RetryPolicy::builder().max_attempts(3).build().expect("valid");
    group.bench_function("weir_retry_success", |b| {
        b.to_async(&rt).iter(|| policy.call(|| async { Ok::<_, BoxError>(black_box(1)) }))
    });
    group.bench_function("backon_retry_success", |b| {
        b.to_async(&rt).iter(|| {
            use backon::Retryable;
            (|| async { Ok::<_, BoxError>(black_box(1)) })
                .retry(backon::ExponentialBuilder::default().with_max_times(2))
        })
    });
    let breaker = weir::policy::breaker::Breaker::builder().build().expect("valid");
    group.bench_function("weir_breaker_closed", |b| {
        b.to_async(&rt).iter(|| breaker.call(|| async { Ok::<_, BoxError>(black_box(1)) }))
    });
    // The bar: a stack of the three within 1.2x the sum of each alone
    // (weir_retry_success + weir_breaker_closed + weir_timeout).
    let stack = weir::policy::Stack::builder()
        .retry(policy.clone())
        .breaker(breaker.clone())
        .timeout(Duration::from_secs(1))
        .build()
        .expect("valid");
    group.bench_function("weir_stack_retry_breaker_timeout", |b| {
        b.to_async(&rt).iter(|| stack.call(|| async { Ok::<_, BoxError>(black_box(1)) }))
    });
    let empty = weir::policy::Stack::default();
    group.bench_function("weir_stack_empty", |b| {
        b.to_async(&rt).iter(|| empty.call(|| async { Ok::<_, BoxError>(black_box(1)) }))
    });
    group.bench_function("weir_hedge_not_fired", |b| {
        b.to_async(&rt).iter(|| hedge.call(|_| async { Ok::<_, BoxError>(black_box(1)) }))
    });
    group.finish();
}

fn batching(c: &mut Criterion) {
    const ITEMS: u64 = 1_000_000;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let batcher = Batcher::builder().max_items(100).max_wait(Duration::from_secs(1)).build().expect("valid");
    let mut group = c.benchmark_group("batch_1M_by_100");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(10);
    group.bench_function("weir_batcher", |b| {
        b.to_async(&rt).iter(|| async {
            let batches = batcher.batches(futures_util::stream::iter(0..ITEMS));
            let n = futures_util::StreamExt::fold(batches, 0usize, |n, b| async move { n + b.len() }).await;
            assert_eq!(n as u64, ITEMS);
        })
    });
    group.bench_function("tokio_stream_chunks_timeout", |b| {
        b.to_async(&rt).iter(|| async {
            let chunks = tokio_stream::iter(0..ITEMS).chunks_timeout(100, Duration::from_secs(1));
            let n = StreamExt::fold(chunks, 0usize, |n, b| async move { n + b.len() }).await;
            assert_eq!(n as u64, ITEMS);
        })
    });
    group.finish();
}

criterion_group!(benches, per_call, batching);
criterion_main!(benches);
