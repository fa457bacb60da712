//! Recent latencies of successful attempts, and a cached percentile.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Keeps the last `capacity` latencies; recomputes the percentile every
/// `RECOMPUTE` records so a call reads it with one atomic load.
#[derive(Debug)]
pub(crate) struct Latencies {
    recent: Mutex<Recent>,
    percentile: f64,
    /// The cached percentile in ns; 0 until enough samples.
    cached: AtomicU64,
    min_samples: usize,
}

#[derive(Debug)]
struct Recent {
    samples: VecDeque<u64>,
    since_recompute: usize,
}

const CAPACITY: usize = 1000;
const RECOMPUTE: usize = 32;

impl Latencies {
    pub(crate) fn new(percentile: f64, min_samples: usize) -> Self {
        Self {
            recent: Mutex::new(Recent { samples: VecDeque::with_capacity(CAPACITY), since_recompute: 0 }),
            percentile,
            cached: AtomicU64::new(0),
            min_samples,
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.samples.len() == CAPACITY {
            recent.samples.pop_front();
        }
        recent.samples.push_back(latency.as_nanos() as u64);
        recent.since_recompute += 1;
        if recent.since_recompute >= RECOMPUTE && recent.samples.len() >= self.min_samples {
            recent.since_recompute = 0;
            let mut sorted: Vec<u64> = recent.samples.iter().copied().collect();
            sorted.sort_unstable();
            let rank = ((sorted.len() as f64 * self.percentile).ceil() as usize).clamp(1, sorted.len()) - 1;
            self.cached.store(sorted[rank].max(1), Ordering::Relaxed);
        }
    }

    /// The percentile, once enough samples were seen.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.cached.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_appears_after_enough_samples() {
        let l = Latencies::new(0.95, 100);
        for ms in 1..=99 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.get(), None);
        l.record(Duration::from_millis(100));
        // 100 samples 1..=100 ms: the 95th percentile is the 95th.
        assert_eq!(l.get(), Some(Duration::from_millis(95)));
        for ms in 101..=131 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.get(), Some(Duration::from_millis(95)), "recomputed every 32 records, not on each");
        l.record(Duration::from_millis(132));
        // 132 samples: the 95th percentile is the 126th.
        assert_eq!(l.get(), Some(Duration::from_millis(126)));
    }
}
