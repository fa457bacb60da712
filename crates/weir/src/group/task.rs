//! A spawned task as a worker runs it: skips work that was not started
//! before the group stopped, catches panics, reports how it ended.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use super::core::{Core, TaskResult};
use crate::error::{CatchPanic, TaskId, catch_panic};

/// The caller's future, boxed since tasks differ in type.
pub(crate) type BoxFuture<'a, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'a>>;

/// Boxes `task` inside the span it was spawned in, if any, so a group's
/// tasks log and trace under their caller's span although a worker runs
/// them. Without a span (no subscriber, or none entered) nothing is
/// added to the task.
pub(crate) fn boxed<'a, E, F>(task: F) -> BoxFuture<'a, E>
where
    F: Future<Output = Result<(), E>> + Send + 'a,
{
    let span = tracing::Span::current();
    if span.is_none() { Box::pin(task) } else { Box::pin(tracing::Instrument::instrument(task, span)) }
}

/// What the group hands to a worker.
pub(crate) struct Job<'a, E> {
    pub(crate) future: BoxFuture<'a, E>,
    pub(crate) index: u64,
    pub(crate) name: Option<Cow<'static, str>>,
}

/// How a task ended, as its worker reports it to the group.
pub(crate) struct Ended<E> {
    pub(crate) index: u64,
    pub(crate) name: Option<Cow<'static, str>>,
    /// `None` when the task never started because the group had stopped.
    pub(crate) result: Option<TaskResult<E>>,
}

impl<E> Ended<E> {
    pub(crate) fn task_id(&mut self) -> TaskId {
        TaskId::new(self.index, self.name.take())
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct Task<'a, E> {
        #[pin]
        future: CatchPanic<BoxFuture<'a, E>>,
        // The worker's own handle on the group: cloned on the worker's
        // thread, so spawning does not bounce a shared counter between
        // threads.
        core: Arc<Core<E>>,
        index: u64,
        name: Option<Cow<'static, str>>,
        started: bool,
    }
}

impl<'a, E> Task<'a, E> {
    pub(crate) fn new(job: Job<'a, E>, core: Arc<Core<E>>) -> Self {
        Self { future: catch_panic(job.future), core, index: job.index, name: job.name, started: false }
    }
}

impl<E> Future for Task<'_, E> {
    type Output = Ended<E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended<E>> {
        let this = self.project();
        let result = if !*this.started && this.core.is_stopped() {
            None
        } else {
            *this.started = true;
            Some(match ready!(this.future.poll(cx)) {
                Ok(Ok(())) => TaskResult::Ok,
                Ok(Err(error)) => TaskResult::Err(error),
                Err(payload) => TaskResult::Panic(payload),
            })
        };
        Poll::Ready(Ended { index: *this.index, name: this.name.take(), result })
    }
}
