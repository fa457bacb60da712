//! Sagas started through a [`WorkQueue`]: [`SagaEngine::enqueue`] puts a
//! saga's start in the queue, and [`SagaEngine::work`] in each of N worker
//! processes claims as many as it has free slots and drives them, so the
//! fleet splits the sagas and the queue's concurrency and rate limits
//! (per queue, per partition key: a tenant) hold across it.
//!
//! ```text
//! enqueue(id, definition, input) ─▶ job (dedup id = saga id)
//!   work: claim ≤ free slots ─▶ run_with_id ─▶ completed: job done
//!                                            ├▶ compensated / failed: job failed (the saga says why)
//!                                            ├▶ asleep or waiting for an event: job done (the engine's waker carries the saga on)
//!                                            ├▶ another worker holds the saga: wait out its lease, again
//!                                            └▶ the store failing: job queued again after the queue's delay
//! ```
//!
//! The job is the saga's start request; the saga's record is written when
//! a worker first claims it (until then `weir queues` shows it, not
//! `weir sagas`). A worker that dies mid-saga loses the job's lease and
//! the saga's; the next worker to claim the job takes the saga over (after
//! the saga's lease ran out) and carries it on from its last transition.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::engine::Inner;
use super::{SagaEngine, SagaError};
use crate::durable::queue::{Claimer, Job, JobReceipt, NewJob, Settlement, WorkQueue};
use crate::durable::store::{StoreError, Tx};

/// A saga to start through a [`WorkQueue`] with [`SagaEngine::enqueue`].
///
/// # Defaults
/// No partition key, priority 0, available now.
#[derive(Debug, Clone)]
pub struct SagaStart {
    id: String,
    definition: String,
    input: serde_json::Value,
    partition_key: Option<String>,
    priority: i32,
    delay: Duration,
    deadline: Option<SystemTime>,
}

impl SagaStart {
    /// Saga `id` of `definition` with `input`.
    ///
    /// # Errors
    /// `input` not serializable to JSON.
    pub fn new<I: Serialize>(
        id: impl Into<String>,
        definition: impl Into<String>,
        input: &I,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: id.into(),
            definition: definition.into(),
            input: serde_json::to_value(input)?,
            partition_key: None,
            priority: 0,
            delay: Duration::ZERO,
            deadline: None,
        })
    }

    /// Cancelled and compensated if it has not ended by `deadline` (see
    /// [`SagaEngine::run_with_deadline`]); a start still queued then is
    /// rolled back as soon as a worker claims it.
    pub fn deadline(mut self, deadline: SystemTime) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The key the queue's per-key limits count by (a tenant).
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// Higher first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Not started before this long from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn job(&self) -> NewJob {
        let mut payload = serde_json::json!({ "saga": self.id, "definition": self.definition, "input": self.input });
        if let Some(deadline) = self.deadline {
            payload["deadline_at"] = crate::durable::store::ms(deadline).into();
        }
        let mut job = NewJob::new(payload).dedup_id(&self.id).priority(self.priority).delay(self.delay);
        if let Some(key) = &self.partition_key {
            job = job.partition_key(key);
        }
        job
    }

    /// The start a queued job carries; `None` if it is not a saga's.
    fn from_job(job: &Job) -> Option<Self> {
        let text = |field: &str| job.payload.get(field)?.as_str().map(str::to_owned);
        Some(Self {
            id: text("saga")?,
            definition: text("definition")?,
            input: job.payload.get("input")?.clone(),
            partition_key: job.partition_key.clone(),
            priority: 0,
            delay: Duration::ZERO,
            deadline: job
                .payload
                .get("deadline_at")
                .and_then(serde_json::Value::as_u64)
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        })
    }
}

/// What one [`SagaEngine::work`] loop did, by job.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkReport {
    /// Sagas driven to completion (the job is `done`).
    pub completed: u64,
    /// Sagas rolled back (the job is `failed`).
    pub compensated: u64,
    /// Sagas left `failed`: a compensation failed too (the job is `failed`).
    pub failed: u64,
    /// Sagas that went to sleep or to wait for an event (the job is
    /// `done`: its start was served; a worker's waker carries the saga on
    /// when it is due, within that engine's `max_in_flight` but outside
    /// the queue's limits).
    pub suspended: u64,
    /// Jobs given back to the queue for a later claim: the store failed,
    /// or no worker here knows the saga's definition.
    pub given_back: u64,
    /// Jobs that can never run, kept as `dead` with the reason: not a
    /// saga's start, another input under a started saga's id, a definition
    /// no worker knew within the queue's attempts.
    pub dead: u64,
}

/// How one job ended here.
enum Outcome {
    Completed,
    Suspended,
    Compensated,
    Failed,
    GivenBack,
    Dead,
}

