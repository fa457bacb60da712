//! Circuit breaker cost per call on the closed, succeeding path, from one
//! thread and from two contending threads: weir beside recloser and
//! failsafe. Also counts allocations per call. Run with
//! `cargo bench -p weir --bench breaker`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use weir::policy::breaker::{Breaker, CircuitOpen};

#[derive(Debug)]
struct Never;

impl From<CircuitOpen> for Never {
    fn from(_: CircuitOpen) -> Self {
        Never
    }
}

/// The full async `call` of weir, polled once (it completes at once).
fn weir_call(b: &Breaker) {
    let r = b.call(|| async { Ok::<u64, Never>(black_box(1)) }).now_or_never();
    assert!(matches!(r, Some(Ok(1))));
}

fn recloser_call(r: &recloser::Recloser) {
    assert!(r.call(|| Ok::<u64, ()>(black_box(1))).is_ok());
}

fn failsafe_call<F: failsafe::CircuitBreaker>(f: &F) {
    assert!(f.call(|| Ok::<u64, ()>(black_box(1))).is_ok());
}

/// Runs `per_call` `iters` times on each of two threads at once; returns
/// the wall time divided by nothing (criterion divides by `iters`).
fn contended<T: Send + Sync + 'static>(shared: Arc<T>, iters: u64, per_call: fn(&T)) -> Duration {
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (shared, barrier) = (Arc::clone(&shared), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for _ in 0..iters {
                    per_call(&shared);
                }
                start.elapsed()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("bench thread")).max().unwrap_or_default()
}

fn breakers() -> (Arc<Breaker>, Arc<recloser::Recloser>, Arc<impl failsafe::CircuitBreaker + Send + Sync>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let weir = rt.block_on(async { Breaker::builder().build().expect("defaults are valid") });
    (Arc::new(weir), Arc::new(recloser::Recloser::default()), Arc::new(failsafe::Config::new().build()))
}

fn per_call(c: &mut Criterion) {
    let (weir, recloser, failsafe) = breakers();
    let mut group = c.benchmark_group("breaker_closed_success");
    group.bench_function("weir/1_thread", |b| b.iter(|| weir_call(&weir)));
    group.bench_function("bare_async_baseline/1_thread", |b| {
        b.iter(|| assert!(matches!(async { Ok::<u64, Never>(black_box(1)) }.now_or_never(), Some(Ok(1)))))
    });
    group.bench_function("weir_permit/1_thread", |b| b.iter(|| weir.try_acquire().expect("closed").success()));
    group.bench_function("recloser/1_thread", |b| b.iter(|| recloser_call(&recloser)));
    group.bench_function("failsafe/1_thread", |b| b.iter(|| failsafe_call(&*failsafe)));
    group.bench_function("weir/2_threads", |b| b.iter_custom(|n| contended(Arc::clone(&weir), n, weir_call)));
    group.bench_function("recloser/2_threads", |b| {
        b.iter_custom(|n| contended(Arc::clone(&recloser), n, recloser_call))
    });
    group.bench_function("failsafe/2_threads", |b| {
        let f = Arc::clone(&failsafe);
        b.iter_custom(move |n| contended(Arc::clone(&f), n, failsafe_call))
    });
    group.finish();

    let calls = 10_000u64;
    for (name, info) in [
        ("weir", allocation_counter::measure(|| (0..calls).for_each(|_| weir_call(&weir)))),
        ("recloser", allocation_counter::measure(|| (0..calls).for_each(|_| recloser_call(&recloser)))),
        ("failsafe", allocation_counter::measure(|| (0..calls).for_each(|_| failsafe_call(&*failsafe)))),
    ] {
        println!("allocations per call, {name}: {:.3}", info.count_total as f64 / calls as f64);
    }
}

criterion_group!(benches, per_call);
criterion_main!(benches);
