//! Bulkheads: bound how many calls run at once, per dependency or per
//! tenant, so one saturated part cannot starve the rest.
//!
//! - [`Bulkhead`]: at most `limit` calls at once; a call waits for a slot
//!   (at most `max_wait`, if set) and then fails with [`BulkheadFull`].
//! - [`KeyedBulkhead`]: one bulkhead per key (tenant), created on first
//!   use. Tenant A's saturation, failures or panics never delay tenant B.
//! - [`run_per_tenant`]: the seed's coordinator: every tenant's items in its
//!   own [`Group`](crate::group::Group) with its own limit; all tenants run
//!   at once; each tenant's outcome is recorded, none propagates.
//!
//! # Examples
//! ```
//! use weir::policy::bulkhead::Bulkhead;
//! use weir::error::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bulkhead = Bulkhead::builder().limit(2).build().unwrap();
//! let value = bulkhead.call(|| async { Ok::<_, BoxError>(7) }).await.unwrap();
//! assert_eq!(value, 7);
//! # }
//! ```

mod keyed;
mod tenants;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::keyed::KeyedBulkhead;
pub use self::tenants::{TenantOutcome, run_per_tenant};
use crate::error::ConfigError;
use crate::policy::timeout::Timeout;

/// Every slot of a bulkhead was taken for longer than its maximum wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead `{name}` is full: {limit} call(s) in flight{}", waited.map(|w| format!(", waited {w:?}")).unwrap_or_default())]
pub struct BulkheadFull {
    name: Arc<str>,
    limit: usize,
    waited: Option<Duration>,
}

impl BulkheadFull {
    /// The bulkhead's name (for a keyed bulkhead, the key).
    pub fn bulkhead(&self) -> &str {
        &self.name
    }

    /// Its limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// Counts of a bulkhead since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadMetrics {
    /// Calls running now.
    pub in_flight: usize,
    /// Calls admitted.
    pub admitted: u64,
    /// Calls rejected with [`BulkheadFull`].
    pub rejected: u64,
}

/// Bounds how many calls run at once. Cheap to clone; clones share slots.
#[derive(Debug, Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    limit: usize,
    max_wait: Option<Duration>,
    slots: Arc<Semaphore>,
    admitted: AtomicU64,
    rejected: AtomicU64,
    in_use: crate::observe::Gauge,
    rejected_metric: crate::observe::Counter,
}

/// A slot of a bulkhead, given back when dropped.
#[derive(Debug)]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
    in_use: crate::observe::Gauge,
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.in_use.decrement(1.0);
    }
}

impl Bulkhead {
    /// Configures a bulkhead.
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder::default()
    }

    /// Waits for a slot (at most the maximum wait).
    ///
    /// # Errors
    /// [`BulkheadFull`] when no slot freed up within the maximum wait.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future gives up the place in the queue.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        let inner = &self.inner;
        let permit = match Arc::clone(&inner.slots).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => match inner.max_wait {
                Some(wait) if wait.is_zero() => None,
                // Boxed: only a full bulkhead waits, and the unboxed wait
                // (360 bytes) would be moved with every call's future.
                _ => Box::pin(self.queue()).await,
            },
        };
        match permit {
            Some(permit) => {
                inner.admitted.fetch_add(1, Ordering::Relaxed);
                inner.in_use.increment(1.0);
                Ok(BulkheadPermit { _permit: permit, in_use: inner.in_use.clone() })
            }
            None => {
                inner.rejected.fetch_add(1, Ordering::Relaxed);
                inner.rejected_metric.increment(1);
                tracing::debug!(bulkhead = %inner.name, limit = inner.limit, "bulkhead full: call rejected");
                Err(BulkheadFull { name: inner.name.clone(), limit: inner.limit, waited: inner.max_wait })
            }
        }
    }

    /// Waits in the queue for a slot, at most the maximum wait.
    async fn queue(&self) -> Option<OwnedSemaphorePermit> {
        let queued = Arc::clone(&self.inner.slots).acquire_owned();
        match self.inner.max_wait {
            Some(wait) => Timeout::unvalidated(wait).bound(queued).await.and_then(Result::ok),
            None => queued.await.ok(),
        }
    }

    /// Runs `call` in a slot.
    ///
    /// # Errors
    /// [`BulkheadFull`] (converted into `E`), or the call's own error.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future frees the slot or the place in the
    /// queue.
    pub async fn call<T, E, F, Fut>(&self, call: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<BulkheadFull>,
    {
        let _permit = self.acquire().await?;
        call().await
    }

    /// Counts since the bulkhead was built.
    pub fn metrics(&self) -> BulkheadMetrics {
        let inner = &self.inner;
        BulkheadMetrics {
            in_flight: inner.limit - inner.slots.available_permits(),
            admitted: inner.admitted.load(Ordering::Relaxed),
            rejected: inner.rejected.load(Ordering::Relaxed),
        }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

/// Configures a [`Bulkhead`] (also each bulkhead of a [`KeyedBulkhead`]).
///
/// # Defaults
/// - limit 8;
/// - no maximum wait: a call waits until a slot frees up;
/// - named `"bulkhead"`.
#[derive(Debug, Clone)]
pub struct BulkheadBuilder {
    name: Arc<str>,
    limit: usize,
    max_wait: Option<Duration>,
}

impl Default for BulkheadBuilder {
    fn default() -> Self {
        Self { name: Arc::from("bulkhead"), limit: 8, max_wait: None }
    }
}

impl BulkheadBuilder {
    /// The name used in errors and logs.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// At most `limit` calls at once (at least 1).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// A call waits at most `wait` for a slot, then fails with
    /// [`BulkheadFull`]; `Duration::ZERO` rejects at once when full.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] for a limit of 0 or above tokio's semaphore maximum.
    pub fn build(self) -> Result<Bulkhead, ConfigError> {
        if self.limit == 0 || self.limit > Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                "bulkhead limit",
                self.limit,
                "use at least 1 (a bulkhead with no slot never runs a call)",
            ));
        }
        Ok(self.build_unchecked(self.name.clone()))
    }

    fn build_unchecked(&self, name: Arc<str>) -> Bulkhead {
        let label = || vec![("bulkhead", name.to_string())];
        let (in_use, rejected_metric) = (
            crate::observe::gauge("weir_bulkhead_in_use", label),
            crate::observe::counter("weir_bulkhead_rejected_total", label),
        );
        Bulkhead {
            inner: Arc::new(Inner {
                in_use,
                rejected_metric,
                name,
                limit: self.limit,
                max_wait: self.max_wait,
                slots: Arc::new(Semaphore::new(self.limit)),
                admitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        }
    }
}
