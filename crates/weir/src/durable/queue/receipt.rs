//! [`JobReceipt`] and the queue as a pipeline source: claims in batches,
//! leases renewed while jobs run, each job settled by its fate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use futures_util::Stream;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::sql::{self, Settlement};
use super::{Job, WorkQueue};
use crate::error::BoxError;
use crate::pipeline::{Fate, Receipt};

/// Jobs claimed per round trip.
const CLAIM_BATCH: usize = 32;
/// The longest wait between claims of an idle source.
const MAX_POLL: Duration = Duration::from_millis(250);
/// Consecutive failed claims before the source gives up (the run fails).
const CLAIM_FAILURES: u32 = 8;

/// A claimed job's receipt: settling it writes the job's new status, if
/// this worker still holds the claim.
///
/// | fate | the job becomes |
/// | --- | --- |
/// | `Delivered`, `Filtered` | `done` |
/// | `Skipped` | `skipped` |
/// | `Collected` | `failed` |
/// | `DeadLettered` | `dead` |
/// | `Released` | `queued` again after the queue's retry delay for its attempts |
/// | `Abandoned`, or dropped unsettled | `queued` again at once |
pub struct JobReceipt {
    claim: Option<Claim>,
}

struct Claim {
    queue: WorkQueue,
    id: i64,
    fence: i64,
    attempts: u32,
    held: Arc<Held>,
}

impl std::fmt::Debug for JobReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let claim = self.claim.as_ref();
        f.debug_struct("JobReceipt").field("job", &claim.map(|c| c.id)).field("fence", &claim.map(|c| c.fence)).finish()
    }
}

impl Claim {
    async fn settle(self, how: Settlement) -> Result<(), BoxError> {
        let id = self.id;
        self.held.release(id);
        let settled = self.queue.settle_claim(id, self.fence, how).await?;
        if !settled {
            tracing::warn!(queue = %self.queue.name, job = id, "a job's claim was taken over before it was settled (its lease expired); the new claim settles it");
        }
        Ok(())
    }
}

impl Receipt for JobReceipt {
    fn may_redeliver(&self) -> bool {
        self.claim.as_ref().is_some_and(|c| c.attempts < c.queue.retry.max_attempts())
    }

    async fn settle(mut self, fate: Fate) -> Result<(), BoxError> {
        let Some(claim) = self.claim.take() else { return Ok(()) };
        let how = match fate {
            Fate::Delivered | Fate::Filtered => Settlement::done(),
            Fate::Skipped => Settlement::Final { status: "skipped", error: None },
            Fate::DeadLettered => Settlement::Final { status: "dead", error: None },
            Fate::Released => Settlement::Again { after: claim.queue.retry.delay_before(claim.attempts), error: None },
            Fate::Abandoned => Settlement::Again { after: Duration::ZERO, error: None },
            // Collected, and any fate added later: failed for good.
            _ => Settlement::Final { status: "failed", error: None },
        };
        claim.settle(how).await
    }
}

impl JobReceipt {
    /// Settles the job as `how` (for outcomes a [`Fate`] does not say:
    /// the saga worker's, with their reasons).
    pub(crate) async fn settle_as(mut self, how: Settlement) -> Result<(), BoxError> {
        match self.claim.take() {
            Some(claim) => claim.settle(how).await,
            None => Ok(()),
        }
    }

    /// Takes the claim out, `(job id, fence)`, to be completed with
    /// others in one statement ([`WorkQueue::complete_claims`]); its lease
    /// is no longer renewed, so if that statement fails the job's next
    /// claim settles it.
    pub(crate) fn into_claim(mut self) -> Option<(i64, i64)> {
        let claim = self.claim.take()?;
        claim.held.release(claim.id);
        Some((claim.id, claim.fence))
    }

    /// The queue's wait before this job's next claim, after this one.
    pub(crate) fn retry_delay(&self) -> Duration {
        self.claim.as_ref().map_or(Duration::ZERO, |c| c.queue.retry.delay_before(c.attempts))
    }
}

