//! A stage's definition: its function and its policy.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;

use crate::error::{BoxError, StageError};
use crate::policy::breaker::Breaker;
use crate::policy::bulkhead::{Bulkhead, KeyedBulkhead};
use crate::policy::hedge::Hedge;
use crate::policy::rate::{KeyedRateLimiter, RateLimiter};
use crate::policy::retry::RetryPolicy;
use crate::policy::{Stack, StackBuilder};

/// The function of a stage, called once per item (per attempt).
///
/// Built by [`Stage::map`], [`Stage::try_map`] and [`Stage::filter`], and
/// named in return types (`Stage<T, impl StageFn<T, Output = U>>`); sealed:
/// only weir implements it, so it can grow without breaking anyone.
/// `Ok(None)` means the item was filtered out.
pub trait StageFn<T>: sealed::Sealed + Send + Sync + 'static {
    /// What the stage emits per item.
    type Output: Send + 'static;
    /// Processes one item.
    fn call(&self, item: T) -> impl Future<Output = Result<Option<Self::Output>, BoxError>> + Send;
}

pub(crate) mod sealed {
    /// Implemented by weir's stage functions only.
    pub trait Sealed {}
    impl<F> Sealed for super::MapFn<F> {}
    impl<F> Sealed for super::TryMapFn<F> {}
    impl<F> Sealed for super::FilterFn<F> {}
}

/// A stage function that cannot fail; see [`Stage::map`].
#[derive(Debug, Clone)]
pub struct MapFn<F>(F);

/// A stage function that may fail; see [`Stage::try_map`].
#[derive(Debug, Clone)]
pub struct TryMapFn<F>(F);

/// A stage that keeps only some items; see [`Stage::filter`].
#[derive(Debug, Clone)]
pub struct FilterFn<F>(F);

impl<T, U, F, Fut> StageFn<T> for MapFn<F>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = U> + Send,
    T: Send + 'static,
    U: Send + 'static,
{
    type Output = U;
    async fn call(&self, item: T) -> Result<Option<U>, BoxError> {
        Ok(Some((self.0)(item).await))
    }
}

impl<T, U, E, F, Fut> StageFn<T> for TryMapFn<F>
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<U, E>> + Send,
    E: Into<BoxError>,
    T: Send + 'static,
    U: Send + 'static,
{
    type Output = U;
    async fn call(&self, item: T) -> Result<Option<U>, BoxError> {
        (self.0)(item).await.map(Some).map_err(Into::into)
    }
}

impl<T, F> StageFn<T> for FilterFn<F>
where
    F: Fn(&T) -> bool + Send + Sync + 'static,
    T: Send + 'static,
{
    type Output = T;
    async fn call(&self, item: T) -> Result<Option<T>, BoxError> {
        Ok((self.0)(&item).then_some(item))
    }
}

/// What a stage does with an item that failed (after its retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnError {
    /// Stop the pipeline: the run returns this item's [`StageError`]. The
    /// default.
    #[default]
    Fail,
    /// Drop the item, count it as skipped, log it at `warn`, go on.
    Skip,
    /// Count the item as failed, keep its error, go on; the run then
    /// returns every such error in one aggregate.
    Collect,
}

/// An item that failed for good in a stage, on its way to a dead-letter
/// sink.
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetter<T> {
    /// The item, as it was before the failing attempt.
    pub item: T,
    /// Why: stage, item, tenant, attempts, cause.
    pub error: StageError,
    /// When its first attempt failed.
    pub first_failure: SystemTime,
    /// When its last attempt failed.
    pub last_failure: SystemTime,
}

/// Where a stage sends items that failed: the hook a dead-letter queue
/// plugs into; [`MemoryDlq`](crate::durable::dlq::MemoryDlq)
/// implements it.
///
/// If this returns an error, the item is not lost: the run fails with a
/// [`StageError`] naming the stage, the item and both causes; or, for an
/// item that came with a [`Receipt`](super::Receipt), the item goes back
/// to its source ([`Fate::Released`](super::Fate::Released), delivered
/// again later) and the run goes on.
pub trait DeadLetterSink<T>: Send + Sync + 'static {
    /// Stores one failed item.
    fn dead_letter(&self, letter: DeadLetter<T>) -> BoxFuture<'_, Result<(), BoxError>>;
}

/// What a stage does after failure, with the item type bound in.
pub(crate) enum Policy<T> {
    Plain(OnError),
    DeadLetter(Arc<dyn DeadLetterSink<T>>),
}

type Classifier = Arc<dyn Fn(&BoxError) -> bool + Send + Sync>;
type Labeller<T> = Arc<dyn Fn(&T) -> String + Send + Sync>;

