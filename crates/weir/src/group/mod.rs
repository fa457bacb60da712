//! [`Group`]: run tasks together; the first error cancels the rest, panics
//! become errors, and nothing outlives the group.
//!
//! This is Go's `errgroup` with what Go cannot give: work not yet started
//! never starts after cancellation, running work is dropped (or left to
//! finish, by choice), a dropped group aborts its tasks, and a panic is an
//! error that names its task. [`CollectGroup`] runs every task to the end
//! and returns every error instead. [`Group::map`] runs an
//! ordered, limited map over items.
//!
//! Tasks return `Result<(), E>` with your error type `E`, which comes back
//! from [`Group::wait`] unchanged. When weir itself has to report a failure
//! it converts a [`Panicked`] or a [`Cancelled`] into `E`, so `E` must
//! implement `From` for both; `anyhow::Error` and
//! `Box<dyn Error + Send + Sync>` already do, and an error enum needs two
//! `#[from]` variants.
//!
//! # Costs
//! A spawned task costs a box and a queue push, not a tokio task: about
//! 150 ns per task without a limit and 260 ns with a limit of 8 on the
//! 2-core reference machine, where Go's errgroup took about 260 and 510 ns
//! and `JoinSet` about 1300 ns in the same session (`bash bench/compare.sh`).
//! Tasks share one worker task per runtime thread, but a task that computes
//! without awaiting does not hold up the tasks queued behind it: an idle
//! worker steals them (`cargo bench --bench fairness`: short tasks beside
//! CPU-heavy ones finish as soon as beside `JoinSet`'s, see
//! `docs/benchmarks.md`). Tasks a worker has already started stay on it,
//! so work that blocks a thread still belongs in
//! `tokio::task::spawn_blocking`.
//!
//! # Examples
//! ```
//! use weir::group::Group;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let group: Group<anyhow::Error> = Group::new();
//! group.spawn(async { Ok(()) }).await;
//! group.spawn(async { anyhow::bail!("boom") }).await;
//! let err = group.wait().await.unwrap_err();
//! assert_eq!(err.to_string(), "boom");
//! # }
//! ```

mod builder;
pub(crate) mod cause;
mod core;
mod inbox;
mod local;
mod map;
mod scoped;
mod spawner;
mod task;
mod worker;

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::builder::GroupBuilder;
pub use self::cause::{CancelCause, Cancellation};
use self::core::{Core, Settings};
pub use self::core::{OnCancel, OnPanic};
pub use self::map::Order;
pub use self::scoped::ScopedGroup;
use self::spawner::Spawner;
use self::task::Job;
use crate::error::{Cancelled, Errors, Panicked};

/// Runs tasks together; the first error cancels the rest (an errgroup).
///
/// - [`spawn`](Self::spawn) starts a task, waiting for a free slot when the
///   group has a [limit](GroupBuilder::limit).
/// - The first task to fail (error or panic) cancels the group's
///   [token](Self::token). Tasks not yet started never start; running
///   tasks are dropped at their next `.await` ([`OnCancel::Abort`], the
///   default) or left to finish ([`OnCancel::Cooperate`]).
/// - [`wait`](Self::wait) returns the first error, or `Ok(())` only if
///   every spawned task ran to completion with `Ok`: work that was
///   cancelled before it finished is reported as a [`Cancelled`] error,
///   never as success. When `wait` returns, no task of the group is alive.
/// - Dropping the group without `wait` cancels it and aborts every task.
///
/// The type system does the job of Go's `-race` here: a task is `Send +
/// 'static`, so it can share state with others only through types that
/// are safe to share; weir itself forbids `unsafe` code.
///
/// # Examples
/// A producer and a consumer joined by a channel.
/// ```
/// use weir::group::Group;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let group: Group<anyhow::Error> = Group::new();
/// let (tx, mut rx) = tokio::sync::mpsc::channel(1);
/// let (total_tx, total_rx) = tokio::sync::oneshot::channel();
/// group.spawn(async move {
///     for n in [1, 2, 3, 4, 5] {
///         tx.send(n).await?;
///     }
///     Ok(())
/// }).await;
/// group.spawn(async move {
///     let mut total = 0;
///     while let Some(n) = rx.recv().await {
///         total += n;
///     }
///     let _ = total_tx.send(total);
///     Ok(())
/// }).await;
/// group.wait().await?;
/// assert_eq!(total_rx.await?, 15);
/// # Ok(())
/// # }
/// ```
pub struct Group<E> {
    core: Arc<Core<E>>,
    spawner: OnceLock<Spawner<E>>,
    spawned: AtomicU64,
    worker_count: Option<usize>,
    spread: bool,
    deadline: Option<tokio::time::Instant>,
    watcher: OnceLock<JoinHandle<()>>,
    waited: bool,
}

