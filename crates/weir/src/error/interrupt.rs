use std::any::Any;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// Identifies a task of a group: its spawn order (0, 1, 2, …) and, when
/// given, its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId {
    index: u64,
    name: Option<std::borrow::Cow<'static, str>>,
}

impl TaskId {
    pub(crate) fn new(index: u64, name: Option<std::borrow::Cow<'static, str>>) -> Self {
        Self { index, name }
    }

    /// The task's spawn order within its group, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The name given with `spawn_named`, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "task {} ({name})", self.index),
            None => write!(f, "task {}", self.index),
        }
    }
}

/// A task panicked; weir caught the panic and made it this error.
///
/// It says which task panicked and keeps the panic's message (when the
/// payload was a string, as with `panic!("…")`). The original payload is
/// kept too: [`TaskPanic::resume`] re-raises it.
pub struct TaskPanic {
    task: TaskId,
    message: String,
    // Mutex only to make the error `Sync` (the payload is `Send` only), so
    // it fits in `Box<dyn Error + Send + Sync>` and `anyhow::Error`.
    payload: Mutex<Option<Box<dyn Any + Send>>>,
}

impl TaskPanic {
    pub(crate) fn new(task: TaskId, payload: Box<dyn Any + Send>) -> Self {
        let message = panic_message(&*payload);
        Self { task, message, payload: Mutex::new(Some(payload)) }
    }

    /// The task that panicked.
    pub fn task(&self) -> &TaskId {
        &self.task
    }

    /// The panic message, or `"<non-string panic payload>"`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Re-raises the original panic on this thread.
    ///
    /// # Panics
    /// Always: that is its job. If the payload was already taken, panics
    /// with the message instead.
    pub fn resume(self) -> ! {
        let payload = self.payload.into_inner().unwrap_or_else(|p| p.into_inner());
        match payload {
            Some(payload) => std::panic::resume_unwind(payload),
            None => panic!("{}", self.message),
        }
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

impl fmt::Debug for TaskPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskPanic").field("task", &self.task).field("message", &self.message).finish()
    }
}

impl fmt::Display for TaskPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} panicked: {}", self.task, self.message)
    }
}

impl std::error::Error for TaskPanic {}

/// Why work was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// The deadline of the group or pipeline passed.
    Deadline,
    /// The cancellation token was cancelled from outside: by a parent
    /// group, by the caller, or by an abort request.
    Token,
}

/// Work was stopped before it finished, and nothing else failed.
///
/// A group or pipeline returns this when it was cancelled from outside
/// (parent token, caller, deadline) and some work did not run to the end:
/// weir never reports success for work that did not happen. For a deadline,
/// `source()` is a [`DeadlineExceeded`], so
/// `is::<DeadlineExceeded>(&err)` answers `true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancelled {
    reason: CancelReason,
    unfinished: u64,
    deadline: Option<DeadlineExceeded>,
}

impl Cancelled {
    pub(crate) fn new(reason: CancelReason, unfinished: u64, after: Option<Duration>) -> Self {
        let deadline = (reason == CancelReason::Deadline).then_some(DeadlineExceeded { after });
        Self { reason, unfinished, deadline }
    }

    /// Why the work was stopped.
    pub fn reason(&self) -> CancelReason {
        self.reason
    }

    /// How many tasks were stopped or never started.
    pub fn unfinished(&self) -> u64 {
        self.unfinished
    }

    /// Whether a deadline caused the stop.
    pub fn is_deadline(&self) -> bool {
        self.reason == CancelReason::Deadline
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            CancelReason::Deadline => "the deadline passed",
            CancelReason::Token => "cancelled",
        };
        write!(f, "{why}: {} task(s) stopped or never started", self.unfinished)
    }
}

impl std::error::Error for Cancelled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.deadline.as_ref().map(|d| d as _)
    }
}

/// The deadline of a group or pipeline passed (Go's
/// `context.DeadlineExceeded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline exceeded{}", after.map(|d| format!(" after {d:?}")).unwrap_or_default())]
pub struct DeadlineExceeded {
    after: Option<Duration>,
}

impl DeadlineExceeded {
    /// The configured timeout, when the deadline was given as one.
    pub fn after(&self) -> Option<Duration> {
        self.after
    }
}

/// One attempt ran past its per-attempt timeout.
///
/// Transient by default: a stage with a retry policy tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attempt timed out after {after:?}")]
pub struct TimedOut {
    after: Duration,
}

impl TimedOut {
    pub(crate) fn new(after: Duration) -> Self {
        Self { after }
    }

    /// The per-attempt timeout that passed.
    pub fn after(&self) -> Duration {
        self.after
    }
}
