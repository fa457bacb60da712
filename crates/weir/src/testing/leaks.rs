use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::policy::bulkhead::Bulkhead;

/// Tasks were still alive, or slots still held, after the work under test
/// ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaked {
    /// Tasks alive beyond the baseline.
    pub leaked: usize,
    /// Alive when the check started.
    pub before: usize,
    /// Alive at the end.
    pub now: usize,
    /// How long the check waited for them to end.
    pub waited: Duration,
    /// Watched bulkheads that still hold slots: `(name, slots held)`.
    pub held: Vec<(String, usize)>,
}

impl fmt::Display for Leaked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.leaked > 0 {
            write!(
                f,
                "{} task(s) still alive {:?} after the work ended (alive before: {}, now: {}): a task was spawned and never joined, or ignores cancellation",
                self.leaked, self.waited, self.before, self.now
            )?;
        }
        for (i, (name, slots)) in self.held.iter().enumerate() {
            let sep = if i == 0 && self.leaked == 0 { "" } else { "; " };
            write!(f, "{sep}bulkhead `{name}` still holds {slots} slot(s): a permit was kept past its call")?;
        }
        Ok(())
    }
}

impl std::error::Error for Leaked {}

/// Counts the runtime's alive tasks before and after the work under test
/// (Go's `runtime.NumGoroutine()` check, bonus task 2), and the slots held
/// in the bulkheads it [watches](Self::watch).
///
/// # Examples
/// ```
/// use weir::testing::LeakCheck;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let check = LeakCheck::start();
/// let leaked = tokio::spawn(std::future::pending::<()>()); // never joined, never ends
/// let err = check.finish().await.unwrap_err();
/// assert_eq!(err.leaked, 1);
/// leaked.abort();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LeakCheck {
    before: usize,
    watched: Vec<Bulkhead>,
}

fn alive() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

impl LeakCheck {
    /// Records the alive tasks now.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start() -> Self {
        Self { before: alive(), watched: Vec::new() }
    }

    /// Also checks, at the end, that `bulkhead` holds no slot (every permit
    /// was given back). For a keyed bulkhead, watch each key's
    /// [`get`](crate::policy::bulkhead::KeyedBulkhead::get).
    pub fn watch(mut self, bulkhead: &Bulkhead) -> Self {
        self.watched.push(bulkhead.clone());
        self
    }

    /// Waits up to 100 ms (real time) for the alive tasks to be back to the
    /// baseline and the watched bulkheads to be free — an aborted task is
    /// released by a runtime thread just after its abort — and reports what
    /// is left.
    ///
    /// # Errors
    /// [`Leaked`] naming how many tasks outlived the work and which
    /// bulkheads still hold slots.
    pub async fn finish(self) -> Result<(), Leaked> {
        let started = Instant::now();
        loop {
            let now = alive();
            let held: Vec<(String, usize)> = self
                .watched
                .iter()
                .map(|b| (b.name().to_owned(), b.metrics().in_flight))
                .filter(|(_, slots)| *slots > 0)
                .collect();
            if now <= self.before && held.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= Duration::from_millis(100) {
                let leaked = now.saturating_sub(self.before);
                return Err(Leaked { leaked, before: self.before, now, waited: started.elapsed(), held });
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The work did not finish within its bound after cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("did not drain within {bound:?} of cancel: took {took:?}; some stage ignores cancellation")]
pub struct DrainTooSlow {
    /// The bound.
    pub bound: Duration,
    /// How long it took (at least the bound, when it had to be cut off).
    pub took: Duration,
}

/// Calls `cancel`, then waits for `finished` and checks that it completed
/// within `bound` of the cancel (bonus task 5); returns how long it took.
/// Measured in real time: use it on a multi-thread runtime, not on paused
/// time.
///
/// # Errors
/// [`DrainTooSlow`] with the time it took, or `bound` if it had to be cut
/// off (then `finished` is dropped).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use weir::group::Group;
/// use weir::testing::drain_within;
///
/// # #[tokio::main]
/// # async fn main() {
/// let group: Group<anyhow::Error> = Group::new();
/// for _ in 0..1000 {
///     group.spawn(std::future::pending()).await;
/// }
/// let token = group.token();
/// let took = drain_within(Duration::from_millis(100), || token.cancel(), group.wait()).await.unwrap();
/// assert!(took < Duration::from_millis(100));
/// # }
/// ```
pub async fn drain_within<T>(
    bound: Duration,
    cancel: impl FnOnce(),
    finished: impl Future<Output = T>,
) -> Result<Duration, DrainTooSlow> {
    let mut finished = std::pin::pin!(finished);
    // Let the work start before cancelling it.
    if futures_util::poll!(finished.as_mut()).is_ready() {
        return Ok(Duration::ZERO);
    }
    let started = Instant::now();
    cancel();
    match crate::policy::timeout::Timeout::unvalidated(bound).bound(finished).await {
        Some(_) => {
            let took = started.elapsed();
            if took <= bound { Ok(took) } else { Err(DrainTooSlow { bound, took }) }
        }
        None => Err(DrainTooSlow { bound, took: started.elapsed().max(bound) }),
    }
}
