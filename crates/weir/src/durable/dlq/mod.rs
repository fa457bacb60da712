//! Dead-letter queues: where items that keep failing go, with what is
//! needed to understand and replay them.
//!
//! A [`DeadLetterQueue`] stores [`Envelope`]s: the item, its rendered error
//! chain, the stage, item and tenant it failed in, the attempts made, and
//! the first and last failure times. [`MemoryDlq`] keeps them in memory
//! (the durable queue comes with the store). Every queue is also a
//! pipeline [`DeadLetterSink`], so
//! `Stage::try_map(..).retry(policy).dead_letter(queue)` sends items there
//! after their retries, and the run goes on.
//!
//! Replay: [`drain`](DeadLetterQueue::drain) the queue and feed the items
//! to a pipeline with the same stage (see the `dead_letter` example).

mod memory;

use std::future::Future;
use std::time::SystemTime;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

pub use self::memory::MemoryDlq;
use crate::error::{BoxError, StageError, chain};
use crate::pipeline::{DeadLetter, DeadLetterSink};

/// A dead-lettered item and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Envelope<T> {
    /// The queue's id for it, from 1.
    pub id: u64,
    /// The item, as it was before the failing attempt.
    pub item: T,
    /// The error chain, outermost first, one message per link.
    pub error_chain: Vec<String>,
    /// The stage it failed in.
    pub stage: String,
    /// Its position in the pipeline's source.
    pub item_index: Option<u64>,
    /// Its key, if the stage names keys.
    pub key: Option<String>,
    /// Its tenant, if the stage names tenants.
    pub tenant: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When its first attempt failed.
    pub first_failure: SystemTime,
    /// When its last attempt failed.
    pub last_failure: SystemTime,
    /// When an operator marked it for replay, if one did (stored queues
    /// only: [`StoreDlq::request_replay`](crate::durable::store::StoreDlq::request_replay)).
    pub replay_requested: Option<SystemTime>,
}

impl<T> Envelope<T> {
    /// An envelope for `item` that failed `attempts` times in `stage`, now
    /// (id 0, set by the queue; no error chain, key or tenant yet).
    pub fn new(item: T, stage: &str, attempts: u32) -> Self {
        let now = SystemTime::now();
        Self {
            id: 0,
            item,
            error_chain: Vec::new(),
            stage: stage.to_owned(),
            item_index: None,
            key: None,
            tenant: None,
            attempts,
            first_failure: now,
            last_failure: now,
            replay_requested: None,
        }
    }

    /// Builds an envelope (with id 0, set by the queue) from a pipeline's
    /// dead letter.
    pub fn from_dead_letter(letter: DeadLetter<T>) -> Self {
        let error: &StageError = &letter.error;
        Self {
            id: 0,
            error_chain: chain(error).skip(1).map(ToString::to_string).collect(),
            stage: error.stage().to_owned(),
            item_index: error.item().index(),
            key: error.item().key().map(str::to_owned),
            tenant: error.tenant().map(str::to_owned),
            attempts: error.attempt(),
            first_failure: letter.first_failure,
            last_failure: letter.last_failure,
            replay_requested: None,
            item: letter.item,
        }
    }
}

