//! One way to wrap an async call in policies: the [`Policy`] trait, which
//! every policy implements, and the [`Stack`] that applies them in
//! weir's order.
//!
//! ```text
//!  retry ─▶ breaker ─▶ rate limit ─▶ bulkhead ─▶ hedge ─▶ timeout ─▶ call
//!  (outermost)                                             (innermost)
//! ```
//!
//! # Why this order
//! - **retry** outside everything: each retry is a fresh pass through the
//!   rest, so the breaker sees every attempt and an open circuit ends the
//!   retries ([`CircuitOpen`](crate::policy::breaker::CircuitOpen) is not transient).
//! - **breaker** before the limits: a call the open breaker refuses costs
//!   no rate slot and holds no bulkhead slot. The breaker does not count
//!   the refusals of the policies inside it
//!   ([`RateLimited`](crate::policy::rate::RateLimited),
//!   [`BulkheadFull`](crate::policy::bulkhead::BulkheadFull)) as failures: they say
//!   the caller is busy, not that the dependency is sick.
//! - **rate limit** before the bulkhead: every attempt that reaches the
//!   dependency pays for one slot of its rate, and a call waiting for its
//!   rate does not hold a bulkhead slot meanwhile.
//! - **bulkhead** outside the hedge: a hedged call's extra copies run in the
//!   slot of the call they hedge (the hedge's own budget bounds them).
//! - **hedge** outside the timeout: each copy gets its own time bound, so a
//!   slow first copy does not cut the hedge short.
//! - **timeout** innermost: it bounds what the dependency takes, and the
//!   breaker counts a timeout as a failure.
//!
//! [`Stack::builder`] produces this order whatever the order of its
//! setters. To state another on purpose, compose policies yourself with
//! [`Policy::around`]: `timeout.around(retry)` bounds all the attempts
//! together rather than each one.
//!
//! # One error convention
//! Every policy in a stack returns the call's error type, [`BoxError`].
//! A policy that refuses a call returns its own error, which names it:
//! [`CircuitOpen`](crate::policy::breaker::CircuitOpen) (the breaker),
//! [`BulkheadFull`](crate::policy::bulkhead::BulkheadFull) (the bulkhead and its
//! limit), [`RateLimited`](crate::policy::rate::RateLimited) (the limiter and when
//! to try again), [`TimedOut`](crate::error::TimedOut) (the bound). A
//! retry that gives up returns the last attempt's error, as tower's retry
//! does; a hedge whose copies all failed returns the only error or every
//! one in an [`Errors`](crate::error::Errors). So "which policy refused,
//! and why" is [`find`](crate::error::find) / [`is`](crate::error::is) on
//! the error, however the policies nest.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use weir::policy::breaker::{Breaker, CircuitOpen};
//! use weir::error::{find, BoxError};
//! use weir::policy::Stack;
//! use weir::policy::retry::RetryPolicy;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::builder().consecutive_failures(2).build().unwrap();
//! let stack = Stack::builder()
//!     .timeout(Duration::from_secs(1))
//!     .breaker(breaker.clone())
//!     .retry(RetryPolicy::builder().max_attempts(5).build().unwrap())
//!     .build()
//!     .unwrap();
//! let err = stack.call(|| async { Err::<(), BoxError>("down".into()) }).await.unwrap_err();
//! // Two failures opened the breaker; the third attempt was refused and the
//! // retry stopped there rather than spend its other two attempts.
//! assert_eq!(find::<CircuitOpen>(&*err).unwrap().breaker(), breaker.name());
//! assert_eq!(breaker.metrics().failures, 2);
//! # }
//! ```

pub mod breaker;
pub mod bulkhead;
pub mod hedge;
pub(crate) mod impls;
pub mod rate;
pub mod retry;
mod stack;
pub mod timeout;

use std::future::Future;

pub use self::stack::{Stack, StackBuilder};
use crate::error::BoxError;

/// A policy around an async call: retry, breaker, bulkhead, rate limit,
/// hedge, timeout, a [`Stack`] of them, or two composed with
/// [`around`](Self::around).
///
/// `op` makes one call each time it is called. A policy may call it
/// several times (a retry, one after another; a hedge, at once), so it is
/// `Fn` and `Sync`, and each call's future owns what it needs.
///
/// You call policies; you rarely implement this trait. An implementation
/// must call `op` only from within the future it returns, and drop every
/// call it made when that future is dropped.
pub trait Policy: Send + Sync {
    /// Runs `op` under the policy.
    ///
    /// # Errors
    /// The call's error, or the policy's own when it refuses the call; see
    /// the [module docs](self) for the convention.
    ///
    /// # Cancel safety
    /// Every policy in weir is cancel safe: dropping the future drops the
    /// calls in flight and releases what they held (a breaker's probe slot,
    /// a bulkhead's slot).
    fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> impl Future<Output = Result<T, BoxError>> + Send + 'a
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a;

    /// This policy outside `inner`: each call passes through `self`, then
    /// `inner`, then reaches `op`.
    ///
    /// # Examples
    /// A timeout around every attempt of a retry, together:
    /// ```
    /// use std::time::Duration;
    /// use weir::error::{is, BoxError, TimedOut};
    /// use weir::policy::Policy;
    /// use weir::policy::retry::RetryPolicy;
    /// use weir::policy::timeout::Timeout;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let all_attempts = Timeout::new(Duration::from_secs(2)).unwrap();
    /// let retry = RetryPolicy::builder().max_attempts(100).build().unwrap();
    /// let policy = all_attempts.around(retry);
    /// let err = policy.call(&|| async { Err::<(), BoxError>("down".into()) }).await.unwrap_err();
    /// assert!(is::<TimedOut>(&*err));
    /// # }
    /// ```
    fn around<I: Policy>(self, inner: I) -> Layered<Self, I>
    where
        Self: Sized,
    {
        Layered { outer: self, inner }
    }
}

/// Two policies, one around the other; see [`Policy::around`].
#[derive(Debug, Clone)]
pub struct Layered<O, I> {
    outer: O,
    inner: I,
}

impl<O: Policy, I: Policy> Policy for Layered<O, I> {
    fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> impl Future<Output = Result<T, BoxError>> + Send + 'a
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        let inner = &self.inner;
        async move {
            let through_inner = move || inner.call(op);
            self.outer.call(&through_inner).await
        }
    }
}

/// No policy: `None` calls `op` once, as it is.
impl<P: Policy> Policy for Option<P> {
    async fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> Result<T, BoxError>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        match self {
            Some(policy) => policy.call(op).await,
            None => op().await,
        }
    }
}

impl<P: Policy> Policy for &P {
    fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> impl Future<Output = Result<T, BoxError>> + Send + 'a
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        (**self).call(op)
    }
}
