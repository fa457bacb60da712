use std::fmt;
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
    pub(crate) fn new(after: Option<Duration>) -> Self {
        Self { after }
    }

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
