//! What metrics cost a pipeline: the 3-stage pipeline of the `pipeline`
//! bench (2,000,000 u64, produce → ×2 → sum, capacity 1 and 64) and a
//! 4-worker unordered stage, each run with metrics **on** (a Prometheus
//! recorder taking every count, gauge and histogram) and **off** (the
//! facade's no-op handles), alternated in one process so both see the
//! same machine. Prints the median of each and the ratio on/off; the bar
//! (issue 16) is on ≥ 0.95× off.
//!
//! With the `metrics` feature off nothing is compiled in (weir's recording
//! handles are zero-sized with empty inline functions), so "off" here is
//! the dearer of the two ways to have no metrics.
//!
//! Run with `cargo bench -p weir --features prometheus --bench observe`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use weir::pipeline::{Pipeline, Stage};

const ITEMS: u64 = 2_000_000;
const ROUNDS: usize = 7;

/// Hands out the Prometheus recorder's handles while `ON` is set, no-op
/// handles otherwise. weir takes its handles when a pipeline starts, so
/// flipping `ON` between runs switches the whole run.
struct Switch(PrometheusRecorder);

static ON: AtomicBool = AtomicBool::new(false);

impl Recorder for Switch {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if ON.load(Ordering::Relaxed) { self.0.register_counter(key, metadata) } else { Counter::noop() }
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if ON.load(Ordering::Relaxed) { self.0.register_gauge(key, metadata) } else { Gauge::noop() }
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if ON.load(Ordering::Relaxed) { self.0.register_histogram(key, metadata) } else { Histogram::noop() }
    }
}

async fn three_stages(capacity: usize) {
    let (sum, _) = Pipeline::builder()
        .capacity(capacity)
        .from_iter(0..ITEMS)
        .stage(Stage::map("double", |n: u64| async move { n * 2 }))
        .fold(0u64, |sum, n| sum + n)
        .await
        .expect("no stage fails");
    assert_eq!(sum, ITEMS * (ITEMS - 1));
}

async fn four_workers() {
    let (count, _) = Pipeline::from_iter(0..ITEMS)
        .stage(Stage::map("double", |n: u64| async move { n * 2 }).workers(4))
        .fold(0u64, |count, _| count + 1)
        .await
        .expect("no stage fails");
    assert_eq!(count, ITEMS);
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let page = recorder.handle();
    metrics::set_global_recorder(Switch(recorder)).expect("no other recorder in this bench");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let run = |shape: &str| {
        let started = Instant::now();
        match shape {
            "capacity 1" => rt.block_on(async { tokio::spawn(three_stages(1)).await }),
            "capacity 64" => rt.block_on(async { tokio::spawn(three_stages(64)).await }),
            _ => rt.block_on(async { tokio::spawn(four_workers()).await }),
        }
        .expect("the pipeline ran");
        started.elapsed()
    };
    println!("{:<26} {:>12} {:>12} {:>9}", "pipeline (2M items)", "off ms", "on ms", "on/off");
    for shape in ["capacity 1", "capacity 64", "4 workers unordered"] {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        run(shape); // warm-up
        for round in 0..ROUNDS {
            // Alternate which goes first, so drift hits both alike.
            for metrics_on in [round % 2 == 0, round % 2 == 1] {
                ON.store(metrics_on, Ordering::Relaxed);
                let took = run(shape);
                if metrics_on { on.push(took) } else { off.push(took) }
            }
            page.run_upkeep();
        }
        let (off, on) = (median(off), median(on));
        // Throughput on / off: the time off over the time on.
        let ratio = off.as_secs_f64() / on.as_secs_f64();
        println!("{shape:<26} {:>12.1} {:>12.1} {ratio:>8.3}×", off.as_secs_f64() * 1e3, on.as_secs_f64() * 1e3);
    }
    // The "on" runs really recorded: every item received by the stage.
    let text = page.render();
    let received = text
        .lines()
        .find(|line| line.starts_with("weir_stage_items_total") && line.contains("outcome=\"received\""))
        .expect("the stage's items were recorded");
    println!("recorded: {received}");
}
