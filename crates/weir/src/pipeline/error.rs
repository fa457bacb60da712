use std::fmt;

use super::Report;
use crate::error::{BoxError, Cancelled, ConfigError, Errors, Panicked, StageError};

/// Why a pipeline task stopped the run; the error type of its group.
#[derive(Debug)]
pub(crate) enum Fault {
    Stage(StageError),
    /// The source could not go on (a broker gone for good).
    Source(BoxError),
    Panic(Panicked),
    Cancelled(Cancelled),
}

impl From<Panicked> for Fault {
    fn from(panic: Panicked) -> Self {
        Fault::Panic(panic)
    }
}

/// What a pipeline's [`CancelCause`](crate::group::CancelCause) says of a
/// failed stage.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Stage(error) => write!(f, "{error}"),
            Fault::Source(error) => write!(f, "the source failed: {error}"),
            Fault::Panic(panic) => write!(f, "{panic}"),
            Fault::Cancelled(cancelled) => write!(f, "{cancelled}"),
        }
    }
}

impl From<Cancelled> for Fault {
    fn from(cancelled: Cancelled) -> Self {
        Fault::Cancelled(cancelled)
    }
}

#[derive(Debug)]
enum Kind {
    Config(ConfigError),
    Stage(StageError),
    Collected(Errors<StageError>),
    Source(BoxError),
    Sink(BoxError),
    Panic(Panicked),
    Cancelled(Cancelled),
}

/// A pipeline run failed. Says why, keeps the cause as `source()`, and
/// carries the run's [`Report`] so the counts of what did succeed are not
/// lost.
///
/// - [`stage_error`](Self::stage_error): an item failed in a stage under
///   [`OnError::Fail`](super::OnError::Fail) (the first such failure).
/// - [`collected`](Self::collected): items failed under
///   [`OnError::Collect`](super::OnError::Collect); the run went on, and
///   every failure is here.
/// - [`is_cancelled`](Self::is_cancelled) /
///   [`is_deadline`](Self::is_deadline): the run was aborted or passed its
///   deadline ([`is`](crate::error::is)`::<DeadlineExceeded>` answers too).
/// - [`source_error`](Self::source_error): a fallible source (one with
///   receipts, a broker) failed for good.
/// - [`config_error`](Self::config_error): a setting was invalid; nothing ran.
/// - a panic outside a stage function (in a source iterator or the sink),
///   or an error returned by the sink.
#[derive(Debug)]
pub struct PipelineError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: Kind,
    report: Report,
}

impl PipelineError {
    pub(crate) fn from_fault(fault: Fault, report: Report) -> Self {
        let kind = match fault {
            Fault::Stage(e) => Kind::Stage(e),
            Fault::Source(e) => Kind::Source(e),
            Fault::Panic(p) => Kind::Panic(p),
            Fault::Cancelled(c) => Kind::Cancelled(c),
        };
        Self(Box::new(Inner { kind, report }))
    }

    pub(crate) fn config(error: ConfigError) -> Self {
        Self(Box::new(Inner { kind: Kind::Config(error), report: Report::default() }))
    }

    pub(crate) fn sink(error: BoxError, report: Report) -> Self {
        Self(Box::new(Inner { kind: Kind::Sink(error), report }))
    }

    pub(crate) fn from_collected(errors: Errors<StageError>, report: Report) -> Self {
        Self(Box::new(Inner { kind: Kind::Collected(errors), report }))
    }

    /// What the run did before it failed.
    pub fn report(&self) -> &Report {
        &self.0.report
    }

    /// The stage failure that stopped the run, if that is what happened.
    pub fn stage_error(&self) -> Option<&StageError> {
        match &self.0.kind {
            Kind::Stage(e) => Some(e),
            _ => None,
        }
    }

    /// The source's own error, if the source failed for good.
    pub fn source_error(&self) -> Option<&BoxError> {
        match &self.0.kind {
            Kind::Source(e) => Some(e),
            _ => None,
        }
    }

    /// Every item failure of a run whose stages collect errors.
    pub fn collected(&self) -> Option<&Errors<StageError>> {
        match &self.0.kind {
            Kind::Collected(all) => Some(all),
            _ => None,
        }
    }

    /// The invalid setting, if the run could not start.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.0.kind {
            Kind::Config(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the run was stopped from outside (abort, parent, deadline).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.0.kind, Kind::Cancelled(_))
    }

    /// Whether the run's deadline passed.
    pub fn is_deadline(&self) -> bool {
        matches!(&self.0.kind, Kind::Cancelled(c) if c.is_deadline())
    }

    fn cause(&self) -> &(dyn std::error::Error + 'static) {
        match &self.0.kind {
            Kind::Config(e) => e,
            Kind::Stage(e) => e,
            Kind::Collected(all) => all,
            Kind::Source(e) | Kind::Sink(e) => &**e,
            Kind::Panic(p) => p,
            Kind::Cancelled(c) => c,
        }
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.kind {
            Kind::Config(e) => write!(f, "pipeline not started: {e}"),
            Kind::Stage(e) => write!(f, "pipeline failed: {e}"),
            Kind::Collected(all) => write!(f, "pipeline finished with {all}"),
            Kind::Source(e) => write!(f, "pipeline failed in the source: {e}"),
            Kind::Sink(e) => write!(f, "pipeline failed in the sink: {e}"),
            Kind::Panic(p) => write!(f, "pipeline failed: {p}"),
            Kind::Cancelled(c) => {
                let why = if c.is_deadline() { "the deadline passed" } else { "cancelled" };
                let (taken, delivered) = (self.0.report.source_emitted, self.0.report.sink_received);
                write!(f, "pipeline stopped: {why}; {delivered} of the {taken} item(s) taken reached the sink")
            }
        }
    }
}

impl std::error::Error for PipelineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause())
    }
}
