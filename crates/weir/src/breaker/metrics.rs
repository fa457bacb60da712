//! Counters that many tasks bump at once without contending: one cache
//! line per stripe, a stripe per thread.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 8;

#[repr(align(128))]
#[derive(Debug, Default)]
struct Line(AtomicU64);

/// A counter split over cache lines; each thread adds to its own stripe.
#[derive(Debug, Default)]
pub(crate) struct Striped([Line; STRIPES]);

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl Striped {
    pub(crate) fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|l| l.0.load(Ordering::Relaxed)).sum()
    }
}
