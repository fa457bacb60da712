use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use super::{Bulkhead, BulkheadBuilder, BulkheadFull, BulkheadMetrics, BulkheadPermit};
use crate::error::ConfigError;

/// One [`Bulkhead`] per key (tenant), created on first use with the same
/// settings, so each tenant gets its own limit.
///
/// Looking a key up takes a short lock on the map; the call itself runs
/// outside it. Keys are kept for the keyed bulkhead's life: use bounded
/// key sets (tenants, dependencies), not request ids.
///
/// # Examples
/// ```
/// use weir::policy::bulkhead::{Bulkhead, KeyedBulkhead};
/// use weir::error::BoxError;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let per_tenant = KeyedBulkhead::new(Bulkhead::builder().limit(8)).unwrap();
/// let n = per_tenant.call(&"acme", || async { Ok::<_, BoxError>(1) }).await.unwrap();
/// assert_eq!(n, 1);
/// assert_eq!(per_tenant.metrics(&"acme").unwrap().admitted, 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct KeyedBulkhead<K> {
    settings: BulkheadBuilder,
    bulkheads: Arc<Mutex<HashMap<K, Bulkhead>>>,
}

impl<K: Eq + Hash + Clone + Display> KeyedBulkhead<K> {
    /// A keyed bulkhead whose bulkheads all have `settings`.
    ///
    /// # Errors
    /// [`ConfigError`] for invalid settings, as [`BulkheadBuilder::build`].
    pub fn new(settings: BulkheadBuilder) -> Result<Self, ConfigError> {
        settings.clone().build()?;
        Ok(Self { settings, bulkheads: Arc::default() })
    }

    /// The bulkhead of `key`, created if new.
    pub fn get(&self, key: &K) -> Bulkhead {
        let mut map = self.bulkheads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.clone()).or_insert_with(|| self.settings.build_unchecked(Arc::from(key.to_string()))).clone()
    }

    /// Waits for a slot of `key`'s bulkhead.
    ///
    /// # Errors
    /// [`BulkheadFull`] naming the key.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Bulkhead::acquire`].
    pub async fn acquire(&self, key: &K) -> Result<BulkheadPermit, BulkheadFull> {
        self.get(key).acquire().await
    }

    /// Runs `call` in a slot of `key`'s bulkhead.
    ///
    /// # Errors
    /// [`BulkheadFull`] (converted into `E`), or the call's own error.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Bulkhead::call`].
    pub async fn call<T, E, F, Fut>(&self, key: &K, call: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<BulkheadFull>,
    {
        self.get(key).call(call).await
    }

    /// The counts of `key`'s bulkhead, if it was used.
    pub fn metrics(&self, key: &K) -> Option<BulkheadMetrics> {
        self.bulkheads.lock().unwrap_or_else(|p| p.into_inner()).get(key).map(Bulkhead::metrics)
    }
}
