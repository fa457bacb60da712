//! [`Breaker`]: a circuit breaker usable around any async call, outside
//! tower (seed task 15).
//!
//! ```text
//!            failures reach a threshold
//!   ┌────────┐ ───────────────────────▶ ┌────────┐
//!   │ Closed │                          │  Open  │ ◀─┐ calls fail fast
//!   └────────┘ ◀──┐                     └────────┘   │ with CircuitOpen
//!        ▲        │ enough probe             │ open duration passed
//!        │        │ successes                ▼       │
//!        │        └──────────────────── ┌──────────┐ │ a probe fails
//!        └───────── reset ───────────── │ HalfOpen │─┘ (duration may grow)
//!                                       └──────────┘
//!                                       a bounded number of probes pass
//! ```
//!
//! - Thresholds: consecutive failures (default 5), and/or a failure rate
//!   over the last N calls or the last T, with a minimum number of calls.
//! - A call only counts if it ends: a call whose future is dropped
//!   (cancelled) is ignored, and so is the result of a call admitted before
//!   the last state change (each state has a generation).
//! - The closed, succeeding path reads the state word and writes nothing
//!   shared (successes go to a per-thread counter stripe); no allocation.
//! - All time goes through `tokio::time`: a 30 s open duration is tested in
//!   microseconds on paused time.
//!
//! # Where it sits among policies
//! Retry outside breaker outside bulkhead outside timeout: a retry should
//! see `CircuitOpen` and stop (it is not transient for that call), the
//! breaker should count timeouts as failures, and the bulkhead should bound
//! only calls the breaker let through.
//!
//! # Examples
//! ```
//! use std::time::Duration;
//! use weir::breaker::{Breaker, CircuitOpen, State};
//! use weir::error::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::builder().consecutive_failures(2).open_for(Duration::from_secs(30)).build().unwrap();
//! for _ in 0..2 {
//!     let _ = breaker.call(|| async { Err::<(), BoxError>("down".into()) }).await;
//! }
//! assert_eq!(breaker.state(), State::Open);
//! let err = breaker.call(|| async { Ok::<(), BoxError>(()) }).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! tokio::time::advance(Duration::from_secs(30)).await;
//! breaker.call(|| async { Ok::<(), BoxError>(()) }).await.unwrap(); // the probe
//! assert_eq!(breaker.state(), State::Closed);
//! # }
//! ```

mod builder;
mod error;
mod metrics;
mod state;
mod window;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

pub use self::builder::BreakerBuilder;
use self::builder::Settings;
pub use self::error::CircuitOpen;
use self::metrics::Striped;
pub use self::state::State;
use self::state::Word;
use self::window::Window;
pub use self::window::WindowKind;
use crate::error::{Cancelled, DeadlineExceeded, is};
use crate::sync::{AtomicU32, AtomicU64};

/// A circuit breaker; cheap to clone (clones share the state).
///
/// See the [module docs](self) for the state machine and
/// [`BreakerBuilder`] for the settings and their defaults.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

struct Inner {
    word: AtomicU64,
    /// When an open breaker lets probes through, in ns since `base`.
    open_until: AtomicU64,
    /// Openings since the breaker last closed; drives open-duration growth.
    reopenings: AtomicU32,
    base: Instant,
    settings: Settings,
    window: Option<Mutex<Window>>,
    successes: Striped,
    failures: AtomicU64,
    rejections: Striped,
    ignored: AtomicU64,
    openings: AtomicU64,
}

/// One state change, as listeners and logs see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
}

/// Counts since the breaker was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerMetrics {
    /// The state now.
    pub state: State,
    /// Calls that succeeded (or failed in a way not counted as failure).
    pub successes: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls rejected without running.
    pub rejections: u64,
    /// Calls that ended without counting: cancelled, or admitted before a
    /// state change.
    pub ignored: u64,
    /// How many times the breaker opened.
    pub openings: u64,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker").field("name", &self.inner.settings.name).field("state", &self.state()).finish()
    }
}

