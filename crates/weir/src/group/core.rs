//! State shared by a group's handle, its workers and its tasks.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::cause::{CancelCause, CauseCell};
use super::inbox::Inbox;
use super::task::Job;
use crate::error::{CancelReason, Cancelled, DeadlineExceeded, Errors, Origin, Panicked, TaskId};

/// What a group does with a task's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The first error is kept and cancels the group.
    FirstError,
    /// Every error is kept; errors do not cancel.
    CollectAll,
}

/// What happens to a task that panics.
///
/// # Why panics become errors by default
///
/// Go's errgroup shipped panic propagation in `Wait` and then reverted it,
/// because re-raising on another goroutine lost the stack and surprised
/// callers; conc chose the other way and re-panics in `Wait`. In Rust a
/// panic inside a tokio task is already caught by the runtime, so letting it
/// "crash the program" is not on offer anyway; the choice is only between
/// handing it back as a value or re-raising it in the caller. weir hands it
/// back as a [`Panicked`] error by default because a pipeline is the place
/// where one poison item must not take down every tenant: the panic cancels
/// the group like any error, names the task, keeps the message, and is
/// counted. A program that treats panics as bugs to die on opts into
/// [`OnPanic::Resume`], which re-raises the original payload from `wait` on
/// the caller's task after every other task was stopped and joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnPanic {
    /// The panic becomes a [`Panicked`] error, converted into the group's
    /// error type. The default.
    #[default]
    Capture,
    /// `wait` re-raises the first panic (after stopping and joining every
    /// other task), as if the task had panicked on the caller's task.
    Resume,
}

/// What cancellation does to tasks that are already running.
///
/// Tasks not yet started never start after cancellation, in both modes:
/// they are dropped unpolled and counted as unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnCancel {
    /// Running tasks are dropped at their next `.await` (as tokio's
    /// `JoinSet::abort_all` does), so `wait` returns promptly even when a
    /// task ignores the token. The default.
    #[default]
    Abort,
    /// Running tasks are left to finish; they should watch
    /// [`Group::token`](super::Group::token) and return. `wait` waits for
    /// them (Go's errgroup behaviour).
    Cooperate,
}

pub(crate) struct Core<E> {
    pub(crate) token: CancellationToken,
    /// Why the group was cancelled, shared with its tasks.
    pub(crate) cause: Arc<CauseCell>,
    pub(crate) mode: Mode,
    pub(crate) on_panic: OnPanic,
    pub(crate) on_cancel: OnCancel,
    pub(crate) permits: Option<Semaphore>,
    pub(crate) timeout: Option<Duration>,
    /// Whether the token has a parent that may cancel it from outside.
    pub(crate) has_parent: bool,
    stopped: AtomicBool,
    deadline_passed: AtomicBool,
    /// Tasks that ran to their end; on a line of its own, since workers
    /// write it while spawners read the flags above.
    finished: Padded<AtomicU64>,
    outcome: Mutex<Outcome<E>>,
    workers: Mutex<Vec<Worker<E>>>,
}

/// What the group keeps of a worker to abort it: its tokio task and its
/// inbox, whose queued jobs are dropped with it (a queued job's future
/// holds resources — a pipeline stage's sender — that others wait on).
struct Worker<E> {
    task: AbortHandle,
    inbox: Arc<Inbox<Job<'static, E>>>,
}

struct Outcome<E> {
    errors: Errors<E>,
    panic: Option<Panicked>,
}

pub(crate) struct Settings {
    pub(crate) token: CancellationToken,
    pub(crate) parent: Option<CancellationToken>,
    pub(crate) mode: Mode,
    pub(crate) on_panic: OnPanic,
    pub(crate) on_cancel: OnCancel,
    pub(crate) limit: Option<usize>,
    pub(crate) timeout: Option<Duration>,
}

impl<E> Core<E> {
    pub(crate) fn new(settings: Settings) -> Self {
        let has_parent = settings.parent.is_some();
        Self {
            cause: CauseCell::new(settings.token.clone(), settings.parent),
            token: settings.token,
            mode: settings.mode,
            on_panic: settings.on_panic,
            on_cancel: settings.on_cancel,
            permits: settings.limit.map(Semaphore::new),
            timeout: settings.timeout,
            has_parent,
            stopped: AtomicBool::new(false),
            deadline_passed: AtomicBool::new(false),
            finished: Padded(AtomicU64::new(0)),
            outcome: Mutex::new(Outcome { errors: Errors::new(), panic: None }),
            workers: Mutex::new(Vec::new()),
        }
    }

