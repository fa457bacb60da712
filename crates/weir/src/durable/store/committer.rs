//! Group commit: one task owns the writer connection; every saga write and
//! application effect is queued to it; it commits whatever queued up while
//! the previous commit ran, in one transaction, and only then answers
//! each writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::effect::{Effect, Output, Tx};
use super::record::SagaWrite;
use super::{Backend, StoreError, WriteResult};
use crate::error::BoxError;
use crate::policy::retry::{Jitter, RetryPolicy};

/// The most writes in one transaction.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<WriteResult, StoreError>>;
type EffectReply = oneshot::Sender<Result<Output, BoxError>>;

/// What a writer queues.
enum Job {
    Write(SagaWrite, Reply),
    Effect(Effect, EffectReply),
}

/// A batch: saga writes and effects, each with its reply.
#[derive(Default)]
struct Batch {
    writes: Vec<SagaWrite>,
    replies: Vec<Reply>,
    effects: Vec<Effect>,
    effect_replies: Vec<EffectReply>,
}

impl Batch {
    fn len(&self) -> usize {
        self.writes.len() + self.effects.len()
    }

    fn push(&mut self, job: Job) {
        match job {
            Job::Write(write, reply) => {
                self.writes.push(write);
                self.replies.push(reply);
            }
            Job::Effect(effect, reply) => {
                self.effects.push(effect);
                self.effect_replies.push(reply);
            }
        }
    }
}

/// What a batch's transaction did: a result per write and per effect.
pub(crate) type Applied = (Vec<WriteResult>, Vec<Result<Output, BoxError>>);

pub(crate) struct Committer {
    queue: mpsc::UnboundedSender<Job>,
    task: JoinHandle<()>,
    pub(crate) stats: Arc<Stats>,
}

/// What the committer did: transactions, writes, and the time spent in
/// them (from `BEGIN` to `COMMIT`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) transactions: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Committer {
    pub(crate) fn start(backend: Arc<Backend>, writer: Tx) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run(backend, writer, rx, Arc::clone(&stats)));
        Self { queue, task, stats }
    }

    /// Queues `write`; resolves once its transaction committed.
    pub(crate) async fn write(&self, write: SagaWrite) -> Result<WriteResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job::Write(write, reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `effect`; resolves with its output once its transaction
    /// committed.
    pub(crate) async fn effect(&self, effect: Effect) -> Result<Output, BoxError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Job::Effect(effect, reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(backend: Arc<Backend>, mut writer: Tx, mut rx: mpsc::UnboundedReceiver<Job>, stats: Arc<Stats>) {
    #[allow(unreachable_patterns)] // the arms present depend on the database features
    let kind = match &*backend {
        #[cfg(feature = "postgres")]
        Backend::Postgres(_) => "postgres",
        _ => "sqlite",
    };
    let store = || vec![("store", kind.to_owned())];
    let batch_size = crate::observe::histogram("weir_store_commit_batch_size", store);
    let duration = crate::observe::histogram("weir_store_commit_duration_seconds", store);
    let mut batch = Batch::default();
    while let Some(job) = rx.recv().await {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        // One span per transaction; its parent is none (this task serves
        // every writer), the sagas' spans say which commit they waited for
        // by their timing.
        let span = tracing::info_span!(
            "store.commit",
            db.system = kind,
            writes = batch.writes.len(),
            effects = batch.effects.len(),
            outcome = tracing::field::Empty,
        );
        let mut outcome_of = CommitOutcome(Some(span.clone()));
        let outcome = commit(&backend, &mut writer, &batch).instrument(span).await;
        outcome_of.record(if outcome.is_ok() { "committed" } else { "failed" });
        stats.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        duration.record(started.elapsed().as_secs_f64());
        batch_size.record(batch.len() as f64);
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        stats.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        tracing::trace!(
            writes = batch.writes.len(),
            effects = batch.effects.len(),
            ok = outcome.is_ok(),
            "group commit"
        );
        match outcome {
            Ok((results, outputs)) => {
                for (reply, result) in batch.replies.drain(..).zip(results) {
                    let _ = reply.send(Ok(result));
                }
                for (reply, output) in batch.effect_replies.drain(..).zip(outputs) {
                    let _ = reply.send(output);
                }
            }
            Err(error) => {
                // Nothing of the batch committed: every writer gets the cause.
                for reply in batch.replies.drain(..) {
                    let _ = reply.send(Err(error.copy_for_writer()));
                }
                for reply in batch.effect_replies.drain(..) {
                    let _ = reply.send(Err(Box::new(error.copy_for_writer())));
                }
                heal(&backend, &mut writer).await;
            }
        }
        batch.writes.clear();
        batch.effects.clear();
    }
}

/// Records a `store.commit` span's outcome, `interrupted` if the commit
/// never finished (its task dropped: the runtime shut down mid-commit), so
/// that every commit span says how it ended.
struct CommitOutcome(Option<tracing::Span>);

impl CommitOutcome {
    fn record(&mut self, outcome: &'static str) {
        if let Some(span) = self.0.take() {
            span.record("outcome", outcome);
        }
    }
}

impl Drop for CommitOutcome {
    fn drop(&mut self) {
        self.record("interrupted");
    }
}

/// Applies `batch` in one transaction. A deadlock with another process's
/// transaction rolls it back whole: it is tried again (the lock order is
/// fixed, so it is rare).
async fn commit(backend: &Backend, writer: &mut Tx, batch: &Batch) -> Result<Applied, StoreError> {
    let mut outcome = apply(backend, writer, &batch.writes, &batch.effects).await;
    for _ in 0..3 {
        match &outcome {
            Err(StoreError::Query { source, .. }) if source.to_string().contains("deadlock detected") => {
                tracing::debug!("group commit hit a deadlock; retrying");
                outcome = apply(backend, writer, &batch.writes, &batch.effects).await;
            }
            _ => break,
        }
    }
    outcome
}

/// How the store waits for a server that dropped its connection (a
/// restart, an operator terminating backends): 8 tries, from 100 ms
/// doubling to 4 s, about 15 s in all.
pub(super) fn until_the_server_is_back() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(8)
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_secs(4))
        .jitter(Jitter::None)
        .build()
        .expect("valid")
}

/// After a failed transaction: if the writer connection is gone (the
/// server restarted, an operator terminated it), opens a new one for the
/// next batches, retrying with backoff for up to about 15 s; queued writes
/// wait meanwhile instead of failing one after another. Without it, one
/// lost connection failed every later write of the process.
async fn heal(backend: &Backend, writer: &mut Tx) {
    if writer.ping().await {
        return;
    }
    let warn = |error: &StoreError, attempt, delay| {
        tracing::warn!(attempt, error = %error, ?delay, "the store's writer connection was lost; reconnecting");
    };
    match until_the_server_is_back().drive(None, |_| backend.writer(), |_| true, warn).await {
        Ok(fresh) => {
            tracing::warn!("the store's writer connection was lost; reconnected");
            *writer = fresh;
        }
        Err(error) => {
            tracing::error!(error = %error, "the store's writer connection is lost; the next batch tries again")
        }
    }
}

async fn apply(
    backend: &Backend,
    writer: &mut Tx,
    writes: &[SagaWrite],
    effects: &[Effect],
) -> Result<Applied, StoreError> {
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite(s) => s.apply(writer, writes, effects).await,
        #[cfg(feature = "postgres")]
        Backend::Postgres(p) => p.apply(writer, writes, effects).await,
        Backend::Memory(_) => unreachable!("the memory store has no committer"),
    }
}
