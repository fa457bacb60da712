use std::future::Future;
use std::time::{Duration, Instant};

/// Tasks were still alive after the work under test ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{leaked} task(s) still alive {waited:?} after the work ended (alive before: {before}, now: {now}): a task was spawned and never joined, or ignores cancellation"
)]
pub struct Leaked {
    /// Tasks alive beyond the baseline.
    pub leaked: usize,
    /// Alive when the check started.
    pub before: usize,
    /// Alive at the end.
    pub now: usize,
    /// How long the check waited for them to end.
    pub waited: Duration,
}

/// Counts the runtime's alive tasks before and after the work under test
/// (Go's `runtime.NumGoroutine()` check, bonus task 2).
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
#[derive(Debug, Clone, Copy)]
pub struct LeakCheck {
    before: usize,
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
        Self { before: alive() }
    }

    /// Waits up to 100 ms (real time) for the alive tasks to be back to the
    /// baseline — an aborted task is released by a runtime thread just after
    /// its abort — and reports the ones left.
    ///
    /// # Errors
    /// [`Leaked`] naming how many tasks outlived the work.
    pub async fn finish(self) -> Result<(), Leaked> {
        let started = Instant::now();
        loop {
            let now = alive();
            if now <= self.before {
                return Ok(());
            }
            if started.elapsed() >= Duration::from_millis(100) {
                return Err(Leaked { leaked: now - self.before, before: self.before, now, waited: started.elapsed() });
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
    match tokio::time::timeout(bound, finished).await {
        Ok(_) => {
            let took = started.elapsed();
            if took <= bound { Ok(took) } else { Err(DrainTooSlow { bound, took }) }
        }
        Err(_) => Err(DrainTooSlow { bound, took: started.elapsed().max(bound) }),
    }
}
