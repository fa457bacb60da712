//! Worker tasks: each polls many group tasks, so spawning a task costs a
//! box and a channel send instead of a tokio task.
//!
//! # Why workers and not one tokio task per spawn
//!
//! One detached tokio task per group task, counted with an atomic and a
//! `Notify`, cost 583 ns per no-op task (687 with a limit of 8) where Go's
//! errgroup took about 450 (410) in the same run; `JoinSet` about 1300. A
//! group starts one worker per runtime thread and hands tasks to them
//! round-robin; a worker keeps its tasks in [`LocalTasks`] (a slab whose
//! slots and wakers are reused, so a task costs its one box), which polls
//! only the tasks that were woken: 309 ns per task, 211 with a limit of 8.
//!
//! The price: tasks on one worker share its tokio task, so an idle runtime
//! thread cannot steal one of them while another of them runs. A task that
//! blocks its thread (CPU-heavy work, blocking I/O) delays the tasks on the
//! same worker; such work belongs in `tokio::task::spawn_blocking` (or in a
//! pipeline stage with several workers), as it does anywhere in async code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::core::Core;
use super::inbox::Inbox;
use super::local::LocalTasks;
use super::task::{Job, Task};
use crate::error::Panicked;

pub(crate) struct Worker<E> {
    core: Arc<Core<E>>,
    inbox: Arc<Inbox<Job<'static, E>>>,
    inbox_closed: bool,
    /// Jobs taken from the inbox; kept to reuse its allocation.
    taken: Vec<Job<'static, E>>,
    tasks: LocalTasks<Task<'static, E>>,
}

impl<E> Worker<E> {
    pub(crate) fn new(core: Arc<Core<E>>, inbox: Arc<Inbox<Job<'static, E>>>) -> Self {
        Self { core, inbox, inbox_closed: false, taken: Vec::new(), tasks: LocalTasks::default() }
    }

    fn take_new_tasks(&mut self, cx: &mut Context<'_>) {
        if self.inbox_closed {
            return;
        }
        self.inbox_closed = self.inbox.take_all(cx, &mut self.taken);
        for job in self.taken.drain(..) {
            self.tasks.push(Task::new(job, Arc::clone(&self.core)));
        }
    }
}

impl<E: From<Panicked> + std::fmt::Display> Future for Worker<E> {
    type Output = ();

    /// Ends when the group closed the inbox and every task ended.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Polls per turn before the worker yields to the runtime, so other
        // tokio tasks on its thread get their turn.
        let mut budget = 128;
        loop {
            this.take_new_tasks(cx);
            match this.tasks.poll_next(cx, &mut budget) {
                Poll::Ready(Some(mut ended)) => match ended.result.take() {
                    Some(result) => this.core.finish(|| ended.task_id(), result),
                    None => this.core.not_started(),
                },
                Poll::Ready(None) if this.inbox_closed => return Poll::Ready(()),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}
