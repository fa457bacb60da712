//! Without the `metrics` feature: every recording is an empty inline
//! function on a zero-sized handle, so it compiles to nothing.

use std::time::Duration;

/// Labels, never built without metrics.
/// Metrics are not compiled in: skip work done only to feed them.
pub(crate) const ENABLED: bool = false;

pub(crate) type Labels = Vec<(&'static str, String)>;

/// A counter that records nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter;

impl Counter {
    #[inline(always)]
    pub(crate) fn increment(&self, _: u64) {}
}

/// A gauge that records nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauge;

impl Gauge {
    #[inline(always)]
    pub(crate) fn increment(&self, _: f64) {}
    #[inline(always)]
    pub(crate) fn decrement(&self, _: f64) {}
    #[inline(always)]
    pub(crate) fn set(&self, _: f64) {}
}

/// A histogram that records nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram;

impl Histogram {
    #[inline(always)]
    pub(crate) fn record(&self, _: f64) {}
}

#[inline(always)]
pub(crate) fn counter(_: &'static str, _: impl FnOnce() -> Labels) -> Counter {
    Counter
}

#[inline(always)]
pub(crate) fn gauge(_: &'static str, _: impl FnOnce() -> Labels) -> Gauge {
    Gauge
}

#[inline(always)]
pub(crate) fn histogram(_: &'static str, _: impl FnOnce() -> Labels) -> Histogram {
    Histogram
}

/// A timer that reads no clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer;

impl Timer {
    #[inline(always)]
    pub(crate) fn start() -> Self {
        Self
    }

    #[inline(always)]
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::ZERO
    }
}
