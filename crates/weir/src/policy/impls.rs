//! [`Policy`] for each of weir's policies: how each wraps one call.

use std::future::Future;

use super::Policy;
use crate::error::{BoxError, Errors, Skip, is};
use crate::policy::breaker::{Breaker, Permit};
use crate::policy::bulkhead::{Bulkhead, BulkheadFull};
use crate::policy::hedge::Hedge;
use crate::policy::rate::{RateLimited, RateLimiter};
use crate::policy::retry::{RetryPolicy, is_transient};
use crate::policy::timeout::Timeout;

/// Retries what [`is_transient`] says may pass on a retry; gives up with
/// the last attempt's error.
impl Policy for RetryPolicy {
    async fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> Result<T, BoxError>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        self.drive(None, |_| op(), |error: &BoxError| is_transient(&**error), |_, _, _| {})
            .await
            .map_err(|e| e.into_attempted())
    }
}

/// Counts an error as a failure unless it is a [`Skip`] (a success: the
/// item is fine) or the refusal of a policy inside the breaker
/// ([`RateLimited`], [`BulkheadFull`]: not counted at all, the dependency
/// was never called).
impl Policy for Breaker {
    async fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> Result<T, BoxError>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        let permit = self.try_acquire()?;
        let result = op().await;
        report(permit, &result);
        result
    }
}

/// Tells the breaker how a call it let through went (see its impl).
pub(super) fn report<T>(permit: Permit<'_>, result: &Result<T, BoxError>) {
    match result {
        Ok(_) => permit.success(),
        Err(error) if is::<Skip>(&**error) => permit.success(),
        Err(error) if is_refusal(&**error) => drop(permit),
        Err(_) => permit.failure(),
    }
}

/// A refusal by a policy that never called the dependency.
fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    is::<RateLimited>(error) || is::<BulkheadFull>(error)
}

/// Holds a slot for the whole call.
impl Policy for Bulkhead {
    async fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> Result<T, BoxError>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        let _slot = self.acquire().await?;
        op().await
    }
}

/// Takes one slot of the rate per call.
impl Policy for RateLimiter {
    async fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> Result<T, BoxError>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        self.acquire().await?;
        op().await
    }
}

/// Fails the call with [`TimedOut`](crate::error::TimedOut) past the bound.
impl Policy for Timeout {
    fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> impl Future<Output = Result<T, BoxError>> + Send + 'a
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        Timeout::call(self, op)
    }
}

/// Calls again when the first call is slow; the first success wins. When
/// every call fails: the only error, or all of them in an [`Errors`].
impl Policy for Hedge {
    async fn call<'a, T, F, Fut>(&'a self, op: &'a F) -> Result<T, BoxError>
    where
        T: Send + 'a,
        F: Fn() -> Fut + Sync + 'a,
        Fut: Future<Output = Result<T, BoxError>> + Send + 'a,
    {
        Hedge::call(self, |_| op()).await.map_err(one_error)
    }
}

/// The error of a hedged call: the only one, or all of them.
pub(crate) fn one_error(errors: Errors<BoxError>) -> BoxError {
    if errors.len() == 1 { errors.into_iter().next().map(|(_, e)| e).expect("one error") } else { Box::new(errors) }
}