impl WorkReport {
    fn count(&mut self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Completed => &mut self.completed,
            Outcome::Suspended => &mut self.suspended,
            Outcome::Compensated => &mut self.compensated,
            Outcome::Failed => &mut self.failed,
            Outcome::GivenBack => &mut self.given_back,
            Outcome::Dead => &mut self.dead,
        };
        *counter += 1;
    }
}

impl SagaEngine {
    /// Puts the start of a saga in `queue`: a worker running
    /// [`work`](Self::work) on it will run it. The saga's id is the job's
    /// deduplication id, so enqueueing is idempotent: the same start again
    /// adds nothing (the saga runs once, or ran). Returns the job's id.
    ///
    /// # Errors
    /// [`SagaError::unknown_definition`] if this engine does not know the
    /// definition; [`SagaError::conflicting_input`] if a start under the
    /// same id was enqueued with another definition or input (never merged:
    /// nothing is added); the store failing.
    pub async fn enqueue(&self, queue: &WorkQueue, start: &SagaStart) -> Result<i64, SagaError> {
        self.check_definition(start)?;
        let (queue_name, job) = (queue.name().to_owned(), start.job());
        let stored = self
            .inner
            .store
            .commit_effect(move |tx| {
                let (queue_name, job) = (queue_name.clone(), job.clone());
                Box::pin(async move { WorkQueue::enqueue_or_find_in(tx, &queue_name, &job).await })
            })
            .await
            .map_err(|e| {
                SagaError::store(&start.id, StoreError::Query { target: self.inner.store.target(), source: e })
            })?;
        self.refuse_conflict(start, stored)
    }

    /// [`enqueue`](Self::enqueue) inside the caller's transaction (in an
    /// effect of [`Store::commit_effect`](crate::durable::store::Store::commit_effect)):
    /// the saga is queued if and only if the caller's other writes commit.
    ///
    /// # Errors
    /// As [`enqueue`](Self::enqueue); an error here fails the caller's
    /// transaction when the effect returns it.
    pub async fn enqueue_in(&self, tx: &mut Tx, queue: &str, start: &SagaStart) -> Result<i64, SagaError> {
        self.check_definition(start)?;
        let stored = WorkQueue::enqueue_or_find_in(tx, queue, &start.job()).await.map_err(|e| {
            SagaError::store(&start.id, StoreError::Query { target: self.inner.store.target(), source: e })
        })?;
        self.refuse_conflict(start, stored)
    }

    fn check_definition(&self, start: &SagaStart) -> Result<(), SagaError> {
        match self.inner.resolve(&start.definition) {
            Some(_) => Ok(()),
            None => Err(SagaError::for_unknown_definition(&start.id, &start.definition)),
        }
    }

    fn refuse_conflict(
        &self,
        start: &SagaStart,
        (job, stored): (i64, Option<serde_json::Value>),
    ) -> Result<i64, SagaError> {
        let Some(stored) = stored.filter(|stored| *stored != start.job().payload) else { return Ok(job) };
        let definition = stored.get("definition").and_then(serde_json::Value::as_str).unwrap_or_default();
        let input = stored.get("input").unwrap_or(&serde_json::Value::Null);
        Err(SagaError::input_conflict(&start.id, (definition, input), (&start.definition, &start.input)))
    }