impl<E> Default for Group<E> {
    fn default() -> Self {
        GroupBuilder::default().build().expect("the default settings are valid")
    }
}

impl<E> std::fmt::Debug for Group<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("spawned", &self.spawned.load(Ordering::Relaxed))
            .field("stopped", &self.core.is_stopped())
            .finish_non_exhaustive()
    }
}

impl<E> Group<E> {
    /// A group with the [default settings](GroupBuilder#defaults): no
    /// limit, no deadline, panics captured, cancellation aborts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Configures a group.
    pub fn builder() -> GroupBuilder<E> {
        GroupBuilder::default()
    }

    fn from_settings(settings: Settings, worker_count: Option<usize>, spread: bool) -> Self {
        let deadline = settings.timeout.map(|t| tokio::time::Instant::now() + t);
        Self {
            core: Arc::new(Core::new(settings)),
            spawner: OnceLock::new(),
            spawned: AtomicU64::new(0),
            worker_count,
            spread,
            deadline,
            watcher: OnceLock::new(),
            waited: false,
        }
    }

    /// The group's cancellation token. It is cancelled by the first
    /// failure, by the deadline, by a parent, by [`cancel`](Self::cancel),
    /// and when [`wait`](Self::wait) returns, whatever the outcome (as Go's
    /// errgroup cancels its context), so helpers tied to it stop. Tasks
    /// watch it to stop early; nested groups take it as their
    /// [parent](GroupBuilder::parent). [`cancellation`](Self::cancellation)
    /// tells why it was cancelled.
    pub fn token(&self) -> CancellationToken {
        self.core.token.clone()
    }

    /// The group's token with the [cause](CancelCause) of its cancellation,
    /// for tasks to take (Go's `context.Cause`).
    pub fn cancellation(&self) -> Cancellation {
        self.core.cause.handle()
    }

    /// Why the group was cancelled; `None` while it runs.
    pub fn cause(&self) -> Option<CancelCause> {
        self.core.cause.get()
    }

    /// Cancels the group: nothing more starts, running tasks are dropped
    /// or told to stop (per [`OnCancel`]), and [`wait`](Self::wait) reports
    /// the unfinished work as [`Cancelled`]. The cause is
    /// [`CancelCause::Requested`] without a reason.
    pub fn cancel(&self) {
        self.core.stop(CancelCause::Requested { reason: None });
    }

    /// Like [`cancel`](Self::cancel), with a reason the tasks read in the
    /// [cause](CancelCause::Requested).
    pub fn cancel_with(&self, reason: impl Into<String>) {
        self.core.stop(CancelCause::Requested { reason: Some(Arc::from(reason.into())) });
    }

    /// Whether the group stopped taking work (a failure, a deadline or a
    /// cancellation). A loop that spawns can stop early on it.
    pub fn is_stopped(&self) -> bool {
        self.core.is_stopped() || self.core.token.is_cancelled()
    }

    /// How many tasks were handed to the group so far, including those
    /// that were dropped unstarted because the group had stopped.
    pub fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }
}

