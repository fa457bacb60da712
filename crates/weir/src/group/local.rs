//! [`LocalTasks`]: the tasks one worker polls, in a slab with a reusable
//! waker per slot.
//!
//! # Why not `FuturesUnordered`
//!
//! `FuturesUnordered` allocates a node (an `Arc` holding the future and its
//! waker) per pushed future and frees it when the future ends. A group task
//! is already a boxed future, so that is a second allocation per task,
//! made on the worker's thread and freed there while the box was made on
//! the spawner's: perf showed 40 % of spawn + wait of no-op tasks in
//! malloc and free. Here a slot and its waker are made once and reused by
//! every later task in that slot, so a task costs its one box. A wake-up
//! from a slot's earlier task reaches the slot's current task, which then
//! sees a spurious poll: allowed by the `Future` contract.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};

use crate::sync::{AtomicBool, AtomicWaker, Mutex};

/// Where wake-ups from other threads (timers, channels) queue the slots to
/// poll, and the worker's own waker to call when the queue fills.
#[derive(Default)]
struct Woken {
    slots: Mutex<Vec<usize>>,
    worker: AtomicWaker,
}

/// The waker of one slot.
struct SlotWaker {
    slot: usize,
    /// Whether the slot is queued to be polled, so a task woken many times
    /// before its poll is queued once.
    queued: AtomicBool,
    woken: Arc<Woken>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.woken.slots.lock().unwrap_or_else(|p| p.into_inner()).push(self.slot);
            self.woken.worker.wake();
        }
    }
}

struct Slot<T> {
    task: Option<T>,
    waker: Arc<SlotWaker>,
    /// `waker` as a `Waker`, made once.
    as_waker: Waker,
}

/// The tasks of one worker.
pub(crate) struct LocalTasks<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    /// Slots to poll now, in order: new tasks, and those taken from
    /// `woken`.
    ready: VecDeque<usize>,
    /// Slots whose task returned `Pending` in the last round.
    left_pending: Vec<usize>,
    woken: Arc<Woken>,
    len: usize,
}

impl<T> Default for LocalTasks<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            left_pending: Vec::new(),
            woken: Arc::default(),
            len: 0,
        }
    }
}

