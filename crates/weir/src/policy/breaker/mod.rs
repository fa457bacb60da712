//! [`Breaker`]: a circuit breaker usable around any async call, outside
//! tower.
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
//! use weir::policy::breaker::{Breaker, CircuitOpen, State};
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
mod call;
mod error;
mod machine;
mod metrics;
mod permit;
mod state;
mod window;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

pub use self::builder::BreakerBuilder;
use self::builder::Settings;
pub use self::call::Call;
use self::call::CallState;
pub use self::error::CircuitOpen;
use self::metrics::Striped;
pub use self::permit::{OwnedPermit, Permit};
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

/// Whether `err` is a cancellation or deadline (weir's [`Cancelled`] or
/// [`DeadlineExceeded`] in its chain): use with [`Breaker::call_if`] so
/// cancelled work does not trip the breaker.
pub fn is_cancellation(err: &(dyn std::error::Error + 'static)) -> bool {
    is::<Cancelled>(err) || is::<DeadlineExceeded>(err)
}
