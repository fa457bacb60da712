use super::BoxError;

/// An item asks to be skipped: counted as skipped, never as a failure.
///
/// Return it (or any error whose `source()` chain holds it) from a pipeline
/// stage. The stage drops the item, counts it under `skipped` in the
/// report, and goes on. This is Go's `ErrSkip` sentinel, found with
/// [`is`](super::is) the way Go finds it with `errors.Is`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("item skipped")]
pub struct Skip;

/// Marks an error as permanent: retrying cannot help, so retries stop at once.
///
/// Wrap the cause: `Err(Permanent::new(e))`. The cause stays reachable
/// through `source()`, so [`find`](super::find) still finds it.
#[derive(Debug, thiserror::Error)]
#[error("permanent failure: {source}")]
pub struct Permanent {
    #[source]
    source: BoxError,
}

impl Permanent {
    /// Wraps `cause` as a permanent failure.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        Self { source: cause.into() }
    }

    /// The wrapped cause.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}
