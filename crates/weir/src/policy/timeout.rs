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
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::coop;
use tokio::time::{Instant, Sleep};

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
        self.bound_call(call()).await
    }

    /// [`call`](Self::call) for a call already made, without an `async`
    /// level of its own (a [`Stack`](crate::policy::Stack) pays for each).
    pub(crate) fn bound_call<T, E, Fut>(&self, call: Fut) -> Bounded<Fut>
    where
        Fut: Future<Output = Result<T, E>>,
        E: From<TimedOut>,
    {
        Bounded { call, deadline: Instant::now().checked_add(self.after), after: self.after, sleep: None }
    }

    /// Waits for `future` at most the timeout; `None` (the future dropped)
    /// past it. The one place weir bounds a wait: calls, a bulkhead's
    /// queue, a drain check.
    pub(crate) async fn bound<F: Future>(&self, future: F) -> Option<F::Output> {
        tokio::time::timeout(self.after, future).await.ok()
    }
}

pin_project_lite::pin_project! {
    /// A call bounded by a deadline: [`Timeout::call`]'s future.
    ///
    /// Written here rather than taken from `tokio::time::timeout` because
    /// that one makes its timer (a runtime handle, a timer entry: 112
    /// bytes) before the call's first poll, and most calls a stage or a
    /// stack bounds finish in that poll. This one reads the clock when the
    /// call is made and makes the timer only when the call first waits:
    /// the same deadline, a smaller future, and nothing to drop for a call
    /// that was ready at once: 28–30 ns per call against 42–45 ns for
    /// `tokio::time::timeout` (`cargo bench --bench policies --
    /// policy_call`, same run, 2026-12-05).
    #[must_use = "futures do nothing unless polled"]
    pub(crate) struct Bounded<F> {
        #[pin]
        call: F,
        // `None`: so far off that it cannot be represented (never passes).
        deadline: Option<Instant>,
        after: Duration,
        // Made when the call first returns `Pending`; boxed so that a call
        // that never waits does not carry it.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<T, E, F> Future for Bounded<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<TimedOut>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let this = self.project();
        let had_budget = coop::has_budget_remaining();
        if let Poll::Ready(result) = this.call.poll(cx) {
            return Poll::Ready(result);
        }
        let Some(deadline) = *this.deadline else { return Poll::Pending };
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // A call that used up the task's budget would otherwise keep its
        // timer from ever firing: the timer then polls unconstrained (as
        // `tokio::time::timeout` does).
        let elapsed = if had_budget && !coop::has_budget_remaining() {
            std::pin::pin!(coop::unconstrained(sleep.as_mut())).poll(cx)
        } else {
            sleep.as_mut().poll(cx)
        };
        match elapsed {
            Poll::Ready(()) => Poll::Ready(Err(timed_out(*this.after))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a call that ran past `after`.
fn timed_out<E: From<TimedOut>>(after: Duration) -> E {
    tracing::debug!(?after, "call timed out");
    TimedOut::new(after).into()
}
