//! The bounded channel between two stages. Items travel in chunks: a stage
//! that has several items ready sends them in one message, and one that
//! has a single item ready sends it alone, so latency stays that of an
//! item channel while throughput approaches that of a batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, mpsc};

/// An item with its position in the pipeline's source.
pub(crate) type Indexed<T> = (u64, T);

/// Items moved together. `seq` orders the chunks of an ordered stage with
/// several workers: the downstream side reassembles them by it.
pub(crate) struct Chunk<T> {
    pub(crate) seq: u64,
    pub(crate) items: Vec<Indexed<T>>,
}

/// How items are batched on a link with room for `capacity` items.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizing {
    /// The most items in one chunk.
    pub(crate) chunk: usize,
    /// How many chunks the channel holds.
    pub(crate) slots: usize,
}

impl Sizing {
    /// At most 256 items a chunk: large enough to amortize a channel
    /// operation, small enough to keep memory per link modest.
    pub(crate) fn for_capacity(capacity: usize) -> Self {
        let chunk = capacity.clamp(1, 256);
        Self { chunk, slots: (capacity / chunk).max(1) }
    }
}

/// The most items a producer puts in one chunk on a link. Set when the
/// stage that consumes the link is added: a stage with N workers gets
/// chunks of at most 1/N of the usual size, so its items spread over its
/// workers instead of queueing behind one of them.
#[derive(Debug, Clone)]
pub(crate) struct ChunkSize(Arc<AtomicUsize>);

impl ChunkSize {
    pub(crate) fn new(items: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(items)))
    }

    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn split_for(&self, workers: usize) {
        self.0.store((self.get() / workers).max(1), Ordering::Relaxed);
    }
}

pub(crate) fn link<T>(sizing: Sizing, reorder: bool) -> (mpsc::Sender<Chunk<T>>, Receiver<T>) {
    let (tx, rx) = mpsc::channel(sizing.slots);
    let reorder = reorder.then(|| Reorder { next: 0, early: BTreeMap::new() });
    (tx, Receiver { rx, reorder })
}

/// The receiving end of a link; puts chunks back in order when the stage
/// upstream is ordered and has several workers.
pub(crate) struct Receiver<T> {
    rx: mpsc::Receiver<Chunk<T>>,
    reorder: Option<Reorder<T>>,
}

struct Reorder<T> {
    next: u64,
    early: BTreeMap<u64, Chunk<T>>,
}

impl<T> Receiver<T> {
    /// The next chunk in order, or `None` once every sender is gone.
    ///
    /// # Cancel safety
    /// Cancel safe: a chunk taken from the channel is kept until returned.
    pub(crate) async fn recv(&mut self) -> Option<Chunk<T>> {
        let Some(reorder) = &mut self.reorder else { return self.rx.recv().await };
        loop {
            if let Some(chunk) = reorder.early.remove(&reorder.next) {
                reorder.next += 1;
                return Some(chunk);
            }
            match self.rx.recv().await {
                Some(chunk) if chunk.seq == reorder.next => {
                    reorder.next += 1;
                    return Some(chunk);
                }
                Some(chunk) => {
                    reorder.early.insert(chunk.seq, chunk);
                }
                // Senders gone with a gap: an upstream worker stopped early,
                // so the run is failing; hand over what arrived, in order.
                None => return reorder.early.pop_first().map(|(_, chunk)| chunk),
            }
        }
    }

    /// Whether no chunk is ready right now (a stage then sends what it
    /// has instead of waiting to fill a chunk).
    pub(crate) fn is_idle(&self) -> bool {
        match &self.reorder {
            None => self.rx.is_empty(),
            Some(reorder) => !reorder.early.contains_key(&reorder.next) && self.rx.is_empty(),
        }
    }
}

/// A stage's input: owned by its one worker, or shared by several, which
/// take chunks in turn and number them for an ordered output.
pub(crate) enum Input<T> {
    Owned { rx: Receiver<T>, next_seq: u64 },
    Shared(Arc<Mutex<(Receiver<T>, u64)>>),
}

impl<T> Input<T> {
    pub(crate) fn new(rx: Receiver<T>, workers: usize) -> Vec<Self> {
        if workers == 1 {
            return vec![Input::Owned { rx, next_seq: 0 }];
        }
        let shared = Arc::new(Mutex::new((rx, 0)));
        (0..workers).map(|_| Input::Shared(Arc::clone(&shared))).collect()
    }

    /// The next chunk, renumbered in the order this stage took it.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Receiver::recv`].
    pub(crate) async fn recv(&mut self) -> Option<Chunk<T>> {
        match self {
            Input::Owned { rx, next_seq } => {
                let mut chunk = rx.recv().await?;
                chunk.seq = *next_seq;
                *next_seq += 1;
                Some(chunk)
            }
            Input::Shared(shared) => {
                let chunk = {
                    let mut guard = shared.lock().await;
                    let (rx, next_seq) = &mut *guard;
                    let mut chunk = rx.recv().await?;
                    chunk.seq = *next_seq;
                    *next_seq += 1;
                    chunk
                };
                // Releasing the lock woke the next worker into this
                // thread's LIFO slot, which no idle thread may steal: yield
                // once, so that it runs now and this worker, rescheduled,
                // can be stolen. Without it a 16-worker stage of CPU work
                // ran on one thread (41 ms with 1 thread or 2).
                tokio::task::yield_now().await;
                Some(chunk)
            }
        }
    }

    /// Whether other workers take from this input too.
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Input::Shared(_))
    }

    /// Whether no chunk is ready for this worker right now.
    pub(crate) fn is_idle(&self) -> bool {
        match self {
            Input::Owned { rx, .. } => rx.is_idle(),
            Input::Shared(shared) => shared.try_lock().map(|g| g.0.is_idle()).unwrap_or(false),
        }
    }
}
