use std::fmt;

use super::BoxError;

/// Which item an error is about: its position in the source and, when the
/// stage was given a key function, its key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemRef {
    index: Option<u64>,
    key: Option<String>,
}

impl ItemRef {
    /// The item's position in the pipeline's source, from 0.
    pub fn index(&self) -> Option<u64> {
        self.index
    }

    /// The item's key, e.g. an order id.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, self.index) {
            (Some(key), Some(index)) => write!(f, "item {index} ({key})"),
            (Some(key), None) => write!(f, "item {key}"),
            (None, Some(index)) => write!(f, "item {index}"),
            (None, None) => f.write_str("unknown item"),
        }
    }
}

/// An item failed in a pipeline stage.
///
/// Says which stage, which item (index and optional key), which tenant
/// (optional) and which attempt (from 1) failed, and keeps the cause as
/// `source()`, so [`find`](super::find) reaches the original error.
///
/// # Examples
/// ```
/// use weir::error::{find, StageError};
/// let err = StageError::builder("store", std::io::Error::other("disk full"))
///     .index(7)
///     .key("order-42")
///     .tenant("acme")
///     .attempt(3)
///     .build();
/// assert_eq!(err.stage(), "store");
/// assert_eq!(err.to_string(), "stage `store` failed on item 7 (order-42) of tenant acme, attempt 3: disk full");
/// assert!(find::<std::io::Error>(&err).is_some());
/// ```
#[derive(Debug)]
pub struct StageError {
    stage: std::sync::Arc<str>,
    item: ItemRef,
    tenant: Option<String>,
    attempt: u32,
    source: BoxError,
}

impl StageError {
    /// Starts a stage error for `stage` caused by `source`.
    pub fn builder(stage: impl Into<std::sync::Arc<str>>, source: impl Into<BoxError>) -> StageErrorBuilder {
        StageErrorBuilder(StageError {
            stage: stage.into(),
            item: ItemRef::default(),
            tenant: None,
            attempt: 1,
            source: source.into(),
        })
    }

    /// The name of the stage that failed.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The item that failed.
    pub fn item(&self) -> &ItemRef {
        &self.item
    }

    /// The tenant the item belongs to, when the stage knows it.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The attempt that failed last, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The cause.
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// Takes the cause out.
    pub fn into_cause(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage `{}` failed on {}", self.stage, self.item)?;
        if let Some(tenant) = &self.tenant {
            write!(f, " of tenant {tenant}")?;
        }
        if self.attempt > 1 {
            write!(f, ", attempt {}", self.attempt)?;
        }
        write!(f, ": {}", self.source)
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Builds a [`StageError`]; see [`StageError::builder`].
#[derive(Debug)]
pub struct StageErrorBuilder(StageError);

impl StageErrorBuilder {
    /// The item's position in the source.
    pub fn index(mut self, index: u64) -> Self {
        self.0.item.index = Some(index);
        self
    }

    /// The item's key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.0.item.key = Some(key.into());
        self
    }

    /// The item's tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.0.tenant = Some(tenant.into());
        self
    }

    /// The attempt that failed, from 1. Defaults to 1.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.0.attempt = attempt;
        self
    }

    /// Finishes the error.
    pub fn build(self) -> StageError {
        self.0
    }
}
