//! [`WorkQueue`]: a durable work queue in the store's database, shared by
//! every process that opens the same store: jobs are enqueued (with a
//! deduplication id, a priority, a delay, a partition key), claimed by one
//! worker at a time under a lease, and settled by the pipeline that ran
//! them. Concurrency limits and rate limits (claims per period), per queue
//! and per partition key (a tenant), hold **across the fleet**: they are
//! checked in the database, in the transaction that claims.
//!
//! ```text
//! enqueue ─▶ queued ─claim (lease, fence+1)─▶ claimed ─▶ done | skipped | failed | dead
//!              ▲                                 │ transient failure, attempts left: queued again, later
//!              └──── lease expired (worker died) ┘ abandoned (run stopped): queued again, now
//! ```
//!
//! Every statement runs in the store's group commit
//! ([`Store::commit_effect`]): on SQLite that is the file's one writer,
//! which makes claims serial; on PostgreSQL a claim with a concurrency
//! limit takes a transaction-level advisory lock on the queue (claims of
//! one limited queue are serial, each takes up to a batch), and a claim
//! without limits skips rows other claimers hold (`FOR UPDATE SKIP
//! LOCKED`). A job's settlement is fenced: a worker whose lease expired
//! and whose job was claimed again cannot settle it any more.
//!
//! Needs a database store (SQLite or PostgreSQL); the memory store refuses.

mod inspect;
mod partitions;
mod receipt;
mod sql;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::Stream;

pub use self::inspect::{JobQuery, JobRecord, JobStatus};
pub use self::partitions::PartitionCounts;
pub(crate) use self::receipt::Claimer;
pub use self::receipt::JobReceipt;
pub(crate) use self::sql::Settlement;
use crate::durable::store::{Store, Tx};
use crate::error::BoxError;
use crate::policy::retry::RetryPolicy;

/// A job to enqueue.
///
/// # Defaults
/// No deduplication id, no partition key, priority 0, available now.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewJob {
    /// What the worker gets.
    pub payload: serde_json::Value,
    /// A job with the same deduplication id in the same queue is not added
    /// again (whatever its status): enqueueing is idempotent.
    pub dedup_id: Option<String>,
    /// The key the per-key concurrency limit counts by (a tenant).
    pub partition_key: Option<String>,
    /// Higher first; among equals, the earliest available first.
    pub priority: i32,
    /// Not claimed before this long from now.
    pub delay: Duration,
}

impl NewJob {
    /// A job carrying `payload`.
    pub fn new(payload: serde_json::Value) -> Self {
        Self { payload, dedup_id: None, partition_key: None, priority: 0, delay: Duration::ZERO }
    }

    /// Sets the deduplication id.
    pub fn dedup_id(mut self, id: impl Into<String>) -> Self {
        self.dedup_id = Some(id.into());
        self
    }

    /// Sets the partition key.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Delays the job's start.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Job {
    /// Its id in the queue.
    pub id: i64,
    /// What was enqueued.
    pub payload: serde_json::Value,
    /// Its partition key.
    pub partition_key: Option<String>,
    /// Its deduplication id.
    pub dedup_id: Option<String>,
    /// Claims so far, this one included.
    pub attempts: u32,
    /// This claim's fence: settling needs it.
    pub fence: i64,
}

/// How many jobs a queue holds, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueCounts {
    /// Waiting to be claimed (delayed ones included).
    pub queued: u64,
    /// Claimed under a lease that has not expired.
    pub claimed: u64,
    /// Ran to the end.
    pub done: u64,
    /// Skipped.
    pub skipped: u64,
    /// Failed for good and kept in a run's errors (not dead-lettered); for
    /// a saga, it ended compensated or failed.
    pub failed: u64,
    /// Failed for good and dead-lettered.
    pub dead: u64,
}

/// A durable work queue in a [`Store`]; see the [module docs](self).
///
/// # Defaults
/// - no concurrency or rate limit, per queue or per key;
/// - a 30 s lease, renewed every 10 s while a job runs;
/// - at most 5 claims per job; a job that failed with a transient error
///   waits 1 s, doubling to 60 s, before its next claim.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    store: Store,
    name: Arc<str>,
    limits: Limits,
    lease: Duration,
    retry: Arc<RetryPolicy>,
}

/// Fleet-wide limits on claimed jobs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Limits {
    /// Jobs claimed at once, in the queue.
    pub(crate) per_queue: Option<u32>,
    /// Jobs claimed at once, per partition key.
    pub(crate) per_key: Option<u32>,
    /// Claims per period, in the queue.
    pub(crate) rate: Option<(u32, Duration)>,
    /// Claims per period, per partition key.
    pub(crate) rate_per_key: Option<(u32, Duration)>,
}

impl Limits {
    pub(crate) fn any(&self) -> bool {
        self.per_queue.is_some() || self.per_key.is_some() || self.rate.is_some() || self.rate_per_key.is_some()
    }
}

