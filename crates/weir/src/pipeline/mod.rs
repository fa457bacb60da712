//! [`Pipeline`]: a source, named stages and a sink over bounded channels,
//! with per-stage workers, retries, timeouts and failure policies, and a
//! report in which every item is accounted for.
//!
//! ```text
//! source ─▶ [stage 1: N workers] ─▶ [stage 2] ─▶ … ─▶ sink (your code)
//!        chunks over bounded links; every task in one Group
//! ```
//!
//! - Every stage runs in the run's [`Group`]: the first failure (under
//!   [`OnError::Fail`]) cancels the others, a panic outside a stage
//!   function is an error, and nothing outlives the run.
//! - An item's failure becomes a [`StageError`]
//!   naming the stage, the item (index, key), the tenant and the attempt.
//! - Each link holds at most `capacity` items in its queue, plus one chunk
//!   being filled by the sender and one being worked on by the receiver.
//!   Items move in chunks when several are ready, one by one otherwise.
//! - At capacity 64, a 3-stage pipeline moves about 18 M items/s on the
//!   2-core reference machine (Go's channels: about 6 M in the same run);
//!   at capacity 1, about 1 M (Go: 3 M; `docs/benchmarks.md`).
//! - Each task of a run (source, every stage worker) is a tokio task of
//!   its own, so stages and the workers of one stage run on all the
//!   runtime's threads: a 16-worker stage of CPU work runs 1.94× faster on
//!   2 threads than on 1.
//! - Cancellation reaches every send and receive: they are `.await` points
//!   of tasks that the group drops on abort.
//! - A source whose items must be acknowledged (a broker, a work queue)
//!   hands each item over with a [`Receipt`]
//!   ([`PipelineBuilder::from_receipts`]); the run settles it once with the
//!   item's [`Fate`], after that fate is final: at least once, never at
//!   most once.
//!
//! # Stopping a run
//! - **Graceful drain** ([`Control::drain`]): the source stops taking items
//!   after the chunk at hand; what is already inside goes through every
//!   stage to the sink. It takes as long as the in-flight items (at most
//!   `capacity` per link, plus one chunk per worker) take to finish.
//! - **Abort** ([`Control::abort`], a deadline, a parent token): every task
//!   is dropped at its next `.await`; items inside are not processed and the
//!   run returns a [`Cancelled`](crate::error::Cancelled)-caused error. It
//!   takes about as long as a task takes to reach an `.await`: microseconds
//!   for cooperative code (see the group bench for figures).
//!
//! # Examples
//! Produce, double, sum.
//! ```
//! use weir::pipeline::{Pipeline, Stage};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), weir::pipeline::PipelineError> {
//! let (sum, report) = Pipeline::from_iter(1..=5u64)
//!     .stage(Stage::map("double", |n: u64| async move { n * 2 }))
//!     .fold(0, |sum, n| sum + n)
//!     .await?;
//! assert_eq!(sum, 30);
//! assert!(report.is_balanced());
//! # Ok(())
//! # }
//! ```

pub mod batch;
mod error;
mod link;
mod report;
mod run;
mod settle;
mod source;
mod stage;
mod worker;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::error::Fault;
pub use self::error::PipelineError;
use self::link::{ChunkSize, Input, Sizing};
use self::report::Counters;
pub use self::report::{Report, StageReport};
pub use self::run::{Control, PipelineStream};
pub use self::settle::{Fate, Receipt};
use self::settle::{Receipts, Settle};
use self::source::SourceOut;
#[cfg(feature = "test-util")]
pub(crate) use self::stage::sealed;
pub use self::stage::{DeadLetter, DeadLetterSink, FilterFn, MapFn, OnError, Stage, StageFn, TryMapFn};
use self::worker::StageShared;
use crate::error::{BoxError, ConfigError, Errors, StageError};
use crate::group::Group;

/// Spawns one task of the run into its group.
type Launch = Box<dyn FnOnce(&Group<Fault>) + Send>;

/// A pipeline being built: a source, then stages; its items are `T`.
///
/// Nothing runs until a terminal method ([`for_each`](Self::for_each),
/// [`collect`](Self::collect), [`fold`](Self::fold),
/// [`into_stream`](Self::into_stream)) is awaited.
///
/// # Defaults
/// - capacity 64 items per link;
/// - no deadline, no parent token.
pub struct Pipeline<T> {
    setup: Setup,
    output: link::Receiver<T>,
}

/// Everything about a pipeline but its item type.
struct Setup {
    sizing: Sizing,
    timeout: Option<Duration>,
    control: Control,
    launches: Vec<Launch>,
    /// The chunk size of the link the pipeline's items are on now.
    out_chunk: ChunkSize,
    stages: Vec<(Arc<str>, usize, Arc<Counters>)>,
    source_emitted: Arc<AtomicU64>,
    collected: Arc<Mutex<Errors<StageError>>>,
    /// The receipts of the items in flight, for a source that has them.
    settler: Option<Arc<dyn Settle>>,
    config_error: Option<ConfigError>,
}