    /// Serves `queue` until `stop` is cancelled: claims as many saga starts
    /// as the engine has free slots ([`max_in_flight`]), so that no worker
    /// holds more than it runs, and drives each; the queue's limits decide
    /// what may be claimed across the fleet. When `stop` is cancelled it
    /// claims no more and returns once the sagas it is driving have ended
    /// (a drain: nothing is cut off). While it serves, the engine's
    /// heartbeat takes over no expired saga by itself: the queue gives a
    /// dead worker's jobs to a live one, within the limits.
    ///
    /// [`max_in_flight`]: super::SagaEngineBuilder::max_in_flight
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use tokio_util::sync::CancellationToken;
    /// use weir::durable::queue::WorkQueue;
    /// use weir::durable::saga::{SagaDefinition, SagaEngine, SagaStart, StepError};
    /// use weir::durable::store::Store;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::error::BoxError> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("app.db").to_str().unwrap()).await?;
    /// let order = SagaDefinition::builder("order")
    ///     .step("charge", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
    ///     .build()?;
    /// let engine = SagaEngine::builder(store.clone()).definition(order).build()?;
    /// let queue = WorkQueue::new(store, "orders").concurrency_per_key(2);
    /// for n in 0..3 {
    ///     let start = SagaStart::new(format!("order-{n}"), "order", &n)?.partition_key("acme");
    ///     engine.enqueue(&queue, &start).await?;
    /// }
    /// engine.enqueue(&queue, &SagaStart::new("order-0", "order", &0)?).await?; // queued once
    ///
    /// // A worker: serves the queue until told to stop (here: once it is empty).
    /// let stop = CancellationToken::new();
    /// let (watch, stopper) = (queue.clone(), stop.clone());
    /// tokio::spawn(async move {
    ///     while watch.counts().await.map(|c| c.queued + c.claimed).unwrap_or(1) > 0 {
    ///         tokio::time::sleep(Duration::from_millis(10)).await;
    ///     }
    ///     stopper.cancel();
    /// });
    /// let report = engine.work(&queue, stop).await?;
    /// assert_eq!(report.completed, 3);
    /// assert_eq!(queue.counts().await?.done, 3);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The store failing to claim 8 times in a row (the sagas already
    /// claimed are driven to their end first).
    ///
    /// # Cancel safety
    /// Dropping the future stops the sagas it drives between two durable
    /// transitions; their jobs go back to the queue at once, and the next
    /// worker to claim one carries the saga on once its lease has run out.
    pub async fn work(&self, queue: &WorkQueue, stop: CancellationToken) -> Result<WorkReport, StoreError> {
        let inner = &self.inner;
        let _serving = Serving::start(inner);
        self.start_heartbeat();
        let mut claimer = Claimer::new(queue.clone(), inner.worker.clone());
        let (mut running, mut ended) = (JoinSet::new(), Ended::default());
        let mut failure = None;
        while !stop.is_cancelled() {
            while let Some(done) = running.try_join_next() {
                ended.record(done);
            }
            // Claims go in batches: wait until a quarter of the slots are
            // free (while sagas run), so a claim's round trip is shared by
            // many jobs. One job per claim, each claim waiting for the
            // previous, ran 622 sagas/s against 3,631 run directly
            // (PostgreSQL, 64 in flight, `benches/queue.rs`).
            let free = inner.slots.available_permits();
            let refill_at = (inner.max_in_flight / 4).max(1);
            if free == 0 || (free < refill_at && !running.is_empty()) {
                tokio::select! {
                    () = stop.cancelled() => break,
                    Some(done) = running.join_next() => ended.record(done),
                }
                continue;
            }
            // The jobs done since the last claim, in one statement.
            ended.complete(queue).await;
            // Not raced with `stop`: a claim dropped half-way may still
            // commit, and its jobs would wait out their leases unrun.
            match claimer.take(free).await {
                Ok(jobs) if jobs.is_empty() => tokio::select! {
                    () = stop.cancelled() => break,
                    () = claimer.wait() => {}
                    Some(done) = running.join_next() => ended.record(done),
                },
                Ok(jobs) => {
                    for (job, receipt) in jobs {
                        let slot = inner.slots.clone().acquire_owned().await.expect("never closed");
                        let engine = self.clone();
                        running.spawn(async move {
                            let outcome = engine.run_job(job, receipt).await;
                            drop(slot);
                            outcome
                        });
                    }
                }
                Err(error) => {
                    failure = Some(StoreError::Query { target: inner.store.target(), source: error });
                    break;
                }
            }
        }
        while let Some(done) = running.join_next().await {
            ended.record(done);
        }
        ended.complete(queue).await;
        match failure {
            Some(error) => Err(error),
            None => Ok(ended.report),
        }
    }

    /// Runs the saga `job` starts and settles the job by how it ended;
    /// a job `done` comes back unsettled, to be completed with others.
    async fn run_job(&self, job: Job, receipt: JobReceipt) -> (Outcome, Option<JobReceipt>) {
        let Some(start) = SagaStart::from_job(&job) else {
            let why = format!("job {} is not a saga's start (it needs `saga`, `definition`, `input`)", job.id);
            return (settle(receipt, Outcome::Dead, Some(why)).await, None);
        };
        if self.inner.resolve(&start.definition).is_none() {
            let why = format!("no worker here knows saga definition `{}`", start.definition);
            return (give_back_or_bury(receipt, why).await, None);
        }
        let run = loop {
            match self.run_in_slot(&start.id, &start.definition, &start.input, start.deadline).await {
                // Another worker holds the saga (one that stopped past its
                // job's lease, or drives it outside the queue): wait it out;
                // this job's lease is renewed meanwhile.
                Err(error) if error.is_lease_lost() => self.wait_out_lease(&start.id).await,
                run => break run,
            }
        };
        let outcome = match run {
            Ok(_) => return (Outcome::Completed, Some(receipt)),
            Err(error) if error.is_suspended() => return (Outcome::Suspended, Some(receipt)),
            Err(error) => {
                let why = error.to_string();
                if error.is_compensated() {
                    settle(receipt, Outcome::Compensated, Some(why)).await
                } else if error.is_failed() {
                    settle(receipt, Outcome::Failed, Some(why)).await
                } else if error.conflicting_input().is_some() {
                    settle(receipt, Outcome::Dead, Some(why)).await
                } else {
                    give_back_or_bury(receipt, why).await
                }
            }
        };
        (outcome, None)
    }

