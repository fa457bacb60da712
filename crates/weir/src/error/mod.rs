//! Errors that say where they came from, an aggregate that keeps them all,
//! and helpers that walk `source()` chains.
//!
//! weir passes your error type through unchanged wherever it can. When weir
//! itself has to report something (a panic, a cancellation, an item that
//! failed inside a pipeline stage), it uses one small type per cause, each
//! with [`source`](std::error::Error::source) wired so that [`find`] and
//! [`is`] see through it, like Go's `errors.As` / `errors.Is`.
//!
//! | type | what it says |
//! | --- | --- |
//! | [`StageError`] | an item failed in a pipeline stage: stage, item, tenant, attempt, cause |
//! | [`Errors`] | every error of a run that kept going (Go's `errors.Join`), each with its origin |
//! | [`Panicked`] | code run by weir panicked (a task, an item, a step, a flush); the message, and which task |
//! | [`Cancelled`] | work was stopped before it finished: by a deadline, a parent, or a caller |
//! | [`DeadlineExceeded`] | the deadline of a group or pipeline passed (found inside [`Cancelled`]) |
//! | [`TimedOut`] | one attempt of a stage ran past its per-attempt timeout |
//! | [`Skip`] | not a failure: an item asks to be skipped |
//! | [`Permanent`] | a marker: do not retry this error |
//! | [`ConfigError`] | a builder was given a setting that cannot work |

mod aggregate;
mod chain;
mod interrupt;
mod markers;
mod panic;
mod stage;

pub use aggregate::{Errors, Origin};
pub use chain::{chain, find, is};
pub use interrupt::{CancelReason, Cancelled, DeadlineExceeded, TaskId, TimedOut};
pub use markers::{Permanent, Skip};
pub use panic::Panicked;
pub(crate) use panic::{CatchPanic, catch_panic, guarded};
pub use stage::{ItemRef, StageError};

/// A boxed error that can cross threads: the type-erased error of pipeline
/// stages, as in tower's `BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A builder was given a setting that cannot work.
///
/// The message names the setting and the fix, for example
/// `"group limit is 0: a group with no slots would never run a task; use a limit of at least 1, or no limit"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} is {value}: {fix}")]
pub struct ConfigError {
    setting: &'static str,
    value: String,
    fix: &'static str,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, value: impl std::fmt::Display, fix: &'static str) -> Self {
        Self { setting, value: value.to_string(), fix }
    }

    /// The name of the setting that was rejected, e.g. `"group limit"`.
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}
