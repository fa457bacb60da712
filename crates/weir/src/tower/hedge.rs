//! [`HedgeLayer`]: a [`Hedge`] around each call of a service.

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use super::copies::Copies;
use crate::error::BoxError;
use crate::policy::hedge::Hedge;
use crate::policy::impls::one_error;

/// Hedges a service's calls: when the first is slow, sends a copy of the
/// request again (by the [`Hedge`]'s delay and budget); the first success
/// wins and the other calls are dropped. When every copy fails: the only
/// error, or all of them in an [`Errors`](crate::error::Errors).
///
/// Each copy sends a clone of the request (see the [module docs](super)).
/// The first uses the service that `poll_ready` made ready; each other
/// copy calls a clone of it, made ready first.
#[derive(Debug, Clone)]
pub struct HedgeLayer {
    hedge: Hedge,
}

impl HedgeLayer {
    /// A layer sharing `hedge` (its latencies and budget).
    pub fn new(hedge: Hedge) -> Self {
        Self { hedge }
    }
}

impl<S> Layer<S> for HedgeLayer {
    type Service = HedgeService<S>;
    fn layer(&self, inner: S) -> HedgeService<S> {
        HedgeService { inner, hedge: self.hedge.clone() }
    }
}

/// A service whose slow calls are hedged; see [`HedgeLayer`].
#[derive(Debug, Clone)]
pub struct HedgeService<S> {
    inner: S,
    hedge: Hedge,
}

impl<S, R> Service<R> for HedgeService<S>
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
        let hedge = self.hedge.clone();
        Box::pin(async move {
            let copy = move |_| copies.call();
            hedge.call(copy).await.map_err(one_error)
        })
    }
}
