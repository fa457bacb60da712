//! tower [`Layer`]s for weir's policies (feature
//! `tower`), so a service stack gets the same breaker, bulkhead and
//! timeout as plain calls and pipeline stages.
//!
//! Errors are boxed, as tower's own middleware do: the inner service's
//! error, or weir's [`CircuitOpen`], [`BulkheadFull`], [`TimedOut`], all
//! findable with [`find`](crate::error::find).
//!
//! [`RateLimitLayer`] reserves its slot in `poll_ready` (backpressure).
//!
//! Order them as the policies compose (outermost first): retry, breaker,
//! rate limit, bulkhead, timeout:
//!
//! ```
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//! use weir::policy::breaker::Breaker;
//! use weir::policy::bulkhead::Bulkhead;
//! use weir::error::BoxError;
//! use weir::policy::timeout::Timeout;
//! use weir::tower::{BreakerLayer, BulkheadLayer, TimeoutLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let echo = service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 2) });
//! let stack = BreakerLayer::new(Breaker::builder().build()?).layer(
//!     BulkheadLayer::new(Bulkhead::builder().limit(8).build()?)
//!         .layer(TimeoutLayer::new(Timeout::new(Duration::from_secs(1))?).layer(echo)),
//! );
//! assert_eq!(stack.oneshot(21).await?, 42);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

mod rate;

pub use self::rate::{RateLimitLayer, RateLimitService};
use crate::error::BoxError;
use crate::policy::breaker::{Breaker, OwnedPermit};
use crate::policy::bulkhead::Bulkhead;
use crate::policy::timeout::Timeout;

#[allow(unused_imports)] // named in the module docs
use crate::{error::TimedOut, policy::breaker::CircuitOpen, policy::bulkhead::BulkheadFull};

/// Puts a [`Breaker`] in front of a service.
#[derive(Debug, Clone)]
pub struct BreakerLayer {
    breaker: Breaker,
}

impl BreakerLayer {
    /// A layer sharing `breaker` (clones share its state).
    pub fn new(breaker: Breaker) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = BreakerService<S>;
    fn layer(&self, inner: S) -> BreakerService<S> {
        BreakerService { inner, breaker: self.breaker.clone() }
    }
}

/// A service behind a [`Breaker`]; see [`BreakerLayer`].
#[derive(Debug, Clone)]
pub struct BreakerService<S> {
    inner: S,
    breaker: Breaker,
}

impl<S, R> Service<R> for BreakerService<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match self.breaker.try_acquire_owned() {
            Ok(permit) => BreakerFuture {
                state: BreakerState::Admitted { future: self.inner.call(request), permit: Some(permit) },
            },
            Err(open) => BreakerFuture { state: BreakerState::Rejected { error: Some(Box::new(open)) } },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`BreakerService`].
    pub struct BreakerFuture<F> {
        #[pin]
        state: BreakerState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = BreakerStateProj]
    enum BreakerState<F> {
        // Admitted: the inner call runs; its outcome is reported.
        Admitted { #[pin] future: F, permit: Option<OwnedPermit> },
        // Rejected: the breaker was open.
        Rejected { error: Option<BoxError> },
    }
}

impl<F> std::fmt::Debug for BreakerFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BreakerFuture")
    }
}

impl<F, T, E> Future for BreakerFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            BreakerStateProj::Rejected { error } => Poll::Ready(Err(error.take().expect("polled after completion"))),
            BreakerStateProj::Admitted { future, permit } => {
                let result = std::task::ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    if result.is_ok() { permit.success() } else { permit.failure() }
                }
                Poll::Ready(result.map_err(Into::into))
            }
        }
    }
}

/// Runs a service's calls in a [`Bulkhead`]'s slots.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

impl BulkheadLayer {
    /// A layer sharing `bulkhead`'s slots.
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;
    fn layer(&self, inner: S) -> BulkheadService<S> {
        BulkheadService { inner, bulkhead: self.bulkhead.clone() }
    }
}

/// A service whose calls take a bulkhead slot; see [`BulkheadLayer`].
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

impl<S, R> Service<R> for BulkheadService<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // The ready inner service goes with this call; a clone stays for
        // the next (tower's usual pattern for services that wait in `call`).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let bulkhead = self.bulkhead.clone();
        Box::pin(async move {
            let _slot = bulkhead.acquire().await?;
            inner.call(request).await.map_err(Into::into)
        })
    }
}

/// Bounds a service's calls with a [`Timeout`].
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Timeout,
}

impl TimeoutLayer {
    /// A layer with `timeout`.
    pub fn new(timeout: Timeout) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = TimeoutService<S>;
    fn layer(&self, inner: S) -> TimeoutService<S> {
        TimeoutService { inner, timeout: self.timeout }
    }
}

/// A service whose calls are bounded in time; see [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    inner: S,
    timeout: Timeout,
}

impl<S, R> Service<R> for TimeoutService<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let future = self.inner.call(request);
        let timeout = self.timeout;
        Box::pin(async move { timeout.call(|| async { future.await.map_err(Into::into) }).await })
    }
}
