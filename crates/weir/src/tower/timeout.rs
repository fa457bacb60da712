//! [`TimeoutLayer`]: a [`Timeout`] around each call of a service.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower_service::Service;

use crate::error::BoxError;
use crate::policy::timeout::Timeout;

policy_layer! {
    /// Bounds a service's calls with a [`Timeout`].
    pub struct TimeoutLayer;
    /// A service whose calls are bounded in time; see [`TimeoutLayer`].
    pub struct TimeoutService;
    timeout: Timeout, "A layer with `timeout`."
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
