//! [`Hedge`]: send the same request again when the first is slow; the
//! first success wins and the others are cancelled (Dean and
//! Barroso, "The Tail at Scale").
//!
//! ```text
//! parallel:  a1 ──────────▶ ✓ wins      delay:  a1 ─────────────────▶ (cancelled)
//!            a2 ────▶ ✗                          ·· delay ·· a2 ──▶ ✓ wins
//!            a3 ───────────── (cancelled)
//! ```
//!
//! - **Parallel**: every attempt starts at once.
//! - **Delay**: the next attempt starts when the previous ones have taken a
//!   fixed delay, or the observed p95 (any percentile) of successful
//!   attempts; an attempt that fails starts the next at once.
//! - Extra attempts are drawn from a budget, so a slow dependency never
//!   sees a storm: over any run, hedges ≤ reserve + share × calls (by
//!   default 10 + 5 % of calls; the reserve lets a client that has made
//!   few calls hedge at all, [`HedgeBuilder::reserve`]`(0)` makes the share
//!   strict).
//! - Losers are dropped as soon as one attempt succeeds: their work stops
//!   at its next `.await`. If every attempt fails, the error holds every
//!   attempt's error, each tagged with its attempt.

mod latency;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use self::latency::Latencies;
use crate::error::{ConfigError, Errors, Origin};
use crate::policy::retry::RetryBudget;

/// When hedged attempts start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HedgeDelay {
    /// All attempts at once.
    Parallel,
    /// The next attempt after this long.
    Fixed(Duration),
    /// The next attempt after this percentile (e.g. 0.95) of recent
    /// successful attempts' latency; `fallback` until 100 samples are seen.
    Percentile {
        /// The percentile, in (0, 1).
        percentile: f64,
        /// The delay to use before there are enough samples.
        fallback: Duration,
    },
}

/// Counts of a hedge since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeMetrics {
    /// Calls made.
    pub calls: u64,
    /// Attempts beyond the first.
    pub hedges: u64,
    /// Hedges not sent because the budget was spent.
    pub denied: u64,
    /// Calls won by an attempt other than the first.
    pub won_by_hedge: u64,
}

/// Sends a request again when the first is slow; the first success wins.
/// Cheap to clone; clones share the latency record and the budget.
#[derive(Debug, Clone)]
pub struct Hedge {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    delay: HedgeDelay,
    max_attempts: u32,
    budget: RetryBudget,
    latencies: Option<Latencies>,
    calls: AtomicU64,
    hedges: AtomicU64,
    denied: AtomicU64,
    won_by_hedge: AtomicU64,
}

impl Hedge {
    /// Configures a hedge.
    pub fn builder() -> HedgeBuilder {
        HedgeBuilder::default()
    }

    /// The delay before the next hedge, or `None` in parallel mode.
    pub fn current_delay(&self) -> Option<Duration> {
        match self.inner.delay {
            HedgeDelay::Parallel => None,
            HedgeDelay::Fixed(delay) => Some(delay),
            HedgeDelay::Percentile { fallback, .. } => {
                Some(self.inner.latencies.as_ref().and_then(Latencies::get).unwrap_or(fallback))
            }
        }
    }

    /// Counts since the hedge was built.
    pub fn metrics(&self) -> HedgeMetrics {
        let i = &self.inner;
        HedgeMetrics {
            calls: i.calls.load(Ordering::Relaxed),
            hedges: i.hedges.load(Ordering::Relaxed),
            denied: i.denied.load(Ordering::Relaxed),
            won_by_hedge: i.won_by_hedge.load(Ordering::Relaxed),
        }
    }

