use std::fmt;

use crate::durable::store::{SagaStatus, StoreError};
use crate::error::{BoxError, Errors};

#[derive(Debug)]
enum Kind {
    /// A step failed; every completed step was compensated.
    Compensated { step: String, cause: BoxError },
    /// A step failed and some compensations failed too.
    Failed { step: String, cause: BoxError, compensations: Errors<BoxError> },
    /// The store failed, or another worker took the saga over.
    Store(StoreError),
    /// No definition of that name is registered.
    UnknownDefinition(String),
    /// A saga with that id exists with another input (or definition).
    InputConflict { stored: Box<serde_json::Value>, stored_definition: String, requested: String },
    /// The saga sleeps, or waits for an event or a child saga, in `step`
    /// until `until` (ms since the epoch); no worker holds it meanwhile.
    Suspended { step: String, until: i64, event: Option<String>, child: Option<String> },
}

/// The cause of a step whose child saga
/// ([`SagaDefinitionBuilder::child`](super::SagaDefinitionBuilder::child))
/// did not complete: it was rolled back (`status` compensated), or a
/// compensation of it failed too (`status` failed: it waits for a person,
/// as any failed saga).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("child saga `{child}` {}: {error}", if *.status == SagaStatus::Failed { "failed, a compensation of it too" } else { "was rolled back" })]
pub struct ChildSagaFailed {
    /// The child's id.
    pub child: String,
    /// How it ended: compensated or failed.
    pub status: SagaStatus,
    /// Its error, as stored.
    pub error: String,
}

/// The cause of a step that waited for an event in vain
/// ([`SagaDefinitionBuilder::wait_event`](super::SagaDefinitionBuilder::wait_event)
/// with [`OnTimeout::Compensate`](super::OnTimeout::Compensate)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no event `{event}` arrived within {}", humantime::format_duration(*.waited))]
pub struct EventTimedOut {
    /// The event waited for.
    pub event: String,
    /// How long the step waited.
    pub waited: std::time::Duration,
}

/// The cause of a saga rolled back because it was cancelled
/// ([`SagaEngine::cancel`](super::SagaEngine::cancel),
/// [`Store::request_cancel`](crate::durable::store::Store::request_cancel)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cancelled: {reason}")]
pub struct SagaCancelled {
    /// Why, as the request said.
    pub reason: String,
}

/// A saga did not complete. Says which saga, why, and what was undone.
///
/// - [`is_compensated`](Self::is_compensated): a step failed and every
///   completed step was undone; [`cause`](Self::cause) is the step's error.
/// - [`is_failed`](Self::is_failed): some compensations failed too; they
///   are in [`compensation_errors`](Self::compensation_errors), next to the
///   original cause. The saga is left `failed` for a person to look at.
#[derive(Debug)]
pub struct SagaError {
    saga: String,
    kind: Kind,
}

impl SagaError {
    pub(crate) fn compensated(saga: &str, step: &str, cause: BoxError) -> Self {
        Self { saga: saga.to_owned(), kind: Kind::Compensated { step: step.to_owned(), cause } }
    }

    pub(crate) fn failed(saga: &str, step: &str, cause: BoxError, compensations: Errors<BoxError>) -> Self {
        Self { saga: saga.to_owned(), kind: Kind::Failed { step: step.to_owned(), cause, compensations } }
    }

    pub(crate) fn store(saga: &str, error: StoreError) -> Self {
        Self { saga: saga.to_owned(), kind: Kind::Store(error) }
    }

    pub(crate) fn for_unknown_definition(saga: &str, definition: &str) -> Self {
        Self { saga: saga.to_owned(), kind: Kind::UnknownDefinition(definition.to_owned()) }
    }

    /// Saga `saga` started as `stored` (definition, input); a request
    /// asked for `requested`.
    pub(crate) fn input_conflict(
        saga: &str,
        (stored_definition, stored): (&str, &serde_json::Value),
        (definition, input): (&str, &serde_json::Value),
    ) -> Self {
        let requested = format!("{definition} {}", clip(&input.to_string()));
        let kind = Kind::InputConflict {
            stored: Box::new(stored.clone()),
            stored_definition: stored_definition.to_owned(),
            requested,
        };
        Self { saga: saga.to_owned(), kind }
    }

    /// Saga `saga` parked in `step` (its record says until when and what
    /// it waits for).
    pub(crate) fn suspended(saga: &str, step: &crate::durable::store::StepRecord) -> Self {
        let (event, child) = (step.event.clone(), step.child.clone());
        let kind = Kind::Suspended { step: step.name.clone(), until: step.wake_at.unwrap_or_default(), event, child };
        Self { saga: saga.to_owned(), kind }
    }

