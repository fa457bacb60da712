//! [`BreakerLayer`]: a [`Breaker`] in front of a service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::error::BoxError;
use crate::policy::breaker::{Breaker, OwnedPermit};

policy_layer! {
    /// Puts a [`Breaker`] in front of a service.
    pub struct BreakerLayer;
    /// A service behind a [`Breaker`]; see [`BreakerLayer`].
    pub struct BreakerService;
    breaker: Breaker, "A layer sharing `breaker` (clones share its state)."
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