impl Breaker {
    /// Configures a breaker.
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::default()
    }

    fn from_settings(settings: Settings) -> Self {
        let window = settings.rate.map(|r| Mutex::new(Window::new(r.window)));
        let inner = Inner {
            word: AtomicU64::new(Word::new(State::Closed, 0).0),
            open_until: AtomicU64::new(0),
            reopenings: AtomicU32::new(0),
            base: Instant::now(),
            settings,
            window,
            successes: Striped::default(),
            failures: AtomicU64::new(0),
            rejections: Striped::default(),
            ignored: AtomicU64::new(0),
            openings: AtomicU64::new(0),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.settings.name
    }

    /// The state now. An open breaker whose duration has passed reports
    /// `Open` until a call arrives and moves it to `HalfOpen`.
    pub fn state(&self) -> State {
        self.inner.load().state()
    }

    /// Counts since the breaker was built.
    pub fn metrics(&self) -> BreakerMetrics {
        let i = &self.inner;
        BreakerMetrics {
            state: self.state(),
            successes: i.successes.sum(),
            failures: i.failures.load(Ordering::Relaxed),
            rejections: i.rejections.sum(),
            ignored: i.ignored.load(Ordering::Relaxed),
            openings: i.openings.load(Ordering::Relaxed),
        }
    }

    /// Runs `call` if the breaker admits it, and counts every error as a
    /// failure.
    ///
    /// # Errors
    /// [`CircuitOpen`] (converted into `E`) when rejected; otherwise the
    /// call's own error, unchanged.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future drops the call; it is not counted,
    /// and a half-open probe slot it held is freed.
    pub fn call<T, E, F, Fut>(&self, call: F) -> Call<'_, F, Fut, fn(&E) -> bool>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<CircuitOpen>,
    {
        self.call_if(call, count_every_error::<E>)
    }

    /// Like [`call`](Self::call), counting an error as a failure only if
    /// `is_failure` says so; other errors count as successes (e.g. a
    /// "not found" that says nothing about the dependency's health). See
    /// [`is_cancellation`] for a classifier that ignores cancellations.
    ///
    /// # Errors
    /// As [`call`](Self::call).
    ///
    /// # Cancel safety
    /// As [`call`](Self::call).
    pub fn call_if<T, E, F, Fut, P>(&self, call: F, is_failure: P) -> Call<'_, F, Fut, P>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<CircuitOpen>,
        P: Fn(&E) -> bool,
    {
        Call { inner: &self.inner, state: CallState::Start { call: Some(call) }, is_failure, permit: None }
    }

    /// Asks to make one call. Report its outcome with the permit; a permit
    /// dropped without a report is ignored.
    ///
    /// # Errors
    /// [`CircuitOpen`] when the breaker is open, forced open, or half-open
    /// with every probe slot taken.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, CircuitOpen> {
        self.inner.try_acquire().map(|(generation, probe)| Permit {
            inner: &self.inner,
            generation,
            probe,
            done: false,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a
    /// handle on the breaker, for futures that must be `'static` (tower).
    ///
    /// # Errors
    /// [`CircuitOpen`], as [`try_acquire`](Self::try_acquire).
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, CircuitOpen> {
        self.inner.try_acquire().map(|(generation, probe)| OwnedPermit {
            inner: Arc::clone(&self.inner),
            generation,
            probe,
            done: false,
        })
    }

    /// Holds the breaker open until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.inner.transition_to(State::ForcedOpen);
    }

    /// Closes the breaker and clears its counts and growth.
    pub fn reset(&self) {
        self.inner.reopenings.store(0, Ordering::Relaxed);
        self.inner.clear_window();
        self.inner.transition_to(State::Closed);
    }
}

fn count_every_error<E>(_: &E) -> bool {
    true
}

pin_project_lite::pin_project! {
    /// The future of [`Breaker::call`]: admits the call on first poll,
    /// runs it, reports its outcome.
    #[must_use = "futures do nothing unless polled"]
    pub struct Call<'a, F, Fut, P> {
        inner: &'a Inner,
        #[pin]
        state: CallState<F, Fut>,
        is_failure: P,
        permit: Option<(u32, bool)>,
    }

    impl<F, Fut, P> PinnedDrop for Call<'_, F, Fut, P> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped while the call ran: cancelled, so not counted.
            if let Some((generation, probe)) = this.permit.take() {
                drop(Permit { inner: this.inner, generation, probe, done: false });
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = CallStateProj]
    enum CallState<F, Fut> {
        /// Not yet admitted.
        Start { call: Option<F> },
        /// Admitted and running.
        Running { #[pin] future: Fut },
    }
}

impl<T, E, F, Fut, P> Future for Call<'_, F, Fut, P>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<CircuitOpen>,
    P: Fn(&E) -> bool,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.project();
        if let CallStateProj::Start { call } = this.state.as_mut().project() {
            let call = call.take().expect("polled after admission");
            *this.permit = Some(this.inner.try_acquire()?);
            this.state.set(CallState::Running { future: call() });
        }
        let CallStateProj::Running { future } = this.state.project() else { unreachable!("admitted above") };
        let result = ready!(future.poll(cx));
        let (generation, probe) = this.permit.take().expect("admitted calls hold a permit");
        match &result {
            Err(error) if (this.is_failure)(error) => this.inner.on_failure(generation, probe),
            _ => this.inner.on_success(generation, probe),
        }
        Poll::Ready(result)
    }
}

