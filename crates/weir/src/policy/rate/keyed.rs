//! [`KeyedRateLimiter`]: one budget per key.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::gcra::Pace;
use super::{RateLimited, RateLimiter};

/// One [`RateLimiter`] budget per key (a tenant, a host), created on first
/// use, each with the settings it was built with
/// ([`RateLimiterBuilder::build_keyed`](super::RateLimiterBuilder::build_keyed)).
///
/// Budgets that are full again are forgotten when the map has doubled
/// since the last sweep, so a stream of one-off keys does not grow it for
/// ever.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use weir::policy::rate::RateLimiter;
///
/// let limiter = RateLimiter::builder().rate(1, Duration::from_secs(1)).build_keyed::<&str>().unwrap();
/// assert!(limiter.try_acquire(&"tenant-a").is_ok());
/// assert!(limiter.try_acquire(&"tenant-a").is_err()); // a's budget is spent
/// assert!(limiter.try_acquire(&"tenant-b").is_ok()); // b's is its own
/// ```
#[derive(Debug)]
pub struct KeyedRateLimiter<K> {
    pace: Pace,
    budgets: Mutex<Budgets<K>>,
}

#[derive(Debug)]
struct Budgets<K> {
    /// Each key's limiter (named after the key once, when it is created).
    by_key: HashMap<K, RateLimiter>,
    swept_at_len: usize,
}

impl<K> KeyedRateLimiter<K> {
    pub(super) fn new(pace: Pace) -> Self {
        Self { pace, budgets: Mutex::new(Budgets { by_key: HashMap::new(), swept_at_len: 64 }) }
    }
}

impl<K: Hash + Eq + Clone + ToString> KeyedRateLimiter<K> {
    /// The limiter of `key` (a handle on its budget: clones share it).
    pub fn limiter(&self, key: &K) -> RateLimiter {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(limiter) = budgets.by_key.get(key) {
            return limiter.clone();
        }
        if budgets.by_key.len() >= budgets.swept_at_len {
            let now = Instant::now();
            budgets.by_key.retain(|_, l| Arc::strong_count(&l.gcra) > 1 || !l.gcra.is_idle(now));
            budgets.swept_at_len = (budgets.by_key.len() * 2).max(64);
        }
        let limiter = RateLimiter::new(Arc::from(key.to_string()), self.pace);
        budgets.by_key.insert(key.clone(), limiter.clone());
        limiter
    }

    /// Takes a slot of `key`'s budget now.
    ///
    /// # Errors
    /// [`RateLimited`] naming the key if none is free now.
    pub fn try_acquire(&self, key: &K) -> Result<(), RateLimited> {
        self.limiter(key).try_acquire()
    }

    /// Takes the next slot of `key`'s budget, waiting (at most the maximum
    /// wait).
    ///
    /// # Errors
    /// [`RateLimited`] naming the key if its next slot is further away than
    /// the maximum wait.
    ///
    /// # Cancel safety
    /// As [`RateLimiter::acquire`].
    pub async fn acquire(&self, key: &K) -> Result<(), RateLimited> {
        self.limiter(key).acquire().await
    }

    /// How many keys have a budget in memory.
    pub fn keys(&self) -> usize {
        self.budgets.lock().unwrap_or_else(|p| p.into_inner()).by_key.len()
    }
}
