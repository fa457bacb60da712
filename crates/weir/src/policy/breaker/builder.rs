use std::sync::Arc;
use std::time::Duration;

use super::window::WindowKind;
use super::{Breaker, StateChange};
use crate::error::ConfigError;

pub(crate) type Listener = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// A failure-rate threshold: open when at least `rate` of the calls in the
/// window failed, once the window holds `min_calls` calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateThreshold {
    pub(crate) window: WindowKind,
    pub(crate) rate: f64,
    pub(crate) min_calls: u32,
}

/// Settings of a [`Breaker`].
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) name: Arc<str>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) rate: Option<RateThreshold>,
    pub(crate) open_for: Duration,
    pub(crate) open_growth: Option<(f64, Duration)>,
    pub(crate) probes: u32,
    pub(crate) successes_to_close: u32,
    pub(crate) listeners: Vec<Listener>,
}

/// Configures a [`Breaker`].
///
/// # Defaults
/// - opens after 5 consecutive failures;
/// - no failure-rate threshold;
/// - stays open 30 s, without growth;
/// - half-open lets 1 probe through; 1 success closes it;
/// - named `"breaker"`.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use weir::policy::breaker::{Breaker, WindowKind};
///
/// let breaker = Breaker::builder()
///     .name("payments")
///     .consecutive_failures(5)
///     .failure_rate(0.5, WindowKind::Time(Duration::from_secs(60)), 20)
///     .open_for(Duration::from_secs(30))
///     .open_growth(2.0, Duration::from_secs(300))
///     .half_open_probes(2)
///     .build()
///     .unwrap();
/// # drop(breaker);
/// ```
pub struct BreakerBuilder(Settings);

impl std::fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerBuilder").field("name", &self.0.name).finish_non_exhaustive()
    }
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        Self(Settings {
            name: Arc::from("breaker"),
            consecutive_failures: Some(5),
            rate: None,
            open_for: Duration::from_secs(30),
            open_growth: None,
            probes: 1,
            successes_to_close: 1,
            listeners: Vec::new(),
        })
    }
}

impl BreakerBuilder {
    /// The name used in errors, logs and metrics.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.0.name = name.into();
        self
    }

    /// Opens after `n` failures in a row (at least 1).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.0.consecutive_failures = Some(n);
        self
    }

    /// Turns the consecutive-failures threshold off (keep a rate threshold).
    pub fn no_consecutive_threshold(mut self) -> Self {
        self.0.consecutive_failures = None;
        self
    }

    /// Opens when at least `rate` (0 < rate ≤ 1) of the calls in `window`
    /// failed, once the window holds at least `min_calls` calls. Recording
    /// the window takes a lock per call; the consecutive threshold alone
    /// does not.
    pub fn failure_rate(mut self, rate: f64, window: WindowKind, min_calls: u32) -> Self {
        self.0.rate = Some(RateThreshold { window, rate, min_calls });
        self
    }

    /// How long the breaker stays open before letting probes through.
    pub fn open_for(mut self, duration: Duration) -> Self {
        self.0.open_for = duration;
        self
    }

    /// Each reopening without a close in between multiplies the open
    /// duration by `factor` (at least 1), up to `max`.
    pub fn open_growth(mut self, factor: f64, max: Duration) -> Self {
        self.0.open_growth = Some((factor, max));
        self
    }

    /// How many probe calls half-open lets through at once (at least 1);
    /// also how many successes close it unless set apart.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.0.probes = probes;
        self.0.successes_to_close = probes;
        self
    }

    /// How many probe successes close the breaker (at least 1).
    pub fn successes_to_close(mut self, n: u32) -> Self {
        self.0.successes_to_close = n;
        self
    }

    /// Calls `listener` on every state change, on the task that caused it.
    pub fn on_state_change(mut self, listener: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.0.listeners.push(Arc::new(listener));
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting: a threshold of 0, no threshold
    /// at all, a rate outside (0, 1], 0 probes or successes, a growth
    /// factor below 1.
    pub fn build(self) -> Result<Breaker, ConfigError> {
        let s = &self.0;
        if s.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "breaker consecutive_failures",
                0,
                "a breaker that opens before any failure never passes a call; use at least 1",
            ));
        }
        if s.consecutive_failures.is_none() && s.rate.is_none() {
            return Err(ConfigError::new(
                "breaker thresholds",
                "none",
                "set consecutive_failures or failure_rate, or the breaker never opens",
            ));
        }
        if let Some(r) = s.rate
            && !(r.rate > 0.0 && r.rate <= 1.0)
        {
            return Err(ConfigError::new("breaker failure_rate", r.rate, "use a share in (0, 1], e.g. 0.5"));
        }
        if s.probes == 0 || s.successes_to_close == 0 || s.probes > 60_000 || s.successes_to_close > 16_000 {
            return Err(ConfigError::new(
                "breaker half_open_probes / successes_to_close",
                format!("{} / {}", s.probes, s.successes_to_close),
                "use between 1 and 60000 probes and 1 to 16000 successes, or the breaker never closes",
            ));
        }
        if let Some((factor, _)) = s.open_growth
            && !(factor.is_finite() && factor >= 1.0)
        {
            return Err(ConfigError::new("breaker open_growth factor", factor, "use a finite factor of at least 1.0"));
        }
        Ok(Breaker::from_settings(self.0))
    }
}