/// A named pipeline stage: its function, its workers and its policy.
///
/// # Defaults
/// - 1 worker;
/// - unordered (with 1 worker, order is kept anyway);
/// - no policy (no retry, no timeout: an empty [`Stack`]);
/// - [`OnError::Fail`];
/// - items named by their index only (no key, no tenant).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use weir::pipeline::{OnError, Stage};
/// use weir::policy::retry::RetryPolicy;
///
/// let parse = Stage::try_map("parse", |line: String| async move { line.trim().parse::<u64>() })
///     .workers(4)
///     .ordered()
///     .retry(RetryPolicy::builder().max_attempts(3).build().unwrap())
///     .timeout(Duration::from_secs(1))
///     .on_error(OnError::Skip)
///     .key(|line| line.clone());
/// # drop(parse);
/// ```
pub struct Stage<T, S> {
    pub(crate) name: Arc<str>,
    pub(crate) f: S,
    pub(crate) workers: usize,
    pub(crate) ordered: bool,
    /// Every attempt's policies, keyed by the item's tenant.
    pub(crate) policies: Stack,
    pub(crate) transient: Option<Classifier>,
    pub(crate) policy: Policy<T>,
    /// Set by the settings that need the item after an attempt (retry,
    /// hedge, dead letter), which is why they ask for `T: Clone`.
    pub(crate) copy: Option<fn(&T) -> T>,
    pub(crate) key: Option<Labeller<T>>,
    pub(crate) tenant: Option<Labeller<T>>,
}

impl<T, S> fmt::Debug for Stage<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("name", &self.name)
            .field("workers", &self.workers)
            .field("ordered", &self.ordered)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl<T> Stage<T, ()> {
    /// A stage that turns each item into one output and cannot fail.
    pub fn map<U, F, Fut>(name: impl Into<Arc<str>>, f: F) -> Stage<T, MapFn<F>>
    where
        MapFn<F>: StageFn<T, Output = U>,
        F: Fn(T) -> Fut,
        Fut: Future<Output = U>,
    {
        Stage::with_fn(name, MapFn(f))
    }

    /// A stage that turns each item into one output or fails. Returning an
    /// error that is (or wraps) [`Skip`](crate::error::Skip) skips the
    /// item; [`Permanent`](crate::error::Permanent) forbids a retry.
    pub fn try_map<U, E, F, Fut>(name: impl Into<Arc<str>>, f: F) -> Stage<T, TryMapFn<F>>
    where
        TryMapFn<F>: StageFn<T, Output = U>,
        F: Fn(T) -> Fut,
        Fut: Future<Output = Result<U, E>>,
    {
        Stage::with_fn(name, TryMapFn(f))
    }

    /// A stage that passes on the items for which `keep` is true.
    pub fn filter<F>(name: impl Into<Arc<str>>, keep: F) -> Stage<T, FilterFn<F>>
    where
        FilterFn<F>: StageFn<T, Output = T>,
        F: Fn(&T) -> bool,
    {
        Stage::with_fn(name, FilterFn(keep))
    }
}

impl<T, S> Stage<T, S> {
    fn with_fn(name: impl Into<Arc<str>>, f: S) -> Self {
        Self {
            name: name.into(),
            f,
            workers: 1,
            ordered: false,
            policies: Stack::default(),
            transient: None,
            policy: Policy::Plain(OnError::Fail),
            copy: None,
            key: None,
            tenant: None,
        }
    }

