//! Counters that many tasks bump at once without contending: one cache
//! line per stripe, a stripe per thread.

use std::sync::atomic::Ordering;

use crate::sync::AtomicU64;

const STRIPES: usize = 8;

#[repr(align(128))]
#[derive(Debug, Default)]
struct Line(AtomicU64);

/// A counter split over cache lines; each thread adds to its own stripe.
#[derive(Debug)]
pub(crate) struct Striped([Line; STRIPES]);

impl Default for Striped {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Line::default()))
    }
}

/// Under the model checker every thread uses one stripe: the stripe only
/// spreads contention, it is not part of what is checked.
#[cfg(weir_loom)]
fn stripe() -> usize {
    0
}

#[cfg(not(weir_loom))]
#[inline]
fn stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialized: reading it is one thread-relative load.
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| match s.get() {
        usize::MAX => {
            let stripe = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(stripe);
            stripe
        }
        stripe => stripe,
    })
}

impl Striped {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|l| l.0.load(Ordering::Relaxed)).sum()
    }
}