    /// Whether the group stopped taking new work.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn add_worker(&self, task: AbortHandle, inbox: Arc<Inbox<Job<'static, E>>>) {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).push(Worker { task, inbox });
    }

    /// Stops the group: no new task starts, the token is cancelled (with
    /// `cause`, unless one came first) and, in abort mode, running tasks
    /// are dropped.
    pub(crate) fn stop(&self, cause: CancelCause) {
        if matches!(cause, CancelCause::Deadline(_)) {
            self.deadline_passed.store(true, Ordering::Release);
        }
        self.cause.record(cause);
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.token.cancel();
        if self.on_cancel == OnCancel::Abort {
            self.abort_workers();
        }
    }

    /// Aborts every worker and drops the jobs still queued for them: none
    /// of them will start, and what their futures hold is freed now, not
    /// when the group is dropped.
    pub(crate) fn abort_workers(&self) {
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for worker in workers {
            worker.task.abort();
            for _job in worker.inbox.abort() {
                self.not_started();
            }
        }
    }

    /// Records the end of a task that ran.
    pub(crate) fn finish(&self, task: impl FnOnce() -> TaskId, result: TaskResult<E>)
    where
        E: From<Panicked> + Display,
    {
        match result {
            TaskResult::Ok => {}
            TaskResult::Err(error) => self.keep_error(task, error),
            TaskResult::Panic(payload) => {
                let task = task();
                let panic = Panicked::in_task(task.clone(), payload);
                tracing::error!(%task, message = panic.message(), "task panicked");
                match self.on_panic {
                    OnPanic::Capture => {
                        self.keep_error(|| task, E::from(panic));
                    }
                    OnPanic::Resume => self.keep_panic(task, panic),
                }
            }
        }
        // After the error is kept: a spawner woken by this slot sees the
        // group stopped, so nothing starts after the first error.
        self.end_one();
    }

    /// Stops the group because its deadline passed.
    pub(crate) fn stop_at_deadline(&self) {
        self.stop(CancelCause::Deadline(DeadlineExceeded::new(self.timeout)));
    }

    /// Stops the group because its token was cancelled from outside.
    pub(crate) fn cancelled_outside(&self) {
        self.stop(self.cause.outside());
    }

    /// The group's work is over: its token is cancelled, with
    /// [`CancelCause::Finished`] unless another cause came first.
    pub(crate) fn finished(&self) {
        self.cause.record(CancelCause::Finished);
        self.token.cancel();
    }

    /// Records a task that was dropped unstarted because the group had
    /// stopped.
    pub(crate) fn not_started(&self) {
        self.release_slot();
    }

    fn end_one(&self) {
        self.release_slot();
        self.finished.0.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn release_slot(&self) {
        if let Some(permits) = &self.permits {
            permits.add_permits(1);
        }
    }

    fn keep_panic(&self, task: TaskId, panic: Panicked) {
        let message = Arc::from(format!("panicked: {}", panic.message()));
        self.lock_outcome().panic.get_or_insert(panic);
        self.stop(CancelCause::Failed { task, message });
    }

    fn keep_error(&self, task: impl FnOnce() -> TaskId, error: E)
    where
        E: Display,
    {
        let mut outcome = self.lock_outcome();
        match self.mode {
            Mode::CollectAll => outcome.errors.push(Origin::Task(task()), error),
            Mode::FirstError if outcome.errors.is_empty() => {
                let task = task();
                // The alternate form: anyhow renders its whole chain.
                let message = Arc::from(format!("{error:#}"));
                outcome.errors.push(Origin::Task(task.clone()), error);
                drop(outcome);
                self.stop(CancelCause::Failed { task, message });
            }
            // A later error is most often a consequence of the first (a
            // sibling noticing the cancellation); Go's errgroup drops it too.
            Mode::FirstError => tracing::debug!(task = %task(), "error after the group's first error dropped"),
        }
    }

    fn lock_outcome(&self) -> std::sync::MutexGuard<'_, Outcome<E>> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group's result once every task ended or was dropped: its errors
    /// (with a [`Cancelled`] entry when spawned work did not finish), or the
    /// panic to re-raise.
    pub(crate) fn take_outcome(&self, spawned: u64) -> Result<Errors<E>, Panicked>
    where
        E: From<Cancelled>,
    {
        let mut outcome = self.lock_outcome();
        if let Some(panic) = outcome.panic.take() {
            return Err(panic);
        }
        let mut errors = std::mem::take(&mut outcome.errors);
        let unfinished = spawned - self.finished.0.load(Ordering::Acquire);
        let first_error_explains_it = self.mode == Mode::FirstError && !errors.is_empty();
        if unfinished > 0 && !first_error_explains_it {
            let reason =
                if self.deadline_passed.load(Ordering::Acquire) { CancelReason::Deadline } else { CancelReason::Token };
            let cancelled = Cancelled::new(reason, unfinished, self.timeout);
            errors.push(Origin::Unattributed, E::from(cancelled));
        }
        Ok(errors)
    }
}

/// Keeps a hot counter on its own cache line.
#[repr(align(128))]
struct Padded<T>(T);

/// How a task ended.
pub(crate) enum TaskResult<E> {
    Ok,
    Err(E),
    Panic(Box<dyn std::any::Any + Send>),
}
