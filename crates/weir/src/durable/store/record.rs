//! What the store keeps about a saga.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a saga instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Running its steps forward.
    Running,
    /// A step failed; undoing the completed steps in reverse.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed and every completed step was undone.
    Compensated,
    /// A step failed and at least one compensation failed too: needs a
    /// person. Nothing more runs on its own.
    Failed,
}

impl SagaStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "running",
            SagaStatus::Compensating => "compensating",
            SagaStatus::Completed => "completed",
            SagaStatus::Compensated => "compensated",
            SagaStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => SagaStatus::Running,
            "compensating" => SagaStatus::Compensating,
            "completed" => SagaStatus::Completed,
            "compensated" => SagaStatus::Compensated,
            "failed" => SagaStatus::Failed,
            _ => return None,
        })
    }

    /// Whether the saga still has work to do (a runner resumes it).
    pub fn is_active(self) -> bool {
        matches!(self, SagaStatus::Running | SagaStatus::Compensating)
    }
}

impl std::fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one step of a saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not run to success yet.
    Pending,
    /// Ran forward successfully; its output is kept.
    Done,
    /// Failed forward (the saga then compensates).
    Failed,
    /// Undone by its compensation.
    Compensated,
    /// Its compensation failed after its retries.
    CompensationFailed,
    /// Running when the saga was cancelled (or possibly running: its
    /// worker was gone): its effect may have happened, so it is
    /// compensated like a done step.
    Interrupted,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name.
    pub name: String,
    /// Where it stands.
    pub status: StepStatus,
    /// Its output when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Forward attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// Compensation attempts made.
    #[serde(default)]
    pub compensation_attempts: u32,
    /// Its last error (forward or compensation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a step that sleeps or waits for an event: when it wakes (or
    /// gives up waiting), ms since the epoch, fixed when the saga first
    /// reached it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<i64>,
    /// For a step that waits for an event: the event's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// For a step that runs a child saga: the child's id, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
}

impl StepRecord {
    /// Whether a saga rolling back must undo this step: it is done, or
    /// was interrupted with its effect unknown.
    pub fn needs_compensation(&self) -> bool {
        matches!(self.status, StepStatus::Done | StepStatus::Interrupted)
    }

    pub(crate) fn pending(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            status: StepStatus::Pending,
            output: None,
            attempts: 0,
            compensation_attempts: 0,
            error: None,
            wake_at: None,
            event: None,
            child: None,
        }
    }
}

/// A saga instance as stored: everything needed to resume it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SagaRecord {
    /// Its id.
    pub id: String,
    /// The name of its definition.
    pub definition: String,
    /// Its input, as JSON.
    pub input: Value,
    /// Where it stands.
    pub status: SagaStatus,
    /// Per step, in order.
    pub steps: Vec<StepRecord>,
    /// Why it failed, once a step failed.
    pub error: Option<String>,
    /// The fencing token of the claim that owns it.
    pub fence: i64,
    /// The worker holding its lease.
    pub lease_owner: Option<String>,
    /// Until when (ms since the epoch).
    pub lease_until: Option<i64>,
    /// Why it was asked to be cancelled, once it was
    /// ([`SagaEngine::cancel`](crate::durable::saga::SagaEngine::cancel)).
    pub cancel_requested: Option<String>,
    /// When it is cancelled if it has not ended (ms since the epoch).
    pub deadline_at: Option<i64>,
    /// The saga whose step started it, for a child saga
    /// ([`SagaDefinitionBuilder::child`](crate::durable::saga::SagaDefinitionBuilder::child)).
    pub parent: Option<String>,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// When it was last written (ms since the epoch).
    pub updated_at: i64,
}

/// A change to a saga, written by the group committer.
#[derive(Debug, Clone)]
pub(crate) enum SagaWrite {
    /// A new saga.
    Insert(Box<SagaRecord>),
    /// A new state for a saga this worker holds with `fence`. An update to
    /// `Running` is of a saga that is running already: no write takes a
    /// saga back to running (SQLite's batch leaves the status unwritten
    /// then, and refuses the write if the row is not running).
    Update { id: String, fence: i64, status: SagaStatus, steps_json: String, error: Option<String> },
    /// A cursor's new position (JSON), saved at `at` (ms). It rides in the
    /// group commit so that, on SQLite, it never waits for the write lock
    /// behind a stream of saga commits (it could wait there for seconds).
    Cursor { name: String, position: String, at: i64 },
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
