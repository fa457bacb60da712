//! Cancel latency, as percentiles: 10,000 tasks blocked, one fails, how
//! long until `wait` returns with every task dropped; weir's Group beside
//! tokio's JoinSet (`abort_all` on the first error, then drain). Also a
//! pipeline's abort with 16 blocked workers. Prints p50 / p99 of 50 runs.
//! Run with `cargo bench -p weir --bench latency`.

use std::time::{Duration, Instant};

use weir::group::Group;
use weir::pipeline::{Pipeline, Stage};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const BLOCKED: usize = 10_000;
const RUNS: usize = 50;

async fn weir_group() -> Duration {
    let group: Group<BoxError> = Group::new();
    for _ in 0..BLOCKED {
        group.spawn(std::future::pending()).await;
    }
    tokio::task::yield_now().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
    group
        .spawn(async move {
            let _ = tx.send(Instant::now());
            Err("boom".into())
        })
        .await;
    assert!(group.wait().await.is_err());
    let returned = Instant::now();
    returned - rx.await.expect("the failing task ran")
}

async fn join_set() -> Duration {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..BLOCKED {
        set.spawn(std::future::pending::<Result<(), BoxError>>());
    }
    tokio::task::yield_now().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
    set.spawn(async move {
        let _ = tx.send(Instant::now());
        Err("boom".into())
    });
    while let Some(joined) = set.join_next().await {
        if matches!(joined, Ok(Err(_))) {
            set.abort_all();
        }
    }
    let returned = Instant::now();
    returned - rx.await.expect("the failing task ran")
}

async fn pipeline_abort() -> Duration {
    let pipeline = Pipeline::from_iter(0..100_000u32).stage(
        Stage::map("stuck", |n: u32| async move {
            std::future::pending::<()>().await;
            n
        })
        .workers(16),
    );
    let control = pipeline.control();
    let run = tokio::spawn(pipeline.collect());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let aborted = Instant::now();
    control.abort();
    let _ = run.await.expect("the run task");
    aborted.elapsed()
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[(samples.len() * 99 / 100).min(samples.len() - 1)])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for (name, run) in [("weir Group", 0), ("tokio JoinSet", 1), ("weir Pipeline abort, 16 blocked workers", 2)] {
        let samples: Vec<Duration> = (0..RUNS)
            .map(|_| {
                rt.block_on(async {
                    tokio::spawn(async move {
                        match run {
                            0 => weir_group().await,
                            1 => join_set().await,
                            _ => pipeline_abort().await,
                        }
                    })
                    .await
                    .expect("bench task")
                })
            })
            .collect();
        let (p50, p99) = percentiles(samples);
        println!("cancel latency, {name}: p50 {p50:?} p99 {p99:?}");
    }
}