impl<E> Group<E>
where
    E: From<Panicked> + From<Cancelled> + Display + Send + 'static,
{
    /// Spawns `task` in the group, first waiting for a free slot if the
    /// group has a limit (Go's blocking `Go`).
    ///
    /// If the group has stopped (before or while waiting for a slot), the
    /// task is dropped without being polled and counted as unfinished.
    ///
    /// # Cancel safety
    /// Cancel safe: if this future is dropped before it completes, the task
    /// was not spawned and is not counted.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn spawn<F>(&self, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.spawn_with(None, task).await;
    }

    /// Like [`spawn`](Self::spawn), with a name that errors and panics
    /// report (see [`TaskId`](crate::error::TaskId)).
    ///
    /// # Cancel safety
    /// As for [`spawn`](Self::spawn).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn spawn_named<F>(&self, name: impl Into<Cow<'static, str>>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.spawn_with(Some(name.into()), task).await;
    }

    /// Spawns `task` if a slot is free now, or hands it back in
    /// [`GroupFull`] when the group's limit is reached (Go's `TryGo`).
    ///
    /// A stopped group takes the task, drops it unpolled and counts it as
    /// unfinished, as [`spawn`](Self::spawn) does.
    ///
    /// # Errors
    /// [`GroupFull`] holding the task when every slot is taken.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn try_spawn<F>(&self, task: F) -> Result<(), GroupFull<F>>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.try_spawn_with(None, task)
    }

    fn try_spawn_with<F>(&self, name: Option<Cow<'static, str>>, task: F) -> Result<(), GroupFull<F>>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        if self.is_stopped() {
            self.spawned.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if let Some(permits) = &self.core.permits {
            match permits.try_acquire() {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(GroupFull(task)),
            }
        }
        self.dispatch(name, task);
        Ok(())
    }

    /// Like [`try_spawn`](Self::try_spawn), with a name that errors and
    /// panics report.
    ///
    /// # Errors
    /// [`GroupFull`] holding the task when every slot is taken.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn try_spawn_named<F>(&self, name: impl Into<Cow<'static, str>>, task: F) -> Result<(), GroupFull<F>>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.try_spawn_with(Some(name.into()), task)
    }

    async fn spawn_with<F>(&self, name: Option<Cow<'static, str>>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        if self.core.is_stopped() || !self.take_slot().await {
            self.spawned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.dispatch(name, task);
    }

    /// Takes a slot of the limit, if any; `false` if the group stopped
    /// while waiting.
    async fn take_slot(&self) -> bool {
        let Some(permits) = &self.core.permits else { return true };
        if let Ok(permit) = permits.try_acquire() {
            permit.forget();
            return true;
        }
        tokio::select! {
            biased;
            _ = self.core.token.cancelled() => false,
            permit = permits.acquire() => {
                permit.expect("the group never closes its semaphore").forget();
                true
            }
        }
    }

    fn dispatch<F>(&self, name: Option<Cow<'static, str>>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        let index = self.spawned.fetch_add(1, Ordering::Relaxed);
        let spawner = self.spawner.get_or_init(|| self.start());
        spawner.dispatch(Job { future: task::boxed(task), index, name });
    }

    fn start(&self) -> Spawner<E> {
        if self.deadline.is_some() || self.core.has_parent {
            self.watcher.get_or_init(|| self.watch());
        }
        let count = self.worker_count.unwrap_or_else(spawner::default_worker_count);
        Spawner::start(count, &self.core, self.spread)
    }

    /// A task that stops the group when the deadline passes or the token is
    /// cancelled from outside, so running tasks are aborted at once.
    fn watch(&self) -> JoinHandle<()> {
        let core = Arc::clone(&self.core);
        let deadline = self.deadline;
        tokio::spawn(async move {
            let deadline_passed = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = deadline_passed => core.stop_at_deadline(),
                () = core.token.cancelled() => core.cancelled_outside(),
            }
        })
    }

    /// Waits for every task to end, then returns the first error, or
    /// `Ok(())` if every spawned task ran to completion with `Ok`.
    ///
    /// If the group was cancelled from outside (parent, deadline,
    /// [`cancel`](Self::cancel)) and some work did not finish, the error is
    /// a [`Cancelled`] converted into `E`; for a deadline its source is a
    /// [`DeadlineExceeded`](crate::error::DeadlineExceeded). When `wait`
    /// returns, no task of the group is alive and its token is cancelled
    /// (with [`CancelCause::Finished`] unless a cause came first), so
    /// helpers tied to the token stop, as with Go's errgroup.
    ///
    /// # Cancel safety
    /// Not cancel safe in the sense that dropping this future drops the
    /// group, which cancels and aborts every task (nothing leaks).
    ///
    /// # Panics
    /// With [`OnPanic::Resume`], re-raises the first task panic.
    pub async fn wait(mut self) -> Result<(), E> {
        match self.join().await.into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    async fn join(&mut self) -> Errors<E> {
        self.waited = true;
        if let Some(spawner) = self.spawner.take() {
            join_workers(&self.core, spawner.close()).await;
        }
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
            let _ = watcher.await;
        }
        let outcome = self.core.take_outcome(self.spawned.load(Ordering::Relaxed));
        self.core.finished();
        match outcome {
            Ok(errors) => errors,
            Err(panic) => panic.resume(),
        }
    }
}

