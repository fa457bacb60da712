//! weir's policies as tower layers (feature `tower`).
#![cfg(feature = "tower")]

use std::time::Duration;

use tower::{Layer, Service, ServiceExt, service_fn};
use weir::error::{BoxError, TimedOut, is};
use weir::policy::breaker::{Breaker, CircuitOpen, State};
use weir::policy::bulkhead::{Bulkhead, BulkheadFull};
use weir::policy::timeout::Timeout;
use weir::tower::{BreakerLayer, BulkheadLayer, TimeoutLayer};

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
