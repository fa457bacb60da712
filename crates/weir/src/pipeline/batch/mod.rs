//! [`Batcher`]: group a stream's items into batches of at most N items or
//! T of waiting, flush them with retries, and park a batch that keeps
//! failing in a dead-letter sink.
//!
//! ```text
//! items ──▶ [ buffer ] ──(N items or T since the first)──▶ flush(batch)
//!                                                            │ error: retry by policy
//!                                                            └ still failing: dead letter (whole batch), go on
//! ```
//!
//! - Never an empty batch; the remainder is flushed when the input ends.
//! - Backpressure: while a batch is being flushed, no input is read, so a
//!   bounded input channel makes a fast producer wait.
//! - [`Batcher::batches`] is the plain stream adapter; [`Batcher::run`]
//!   adds flushing, retries, dead letters and a report.

mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt, TryFutureExt};
use tracing::Instrument;

pub use self::stream::Batches;
use crate::error::{BoxError, ConfigError, StageError};
use crate::pipeline::{DeadLetter, DeadLetterSink};
use crate::policy::Stack;
use crate::policy::retry::{RetryError, RetryPolicy, is_transient};

/// What a [`Batcher::run`] did. `items == items_flushed + items_dead_lettered`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchReport {
    /// Items read from the input.
    pub items: u64,
    /// Batches flushed.
    pub batches_flushed: u64,
    /// Items in flushed batches.
    pub items_flushed: u64,
    /// Batches sent to the dead-letter sink.
    pub batches_dead_lettered: u64,
    /// Items in dead-lettered batches.
    pub items_dead_lettered: u64,
    /// Flush retries made.
    pub retries: u64,
}

/// A batch could not be flushed and had nowhere to go (no dead-letter
/// sink, or the sink failed). The batch and the report come back with
/// the cause: nothing is lost.
#[derive(Debug, thiserror::Error)]
#[error("batcher `{name}`: a batch of {} item(s) failed to flush after {attempts} attempt(s): {source}", batch.len())]
pub struct BatchFailed<T: std::fmt::Debug> {
    name: Arc<str>,
    /// The batch that failed.
    pub batch: Vec<T>,
    attempts: u32,
    /// What the run did before.
    pub report: BatchReport,
    #[source]
    source: BoxError,
}

/// Batches items by size or time and flushes them.
///
/// # Defaults
/// - at most 100 items a batch;
/// - at most 1 s from a batch's first item to its flush;
/// - flush retries: [`RetryPolicy`]'s defaults (3 attempts), no other policy;
/// - named `"batcher"`.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use weir::pipeline::batch::Batcher;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let batcher = Batcher::builder().max_items(3).max_wait(Duration::from_secs(1)).build().unwrap();
/// let batches: Vec<Vec<u32>> = batcher.batches(futures_util::stream::iter(1..=7)).collect().await;
/// assert_eq!(batches, [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Batcher {
    name: Arc<str>,
    max_items: usize,
    max_wait: Duration,
    policies: Stack,
}

impl Batcher {
    /// Configures a batcher.
    pub fn builder() -> BatcherBuilder {
        BatcherBuilder(Batcher {
            name: Arc::from("batcher"),
            max_items: 100,
            max_wait: Duration::from_secs(1),
            policies: Stack::builder().retry(RetryPolicy::default()).unvalidated(),
        })
    }

    /// The input's items in size-or-time batches.
    pub fn batches<S: Stream>(&self, input: S) -> Batches<S> {
        Batches::new(input, self.max_items, self.max_wait)
    }

