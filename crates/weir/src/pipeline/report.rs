//! What a pipeline run did, item by item, per stage.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
        self.received - (self.emitted + self.filtered + self.skipped + self.failed + self.dead_lettered + self.released)
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

/// A stage's live counters, shared by its workers. Workers add once per
/// chunk, not per item.
#[derive(Debug, Default)]
pub(crate) struct Counters {
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

impl Counters {
    pub(crate) fn add(&self, t: &Tally) {
        let pairs = [
            (&self.received, t.received),
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

    pub(crate) fn report(&self, name: Arc<str>, workers: usize) -> StageReport {
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        StageReport {
            name,
            workers,
            received: get(&self.received),
            emitted: get(&self.emitted),
            filtered: get(&self.filtered),
            skipped: get(&self.skipped),
            failed: get(&self.failed),
            dead_lettered: get(&self.dead_lettered),
            released: get(&self.released),
            retries: get(&self.retries),
        }
    }
}
