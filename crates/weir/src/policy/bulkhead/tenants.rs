use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Cancelled, ConfigError, Panicked};
use crate::group::Group;

/// How one tenant's items went in [`run_per_tenant`].
#[derive(Debug)]
#[non_exhaustive]
pub struct TenantOutcome<E> {
    /// The tenant's items.
    pub items: u64,
    /// Items that ran to completion with `Ok`.
    pub completed: u64,
    /// The tenant's first error (which stopped the tenant's other items),
    /// a panic turned error, or a cancellation.
    pub error: Option<E>,
}

impl<E> TenantOutcome<E> {
    /// Whether every item of the tenant completed.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.completed == self.items
    }
}

/// Runs every tenant's items at once, each tenant in its own
/// [`Group`] limited to `limit_per_tenant` items in flight.
///
/// A tenant's first error (or panic) cancels that tenant's remaining items
/// and is recorded in its [`TenantOutcome`]; other tenants never see it.
/// Returns when every tenant finished.
///
/// # Errors
/// [`ConfigError`] for a limit of 0, before anything runs.
///
/// # Cancel safety
/// Dropping the future aborts every tenant's items.
///
/// # Examples
/// ```
/// use weir::policy::bulkhead::run_per_tenant;
/// use weir::error::BoxError;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let items = [("acme", 1), ("acme", 2), ("globex", -1), ("globex", 4)];
/// let outcomes = run_per_tenant(items, 8, |_tenant, n: i32| async move {
///     if n < 0 { Err::<(), BoxError>("negative".into()) } else { Ok(()) }
/// })
/// .await
/// .unwrap();
/// assert!(outcomes["acme"].is_ok());
/// assert_eq!(outcomes["globex"].error.as_ref().unwrap().to_string(), "negative");
/// # }
/// ```
pub async fn run_per_tenant<K, T, E, F, Fut, I>(
    items: I,
    limit_per_tenant: usize,
    f: F,
) -> Result<BTreeMap<K, TenantOutcome<E>>, ConfigError>
where
    I: IntoIterator<Item = (K, T)>,
    K: Ord + Clone + Display + Send + 'static,
    T: Send + 'static,
    F: Fn(K, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: From<Panicked> + From<Cancelled> + Display + Send + 'static,
{
    Group::<E>::builder().limit(limit_per_tenant).build()?;
    let mut by_tenant: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for (tenant, item) in items {
        by_tenant.entry(tenant).or_default().push(item);
    }
    let outcomes: Arc<Mutex<BTreeMap<K, TenantOutcome<E>>>> = Arc::default();
    let f = Arc::new(f);
    // The outer group's tasks never fail: a tenant's error is recorded, not
    // returned, so it cannot cancel the other tenants.
    let coordinator: Group<E> = Group::new();
    for (tenant, items) in by_tenant {
        let (outcomes, f) = (Arc::clone(&outcomes), Arc::clone(&f));
        coordinator
            .spawn_named(format!("tenant {tenant}"), async move {
                let outcome = run_tenant(tenant.clone(), items, limit_per_tenant, f).await;
                if outcome.error.is_some() {
                    tracing::warn!(%tenant, completed = outcome.completed, items = outcome.items, "tenant failed");
                }
                outcomes.lock().unwrap_or_else(|p| p.into_inner()).insert(tenant, outcome);
                Ok(())
            })
            .await;
    }
    if coordinator.wait().await.is_err() {
        unreachable!("coordinator tasks record errors instead of returning them");
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(outcomes)
}

async fn run_tenant<K, T, E, F, Fut>(tenant: K, items: Vec<T>, limit: usize, f: Arc<F>) -> TenantOutcome<E>
where
    K: Clone + Display + Send + 'static,
    T: Send + 'static,
    F: Fn(K, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: From<Panicked> + From<Cancelled> + Display + Send + 'static,
{
    let group: Group<E> = Group::builder().limit(limit).build().expect("the limit was checked");
    let completed = Arc::new(AtomicU64::new(0));
    let total = items.len() as u64;
    for (index, item) in items.into_iter().enumerate() {
        let (call, completed) = (f(tenant.clone(), item), Arc::clone(&completed));
        group
            .spawn_named(format!("tenant {tenant} item {index}"), async move {
                call.await?;
                completed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .await;
    }
    let error = group.wait().await.err();
    TenantOutcome { items: total, completed: completed.load(Ordering::Relaxed), error }
}
