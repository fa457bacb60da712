//! Retries with exponential backoff and jitter, attempt and time limits,
//! transient/permanent classification and a retry budget.
//!
//! [`RetryPolicy`] is the plain async wrapper (`policy.call(|| async { .. })`)
//! and the setting a pipeline stage takes. Every wait goes
//! through `tokio::time`, so tests run it on paused time, and every wait is
//! cancellable: drop the future, or pass a token to
//! [`RetryPolicy::call_cancellable`].
//!
//! # Why a budget and not only a maximum of attempts
//! Three attempts per call triple the load on a dependency that is already
//! failing. A [`RetryBudget`] caps retries at a share of calls across
//! every caller that shares it, so retries help with blips and stay out of
//! the way during an outage.

mod backoff;
mod budget;
mod error;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::backoff::{Backoff, Jitter};
pub use self::budget::RetryBudget;
use self::error::GiveUp;
pub use self::error::RetryError;
use crate::error::{ConfigError, Panicked, Permanent, Skip, is};
use crate::policy::breaker::CircuitOpen;

/// When and how often to retry.
///
/// # Defaults
/// - 3 attempts in all (the first call and 2 retries);
/// - [`Backoff`]'s defaults: 100 ms initial, ×2, capped at 10 s, full jitter;
/// - no limit on elapsed time;
/// - no budget.
///
/// # Examples
/// A call that fails twice, then succeeds.
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use weir::policy::retry::RetryPolicy;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let calls = AtomicU32::new(0);
/// let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
/// let value = policy
///     .call(|| async {
///         if calls.fetch_add(1, Ordering::SeqCst) < 2 { Err("flaky") } else { Ok(42) }
///     })
///     .await
///     .unwrap();
/// assert_eq!((value, calls.load(Ordering::SeqCst)), (42, 3));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    backoff: Backoff,
    max_attempts: u32,
    max_elapsed: Option<Duration>,
    budget: Option<Arc<RetryBudget>>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { backoff: Backoff::default(), max_attempts: 3, max_elapsed: None, budget: None }
    }
}

/// Whether retrying `error` can help: the one classification of weir's
/// retries (pipeline stages without their own
/// [`retry_if`](crate::pipeline::Stage::retry_if), saga steps, batch
/// flushes).
///
/// Everything is transient except, anywhere in its `source()` chain, a
/// [`Permanent`] marker (the caller said so), a [`Panicked`] (a bug, not a
/// blip), a [`CircuitOpen`] (the breaker refuses calls until it half-opens:
/// waiting a backoff step at it only spends attempts) and a [`Skip`] (not
/// a failure).
///
/// # Examples
/// ```
/// use weir::error::{BoxError, Permanent};
/// use weir::policy::retry::is_transient;
///
/// let blip: BoxError = "connection reset".into();
/// let bad: BoxError = Permanent::new("no such account").into();
/// assert!(is_transient(&*blip));
/// assert!(!is_transient(&*bad));
/// ```
pub fn is_transient(error: &(dyn std::error::Error + 'static)) -> bool {
    !(is::<Permanent>(error) || is::<Panicked>(error) || is::<CircuitOpen>(error) || is::<Skip>(error))
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    RetryAfter(Duration),
    GiveUp(GiveUp),
}

impl RetryPolicy {
    /// Configures a policy.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder(Self::default())
    }

    /// A policy that never retries.
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The most attempts in all, first call included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before retry `retry` (from 1), drawn afresh: for callers
    /// that wait elsewhere (a broker's delayed redelivery). Decorrelated
    /// jitter has no previous delay here and draws from its first range.
    #[cfg_attr(not(any(feature = "nats", feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn delay_before(&self, retry: u32) -> Duration {
        self.backoff.delay(retry.max(1), Duration::ZERO, &mut fastrand::Rng::new())
    }

    /// Decides after attempt `attempt` (from 1) failed with a transient
    /// error; `previous` is the last delay, `started` when the first
    /// attempt began.
    pub(crate) fn next(&self, attempt: u32, previous: Duration, started: Instant, rng: &mut fastrand::Rng) -> Next {
        if attempt >= self.max_attempts {
            return Next::GiveUp(GiveUp::Exhausted);
        }
        let delay = self.backoff.delay(attempt, previous, rng);
        if let Some(limit) = self.max_elapsed
            && started.elapsed() + delay > limit
        {
            return Next::GiveUp(GiveUp::Elapsed);
        }
        if let Some(budget) = &self.budget
            && !budget.try_withdraw()
        {
            crate::observe::counter("weir_retry_budget_refused_total", Vec::new).increment(1);
            return Next::GiveUp(GiveUp::Budget);
        }
        crate::observe::counter("weir_retry_attempts_total", Vec::new).increment(1);
        Next::RetryAfter(delay)
    }

    pub(crate) fn record_call(&self) {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
    }

    /// Calls `op` until it succeeds or the policy gives up; every error is
    /// transient.
    ///
    /// # Errors
    /// [`RetryError`] with the attempt count and the last error.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops the attempt in flight or the
    /// sleep; nothing else is held.
    pub async fn call<T, E, F, Fut>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_cancellable(None, op, |_| true).await
    }

    /// Like [`call`](Self::call), retrying only errors for which
    /// `is_transient` returns `true`; others end the call at once with
    /// [`RetryError::is_permanent`].
    ///
    /// # Errors
    /// [`RetryError`] with the attempt count and the last error.
    ///
    /// # Cancel safety
    /// As for [`call`](Self::call).
    pub async fn call_if<T, E, F, Fut>(&self, op: F, is_transient: impl Fn(&E) -> bool) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_cancellable(None, op, is_transient).await
    }

    /// Like [`call_if`](Self::call_if); a cancelled `token` ends the wait
    /// between attempts with [`RetryError::is_cancelled`].
    ///
    /// # Errors
    /// [`RetryError`] with the attempt count and the last error.
    ///
    /// # Cancel safety
    /// As for [`call`](Self::call).
    pub async fn call_cancellable<T, E, F, Fut>(
        &self,
        token: Option<&CancellationToken>,
        mut op: F,
        is_transient: impl Fn(&E) -> bool,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.drive(token, |_| op(), is_transient, |_, _, _| {}).await
    }

    /// The retry loop, the only one in weir: every caller (this wrapper,
    /// pipeline stages, saga steps and compensations, batch flushes, store
    /// connections) goes through it, so each pays into the budget and
    /// obeys the same limits. `op` gets the attempt number (from 1);
    /// `on_retry` hears each failure that will be retried, with its attempt
    /// and the wait before the next.
    pub(crate) async fn drive<T, E, F, Fut>(
        &self,
        token: Option<&CancellationToken>,
        mut op: F,
        is_transient: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // The clock and the random source are only needed once a call
        // fails (and the clock only with a time limit): the success path
        // reads neither.
        let started = self.max_elapsed.map(|_| Instant::now());
        let mut rng: Option<fastrand::Rng> = None;
        let mut delay = Duration::ZERO;
        self.record_call();
        for attempt in 1.. {
            let error = match op(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !is_transient(&error) {
                return Err(RetryError::new(GiveUp::Permanent, attempt, Some(error)));
            }
            let rng = rng.get_or_insert_with(fastrand::Rng::new);
            delay = match self.next(attempt, delay, started.unwrap_or_else(Instant::now), rng) {
                Next::RetryAfter(delay) => delay,
                Next::GiveUp(why) => return Err(RetryError::new(why, attempt, Some(error))),
            };
            tracing::debug!(attempt, ?delay, "retrying");
            on_retry(&error, attempt, delay);
            // Boxed: only a failed attempt waits, and an unboxed sleep would
            // make every call's future larger.
            if !Box::pin(sleep_unless_cancelled(token, delay)).await {
                return Err(RetryError::new(GiveUp::Cancelled, attempt, Some(error)));
            }
        }
        unreachable!("the attempt counter is unbounded and max_attempts is finite")
    }
}