    /// When the saga goes on, if it is not over but sleeps or waits for an
    /// event ([`SagaDefinitionBuilder::sleep`](super::SagaDefinitionBuilder::sleep),
    /// [`wait_event`](super::SagaDefinitionBuilder::wait_event)): it holds
    /// no worker and no lease meanwhile, and whichever worker is alive
    /// then (or when the event arrives) carries it on. Not a failure:
    /// nothing was rolled back.
    pub fn suspended_until(&self) -> Option<std::time::SystemTime> {
        match self.kind {
            Kind::Suspended { until, .. } => {
                Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(until).unwrap_or(0)))
            }
            _ => None,
        }
    }

    /// Whether the saga sleeps or waits for an event (see
    /// [`suspended_until`](Self::suspended_until)).
    pub fn is_suspended(&self) -> bool {
        matches!(self.kind, Kind::Suspended { .. })
    }

    /// Whether the saga was rolled back because it was cancelled (then
    /// [`cause`](Self::cause) is a [`SagaCancelled`] with the reason).
    pub fn is_cancelled(&self) -> bool {
        self.cause().is_some_and(|cause| cause.is::<SagaCancelled>())
    }

    /// The stored input, when [`run_with_id`](super::SagaEngine::run_with_id)
    /// found saga `id` started with another input: a second request with
    /// the same id and other content, never merged into the first. Nothing
    /// was run.
    pub fn conflicting_input(&self) -> Option<&serde_json::Value> {
        match &self.kind {
            Kind::InputConflict { stored, .. } => Some(stored),
            _ => None,
        }
    }

    /// The saga's id.
    pub fn saga_id(&self) -> &str {
        &self.saga
    }

    /// The status the saga was left in, if it ended.
    pub fn status(&self) -> Option<SagaStatus> {
        match self.kind {
            Kind::Compensated { .. } => Some(SagaStatus::Compensated),
            Kind::Failed { .. } => Some(SagaStatus::Failed),
            _ => None,
        }
    }

    /// Whether every completed step was undone.
    pub fn is_compensated(&self) -> bool {
        matches!(self.kind, Kind::Compensated { .. })
    }

    /// Whether some compensation failed.
    pub fn is_failed(&self) -> bool {
        matches!(self.kind, Kind::Failed { .. })
    }

    /// Whether another worker took the saga over (its lease expired).
    pub fn is_lease_lost(&self) -> bool {
        matches!(self.kind, Kind::Store(StoreError::LeaseLost { .. }))
    }

    /// The definition name, when the saga's definition is not registered.
    pub fn unknown_definition(&self) -> Option<&str> {
        match &self.kind {
            Kind::UnknownDefinition(name) => Some(name),
            _ => None,
        }
    }

    /// The step that failed.
    pub fn failed_step(&self) -> Option<&str> {
        match &self.kind {
            Kind::Compensated { step, .. } | Kind::Failed { step, .. } => Some(step),
            _ => None,
        }
    }

    /// The failed step's error.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.kind {
            Kind::Compensated { cause, .. } | Kind::Failed { cause, .. } => Some(&**cause),
            _ => None,
        }
    }

    /// The compensations that failed, each tagged with its step.
    pub fn compensation_errors(&self) -> Option<&Errors<BoxError>> {
        match &self.kind {
            Kind::Failed { compensations, .. } => Some(compensations),
            _ => None,
        }
    }
}

impl fmt::Display for SagaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Compensated { step, cause } if step.is_empty() => {
                write!(f, "saga {} rolled back: {cause}", self.saga)
            }
            Kind::Compensated { step, cause } => {
                write!(f, "saga {} rolled back: step `{step}` failed: {cause}", self.saga)
            }
            Kind::Failed { step, cause, compensations } => write!(
                f,
                "saga {} failed: {}{cause}; and {} compensation(s) failed: {}",
                self.saga,
                if step.is_empty() { String::new() } else { format!("step `{step}` failed: ") },
                compensations.len(),
                compensations.errors().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ),
            Kind::Store(e) => write!(f, "saga {}: {e}", self.saga),
            Kind::UnknownDefinition(name) => write!(
                f,
                "saga {} uses definition `{name}`, which is not registered; it is kept as it is: register the definition and resume",
                self.saga
            ),
            Kind::InputConflict { stored, stored_definition, requested } => write!(
                f,
                "saga {} exists as {stored_definition} {}; this request asked for {requested}: an id is started once, with one input (use a new id for other content)",
                self.saga,
                clip(&stored.to_string())
            ),
            Kind::Suspended { step, until, event, child } => {
                let at = humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(*until).unwrap_or(0)),
                );
                match (event, child) {
                    (_, Some(child)) => write!(
                        f,
                        "saga {} waits in step `{step}` for child saga `{child}` to end (woken by its end; looks again at {at})",
                        self.saga
                    )?,
                    (Some(event), None) => {
                        write!(f, "saga {} waits in step `{step}` for event `{event}` until {at}", self.saga)?
                    }
                    (None, None) => write!(f, "saga {} sleeps in step `{step}` until {at}", self.saga)?,
                }
                f.write_str("; it holds no worker meanwhile, and the first worker alive then carries it on")
            }
        }
    }
}

impl std::error::Error for SagaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::Compensated { cause, .. } | Kind::Failed { cause, .. } => Some(&**cause),
            Kind::Store(e) => Some(e),
            Kind::UnknownDefinition(_) | Kind::InputConflict { .. } | Kind::Suspended { .. } => None,
        }
    }
}

/// An input shown in an error: at most 200 characters.
fn clip(json: &str) -> String {
    match json.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &json[..at]),
        None => json.to_owned(),
    }
}
