//! Running a pipeline: the terminal methods, the stream of its output, and
//! the handle that drains or aborts it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::BoxStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::Fault;
use super::{Fate, Pipeline, PipelineError, Report, Setup};
use crate::error::BoxError;
use crate::group::cause::CauseCell;
use crate::group::{CancelCause, Cancellation, Group};

/// Drains or aborts a running pipeline from elsewhere (a signal handler,
/// another task), and tells why it stopped. Cloneable; get one with
/// [`Pipeline::control`].
#[derive(Debug, Clone)]
pub struct Control {
    abort: CancellationToken,
    drain: CancellationToken,
    /// Why `abort` was cancelled: by [`abort`](Self::abort) or the parent.
    aborted: Arc<CauseCell>,
    /// The running group's cancellation, once the run started.
    group: Arc<OnceLock<Cancellation>>,
}

impl Control {
    pub(crate) fn new(parent: Option<&CancellationToken>) -> Self {
        let abort = parent.map(CancellationToken::child_token).unwrap_or_default();
        Self {
            aborted: CauseCell::new(abort.clone(), parent.cloned()),
            abort,
            drain: CancellationToken::new(),
            group: Arc::default(),
        }
    }

    /// Why the run was cancelled; `None` while it runs (a drain is not a
    /// cancellation: the run ends normally).
    ///
    /// - [`CancelCause::Failed`]: a stage failed (under
    ///   [`OnError::Fail`](super::OnError::Fail)) or panicked; the task is
    ///   the stage's worker.
    /// - [`CancelCause::Deadline`]: the pipeline's timeout passed.
    /// - [`CancelCause::Requested`]: [`abort`](Self::abort) (or
    ///   [`abort_with`](Self::abort_with) and its reason).
    /// - [`CancelCause::Parent`]: the parent token was cancelled.
    /// - [`CancelCause::Finished`]: the run ended.
    pub fn cause(&self) -> Option<CancelCause> {
        match self.group.get().and_then(Cancellation::cause) {
            // The group's parent is this control's abort token: say why
            // that one was cancelled.
            Some(CancelCause::Parent) | None if self.abort.is_cancelled() => self.aborted.get(),
            cause => cause,
        }
    }

    pub(crate) fn drain_token(&self) -> CancellationToken {
        self.drain.clone()
    }

    /// Graceful drain: the source stops taking items; every item already
    /// taken goes through to the sink. The run then ends normally, with
    /// [`Report::drained`] set.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Abort: every task stops at its next `.await`; the run returns a
    /// cancelled [`PipelineError`].
    pub fn abort(&self) {
        self.aborted.record(CancelCause::Requested { reason: None });
        self.abort.cancel();
    }

    /// Like [`abort`](Self::abort), with a reason [`cause`](Self::cause)
    /// reports.
    pub fn abort_with(&self, reason: impl Into<String>) {
        self.aborted.record(CancelCause::Requested { reason: Some(Arc::from(reason.into())) });
        self.abort.cancel();
    }
}

/// A running pipeline's parts that outlive the builder.
struct Running {
    group: Group<Fault>,
    setup: Setup,
    started: Instant,
}

impl Setup {
    fn launch(mut self) -> Result<Running, PipelineError> {
        if let Some(error) = self.config_error.take() {
            return Err(PipelineError::config(error));
        }
        let mut builder = Group::builder().parent(&self.control.abort).worker_per_task(self.launches.len());
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        let group = builder.build().expect("a pipeline's group settings are valid");
        let _ = self.control.group.set(group.cancellation());
        for launch in std::mem::take(&mut self.launches) {
            launch(&group);
        }
        Ok(Running { group, setup: self, started: Instant::now() })
    }

    fn report(&self, sink_received: u64, elapsed: std::time::Duration) -> Report {
        Report {
            source_emitted: self.source_emitted.load(Ordering::Acquire),
            stages: self.stages.iter().map(|(name, workers, c)| c.report(name.clone(), *workers)).collect(),
            sink_received,
            drained: self.control.drain.is_cancelled(),
            elapsed,
        }
    }
}

