//! 100,000 sleeping sagas: what they cost while they sleep (tasks, slots)
//! and how late each wakes after its stored time, on a SQLite file with
//! `synchronous = FULL`, in real time (the store's clock is the wall
//! clock; tokio's paused time cannot stand in for it).
//!
//! `cargo bench -p weir --bench waits` (`WEIR_BENCH_SLEEPERS`,
//! `WEIR_BENCH_WAKE_WINDOW_S` to change the 100,000 sagas and the 60 s
//! over which their wake-up times are spread).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::Store;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn main() {
    let sleepers: usize = std::env::var("WEIR_BENCH_SLEEPERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let window_s: u64 = std::env::var("WEIR_BENCH_WAKE_WINDOW_S").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(sleepers, Duration::from_secs(window_s)));
}

async fn run(sleepers: usize, window: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("sleepers.db").to_str().unwrap()).await.unwrap();
    let lateness = Arc::new(std::sync::Mutex::new(Vec::with_capacity(sleepers)));
    let woke = Arc::new(AtomicUsize::new(0));
    let (late, count) = (lateness.clone(), woke.clone());
    let nap = SagaDefinition::builder("nap")
        .sleep_until("sleep", |ctx: &StepContext| {
            let wake: i64 = ctx.input()?;
            Ok(UNIX_EPOCH + Duration::from_millis(wake as u64))
        })
        .step_without_compensation("woke", move |ctx: StepContext| {
            let wake: Result<i64, _> = ctx.input();
            late.lock().unwrap().push(now_ms() - wake.unwrap_or_default());
            count.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, StepError>(()) }
        })
        .build()
        .unwrap();
    let engine = SagaEngine::builder(store).definition(nap).max_in_flight(256).build().unwrap();

    // Parking: every saga runs up to its sleep and is parked. The wake-up
    // times start after parking should be over (at ≥ 2,000 sagas/s) and
    // are spread evenly over the window.
    let started = Instant::now();
    let first_wake = now_ms() + (sleepers as i64 / 2) + 5_000;
    let spacing = window.as_millis() as f64 / sleepers as f64;
    let mut parking = tokio::task::JoinSet::new();
    for i in 0..sleepers {
        if parking.len() >= 512 {
            parking.join_next().await.unwrap().unwrap();
        }
        let engine = engine.clone();
        let wake = first_wake + (i as f64 * spacing) as i64;
        parking.spawn(async move {
            let parked = engine.run_with_id(&format!("s-{i}"), "nap", &wake).await.unwrap_err();
            assert!(parked.is_suspended(), "{parked}");
        });
    }
    while let Some(done) = parking.join_next().await {
        done.unwrap();
    }
    let parked_in = started.elapsed();
    let parked_by = now_ms();
    let alive = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    println!(
        "{sleepers} sagas parked in {:.1} s ({:.0}/s); while they sleep the runtime has {alive} tasks alive \
         (the engine's heartbeat, waker and store), and {} woke during parking",
        parked_in.as_secs_f64(),
        sleepers as f64 / parked_in.as_secs_f64(),
        woke.load(Ordering::Relaxed),
    );
    if parked_by > first_wake {
        println!(
            "  (parking ran {} ms past the first wake-up time: those woke late by that much)",
            parked_by - first_wake
        );
    }

    let deadline = Instant::now() + window + Duration::from_secs(120);
    while woke.load(Ordering::Relaxed) < sleepers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut late = lateness.lock().unwrap().clone();
    late.sort_unstable();
    let at = |q: f64| late[((late.len() - 1) as f64 * q) as usize];
    println!(
        "woke {} of {sleepers} over {} s: late by p50 {} ms, p99 {} ms, max {} ms (bar: p99 ≤ 100 ms); {} over 100 ms",
        late.len(),
        window.as_secs(),
        at(0.50),
        at(0.99),
        late.last().copied().unwrap_or_default(),
        late.iter().filter(|&&ms| ms > 100).count(),
    );
}
