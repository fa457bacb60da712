//! Recording through the `metrics` facade (feature `metrics` on).

use std::time::{Duration, Instant};

pub(crate) use metrics::{Counter, Gauge, Histogram};

/// Labels, built only when metrics are recorded.
/// Metrics are compiled in: work done only to feed them is worth doing.
pub(crate) const ENABLED: bool = true;

pub(crate) type Labels = Vec<(&'static str, String)>;

fn labels(labels: Labels) -> Vec<metrics::Label> {
    labels.into_iter().map(|(key, value)| metrics::Label::new(key, value)).collect()
}

/// The counter `name` with `labels`, from the installed recorder.
pub(crate) fn counter(name: &'static str, labels_of: impl FnOnce() -> Labels) -> Counter {
    metrics::counter!(name, labels(labels_of()))
}

/// The gauge `name` with `labels`, from the installed recorder.
pub(crate) fn gauge(name: &'static str, labels_of: impl FnOnce() -> Labels) -> Gauge {
    metrics::gauge!(name, labels(labels_of()))
}

/// The histogram `name` with `labels`, from the installed recorder.
pub(crate) fn histogram(name: &'static str, labels_of: impl FnOnce() -> Labels) -> Histogram {
    metrics::histogram!(name, labels(labels_of()))
}

/// Measures a span of time for a histogram (nothing without metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer(Instant);

impl Timer {
    pub(crate) fn start() -> Self {
        Self(Instant::now())
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}