    /// Waits until saga `id`'s lease has run out (at least 50 ms, at most
    /// one lease), or the store says it ended.
    async fn wait_out_lease(&self, id: &str) {
        let lease = self.inner.lease;
        let until = match self.inner.store.saga(id).await {
            Ok(Some(record)) => record.lease_until,
            _ => None,
        };
        let left = until.map_or(lease / 3, |until| {
            Duration::from_millis(u64::try_from(until - crate::durable::store::now_ms()).unwrap_or(0))
        });
        tokio::time::sleep(left.clamp(Duration::from_millis(50), lease)).await;
    }
}

/// What the jobs of a [`SagaEngine::work`] loop came to, and the
/// receipts of the ones done, not yet completed in the queue (their
/// leases are renewed until then).
#[derive(Default)]
struct Ended {
    report: WorkReport,
    done: Vec<JobReceipt>,
}

impl Ended {
    fn record(&mut self, joined: Result<(Outcome, Option<JobReceipt>), tokio::task::JoinError>) {
        let (outcome, unsettled) = joined.expect("a saga job's task never panics: steps run under the panic guard");
        self.report.count(outcome);
        self.done.extend(unsettled);
    }

    /// Marks the jobs done in one statement: per job, a statement of its
    /// own cost as much as the saga's own writes. If it fails, their
    /// leases run out and their next claims find the sagas ended and
    /// settle them.
    async fn complete(&mut self, queue: &WorkQueue) {
        let done = self.done.drain(..).filter_map(JobReceipt::into_claim).collect();
        if let Err(error) = queue.complete_claims(done).await {
            tracing::warn!(%error, "could not mark done the jobs of sagas that ended; their next claims will");
        }
    }
}

/// Settles `receipt` with the final status `outcome` stands for.
async fn settle(receipt: JobReceipt, outcome: Outcome, error: Option<String>) -> Outcome {
    let status = match outcome {
        Outcome::Completed | Outcome::Suspended => unreachable!("done jobs are completed together"),
        Outcome::Compensated | Outcome::Failed => "failed",
        Outcome::Dead => "dead",
        Outcome::GivenBack => unreachable!("given back is not final"),
    };
    if let Err(e) = receipt.settle_as(Settlement::Final { status, error }).await {
        // The job's lease runs out and another claim settles it: the saga
        // it started has ended, so that claim finds its outcome.
        tracing::warn!(error = %e, "could not settle a saga's job; its next claim will");
    }
    outcome
}

/// Gives the job back for a later claim while the queue allows more
/// attempts; after the last one, keeps it as `dead` with `why`.
async fn give_back_or_bury(receipt: JobReceipt, why: String) -> Outcome {
    use crate::pipeline::Receipt;
    if !receipt.may_redeliver() {
        return settle(receipt, Outcome::Dead, Some(why)).await;
    }
    let after = receipt.retry_delay();
    if let Err(e) = receipt.settle_as(Settlement::Again { after, error: Some(why) }).await {
        tracing::warn!(error = %e, "could not give a saga's job back; its lease runs out instead");
    }
    Outcome::GivenBack
}

/// Counts a [`SagaEngine::work`] loop in its engine while it lives.
struct Serving<'a>(&'a Inner);

impl<'a> Serving<'a> {
    fn start(inner: &'a Inner) -> Self {
        inner.serving_queues.fetch_add(1, Ordering::Relaxed);
        Self(inner)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.serving_queues.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_round_trips_through_its_job() {
        let start = SagaStart::new("o-1", "order", &serde_json::json!({"n": 1})).unwrap().partition_key("acme");
        let job = start.job();
        assert_eq!(job.dedup_id.as_deref(), Some("o-1"));
        let claimed = Job {
            id: 7,
            payload: job.payload,
            partition_key: job.partition_key,
            dedup_id: job.dedup_id,
            attempts: 1,
            fence: 1,
        };
        let back = SagaStart::from_job(&claimed).unwrap();
        assert_eq!((back.id.as_str(), back.definition.as_str()), ("o-1", "order"));
        assert_eq!((back.input, back.partition_key.as_deref()), (serde_json::json!({"n": 1}), Some("acme")));
        let not_a_saga = Job { payload: serde_json::json!([1, 2]), ..claimed };
        assert!(SagaStart::from_job(&not_a_saga).is_none());
    }
}
