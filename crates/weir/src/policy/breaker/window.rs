//! Failure-rate windows: the last N calls, or the calls of the last T.

use std::collections::VecDeque;
use std::time::Duration;

/// Which calls a failure rate is measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `span`, kept in ten buckets.
    Time(Duration),
}

/// A recorded window of outcomes.
#[derive(Debug)]
pub(crate) enum Window {
    Count { outcomes: VecDeque<bool>, size: usize, failures: u32 },
    Time { buckets: VecDeque<Bucket>, bucket: u64, span: u64 },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    start: u64,
    calls: u32,
    failures: u32,
}

impl Window {
    pub(crate) fn new(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Count(n) => Window::Count { outcomes: VecDeque::new(), size: n.max(1) as usize, failures: 0 },
            WindowKind::Time(span) => {
                let span = (span.as_nanos() as u64).max(10);
                Window::Time { buckets: VecDeque::new(), bucket: span / 10, span }
            }
        }
    }

    /// Records one outcome at `now` (nanoseconds on the breaker's clock) and
    /// returns `(calls, failures)` in the window.
    pub(crate) fn record(&mut self, failed: bool, now: u64) -> (u32, u32) {
        match self {
            Window::Count { outcomes, size, failures } => {
                outcomes.push_back(failed);
                *failures += u32::from(failed);
                if outcomes.len() > *size && outcomes.pop_front() == Some(true) {
                    *failures -= 1;
                }
                (outcomes.len() as u32, *failures)
            }
            Window::Time { buckets, bucket, span } => {
                while buckets.front().is_some_and(|b| b.start + *span <= now) {
                    buckets.pop_front();
                }
                let start = now - now % *bucket;
                match buckets.back_mut() {
                    Some(last) if last.start == start => {
                        last.calls += 1;
                        last.failures += u32::from(failed);
                    }
                    _ => buckets.push_back(Bucket { start, calls: 1, failures: u32::from(failed) }),
                }
                buckets.iter().fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Window::Count { outcomes, failures, .. } => {
                outcomes.clear();
                *failures = 0;
            }
            Window::Time { buckets, .. } => buckets.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_window_forgets_the_oldest_call() {
        let mut w = Window::new(WindowKind::Count(3));
        assert_eq!(w.record(true, 0), (1, 1));
        assert_eq!(w.record(false, 0), (2, 1));
        assert_eq!(w.record(false, 0), (3, 1));
        assert_eq!(w.record(false, 0), (3, 0), "the failure fell out");
    }

    #[test]
    fn a_time_window_forgets_calls_older_than_its_span() {
        let second = 1_000_000_000;
        let mut w = Window::new(WindowKind::Time(Duration::from_secs(10)));
        assert_eq!(w.record(true, 0), (1, 1));
        assert_eq!(w.record(true, 5 * second), (2, 2));
        assert_eq!(w.record(false, 10 * second), (2, 1), "the call at 0 s left the window");
        assert_eq!(w.record(false, 30 * second), (1, 0));
    }

    #[test]
    fn calls_in_one_bucket_all_count() {
        let mut w = Window::new(WindowKind::Time(Duration::from_secs(10)));
        assert_eq!(w.record(true, 7), (1, 1));
        assert_eq!(w.record(true, 8), (2, 2));
        assert_eq!(w.record(false, 9), (3, 2));
    }

    #[test]
    fn a_call_belongs_to_the_bucket_it_falls_in() {
        // Buckets of 1 s: a call at 0.9 s is in the bucket starting at 0 s,
        // which leaves a 10 s window at 10 s, not at 10.9 s.
        let ms = 1_000_000;
        let mut w = Window::new(WindowKind::Time(Duration::from_secs(10)));
        assert_eq!(w.record(true, 900 * ms), (1, 1));
        assert_eq!(w.record(false, 10_500 * ms), (1, 0), "the bucket of 0.9 s ended at 10 s");
    }
}
