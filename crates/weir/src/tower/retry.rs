//! [`RetryLayer`]: a [`RetryPolicy`] around each call of a service.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use super::copies::Copies;
use crate::error::BoxError;
use crate::policy::retry::{RetryPolicy, is_transient};

/// Retries a service's failed calls by a [`RetryPolicy`]: errors that are
/// [transient](is_transient), within the policy's attempts, time and
/// budget; the last attempt's error when it gives up (as the
/// [`Policy`](crate::policy::Policy) impl does).
///
/// Each attempt sends a clone of the request (see the
/// [module docs](super) for why the request is `Clone`). The first attempt
/// uses the service that `poll_ready` made ready; each retry calls a clone
/// of it, made ready first.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer retrying by `policy` (clones share its budget).
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = RetryService<S>;
    fn layer(&self, inner: S) -> RetryService<S> {
        RetryService { inner, policy: self.policy.clone() }
    }
}

/// A service whose failed calls are retried; see [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct RetryService<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S, R> Service<R> for RetryService<S>
where
    S: Service<R> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Into<BoxError>,
    R: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let mut copies = Copies::new(&mut self.inner, request);
        let policy = self.policy.clone();
        Box::pin(async move {
            let attempt = move |_| copies.call();
            let retried = policy.drive(None, attempt, |error: &BoxError| is_transient(&**error), |_, _, _| {});
            retried.await.map_err(|e| e.into_attempted())
        })
    }
}
