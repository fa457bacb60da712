//! The queue of not-yet-started jobs of one worker, which idle workers
//! steal from.
//!
//! A mutex-guarded `VecDeque`. The owner takes jobs from the front a few at
//! a time (see [`Worker`](super::worker::Worker) for how many), so jobs it
//! has not reached stay here, where an idle sibling can take the newest
//! half of them from the back while the owner is stuck in a long poll. A
//! push wakes the owner only when the queue goes from empty to non-empty (a
//! push onto a non-empty queue is covered by the wake-up of the push that
//! made it non-empty), and tells the caller whether more is queued than the
//! owner takes next, so the spawner can wake a parked sibling to steal. A
//! missed sibling wake-up costs latency, never a job: the owner always
//! drains its own queue. It measured faster than a tokio unbounded channel
//! here, which pays for an atomic permit count and a wake-up check on
//! every message.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::time::{Duration, Instant};

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, AtomicWaker, Mutex};

pub(crate) struct Inbox<T> {
    /// `None` once aborted: nothing is queued any more.
    items: Mutex<Option<VecDeque<T>>>,
    waker: AtomicWaker,
    closed: AtomicBool,
    /// How many jobs are queued, written under the lock and read without
    /// it: a sibling looking for work, or the owner about to park, checks
    /// it without contending with the spawner for the lock.
    queued: AtomicUsize,
    /// What the owner publishes each round, on a cache line of its own:
    /// the spawner writes the fields above on every push.
    owner: Padded<Owner>,
}

/// What an inbox's owner tells its siblings and the spawner.
struct Owner {
    /// How many jobs the owner takes next: a sibling leaves it a backlog no
    /// larger than that, unless its round has run long.
    batch: AtomicUsize,
    /// When the owner's current round began, in nanoseconds since
    /// [`since_epoch`]'s epoch, plus one; 0 between rounds.
    round_began: AtomicU64,
    /// Whether the owner found nothing to do anywhere and is waiting: a
    /// spawner with a backlog elsewhere wakes it to steal.
    parked: AtomicBool,
}

#[repr(align(128))]
struct Padded<T>(T);

/// What [`Inbox::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Jobs may still come (or are still queued).
    Open,
    /// Closed, and nothing is left: no job will come again.
    Drained,
}

