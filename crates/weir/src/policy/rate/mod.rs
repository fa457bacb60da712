//! Rate limiters: at most `n` calls per period, with a burst, for one
//! dependency or per key (tenant).
//!
//! - [`RateLimiter`]: one budget; [`acquire`](RateLimiter::acquire) waits
//!   for the next free slot (at most `max_wait`, if set), and
//!   [`try_acquire`](RateLimiter::try_acquire) answers at once. Past the
//!   wait a call fails with [`RateLimited`], which says when to try again.
//! - [`KeyedRateLimiter`]: one budget per key, created on first use: a
//!   tenant that spends its budget never slows another.
//!
//! # How it counts
//! GCRA (the generic cell rate algorithm, as in ATM networks and
//! `governor`): one stored instant per budget, the theoretical arrival
//! time of the next call; a call is admitted if it is at most the burst
//! tolerance early. Written here rather than taken from `governor`
//! because every wait must go through `tokio::time`, so that tests run it
//! on paused time like weir's other policies (governor reads its own
//! clock); its state is one `Mutex<Instant>`, a few tens of nanoseconds
//! uncontended, far below the calls a rate limit paces.
//!
//! # Where it sits among policies
//! Retry → breaker → **rate limit** → bulkhead → hedge → timeout → call:
//! each attempt that reaches the dependency spends a slot (so retries are
//! paced too), a call the open breaker refuses spends none, and a call
//! waiting for a slot holds no bulkhead place.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use weir::policy::rate::RateLimiter;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let limiter = RateLimiter::builder().rate(10, Duration::from_secs(1)).burst(2).build().unwrap();
//! let started = tokio::time::Instant::now();
//! for _ in 0..4 {
//!     limiter.acquire().await.unwrap();
//! }
//! // Two at once (the burst), then one every 100 ms.
//! assert_eq!(started.elapsed(), Duration::from_millis(200));
//! assert!(limiter.try_acquire().is_err());
//! # }
//! ```

mod gcra;
mod keyed;
#[cfg(feature = "metrics")]
mod occupancy;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use self::gcra::{Gcra, Pace};
pub use self::keyed::KeyedRateLimiter;
use crate::error::ConfigError;

/// A call found no free slot within its limiter's maximum wait.
///
/// Transient: a retry after [`retry_after`](Self::retry_after) can pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit `{limiter}` reached: next slot in {retry_after:?}")]
pub struct RateLimited {
    limiter: Arc<str>,
    retry_after: Duration,
}

impl RateLimited {
    /// The limiter's name (for a keyed limiter, the key).
    pub fn limiter(&self) -> &str {
        &self.limiter
    }

    /// How long until a slot is free.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// At most `n` calls per period, with a burst; cheap to clone (clones share
/// the budget).
///
/// # Defaults
/// See [`RateLimiterBuilder`].
#[derive(Debug, Clone)]
pub struct RateLimiter {
    name: Arc<str>,
    gcra: Arc<Gcra>,
}

impl RateLimiter {
    /// A limiter named `name` with a budget of its own (sampled for its
    /// occupancy gauges when metrics are on).
    fn new(name: Arc<str>, pace: Pace) -> Self {
        let gcra = Arc::new(Gcra::new(pace));
        #[cfg(feature = "metrics")]
        occupancy::watch(&name, &gcra);
        Self { name, gcra }
    }

    /// Configures a limiter.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder::default()
    }

    /// Takes a slot now, or says when the next is free.
    ///
    /// # Errors
    /// [`RateLimited`] if no slot is free now.
    pub fn try_acquire(&self) -> Result<(), RateLimited> {
        self.gcra.reserve(Some(Duration::ZERO)).map(drop).map_err(|retry_after| self.limited(retry_after))
    }

