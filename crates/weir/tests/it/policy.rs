//! Behaviour of `weir::policy`: one trait for every policy, one stack in
//! weir's order, one error convention.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use weir::error::{BoxError, Panicked, Permanent, TimedOut, find, is};
use weir::pipeline::{OnError, Pipeline, Stage};
use weir::policy::breaker::{Breaker, CircuitOpen, State};
use weir::policy::bulkhead::{Bulkhead, BulkheadFull, KeyedBulkhead};
use weir::policy::hedge::{Hedge, HedgeDelay};
use weir::policy::rate::{RateLimited, RateLimiter};
use weir::policy::retry::RetryPolicy;
use weir::policy::timeout::Timeout;
use weir::policy::{Policy, Stack};

fn retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder().max_attempts(attempts).initial_delay(Duration::from_millis(10)).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_stack_keeps_weirs_order_whatever_the_order_of_its_setters() {
    // Setters in reverse order: timeout first, retry last.
    let breaker = Breaker::builder().consecutive_failures(2).open_for(Duration::from_secs(60)).build().unwrap();
    let limiter = RateLimiter::builder().rate(3, Duration::from_secs(3600)).burst(3).build().unwrap();
    let stack = Stack::builder()
        .timeout(Duration::from_millis(100))
        .rate_limit(limiter.clone())
        .breaker(breaker.clone())
        .retry(retry(5))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let err = stack
        .call(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(10)).await; // every call times out
            Ok::<(), BoxError>(())
        })
        .await
        .unwrap_err();
    // Timeout inside the breaker: two timeouts counted as failures opened it.
    // Breaker inside the retry: the third attempt was refused, and the retry
    // stopped there (an open circuit is not transient).
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(find::<CircuitOpen>(&*err).unwrap().breaker(), breaker.name());
    // Breaker outside the rate limit: the refused attempt took no slot.
    let m = breaker.metrics();
    assert_eq!((m.failures, m.rejections), (2, 1));
    limiter.try_acquire().expect("the 2 calls made took 2 of the 3 slots");
    assert!(limiter.try_acquire().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_refusal_inside_the_breaker_is_not_a_failure_of_the_dependency() {
    let breaker = Breaker::builder().consecutive_failures(1).build().unwrap();
    let bulkhead = Bulkhead::builder().name("db").limit(1).max_wait(Duration::ZERO).build().unwrap();
    let stack = Stack::builder().breaker(breaker.clone()).bulkhead(bulkhead.clone()).build().unwrap();
    let held = bulkhead.acquire().await.unwrap();
    for _ in 0..3 {
        let err = stack.call(|| async { Ok::<(), BoxError>(()) }).await.unwrap_err();
        assert_eq!(find::<BulkheadFull>(&*err).unwrap().bulkhead(), "db");
    }
    assert_eq!(
        breaker.state(),
        State::Closed,
        "a full bulkhead says the caller is busy, not that the dependency is sick"
    );
    assert_eq!(breaker.metrics().failures, 0);
    drop(held);
    stack.call(|| async { Ok::<(), BoxError>(()) }).await.unwrap();
    assert_eq!(breaker.metrics().successes, 1);
}

#[tokio::test(start_paused = true)]
async fn each_hedged_copy_gets_its_own_timeout() {
    let hedge = Hedge::builder().delay(HedgeDelay::Fixed(Duration::from_millis(50))).build().unwrap();
    let stack = Stack::builder().timeout(Duration::from_millis(80)).hedge(hedge.clone()).build().unwrap();
    let calls = AtomicU32::new(0);
    let started = tokio::time::Instant::now();
    let value = stack
        .call(|| async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            // The first copy is slow (but within its bound when the hedge
            // fires); the hedge answers after 60 ms of its own.
            tokio::time::sleep(if n == 0 { Duration::from_secs(10) } else { Duration::from_millis(60) }).await;
            Ok::<_, BoxError>(n)
        })
        .await
        .unwrap();
    // Had the timeout bounded the whole hedge, it would have fired at 80 ms;
    // the hedge won at 50 + 60 = 110 ms.
    assert_eq!((value, started.elapsed()), (1, Duration::from_millis(110)));
    assert_eq!(hedge.metrics().won_by_hedge, 1);
}