    /// The same stage around another function (the testing kit's fault
    /// injection wraps the stage's own this way).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn map_fn<S2>(self, wrap: impl FnOnce(S) -> S2) -> Stage<T, S2> {
        Stage {
            name: self.name,
            f: wrap(self.f),
            workers: self.workers,
            ordered: self.ordered,
            policies: self.policies,
            transient: self.transient,
            policy: self.policy,
            copy: self.copy,
            key: self.key,
            tenant: self.tenant,
        }
    }

    /// Runs the stage on `workers` tasks that take items as they come
    /// (fan-out). 0 is rejected when the pipeline runs.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Keeps the input order in the output, even with several workers
    /// (chunks are numbered and reassembled downstream).
    pub fn ordered(mut self) -> Self {
        self.ordered = true;
        self
    }

    /// Changes one setting of the stage's stack (checked when the
    /// pipeline runs, naming the stage).
    fn set_policy(mut self, set: impl FnOnce(StackBuilder) -> StackBuilder) -> Self {
        self.policies = set(self.policies.into_builder()).unvalidated();
        self
    }

    /// Bounds each call (each hedged copy); one that runs longer fails
    /// with [`TimedOut`](crate::error::TimedOut), which is transient.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.set_policy(|stack| stack.timeout(timeout))
    }

    /// What to do with an item that failed; see [`OnError`].
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.policy = Policy::Plain(on_error);
        self
    }

    /// Which errors to retry. By default every error is, except
    /// [`Permanent`](crate::error::Permanent) ones and panics.
    pub fn retry_if(mut self, is_transient: impl Fn(&BoxError) -> bool + Send + Sync + 'static) -> Self {
        self.transient = Some(Arc::new(is_transient));
        self
    }

    /// Names items in errors by a key (an order id, a URL) besides their
    /// index. Computed before each item is processed.
    pub fn key(mut self, key: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Names the tenant an item belongs to, in errors and logs.
    pub fn tenant(mut self, tenant: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        self.tenant = Some(Arc::new(tenant));
        self
    }

    /// Runs each attempt through `breaker`: an open breaker fails the
    /// attempt at once with [`CircuitOpen`](crate::policy::breaker::CircuitOpen),
    /// which is not retried; every other error counts as a breaker failure,
    /// except [`Skip`](crate::error::Skip) and the refusals of the rate
    /// limit and the bulkhead.
    pub fn breaker(self, breaker: Breaker) -> Self {
        self.set_policy(|stack| stack.breaker(breaker))
    }

    /// Paces the stage's attempts by `limiter`; a
    /// [`RateLimited`](crate::policy::rate::RateLimited) error (the next slot is
    /// further than the limiter's maximum wait) is transient.
    pub fn rate_limit(self, limiter: RateLimiter) -> Self {
        self.set_policy(|stack| stack.rate_limit(limiter))
    }

    /// Paces each tenant's attempts by its own limiter. Needs a
    /// [`tenant`](Self::tenant) label; items without one share the `""`
    /// tenant.
    pub fn rate_limit_per_tenant(self, limiters: std::sync::Arc<KeyedRateLimiter<String>>) -> Self {
        self.set_policy(|stack| stack.rate_limit_per_key(limiters))
    }

    /// Runs each attempt in a slot of `bulkhead`; a
    /// [`BulkheadFull`](crate::policy::bulkhead::BulkheadFull) error is transient.
    pub fn bulkhead(self, bulkhead: Bulkhead) -> Self {
        self.set_policy(|stack| stack.bulkhead(bulkhead))
    }

    /// Runs each attempt in a slot of its tenant's bulkhead.
    /// Needs a [`tenant`](Self::tenant) label; items without one share the
    /// `""` tenant.
    ///
    /// The stage's workers are shared by every tenant, and an item waiting
    /// for its tenant's slot holds the worker that took it. So that a
    /// saturated tenant never delays the others, give the bulkheads a
    /// [maximum wait](crate::policy::bulkhead::BulkheadBuilder::max_wait) (zero sheds
    /// at once): the waiting item fails with
    /// [`BulkheadFull`](crate::policy::bulkhead::BulkheadFull) and the stage's
    /// failure policy (dead letter, collect, skip) takes it. For tenants
    /// that must each have their own tasks, use
    /// [`run_per_tenant`](crate::policy::bulkhead::run_per_tenant).
    pub fn bulkhead_per_tenant(self, bulkheads: KeyedBulkhead<String>) -> Self {
        self.set_policy(|stack| stack.bulkhead_per_key(bulkheads))
    }
}

impl<T: Clone, S> Stage<T, S> {
    /// Runs each item through `stack` (its per-key policies keyed by the
    /// item's [`tenant`](Self::tenant)), replacing the policies set so
    /// far: one stack can be shared by several stages and other callers.
    /// Needs `T: Clone`: a retry or a hedge gets a copy per call.
    pub fn policies(mut self, stack: Stack) -> Self {
        self.policies = stack;
        self.copy = Some(T::clone);
        self
    }

    /// Retries a failed item by `policy` before its failure counts.
    /// Needs `T: Clone`: each attempt gets a copy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.copy = Some(T::clone);
        self.set_policy(|stack| stack.retry(policy))
    }

    /// Hedges each attempt: the function is called again on a copy of the
    /// item when the first call is slow, by `hedge`'s settings; the first
    /// success wins, the others are dropped. If every call fails, the
    /// attempt fails with their errors.
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        self.copy = Some(T::clone);
        self.set_policy(|stack| stack.hedge(hedge))
    }

    /// Sends failed items (after their retries) to `sink` and goes on.
    pub fn dead_letter(mut self, sink: Arc<dyn DeadLetterSink<T>>) -> Self {
        self.policy = Policy::DeadLetter(sink);
        self.copy = Some(T::clone);
        self
    }
}
