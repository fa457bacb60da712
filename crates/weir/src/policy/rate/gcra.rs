//! The generic cell rate algorithm on `tokio::time`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A limiter's settings, shared by every budget of a keyed limiter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Time between two calls at the steady rate.
    pub(crate) interval: Duration,
    /// How early a call may come: `interval × (burst − 1)`.
    pub(crate) tolerance: Duration,
    pub(crate) max_wait: Option<Duration>,
    /// How many calls may pass at once after a quiet spell.
    pub(crate) burst: u32,
}

/// One budget: the theoretical arrival time of the next call.
#[derive(Debug)]
pub(crate) struct Gcra {
    pub(crate) pace: Pace,
    next: Mutex<Option<Instant>>,
}

impl Gcra {
    pub(crate) fn new(pace: Pace) -> Self {
        Self { pace, next: Mutex::new(None) }
    }

    /// Reserves the next slot if it is at most `max_wait` away (`None`: any
    /// wait); returns the wait, or how long until a slot is free.
    pub(crate) fn reserve(&self, max_wait: Option<Duration>) -> Result<Duration, Duration> {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let due = next.map_or(now, |n| n.max(now));
        let allowed_at = due.checked_sub(self.pace.tolerance).unwrap_or(now).max(now);
        let wait = allowed_at - now;
        if max_wait.is_some_and(|limit| wait > limit) {
            return Err(wait);
        }
        *next = Some(due + self.pace.interval);
        Ok(wait)
    }

    /// Slots of the burst taken at `now` (fractional), and calls holding a
    /// reserved slot that is not due yet.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn occupancy(&self, now: Instant) -> (f64, f64) {
        let next = *self.next.lock().unwrap_or_else(|p| p.into_inner());
        let ahead = next.map_or(Duration::ZERO, |n| n.saturating_duration_since(now));
        let backlog = ahead.as_secs_f64() / self.pace.interval.as_secs_f64();
        let burst = f64::from(self.pace.burst);
        (backlog.min(burst), (backlog - burst).max(0.0).ceil())
    }

    /// Whether the budget is full again (no call would wait for it): a
    /// keyed limiter may forget it.
    pub(crate) fn is_idle(&self, now: Instant) -> bool {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).is_none_or(|n| n <= now)
    }
}
