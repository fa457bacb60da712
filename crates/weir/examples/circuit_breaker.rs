//! Seed task 15: a circuit breaker on a pipeline stage. The payment
//! provider goes down: after 5 failures the breaker opens and later orders
//! fail fast without calling it; 30 s later a probe finds it healthy and
//! the breaker closes. Runs on tokio's paused clock, so the 30 s pass at
//! once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use weir::pipeline::{OnError, Pipeline, Stage, StageFn};
use weir::policy::breaker::{Breaker, CircuitOpen, State};

fn charge(
    breaker: &Breaker,
    provider_up: &Arc<AtomicBool>,
    calls: &Arc<AtomicU32>,
) -> Stage<u32, impl StageFn<u32, Output = u32>> {
    let (up, calls) = (Arc::clone(provider_up), Arc::clone(calls));
    Stage::try_map("charge", move |order: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        let up = up.load(Ordering::SeqCst);
        async move { if up { Ok(order) } else { Err(format!("provider timeout for order {order}")) } }
    })
    .breaker(breaker.clone())
    .on_error(OnError::Collect)
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let breaker = Breaker::builder()
        .name("payments")
        .consecutive_failures(5)
        .open_for(Duration::from_secs(30))
        .on_state_change(|c| println!("  breaker `{}`: {} -> {}", c.breaker, c.from, c.to))
        .build()
        .expect("valid settings");
    let (up, calls) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(0)));

    println!("provider down, 20 orders:");
    let err = Pipeline::from_iter(1..=20u32).stage(charge(&breaker, &up, &calls)).collect().await.unwrap_err();
    let failures = err.collected().expect("collected");
    let fast = failures.errors().filter(|e| e.cause().is::<CircuitOpen>()).count();
    println!("  provider called {} times; {fast} orders failed fast", calls.load(Ordering::SeqCst));
    assert_eq!((calls.load(Ordering::SeqCst), fast), (5, 15));

    up.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(30)).await;
    println!("30 s later, provider back, 20 orders:");
    let (charged, _) =
        Pipeline::from_iter(21..=40u32).stage(charge(&breaker, &up, &calls)).collect().await.expect("all pass");
    println!("  {} orders charged; breaker {}", charged.len(), breaker.state());
    println!("  metrics: {:?}", breaker.metrics());
    assert_eq!((charged.len(), breaker.state()), (20, State::Closed));
}
