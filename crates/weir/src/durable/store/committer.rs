//! Group commit: one task owns the writer connection; every saga write is
//! queued to it; it commits whatever queued up while the previous commit
//! ran, in one transaction, and only then answers each writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::record::SagaWrite;
use super::{Backend, StoreError, WriteResult};

/// The most writes in one transaction.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<WriteResult, StoreError>>;

pub(crate) enum Writer {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::sqlite::SqliteConnection),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::postgres::PgConnection),
}

pub(crate) struct Committer {
    queue: mpsc::UnboundedSender<(SagaWrite, Reply)>,
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
    pub(crate) fn start(backend: Arc<Backend>, writer: Writer) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run(backend, writer, rx, Arc::clone(&stats)));
        Self { queue, task, stats }
    }

    /// Queues `write`; resolves once its transaction committed.
    pub(crate) async fn write(&self, write: SagaWrite) -> Result<WriteResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((write, reply)).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run(
    backend: Arc<Backend>,
    mut writer: Writer,
    mut rx: mpsc::UnboundedReceiver<(SagaWrite, Reply)>,
    stats: Arc<Stats>,
) {
    let mut writes = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some((write, reply)) = rx.recv().await {
        writes.push(write);
        replies.push(reply);
        while writes.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((write, reply)) => {
                    writes.push(write);
                    replies.push(reply);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let mut outcome = apply(&backend, &mut writer, &writes).await;
        // A deadlock with another process's transaction rolled this one back
        // whole: try again (the lock order is fixed, so it is rare).
        for _ in 0..3 {
            match &outcome {
                Err(StoreError::Query { source, .. }) if source.to_string().contains("deadlock detected") => {
                    tracing::debug!("group commit hit a deadlock; retrying");
                    outcome = apply(&backend, &mut writer, &writes).await;
                }
                _ => break,
            }
        }
        stats.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        stats.writes.fetch_add(writes.len() as u64, Ordering::Relaxed);
        tracing::trace!(writes = writes.len(), ok = outcome.is_ok(), "group commit");
        match outcome {
            Ok(results) => {
                for (reply, result) in replies.drain(..).zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                // Nothing of the batch committed: every writer gets the cause.
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(error.copy_for_writer()));
                }
            }
        }
        writes.clear();
    }
}

async fn apply(backend: &Backend, writer: &mut Writer, writes: &[SagaWrite]) -> Result<Vec<WriteResult>, StoreError> {
    match (backend, writer) {
        #[cfg(feature = "sqlite")]
        (Backend::Sqlite(s), Writer::Sqlite(conn)) => s.apply(conn, writes).await,
        #[cfg(feature = "postgres")]
        (Backend::Postgres(p), Writer::Postgres(conn)) => p.apply(conn, writes).await,
        _ => unreachable!("a committer's writer matches its backend"),
    }
}
