//! Worker tasks: each polls many group tasks, so spawning a task costs a
//! box and a queue push instead of a tokio task.
//!
//! # Why workers and not one tokio task per spawn
//!
//! One detached tokio task per group task, counted with an atomic and a
//! `Notify`, cost 583 ns per no-op task (687 with a limit of 8) where Go's
//! errgroup took about 450 (410) in the same run; `JoinSet` about 1300. A
//! group starts one worker per runtime thread and hands tasks to them in
//! blocks of 64; a worker keeps its started tasks in [`LocalTasks`] (a slab
//! whose slots and wakers are reused, so a task costs its one box), which
//! polls only the tasks that were woken: 153 ns per task, 262 with a limit
//! of 8, against Go's 264 and 509 in the same run (2026-12-03).
//!
//! # Why a task queued behind a CPU-heavy sibling still runs soon
//!
//! Tasks on one worker share its tokio task: while one of them computes
//! for 50 ms without awaiting, the worker cannot poll the others. Four
//! rules keep the others from waiting for it:
//!
//! - **Jobs wait where others can take them.** A worker takes jobs from
//!   its [`Inbox`] a few at a time, never more than half of what is queued,
//!   and only as many as its last round could afford: up to 64 while
//!   rounds stay under 100 µs (the lock is paid once per many tasks), one
//!   at a time after a slower round (a lock per job is then under 0.1 % of
//!   the round). A new group's workers start at one.
//! - **An idle worker steals the newest half.** A worker with nothing
//!   ready takes the newest half of a sibling's queue when it holds more
//!   than the sibling takes next, or when the sibling's round has run over
//!   100 µs; the spawner wakes a parked worker when a backlog builds.
//!   Newest, because the victim works from the front: long tasks spawned
//!   first stay with the worker already stuck in one, and the short ones
//!   spawned after them run on the idle thread.
//! - **Started tasks first.** Ready tasks a worker has started run before
//!   it starts new ones (for up to 16 rounds in a row), so a new job that
//!   turns out long does not hold up tasks already under way.
//! - **A second look before new work.** tokio's `yield_now` wakes its task
//!   only when the thread runs out of work; a worker that went on to a long
//!   job would leave such a task waiting for it (and a worker that yielded
//!   to collect the wake-up could itself be left behind a sibling's long
//!   poll on the same thread: measured, every short task waited 50 ms in 7
//!   runs of 12). So before a take, tasks left pending and not woken get up
//!   to two spurious polls, which the `Future` contract allows.
//!
//! Measured on 2 threads against `JoinSet` in the same run (`cargo bench
//! --bench fairness`, median of 9 runs; before these rules: 200 / 200 /
//! 200 ms with 4 long tasks first, 50 / 50 / 50 ms with one):
//!
//! | shape | weir p50 / p99 / max | `JoinSet` p50 / p99 / max |
//! | --- | --- | --- |
//! | 4 × 50 ms CPU first | 0.1 / 100.1 / 100.1 ms | 0.2 / 100.2 / 100.2 ms |
//! | 1 × 50 ms CPU first | 0.1 / 0.1 / 50.1 ms | 0.2 / 0.2 / 50.1 ms |
//! | 4 × 50 ms CPU last | 0.2 / 0.2 / 0.2 ms | 0.1 / 100.3 / 100.3 ms |
//! | 4 × 50 polls of 1 ms | 0.1 / 6.2 / 6.2 ms | 0.2 / 6.2 / 7.1 ms |
//!
//! What is not moved: a task a worker has started. While the worker is
//! inside a long poll, its other started tasks wait even if woken (tokio
//! would let an idle thread steal them). CPU-heavy work still belongs in
//! `tokio::task::spawn_blocking` or in a pipeline stage with several
//! workers; this bounds the harm when it is not. A pipeline gives each of
//! its tasks a worker of its own, and those do not steal (that would put
//! two stages back on one worker).
//!
//! tokio-console shows the workers (one tokio task each), not the group's
//! tasks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::core::Core;
use super::inbox::{Inbox, Taken};
use super::local::LocalTasks;
use super::task::{Job, Task};
use crate::error::Panicked;

/// The most jobs a worker takes from its inbox at once.
const MAX_BATCH: usize = 64;
/// A round slower than this makes the worker take one job at a time.
const SLOW_ROUND: Duration = Duration::from_micros(100);
/// Rounds in a row a worker may spend on started tasks that keep being
/// ready before it starts a new job anyway.
const MAX_ROUNDS_WITHOUT_TAKING: u32 = 16;
/// Rounds of spurious polls a worker spends, before each take, on tasks
/// left pending and not woken (a task awaiting `yield_now` twice needs
/// two).
const MAX_SPURIOUS_ROUNDS: u32 = 2;
/// The most jobs a thief takes in one steal.
const MAX_STEAL: usize = 32;

