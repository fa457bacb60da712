//! The atomics of weir's lock-free parts, swapped for loom's under
//! `--cfg weir_loom` so the model checker can explore every interleaving
//! (`tests/loom_breaker.rs`). A custom cfg name, because `--cfg loom`
//! would also switch tokio to loom internals.

#[cfg(weir_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(weir_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(not(weir_loom))]
pub(crate) use std::sync::Mutex;
#[cfg(not(weir_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};

/// A waker slot: futures-util's, or loom's under the model checker.
#[derive(Debug, Default)]
pub(crate) struct AtomicWaker(
    #[cfg(not(weir_loom))] futures_util::task::AtomicWaker,
    #[cfg(weir_loom)] loom::future::AtomicWaker,
);

impl AtomicWaker {
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        #[cfg(not(weir_loom))]
        self.0.register(waker);
        #[cfg(weir_loom)]
        self.0.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.0.wake();
    }
}