impl<T> std::fmt::Debug for Pipeline<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stages: Vec<&str> = self.setup.stages.iter().map(|(name, ..)| &**name).collect();
        f.debug_struct("Pipeline").field("stages", &stages).field("sizing", &self.setup.sizing).finish_non_exhaustive()
    }
}

/// Settings for a pipeline, before its source.
///
/// # Defaults
/// - capacity 64 items per link;
/// - no deadline, no parent token.
#[derive(Debug, Clone, Default)]
pub struct PipelineBuilder {
    capacity: Option<usize>,
    timeout: Option<Duration>,
    parent: Option<CancellationToken>,
}

impl PipelineBuilder {
    /// How many items each link between stages queues (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// The run fails with a deadline error if it has not finished after
    /// `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Cancelling `parent` aborts the run.
    pub fn parent(mut self, parent: &CancellationToken) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// Starts the pipeline from an iterator. The iterator is read on a
    /// runtime thread and must not block.
    pub fn from_iter<I>(self, items: I) -> Pipeline<I::Item>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static,
    {
        let iter = items.into_iter();
        self.start(move |out| Box::pin(source::from_iter(iter, out)))
    }

    /// Starts the pipeline from a stream (a channel receiver wrapped as a
    /// stream, a file's lines, …).
    pub fn from_stream<S>(self, stream: S) -> Pipeline<S::Item>
    where
        S: Stream + Send + 'static,
        S::Item: Send + 'static,
    {
        self.start(move |out| Box::pin(source::from_stream(stream, out, |_, item| Ok(item))))
    }

    /// Starts the pipeline from a stream of items that each come with a
    /// [`Receipt`] (a broker's message, a queue's claim): the run settles
    /// each receipt once the item's [`Fate`] is final, so a source that
    /// acknowledges on settlement delivers at least once. See
    /// [`Fate`] for where each fate is decided.
    ///
    /// The stream may fail: an `Err` stops the run as a stage's failure
    /// does (items still inside are settled [`Fate::Abandoned`]), and the
    /// run returns a [`PipelineError`] whose
    /// [`source_error`](PipelineError::source_error) is that error. A
    /// source that can recover from an error by itself (a reconnect)
    /// should, and yield only the errors it cannot get past.
    ///
    /// # Examples
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use weir::error::BoxError;
    /// use weir::pipeline::{Fate, Pipeline, Receipt, Stage};
    ///
    /// struct Ack(u32, Arc<Mutex<Vec<(u32, Fate)>>>);
    /// impl Receipt for Ack {
    ///     async fn settle(self, fate: Fate) -> Result<(), BoxError> {
    ///         self.1.lock().unwrap().push((self.0, fate));
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::pipeline::PipelineError> {
    /// let fates = Arc::new(Mutex::new(Vec::new()));
    /// let items: Vec<_> = (1..=4u32).map(|n| Ok::<_, BoxError>((n, Ack(n, Arc::clone(&fates))))).collect();
    /// Pipeline::builder()
    ///     .from_receipts(futures_util::stream::iter(items))
    ///     .stage(Stage::filter("odd", |n: &u32| n % 2 == 1))
    ///     .for_each(|_| async { Ok::<_, BoxError>(()) })
    ///     .await?;
    /// let mut fates = fates.lock().unwrap().clone();
    /// fates.sort_by_key(|(n, _)| *n);
    /// assert_eq!(fates, [(1, Fate::Delivered), (2, Fate::Filtered), (3, Fate::Delivered), (4, Fate::Filtered)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_receipts<S, T, R, E>(self, stream: S) -> Pipeline<T>
    where
        S: Stream<Item = Result<(T, R), E>> + Send + 'static,
        T: Send + 'static,
        R: Receipt,
        E: Into<BoxError> + Send + 'static,
    {
        let receipts = Receipts::<R>::new();
        let table = Arc::clone(&receipts);
        let take = move |index, next: Result<(T, R), E>| match next {
            Ok((item, receipt)) => {
                table.insert(index, receipt);
                Ok(item)
            }
            Err(error) => Err(Fault::Source(error.into())),
        };
        let mut pipeline = self.start(move |out| Box::pin(source::from_stream(stream, out, take)));
        pipeline.setup.settler = Some(receipts);
        pipeline
    }

    /// Starts the pipeline from a tokio channel.
    pub fn from_receiver<T: Send + 'static>(self, mut rx: tokio::sync::mpsc::Receiver<T>) -> Pipeline<T> {
        self.from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    fn start<T: Send + 'static>(
        self,
        source: impl FnOnce(SourceOut<T>) -> futures_util::future::BoxFuture<'static, Result<(), Fault>> + Send + 'static,
    ) -> Pipeline<T> {
        let config_error = (self.capacity == Some(0)).then(|| {
            ConfigError::new("pipeline capacity", 0, "a link with no room would never pass an item; use at least 1")
        });
        let sizing = Sizing::for_capacity(self.capacity.unwrap_or(64));
        let control = Control::new(self.parent.as_ref());
        let (tx, output) = link::link(sizing, false);
        let source_emitted = Arc::new(AtomicU64::new(0));
        let out_chunk = ChunkSize::new(sizing.chunk);
        let out = SourceOut {
            tx,
            chunk: out_chunk.clone(),
            emitted: Arc::clone(&source_emitted),
            drain: control.drain_token(),
        };
        let launch: Launch = Box::new(move |group| spawn(group, "source", source(out)));
        let setup = Setup {
            sizing,
            timeout: self.timeout,
            control,
            launches: vec![launch],
            out_chunk,
            stages: Vec::new(),
            source_emitted,
            collected: Arc::default(),
            settler: None,
            config_error,
        };
        Pipeline { setup, output }
    }
}

