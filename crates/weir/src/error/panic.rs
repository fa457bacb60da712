//! Panics made errors: the one place weir catches a panic.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::CatchUnwind;

use super::TaskId;

/// Code run by weir panicked; weir caught the panic and made it this error.
///
/// The same type wherever the panic happened: a group's task (then
/// [`task`](Self::task) says which), a pipeline stage's function on an item
/// (found inside the item's [`StageError`](super::StageError), which names
/// the stage and the item), a saga step or compensation (inside the
/// [`SagaError`](crate::durable::saga::SagaError)), a batch flush. It keeps the
/// panic's message (when the payload was a string, as with `panic!("…")`)
/// and the payload itself: [`resume`](Self::resume) re-raises it.
///
/// A panic is a bug, not a blip: retry policies, breakers and sagas treat
/// it as permanent (see [`is_transient`](crate::policy::retry::is_transient)).
pub struct Panicked {
    task: Option<TaskId>,
    message: String,
    // Mutex only to make the error `Sync` (the payload is `Send` only), so
    // it fits in `Box<dyn Error + Send + Sync>` and `anyhow::Error`.
    payload: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Panicked {
    /// A panic of a group's task.
    pub(crate) fn in_task(task: TaskId, payload: Box<dyn Any + Send>) -> Self {
        Self { task: Some(task), ..Self::new(payload) }
    }

    /// A panic of a call on an item, a step or a batch.
    pub(crate) fn new(payload: Box<dyn Any + Send>) -> Self {
        let message = panic_message(&*payload);
        Self { task: None, message, payload: Mutex::new(Some(payload)) }
    }

    /// The group task that panicked; `None` for a call on an item, a saga
    /// step or a batch (the error around this one names it).
    pub fn task(&self) -> Option<&TaskId> {
        self.task.as_ref()
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

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

impl fmt::Debug for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panicked").field("task", &self.task).field("message", &self.message).finish()
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.task {
            Some(task) => write!(f, "{task} panicked: {}", self.message),
            None => write!(f, "panicked: {}", self.message),
        }
    }
}

impl std::error::Error for Panicked {}

pin_project_lite::pin_project! {
    /// A future whose panics come out as `Err(payload)`; see [`catch_panic`].
    pub(crate) struct CatchPanic<F> {
        #[pin]
        inner: CatchUnwind<AssertUnwindSafe<F>>,
    }
}

/// Polls `future`, turning a panic inside it into `Err(payload)`.
///
/// `AssertUnwindSafe`: a panicking future's state is dropped, never
/// observed again; what it shared with others is the caller's choice, as
/// with `std::thread::spawn`. To catch a panic of the call that makes the
/// future as well, make the call inside it: `catch_panic(async move {
/// f().await })`.
pub(crate) fn catch_panic<F: Future>(future: F) -> CatchPanic<F> {
    CatchPanic { inner: AssertUnwindSafe(future).catch_unwind() }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// Awaits `call`, a panic in it becoming a [`Panicked`] error.
///
/// Not an `async fn`: a policy stack wraps every call in it, and each
/// `async` level costs a poll and a drop.
pub(crate) fn guarded<T, Fut>(call: Fut) -> impl Future<Output = Result<T, super::BoxError>>
where
    Fut: Future<Output = Result<T, super::BoxError>>,
{
    catch_panic(call).map(|caught| caught.unwrap_or_else(|payload| Err(Box::new(Panicked::new(payload)))))
}