#[tokio::test(start_paused = true)]
async fn another_order_is_stated_with_around() {
    let calls = AtomicU32::new(0);
    let op = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(400)).await;
        Err::<(), BoxError>("slow and failing".into())
    };
    // weir's order: each attempt bounded by 1 s, all 4 attempts made.
    let per_attempt = Stack::builder().retry(retry(4)).timeout(Duration::from_secs(1)).build().unwrap();
    per_attempt.call(op).await.unwrap_err();
    assert_eq!(calls.swap(0, Ordering::SeqCst), 4);
    // The timeout around the retry: 1 s for all attempts together.
    let overall = Timeout::new(Duration::from_secs(1)).unwrap().around(retry(4));
    let started = tokio::time::Instant::now();
    let err = overall.call(&op).await.unwrap_err();
    assert!(is::<TimedOut>(&*err));
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(calls.load(Ordering::SeqCst), 3, "the third attempt was cut short");
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_call_is_an_error_and_never_retried() {
    let stack = Stack::builder().retry(retry(5)).build().unwrap();
    let calls = AtomicU32::new(0);
    let err = stack
        .call(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            if calls.load(Ordering::SeqCst) > 0 {
                panic!("bug in the call");
            }
            Ok::<(), BoxError>(())
        })
        .await
        .unwrap_err();
    assert_eq!(find::<Panicked>(&*err).unwrap().message(), "bug in the call");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A permanent error is not retried either; a transient one is.
    let permanent = stack.call(|| async { Err::<(), BoxError>(Permanent::new("no such account").into()) });
    assert!(is::<Permanent>(&*permanent.await.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn per_key_policies_give_each_key_its_own_budget() {
    let bulkheads = KeyedBulkhead::new(Bulkhead::builder().limit(1).max_wait(Duration::ZERO)).unwrap();
    let limiters = Arc::new(
        RateLimiter::builder()
            .rate(1, Duration::from_secs(1))
            .max_wait(Duration::ZERO)
            .build_keyed::<String>()
            .unwrap(),
    );
    let stack = Stack::builder().bulkhead_per_key(bulkheads.clone()).rate_limit_per_key(limiters).build().unwrap();
    let ok = || async { Ok::<(), BoxError>(()) };
    stack.call_keyed("a", ok).await.unwrap();
    let err = stack.call_keyed("a", ok).await.unwrap_err();
    assert!(find::<RateLimited>(&*err).is_some_and(|r| r.limiter() == "a"), "{err}");
    stack.call_keyed("b", ok).await.unwrap();
    let _held = bulkheads.acquire(&"c".to_owned()).await.unwrap();
    assert!(is::<BulkheadFull>(&*stack.call_keyed("c", ok).await.unwrap_err()));
}

#[tokio::test]
async fn a_zero_timeout_is_a_configuration_error() {
    let err = Stack::builder().timeout(Duration::ZERO).build().unwrap_err();
    assert_eq!(err.setting(), "timeout");
    assert!(Stack::builder().build().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stages_sharing_one_stack_share_its_breaker() {
    let breaker = Breaker::builder().consecutive_failures(3).open_for(Duration::from_secs(60)).build().unwrap();
    let stack = Stack::builder().breaker(breaker.clone()).build().unwrap();
    let failing = Stage::try_map("charge", |n: u32| async move {
        if n < 100 { Err::<u32, BoxError>("card service down".into()) } else { Ok(n) }
    })
    .policies(stack.clone())
    .on_error(OnError::Collect);
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let later = Stage::try_map("refund", move |n: u32| {
        let calls = counted.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<u32, BoxError>(n)
        }
    })
    .policies(stack)
    .on_error(OnError::Collect);
    let err = Pipeline::from_iter(0..5u32).stage(failing).stage(later).collect().await.unwrap_err();
    assert_eq!(breaker.state(), State::Open);
    let report = err.report();
    assert_eq!(report.stage("charge").unwrap().failed, 5);
    // Items 3 and 4 were refused by the open breaker, never called.
    assert_eq!(breaker.metrics().rejections, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
