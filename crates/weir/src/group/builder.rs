use std::marker::PhantomData;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::core::{Mode, OnCancel, OnPanic, Settings};
use super::{CollectGroup, Group, ScopedGroup};
use crate::error::ConfigError;

/// Configures a [`Group`] or a [`CollectGroup`].
///
/// # Defaults
/// - no concurrency limit;
/// - no deadline;
/// - a fresh cancellation token (no parent);
/// - [`OnPanic::Capture`]: a panic becomes a [`Panicked`](crate::error::Panicked) error;
/// - [`OnCancel::Abort`]: cancellation drops running tasks at their next `.await`;
/// - one worker per tokio runtime thread.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use weir::group::Group;
///
/// let group: Group<anyhow::Error> = Group::builder()
///     .limit(8)
///     .timeout(Duration::from_secs(5))
///     .build()
///     .expect("valid settings");
/// # drop(group);
/// assert!(Group::<anyhow::Error>::builder().limit(0).build().is_err());
/// ```
pub struct GroupBuilder<E> {
    limit: Option<usize>,
    timeout: Option<Duration>,
    parent: Option<CancellationToken>,
    on_panic: OnPanic,
    on_cancel: OnCancel,
    workers: Option<usize>,
    /// One worker per task, tasks handed out one by one (a pipeline's few
    /// long-lived tasks), instead of in blocks.
    spread: bool,
    error: PhantomData<fn() -> E>,
}

impl<E> Default for GroupBuilder<E> {
    fn default() -> Self {
        Self {
            limit: None,
            timeout: None,
            parent: None,
            on_panic: OnPanic::default(),
            on_cancel: OnCancel::default(),
            workers: None,
            spread: false,
            error: PhantomData,
        }
    }
}

impl<E> Clone for GroupBuilder<E> {
    fn clone(&self) -> Self {
        Self { parent: self.parent.clone(), error: PhantomData, ..*self }
    }
}

impl<E> std::fmt::Debug for GroupBuilder<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("limit", &self.limit)
            .field("timeout", &self.timeout)
            .field("has_parent", &self.parent.is_some())
            .field("on_panic", &self.on_panic)
            .field("on_cancel", &self.on_cancel)
            .field("workers", &self.workers)
            .finish()
    }
}

impl<E> GroupBuilder<E> {
    /// At most `limit` tasks run at once; [`Group::spawn`] waits for a free
    /// slot and [`Group::try_spawn`] hands the task back (Go's `SetLimit`).
    /// A limit of 0 is rejected by `build`.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The group is cancelled `timeout` after `build`, with a
    /// [`DeadlineExceeded`](crate::error::DeadlineExceeded) cause (Go's
    /// `context.WithTimeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The group's token becomes a child of `parent`: cancelling the parent
    /// cancels the group, never the other way round. This is how groups
    /// nest.
    pub fn parent(mut self, parent: &CancellationToken) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// What a panicking task does; see [`OnPanic`].
    pub fn on_panic(mut self, on_panic: OnPanic) -> Self {
        self.on_panic = on_panic;
        self
    }

    /// What cancellation does to running tasks; see [`OnCancel`].
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.on_cancel = on_cancel;
        self
    }

    /// How many worker tasks poll the group's tasks. More workers let more
    /// runtime threads run the group's tasks at once; 0 is rejected.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// A worker per task for a group of `tasks` long-lived tasks (a
    /// pipeline's source, stage workers and sink), handed out one by one:
    /// each is then a tokio task of its own that the runtime spreads over
    /// its threads. With blocks of 64 (the default, for spawn speed) they
    /// all sat on one worker, and a pipeline never used a second thread.
    pub(crate) fn worker_per_task(mut self, tasks: usize) -> Self {
        self.workers = Some(tasks.max(1));
        self.spread = true;
        self
    }

    /// A group whose first error cancels the rest.
    ///
    /// # Errors
    /// [`ConfigError`] for a limit or worker count of 0.
    pub fn build(self) -> Result<Group<E>, ConfigError> {
        let (workers, spread) = (self.workers, self.spread);
        self.settings(Mode::FirstError).map(|settings| Group::from_settings(settings, workers, spread))
    }

    /// A group whose tasks may borrow from the caller and run on the
    /// caller's task; see [`ScopedGroup`] for what it trades.
    ///
    /// # Errors
    /// [`ConfigError`] for a limit or worker count of 0.
    pub fn build_scoped<'a>(self) -> Result<ScopedGroup<'a, E>, ConfigError> {
        self.settings(Mode::FirstError).map(ScopedGroup::from_settings)
    }

    /// A group that runs every task to the end and collects every error.
    ///
    /// # Errors
    /// [`ConfigError`] for a limit or worker count of 0.
    pub fn build_collect(self) -> Result<CollectGroup<E>, ConfigError> {
        let (workers, spread) = (self.workers, self.spread);
        self.settings(Mode::CollectAll).map(|settings| CollectGroup(Group::from_settings(settings, workers, spread)))
    }

    fn settings(self, mode: Mode) -> Result<Settings, ConfigError> {
        if self.limit == Some(0) {
            return Err(ConfigError::new(
                "group limit",
                0,
                "a group with no slots would never run a task; use a limit of at least 1, or none",
            ));
        }
        if self.workers == Some(0) {
            return Err(ConfigError::new("group workers", 0, "no worker would poll the tasks; use at least 1"));
        }
        let token = self.parent.as_ref().map(CancellationToken::child_token).unwrap_or_default();
        Ok(Settings {
            token,
            parent: self.parent,
            mode,
            on_panic: self.on_panic,
            on_cancel: self.on_cancel,
            limit: self.limit,
            timeout: self.timeout,
        })
    }
}