impl Drop for JobReceipt {
    /// A job whose receipt is dropped unsettled (taken by a source that
    /// was dropped, a run's future dropped) goes back to the queue at once
    /// rather than when its lease runs out.
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else { return };
        claim.held.release(claim.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = claim.settle(Settlement::Again { after: Duration::ZERO, error: None }).await {
                    tracing::debug!(error = %error, "could not give a job back; its lease runs out instead");
                }
            });
        }
    }
}

/// The claims a source holds, renewed on a timer by a task that stops
/// when the last holder is gone.
struct Held {
    jobs: Mutex<HashMap<i64, i64>>,
    _stop: DropGuard,
}

impl Held {
    fn start(queue: &WorkQueue) -> Arc<Self> {
        let stop = CancellationToken::new();
        let held = Arc::new(Self { jobs: Mutex::new(HashMap::new()), _stop: stop.clone().drop_guard() });
        let (weak, queue) = (Arc::downgrade(&held), queue.clone());
        tokio::spawn(renew(weak, queue, stop));
        held
    }

    fn hold(&self, job: &Job) {
        self.lock().insert(job.id, job.fence);
    }

    fn release(&self, id: i64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every third of the lease, extends the leases of the claims held.
async fn renew(held: Weak<Held>, queue: WorkQueue, stop: CancellationToken) {
    let mut tick = tokio::time::interval(queue.lease / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(current) = held.upgrade() else { return };
        let jobs: Vec<(i64, i64)> = current.lock().iter().map(|(id, fence)| (*id, *fence)).collect();
        drop(current);
        if jobs.is_empty() {
            continue;
        }
        let lease = queue.lease;
        let extended = queue
            .store
            .commit_effect(move |tx| {
                let jobs = jobs.clone();
                Box::pin(async move { sql::extend(tx, &jobs, SystemTime::now() + lease).await })
            })
            .await;
        match extended {
            Ok(lost) if !lost.is_empty() => {
                tracing::warn!(queue = %queue.name, jobs = ?lost, "claims lost before their jobs finished (leases expired): other workers run them again");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(queue = %queue.name, error = %error, "could not renew the leases of running jobs")
            }
        }
    }
}

/// How an idle source learns of new jobs: on PostgreSQL, a `LISTEN` on the
/// queue's channel (an enqueue notifies when it commits), with the poll as
/// a fallback for what a notification cannot say (a delay that ran out, a
/// lease that expired, a limit freed); elsewhere, the poll alone.
#[derive(Default)]
struct Wakeups {
    #[cfg(feature = "postgres")]
    listener: Option<sqlx::postgres::PgListener>,
    #[cfg(feature = "postgres")]
    tried: bool,
}

impl Wakeups {
    /// Waits `poll`, or less if a job is enqueued in `queue` meanwhile.
    async fn wait(&mut self, queue: &WorkQueue, poll: Duration) {
        #[cfg(feature = "postgres")]
        {
            if !self.tried {
                self.tried = true;
                if let crate::durable::store::Backend::Postgres(pg) = queue.store.backend() {
                    match pg.listener(sql::NOTIFY_CHANNEL).await {
                        Ok(listener) => self.listener = Some(listener),
                        Err(error) => tracing::debug!(error = %error, "no LISTEN for the queue; polling"),
                    }
                }
            }
            if let Some(listener) = &mut self.listener {
                let deadline = tokio::time::sleep(poll);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => return,
                        note = listener.recv() => match note {
                            Ok(note) if note.payload() == queue.name() => return,
                            Ok(_) => {}
                            Err(error) => {
                                tracing::debug!(error = %error, "the queue's LISTEN connection failed; polling");
                                self.listener = None;
                                deadline.await;
                                return;
                            }
                        },
                    }
                }
            }
        }
        let _ = queue;
        tokio::time::sleep(poll).await;
    }
}