impl Running {
    /// Waits for every task, then gives the run's result.
    async fn finish(self, sink: Result<(), BoxError>, sink_received: u64) -> Result<Report, PipelineError> {
        if sink.is_err() {
            self.group.cancel();
        }
        let waited = self.group.wait().await;
        if let Some(settler) = &self.setup.settler {
            let abandoned = settler.abandon_all().await;
            if abandoned > 0 {
                tracing::warn!(abandoned, "the run ended before some items did; their source will deliver them again");
            }
        }
        let report = self.setup.report(sink_received, self.started.elapsed());
        if let Err(Fault::Cancelled(cancelled)) = &waited {
            tracing::warn!(%cancelled, sink_received, "pipeline cancelled");
        }
        match (sink, waited) {
            (Err(error), _) => Err(PipelineError::sink(error, report)),
            (Ok(()), Err(fault)) => Err(PipelineError::from_fault(fault, report)),
            (Ok(()), Ok(())) => {
                let collected = std::mem::take(&mut *self.setup.collected.lock().unwrap_or_else(|p| p.into_inner()));
                if collected.is_empty() { Ok(report) } else { Err(PipelineError::from_collected(collected, report)) }
            }
        }
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Runs the pipeline, handing each output item to `sink` in turn, and
    /// returns the report.
    ///
    /// # Errors
    /// [`PipelineError`]: a stage failure, the collected failures, a
    /// cancellation or deadline, or the sink's own error (which stops the
    /// run). The error carries the report.
    ///
    /// # Cancel safety
    /// Dropping this future aborts the run: every task is dropped.
    pub async fn for_each<F, Fut, E>(self, mut sink: F) -> Result<Report, PipelineError>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
    {
        let Pipeline { setup, mut output } = self;
        let settler = setup.settler.clone();
        let running = setup.launch()?;
        let mut received = 0u64;
        let consumed: Result<(), BoxError> = async {
            while let Some(chunk) = output.recv().await {
                for (index, item) in chunk.items {
                    received += 1;
                    sink(item).await.map_err(Into::into)?;
                    if let Some(settler) = &settler {
                        settler.settle(index, Fate::Delivered).await;
                    }
                }
            }
            Ok(())
        }
        .await;
        drop(output);
        running.finish(consumed, received).await
    }

    /// Runs the pipeline and collects its output, in arrival order (input
    /// order if every stage with several workers is ordered).
    ///
    /// # Errors
    /// As [`for_each`](Self::for_each).
    ///
    /// # Cancel safety
    /// Dropping this future aborts the run.
    pub async fn collect(self) -> Result<(Vec<T>, Report), PipelineError> {
        let mut all = Vec::new();
        let report = self
            .for_each(|item| {
                all.push(item);
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            })
            .await?;
        Ok((all, report))
    }

    /// Runs the pipeline, folding its output into one value.
    ///
    /// # Errors
    /// As [`for_each`](Self::for_each).
    ///
    /// # Cancel safety
    /// Dropping this future aborts the run.
    pub async fn fold<A>(self, init: A, mut f: impl FnMut(A, T) -> A) -> Result<(A, Report), PipelineError> {
        let mut acc = Some(init);
        let report = self
            .for_each(|item| {
                acc = acc.take().map(|a| f(a, item));
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            })
            .await?;
        Ok((acc.expect("the accumulator is always put back"), report))
    }

    /// Runs the pipeline and returns its output as a [`Stream`], to compose
    /// with the futures ecosystem. Call [`PipelineStream::finish`] at the
    /// end for the report or the error.
    ///
    /// # Errors
    /// A [`PipelineError`] right away for an invalid setting.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn into_stream(self) -> Result<PipelineStream<T>, PipelineError> {
        let Pipeline { setup, output } = self;
        let settler = setup.settler.clone();
        let running = setup.launch()?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let items =
            futures_util::stream::unfold((output, Vec::new().into_iter()), move |(mut output, mut buffered)| {
                let counter = Arc::clone(&counter);
                let settler = settler.clone();
                async move {
                    loop {
                        if let Some((index, item)) = buffered.next() {
                            counter.fetch_add(1, Ordering::Relaxed);
                            if let Some(settler) = &settler {
                                settler.settle(index, Fate::Delivered).await;
                            }
                            return Some((item, (output, buffered)));
                        }
                        buffered = output.recv().await?.items.into_iter();
                    }
                }
            });
        Ok(PipelineStream { items: Some(Box::pin(items)), ended: false, running: Some(running), received })
    }
}

/// A running pipeline's output as a [`Stream`]; see
/// [`Pipeline::into_stream`].
pub struct PipelineStream<T> {
    items: Option<BoxStream<'static, T>>,
    ended: bool,
    running: Option<Running>,
    received: Arc<AtomicU64>,
}

impl<T> std::fmt::Debug for PipelineStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineStream").field("ended", &self.ended).finish_non_exhaustive()
    }
}

impl<T> Stream for PipelineStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Some(items) = self.items.as_mut() else { return Poll::Ready(None) };
        let next = items.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.ended = true;
        }
        next
    }
}

impl<T> PipelineStream<T> {
    /// Ends the run and returns its report. If the stream was not read to
    /// its end, the run is aborted first and the result is a cancelled
    /// error: items left unread are reported, never silently dropped.
    ///
    /// # Errors
    /// As [`Pipeline::for_each`].
    ///
    /// # Cancel safety
    /// Dropping this future aborts what is left of the run.
    pub async fn finish(mut self) -> Result<Report, PipelineError> {
        let running = self.running.take().expect("finish is called once");
        if !self.ended {
            running.group.cancel();
        }
        self.items = None;
        running.finish(Ok(()), self.received.load(Ordering::Acquire)).await
    }
}
