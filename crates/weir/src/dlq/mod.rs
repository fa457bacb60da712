//! Dead-letter queues: where items that keep failing go, with what is
//! needed to understand and replay them (seed task 16).
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

use std::time::SystemTime;

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
            item: letter.item,
        }
    }
}

/// Stores dead-lettered items.
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
}

impl<T: Send + 'static> DeadLetterSink<T> for MemoryDlq<T> {
    fn dead_letter(&self, letter: DeadLetter<T>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move { self.push(Envelope::from_dead_letter(letter)).await.map(drop) })
    }
}