fn spawn(
    group: &Group<Fault>,
    name: impl Into<std::borrow::Cow<'static, str>>,
    task: futures_util::future::BoxFuture<'static, Result<(), Fault>>,
) {
    // The run's group has no limit, so it always has room.
    if group.try_spawn_named(name, task).is_err() {
        unreachable!("a pipeline's group has no limit");
    }
}

impl Pipeline<()> {
    /// Settings for a pipeline (capacity, deadline, parent token).
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// A pipeline with default settings, fed by an iterator.
    #[allow(clippy::should_implement_trait)] // builds a pipeline, not a collection
    pub fn from_iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        PipelineBuilder::default().from_iter(items)
    }

    /// A pipeline with default settings, fed by a stream.
    pub fn from_stream<S>(stream: S) -> Self
    where
        S: Stream<Item = T> + Send + 'static,
    {
        PipelineBuilder::default().from_stream(stream)
    }

    /// A handle to drain or abort the run from elsewhere.
    pub fn control(&self) -> Control {
        self.setup.control.clone()
    }

    /// Adds a stage; the pipeline's items become the stage's output.
    pub fn stage<S>(mut self, stage: Stage<T, S>) -> Pipeline<S::Output>
    where
        S: StageFn<T>,
    {
        if stage.workers == 0 && self.setup.config_error.is_none() {
            self.setup.config_error = Some(ConfigError::new(
                "stage workers",
                format!("0 for stage `{}`", stage.name),
                "a stage with no worker would never take an item; use at least 1",
            ));
        }
        if stage.policies.timeout().is_some_and(|t| t.after().is_zero()) && self.setup.config_error.is_none() {
            self.setup.config_error = Some(ConfigError::new(
                "stage timeout",
                format!("0s for stage `{}`", stage.name),
                "a zero timeout fails every attempt; use a positive duration, or none",
            ));
        }
        let workers = stage.workers.max(1);
        self.setup.out_chunk.split_for(workers);
        self.setup.out_chunk = ChunkSize::new(self.setup.sizing.chunk);
        let reorder = stage.ordered && workers > 1;
        let (tx, output) = link::link(self.setup.sizing, reorder);
        let counters = Arc::new(Counters::new(&stage.name));
        self.setup.stages.push((stage.name.clone(), workers, Arc::clone(&counters)));
        let shared = Arc::new(StageShared {
            stage,
            counters,
            collected: Arc::clone(&self.setup.collected),
            settler: self.setup.settler.clone(),
            out_chunk: self.setup.out_chunk.clone(),
        });
        for (n, input) in Input::new(self.output, workers).into_iter().enumerate() {
            let (shared, tx) = (Arc::clone(&shared), tx.clone());
            let name = format!("stage `{}` worker {n}", shared.stage.name);
            let span = tracing::info_span!("stage", stage = %shared.stage.name, worker = n);
            let run = shared.run(input, tx).instrument(span);
            self.setup.launches.push(Box::new(move |group| spawn(group, name, Box::pin(run))));
        }
        Pipeline { setup: self.setup, output }
    }

    /// Adds a [`Stage::map`] stage with default settings.
    pub fn map<U, F, Fut>(self, name: impl Into<Arc<str>>, f: F) -> Pipeline<U>
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = U> + Send,
        U: Send + 'static,
    {
        self.stage(Stage::map(name, f))
    }

    /// Adds a [`Stage::filter`] stage with default settings.
    pub fn filter<F>(self, name: impl Into<Arc<str>>, keep: F) -> Pipeline<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.stage(Stage::filter(name, keep))
    }
}

use std::future::Future;
