use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ConfigError;

/// What an injected fault does to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails with [`InjectedFault`] instead of running.
    Error,
    /// The call panics instead of running.
    Panic,
    /// The call runs after a delay.
    Delay(Duration),
    /// The call never finishes: it waits until it is dropped (cancelled).
    Hang,
}

/// The error of an injected [`Fault::Error`]: says which call it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected fault on call {call}")]
pub struct InjectedFault {
    call: u64,
}

impl InjectedFault {
    /// The call it was injected into, from 1.
    pub fn call(&self) -> u64 {
        self.call
    }
}

/// How many faults of each kind were injected, over how many calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Calls seen.
    pub calls: u64,
    /// Errors injected.
    pub errors: u64,
    /// Panics injected.
    pub panics: u64,
    /// Delays injected.
    pub delays: u64,
    /// Hangs injected.
    pub hangs: u64,
}

impl FaultCounts {
    /// Every fault injected.
    pub fn faults(&self) -> u64 {
        self.errors + self.panics + self.delays + self.hangs
    }
}

/// When a fault strikes.
#[derive(Debug, Clone, Copy)]
enum When {
    Probability(f64),
    Nth(u64),
    Every(u64),
}

/// Injects faults into calls, from a seed (bonus task 3's `FaultInjector`).
///
/// # Examples
/// ```
/// use weir::testing::{Fault, FaultInjector, InjectedFault};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let faults = FaultInjector::builder().seed(7).every(3, Fault::Error).build().unwrap();
/// let mut failed = 0;
/// for _ in 0..9 {
///     if faults.call(|| async { Ok::<_, InjectedFault>(()) }).await.is_err() {
///         failed += 1;
///     }
/// }
/// assert_eq!(failed, 3);
/// assert_eq!(faults.counts().errors, 3);
/// # }
/// ```
#[derive(Debug)]
pub struct FaultInjector {
    when: When,
    fault: Fault,
    rng: Mutex<fastrand::Rng>,
    calls: AtomicU64,
    injected: [AtomicU64; 4],
}

/// Configures a [`FaultInjector`].
///
/// # Defaults
/// - seed 0;
/// - no fault (call `probability`, `nth` or `every`).
#[derive(Debug, Clone)]
pub struct FaultInjectorBuilder {
    seed: u64,
    rule: Option<(When, Fault)>,
}

impl FaultInjector {
    /// Configures an injector.
    pub fn builder() -> FaultInjectorBuilder {
        FaultInjectorBuilder { seed: 0, rule: None }
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        let get = |i: usize| self.injected[i].load(Ordering::Relaxed);
        FaultCounts {
            calls: self.calls.load(Ordering::Relaxed),
            errors: get(0),
            panics: get(1),
            delays: get(2),
            hangs: get(3),
        }
    }

    /// The fault for the next call, if any (and counts it).
    fn next(&self) -> (u64, Option<Fault>) {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let strike = match self.when {
            When::Probability(p) => self.rng.lock().unwrap_or_else(|e| e.into_inner()).f64() < p,
            When::Nth(n) => call == n,
            When::Every(k) => call.is_multiple_of(k),
        };
        if !strike {
            return (call, None);
        }
        let slot = match self.fault {
            Fault::Error => 0,
            Fault::Panic => 1,
            Fault::Delay(_) => 2,
            Fault::Hang => 3,
        };
        self.injected[slot].fetch_add(1, Ordering::Relaxed);
        (call, Some(self.fault))
    }

    /// Runs `call`, or injects the fault its turn calls for.
    ///
    /// # Errors
    /// [`InjectedFault`] (converted into `E`) for an injected error; the
    /// call's own error otherwise.
    ///
    /// # Panics
    /// When a [`Fault::Panic`] is injected, on purpose.
    ///
    /// # Cancel safety
    /// Cancel safe; an injected hang ends only by being dropped.
    pub async fn call<T, E, F, Fut>(&self, call: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<InjectedFault>,
    {
        let (n, fault) = self.next();
        match fault {
            None => call().await,
            Some(Fault::Error) => Err(InjectedFault { call: n }.into()),
            Some(Fault::Panic) => panic!("{INJECTED_PANIC}{n}"),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                call().await
            }
            Some(Fault::Hang) => std::future::pending().await,
        }
    }
}

impl FaultInjectorBuilder {
    /// The seed: the same seed injects the same faults into the same calls.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Injects `fault` into each call with probability `p` (e.g. 0.01).
    pub fn probability(mut self, p: f64, fault: Fault) -> Self {
        self.rule = Some((When::Probability(p), fault));
        self
    }

    /// Injects `fault` into the `n`-th call (from 1) only.
    pub fn nth(mut self, n: u64, fault: Fault) -> Self {
        self.rule = Some((When::Nth(n), fault));
        self
    }

    /// Injects `fault` into every `k`-th call.
    pub fn every(mut self, k: u64, fault: Fault) -> Self {
        self.rule = Some((When::Every(k), fault));
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] for no rule, a probability outside [0, 1], or a
    /// period or position of 0.
    pub fn build(self) -> Result<FaultInjector, ConfigError> {
        let Some((when, fault)) = self.rule else {
            return Err(ConfigError::new("fault rule", "none", "call probability, nth or every"));
        };
        match when {
            When::Probability(p) if !(0.0..=1.0).contains(&p) => {
                return Err(ConfigError::new("fault probability", p, "use a share in [0, 1]"));
            }
            When::Nth(0) | When::Every(0) => {
                return Err(ConfigError::new("fault call number", 0, "calls count from 1"));
            }
            _ => {}
        }
        Ok(FaultInjector {
            when,
            fault,
            rng: Mutex::new(fastrand::Rng::with_seed(self.seed)),
            calls: AtomicU64::new(0),
            injected: Default::default(),
        })
    }
}

/// The prefix of every injected panic's message.
const INJECTED_PANIC: &str = "injected panic on call ";

/// Keeps injected panics out of the test output: installs, once per
/// process, a panic hook that says nothing for a panic injected by a
/// [`FaultInjector`] and hands every other panic to the hook that was set
/// before (so a real failure still prints its message and backtrace).
///
/// A campaign that injects hundreds of panics otherwise buries its own
/// report under their messages.
///
/// ```
/// weir::testing::quiet_injected_panics();
/// let caught = std::panic::catch_unwind(|| panic!("a real bug"));
/// assert!(caught.is_err()); // printed as usual
/// ```
pub fn quiet_injected_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied());
            if !message.is_some_and(|m| m.starts_with(INJECTED_PANIC)) {
                previous(info);
            }
        }));
    });
}