/// Sleeps for `delay`; `false` if `token` was cancelled first.
pub(crate) async fn sleep_unless_cancelled(token: Option<&CancellationToken>, delay: Duration) -> bool {
    match token {
        None => {
            tokio::time::sleep(delay).await;
            true
        }
        Some(token) => tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = token.cancelled() => false,
        },
    }
}

/// Configures a [`RetryPolicy`]; see its defaults there.
#[derive(Debug, Clone)]
pub struct RetryPolicyBuilder(RetryPolicy);

impl RetryPolicyBuilder {
    /// The most attempts in all, first call included; at least 1.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.0.max_attempts = attempts;
        self
    }

    /// The delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.0.backoff.initial = delay;
        self
    }

    /// The factor between consecutive delays; at least 1.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.0.backoff.multiplier = multiplier;
        self
    }

    /// The longest delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.0.backoff.max = delay;
        self
    }

    /// How delays are randomized.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.0.backoff.jitter = jitter;
        self
    }

    /// Gives up rather than start an attempt more than `limit` after the
    /// first one began.
    pub fn max_elapsed(mut self, limit: Duration) -> Self {
        self.0.max_elapsed = Some(limit);
        self
    }

    /// Draws every retry from `budget`.
    pub fn budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.0.budget = Some(budget);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] for 0 attempts, a multiplier below 1 or not finite,
    /// or a maximum delay below the initial delay.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let p = self.0;
        if p.max_attempts == 0 {
            return Err(ConfigError::new("retry max_attempts", 0, "the first call is an attempt; use at least 1"));
        }
        if !(p.backoff.multiplier.is_finite() && p.backoff.multiplier >= 1.0) {
            return Err(ConfigError::new(
                "retry multiplier",
                p.backoff.multiplier,
                "use a finite factor of at least 1.0",
            ));
        }
        if p.backoff.max < p.backoff.initial {
            return Err(ConfigError::new(
                "retry max_delay",
                format!("{:?} (below initial_delay {:?})", p.backoff.max, p.backoff.initial),
                "raise max_delay to at least initial_delay",
            ));
        }
        Ok(p)
    }
}
