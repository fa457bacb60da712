//! Fairness to CPU-heavy siblings: on a 2-thread runtime, a few tasks that
//! compute without awaiting and 200 short async tasks; how long each short
//! task takes from the first spawn to its end, as p50 / p99 / max, weir's
//! Group beside tokio's JoinSet in the same run. Shapes:
//!
//! - `4 long first`: 4 tasks of 50 ms of CPU spawned first, then the short
//!   ones (the shape of issue 12);
//! - `1 long first`: one such task, then the short ones;
//! - `4 long last`: the short ones first, then 4 long tasks;
//! - `4 poll-heavy`: 4 tasks of 50 polls of 1 ms each, then the short ones.
//!
//! Prints one line per shape and side, and the ratio weir ÷ JoinSet of each
//! percentile, the median of 9 runs. Run with
//! `cargo bench -p weir --bench fairness`.

use std::time::{Duration, Instant};

use weir::group::Group;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SHORT: usize = 200;
const RUNS: usize = 9;

#[derive(Clone, Copy)]
enum Shape {
    LongFirst(usize),
    LongLast(usize),
    PollHeavy(usize),
}

impl Shape {
    fn name(self) -> String {
        match self {
            Shape::LongFirst(n) => format!("{n} long first"),
            Shape::LongLast(n) => format!("{n} long last"),
            Shape::PollHeavy(n) => format!("{n} poll-heavy"),
        }
    }

    /// The tasks in spawn order: `None` a short one, `Some(polls)` a long
    /// one computing `polls` times for `50 ms / polls` between yields.
    fn tasks(self) -> Vec<Option<u32>> {
        let shorts = std::iter::repeat_n(None, SHORT);
        match self {
            Shape::LongFirst(n) => std::iter::repeat_n(Some(1), n).chain(shorts).collect(),
            Shape::LongLast(n) => shorts.chain(std::iter::repeat_n(Some(1), n)).collect(),
            Shape::PollHeavy(n) => std::iter::repeat_n(Some(50), n).chain(shorts).collect(),
        }
    }
}

/// Computes for `total` without awaiting, in `polls` slices with a yield
/// between them.
async fn compute(polls: u32, total: Duration) {
    for _ in 0..polls {
        let until = Instant::now() + total / polls;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        tokio::task::yield_now().await;
    }
}

/// A short async task: awaits twice, records when it ended.
async fn short(start: Instant, done: std::sync::Arc<std::sync::Mutex<Vec<Duration>>>) {
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    done.lock().expect("not poisoned").push(start.elapsed());
}

type Done = std::sync::Arc<std::sync::Mutex<Vec<Duration>>>;

async fn weir_group(shape: Shape) -> Vec<Duration> {
    let done: Done = Default::default();
    let group: Group<BoxError> = Group::new();
    let start = Instant::now();
    for task in shape.tasks() {
        let done = done.clone();
        group
            .spawn(async move {
                match task {
                    Some(polls) => compute(polls, Duration::from_millis(50)).await,
                    None => short(start, done).await,
                }
                Ok(())
            })
            .await;
    }
    group.wait().await.expect("no task fails");
    std::mem::take(&mut *done.lock().expect("not poisoned"))
}

async fn join_set(shape: Shape) -> Vec<Duration> {
    let done: Done = Default::default();
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    for task in shape.tasks() {
        let done = done.clone();
        set.spawn(async move {
            match task {
                Some(polls) => compute(polls, Duration::from_millis(50)).await,
                None => short(start, done).await,
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.expect("no task panics");
    }
    std::mem::take(&mut *done.lock().expect("not poisoned"))
}

/// p50, p99 and max of one run, in ms.
fn percentiles(mut run: Vec<Duration>) -> [f64; 3] {
    run.sort();
    let at = |q: f64| run[((run.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    [at(0.5), at(0.99), at(1.0)]
}

/// The median of each percentile over the runs.
fn median(runs: &[[f64; 3]]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (i, slot) in out.iter_mut().enumerate() {
        let mut column: Vec<f64> = runs.iter().map(|r| r[i]).collect();
        column.sort_by(f64::total_cmp);
        *slot = column[column.len() / 2];
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for shape in [Shape::LongFirst(4), Shape::LongFirst(1), Shape::LongLast(4), Shape::PollHeavy(4)] {
        let (mut weir, mut tokio) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            // Alternated, so drift in the machine's speed hits both sides.
            weir.push(percentiles(rt.block_on(async { tokio::spawn(weir_group(shape)).await.expect("ran") })));
            tokio.push(percentiles(rt.block_on(async { tokio::spawn(join_set(shape)).await.expect("ran") })));
        }
        let (w, t) = (median(&weir), median(&tokio));
        let name = shape.name();
        println!("fairness, {name}, weir Group: p50 {:.1}ms p99 {:.1}ms max {:.1}ms", w[0], w[1], w[2]);
        println!("fairness, {name}, tokio JoinSet: p50 {:.1}ms p99 {:.1}ms max {:.1}ms", t[0], t[1], t[2]);
        println!(
            "fairness, {name}, weir / JoinSet: p50 {:.2} p99 {:.2} max {:.2}",
            w[0] / t[0].max(0.001),
            w[1] / t[1].max(0.001),
            w[2] / t[2].max(0.001)
        );
    }
}