/// Stores dead-lettered items: the one dead-letter trait, implemented by
/// [`MemoryDlq`] and the store's durable queue
/// ([`StoreDlq`](crate::durable::store::StoreDlq)). Every queue is a pipeline
/// [`DeadLetterSink`] (a blanket impl), and can be listed, drained and
/// [replayed](Self::replay).
pub trait DeadLetterQueue<T>: Send + Sync + 'static {
    /// Stores one envelope; returns its id.
    ///
    /// An envelope with a [`key`](Envelope::key) is stored once per key: a
    /// push with a key already queued (the same input position failing
    /// again after a restart, or a replayed item failing again) replaces
    /// that envelope's item, error chain and attempts and keeps its id and
    /// first failure time. Envelopes without a key are always added.
    fn push(&self, envelope: Envelope<T>) -> BoxFuture<'_, Result<u64, BoxError>>;
    /// How many envelopes are stored.
    fn count(&self) -> BoxFuture<'_, Result<usize, BoxError>>;
    /// Takes every envelope out, oldest first.
    fn drain(&self) -> BoxFuture<'_, Result<Vec<Envelope<T>>, BoxError>>;
    /// A copy of every envelope, oldest first, leaving them queued.
    fn list(&self) -> BoxFuture<'_, Result<Vec<Envelope<T>>, BoxError>>;
    /// Takes the envelopes with these ids out (ids not queued are ignored).
    fn remove<'a>(&'a self, ids: &'a [u64]) -> BoxFuture<'a, Result<(), BoxError>>;

    /// Gives each queued item to `retry`, oldest first: one that goes
    /// through is removed, one that fails again stays queued with the new
    /// error and one more attempt. Letters are removed one by one, so a
    /// crash midway replays only the ones not removed yet (at least once).
    /// An unkeyed letter that fails again is stored anew before the old one
    /// is removed: a crash between the two leaves it twice, never lost (give
    /// letters a key to have them replaced in place).
    ///
    /// # Errors
    /// The queue failing; the items `retry` fails are counted in the
    /// report, not errors.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::dlq::{DeadLetterQueue, Envelope, MemoryDlq};
    /// use weir::error::BoxError;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let dlq = MemoryDlq::new();
    /// for n in [1, -2, 3] {
    ///     dlq.push(Envelope::new(n, "check", 3)).await.unwrap();
    /// }
    /// let report = dlq
    ///     .replay(|n: i32| async move { if n > 0 { Ok(()) } else { Err(BoxError::from("still negative")) } })
    ///     .await
    ///     .unwrap();
    /// assert_eq!((report.replayed, report.failed), (2, 1));
    /// let left = dlq.list().await.unwrap();
    /// assert_eq!((left[0].item, left[0].attempts), (-2, 4));
    /// assert_eq!(left[0].error_chain, ["still negative"]);
    /// # }
    /// ```
    fn replay<F, Fut>(&self, mut retry: F) -> impl Future<Output = Result<ReplayReport, BoxError>> + Send
    where
        Self: Sized,
        T: Clone + Send,
        F: FnMut(T) -> Fut + Send,
        Fut: Future<Output = Result<(), BoxError>> + Send,
    {
        async move {
            let mut report = ReplayReport::default();
            replay_letters(self, self.list().await?, &mut retry, &mut report).await?;
            Ok(report)
        }
    }
}

/// Gives each of `letters` (taken from `queue`) to `retry`, in order: one
/// that goes through is removed, one that fails again is stored again with
/// the new error and one more attempt (which clears a replay mark). The
/// one replay loop of [`DeadLetterQueue::replay`] and
/// [`StoreDlq::replay_requested`](crate::durable::store::StoreDlq::replay_requested).
pub(crate) async fn replay_letters<T, Q, F, Fut>(
    queue: &Q,
    letters: Vec<Envelope<T>>,
    retry: &mut F,
    report: &mut ReplayReport,
) -> Result<(), BoxError>
where
    Q: DeadLetterQueue<T> + ?Sized,
    T: Clone,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    for letter in letters {
        match retry(letter.item.clone()).await {
            Ok(()) => {
                queue.remove(&[letter.id]).await?;
                report.replayed += 1;
            }
            Err(error) => {
                let again = Envelope {
                    error_chain: chain(&*error).map(ToString::to_string).collect(),
                    attempts: letter.attempts + 1,
                    last_failure: SystemTime::now(),
                    replay_requested: None,
                    ..letter
                };
                // Keyed: the push replaces it in place. Unkeyed: a new
                // envelope, then the old one goes.
                let old = again.id;
                if again.key.is_some() {
                    queue.push(again).await?;
                } else {
                    queue.push(Envelope { id: 0, ..again }).await?;
                    queue.remove(&[old]).await?;
                }
                report.failed += 1;
            }
        }
    }
    Ok(())
}

/// What [`DeadLetterQueue::replay`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Items that went through and were removed.
    pub replayed: u64,
    /// Items that failed again and stay queued.
    pub failed: u64,
}

/// Every dead-letter queue is a pipeline sink.
impl<T, Q: DeadLetterQueue<T>> DeadLetterSink<T> for Q {
    fn dead_letter(&self, letter: DeadLetter<T>) -> BoxFuture<'_, Result<(), BoxError>> {
        self.push(Envelope::from_dead_letter(letter)).map(|id| id.map(drop)).boxed()
    }
}
