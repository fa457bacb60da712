//! What a step gets and what it returns.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::BoxError;

/// Everything a step (or its compensation) knows about its saga.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub(crate) saga_id: Arc<str>,
    pub(crate) step: usize,
    pub(crate) step_name: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) input: Arc<Value>,
    pub(crate) outputs: Arc<Vec<(String, Option<Value>)>>,
}

impl StepContext {
    /// The saga's id.
    pub fn saga_id(&self) -> &str {
        &self.saga_id
    }

    /// The step's position in its saga, from 0.
    pub fn step_index(&self) -> usize {
        self.step
    }

    /// The step's name (`"{name}/undo"` in a compensation).
    pub fn step_name(&self) -> &str {
        &self.step_name
    }

    /// The attempt, from 1 (forward and compensation count separately).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The key to deduplicate this step's effect outside the store:
    /// `"{saga id}/{step name}"`, the same on every attempt and after a
    /// restart, different for the compensation (`…/{step name}/undo`).
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.saga_id, self.step_name)
    }

    /// The saga's input.
    ///
    /// # Errors
    /// A terminal [`StepError`] if the input is not a `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_value((*self.input).clone()).map_err(|e| StepError::terminal(format!("saga input: {e}")))
    }

    /// The output of the earlier step `step`, once it is done.
    ///
    /// # Errors
    /// A terminal [`StepError`] if that step has no output or it is not a
    /// `T`.
    pub fn output<T: DeserializeOwned>(&self, step: &str) -> Result<T, StepError> {
        let value = self
            .outputs
            .iter()
            .find(|(name, _)| name == step)
            .and_then(|(_, output)| output.clone())
            .ok_or_else(|| StepError::terminal(format!("step `{step}` has no output")))?;
        serde_json::from_value(value).map_err(|e| StepError::terminal(format!("output of step `{step}`: {e}")))
    }
}

/// A step failed. Retryable failures are retried by the engine's policy;
/// terminal ones are not.
///
/// `?` turns any error into a retryable `StepError`; use
/// [`StepError::terminal`] for a failure that retrying cannot fix (a card
/// declined, an invalid order).
pub struct StepError {
    retryable: bool,
    source: BoxError,
}

impl StepError {
    /// A failure worth retrying (a timeout, a dependency down).
    pub fn retryable(cause: impl Into<BoxError>) -> Self {
        Self { retryable: true, source: cause.into() }
    }

    /// A failure that retrying cannot fix.
    pub fn terminal(cause: impl Into<BoxError>) -> Self {
        Self { retryable: false, source: cause.into() }
    }

    /// Whether the engine retries it: made retryable, and its cause is
    /// [transient](crate::policy::retry::is_transient) (a panic, a [`Permanent`]
    /// marker or an open circuit inside is not).
    ///
    /// [`Permanent`]: crate::error::Permanent
    pub fn is_retryable(&self) -> bool {
        self.retryable && crate::policy::retry::is_transient(&*self.source)
    }

    /// The cause.
    pub fn into_cause(self) -> BoxError {
        self.source
    }

    /// Whether its last attempt timed out (the step's effect is unknown).
    pub(super) fn timed_out(&self) -> bool {
        crate::error::find::<crate::error::TimedOut>(&*self.source).is_some()
    }

    /// The error a policy stack sees: the cause, marked when terminal.
    pub(super) fn into_box_error(self) -> BoxError {
        if self.retryable { self.source } else { Box::new(Terminal(self.source)) }
    }

    /// Whether a stack's error is a terminal step error (never retried).
    pub(super) fn is_terminal_box_error(error: &BoxError) -> bool {
        error.is::<Terminal>()
    }

    /// Back from a policy stack: a terminal step error, or anything else (a
    /// retryable cause, a panic, a timeout, a policy's refusal) as a
    /// retryable one, which [`is_retryable`](Self::is_retryable) still
    /// judges by its cause.
    pub(super) fn from_box_error(error: BoxError) -> Self {
        match error.downcast::<Terminal>() {
            Ok(terminal) => Self::terminal(terminal.0),
            Err(other) => Self::retryable(other),
        }
    }
}

/// A terminal step error inside a policy stack, with the cause's own
/// message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Terminal(#[source] BoxError);

impl<E: Into<BoxError>> From<E> for StepError {
    fn from(cause: E) -> Self {
        Self::retryable(cause)
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError").field("retryable", &self.retryable).field("source", &self.source).finish()
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}