pub(crate) type Inboxes<E> = Arc<[Arc<Inbox<Job<'static, E>>>]>;

pub(crate) struct Worker<E> {
    core: Arc<Core<E>>,
    /// Every worker's inbox; this worker's is `inboxes[own]`.
    inboxes: Inboxes<E>,
    own: usize,
    /// Whether to steal from siblings when idle.
    steals: bool,
    /// The own inbox is closed and empty.
    drained: bool,
    /// Jobs taken from an inbox; kept to reuse its allocation.
    taken: Vec<Job<'static, E>>,
    tasks: LocalTasks<Task<'static, E>>,
    /// How many jobs the next take may move (see the module docs).
    batch: usize,
    /// Rounds in a row that started no job because started tasks were
    /// ready.
    rounds_without_taking: u32,
    /// Rounds since the last take that polled tasks left pending, in case
    /// their wake-up was put off.
    spurious_rounds: u32,
}

impl<E> Worker<E> {
    pub(crate) fn new(core: Arc<Core<E>>, inboxes: Inboxes<E>, own: usize, steals: bool) -> Self {
        Self {
            core,
            inboxes,
            own,
            steals,
            drained: false,
            taken: Vec::new(),
            tasks: LocalTasks::default(),
            batch: 1,
            rounds_without_taking: 0,
            spurious_rounds: 0,
        }
    }

    fn inbox(&self) -> &Inbox<Job<'static, E>> {
        &self.inboxes[self.own]
    }

    /// Starts the jobs the next take may move from the own inbox.
    fn take_jobs(&mut self, cx: &mut Context<'_>) {
        if self.drained {
            return;
        }
        self.drained = self.inboxes[self.own].take(cx, self.batch, &mut self.taken) == Taken::Drained;
        for job in self.taken.drain(..) {
            self.tasks.push(Task::new(job, Arc::clone(&self.core)));
        }
    }

    /// Steals the newest half of a sibling's backlog into the own
    /// inbox; tells whether it found any.
    fn steal(&mut self) -> bool {
        if !self.steals {
            return false;
        }
        let mut now = None;
        let count = self.inboxes.len();
        for step in 1..count {
            let victim = &self.inboxes[(self.own + step) % count];
            if victim.worth_stealing(&mut now, SLOW_ROUND) && victim.steal(MAX_STEAL, &mut self.taken) > 0 {
                self.inboxes[self.own].push_stolen(&mut self.taken);
                self.drained = false;
                return true;
            }
        }
        false
    }

    /// Whether jobs wait in the own inbox or, for a worker that steals, in
    /// a sibling's, worth stealing.
    fn work_is_queued(&self) -> bool {
        if self.inbox().has_jobs() {
            return true;
        }
        if !self.steals {
            return false;
        }
        let (mut now, count) = (None, self.inboxes.len());
        (1..count).any(|step| self.inboxes[(self.own + step) % count].worth_stealing(&mut now, SLOW_ROUND))
    }

    /// One turn of the worker: rounds until nothing is ready or the budget
    /// ran out.
    fn run(&mut self, cx: &mut Context<'_>) -> Poll<()>
    where
        E: From<Panicked> + std::fmt::Display,
    {
        // Polls per turn before the worker yields to the runtime, so other
        // tokio tasks on its thread get their turn.
        let mut budget = 128;
        // When the next round begins, near enough: the end of the last one
        // (what happens between two rounds is a take or a steal), so a
        // round costs one clock read.
        let mut mark = Instant::now();
        loop {
            self.tasks.begin_round(cx);
            if self.tasks.has_ready() && self.rounds_without_taking < MAX_ROUNDS_WITHOUT_TAKING {
                // Started tasks that are ready run before new jobs start, so
                // a new job that turns out long does not hold them up; the
                // new jobs wait in the inbox, where a sibling can take them.
                self.rounds_without_taking += 1;
            } else if !self.tasks.has_ready()
                && self.spurious_rounds < MAX_SPURIOUS_ROUNDS
                && self.work_is_queued()
                && self.tasks.queue_unwoken() > 0
            {
                // Before new work that could turn out long, a second look at
                // tasks whose wake-up may have been put off until this thread
                // runs out of work: tokio's `yield_now` does that, and the
                // thread might be stuck in a long poll by then.
                self.spurious_rounds += 1;
            } else {
                self.rounds_without_taking = 0;
                self.spurious_rounds = 0;
                self.take_jobs(cx);
            }
            if !self.tasks.has_ready() {
                if self.steal() {
                    continue;
                }
                if self.drained && self.tasks.is_empty() {
                    return Poll::Ready(());
                }
                // Announce the park, then look once more: a spawner that
                // pushed before seeing the announcement woke nobody.
                self.inbox().park(cx);
                if self.work_is_queued() {
                    self.inbox().unpark();
                    continue;
                }
                return Poll::Pending;
            }
            self.inbox().set_round_began(Some(mark));
            let core = &self.core;
            let out_of_budget = self.tasks.poll_round(&mut budget, |mut ended| match ended.result.take() {
                Some(result) => core.finish(|| ended.task_id(), result),
                None => core.not_started(),
            });
            let ended = Instant::now();
            self.batch = if ended - mark > SLOW_ROUND { 1 } else { (self.batch * 2).min(MAX_BATCH) };
            mark = ended;
            self.inbox().set_round_began(None);
            self.inbox().set_owner_batch(self.batch);
            if out_of_budget {
                // Other tokio tasks of the thread get their turn (tokio moves
                // a task that keeps waking itself out of the LIFO slot).
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }
}

impl<E: From<Panicked> + std::fmt::Display> Future for Worker<E> {
    type Output = ();

    /// Ends when the group closed the inbox and every task ended.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.inbox().unpark();
        this.run(cx)
    }
}
