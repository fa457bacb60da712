//! Starts a group's workers on first use and hands tasks to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinHandle;

use super::core::Core;
use super::inbox::Inbox;
use super::task::Job;
use super::worker::{Inboxes, Worker};
use crate::error::Panicked;

pub(crate) struct Spawner<E> {
    inboxes: Inboxes<E>,
    next: AtomicUsize,
    /// Consecutive spawns handed to one worker: 64 (a burst costs a worker
    /// one lock and one wake-up), or 1 for a worker per task.
    block: usize,
    /// Whether idle workers steal from busy ones: not when each task has a
    /// worker of its own (a pipeline's), which would undo that.
    steal: bool,
    workers: Vec<JoinHandle<()>>,
}

impl<E: From<Panicked> + std::fmt::Display + Send + 'static> Spawner<E> {
    /// Spawns `count` workers on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub(crate) fn start(count: usize, core: &Arc<Core<E>>, spread: bool) -> Self {
        let inboxes: Inboxes<E> = (0..count).map(|_| Arc::new(Inbox::new())).collect();
        let mut workers = Vec::with_capacity(count);
        for (own, inbox) in inboxes.iter().enumerate() {
            let worker = tokio::spawn(Worker::new(Arc::clone(core), Arc::clone(&inboxes), own, !spread));
            core.add_worker(worker.abort_handle(), Arc::clone(inbox));
            workers.push(worker);
        }
        Self { inboxes, next: AtomicUsize::new(0), block: if spread { 1 } else { 64 }, steal: !spread, workers }
    }

    /// Hands `task` to the next worker, round-robin by blocks. A worker that was
    /// aborted drops the task unpolled.
    pub(crate) fn dispatch(&self, job: Job<'static, E>) {
        let index = if self.inboxes.len() == 1 {
            0
        } else {
            (self.next.fetch_add(1, Ordering::Relaxed) / self.block) % self.inboxes.len()
        };
        // If the worker was aborted (the group stopped), the job is
        // dropped unstarted.
        let inbox = &self.inboxes[index];
        if inbox.push(job) && self.steal {
            // A backlog: a parked sibling can take part of it.
            let count = self.inboxes.len();
            (1..count).any(|step| self.inboxes[(index + step) % count].wake_if_parked());
        }
    }

    /// Closes the inboxes and returns the workers to join: each ends once
    /// its tasks ended.
    pub(crate) fn close(self) -> Vec<JoinHandle<()>> {
        for inbox in self.inboxes.iter() {
            inbox.close();
        }
        self.workers
    }
}

/// The default number of workers: one per runtime thread.
pub(crate) fn default_worker_count() -> usize {
    tokio::runtime::Handle::try_current().map(|h| h.metrics().num_workers()).unwrap_or(1).max(1)
}