impl WorkQueue {
    /// The queue `name` in `store`.
    pub fn new(store: Store, name: impl Into<Arc<str>>) -> Self {
        let retry = RetryPolicy::builder()
            .max_attempts(5)
            .initial_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(60))
            .build()
            .expect("valid defaults");
        Self {
            store,
            name: name.into(),
            limits: Limits::default(),
            lease: Duration::from_secs(30),
            retry: Arc::new(retry),
        }
    }

    /// At most `jobs` claimed at once in the whole fleet. Every worker of
    /// the queue must set the same limits: each enforces its own when it
    /// claims.
    pub fn concurrency(mut self, jobs: u32) -> Self {
        self.limits.per_queue = Some(jobs.max(1));
        self
    }

    /// At most `jobs` claimed at once per partition key (a tenant), in the
    /// whole fleet.
    pub fn concurrency_per_key(mut self, jobs: u32) -> Self {
        self.limits.per_key = Some(jobs.max(1));
        self
    }

    /// At most `claims` claims per `period` in the whole fleet (a job's
    /// latest claim counts). A job that would exceed it stays queued.
    pub fn rate(mut self, claims: u32, period: Duration) -> Self {
        self.limits.rate = Some((claims.max(1), period));
        self
    }

    /// At most `claims` claims per `period` per partition key (a tenant's
    /// calls to a rate-limited API), in the whole fleet.
    pub fn rate_per_key(mut self, claims: u32, period: Duration) -> Self {
        self.limits.rate_per_key = Some((claims.max(1), period));
        self
    }

    /// How long a claim lasts without renewal; a worker that dies loses
    /// its jobs to others after it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// Claims per job (`max_attempts`) and the wait before a failed job's
    /// next claim (its backoff).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Arc::new(policy);
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Enqueues a job; its id (the existing job's, if its deduplication id
    /// was enqueued before).
    ///
    /// # Errors
    /// The store failing, or a memory store.
    pub async fn enqueue(&self, job: NewJob) -> Result<i64, BoxError> {
        let queue = Arc::clone(&self.name);
        let job = Arc::new(job);
        self.store
            .commit_effect(move |tx| {
                let (queue, job) = (Arc::clone(&queue), Arc::clone(&job));
                Box::pin(async move { Ok(sql::enqueue(tx, &queue, &job, SystemTime::now()).await?.0) })
            })
            .await
    }

    /// Enqueues a job inside the caller's transaction (in an effect of
    /// [`Store::commit_effect`]): the job exists if and only if the
    /// caller's other writes commit.
    ///
    /// # Errors
    /// The statement failing.
    pub async fn enqueue_in(tx: &mut Tx, queue: &str, job: &NewJob) -> Result<i64, BoxError> {
        Ok(sql::enqueue(tx, queue, job, SystemTime::now()).await?.0)
    }

    /// [`enqueue_in`](Self::enqueue_in), also giving the payload stored
    /// before when `job`'s deduplication id was enqueued before.
    pub(crate) async fn enqueue_or_find_in(
        tx: &mut Tx,
        queue: &str,
        job: &NewJob,
    ) -> Result<(i64, Option<serde_json::Value>), BoxError> {
        sql::enqueue(tx, queue, job, SystemTime::now()).await
    }

    /// Claims up to `max` jobs for `worker`, highest priority first,
    /// within the concurrency limits; jobs whose lease expired are claimed
    /// again.
    ///
    /// # Errors
    /// The store failing.
    pub async fn claim(&self, worker: &str, max: usize) -> Result<Vec<Job>, BoxError> {
        let (queue, worker, limits, lease) =
            (Arc::clone(&self.name), Arc::<str>::from(worker), self.limits, self.lease);
        let claimed: Vec<Job> = self
            .store
            .commit_effect(move |tx| {
                let (queue, worker) = (Arc::clone(&queue), Arc::clone(&worker));
                Box::pin(async move { sql::claim(tx, &queue, &worker, max, limits, lease, SystemTime::now()).await })
            })
            .await?;
        if !claimed.is_empty() {
            let queue = || vec![("queue", self.name.to_string())];
            crate::observe::counter("weir_queue_claimed_total", queue).increment(claimed.len() as u64);
        }
        Ok(claimed)
    }

    /// Counts `n` jobs settled with `status`, for the metrics recorder.
    fn settled(&self, status: &str, n: u64) {
        if n > 0 {
            let labels = || vec![("queue", self.name.to_string()), ("status", status.to_owned())];
            crate::observe::counter("weir_queue_settled_total", labels).increment(n);
        }
    }

    /// Marks a job claimed with [`claim`](Self::claim) done; `false` if its
    /// claim is no longer this worker's (its lease expired and another
    /// worker claimed it: that claim settles it). Jobs taken through
    /// [`source`](Self::source) are settled by their receipts instead.
    ///
    /// # Errors
    /// The store failing.
    pub async fn complete(&self, job: &Job) -> Result<bool, BoxError> {
        self.settle(job, sql::Settlement::done()).await
    }

    /// Marks many claimed jobs done in one statement; how many were still
    /// this worker's (the others were claimed again after their lease
    /// expired).
    ///
    /// # Errors
    /// The store failing.
    pub async fn complete_all(&self, jobs: &[Job]) -> Result<u64, BoxError> {
        self.complete_claims(jobs.iter().map(|job| (job.id, job.fence)).collect()).await
    }

    /// [`complete_all`](Self::complete_all) by `(job id, fence)`.
    pub(crate) async fn complete_claims(&self, held: Vec<(i64, i64)>) -> Result<u64, BoxError> {
        if held.is_empty() {
            return Ok(0);
        }
        let done = self
            .store
            .commit_effect(move |tx| {
                let held = held.clone();
                Box::pin(async move { sql::complete_all(tx, &held, SystemTime::now()).await })
            })
            .await?;
        self.settled("done", done);
        Ok(done)
    }

    /// Gives a claimed job back to the queue, claimable again after
    /// `after`, keeping `error` as its last error; `false` as for
    /// [`complete`](Self::complete).
    ///
    /// # Errors
    /// The store failing.
    pub async fn retry_later(&self, job: &Job, after: Duration, error: &str) -> Result<bool, BoxError> {
        self.settle(job, sql::Settlement::Again { after, error: Some(error.to_owned()) }).await
    }

    /// Marks a claimed job failed for good, keeping `error`; `false` as
    /// for [`complete`](Self::complete).
    ///
    /// # Errors
    /// The store failing.
    pub async fn fail(&self, job: &Job, error: &str) -> Result<bool, BoxError> {
        self.settle(job, sql::Settlement::Final { status: "failed", error: Some(error.to_owned()) }).await
    }

    /// Marks a claimed job dead (it can never run as it is: a bad payload),
    /// keeping `error`; [`requeue`](Self::requeue) puts it back. `false` as
    /// for [`complete`](Self::complete).
    ///
    /// # Errors
    /// The store failing.
    pub async fn mark_dead(&self, job: &Job, error: &str) -> Result<bool, BoxError> {
        self.settle(job, sql::Settlement::Final { status: "dead", error: Some(error.to_owned()) }).await
    }

    async fn settle(&self, job: &Job, how: sql::Settlement) -> Result<bool, BoxError> {
        self.settle_claim(job.id, job.fence, how).await
    }

    /// Settles claim `fence` of job `id`; `false` if it is not the job's
    /// claim any more.
    async fn settle_claim(&self, id: i64, fence: i64, how: sql::Settlement) -> Result<bool, BoxError> {
        let status = match &how {
            sql::Settlement::Final { status, .. } => *status,
            sql::Settlement::Again { .. } => "retry",
        };
        let settled = self
            .store
            .commit_effect(move |tx| {
                let how = how.clone();
                Box::pin(async move { sql::settle(tx, id, fence, &how, SystemTime::now()).await })
            })
            .await?;
        self.settled(status, u64::from(settled));
        Ok(settled)
    }

    /// How many jobs the queue holds, by status.
    ///
    /// # Errors
    /// The store failing.
    ///
    /// # Metrics
    /// With metrics on, it also sets the gauges `weir_queue_jobs{queue,
    /// status}` (a worker taking jobs through [`source`](Self::source)
    /// reads them every 5 s).
    pub async fn counts(&self) -> Result<QueueCounts, BoxError> {
        let queue = Arc::clone(&self.name);
        let counts: QueueCounts = self
            .store
            .commit_effect(move |tx| {
                let queue = Arc::clone(&queue);
                Box::pin(async move { sql::counts(tx, &queue, SystemTime::now()).await })
            })
            .await?;
        let by_status = [
            ("queued", counts.queued),
            ("claimed", counts.claimed),
            ("done", counts.done),
            ("skipped", counts.skipped),
            ("failed", counts.failed),
            ("dead", counts.dead),
        ];
        for (status, n) in by_status {
            let labels = || vec![("queue", self.name.to_string()), ("status", status.to_owned())];
            crate::observe::gauge("weir_queue_jobs", labels).set(n as f64);
        }
        Ok(counts)
    }

    /// The queue's jobs as a pipeline source for `worker`: claims while
    /// the pipeline takes them, waiting (10 ms, growing to 250 ms) while
    /// the queue is empty or at its limits; each job comes with a
    /// [`JobReceipt`] that settles it.
    pub fn source(
        &self,
        worker: impl Into<String>,
    ) -> impl Stream<Item = Result<(Job, JobReceipt), BoxError>> + Send + 'static {
        receipt::source(self.clone(), worker.into())
    }
}