    /// Takes the next free slot, waiting for it (at most the maximum wait).
    ///
    /// # Errors
    /// [`RateLimited`] if the next slot is further away than the maximum
    /// wait; nothing is taken then.
    ///
    /// # Cancel safety
    /// Dropping the future while it waits gives the slot up without
    /// handing it back: the limiter never lets more through than its rate,
    /// at the cost of one unused slot.
    pub async fn acquire(&self) -> Result<(), RateLimited> {
        let wait = self.reserve()?;
        if !wait.is_zero() {
            // Boxed: only a call over the rate waits, and the unboxed sleep
            // would be moved with every call's future.
            Box::pin(tokio::time::sleep(wait)).await;
        }
        Ok(())
    }

    /// Runs `call` once a slot is free.
    ///
    /// # Errors
    /// [`RateLimited`] (converted into `E`), or the call's own error.
    ///
    /// # Cancel safety
    /// As [`acquire`](Self::acquire); once admitted, dropping the future
    /// drops the call.
    pub async fn call<T, E, F, Fut>(&self, call: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<RateLimited>,
    {
        self.acquire().await?;
        call().await
    }

    /// Reserves the next slot (at most the maximum wait away); returns how
    /// long until it is due.
    pub(crate) fn reserve(&self) -> Result<Duration, RateLimited> {
        self.gcra.reserve(self.gcra.pace.max_wait).map_err(|retry_after| self.limited(retry_after))
    }

    fn limited(&self, retry_after: Duration) -> RateLimited {
        crate::observe::counter("weir_rate_limit_refused_total", || vec![("limiter", self.name.to_string())])
            .increment(1);
        RateLimited { limiter: Arc::clone(&self.name), retry_after }
    }
}

/// Configures a [`RateLimiter`] or [`KeyedRateLimiter`].
///
/// # Defaults
/// - no default rate: [`rate`](Self::rate) is required;
/// - a burst of 1 (calls evenly spaced);
/// - no maximum wait ([`acquire`](RateLimiter::acquire) waits as long as
///   the queue ahead of it needs);
/// - name `"rate"`.
#[derive(Debug, Clone, Default)]
pub struct RateLimiterBuilder {
    rate: Option<(u32, Duration)>,
    burst: Option<u32>,
    max_wait: Option<Duration>,
    name: Option<String>,
}

impl RateLimiterBuilder {
    /// At most `calls` per `per` on average.
    pub fn rate(mut self, calls: u32, per: Duration) -> Self {
        self.rate = Some((calls, per));
        self
    }

    /// How many calls may pass at once after a quiet spell.
    pub fn burst(mut self, calls: u32) -> Self {
        self.burst = Some(calls);
        self
    }

    /// The longest [`acquire`](RateLimiter::acquire) waits; a call whose
    /// slot is further away fails at once with [`RateLimited`]
    /// (`Duration::ZERO`: never wait).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }

    /// The name errors and logs use.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Builds the limiter.
    ///
    /// # Errors
    /// [`ConfigError`] without a rate, for a rate of 0 calls or over a zero
    /// period, or a burst of 0.
    pub fn build(self) -> Result<RateLimiter, ConfigError> {
        Ok(RateLimiter::new(Arc::from(self.name.as_deref().unwrap_or("rate")), self.pace()?))
    }

    /// Builds a limiter per key, each with these settings.
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_keyed<K>(self) -> Result<KeyedRateLimiter<K>, ConfigError> {
        Ok(KeyedRateLimiter::new(self.pace()?))
    }

    fn pace(&self) -> Result<Pace, ConfigError> {
        let Some((calls, per)) = self.rate else {
            return Err(ConfigError::new("rate limit", "unset", "set .rate(calls, per)"));
        };
        if calls == 0 || per.is_zero() {
            return Err(ConfigError::new(
                "rate limit",
                format!("{calls} per {per:?}"),
                "a rate of nothing lets no call through; use at least 1 call per a positive period",
            ));
        }
        let burst = self.burst.unwrap_or(1);
        if burst == 0 {
            return Err(ConfigError::new("rate limit burst", 0, "use at least 1 (calls evenly spaced)"));
        }
        let interval = per / calls;
        Ok(Pace { interval, tolerance: interval * (burst - 1), max_wait: self.max_wait, burst })
    }
}
