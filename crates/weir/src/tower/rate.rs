//! [`RateLimitLayer`]: a [`RateLimiter`] in front of a service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;
use crate::policy::rate::RateLimiter;

/// Puts a [`RateLimiter`] in front of a service.
///
/// The slot is reserved in `poll_ready`, as tower's `RateLimit` and
/// `ConcurrencyLimit` do: a caller that drives readiness (a
/// `ServiceBuilder` stack, `ServiceExt::ready`, a `Buffer`) is held back
/// until its slot is due, which is backpressure, not an error. Past the
/// limiter's maximum wait, `poll_ready` fails with
/// [`RateLimited`](crate::policy::rate::RateLimited) at once.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    /// A layer sharing `limiter` (clones share its budget).
    pub fn new(limiter: RateLimiter) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;
    fn layer(&self, inner: S) -> RateLimitService<S> {
        RateLimitService { inner, limiter: self.limiter.clone(), state: Reserve::None }
    }
}

/// A service behind a [`RateLimiter`]; see [`RateLimitLayer`].
#[derive(Debug)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: RateLimiter,
    state: Reserve,
}

/// Where this handle is in taking its next slot.
#[derive(Debug)]
enum Reserve {
    /// No slot held.
    None,
    /// A slot reserved, due when the sleep ends.
    Waiting(Pin<Box<tokio::time::Sleep>>),
    /// A slot due now, for the next `call`.
    Ready,
}

/// A clone holds no slot of its own yet (tower clones a service to call it
/// from elsewhere; the slot its original reserved stays with it).
impl<S: Clone> Clone for RateLimitService<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), limiter: self.limiter.clone(), state: Reserve::None }
    }
}

impl<S, R> Service<R> for RateLimitService<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.state {
                Reserve::None => match self.limiter.reserve() {
                    Ok(wait) if wait.is_zero() => self.state = Reserve::Ready,
                    Ok(wait) => self.state = Reserve::Waiting(Box::pin(tokio::time::sleep(wait))),
                    Err(limited) => return Poll::Ready(Err(limited.into())),
                },
                Reserve::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.state = Reserve::Ready;
                }
                Reserve::Ready => return self.inner.poll_ready(cx).map_err(Into::into),
            }
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        assert!(matches!(self.state, Reserve::Ready), "RateLimitService called before poll_ready returned Ready");
        self.state = Reserve::None;
        let future = self.inner.call(request);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}