impl<T: Future + Unpin> LocalTasks<T> {
    /// Whether every task ended (or none was added).
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every task (a stopped group aborting its work).
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            slot.task = None;
            self.free.push(index);
        }
        self.ready.clear();
        self.left_pending.clear();
        self.len = 0;
    }

    /// Adds a task, to be polled on the next [`poll_next`](Self::poll_next).
    pub(crate) fn push(&mut self, task: T) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.slots.len();
                let waker =
                    Arc::new(SlotWaker { slot, queued: AtomicBool::new(false), woken: Arc::clone(&self.woken) });
                self.slots.push(Slot { task: None, as_waker: Waker::from(Arc::clone(&waker)), waker });
                slot
            }
        };
        let entry = &mut self.slots[slot];
        entry.task = Some(task);
        // Queued as if woken: a wake-up before its first poll adds nothing.
        entry.waker.queued.store(true, Ordering::Release);
        self.ready.push_back(slot);
        self.len += 1;
    }

    /// Starts a worker's round: registers `cx` to be woken when a task is,
    /// and queues the tasks woken since the last round behind those
    /// already queued.
    pub(crate) fn begin_round(&mut self, cx: &mut Context<'_>) {
        self.woken.worker.register(cx.waker());
        self.ready.extend(self.woken.slots.lock().unwrap_or_else(|p| p.into_inner()).drain(..));
    }

    /// Whether a task is queued to be polled.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Queues the tasks that returned `Pending` in the last round and were
    /// not woken since, as if they were: a spurious poll, which the
    /// `Future` contract allows, for a task whose wake-up its runtime put
    /// off (tokio's `yield_now` wakes only once the thread runs out of
    /// work). Returns how many were queued.
    pub(crate) fn queue_unwoken(&mut self) -> usize {
        let before = self.ready.len();
        for slot in self.left_pending.drain(..) {
            let entry = &self.slots[slot];
            if entry.task.is_some() && !entry.waker.queued.swap(true, Ordering::AcqRel) {
                self.ready.push_back(slot);
            }
        }
        self.ready.len() - before
    }

    /// Polls each queued task once, at most `budget` polls, handing each
    /// output to `ended`; tasks woken meanwhile wait for the next round.
    /// Returns whether the budget ran out first.
    pub(crate) fn poll_round(&mut self, budget: &mut u32, mut ended: impl FnMut(T::Output)) -> bool {
        self.left_pending.clear();
        for _ in 0..self.ready.len() {
            if *budget == 0 {
                return true;
            }
            *budget -= 1;
            let Some(slot) = self.ready.pop_front() else { break };
            match self.poll_slot(slot) {
                Some(Poll::Ready(output)) => ended(output),
                Some(Poll::Pending) => self.left_pending.push(slot),
                None => {}
            }
        }
        false
    }

    /// Polls the task in `slot` with the slot's waker, freeing the slot if
    /// it ended; `None` if the slot was freed since it was woken.
    fn poll_slot(&mut self, slot: usize) -> Option<Poll<T::Output>> {
        let entry = &mut self.slots[slot];
        entry.waker.queued.store(false, Ordering::Release);
        let task = entry.task.as_mut()?;
        let polled = std::pin::Pin::new(task).poll(&mut Context::from_waker(&entry.as_waker));
        if polled.is_ready() {
            entry.task = None;
            self.free.push(slot);
            self.len -= 1;
        }
        Some(polled)
    }

    /// Polls the tasks that are ready, at most `budget` of them, until one
    /// ends (`Ready(Some)`); `Ready(None)` when there is no task,
    /// `Pending` when none ended (`cx` is woken when one is woken, or at
    /// once if the budget ran out first).
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>, budget: &mut u32) -> Poll<Option<T::Output>> {
        if self.len == 0 {
            return Poll::Ready(None);
        }
        loop {
            if self.ready.is_empty() {
                self.woken.worker.register(cx.waker());
                self.ready.extend(self.woken.slots.lock().unwrap_or_else(|p| p.into_inner()).drain(..));
                if self.ready.is_empty() {
                    return Poll::Pending;
                }
            }
            while let Some(slot) = self.ready.pop_front() {
                if *budget == 0 {
                    self.ready.push_front(slot);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                *budget -= 1;
                if let Some(Poll::Ready(output)) = self.poll_slot(slot) {
                    return Poll::Ready(Some(output));
                }
            }
        }
    }
}

/// The model of a wake-up from another thread: whatever the interleaving of
/// a task's poll with a wake from elsewhere, the task is polled again and
/// finishes (loom reports a deadlock if a wake-up is lost).
#[cfg(all(test, weir_loom))]
mod loom_model {
    use std::future::{Future, poll_fn};
    use std::pin::Pin;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};

    use loom::sync::Arc;

    use super::LocalTasks;
    use crate::sync::{AtomicBool, Mutex};

    /// Pending until `done` is set; leaves its waker in `waker`.
    struct WaitFor {
        done: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for WaitFor {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.done.load(Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
        }
    }

    #[test]
    fn a_wake_from_another_thread_is_never_lost() {
        loom::model(|| {
            let done = Arc::new(AtomicBool::new(false));
            let waker = Arc::new(Mutex::new(None::<Waker>));
            let mut tasks = LocalTasks::default();
            tasks.push(WaitFor { done: done.clone(), waker: waker.clone() });
            let waking = loom::thread::spawn(move || {
                done.store(true, Ordering::Release);
                if let Some(waker) = waker.lock().unwrap().take() {
                    waker.wake();
                }
            });
            loom::future::block_on(poll_fn(|cx| {
                let mut budget = 8;
                match tasks.poll_next(cx, &mut budget) {
                    Poll::Ready(Some(())) => Poll::Ready(()),
                    _ => Poll::Pending,
                }
            }));
            waking.join().unwrap();
        });
    }
}