impl<T> Inbox<T> {
    pub(crate) fn new() -> Self {
        Self {
            items: Mutex::new(Some(VecDeque::new())),
            waker: AtomicWaker::default(),
            closed: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            owner: Padded(Owner {
                batch: AtomicUsize::new(1),
                round_began: AtomicU64::new(0),
                parked: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> impl std::ops::DerefMut<Target = Option<VecDeque<T>>> + '_ {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `item`, waking the owner if the queue was empty; an aborted
    /// inbox drops it (after its lock is released). Returns whether the
    /// queue now holds more than the owner takes next: a backlog a parked
    /// sibling should take part of.
    pub(crate) fn push(&self, item: T) -> bool {
        let mut guard = self.lock();
        let Some(items) = guard.as_mut() else {
            drop(guard);
            drop(item);
            return false;
        };
        items.push_back(item);
        let queued = items.len();
        self.queued.store(queued, Ordering::SeqCst);
        drop(guard);
        if queued == 1 {
            self.waker.wake();
        }
        queued > self.owner.0.batch.load(Ordering::Relaxed)
    }

    /// Adds jobs stolen from a sibling, newest first, so the owner starts
    /// the ones its victim would have reached last. Works on a closed
    /// inbox (its owner is the thief), not on an aborted one.
    pub(crate) fn push_stolen(&self, stolen: &mut Vec<T>) {
        match self.lock().as_mut() {
            Some(items) => {
                items.extend(stolen.drain(..).rev());
                self.queued.store(items.len(), Ordering::SeqCst);
            }
            None => stolen.clear(),
        }
    }

    /// Takes what is queued and refuses what comes later: the worker was
    /// aborted. The caller drops the items, outside the lock.
    pub(crate) fn abort(&self) -> VecDeque<T> {
        let items = self.lock().take().unwrap_or_default();
        self.queued.store(0, Ordering::SeqCst);
        items
    }

    /// No more items will come; wakes the owner to notice.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Moves up to `most` jobs from the front into `into`, but never more
    /// than half of what is queued (rounded up), so a sibling can steal the
    /// rest while the owner runs what it took. Registers the owner's waker
    /// first, so a job pushed after the take wakes it.
    pub(crate) fn take(&self, cx: &mut Context<'_>, most: usize, into: &mut Vec<T>) -> Taken {
        self.waker.register(cx.waker());
        // Read before the take: `close` comes after the last push, so a
        // close seen here and an empty queue below mean nothing will come.
        let closed = self.closed.load(Ordering::Acquire);
        let mut guard = self.lock();
        let Some(items) = guard.as_mut() else {
            // Aborted: this worker is being dropped.
            return Taken::Drained;
        };
        let count = most.min(items.len().div_ceil(2));
        into.extend(items.drain(..count));
        self.queued.store(items.len(), Ordering::SeqCst);
        if closed && items.is_empty() { Taken::Drained } else { Taken::Open }
    }

    /// Moves the newest half of the queued jobs (rounded up, at most `most`)
    /// into `into`, for an idle sibling; returns how many.
    pub(crate) fn steal(&self, most: usize, into: &mut Vec<T>) -> usize {
        if !self.has_jobs() {
            return 0;
        }
        let mut guard = self.lock();
        let Some(items) = guard.as_mut() else { return 0 };
        let count = items.len().div_ceil(2).min(most);
        let from = items.len() - count;
        into.extend(items.drain(from..));
        self.queued.store(items.len(), Ordering::SeqCst);
        count
    }

    /// Whether a sibling should steal: more jobs are queued than the owner
    /// takes next, or the owner's round has run longer than `slow` (it is
    /// stuck in a long poll). `now` is read from the clock only if needed,
    /// and kept for the caller's next call.
    pub(crate) fn worth_stealing(&self, now: &mut Option<Instant>, slow: Duration) -> bool {
        let queued = self.queued.load(Ordering::SeqCst);
        if queued == 0 {
            return false;
        }
        if queued > self.owner.0.batch.load(Ordering::Relaxed) {
            return true;
        }
        match self.owner.0.round_began.load(Ordering::Relaxed) {
            0 => false,
            began => {
                let now = *now.get_or_insert_with(Instant::now);
                since_epoch(now).saturating_sub(began - 1) > slow.as_nanos() as u64
            }
        }
    }

    /// The owner tells how many jobs it takes next.
    pub(crate) fn set_owner_batch(&self, batch: usize) {
        self.owner.0.batch.store(batch, Ordering::Relaxed);
    }

    /// The owner tells that a round began at `at` (`None`: it ended).
    pub(crate) fn set_round_began(&self, at: Option<Instant>) {
        self.owner.0.round_began.store(at.map_or(0, |at| since_epoch(at) + 1), Ordering::Relaxed);
    }

    /// Whether jobs are queued (a hint: it may change at once).
    pub(crate) fn has_jobs(&self) -> bool {
        self.queued.load(Ordering::SeqCst) > 0
    }

    /// Marks the owner as parked, to be woken through `cx` by
    /// [`wake_if_parked`](Self::wake_if_parked).
    pub(crate) fn park(&self, cx: &mut Context<'_>) {
        self.waker.register(cx.waker());
        self.owner.0.parked.store(true, Ordering::SeqCst);
    }

    /// Marks the owner as no longer parked.
    pub(crate) fn unpark(&self) {
        if self.owner.0.parked.load(Ordering::Relaxed) {
            self.owner.0.parked.store(false, Ordering::SeqCst);
        }
    }

    /// Wakes the owner if it was parked, once; tells whether it did.
    pub(crate) fn wake_if_parked(&self) -> bool {
        if self.owner.0.parked.load(Ordering::SeqCst) && self.owner.0.parked.swap(false, Ordering::SeqCst) {
            self.waker.wake();
            return true;
        }
        false
    }
}

/// Nanoseconds from the first call in this process to `at`: the clock
/// workers of different threads compare round starts on.
fn since_epoch(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// The model of the inbox's hand-off: whatever the interleaving of a
/// spawner pushing and closing with the owner taking, every item arrives,
/// the close is seen, and the owner is never left asleep with work queued
/// (loom reports a deadlock if a wake-up is lost).
#[cfg(all(test, weir_loom))]
mod loom_model {
    use std::future::poll_fn;
    use std::task::Poll;

    use loom::sync::Arc;

    use super::{Inbox, Taken};

    /// Three preemptions, as loom's docs advise: the take-and-come-back
    /// loop makes the unbounded search run for longer than 5 minutes.
    fn model(body: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(body);
    }

    /// The owner waits for two items, then for the close: a lost wake-up
    /// after either push, or after the close, leaves it asleep.
    #[test]
    fn no_item_or_close_is_lost() {
        model(|| {
            let inbox = Arc::new(Inbox::new());
            let spawner = {
                let inbox = Arc::clone(&inbox);
                loom::thread::spawn(move || {
                    inbox.push(1);
                    inbox.push(2);
                })
            };
            let mut got = Vec::new();
            loom::future::block_on(poll_fn(|cx| {
                // As a worker does: takes until a take finds nothing.
                let mut taken = Vec::new();
                while {
                    inbox.take(cx, 8, &mut taken);
                    !taken.is_empty()
                } {
                    got.append(&mut taken);
                }
                if got.len() == 2 { Poll::Ready(()) } else { Poll::Pending }
            }));
            spawner.join().unwrap();
            assert_eq!(got, [1, 2]);
            let closer = {
                let inbox = Arc::clone(&inbox);
                loom::thread::spawn(move || inbox.close())
            };
            loom::future::block_on(poll_fn(|cx| match inbox.take(cx, 8, &mut Vec::new()) {
                Taken::Drained => Poll::Ready(()),
                Taken::Open => Poll::Pending,
            }));
            closer.join().unwrap();
        });
    }

    /// A thief and the owner taking at once: each item is taken exactly
    /// once.
    #[test]
    fn an_item_is_taken_by_the_owner_or_a_thief_never_both() {
        model(|| {
            let inbox = Arc::new(Inbox::new());
            inbox.push(1);
            inbox.push(2);
            inbox.push(3);
            let thief = {
                let inbox = Arc::clone(&inbox);
                loom::thread::spawn(move || {
                    let mut stolen = Vec::new();
                    inbox.steal(8, &mut stolen);
                    stolen
                })
            };
            let mut own = Vec::new();
            loom::future::block_on(poll_fn(|cx| {
                inbox.take(cx, 8, &mut own);
                Poll::Ready(())
            }));
            let mut all = thief.join().unwrap();
            while inbox.steal(8, &mut all) > 0 {}
            all.extend(own);
            all.sort();
            assert_eq!(all, [1, 2, 3]);
        });
    }
}
