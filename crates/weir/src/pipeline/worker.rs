//! One worker of a stage: takes chunks, runs the stage's function on each
//! item under its policy, sends the results on.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::error::Fault;
use super::link::{Chunk, ChunkSize, Indexed, Input};
use super::report::{Counters, Tally};
use super::settle::{Fate, Settle};
use super::stage::{DeadLetter, OnError, Policy, Stage, StageFn};
use crate::error::{BoxError, Errors, Origin, Skip, StageError, guarded, is};
use crate::policy::retry::is_transient;

/// A worker times the first item of a chunk once at least this many items
/// have passed since its last sample. Timing every item (two clock reads
/// and a histogram record) cost a capacity-1 pipeline 7.5% of its
/// throughput (`cargo bench --features prometheus --bench observe`);
/// sampled, it costs 5.5% there (the per-chunk counters remain) and under
/// 5% at capacity 64.
const SAMPLE_EVERY: usize = 64;

/// What every worker of one stage shares.
pub(crate) struct StageShared<T, S> {
    pub(crate) stage: Stage<T, S>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) collected: Arc<Mutex<Errors<StageError>>>,
    /// The receipts of the run's items, for a source that has them.
    pub(crate) settler: Option<Arc<dyn Settle>>,
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
    /// Failed with a transient error and went back to its source.
    Released,
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
        let mut until_sample = 0;
        while let Some(chunk) = input.recv().await {
            self.counters.took(chunk.items.len());
            let mut tally = Tally { received: chunk.items.len() as u64, ..Tally::default() };
            let sample = until_sample == 0;
            until_sample = if sample { SAMPLE_EVERY } else { until_sample.saturating_sub(chunk.items.len()) };
            let processed = self.process_chunk(chunk.items, &mut out, &mut tally, &output, ordered, sample).await;
            self.counters.add(&tally);
            if !processed? {
                return Ok(()); // downstream is gone: the run is stopping
            }
            // Send what is held unless the next chunk is surely there for
            // this worker: held items wait for more input, and a source
            // that goes quiet (a broker, a channel) would hold them
            // indefinitely. Only a worker that owns its input knows a chunk
            // it saw queued is its own; with a shared input a sibling may
            // take it, so such a worker always sends.
            let flush = ordered || out.len() >= self.out_chunk.get() || input.is_shared() || input.is_idle();
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
        sample: bool,
    ) -> Result<bool, Fault> {
        let mut sample = sample.then(crate::observe::Timer::start);
        for (index, item) in items {
            let outcome = {
                let mut item_done = std::pin::pin!(self.process(index, item, tally));
                let mut handed_on = ordered || out.is_empty();
                let mut room = None;
                std::future::poll_fn(|cx| {
                    let poll = item_done.as_mut().poll(cx);
                    if poll.is_pending() && !handed_on {
                        // This item waits (a slow call, a retry's backoff):
                        // the items finished before it go on as soon as the
                        // link has room, not after it. Held, they would wait
                        // as long as the call, and a failure among them
                        // would stop the run only then.
                        let reserve = room.get_or_insert_with(|| Box::pin(output.reserve()));
                        if let std::task::Poll::Ready(permit) = reserve.as_mut().poll(cx) {
                            handed_on = true;
                            if let Ok(permit) = permit {
                                let capacity = out.capacity();
                                let items = std::mem::replace(&mut *out, Vec::with_capacity(capacity));
                                permit.send(Chunk { seq: 0, items });
                            }
                        }
                    }
                    poll
                })
                .await
            };
            if let Some(timer) = sample.take() {
                self.counters.item_took(timer);
            }
            match outcome {
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
                Outcome::Filtered => {
                    tally.filtered += 1;
                    self.settle(index, Fate::Filtered).await;
                }
                Outcome::Skipped => {
                    tally.skipped += 1;
                    self.settle(index, Fate::Skipped).await;
                }
                Outcome::Collected => {
                    tally.failed += 1;
                    self.settle(index, Fate::Collected).await;
                }
                Outcome::DeadLettered => {
                    tally.dead_lettered += 1;
                    self.settle(index, Fate::DeadLettered).await;
                }
                Outcome::Released => tally.released += 1, // settled by the release
                // Settled as abandoned when the run ends: the run stops.
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
        let (result, attempts, item) = if stage.policies.is_empty() {
            // No policy: one call, outside the stack (it would cost a lock
            // on the item and the stack's branches), and the item moves
            // into it unless the stage keeps it for a dead letter.
            let (source, kept) = match stage.copy {
                Some(copy) => (copy(&item), Some(item)),
                None => (item, None),
            };
            (guarded(self.invoke(index, tenant, 1, source, &waited)).await, 1, kept)
        } else {
            // The stack may call again (a retry, a hedge) and at once (a
            // hedge), so each call copies the item out of a lock: the
            // calls then need only `T: Send`, not `T: Sync`.
            let kept = Mutex::new(Some(item));
            let call = |attempt| {
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                let item = match stage.copy {
                    Some(copy) => copy(kept.as_ref().expect("kept for copies")),
                    None => kept.take().expect("a stage that never calls again takes its item once"),
                };
                self.invoke(index, tenant, attempt, item, &waited)
            };
            let mut retries = 0;
            let on_retry = |error: &BoxError, attempt, wait| {
                tracing::debug!(stage = %stage.name, item = index, tenant, attempt, error = %error, ?wait, "retrying item");
                first_failure.get_or_insert_with(SystemTime::now);
                retries += 1;
            };
            let result = stage
                .policies
                .drive(tenant.unwrap_or_default(), &call, |error| self.is_transient(error), on_retry)
                .await
                .map_err(|e| e.into_attempted());
            tally.retries += u64::from(retries);
            (result, retries + 1, kept.into_inner().unwrap_or_else(|p| p.into_inner()))
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
        if self.release(index, &error).await {
            tracing::info!(stage = %stage.name, item = index, error = %error, "item failed; released to its source for redelivery");
            return Outcome::Released;
        }
        let failed_at = SystemTime::now();
        let error = stage_error(&stage.name, error, index, attempts, labels);
        let times = (first_failure.unwrap_or(failed_at), failed_at);
        self.after_failure(item, error, times).await
    }

    /// One call of the stage's function on `item`, in a span when someone
    /// listens at TRACE; sets `waited` if the call had to wait (returned
    /// `Pending`).
    fn invoke<'a>(
        &'a self,
        index: u64,
        tenant: Option<&str>,
        attempt: u32,
        item: T,
        waited: &'a AtomicBool,
    ) -> impl Future<Output = Result<Option<S::Output>, BoxError>> + Send + 'a {
        // Creating a span costs more than moving the item: only on demand.
        let span = if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace_span!("item", stage = %self.stage.name, item = index, tenant, attempt)
        } else {
            tracing::Span::none()
        };
        NoteWaiting { inner: self.stage.f.call(item), waited }.instrument(span)
    }

    /// Settles item `index`'s receipt, if the source gave it one.
    async fn settle(&self, index: u64, fate: Fate) {
        if let Some(settler) = &self.settler {
            settler.settle(index, fate).await;
        }
    }

    /// Hands a failed item back to its source for a later delivery, if the
    /// source takes it back and the error is worth another try later: a
    /// transient one, or an open breaker (which refuses calls now, not
    /// later).
    async fn release(&self, index: u64, error: &BoxError) -> bool {
        let Some(settler) = &self.settler else { return false };
        let later = self.is_transient(error) || is::<crate::policy::breaker::CircuitOpen>(&**error);
        later && settler.release(index).await
    }

    /// Whether a failed attempt may be retried: the stage's own rule, or
    /// weir's one [classification](crate::policy::retry::is_transient).
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
                let index = error.item().index();
                let (first_failure, last_failure) = times;
                match sink.dead_letter(DeadLetter { item, error, first_failure, last_failure }).await {
                    Ok(()) => {
                        tracing::warn!(stage = %self.stage.name, error = %description, "item dead-lettered");
                        Outcome::DeadLettered
                    }
                    Err(sink_error) => {
                        if let Some(settler) = self.settler.as_ref().filter(|_| index.is_some()) {
                            // Its source still has it: give it back for a
                            // later delivery rather than stop the run.
                            tracing::error!(stage = %self.stage.name, error = %description, sink_error = %sink_error, "the dead-letter sink failed; the item goes back to its source");
                            settler.settle(index.unwrap_or_default(), Fate::Released).await;
                            return Outcome::Released;
                        }
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

impl<F: Future> Future for NoteWaiting<'_, F> {
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