/// Whether `err` is a cancellation or deadline (weir's [`Cancelled`] or
/// [`DeadlineExceeded`] in its chain): use with [`Breaker::call_if`] so
/// cancelled work does not trip the breaker.
pub fn is_cancellation(err: &(dyn std::error::Error + 'static)) -> bool {
    is::<Cancelled>(err) || is::<DeadlineExceeded>(err)
}

/// Leave to make one call through a [`Breaker`]; report how it went.
#[derive(Debug)]
#[must_use = "a permit dropped without a report is ignored"]
pub struct Permit<'a> {
    inner: &'a Inner,
    generation: u32,
    probe: bool,
    done: bool,
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
    inner: Arc<Inner>,
    generation: u32,
    probe: bool,
    done: bool,
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

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker").field("name", &self.settings.name).finish_non_exhaustive()
    }
}

impl Inner {
    #[inline]
    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    fn swap(&self, from: Word, to: Word) -> bool {
        self.word.compare_exchange(from.0, to.0, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// `(generation, is_probe)` of an admitted call.
    #[inline]
    fn try_acquire(&self) -> Result<(u32, bool), CircuitOpen> {
        loop {
            let word = self.load();
            match word.state() {
                State::Closed => return Ok((word.generation(), false)),
                State::Open => {
                    let (now, until) = (self.now(), self.open_until.load(Ordering::Acquire));
                    if now < until {
                        return Err(self.reject(Some(Duration::from_nanos(until - now))));
                    }
                    if self.swap(word, word.next(State::HalfOpen)) {
                        self.changed(State::Open, State::HalfOpen);
                    }
                }
                State::HalfOpen if word.probes() < self.settings.probes => {
                    if self.swap(word, word.with_probes(word.probes() + 1)) {
                        return Ok((word.generation(), true));
                    }
                }
                State::HalfOpen | State::ForcedOpen => return Err(self.reject(None)),
            }
        }
    }

    fn reject(&self, retry_after: Option<Duration>) -> CircuitOpen {
        self.rejections.add(1);
        tracing::debug!(breaker = %self.settings.name, "call rejected: circuit open");
        CircuitOpen::new(self.settings.name.clone(), retry_after)
    }

    #[inline]
    fn on_success(&self, generation: u32, probe: bool) {
        self.successes.add(1);
        let rate_trip = self.record_in_window(generation, false);
        loop {
            let word = self.load();
            if word.generation() != generation {
                return;
            }
            let next = match word.state() {
                State::Closed if rate_trip => return self.open(word),
                State::Closed if word.count() == 0 => return,
                State::Closed => word.with_count(0),
                State::HalfOpen if probe && word.count() + 1 >= self.settings.successes_to_close => {
                    word.next(State::Closed)
                }
                State::HalfOpen if probe => {
                    word.with_count(word.count() + 1).with_probes(word.probes().saturating_sub(1))
                }
                _ => return,
            };
            if self.swap(word, next) {
                if next.state() == State::Closed && word.state() == State::HalfOpen {
                    self.reopenings.store(0, Ordering::Relaxed);
                    self.clear_window();
                    self.changed(State::HalfOpen, State::Closed);
                }
                return;
            }
        }
    }

    fn on_failure(&self, generation: u32, probe: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let rate_trip = self.record_in_window(generation, true);
        loop {
            let word = self.load();
            if word.generation() != generation {
                return;
            }
            match word.state() {
                State::Closed => {
                    let failures = word.count() + 1;
                    let consecutive_trip = self.settings.consecutive_failures.is_some_and(|n| failures >= n);
                    if consecutive_trip || rate_trip {
                        return self.open(word);
                    }
                    if self.swap(word, word.with_count(failures)) {
                        return;
                    }
                }
                State::HalfOpen if probe => return self.open(word),
                _ => return,
            }
        }
    }

    /// Records a closed-state outcome in the rate window; whether the rate
    /// threshold is now reached.
    #[inline]
    fn record_in_window(&self, generation: u32, failed: bool) -> bool {
        let (Some(window), Some(rate)) = (&self.window, self.settings.rate) else { return false };
        let word = self.load();
        if word.state() != State::Closed || word.generation() != generation {
            return false;
        }
        let (calls, failures) = window.lock().unwrap_or_else(|p| p.into_inner()).record(failed, self.now());
        calls >= rate.min_calls.max(1) && f64::from(failures) >= rate.rate * f64::from(calls)
    }

    fn clear_window(&self) {
        if let Some(window) = &self.window {
            window.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// Opens from `word` (closed or half-open), unless another change won.
    fn open(&self, word: Word) {
        let reopenings = self.reopenings.load(Ordering::Relaxed);
        let duration = match self.settings.open_growth {
            Some((factor, max)) => self.settings.open_for.mul_f64(factor.powi(reopenings.min(64) as i32)).min(max),
            None => self.settings.open_for,
        };
        // Published by the swap below: a caller that sees Open reads this.
        self.open_until.store(self.now() + duration.as_nanos() as u64, Ordering::Release);
        if self.swap(word, word.next(State::Open)) {
            self.reopenings.fetch_add(1, Ordering::Relaxed);
            self.openings.fetch_add(1, Ordering::Relaxed);
            self.clear_window();
            self.changed(word.state(), State::Open);
        } else {
            // Someone else changed the state first; decide again from it.
            let now = self.load();
            if now.generation() == word.generation() {
                match now.state() {
                    State::Closed | State::HalfOpen => self.open(now),
                    _ => {}
                }
            }
        }
    }

    fn release_probe(&self, generation: u32) {
        loop {
            let word = self.load();
            if word.generation() != generation || word.state() != State::HalfOpen {
                return;
            }
            if self.swap(word, word.with_probes(word.probes().saturating_sub(1))) {
                return;
            }
        }
    }

    fn transition_to(&self, state: State) {
        loop {
            let word = self.load();
            if self.swap(word, word.next(state)) {
                if word.state() != state {
                    self.changed(word.state(), state);
                }
                return;
            }
        }
    }

    fn changed(&self, from: State, to: State) {
        tracing::info!(breaker = %self.settings.name, %from, %to, "breaker state change");
        let change = StateChange { breaker: self.settings.name.clone(), from, to };
        for listener in &self.settings.listeners {
            listener(&change);
        }
    }
}
