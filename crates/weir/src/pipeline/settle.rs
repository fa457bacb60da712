//! Settlement: telling a source how each of its items ended, for sources
//! whose items must be acknowledged (a broker's messages, a work queue's
//! claims).
//!
//! The public contract is on [`Fate`] and [`Receipt`] (this module is
//! private; both are re-exported by `pipeline`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use crate::error::BoxError;

/// How an item's way through a run ended: what a source that must
/// acknowledge its items hears.
///
/// An item from [`PipelineBuilder::from_receipts`](super::PipelineBuilder::from_receipts)
/// comes with a [`Receipt`]. The run keeps the receipts by the item's
/// index (which every stage keeps: stages are one item in, at most one
/// out), and settles each one exactly once, where the item's fate becomes
/// final:
///
/// | where | fate |
/// | --- | --- |
/// | the sink took it (`for_each`'s closure returned `Ok`, `collect`/`fold` took it, `into_stream` yielded it) | `Delivered` |
/// | a filter dropped it | `Filtered` |
/// | it returned [`Skip`](crate::error::Skip), or failed under [`OnError::Skip`](super::OnError::Skip) | `Skipped` |
/// | failed, and the dead-letter sink stored it | `DeadLettered` |
/// | failed under [`OnError::Collect`](super::OnError::Collect) | `Collected` |
/// | failed with a transient error, and its receipt [may be redelivered](Receipt::may_redeliver); or failed for good, and the dead-letter sink failed too | `Released` |
/// | the run ended before the item did (a failure under `Fail`, the sink's error, an abort, a deadline) | `Abandoned` |
///
/// A receipt is settled after its fate is durable as far as the run can
/// know: after the sink's closure returned, after the dead-letter sink
/// returned. So a source that acknowledges on settlement delivers **at
/// least once**: a crash before the acknowledgement redelivers the item,
/// never loses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fate {
    /// The sink took it.
    Delivered,
    /// A filter stage let it through no further (a normal outcome).
    Filtered,
    /// Skipped: [`Skip`](crate::error::Skip) or
    /// [`OnError::Skip`](super::OnError::Skip).
    Skipped,
    /// Failed for good and stored by the stage's dead-letter sink.
    DeadLettered,
    /// Failed for good under [`OnError::Collect`](super::OnError::Collect):
    /// its error is in the run's aggregate error.
    Collected,
    /// Failed with a transient error after the stage's own retries, and
    /// handed back to its source to be delivered again later (a broker's
    /// negative acknowledgement with a delay).
    Released,
    /// The run stopped before the item's fate was decided; the source
    /// should deliver it again.
    Abandoned,
}

/// What a source hands over with each item that it must hear about again:
/// the handle that acknowledges a broker's message or a queue's claim.
///
/// The run settles every receipt of an item it took exactly once; a
/// receipt of an item that was still inside an aborted run is settled with
/// [`Fate::Abandoned`] when the run ends (unless the run's future itself
/// was dropped: then the receipts are dropped unsettled, and the source's
/// own redelivery, an acknowledgement deadline, takes over).
pub trait Receipt: Send + Sync + 'static {
    /// Whether an item that failed with a transient error may go back to
    /// its source to be tried again later, instead of to the stage's
    /// failure policy. For a broker: whether it has deliveries left.
    ///
    /// # Defaults
    /// `false`: a failed item goes to the stage's failure policy.
    fn may_redeliver(&self) -> bool {
        false
    }

    /// Settles the item. Errors are logged, not raised: an item whose
    /// settlement failed is one its source delivers again, and the run's
    /// own outcome does not change.
    ///
    /// # Errors
    /// Whatever the source's acknowledgement returns (a lost connection).
    fn settle(self, fate: Fate) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// The receipts of a run's items in flight, by item index. Stages and the
/// sink see it without the receipt's type.
pub(crate) trait Settle: Send + Sync {
    /// Settles item `index`, if it has a receipt (items taken before a
    /// receipt existed, or settled already, have none).
    fn settle(&self, index: u64, fate: Fate) -> BoxFuture<'_, ()>;

    /// Settles item `index` as [`Fate::Released`] if its receipt may be
    /// redelivered; `true` if it did.
    fn release(&self, index: u64) -> BoxFuture<'_, bool>;

    /// Settles every receipt left as [`Fate::Abandoned`]; the number.
    fn abandon_all(&self) -> BoxFuture<'_, usize>;
}

/// A [`Settle`] over receipts of one type.
pub(crate) struct Receipts<R> {
    pending: Mutex<HashMap<u64, R>>,
}

impl<R: Receipt> Receipts<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { pending: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn insert(&self, index: u64, receipt: R) {
        self.lock().insert(index, receipt);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, R>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn settle_one<R: Receipt>(index: u64, receipt: R, fate: Fate) {
    if let Err(error) = receipt.settle(fate).await {
        tracing::warn!(item = index, ?fate, error = %error, "could not settle an item; its source will deliver it again");
    }
}

impl<R: Receipt> Settle for Receipts<R> {
    fn settle(&self, index: u64, fate: Fate) -> BoxFuture<'_, ()> {
        let receipt = self.lock().remove(&index);
        Box::pin(async move {
            if let Some(receipt) = receipt {
                settle_one(index, receipt, fate).await;
            }
        })
    }

    fn release(&self, index: u64) -> BoxFuture<'_, bool> {
        let receipt = {
            let mut pending = self.lock();
            match pending.get(&index) {
                Some(receipt) if receipt.may_redeliver() => pending.remove(&index),
                _ => None,
            }
        };
        Box::pin(async move {
            let Some(receipt) = receipt else { return false };
            settle_one(index, receipt, Fate::Released).await;
            true
        })
    }

    fn abandon_all(&self) -> BoxFuture<'_, usize> {
        let left: Vec<(u64, R)> = self.lock().drain().collect();
        Box::pin(async move {
            let count = left.len();
            for (index, receipt) in left {
                settle_one(index, receipt, Fate::Abandoned).await;
            }
            count
        })
    }
}
