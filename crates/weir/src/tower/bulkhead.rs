//! [`BulkheadLayer`]: a service's calls in a [`Bulkhead`]'s slots, each
//! slot taken in `poll_ready`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;
use crate::policy::bulkhead::{Bulkhead, BulkheadFull, BulkheadPermit};

/// Runs a service's calls in a [`Bulkhead`]'s slots.
///
/// The slot is taken in `poll_ready`, as tower's `ConcurrencyLimit` does: a
/// caller that drives readiness waits for a free slot (at most the
/// bulkhead's maximum wait, then [`BulkheadFull`]) before it sends the
/// request, and the slot is held until the response future ends.
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
        BulkheadService { inner, bulkhead: self.bulkhead.clone(), slot: Slot::None }
    }
}

/// A service whose calls take a bulkhead slot; see [`BulkheadLayer`].
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
    slot: Slot,
}

/// Where this handle is in taking its next slot.
enum Slot {
    /// No slot held, none asked for.
    None,
    /// Waiting in the bulkhead's queue.
    Waiting(BoxFuture<'static, Result<BulkheadPermit, BulkheadFull>>),
    /// A slot held for the next `call`.
    Held(BulkheadPermit),
}

impl<S: std::fmt::Debug> std::fmt::Debug for BulkheadService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slot = match self.slot {
            Slot::None => "none",
            Slot::Waiting(_) => "waiting",
            Slot::Held(_) => "held",
        };
        f.debug_struct("BulkheadService")
            .field("inner", &self.inner)
            .field("bulkhead", &self.bulkhead)
            .field("slot", &slot)
            .finish()
    }
}

/// A clone holds no slot of its own yet (the slot its original took stays
/// with the original).
impl<S: Clone> Clone for BulkheadService<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), bulkhead: self.bulkhead.clone(), slot: Slot::None }
    }
}

impl<S, R> Service<R> for BulkheadService<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BulkheadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.slot {
                Slot::None => {
                    let bulkhead = self.bulkhead.clone();
                    self.slot = Slot::Waiting(Box::pin(async move { bulkhead.acquire().await }));
                }
                Slot::Waiting(acquiring) => match ready!(acquiring.as_mut().poll(cx)) {
                    Ok(permit) => self.slot = Slot::Held(permit),
                    Err(full) => {
                        self.slot = Slot::None;
                        return Poll::Ready(Err(full.into()));
                    }
                },
                Slot::Held(_) => return self.inner.poll_ready(cx).map_err(Into::into),
            }
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        let Slot::Held(permit) = std::mem::replace(&mut self.slot, Slot::None) else {
            panic!("BulkheadService called before poll_ready returned Ready");
        };
        BulkheadFuture { future: self.inner.call(request), _permit: permit }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`BulkheadService`]: holds the slot until it
    /// ends or is dropped.
    pub struct BulkheadFuture<F> {
        #[pin]
        future: F,
        _permit: BulkheadPermit,
    }
}

impl<F> std::fmt::Debug for BulkheadFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BulkheadFuture")
    }
}

impl<F, T, E> Future for BulkheadFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx).map_err(Into::into)
    }
}
