//! [`Timeout`]: bound a call's time; past it the call is dropped (so its
//! work stops at its next `.await`) and a [`TimedOut`] error returned.
//!
//! In a pipeline stage, use [`Stage::timeout`](crate::pipeline::Stage::timeout),
//! which bounds each attempt the same way.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use weir::error::{BoxError, TimedOut};
//! use weir::policy::timeout::Timeout;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let timeout = Timeout::new(Duration::from_millis(100)).unwrap();
//! let err = timeout
//!     .call(|| async {
//!         tokio::time::sleep(Duration::from_secs(10)).await;
//!         Ok::<(), BoxError>(())
//!     })
//!     .await
//!     .unwrap_err();
//! assert!(err.is::<TimedOut>());
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;

use crate::error::{ConfigError, TimedOut};

/// Bounds how long a call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    after: Duration,
}

impl Timeout {
    /// A timeout of `after`.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero duration, which would fail every call.
    pub fn new(after: Duration) -> Result<Self, ConfigError> {
        if after.is_zero() {
            return Err(ConfigError::new("timeout", "0s", "a zero timeout fails every call; use a positive duration"));
        }
        Ok(Self { after })
    }

    /// A timeout of `after` whose owner validates it at build time (a
    /// stage, a saga engine), so the error names that setting.
    pub(crate) fn unvalidated(after: Duration) -> Self {
        Self { after }
    }

    /// The duration.
    pub fn after(&self) -> Duration {
        self.after
    }

    /// Runs `call`, dropping it if it takes longer than the timeout.
    ///
    /// # Errors
    /// [`TimedOut`] (converted into `E`), or the call's own error.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops the call.
    pub async fn call<T, E, F, Fut>(&self, call: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<TimedOut>,
    {
        // Not through `bound_call`: its `map` adds a level this `async fn`
        // already is (44 ns per call this way, 49 through it).
        match tokio::time::timeout(self.after, call()).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(self.after)),
        }
    }

    /// [`call`](Self::call) for a call already made, without an `async`
    /// level of its own (a [`Stack`](crate::policy::Stack) pays for each).
    pub(crate) fn bound_call<T, E, Fut>(&self, call: Fut) -> impl Future<Output = Result<T, E>> + use<T, E, Fut>
    where
        Fut: Future<Output = Result<T, E>>,
        E: From<TimedOut>,
    {
        let after = self.after;
        tokio::time::timeout(after, call).map(move |bounded| bounded.unwrap_or_else(|_| Err(timed_out(after))))
    }

    /// Waits for `future` at most the timeout; `None` (the future dropped)
    /// past it. The one place weir bounds a wait: calls, a bulkhead's
    /// queue, a drain check.
    pub(crate) async fn bound<F: Future>(&self, future: F) -> Option<F::Output> {
        tokio::time::timeout(self.after, future).await.ok()
    }
}

/// The error of a call that ran past `after`.
fn timed_out<E: From<TimedOut>>(after: Duration) -> E {
    tracing::debug!(?after, "call timed out");
    TimedOut::new(after).into()
}
