//! [`Copies`]: the calls of a policy that calls a service more than once
//! per request (retry, hedge), written once for both.

use futures_util::future::poll_fn;
use tower_service::Service;

use crate::error::BoxError;

/// Makes each call of one request: the first on the service that
/// `poll_ready` made ready, each other on a clone of it, made ready first;
/// each with a clone of the request.
pub(super) struct Copies<S, R> {
    ready: Option<S>,
    spare: S,
    request: R,
}

impl<S, R> Copies<S, R>
where
    S: Service<R> + Clone,
    S::Error: Into<BoxError>,
    R: Clone,
{
    /// Takes the ready service out of `inner` (leaving a clone that must be
    /// made ready again, as tower's contract asks).
    pub(super) fn new(inner: &mut S, request: R) -> Self {
        let spare = inner.clone();
        let ready = Some(std::mem::replace(inner, spare.clone()));
        Self { ready, spare, request }
    }

    /// The next call.
    pub(super) fn call(&mut self) -> impl Future<Output = Result<S::Response, BoxError>> + use<S, R> {
        let (ready, spare, request) = (self.ready.take(), self.spare.clone(), self.request.clone());
        async move {
            let mut service = match ready {
                Some(service) => service,
                None => {
                    let mut service = spare;
                    poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into)?;
                    service
                }
            };
            service.call(request).await.map_err(Into::into)
        }
    }
}