    /// Calls `attempt(n)` for attempt `n` (0 for the first) as the hedge
    /// settings say, and returns the first success.
    ///
    /// # Errors
    /// Every attempt's error, tagged [`Origin::Attempt`], when all fail.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops every attempt in flight.
    pub async fn call<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, Errors<E>>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &self.inner;
        inner.calls.fetch_add(1, Ordering::Relaxed);
        inner.budget.deposit();
        let mut running = FuturesUnordered::new();
        let timed = |n: u32, call: Fut| async move {
            let started = Instant::now();
            let result = call.await;
            (n, started.elapsed(), result)
        };
        let mut launched = 0u32;
        let mut launch = |running: &mut FuturesUnordered<_>, launched: &mut u32, hedge: bool| {
            if hedge && !inner.budget.try_withdraw() {
                inner.denied.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            if hedge {
                inner.hedges.fetch_add(1, Ordering::Relaxed);
                crate::observe::counter("weir_hedge_fired_total", || vec![("hedge", inner.name.to_string())])
                    .increment(1);
                tracing::debug!(hedge = %inner.name, attempt = *launched, "hedge fired");
            }
            running.push(timed(*launched, attempt(*launched)));
            *launched += 1;
            true
        };
        launch(&mut running, &mut launched, false);
        if inner.delay == HedgeDelay::Parallel {
            while launched < inner.max_attempts && launch(&mut running, &mut launched, true) {}
        }
        let mut errors = Errors::new();
        let mut next_hedge = self.current_delay().map(|d| Instant::now() + d);
        loop {
            let hedge_due = async {
                match next_hedge {
                    Some(at) if launched < inner.max_attempts => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some((n, latency, result)) = running.next() => match result {
                    Ok(value) => {
                        if let Some(latencies) = &inner.latencies {
                            latencies.record(latency);
                        }
                        if n > 0 {
                            inner.won_by_hedge.fetch_add(1, Ordering::Relaxed);
                            let hedge = || vec![("hedge", inner.name.to_string())];
                            crate::observe::counter("weir_hedge_won_total", hedge).increment(1);
                        }
                        return Ok(value);
                    }
                    Err(error) => {
                        errors.push(Origin::Attempt(n), error);
                        let more = launched < inner.max_attempts && launch(&mut running, &mut launched, true);
                        if !more && running.is_empty() {
                            return Err(errors);
                        }
                    }
                },
                () = hedge_due => {
                    if !launch(&mut running, &mut launched, true) {
                        next_hedge = None;
                    } else {
                        next_hedge = self.current_delay().map(|d| Instant::now() + d);
                    }
                }
            }
        }
    }
}

/// Configures a [`Hedge`].
///
/// # Defaults
/// - 2 attempts in all;
/// - [`HedgeDelay::Percentile`] at p95 with a 50 ms fallback;
/// - hedges ≤ 10 + 5 % of calls (a reserve of 10, a share of 5 %);
/// - named `"hedge"`.
#[derive(Debug, Clone)]
pub struct HedgeBuilder {
    name: Arc<str>,
    delay: HedgeDelay,
    max_attempts: u32,
    max_extra_load: f64,
    reserve: u32,
}

impl Default for HedgeBuilder {
    fn default() -> Self {
        Self {
            name: Arc::from("hedge"),
            delay: HedgeDelay::Percentile { percentile: 0.95, fallback: Duration::from_millis(50) },
            max_attempts: 2,
            max_extra_load: 0.05,
            reserve: 10,
        }
    }
}

impl HedgeBuilder {
    /// The name used in logs.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// When hedged attempts start.
    pub fn delay(mut self, delay: HedgeDelay) -> Self {
        self.delay = delay;
        self
    }

    /// The most attempts per call, first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Hedged attempts stay under this share of calls (0.05 = 5 %), on
    /// top of the [reserve](Self::reserve).
    pub fn max_extra_load(mut self, share: f64) -> Self {
        self.max_extra_load = share;
        self
    }

    /// Hedges allowed beyond the share, so a client that has made few
    /// calls can hedge at all; 0 makes the share strict (the first hedge
    /// then waits for `1 / share` calls).
    pub fn reserve(mut self, hedges: u32) -> Self {
        self.reserve = hedges;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] for 0 attempts, a percentile outside (0, 1), or a
    /// negative or non-finite extra load.
    pub fn build(self) -> Result<Hedge, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new("hedge max_attempts", 0, "the first request is an attempt; use at least 1"));
        }
        if let HedgeDelay::Percentile { percentile, .. } = self.delay
            && !(percentile > 0.0 && percentile < 1.0)
        {
            return Err(ConfigError::new("hedge percentile", percentile, "use a share in (0, 1), e.g. 0.95"));
        }
        if !(self.max_extra_load.is_finite() && self.max_extra_load >= 0.0) {
            return Err(ConfigError::new(
                "hedge max_extra_load",
                self.max_extra_load,
                "use a share of at least 0, e.g. 0.05",
            ));
        }
        let latencies = match self.delay {
            HedgeDelay::Percentile { percentile, .. } => Some(Latencies::new(percentile, 100)),
            _ => None,
        };
        Ok(Hedge {
            inner: Arc::new(Inner {
                name: self.name,
                delay: self.delay,
                max_attempts: self.max_attempts,
                budget: RetryBudget::new(self.max_extra_load, self.reserve),
                latencies,
                calls: AtomicU64::new(0),
                hedges: AtomicU64::new(0),
                denied: AtomicU64::new(0),
                won_by_hedge: AtomicU64::new(0),
            }),
        })
    }
}
