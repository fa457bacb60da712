//! Permits: leave for one call, reported by hand (outside [`Breaker::call`](super::Breaker::call)).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Inner;

/// Leave to make one call through a [`Breaker`](super::Breaker); report how it went.
#[derive(Debug)]
#[must_use = "a permit dropped without a report is ignored"]
pub struct Permit<'a> {
    pub(super) inner: &'a Inner,
    pub(super) generation: u32,
    pub(super) probe: bool,
    pub(super) done: bool,
}

impl Permit<'_> {
    /// The call succeeded.
    #[inline]
    pub fn success(mut self) {
        self.done = true;
        self.inner.on_success(self.generation, self.probe);
    }

    /// The call failed.
    #[inline]
    pub fn failure(mut self) {
        self.done = true;
        self.inner.on_failure(self.generation, self.probe);
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.done {
            self.inner.ignored.fetch_add(1, Ordering::Relaxed);
            if self.probe {
                self.inner.release_probe(self.generation);
            }
        }
    }
}

/// A [`Permit`] that owns a handle on its breaker.
#[derive(Debug)]
#[must_use = "a permit dropped without a report is ignored"]
pub struct OwnedPermit {
    pub(super) inner: Arc<Inner>,
    pub(super) generation: u32,
    pub(super) probe: bool,
    pub(super) done: bool,
}

impl OwnedPermit {
    /// The call succeeded.
    pub fn success(mut self) {
        self.done = true;
        self.inner.on_success(self.generation, self.probe);
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.done = true;
        self.inner.on_failure(self.generation, self.probe);
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        if !self.done {
            drop(Permit { inner: &self.inner, generation: self.generation, probe: self.probe, done: false });
        }
    }
}
