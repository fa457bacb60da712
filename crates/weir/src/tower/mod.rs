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
