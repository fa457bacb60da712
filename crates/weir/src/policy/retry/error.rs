use std::fmt;

/// Why retrying stopped without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    Exhausted,
    Permanent,
    Elapsed,
    Budget,
    Cancelled,
}

/// Retrying ended without success: says why, after how many attempts, and
/// keeps the last error as `source()`.
///
/// # Examples
/// ```
/// use weir::policy::retry::RetryPolicy;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
/// let err = policy.call(|| async { Err::<(), _>(std::io::Error::other("down")) }).await.unwrap_err();
/// assert!(err.is_exhausted());
/// assert_eq!(err.attempts(), 3);
/// assert_eq!(err.to_string(), "gave up after 3 attempts: down");
/// # }
/// ```
pub struct RetryError<E> {
    why: GiveUp,
    attempts: u32,
    last: Option<E>,
}

impl<E> RetryError<E> {
    pub(crate) fn new(why: GiveUp, attempts: u32, last: Option<E>) -> Self {
        Self { why, attempts, last }
    }

    /// The one attempt of a call that is not retried failed with `last`.
    pub(crate) fn once(last: E) -> Self {
        Self::new(GiveUp::Exhausted, 1, Some(last))
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Every allowed attempt failed.
    pub fn is_exhausted(&self) -> bool {
        self.why == GiveUp::Exhausted
    }

    /// The last error was classified permanent, so no retry was made.
    pub fn is_permanent(&self) -> bool {
        self.why == GiveUp::Permanent
    }

    /// The maximum elapsed time would have passed before the next attempt.
    pub fn is_elapsed(&self) -> bool {
        self.why == GiveUp::Elapsed
    }

    /// The retry budget was spent.
    pub fn is_budget_exhausted(&self) -> bool {
        self.why == GiveUp::Budget
    }

    /// The cancellation token fired while waiting to retry.
    pub fn is_cancelled(&self) -> bool {
        self.why == GiveUp::Cancelled
    }

    /// The last error, if an attempt was made.
    pub fn last(&self) -> Option<&E> {
        self.last.as_ref()
    }

    /// Takes the last error out.
    pub fn into_last(self) -> Option<E> {
        self.last
    }

    /// The last error of a pass that made an attempt: every pass does but
    /// one cancelled before its first attempt.
    pub(crate) fn into_attempted(self) -> E {
        self.last.expect("a failed attempt keeps its error")
    }
}

impl<E: fmt::Debug> fmt::Debug for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("why", &self.why)
            .field("attempts", &self.attempts)
            .field("last", &self.last)
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.attempts;
        let plural = if n == 1 { "" } else { "s" };
        match self.why {
            GiveUp::Exhausted => write!(f, "gave up after {n} attempt{plural}")?,
            GiveUp::Permanent => write!(f, "permanent failure on attempt {n}")?,
            GiveUp::Elapsed => write!(f, "retry time limit reached after {n} attempt{plural}")?,
            GiveUp::Budget => write!(f, "retry budget spent after {n} attempt{plural}")?,
            GiveUp::Cancelled => write!(f, "cancelled while retrying after {n} attempt{plural}")?,
        }
        match &self.last {
            Some(last) => write!(f, ": {last}"),
            None => Ok(()),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last.as_ref().map(|e| e as _)
    }
}
