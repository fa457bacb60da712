//! One worker of a stage: takes chunks, runs the stage's function on each
//! item under its policy, sends the results on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::future::Either;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::error::Fault;
use super::link::{Chunk, ChunkSize, Indexed, Input};
use super::report::{Counters, Tally};
use super::stage::{DeadLetter, Isolation, OnError, Policy, Stage, StageFn};
use crate::error::{BoxError, Errors, Origin, Panicked, Skip, StageError, catch_panic, is};
use crate::retry::is_transient;

/// What every worker of one stage shares.
pub(crate) struct StageShared<T, S> {
    pub(crate) stage: Stage<T, S>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) collected: Arc<Mutex<Errors<StageError>>>,
    /// The chunk size of the stage's output link.
    pub(crate) out_chunk: ChunkSize,
}

/// How one item ended.
enum Outcome<U> {
    /// The item's output, and whether producing it had to wait (a slow
    /// stage: its output is sent on at once if downstream has room).
    Emit(U, bool),
    Filtered,
    Skipped,
    /// Failed and kept in the run's aggregate error ([`OnError::Collect`]).
    Collected,
    /// Failed and handed to the dead-letter sink.
    DeadLettered,
    /// Failed and stops the run.
    Failed(StageError),
}

impl<T, S> StageShared<T, S>
where
    T: Send + 'static,
    S: StageFn<T>,
{
    /// Runs one worker until its input ends.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut input: Input<T>,
        output: mpsc::Sender<Chunk<S::Output>>,
    ) -> Result<(), Fault> {
        let ordered = self.stage.ordered && self.stage.workers > 1;
        let mut out = Vec::with_capacity(self.out_chunk.get());
        while let Some(chunk) = input.recv().await {
            let mut tally = Tally { received: chunk.items.len() as u64, ..Tally::default() };
            let processed = self.process_chunk(chunk.items, &mut out, &mut tally, &output, ordered).await;
            self.counters.add(&tally);
            if !processed? {
                return Ok(()); // downstream is gone: the run is stopping
            }
            let flush = ordered || out.len() >= self.out_chunk.get() || input.is_idle();
            if flush && !send(&output, chunk.seq, &mut out, self.out_chunk.get(), ordered).await {
                return Ok(());
            }
        }
        send(&output, 0, &mut out, self.out_chunk.get(), false).await;
        Ok(())
    }

    /// Processes a chunk's items into `out`; `Ok(false)` if downstream is
    /// gone.
    async fn process_chunk(
        &self,
        items: Vec<Indexed<T>>,
        out: &mut Vec<Indexed<S::Output>>,
        tally: &mut Tally,
        output: &mpsc::Sender<Chunk<S::Output>>,
        ordered: bool,
    ) -> Result<bool, Fault> {
        for (index, item) in items {
            match self.process(index, item, tally).await {
                Outcome::Emit(value, waited) => {
                    tally.emitted += 1;
                    out.push((index, value));
                    // An ordered stage with several workers sends exactly
                    // one chunk per input chunk, so it never splits one.
                    if ordered {
                        continue;
                    }
                    if out.len() >= self.out_chunk.get() {
                        if !send(output, 0, out, self.out_chunk.get(), false).await {
                            return Ok(false);
                        }
                    } else if waited {
                        try_send(output, out);
                    }
                }
                Outcome::Filtered => tally.filtered += 1,
                Outcome::Skipped => tally.skipped += 1,
                Outcome::Collected => tally.failed += 1,
                Outcome::DeadLettered => tally.dead_lettered += 1,
                Outcome::Failed(error) => {
                    tally.failed += 1;
                    return Err(Fault::Stage(error));
                }
            }
        }
        Ok(true)
    }

    /// Runs one item through its attempts and the failure policy.
    async fn process(&self, index: u64, item: T, tally: &mut Tally) -> Outcome<S::Output> {
        let stage = &self.stage;
        let labels = (stage.key.as_ref().map(|k| k(&item)), stage.tenant.as_ref().map(|t| t(&item)));
        let tenant = labels.1.as_deref();
        let waited = AtomicBool::new(false);
        let mut first_failure = None;
        let mut item = Some(item);
        let (result, attempts) = match &stage.retry {
            // No retry: one attempt, and the item moves into it unless the
            // stage keeps it (a dead letter, a hedge).
            None => {
                let source = match stage.copy {
                    Some(copy) => copy(item.as_ref().expect("kept for copies")),
                    None => item.take().expect("used once"),
                };
                (self.attempt(index, tenant, 1, source, &waited).await, 1)
            }
            // Each attempt gets a copy (a stage with a retry policy keeps
            // the item).
            Some(retry) => {
                let copy = stage.copy.expect("a stage with a retry policy copies its item");
                // Held as `&mut`, not `&`: the retry future then needs only
                // `T: Send`, not `T: Sync`.
                let kept = &mut item;
                let waited = &waited;
                let mut retries = 0;
                let result = retry
                    .drive(
                        None,
                        move |attempt| self.attempt(index, tenant, attempt, copy(kept.as_ref().expect("kept")), waited),
                        |error: &BoxError| self.is_transient(error),
                        |error, attempt, wait| {
                            tracing::debug!(stage = %stage.name, item = index, tenant, attempt, error = %error, ?wait, "retrying item");
                            first_failure.get_or_insert_with(SystemTime::now);
                            retries += 1;
                        },
                    )
                    .await
                    .map_err(|e| e.into_last().expect("a failed attempt keeps its error"));
                tally.retries += u64::from(retries);
                (result, retries + 1)
            }
        };
        let error = match result {
            Ok(Some(value)) => return Outcome::Emit(value, waited.into_inner() || attempts > 1),
            Ok(None) => return Outcome::Filtered,
            Err(error) if is::<Skip>(&*error) => {
                tracing::trace!(stage = %stage.name, item = index, "item skipped");
                return Outcome::Skipped;
            }
            Err(error) => error,
        };
        let failed_at = SystemTime::now();
        let error = stage_error(&stage.name, error, index, attempts, labels);
        let times = (first_failure.unwrap_or(failed_at), failed_at);
        self.after_failure(item, error, times).await
    }

    /// One attempt on `item`: the stage function under its timeout, panics
    /// caught. Sets `waited` if the function had to wait (returned
    /// `Pending`).
    async fn attempt(
        &self,
        index: u64,
        tenant: Option<&str>,
        attempt: u32,
        item: T,
        waited: &AtomicBool,
    ) -> Result<Option<S::Output>, BoxError> {
        let _slot = match &self.stage.bulkhead {
            None => None,
            Some(Isolation::Shared(bulkhead)) => Some(bulkhead.acquire().await?),
            Some(Isolation::PerTenant(bulkheads)) => {
                Some(bulkheads.acquire(&tenant.unwrap_or_default().to_owned()).await?)
            }
        };
        let permit = match &self.stage.breaker {
            Some(breaker) => Some(breaker.try_acquire()?),
            None => None,
        };
        // A span per attempt only when someone listens at TRACE: creating
        // one costs more than moving the item.
        let span = if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace_span!("item", stage = %self.stage.name, item = index, tenant, attempt)
        } else {
            tracing::Span::none()
        };
        let call = match (&self.stage.hedge, self.stage.copy) {
            (Some(hedge), Some(copy)) => {
                // The hedge copies from its own item: its future must not
                // borrow the caller's (which would ask T: Sync).
                let hedged = hedge.call(move |_| self.invoke(copy(&item)));
                // Boxed: the hedge's future is large, and an unboxed variant
                // would make every item's future (and its moves) that large.
                Either::Right(Box::pin(async move { hedged.await.map_err(one_error) }))
            }
            _ => Either::Left(self.invoke(item)),
        };
        let call = NoteWaiting { inner: catch_panic(call), waited }.instrument(span);
        let call =
            async move { call.await.unwrap_or_else(|payload| Err(Box::new(Panicked::new(payload)) as BoxError)) };
        let result = match &self.stage.timeout {
            None => call.await,
            Some(timeout) => timeout.call(|| call).await,
        };
        if let Some(permit) = permit {
            match &result {
                Err(error) if !is::<Skip>(&**error) => permit.failure(),
                _ => permit.success(),
            }
        }
        result
    }

    /// Calls the stage's function on `item` (each call, hedged ones
    /// included).
    fn invoke(&self, item: T) -> impl std::future::Future<Output = Result<Option<S::Output>, BoxError>> + Send + '_ {
        self.stage.f.call(item)
    }

    /// Whether a failed attempt may be retried: the stage's own rule, or
    /// weir's one [classification](crate::retry::is_transient).
    fn is_transient(&self, error: &BoxError) -> bool {
        match &self.stage.transient {
            Some(is_transient) => is_transient(error),
            None => is_transient(&**error),
        }
    }

    /// Applies the stage's failure policy to an item that failed for good.
    async fn after_failure(
        &self,
        item: Option<T>,
        error: StageError,
        times: (SystemTime, SystemTime),
    ) -> Outcome<S::Output> {
        match &self.stage.policy {
            Policy::Plain(OnError::Fail) => {
                tracing::error!(stage = %self.stage.name, error = %error, "item failed; stopping the pipeline");
                Outcome::Failed(error)
            }
            Policy::Plain(OnError::Skip) => {
                tracing::warn!(stage = %self.stage.name, error = %error, "item failed; skipped");
                Outcome::Skipped
            }
            Policy::Plain(OnError::Collect) => {
                tracing::warn!(stage = %self.stage.name, error = %error, "item failed; collected");
                self.collected
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Origin::Stage(self.stage.name.clone()), error);
                Outcome::Collected
            }
            Policy::DeadLetter(sink) => {
                let item = item.expect("dead-lettering stages keep the item");
                let description = error.to_string();
                let (first_failure, last_failure) = times;
                match sink.dead_letter(DeadLetter { item, error, first_failure, last_failure }).await {
                    Ok(()) => {
                        tracing::warn!(stage = %self.stage.name, error = %description, "item dead-lettered");
                        Outcome::DeadLettered
                    }
                    Err(sink_error) => {
                        let cause: BoxError =
                            format!("{description}; and the dead-letter sink failed: {sink_error}").into();
                        Outcome::Failed(StageError::builder(self.stage.name.clone(), cause).build())
                    }
                }
            }
        }
    }
}