    /// Reads `input` to its end, flushing each batch with `flush` through
    /// the batcher's [policy stack](Stack); a batch that still fails after
    /// its retries goes whole to `dead_letters`, and the run goes on.
    ///
    /// A flush error marked [`Permanent`](crate::error::Permanent) is not
    /// retried. A panic in `flush` is caught: the batch fails at once with
    /// [`Panicked`](crate::error::Panicked) (not retried) and is
    /// dead-lettered like any failed batch. A dead letter's error is a
    /// [`StageError`] naming the batcher as its stage, with the attempts
    /// made and the last attempt's error as its cause.
    ///
    /// # Errors
    /// [`BatchFailed`] (holding the batch) when a batch fails for good and
    /// there is no dead-letter sink, or the sink fails.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future drops the batch being built or
    /// flushed. Drain the input (close its sender) to stop gracefully.
    pub async fn run<S, T, F, Fut, E>(
        &self,
        input: S,
        flush: F,
        dead_letters: Option<&dyn DeadLetterSink<Vec<T>>>,
    ) -> Result<BatchReport, BatchFailed<T>>
    where
        S: Stream<Item = T>,
        T: Clone + std::fmt::Debug + Send + Sync + 'static,
        F: Fn(Vec<T>) -> Fut + Sync,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Into<BoxError>,
    {
        let mut report = BatchReport::default();
        let mut batches = std::pin::pin!(self.batches(input));
        while let Some(batch) = batches.next().await {
            let size = batch.len() as u64;
            report.items += size;
            let mut first_failure = None;
            let mut attempts = 1u32;
            let span = tracing::info_span!(
                "batch.flush",
                batcher = %self.name,
                items = size,
                attempts = tracing::field::Empty,
                outcome = tracing::field::Empty,
            );
            let attempt = |_| flush(batch.clone()).err_into();
            let flushed = self
                .policies
                .drive(
                    "",
                    &attempt,
                    |error| is_transient(&**error),
                    |_, _, _| {
                        first_failure.get_or_insert_with(SystemTime::now);
                        report.retries += 1;
                        attempts += 1;
                    },
                )
                .instrument(span.clone())
                .await;
            span.record("attempts", attempts);
            span.record("outcome", if flushed.is_ok() { "flushed" } else { "failed" });
            match flushed {
                Ok(()) => {
                    report.batches_flushed += 1;
                    report.items_flushed += size;
                    tracing::debug!(batcher = %self.name, items = size, "batch flushed");
                }
                Err(error) => {
                    let first = first_failure.unwrap_or_else(SystemTime::now);
                    self.dead_letter(batch, error, first, dead_letters, &mut report).await?;
                }
            }
        }
        Ok(report)
    }

    async fn dead_letter<T: Clone + std::fmt::Debug + 'static>(
        &self,
        batch: Vec<T>,
        error: RetryError<BoxError>,
        first_failure: SystemTime,
        dead_letters: Option<&dyn DeadLetterSink<Vec<T>>>,
        report: &mut BatchReport,
    ) -> Result<(), BatchFailed<T>> {
        let attempts = error.attempts();
        let cause = error.into_last().unwrap_or_else(|| "no attempt was made".into());
        let size = batch.len() as u64;
        let fail = |batch, report: &BatchReport, source| BatchFailed {
            name: self.name.clone(),
            batch,
            attempts,
            report: report.clone(),
            source,
        };
        let Some(sink) = dead_letters else { return Err(fail(batch, report, cause)) };
        let message = cause.to_string();
        let letter = DeadLetter {
            // Kept until the sink has it: a failing sink gives it back in the error.
            item: batch.clone(),
            error: StageError::builder(self.name.clone(), cause).attempt(attempts).build(),
            first_failure,
            last_failure: SystemTime::now(),
        };
        match sink.dead_letter(letter).await {
            Ok(()) => {
                tracing::warn!(batcher = %self.name, items = size, attempts, error = %message, "batch dead-lettered");
                report.batches_dead_lettered += 1;
                report.items_dead_lettered += size;
                Ok(())
            }
            Err(sink_error) => {
                Err(fail(batch, report, format!("{message}; and the dead-letter sink failed: {sink_error}").into()))
            }
        }
    }
}

/// Configures a [`Batcher`]; see its defaults there.
#[derive(Debug, Clone)]
pub struct BatcherBuilder(Batcher);

impl BatcherBuilder {
    /// The name used in errors, logs and dead letters.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.0.name = name.into();
        self
    }

    /// The most items in a batch (at least 1).
    pub fn max_items(mut self, n: usize) -> Self {
        self.0.max_items = n;
        self
    }

    /// The longest a batch waits for more items after its first.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.0.max_wait = wait;
        self
    }

    /// How failed flushes are retried: sets the retry of the batcher's
    /// [policy stack](Self::policies).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.0.policies = self.0.policies.into_builder().retry(policy).unvalidated();
        self
    }

    /// The policies every flush goes through (retry, breaker, rate limit,
    /// bulkhead, hedge, timeout, in weir's order); replaces the default
    /// retry. Share one [`Stack`] with other callers of the same sink to
    /// share its breaker and limits.
    pub fn policies(mut self, policies: Stack) -> Self {
        self.0.policies = policies;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] for 0 items or a zero wait.
    pub fn build(self) -> Result<Batcher, ConfigError> {
        if self.0.max_items == 0 {
            return Err(ConfigError::new("batcher max_items", 0, "a batch holds at least 1 item"));
        }
        if self.0.max_wait.is_zero() {
            return Err(ConfigError::new("batcher max_wait", "0s", "use a positive wait, e.g. 1s"));
        }
        Ok(self.0)
    }
}
