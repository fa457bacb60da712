//! Stream consumers that remember where they are: read
//! events from a [`CursorSource`] starting at the saved cursor, process
//! them, and save the cursor every N events or T of time, **only after**
//! those events were processed.
//!
//! ```text
//! source ─▶ e1 e2 e3 … eN ─▶ handler (in order, up to `concurrency` at once)
//!                             └─ every N events or T: save cursor = position after the last event done
//! ```
//!
//! Delivery is at least once: after a crash, the events processed since the
//! last saved cursor are delivered again — at most N plus the events in
//! flight, or what T let through. A handler that must not apply an event
//! twice deduplicates by the event's own id.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod outbox;
mod source;

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tracing::Instrument;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use self::outbox::OutboxSource;
pub use self::source::{ChannelSource, CursorSource, DEFAULT_MAX_LINE_BYTES, Events, JsonlFileSource, LineFileSource};
use crate::durable::store::{Store, StoreError};
use crate::error::{BoxError, ConfigError};

/// What a consumer run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerReport {
    /// Events processed in this run.
    pub processed: u64,
    /// Cursor saves.
    pub checkpoints: u64,
    /// The cursor the run started from, as JSON (`null` for the start).
    pub started_at: serde_json::Value,
    /// The cursor saved last, as JSON.
    pub saved_at: serde_json::Value,
}

/// A consumer run stopped on an error; its progress up to the last saved
/// cursor is kept.
#[derive(Debug, thiserror::Error)]
#[error("consumer `{name}` stopped after {} event(s), cursor saved at {}: {source}", report.processed, report.saved_at)]
pub struct ConsumerError {
    name: String,
    /// What the run did before it stopped.
    pub report: ConsumerReport,
    #[source]
    source: BoxError,
}

/// Reads a source from its saved cursor and checkpoints as it goes.
///
/// # Defaults
/// - a checkpoint every 1,000 events …
/// - … or every 1 s when events were processed since the last one;
/// - one event processed at a time.
///
/// # Examples
/// ```
/// use weir::durable::checkpoint::{ChannelSource, CursorConsumer};
/// use weir::durable::store::Store;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::memory();
/// let consumer = CursorConsumer::builder(store.clone(), "events").every(10).build()?;
/// let (tx, rx) = tokio::sync::mpsc::channel(100);
/// for n in 0..25u32 { tx.send(n).await?; }
/// drop(tx);
/// let report = consumer.run(&mut ChannelSource::new(rx), |_n| async { Ok::<(), std::io::Error>(()) }).await?;
/// assert_eq!((report.processed, store.cursor("events").await?), (25, Some(serde_json::json!(25))));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CursorConsumer {
    store: Store,
    name: String,
    every: u64,
    interval: Duration,
    concurrency: usize,
}

impl CursorConsumer {
    /// A consumer whose cursor is saved in `store` under `name`.
    pub fn builder(store: Store, name: &str) -> CursorConsumerBuilder {
        CursorConsumerBuilder(Self {
            store,
            name: name.to_owned(),
            every: 1000,
            interval: Duration::from_secs(1),
            concurrency: 1,
        })
    }

    /// Reads `source` from the saved cursor to its end, handing each event
    /// to `handler`.
    ///
    /// # Errors
    /// [`ConsumerError`] when the source or the handler fails, or a cursor
    /// cannot be saved; the cursor then stays at the last event processed
    /// in order before it.
    ///
    /// # Cancel safety
    /// Dropping the future stops the run; events processed since the last
    /// checkpoint are delivered again next time.
    pub async fn run<S, F, Fut, E>(&self, source: &mut S, mut handler: F) -> Result<ConsumerReport, ConsumerError>
    where
        S: CursorSource,
        F: FnMut(S::Event) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
    {
        let mut report = ConsumerReport::default();
        let saved = self.store.cursor(&self.name).await.map_err(|e| self.fail(&report, e.into()))?;
        report.started_at = saved.clone().unwrap_or(serde_json::Value::Null);
        report.saved_at = report.started_at.clone();
        let from: Option<S::Position> = saved.map(serde_json::from_value).transpose().map_err(|e| {
            self.fail(&report, format!("saved cursor of `{}` is not a position of this source: {e}", self.name).into())
        })?;
        let done = source
            .read(from)
            .map(|event| {
                let handled = event.map(|(position, event)| (position, handler(event)));
                async move {
                    let (position, handled) = handled?;
                    handled.await.map_err(Into::into)?;
                    Ok::<_, BoxError>(position)
                }
            })
            .buffered(self.concurrency);
        let mut done = std::pin::pin!(done);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let (mut last, mut since) = (None, 0u64);
        loop {
            tokio::select! {
                next = done.next() => match next {
                    Some(Ok(position)) => {
                        report.processed += 1;
                        last = Some(position);
                        since += 1;
                        if since >= self.every {
                            self.save(&mut report, &mut since, &last).await?;
                        }
                    }
                    Some(Err(error)) => {
                        self.save(&mut report, &mut since, &last).await?;
                        return Err(self.fail(&report, error));
                    }
                    None => break,
                },
                _ = tick.tick(), if since > 0 => self.save(&mut report, &mut since, &last).await?,
            }
        }
        self.save(&mut report, &mut since, &last).await?;
        Ok(report)
    }

    async fn save<P: serde::Serialize>(
        &self,
        report: &mut ConsumerReport,
        since: &mut u64,
        last: &Option<P>,
    ) -> Result<(), ConsumerError> {
        let Some(position) = last.as_ref().filter(|_| *since > 0) else { return Ok(()) };
        let value = serde_json::to_value(position).map_err(|e| self.fail(report, e.into()))?;
        let span = tracing::info_span!("checkpoint.save", consumer = %self.name, events = *since);
        let saved = self.store.save_cursor(&self.name, &value).instrument(span).await;
        saved.map_err(|e: StoreError| self.fail(report, e.into()))?;
        tracing::debug!(consumer = %self.name, cursor = %value, events = *since, "checkpoint");
        report.checkpoints += 1;
        report.saved_at = value;
        *since = 0;
        Ok(())
    }

    fn fail(&self, report: &ConsumerReport, source: BoxError) -> ConsumerError {
        ConsumerError { name: self.name.clone(), report: report.clone(), source }
    }
}

/// Configures a [`CursorConsumer`]; see its defaults there.
#[derive(Debug, Clone)]
pub struct CursorConsumerBuilder(CursorConsumer);

impl CursorConsumerBuilder {
    /// Saves the cursor after every `n` events (at least 1).
    pub fn every(mut self, n: u64) -> Self {
        self.0.every = n;
        self
    }

    /// Saves the cursor at least this often while events are processed.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.0.interval = interval;
        self
    }

    /// Processes up to `n` events at once, checkpointing only positions
    /// whose earlier events are all done.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.0.concurrency = n;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] for 0 events, a zero interval or 0 concurrency.
    pub fn build(self) -> Result<CursorConsumer, ConfigError> {
        if self.0.every == 0 {
            return Err(ConfigError::new("checkpoint every", 0, "save after at least 1 event"));
        }
        if self.0.interval.is_zero() {
            return Err(ConfigError::new("checkpoint interval", "0s", "use a positive interval, e.g. 1s"));
        }
        if self.0.concurrency == 0 {
            return Err(ConfigError::new("consumer concurrency", 0, "use at least 1"));
        }
        Ok(self.0)
    }
}
