//! What a pipeline run did, item by item, per stage.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::observe;

/// Counts for one stage. For a run that finished:
/// `received = emitted + filtered + skipped + failed + dead_lettered + released`, and
/// what one stage emitted, the next received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StageReport {
    /// The stage's name.
    pub name: Arc<str>,
    /// How many workers ran it.
    pub workers: usize,
    /// Items taken from the stage's input.
    pub received: u64,
    /// Items passed on downstream.
    pub emitted: u64,
    /// Items a filter let through no further (a normal outcome).
    pub filtered: u64,
    /// Items skipped: the stage returned [`Skip`](crate::error::Skip), or
    /// failed under [`OnError::Skip`](super::OnError::Skip).
    pub skipped: u64,
    /// Items that failed (under `Fail` at most one, under `Collect` each
    /// one is in the run's error).
    pub failed: u64,
    /// Items handed to the dead-letter sink.
    pub dead_lettered: u64,
    /// Items that failed with a transient error and went back to their
    /// source to be delivered again later ([`Fate::Released`](super::Fate::Released));
    /// only for a source with receipts.
    pub released: u64,
    /// Retries made (attempts beyond the first).
    pub retries: u64,
}

impl StageReport {
    /// Items the stage took but did not account for: non-zero only for a
    /// run that was stopped while the items were in the stage.
    pub fn in_flight(&self) -> u64 {
        // A report read while the run goes on may see an item's outcome
        // before its receipt: never below zero.
        self.received.saturating_sub(
            self.emitted + self.filtered + self.skipped + self.failed + self.dead_lettered + self.released,
        )
    }
}

/// The report of a run: the source, every stage, the sink.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Items the source produced.
    pub source_emitted: u64,
    /// Per stage, in pipeline order.
    pub stages: Vec<StageReport>,
    /// Items the sink received.
    pub sink_received: u64,
    /// Whether intake was stopped early by a graceful drain.
    pub drained: bool,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Report {
    /// The report of stage `name`, if there is one.
    pub fn stage(&self, name: &str) -> Option<&StageReport> {
        self.stages.iter().find(|s| &*s.name == name)
    }

    /// Whether every item is accounted for: each stage received what the
    /// one before emitted, and accounted for all it received. True for
    /// every run that ended without being stopped.
    pub fn is_balanced(&self) -> bool {
        let mut upstream = self.source_emitted;
        for stage in &self.stages {
            if stage.received != upstream || stage.in_flight() != 0 {
                return false;
            }
            upstream = stage.emitted;
        }
        upstream == self.sink_received
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source: {} item(s)", self.source_emitted)?;
        for s in &self.stages {
            writeln!(
                f,
                "stage `{}` ×{}: in {} / out {} / filtered {} / skipped {} / failed {} / dead-lettered {} / retries {}",
                s.name, s.workers, s.received, s.emitted, s.filtered, s.skipped, s.failed, s.dead_lettered, s.retries
            )?;
            if s.released > 0 {
                writeln!(f, "  released for redelivery: {}", s.released)?;
            }
        }
        write!(f, "sink: {} item(s){}", self.sink_received, if self.drained { " (drained early)" } else { "" })
    }
}

/// A stage's live counters, shared by its workers: an item is counted as
/// received when a worker takes it, and by its outcome once per chunk.
/// The same counts go to the metrics recorder, if any
/// ([`observe`](crate::observe)), in batches ([`Unpublished`]).
#[derive(Debug)]
pub(crate) struct Counters {
    metrics: StageMetrics,
    pub(crate) received: AtomicU64,
    pub(crate) emitted: AtomicU64,
    pub(crate) filtered: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) released: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// A worker's counts for the chunk at hand.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub(crate) received: u64,
    pub(crate) emitted: u64,
    pub(crate) filtered: u64,
    pub(crate) skipped: u64,
    pub(crate) failed: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) released: u64,
    pub(crate) retries: u64,
}

/// A worker's counts not yet sent to the metrics recorder. Sending them
/// per chunk cost a capacity-1 pipeline (one item a chunk) four atomic
/// read-modify-writes an item; a worker now sends every
/// [`PUBLISH_EVERY`](Self::PUBLISH_EVERY) items, whenever it is about to
/// wait for input, and after every chunk in which a call had to wait (so a
/// slow stage's figures stay current).
#[derive(Debug, Default)]
pub(crate) struct Unpublished(Tally);

impl Unpublished {
    /// Items a worker counts before it sends its counts.
    pub(crate) const PUBLISH_EVERY: u64 = 64;

