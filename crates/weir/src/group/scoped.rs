//! [`ScopedGroup`]: a group whose tasks may borrow from the caller.

use std::borrow::Cow;
use std::fmt::Display;
use std::future::{Future, poll_fn};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::cause::{CancelCause, Cancellation};
use super::core::{Core, OnCancel, Settings};
use super::local::LocalTasks;
use super::task::{self, Job, Task};
use crate::error::{Cancelled, Panicked};

/// A group whose tasks may borrow from the function that made it: the
/// tasks are `Send + 'a`, not `'static`, and run inside this value's own
/// futures ([`spawn`](Self::spawn) and [`wait`](Self::wait)), on the
/// caller's task. Same contract as [`Group`](super::Group): a limit, the
/// first error cancels the rest, panics become errors, work that did not
/// finish is reported as [`Cancelled`], the cause is readable
/// ([`cancellation`](Self::cancellation)); safe Rust throughout.
///
/// # When to pick which
/// - [`Group`](super::Group): tasks are spread over the runtime's threads
///   and make progress while the caller does something else; they must be
///   `'static` (share through `Arc`, move clones in).
/// - `ScopedGroup`: tasks borrow (`&db`, `&config`, a `&mut` part of a
///   buffer) and run concurrently with each other, but all on the caller's
///   task, and only while the caller awaits `spawn` or `wait`: no
///   parallelism across threads, and a task that computes without awaiting
///   holds up its siblings. The right shape for I/O fan-out over borrowed
///   state (what `std::thread::scope` is for threads).
///
/// Build one with [`GroupBuilder::build_scoped`](super::GroupBuilder::build_scoped);
/// the builder's limit, timeout, parent, [`OnPanic`](super::OnPanic) and
/// [`OnCancel`] apply (its worker count does not: there are no workers).
///
/// # Examples
/// ```
/// use std::sync::Mutex;
/// use weir::group::Group;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let prices = vec![120u64, 80, 45];
/// let total = Mutex::new(0);
/// let mut group = Group::<anyhow::Error>::builder().limit(2).build_scoped()?;
/// for price in &prices {
///     let total = &total; // borrowed, not cloned into an Arc
///     group.spawn(async move {
///         *total.lock().unwrap() += price;
///         Ok(())
///     }).await;
/// }
/// group.wait().await?;
/// assert_eq!(total.into_inner().unwrap(), 245);
/// # Ok(())
/// # }
/// ```
pub struct ScopedGroup<'a, E> {
    core: Arc<Core<E>>,
    tasks: LocalTasks<Task<'a, E>>,
    spawned: u64,
    deadline: Option<Instant>,
    waited: bool,
}

impl<E> std::fmt::Debug for ScopedGroup<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedGroup")
            .field("spawned", &self.spawned)
            .field("stopped", &self.core.is_stopped())
            .finish_non_exhaustive()
    }
}

impl<'a, E> ScopedGroup<'a, E> {
    pub(super) fn from_settings(settings: Settings) -> Self {
        let deadline = settings.timeout.map(|t| Instant::now() + t);
        Self { core: Arc::new(Core::new(settings)), tasks: LocalTasks::default(), spawned: 0, deadline, waited: false }
    }

    /// The group's cancellation token; see [`Group::token`](super::Group::token).
    pub fn token(&self) -> CancellationToken {
        self.core.token.clone()
    }

    /// The token with the cause of its cancellation; see
    /// [`Group::cancellation`](super::Group::cancellation).
    pub fn cancellation(&self) -> Cancellation {
        self.core.cause.handle()
    }

    /// Cancels the group, as [`Group::cancel`](super::Group::cancel).
    pub fn cancel(&self) {
        self.core.stop(CancelCause::Requested { reason: None });
    }

    /// Whether the group stopped taking work.
    pub fn is_stopped(&self) -> bool {
        self.core.is_stopped() || self.core.token.is_cancelled()
    }
}

impl<'a, E> ScopedGroup<'a, E>
where
    E: From<Panicked> + From<Cancelled> + Display + Send + 'a,
{
    /// Adds `task`, first running the group's tasks until a slot of the
    /// limit is free. If the group has stopped, the task is dropped
    /// unpolled and counted as unfinished.
    ///
    /// # Cancel safety
    /// Dropping this future while it waits for a slot leaves the task
    /// unspawned (and uncounted); the tasks already spawned stay.
    pub async fn spawn<F>(&mut self, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'a,
    {
        self.spawn_with(None, task::boxed(task)).await;
    }

    /// Like [`spawn`](Self::spawn), with a name that errors and panics
    /// report.
    ///
    /// # Cancel safety
    /// As for [`spawn`](Self::spawn).
    pub async fn spawn_named<F>(&mut self, name: impl Into<Cow<'static, str>>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'a,
    {
        self.spawn_with(Some(name.into()), task::boxed(task)).await;
    }

    async fn spawn_with(&mut self, name: Option<Cow<'static, str>>, future: super::task::BoxFuture<'a, E>) {
        while self.core.permits.is_some() && !self.is_stopped() {
            if let Some(Ok(permit)) = self.core.permits.as_ref().map(tokio::sync::Semaphore::try_acquire) {
                permit.forget();
                break;
            }
            self.run_until_one_ends().await;
        }
        let index = self.spawned;
        self.spawned += 1;
        if self.is_stopped() {
            return;
        }
        self.tasks.push(Task::new(Job { future, index, name }, Arc::clone(&self.core)));
    }

    /// Runs every task to its end, then returns the first error, or
    /// `Ok(())` if every spawned task ran to completion with `Ok`; as
    /// [`Group::wait`](super::Group::wait), the token is then cancelled.
    ///
    /// # Errors
    /// The first error; a [`Cancelled`] converted into `E` if the group
    /// was cancelled from outside and work did not finish.
    ///
    /// # Cancel safety
    /// Dropping this future drops the group and every task in it.
    ///
    /// # Panics
    /// With [`OnPanic::Resume`](super::OnPanic::Resume), re-raises the
    /// first task panic.
    pub async fn wait(mut self) -> Result<(), E> {
        while !self.tasks.is_empty() {
            self.run_until_one_ends().await;
        }
        self.waited = true;
        let outcome = self.core.take_outcome(self.spawned);
        self.core.finished();
        match outcome {
            Ok(errors) => errors.into_iter().next().map_or(Ok(()), |(_, error)| Err(error)),
            Err(panic) => panic.resume(),
        }
    }

    /// Polls the tasks until one ends, the token is cancelled from
    /// outside, or the deadline passes; drops the running tasks once the
    /// group stopped in [`OnCancel::Abort`] mode.
    async fn run_until_one_ends(&mut self) {
        let (core, tasks) = (&self.core, &mut self.tasks);
        let deadline = async {
            match self.deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let stopped = core.is_stopped();
        tokio::select! {
            biased;
            ended = poll_fn(|cx| tasks.poll_next(cx, &mut 128)) => {
                if let Some(mut ended) = ended {
                    match ended.result.take() {
                        Some(result) => core.finish(|| ended.task_id(), result),
                        None => core.not_started(),
                    }
                }
            }
            () = core.token.cancelled(), if !stopped => core.cancelled_outside(),
            () = deadline, if !stopped => core.stop_at_deadline(),
        }
        if core.is_stopped() && core.on_cancel == OnCancel::Abort {
            tasks.clear();
        }
    }
}

impl<E> Drop for ScopedGroup<'_, E> {
    fn drop(&mut self) {
        if !self.waited {
            self.core.stop(CancelCause::Requested { reason: Some(Arc::from("the group was dropped before wait")) });
        }
    }
}
