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
use super::report::{Counters, Tally, Unpublished};
use super::settle::{Fate, Settle};
use super::stage::{DeadLetter, OnError, Policy, Stage, StageFn};
use crate::error::{BoxError, Errors, Origin, Skip, StageError, guarded, is};
use crate::policy::retry::is_transient;

/// A worker times the first item of a chunk once at least this many items
/// have passed since its last sample. Timing every item (two clock reads
/// and a histogram record) cost a capacity-1 pipeline 7.5% of its
/// throughput (`cargo bench --features prometheus --bench observe`);
/// sampled, and with the counters sent in batches ([`Unpublished`]),
/// metrics cost capacity 1 2.2% and capacity 64 1.3%.
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

/// How a chunk's processing ended.
enum Chunked {
    /// Every item was processed; `waited`: some item's call had to wait.
    Done { waited: bool },
    /// The next stage is gone: the run is stopping.
    DownstreamGone,
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
        let mut unpublished = Unpublished::default();
        while let Some(chunk) = input.recv().await {
            self.counters.took(chunk.items.len());
            let mut tally = Tally { received: chunk.items.len() as u64, ..Tally::default() };
            let sample = until_sample == 0;
            until_sample = if sample { SAMPLE_EVERY } else { until_sample.saturating_sub(chunk.items.len()) };
            let processed = self.process_chunk(chunk.items, &mut out, &mut tally, &output, ordered, sample).await;
            self.counters.add(&tally);
            if crate::observe::ENABLED {
                let due = unpublished.add(&tally);
                if due || input.is_idle() || !matches!(processed, Ok(Chunked::Done { waited: false })) {
                    self.counters.publish(&mut unpublished);
                }
            }
            if !matches!(processed?, Chunked::Done { .. }) {
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
        if !unpublished.is_empty() {
            self.counters.publish(&mut unpublished);
        }
        Ok(())
    }

    /// Processes a chunk's items into `out`.
    async fn process_chunk(
        &self,
        items: Vec<Indexed<T>>,
        out: &mut Vec<Indexed<S::Output>>,
        tally: &mut Tally,
        output: &mpsc::Sender<Chunk<S::Output>>,
        ordered: bool,
        sample: bool,
    ) -> Result<Chunked, Fault> {
        let mut sample = sample.then(crate::observe::Timer::start);
        let mut waited = false;
        for (index, item) in items {
            // Should this item's call have to wait, the items finished
            // before it go on meanwhile (see `HandOn`).
            let hand_on = (!ordered && !out.is_empty()).then(|| Mutex::new(HandOn::new(&mut *out, output)));
            let outcome = self.process(index, item, tally, hand_on.as_ref()).await;
            drop(hand_on);
            if let Some(timer) = sample.take() {
                self.counters.item_took(timer);
            }
            match outcome {
                Outcome::Emit(value, item_waited) => {
                    waited |= item_waited;
                    tally.emitted += 1;
                    out.push((index, value));
                    // An ordered stage with several workers sends exactly
                    // one chunk per input chunk, so it never splits one.
                    if ordered {
                        continue;
                    }
                    if out.len() >= self.out_chunk.get() {
                        if !send(output, 0, out, self.out_chunk.get(), false).await {
                            return Ok(Chunked::DownstreamGone);
                        }
                    } else if item_waited {
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
        Ok(Chunked::Done { waited })
    }

    /// Runs one item through its attempts and the failure policy.
    async fn process(
        &self,
        index: u64,
        item: T,
        tally: &mut Tally,
        hand_on: Option<&Mutex<HandOn<'_, S::Output>>>,
    ) -> Outcome<S::Output> {
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
            (guarded(self.invoke(index, tenant, 1, source, &waited, hand_on)).await, 1, kept)
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
                self.invoke(index, tenant, attempt, item, &waited, hand_on)
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
        hand_on: Option<&'a Mutex<HandOn<'_, S::Output>>>,
    ) -> impl Future<Output = Result<Option<S::Output>, BoxError>> + Send + 'a {
        // Creating a span costs more than moving the item: only on demand.
        let span = if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace_span!("item", stage = %self.stage.name, item = index, tenant, attempt)
        } else {
            tracing::Span::none()
        };
        NoteWaiting { inner: self.stage.f.call(item), waited, hand_on }.instrument(span)
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

/// The items a worker finished before the item at hand, to send on if
/// that item's call has to wait. Held, they would wait as long as the call
/// (and a failure among them would stop the run only then); sent at once,
/// they would cost the chunking that makes a pipeline fast. So they go
/// when a call returns `Pending`: as soon as the link has room.
///
/// Checked only on that path, so an item that is ready at once pays
/// nothing: handing the items on from a wrapper around every item's
/// future (polling it once, then waiting) cost a 3-stage pipeline at
/// capacity 64 9-13% of its throughput (`cargo bench --bench pipeline`).
pub(crate) struct HandOn<'a, U> {
    out: &'a mut Vec<Indexed<U>>,
    output: &'a mpsc::Sender<Chunk<U>>,
    /// Waits for room on the link; `None` before the first wait.
    room: Option<Reserve<'a, U>>,
    done: bool,
}

type Reserve<'a, U> =
    std::pin::Pin<Box<dyn Future<Output = Result<mpsc::Permit<'a, Chunk<U>>, mpsc::error::SendError<()>>> + Send + 'a>>;

impl<'a, U: Send> HandOn<'a, U> {
    fn new(out: &'a mut Vec<Indexed<U>>, output: &'a mpsc::Sender<Chunk<U>>) -> Self {
        Self { out, output, room: None, done: false }
    }

    /// A call returned `Pending`: sends the held items if the link has
    /// room, or waits for room beside the call (woken with it).
    fn poll_send(&mut self, cx: &mut std::task::Context<'_>) {
        if self.done {
            return;
        }
        let output = self.output;
        let room = self.room.get_or_insert_with(|| Box::pin(output.reserve()));
        if let std::task::Poll::Ready(permit) = room.as_mut().poll(cx) {
            self.done = true;
            self.room = None;
            if let Ok(permit) = permit {
                let capacity = self.out.capacity();
                let items = std::mem::replace(&mut *self.out, Vec::with_capacity(capacity));
                permit.send(Chunk { seq: 0, items });
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Notes whether a future ever returned `Pending`, and then lets the
    /// items finished before it go on ([`HandOn`]).
    struct NoteWaiting<'a, 'b, F, U> {
        #[pin]
        inner: F,
        waited: &'a AtomicBool,
        hand_on: Option<&'a Mutex<HandOn<'b, U>>>,
    }
}

impl<F: Future, U: Send> Future for NoteWaiting<'_, '_, F, U> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let poll = this.inner.poll(cx);
        if poll.is_pending() {
            this.waited.store(true, Ordering::Relaxed);
            // A hedge's attempts share it: whichever gets the lock sends.
            if let Some(Ok(mut hand_on)) = this.hand_on.map(Mutex::try_lock) {
                hand_on.poll_send(cx);
            }
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
