//! Why a group was cancelled (Go's `context.Cause`): [`CancelCause`], which
//! tasks read through a [`Cancellation`].

use std::fmt;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::error::{DeadlineExceeded, TaskId};

/// Why a group (or the pipeline running on it) was cancelled.
///
/// The first cause wins: a deadline that passes after a task failed leaves
/// the cause [`Failed`](Self::Failed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelCause {
    /// A task failed or panicked: the group's first error, as its task and
    /// its message. The error itself comes back from `wait`; the cause is
    /// what the other tasks can read meanwhile.
    Failed {
        /// The task that failed.
        task: TaskId,
        /// The error's message (its `Display`; with `anyhow`, the
        /// alternate form, so the whole chain).
        message: Arc<str>,
    },
    /// The group's deadline passed.
    Deadline(DeadlineExceeded),
    /// The parent token was cancelled.
    Parent,
    /// The group was cancelled by hand: `cancel`, `cancel_with` (with its
    /// reason), or its token's `cancel`.
    Requested {
        /// The reason given to `cancel_with`.
        reason: Option<Arc<str>>,
    },
    /// `wait` returned: the group's work is over, and its token is
    /// cancelled so that helpers tied to it stop (as Go's errgroup does).
    Finished,
}

impl fmt::Display for CancelCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed { task, message } => write!(f, "{task} failed: {message}"),
            Self::Deadline(deadline) => write!(f, "{deadline}"),
            Self::Parent => f.write_str("the parent was cancelled"),
            Self::Requested { reason: Some(reason) } => write!(f, "cancelled: {reason}"),
            Self::Requested { reason: None } => f.write_str("cancelled"),
            Self::Finished => f.write_str("the group finished"),
        }
    }
}

/// A group's cancellation as its tasks see it: the token to watch and, once
/// it is cancelled, why. Cheap to clone and `'static`, so a task takes its
/// own; get one with [`Group::cancellation`](super::Group::cancellation).
///
/// # Examples
/// ```
/// use weir::group::{CancelCause, Group};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let group: Group<anyhow::Error> = Group::new();
/// let cancellation = group.cancellation();
/// group.spawn(async move {
///     let cause = cancellation.cancelled().await;
///     assert!(matches!(cause, CancelCause::Failed { .. }), "{cause}");
///     Ok(())
/// }).await;
/// group.spawn(async { anyhow::bail!("disk full") }).await;
/// assert_eq!(group.wait().await.unwrap_err().to_string(), "disk full");
/// # }
/// ```
#[derive(Clone)]
pub struct Cancellation {
    cell: Arc<CauseCell>,
}

impl fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancellation").field("cause", &self.cause()).finish()
    }
}

impl Cancellation {
    /// The group's token.
    pub fn token(&self) -> &CancellationToken {
        &self.cell.token
    }

    /// Whether the group was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cell.token.is_cancelled()
    }

    /// Why the group was cancelled; `None` while it is not.
    pub fn cause(&self) -> Option<CancelCause> {
        self.cell.get()
    }

    /// Waits until the group is cancelled and tells why.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn cancelled(&self) -> CancelCause {
        self.cell.token.cancelled().await;
        self.cell.get().expect("a cancelled token has a cause")
    }
}

/// The token and the cause, shared by a group and every [`Cancellation`].
pub(crate) struct CauseCell {
    token: CancellationToken,
    parent: Option<CancellationToken>,
    cause: OnceLock<CancelCause>,
}

impl fmt::Debug for CauseCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CauseCell").field("cause", &self.get()).finish_non_exhaustive()
    }
}

impl CauseCell {
    pub(crate) fn new(token: CancellationToken, parent: Option<CancellationToken>) -> Arc<Self> {
        Arc::new(Self { token, parent, cause: OnceLock::new() })
    }

    pub(crate) fn handle(self: &Arc<Self>) -> Cancellation {
        Cancellation { cell: Arc::clone(self) }
    }

    /// Records `cause` unless one was recorded first. Call before
    /// cancelling the token, so that whoever sees the token cancelled reads
    /// this cause.
    pub(crate) fn record(&self, cause: CancelCause) {
        let _ = self.cause.set(cause);
    }

    /// The cause recorded, or the one the token tells: a token cancelled
    /// without a recorded cause was cancelled by its parent or by hand.
    pub(crate) fn get(&self) -> Option<CancelCause> {
        if let Some(cause) = self.cause.get() {
            return Some(cause.clone());
        }
        self.token.is_cancelled().then(|| self.outside())
    }

    /// The cause of a cancellation that came from outside the group.
    pub(crate) fn outside(&self) -> CancelCause {
        if self.parent.as_ref().is_some_and(CancellationToken::is_cancelled) {
            CancelCause::Parent
        } else {
            CancelCause::Requested { reason: None }
        }
    }
}
