//! The atomics of weir's lock-free parts, swapped for loom's under
//! `--cfg weir_loom` so the model checker can explore every interleaving
//! (`tests/loom_breaker.rs`). A custom cfg name, because `--cfg loom`
//! would also switch tokio to loom internals.

#[cfg(weir_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64};
#[cfg(not(weir_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64};
