//! Memory and allocations, counted by a counting global allocator in this
//! bench binary (everything runs on one thread, where the counter looks):
//! bytes per pending task in a group, allocations per spawned task, peak
//! memory of the 2,000,000-item pipeline, allocations per retry call.
//! Run with `cargo bench -p weir --bench memory`.

use std::hint::black_box;
use std::time::Duration;

use allocation_counter::{AllocationInfo, measure};
use backon::{ExponentialBuilder, Retryable};
use weir::group::Group;
use weir::pipeline::{Pipeline, Stage};
use weir::policy::retry::RetryPolicy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PENDING: u64 = 100_000;

fn on_one_thread<F: std::future::Future<Output = ()>>(work: F) -> AllocationInfo {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    measure(|| rt.block_on(work))
}

fn main() {
    let group = on_one_thread(async {
        let group: Group<BoxError> = Group::builder().workers(1).build().expect("valid");
        for _ in 0..PENDING {
            group.spawn(std::future::pending()).await;
        }
        tokio::task::yield_now().await; // the worker takes them all in
        group.cancel();
        let _ = group.wait().await;
    });
    let join_set = on_one_thread(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..PENDING {
            set.spawn(std::future::pending::<()>());
        }
        tokio::task::yield_now().await;
        set.abort_all();
        while set.join_next().await.is_some() {}
    });
    println!(
        "bytes per pending task: weir Group {} (peak {} MB for {PENDING}), tokio JoinSet {}",
        group.bytes_max / PENDING,
        group.bytes_max / 1_000_000,
        join_set.bytes_max / PENDING
    );

    let spawned = 200_000u64;
    let weir_spawn = on_one_thread(async move {
        let group: Group<BoxError> = Group::builder().workers(1).build().expect("valid");
        for _ in 0..spawned {
            group.spawn(async { Ok(()) }).await;
        }
        group.wait().await.expect("ok");
    });
    let tokio_spawn = on_one_thread(async move {
        let handles: Vec<_> = (0..spawned).map(|_| tokio::spawn(async {})).collect();
        for handle in handles {
            handle.await.expect("joined");
        }
    });
    println!(
        "allocations per spawned no-op task: weir Group {:.2}, tokio::spawn + handles {:.2}",
        weir_spawn.count_total as f64 / spawned as f64,
        tokio_spawn.count_total as f64 / spawned as f64
    );

    const ITEMS: u64 = 2_000_000;
    let pipeline = on_one_thread(async {
        let (sum, _) = Pipeline::builder()
            .capacity(64)
            .from_iter(0..ITEMS)
            .stage(Stage::map("double", |n: u64| async move { n * 2 }))
            .fold(0u64, |s, n| s + n)
            .await
            .expect("runs");
        black_box(sum);
    });
    let mpsc = on_one_thread(async {
        let (tx1, mut rx1) = tokio::sync::mpsc::channel::<u64>(64);
        let (tx2, mut rx2) = tokio::sync::mpsc::channel::<u64>(64);
        let producer = tokio::spawn(async move {
            for n in 0..ITEMS {
                let _ = tx1.send(n).await;
            }
        });
        let doubler = tokio::spawn(async move {
            while let Some(n) = rx1.recv().await {
                let _ = tx2.send(n * 2).await;
            }
        });
        let mut sum = 0u64;
        while let Some(n) = rx2.recv().await {
            sum += n;
        }
        black_box(sum);
        let _ = (producer.await, doubler.await);
    });
    println!(
        "2,000,000-item pipeline at capacity 64: weir peak {} KB in {} allocations; tokio mpsc peak {} KB in {} allocations",
        pipeline.bytes_max / 1000,
        pipeline.count_total,
        mpsc.bytes_max / 1000,
        mpsc.count_total
    );

    let calls = 10_000u64;
    let policy = RetryPolicy::builder().max_attempts(3).initial_delay(Duration::from_millis(1)).build().expect("valid");
    let weir_retry = on_one_thread(async {
        for _ in 0..calls {
            let v = policy.call(|| async { Ok::<u64, BoxError>(black_box(1)) }).await.expect("ok");
            black_box(v);
        }
    });
    let backon_retry = on_one_thread(async {
        for _ in 0..calls {
            let call = || async { Ok::<u64, BoxError>(black_box(1)) };
            let v = call.retry(ExponentialBuilder::default().with_max_times(2)).await.expect("ok");
            black_box(v);
        }
    });
    println!(
        "allocations per retry call on the success path: weir {:.2}, backon {:.2}",
        weir_retry.count_total as f64 / calls as f64,
        backon_retry.count_total as f64 / calls as f64
    );
}