    /// Adds a chunk's counts; whether they are due to be sent.
    pub(crate) fn add(&mut self, t: &Tally) -> bool {
        let u = &mut self.0;
        u.received += t.received;
        u.emitted += t.emitted;
        u.filtered += t.filtered;
        u.skipped += t.skipped;
        u.failed += t.failed;
        u.dead_lettered += t.dead_lettered;
        u.released += t.released;
        u.retries += t.retries;
        u.received >= Self::PUBLISH_EVERY
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.received == 0 && self.0.retries == 0
    }
}

/// A stage's metric handles.
#[derive(Debug)]
struct StageMetrics {
    /// By outcome, in [`OUTCOMES`]' order.
    outcomes: [observe::Counter; 7],
    retries: observe::Counter,
    in_flight: observe::Gauge,
    item_duration: observe::Histogram,
}

/// The `outcome` label of each count of a [`Tally`], in its order.
const OUTCOMES: [&str; 7] = ["received", "emitted", "filtered", "skipped", "failed", "dead_lettered", "released"];

impl Counters {
    /// The counters of stage `stage`.
    pub(crate) fn new(stage: &str) -> Self {
        let label = || vec![("stage", stage.to_owned())];
        let outcome = |o: &str| {
            observe::counter("weir_stage_items_total", || vec![("stage", stage.to_owned()), ("outcome", o.to_owned())])
        };
        let metrics = StageMetrics {
            outcomes: OUTCOMES.map(outcome),
            retries: observe::counter("weir_stage_retries_total", label),
            in_flight: observe::gauge("weir_stage_in_flight", label),
            item_duration: observe::histogram("weir_stage_item_duration_seconds", label),
        };
        let zero = AtomicU64::default;
        Self {
            metrics,
            received: zero(),
            emitted: zero(),
            filtered: zero(),
            skipped: zero(),
            failed: zero(),
            dead_lettered: zero(),
            released: zero(),
            retries: zero(),
        }
    }

    /// A worker took `n` items.
    pub(crate) fn took(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One item (a sample) took `timer` from start to outcome.
    pub(crate) fn item_took(&self, timer: observe::Timer) {
        self.metrics.item_duration.record(timer.elapsed().as_secs_f64());
    }

    /// Counts a chunk's outcomes (its receipt was counted by
    /// [`took`](Self::took)).
    pub(crate) fn add(&self, t: &Tally) {
        let pairs = [
            (&self.emitted, t.emitted),
            (&self.filtered, t.filtered),
            (&self.skipped, t.skipped),
            (&self.failed, t.failed),
            (&self.dead_lettered, t.dead_lettered),
            (&self.released, t.released),
            (&self.retries, t.retries),
        ];
        for (counter, n) in pairs {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Sends a worker's unpublished counts to the metrics recorder and
    /// sets the in-flight gauge from the live counts.
    pub(crate) fn publish(&self, unpublished: &mut Unpublished) {
        let t = std::mem::take(&mut unpublished.0);
        let counts = [t.received, t.emitted, t.filtered, t.skipped, t.failed, t.dead_lettered, t.released];
        for (metric, n) in self.metrics.outcomes.iter().zip(counts) {
            if n > 0 {
                metric.increment(n);
            }
        }
        if t.retries > 0 {
            self.metrics.retries.increment(t.retries);
        }
        self.show_in_flight();
    }

    /// Sets the in-flight gauge: items the stage's workers took and have
    /// not yet accounted for (all workers: the counts are shared).
    fn show_in_flight(&self) {
        if observe::ENABLED {
            let get = |c: &AtomicU64| c.load(Ordering::Acquire);
            let outcomes =
                [&self.emitted, &self.filtered, &self.skipped, &self.failed, &self.dead_lettered, &self.released];
            let accounted: u64 = outcomes.into_iter().map(get).sum();
            self.metrics.in_flight.set(get(&self.received).saturating_sub(accounted) as f64);
        }
    }

    pub(crate) fn report(&self, name: Arc<str>, workers: usize) -> StageReport {
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        // Outcomes first: an item's receipt is counted before its outcome,
        // so the receipts read last are at least the outcomes read.
        let (emitted, filtered, skipped, failed) =
            (get(&self.emitted), get(&self.filtered), get(&self.skipped), get(&self.failed));
        let (dead_lettered, released, retries) = (get(&self.dead_lettered), get(&self.released), get(&self.retries));
        StageReport {
            name,
            workers,
            received: get(&self.received),
            emitted,
            filtered,
            skipped,
            failed,
            dead_lettered,
            released,
            retries,
        }
    }
}
