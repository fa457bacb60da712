use std::time::Duration;

/// The breaker is open: the call was rejected without running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit `{name}` is open{}", retry_after.map(|d| format!("; next probe in {d:?}")).unwrap_or_default())]
pub struct CircuitOpen {
    name: std::sync::Arc<str>,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    pub(crate) fn new(name: std::sync::Arc<str>, retry_after: Option<Duration>) -> Self {
        Self { name, retry_after }
    }

    /// The breaker's name.
    pub fn breaker(&self) -> &str {
        &self.name
    }

    /// How long until the breaker lets a probe through, if it will on its
    /// own (`None` when forced open, or when half-open with every probe
    /// slot taken).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}