fn stage_error(
    stage: &Arc<str>,
    error: BoxError,
    index: u64,
    attempt: u32,
    labels: (Option<String>, Option<String>),
) -> StageError {
    let mut builder = StageError::builder(stage.clone(), error).index(index).attempt(attempt);
    if let Some(key) = labels.0 {
        builder = builder.key(key);
    }
    if let Some(tenant) = labels.1 {
        builder = builder.tenant(tenant);
    }
    builder.build()
}

/// The error of a hedged attempt: the only one, or all of them.
fn one_error(errors: Errors<BoxError>) -> BoxError {
    if errors.len() == 1 { errors.into_iter().next().map(|(_, e)| e).expect("one error") } else { Box::new(errors) }
}

/// Sends `out` now if the link has room; keeps it otherwise (downstream is
/// busy, so holding the items costs it nothing).
fn try_send<U>(output: &mpsc::Sender<Chunk<U>>, out: &mut Vec<Indexed<U>>) {
    if let Ok(permit) = output.try_reserve() {
        let items = std::mem::replace(out, Vec::with_capacity(out.capacity()));
        permit.send(Chunk { seq: 0, items });
    }
}

pin_project_lite::pin_project! {
    /// Notes whether a future ever returned `Pending`.
    struct NoteWaiting<'a, F> {
        #[pin]
        inner: F,
        waited: &'a AtomicBool,
    }
}

impl<F: std::future::Future> std::future::Future for NoteWaiting<'_, F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let poll = this.inner.poll(cx);
        if poll.is_pending() {
            this.waited.store(true, Ordering::Relaxed);
        }
        poll
    }
}

/// Sends `out` as one chunk numbered `seq` (an empty one only if
/// `even_empty`: an ordered stage's downstream waits for every number);
/// `false` if downstream is gone.
async fn send<U>(
    output: &mpsc::Sender<Chunk<U>>,
    seq: u64,
    out: &mut Vec<Indexed<U>>,
    chunk: usize,
    even_empty: bool,
) -> bool {
    if out.is_empty() && !even_empty {
        return true;
    }
    let items = std::mem::replace(out, Vec::with_capacity(chunk));
    output.send(Chunk { seq, items }).await.is_ok()
}
