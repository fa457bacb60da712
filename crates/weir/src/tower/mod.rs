//! tower [`Layer`](tower_layer::Layer)s for every weir policy (feature
//! `tower`), so a service stack gets the same retry, breaker, rate limit,
//! bulkhead, hedge and timeout as plain calls, pipeline stages and saga
//! steps: one file per middleware.
//!
//! Errors are boxed, as tower's own middleware do: the inner service's
//! error, or weir's [`CircuitOpen`], [`RateLimited`], [`BulkheadFull`],
//! [`TimedOut`], all findable with [`find`](crate::error::find).
//!
//! - [`RateLimitLayer`] and [`BulkheadLayer`] reserve in `poll_ready`
//!   (backpressure, as tower's `RateLimit` and `ConcurrencyLimit`).
//! - [`RetryLayer`] and [`HedgeLayer`] call the service more than once per
//!   request, so the request must be `Clone`: each attempt (each hedged
//!   copy) gets a clone of the original, made before the first is sent. A
//!   request that cannot be cloned (a streaming body) cannot be retried or
//!   hedged; buffer it first. Each extra attempt calls a clone of the inner
//!   service, driven to readiness first.
//!
//! Order them as the policies compose (outermost first): retry, breaker,
//! rate limit, bulkhead, hedge, timeout:
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

/// A layer holding one policy and the service it makes, the shape every
/// weir layer without state of its own shares, written once: the layer's
/// docs, the service's docs, the field, and the docs of `new`.
macro_rules! policy_layer {
    (
        $(#[$layer_doc:meta])*
        pub struct $layer:ident;
        $(#[$service_doc:meta])*
        pub struct $service:ident;
        $field:ident: $policy:ty, $new_doc:literal
    ) => {
        $(#[$layer_doc])*
        #[derive(Debug, Clone)]
        pub struct $layer {
            $field: $policy,
        }

        impl $layer {
            #[doc = $new_doc]
            pub fn new($field: $policy) -> Self {
                Self { $field }
            }
        }

        impl<S> tower_layer::Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> $service<S> {
                $service { inner, $field: self.$field.clone() }
            }
        }

        $(#[$service_doc])*
        #[derive(Debug, Clone)]
        pub struct $service<S> {
            inner: S,
            $field: $policy,
        }
    };
}

/// The `Service` impl of a policy that calls the inner service more than
/// once per request (retry, hedge), written once: `$call` turns the policy
/// and the request's [`Copies`](copies::Copies) into the response.
macro_rules! repeating_service {
    ($service:ident, $field:ident, |$policy:ident, $copies:ident| $call:expr) => {
        impl<S, R> tower_service::Service<R> for $service<S>
        where
            S: tower_service::Service<R> + Clone + Send + 'static,
            S::Future: Send,
            S::Response: Send,
            S::Error: Into<crate::error::BoxError>,
            R: Clone + Send + 'static,
        {
            type Response = S::Response;
            type Error = crate::error::BoxError;
            type Future = futures_util::future::BoxFuture<'static, Result<S::Response, crate::error::BoxError>>;

            fn poll_ready(
                &mut self,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), crate::error::BoxError>> {
                self.inner.poll_ready(cx).map_err(Into::into)
            }

            fn call(&mut self, request: R) -> Self::Future {
                let mut $copies = super::copies::Copies::new(&mut self.inner, request);
                let $policy = self.$field.clone();
                Box::pin(async move { $call })
            }
        }
    };
}

mod breaker;
mod bulkhead;
mod copies;
mod hedge;
mod rate;
mod retry;
mod timeout;

pub use self::breaker::{BreakerFuture, BreakerLayer, BreakerService};
pub use self::bulkhead::{BulkheadFuture, BulkheadLayer, BulkheadService};
pub use self::hedge::{HedgeLayer, HedgeService};
pub use self::rate::{RateLimitLayer, RateLimitService};
pub use self::retry::{RetryLayer, RetryService};
pub use self::timeout::{TimeoutLayer, TimeoutService};
#[allow(unused_imports)] // named in the module docs
use crate::{error::TimedOut, policy::breaker::CircuitOpen, policy::bulkhead::BulkheadFull, policy::rate::RateLimited};