/// Joins the workers; if the token is cancelled meanwhile, stops the group
/// first so that aborting (or not starting) takes effect.
async fn join_workers<E>(core: &Core<E>, workers: Vec<JoinHandle<()>>) {
    let mut all = std::pin::pin!(futures_util::future::join_all(workers));
    tokio::select! {
        biased;
        _ = &mut all => return,
        () = core.token.cancelled() => core.cancelled_outside(),
    }
    all.await;
}

impl<E> Drop for Group<E> {
    fn drop(&mut self) {
        if !self.waited {
            self.core.stop(CancelCause::Requested { reason: Some(Arc::from("the group was dropped before wait")) });
            self.core.abort_workers();
        }
        if let Some(watcher) = self.watcher.get() {
            watcher.abort();
        }
    }
}

/// Runs every task to the end and collects every error, each with the task
/// that produced it (Go's `errors.Join`).
///
/// Errors do not cancel the group; a deadline, a parent or
/// [`cancel`](Self::cancel) still does. Built with
/// [`GroupBuilder::build_collect`].
///
/// # Examples
/// ```
/// use weir::group::Group;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let group = Group::<anyhow::Error>::builder().build_collect().unwrap();
/// for n in 0..4 {
///     group.spawn(async move {
///         if n % 2 == 1 { anyhow::bail!("odd {n}") }
///         Ok(())
///     }).await;
/// }
/// let errors = group.wait().await.unwrap_err();
/// assert_eq!(errors.len(), 2);
/// # }
/// ```
#[derive(Debug)]
pub struct CollectGroup<E>(Group<E>);

impl<E> CollectGroup<E> {
    /// The group's cancellation token; see [`Group::token`].
    pub fn token(&self) -> CancellationToken {
        self.0.token()
    }

    /// The token with the cause of its cancellation; see
    /// [`Group::cancellation`].
    pub fn cancellation(&self) -> Cancellation {
        self.0.cancellation()
    }

    /// Cancels the group; see [`Group::cancel`].
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

impl<E> CollectGroup<E>
where
    E: From<Panicked> + From<Cancelled> + Display + Send + 'static,
{
    /// Spawns `task`; see [`Group::spawn`].
    ///
    /// # Cancel safety
    /// As for [`Group::spawn`].
    pub async fn spawn<F>(&self, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.0.spawn(task).await;
    }

    /// Spawns a named task; see [`Group::spawn_named`].
    ///
    /// # Cancel safety
    /// As for [`Group::spawn`].
    pub async fn spawn_named<F>(&self, name: impl Into<Cow<'static, str>>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.0.spawn_named(name, task).await;
    }

    /// Spawns `task` if a slot is free; see [`Group::try_spawn`].
    ///
    /// # Errors
    /// [`GroupFull`] holding the task when every slot is taken.
    pub fn try_spawn<F>(&self, task: F) -> Result<(), GroupFull<F>>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        self.0.try_spawn(task)
    }

    /// Waits for every task, then returns every error in the order the
    /// tasks failed, each with its [`TaskId`](crate::error::TaskId); work
    /// stopped by a cancellation adds one [`Cancelled`] entry.
    ///
    /// # Cancel safety
    /// Dropping this future drops the group, which aborts every task.
    ///
    /// # Errors
    /// [`Errors`] when any task failed or was stopped.
    pub async fn wait(mut self) -> Result<(), Errors<E>> {
        self.0.join().await.into_result()
    }
}

/// The group's limit was reached; holds the task that was not spawned.
pub struct GroupFull<F>(pub F);

impl<F> GroupFull<F> {
    /// The task that was handed back.
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F> std::fmt::Debug for GroupFull<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupFull(..)")
    }
}

impl<F> std::fmt::Display for GroupFull<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("every slot of the group is taken; spawn (which waits) or try again later")
    }
}

impl<F> std::error::Error for GroupFull<F> {}