/// A worker's claims on a queue: each claimed job comes with its
/// receipt, and the leases of the jobs whose receipts are alive are
/// renewed; between empty claims, [`wait`](Self::wait) sleeps until a
/// job may be there (a notification, or a poll growing from 10 ms to
/// 250 ms).
pub(crate) struct Claimer {
    queue: WorkQueue,
    worker: String,
    held: Option<Arc<Held>>,
    idle: Duration,
    failures: u32,
    wakeups: Wakeups,
    /// When the queue's depth was last read for the metrics recorder.
    depth_read: Option<tokio::time::Instant>,
}

/// How often a claiming worker reads its queue's depth for the
/// `weir_queue_jobs` gauges (one count by status), when metrics are on.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

impl Claimer {
    pub(crate) fn new(queue: WorkQueue, worker: String) -> Self {
        Self {
            queue,
            worker,
            held: None,
            idle: Duration::from_millis(10),
            failures: 0,
            wakeups: Wakeups::default(),
            depth_read: None,
        }
    }

    /// Reads the queue's depth into its gauges every [`DEPTH_EVERY`] (with
    /// metrics compiled in); a failed count is logged, not returned: the
    /// claim is what matters.
    async fn read_depth(&mut self) {
        if !crate::observe::ENABLED || self.depth_read.is_some_and(|at| at.elapsed() < DEPTH_EVERY) {
            return;
        }
        self.depth_read = Some(tokio::time::Instant::now());
        if let Err(error) = self.queue.counts().await {
            tracing::debug!(queue = %self.queue.name, error = %error, "could not read the queue's depth");
        }
    }

    /// Claims up to `max` jobs (none when the queue is empty or at its
    /// limits). A failed claim is tried again, waiting longer each time;
    /// the error once [`CLAIM_FAILURES`] claims in a row failed.
    pub(crate) async fn take(&mut self, max: usize) -> Result<Vec<(Job, JobReceipt)>, BoxError> {
        let held = Arc::clone(self.held.get_or_insert_with(|| Held::start(&self.queue)));
        self.read_depth().await;
        loop {
            match self.queue.claim(&self.worker, max).await {
                Ok(jobs) => {
                    self.failures = 0;
                    if !jobs.is_empty() {
                        self.idle = Duration::from_millis(10);
                    }
                    let receipts = jobs.into_iter().map(|job| {
                        held.hold(&job);
                        let claim = Claim {
                            queue: self.queue.clone(),
                            id: job.id,
                            fence: job.fence,
                            attempts: job.attempts,
                            held: Arc::clone(&held),
                        };
                        (job, JobReceipt { claim: Some(claim) })
                    });
                    return Ok(receipts.collect());
                }
                Err(error) if self.failures + 1 < CLAIM_FAILURES => {
                    self.failures += 1;
                    tracing::warn!(queue = %self.queue.name, error = %error, attempt = self.failures, "claiming failed; trying again");
                    tokio::time::sleep(Duration::from_millis(100) * self.failures).await;
                }
                Err(error) => {
                    self.failures = 0;
                    let queue = &self.queue.name;
                    return Err(format!("queue `{queue}`: claiming failed {CLAIM_FAILURES} times: {error}").into());
                }
            }
        }
    }

    /// After a claim that found nothing: waits until a job may be there.
    pub(crate) async fn wait(&mut self) {
        self.wakeups.wait(&self.queue, self.idle).await;
        self.idle = (self.idle * 2).min(MAX_POLL);
    }
}

/// The source: claims while the pipeline takes, waits while there is
/// nothing to claim.
pub(super) fn source(
    queue: WorkQueue,
    worker: String,
) -> impl Stream<Item = Result<(Job, JobReceipt), BoxError>> + Send + 'static {
    let state = (Claimer::new(queue, worker), VecDeque::new());
    futures_util::stream::unfold(state, |(mut claimer, mut claimed)| async move {
        loop {
            if let Some(next) = claimed.pop_front() {
                return Some((Ok(next), (claimer, claimed)));
            }
            match claimer.take(CLAIM_BATCH).await {
                Ok(jobs) if jobs.is_empty() => claimer.wait().await,
                Ok(jobs) => claimed.extend(jobs),
                Err(error) => return Some((Err(error), (claimer, claimed))),
            }
        }
    })
}
