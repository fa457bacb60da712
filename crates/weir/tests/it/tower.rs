//! weir's policies as tower layers (feature `tower`).
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::FutureExt;

use tower::{Layer, Service, ServiceExt, service_fn};
use weir::error::{BoxError, Permanent, TimedOut, is};
use weir::policy::breaker::{Breaker, CircuitOpen, State};
use weir::policy::bulkhead::{Bulkhead, BulkheadFull};
use weir::policy::hedge::{Hedge, HedgeDelay};
use weir::policy::retry::{Jitter, RetryPolicy};
use weir::policy::timeout::Timeout;
use weir::tower::{BreakerLayer, BulkheadLayer, HedgeLayer, RetryLayer, TimeoutLayer};

#[tokio::test(start_paused = true)]
async fn the_breaker_layer_opens_and_rejects_without_calling_the_service() {
    let breaker = Breaker::builder().consecutive_failures(2).build().unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let failing = service_fn(move |_: ()| {
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Err::<(), BoxError>("down".into()) }
    });
    let service = BreakerLayer::new(breaker.clone()).layer(failing);
    for _ in 0..2 {
        assert!(service.clone().oneshot(()).await.is_err());
    }
    let err = service.clone().oneshot(()).await.unwrap_err();
    assert!(is::<CircuitOpen>(&*err));
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_layer_rejects_when_full_and_the_timeout_layer_bounds_calls() {
    let slow = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, BoxError>("done")
    });
    let bulkhead = Bulkhead::builder().limit(1).max_wait(Duration::ZERO).build().unwrap();
    let service = BulkheadLayer::new(bulkhead)
        .layer(TimeoutLayer::new(Timeout::new(Duration::from_secs(1)).unwrap()).layer(slow));
    let first = tokio::spawn(service.clone().oneshot(()));
    tokio::task::yield_now().await;
    let rejected = service.clone().oneshot(()).await.unwrap_err();
    assert!(is::<BulkheadFull>(&*rejected), "{rejected}");
    let timed_out = first.await.unwrap().unwrap_err();
    assert!(is::<TimedOut>(&*timed_out), "{timed_out}");
}

/// The rate limit layer holds callers back in `poll_ready` (backpressure
/// through `ServiceBuilder`), and refuses at once past its maximum wait.
#[tokio::test(start_paused = true)]
async fn the_rate_limit_layer_paces_in_poll_ready_and_refuses_past_its_wait() {
    use weir::policy::rate::{RateLimited, RateLimiter};
    use weir::tower::RateLimitLayer;
    let limiter = RateLimiter::builder().rate(4, Duration::from_secs(1)).build().unwrap();
    let mut service = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter))
        .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    let started = tokio::time::Instant::now();
    for n in 0..4 {
        let ready = service.ready().await.unwrap();
        assert_eq!(ready.call(n).await.unwrap(), n);
    }
    assert_eq!(started.elapsed(), Duration::from_millis(750), "0, 250, 500, 750 ms");

    let strict = RateLimiter::builder().rate(1, Duration::from_secs(1)).max_wait(Duration::ZERO).build().unwrap();
    let service = RateLimitLayer::new(strict).layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    assert_eq!(service.clone().oneshot(1).await.unwrap(), 1);
    let err = service.clone().oneshot(2).await.unwrap_err();
    assert!(is::<RateLimited>(&*err), "{err}");
}

/// The bulkhead layer takes its slot in `poll_ready`: a handle made ready
/// holds the only slot, so another handle is not ready (it waits, or with
/// no wait allowed fails with `BulkheadFull`) until the first call's
/// response future ends; a ready handle that is dropped frees its slot.
#[tokio::test(start_paused = true)]
async fn the_bulkhead_layer_takes_its_slot_in_poll_ready() {
    let bulkhead = Bulkhead::builder().limit(1).build().unwrap();
    let echo = tower::ServiceBuilder::new()
        .layer(BulkheadLayer::new(bulkhead.clone()))
        .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    let mut first = echo.clone();
    first.ready().await.unwrap();
    let mut second = echo.clone();
    assert!(second.ready().now_or_never().is_none(), "the only slot is held by a ready handle");
    let response = first.call(1);
    assert!(second.ready().now_or_never().is_none(), "the slot goes with the response future");
    assert_eq!(response.await.unwrap(), 1);
    assert!(second.ready().now_or_never().is_some(), "the slot is free once the response ended");
    drop(second);

    let strict = Bulkhead::builder().limit(1).max_wait(Duration::ZERO).build().unwrap();
    let echo = BulkheadLayer::new(strict).layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    let mut holder = echo.clone();
    holder.ready().await.unwrap();
    let refused = echo.clone().ready().await.map(drop).unwrap_err();
    assert!(is::<BulkheadFull>(&*refused), "{refused}");
    drop(holder);
    assert_eq!(echo.clone().oneshot(7).await.unwrap(), 7, "a dropped ready handle gave its slot back");
}

/// The retry layer retries transient failures with a clone of the request
/// (calling a fresh clone of the service each time) and gives up with the
/// last error; a permanent error is not retried.
#[tokio::test(start_paused = true)]
async fn the_retry_layer_retries_transient_failures_with_a_clone_of_the_request() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let flaky = service_fn(move |order: String| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            match (order.as_str(), n) {
                ("bad", _) => Err(BoxError::from(Permanent::new("invalid order"))),
                (_, 0 | 1) => Err("busy".into()),
                _ => Ok(format!("{order} done")),
            }
        }
    });
    let retry = RetryPolicy::builder().max_attempts(3).jitter(Jitter::None).build().unwrap();
    let service = tower::ServiceBuilder::new().layer(RetryLayer::new(retry)).service(flaky);
    assert_eq!(service.clone().oneshot("a".to_owned()).await.unwrap(), "a done");
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3, "two retries");
    let err = service.clone().oneshot("bad".to_owned()).await.unwrap_err();
    assert!(is::<Permanent>(&*err), "{err}");
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1, "a permanent error is not retried");
}

/// The hedge layer sends a copy of a slow request after its delay; the
/// first success wins and the slow call is dropped.
#[tokio::test(start_paused = true)]
async fn the_hedge_layer_answers_with_the_first_success_and_drops_the_slow_call() {
    let calls = Arc::new(AtomicU32::new(0));
    let finished = Arc::new(AtomicU32::new(0));
    let (c, f) = (calls.clone(), finished.clone());
    let replicas = service_fn(move |n: u32| {
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        let f = f.clone();
        async move {
            tokio::time::sleep(if first { Duration::from_secs(10) } else { Duration::from_millis(20) }).await;
            f.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(n * 2)
        }
    });
    let hedge =
        Hedge::builder().delay(HedgeDelay::Fixed(Duration::from_millis(50))).max_extra_load(1.0).build().unwrap();
    let service = tower::ServiceBuilder::new().layer(HedgeLayer::new(hedge)).service(replicas);
    let started = tokio::time::Instant::now();
    assert_eq!(service.oneshot(21).await.unwrap(), 42);
    assert_eq!(started.elapsed(), Duration::from_millis(70), "50 ms delay, then the 20 ms copy");
    assert_eq!((calls.load(Ordering::SeqCst), finished.load(Ordering::SeqCst)), (2, 1), "the slow call was dropped");
}
