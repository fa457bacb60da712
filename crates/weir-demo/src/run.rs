//! `weir-demo run`: the integration pipeline on an input file.
//!
//! ```text
//! lines ─▶ parse (fan-out; bad lines and panics → dead letters) ─▶ claim the order id for the line
//!          (duplicates counted, conflicts dead-lettered) ─▶ saga per order (per-tenant bulkhead;
//!          reserve → charge [breaker, retry] → ship) ─▶ tally
//! ```
//! The input is read from a saved [`Cursor`]: a line counts as handled once
//! its saga ended, it was counted as a duplicate, or it is in the
//! dead-letter queue, and a rerun after a crash skips the handled lines.
//! Dead letters are keyed by input and line, so a line re-read after a
//! crash is parked once. The first SIGINT or SIGTERM drains (no new lines;
//! the orders in flight finish), a second aborts; both save the cursor.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use weir::durable::dlq::{DeadLetterQueue, Envelope};
use weir::durable::saga::SagaEngine;
use weir::durable::store::{Store, StoreDlq};
use weir::error::BoxError;
use weir::pipeline::{DeadLetter, DeadLetterSink, Pipeline, Stage};
use weir::policy::bulkhead::{Bulkhead, KeyedBulkhead};

use crate::business::{Payments, order_saga};
use crate::cursor::{Cursor, Watermark};
use crate::environment::Environment;
use crate::intake::{self, Repeat, Started};
use crate::ledger::Ledger;
use crate::location::is_postgres;
use crate::orders::{Line, Order, parse};
use crate::progress::Progress;
use crate::reader::{count_lines, read_lines};
use crate::settle::settle;
use crate::signals::Signals;

/// Orders of one tenant in flight at once: one tenant's flood or outage
/// never takes the whole pipeline.
pub const PER_TENANT: usize = 128;

/// Sagas in flight at once.
const SAGAS_IN_FLIGHT: usize = 2048;

/// The dead-letter queue of input lines.
pub const LINES_QUEUE: &str = "weir-cli:lines";
/// Where the last run's figures are kept (as a cursor entry).
pub const LAST_RUN: &str = "weir-cli:last-run";
/// The prefix of the cursor entry of each input file.
pub const INPUT_CURSOR: &str = "weir-cli:input:";

/// How long a saga lease lasts without renewal; a dead worker's sagas are
/// taken over after it.
pub const LEASE: Duration = Duration::from_secs(10);

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub input: PathBuf,
    pub location: String,
    pub workers: usize,
    pub environment: Environment,
    pub worker_id: Option<String>,
    /// The longest line read whole; see [`crate::input`].
    pub max_line_bytes: usize,
    pub quiet: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The whole input was handled.
    #[default]
    Finished,
    /// Stopped by a signal after the orders in flight finished.
    Drained,
    /// Stopped at once by a second signal.
    Aborted,
}

/// Figures of one run, kept in the store for `weir-demo report`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunFigures {
    pub input: String,
    /// Lines read this run, the skipped ones included.
    pub lines_read: u64,
    /// Lines skipped: handled by an earlier run.
    #[serde(default)]
    pub lines_skipped: u64,
    pub completed: u64,
    pub compensated: u64,
    pub failed: u64,
    #[serde(default)]
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Orders another live worker was driving.
    #[serde(default)]
    pub elsewhere: u64,
    pub resumed: u64,
    /// Sagas of dead workers taken over while running.
    #[serde(default)]
    pub taken_over: u64,
    pub elapsed_ms: u64,
    pub orders_per_second: f64,
    pub commit_share: f64,
    pub transactions: u64,
    pub breaker_openings: Vec<(String, u64)>,
    #[serde(default)]
    pub ending: Ending,
}

/// The SQLite path or PostgreSQL URL as sqlx's `Any` driver wants it.
pub fn any_url(location: &str) -> String {
    if is_postgres(location) { location.to_owned() } else { format!("sqlite://{location}") }
}

/// The name an input goes by in cursors, claims and dead-letter keys: its
/// canonical path.
pub fn input_name(input: &Path) -> String {
    std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf()).display().to_string()
}

/// The cursor entry of `input`.
pub fn cursor_key(input: &Path) -> String {
    format!("{INPUT_CURSOR}{}", input_name(input))
}

/// The dead-letter key of a line: one letter per input position.
pub fn letter_key(line: &Line) -> String {
    format!("{}:{}", line.input, line.number)
}

/// The saved cursor of `input` (the start if none).
///
/// # Errors
/// The store failing, or an unreadable cursor.
pub async fn load_cursor(store: &Store, input: &Path) -> Result<Cursor, BoxError> {
    Ok(store.cursor(&cursor_key(input)).await?.map(serde_json::from_value).transpose()?.unwrap_or_default())
}

/// Parks lines in the dead-letter queue, once per input position, and
/// counts them as handled.
struct LineDeadLetters {
    queue: StoreDlq<Line>,
    watermark: Arc<Mutex<Watermark>>,
    count: Arc<AtomicU64>,
}

impl LineDeadLetters {
    async fn park(&self, mut envelope: Envelope<Line>) -> Result<(), BoxError> {
        let (number, end) = (envelope.item.number, envelope.item.end);
        envelope.key = Some(letter_key(&envelope.item));
        tracing::warn!(line = number, error = ?envelope.error_chain.last(), "line dead-lettered");
        self.queue.push(envelope).await?;
        self.count.fetch_add(1, Ordering::Relaxed);
        self.watermark.lock().unwrap_or_else(|p| p.into_inner()).finish(number, end);
        Ok(())
    }
}

impl DeadLetterSink<Line> for LineDeadLetters {
    fn dead_letter(&self, letter: DeadLetter<Line>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self.park(Envelope::from_dead_letter(letter)))
    }
}

/// How a line ended.
#[derive(Debug)]
enum Outcome {
    Completed,
    Compensated,
    Failed,
    /// The same order as an earlier line (counted, not run again).
    Duplicate,
    /// Dead-lettered after parsing (a conflicting duplicate).
    DeadLettered,
    /// Another live worker holds the saga (several `weir-demo run` share a
    /// PostgreSQL database); it finishes it.
    Elsewhere,
}

/// Builds the saga engine of a database: the order saga in `environment`.
///
/// # Errors
/// The ledger's database failing.
pub async fn engine(
    store: &Store,
    location: &str,
    environment: &Environment,
    worker_id: Option<&str>,
) -> Result<(SagaEngine, Ledger, Payments), BoxError> {
    let ledger = Ledger::connect(&any_url(location), store)
        .await
        .map_err(|e| format!("cannot open the ledger in {}: {e}", store.target()))?;
    ledger.seed_stock().await?;
    let payments = Payments::new(environment.faults, environment.down_tenant.clone());
    let mut engine = SagaEngine::builder(store.clone())
        .definition(order_saga(ledger.clone(), payments.clone()))
        .max_in_flight(SAGAS_IN_FLIGHT)
        .lease(LEASE);
    // On SQLite one process works at a time (a lock file sees to it): a
    // stable id lets a rerun take back at once the sagas a killed run held.
    // On PostgreSQL each process gets its own id unless told otherwise.
    match (worker_id, is_postgres(location)) {
        (Some(id), _) => engine = engine.worker_id(id),
        (None, false) => engine = engine.worker_id("weir-local"),
        (None, true) => {}
    }
    Ok((engine.build()?, ledger, payments))
}

/// Runs the pipeline on `opts.input` to its end (or to a signal).
///
/// # Errors
/// The store or the ledger failing, or the input unreadable.
pub async fn run(opts: &RunOptions, store: Store) -> Result<RunFigures, BoxError> {
    let started = Instant::now();
    let commits_before = store.commit_metrics();
    let (engine, ledger, payments) =
        engine(&store, &opts.location, &opts.environment, opts.worker_id.as_deref()).await?;
    let resumed = engine.resume().await?;

    let key = cursor_key(&opts.input);
    let input = input_name(&opts.input);
    let saved = load_cursor(&store, &opts.input).await?;
    let total_lines = count_lines(&opts.input).await?;
    let read_failed = Arc::new(Mutex::new(None));
    let lines = read_lines(&opts.input, &input, &saved, opts.max_line_bytes, Arc::clone(&read_failed)).await?;
    let mut progress = Progress::new(opts.quiet, total_lines, saved.line);
    let watermark = Arc::new(Mutex::new(Watermark::new(&saved)));
    let dead_lettered = Arc::new(AtomicU64::new(0));
    let dead_letters = Arc::new(LineDeadLetters {
        queue: store.dead_letters(LINES_QUEUE),
        watermark: Arc::clone(&watermark),
        count: Arc::clone(&dead_lettered),
    });
    let per_tenant = KeyedBulkhead::new(Bulkhead::builder().limit(PER_TENANT))?;

    let parsed = progress.counter("parsed");
    let sagas = progress.counter("orders done");
    let read = progress.counter("lines read");
    progress.start_logging();
    // Lines an earlier run handled are skipped here, and passed to the
    // watermark so that it moves over them.
    let skipped = Arc::new(AtomicU64::new(0));
    let (skip_mark, skip_count, skip_read) = (Arc::clone(&watermark), Arc::clone(&skipped), read.clone());
    let lines = futures_util::StreamExt::filter(lines, move |line: &Line| {
        skip_read.add(1);
        let handled = saved.is_handled(line.number);
        if handled {
            skip_count.fetch_add(1, Ordering::Relaxed);
            skip_mark.lock().unwrap_or_else(|p| p.into_inner()).finish(line.number, line.end);
        }
        std::future::ready(!handled)
    });
    let pool = ledger.pool().clone();
    let conflicts = Arc::clone(&dead_letters);
    let stage_engine = engine.clone();
    let seen = Mutex::new(intake::SeenInRun::default());
    let pipeline = Pipeline::builder()
        .capacity(512)
        .from_stream(lines)
        .stage(
            Stage::try_map("parse", move |line: Line| {
                let parsed = parsed.clone();
                async move {
                    let order = parse(&line)?;
                    parsed.add(1);
                    Ok::<_, BoxError>((line, order))
                }
            })
            .workers(opts.workers)
            .ordered()
            .key(letter_key)
            .dead_letter(dead_letters),
        )
        .stage(Stage::map("intake", move |(line, order): (Line, Order)| {
            let earlier = seen.lock().unwrap_or_else(|p| p.into_inner()).check(&line, &order);
            std::future::ready((line, order, earlier))
        }))
        .stage(
            Stage::try_map("saga", move |(line, order, earlier): (Line, Order, Option<Repeat>)| {
                let (engine, pool, conflicts) = (stage_engine.clone(), pool.clone(), Arc::clone(&conflicts));
                async move {
                    let outcome = match intake::start(&engine, &pool, &line, order, earlier).await? {
                        Started::Completed => Outcome::Completed,
                        Started::Compensated => Outcome::Compensated,
                        Started::Failed => Outcome::Failed,
                        Started::Duplicate => Outcome::Duplicate,
                        Started::Elsewhere => Outcome::Elsewhere,
                        Started::Conflict(reason) => {
                            let mut envelope = Envelope::new(line.clone(), "saga", 1);
                            envelope.error_chain = vec![reason];
                            conflicts.park(envelope).await?;
                            Outcome::DeadLettered
                        }
                    };
                    Ok::<_, BoxError>((line, outcome))
                }
            })
            .workers(SAGAS_IN_FLIGHT)
            .tenant(|(_, order, _): &(Line, Order, Option<Repeat>)| order.tenant.clone())
            .bulkhead_per_tenant(per_tenant),
        );
    let signals = Signals::default();
    let watcher = signals.watch(pipeline.control(), opts.quiet);
    let counts = Arc::new(Mutex::new([0u64; 5]));
    let (tally, mark) = (Arc::clone(&counts), Arc::clone(&watermark));
    let (saver_store, saver_mark, saver_key) = (store.clone(), Arc::clone(&watermark), key.clone());
    let saver = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let cursor = saver_mark.lock().unwrap_or_else(|p| p.into_inner()).cursor();
            let _ = saver_store.save_cursor(&saver_key, &serde_json::to_value(cursor).expect("serializes")).await;
        }
    });
    let report = pipeline
        .for_each(move |(line, outcome): (Line, Outcome)| {
            let slot = match outcome {
                Outcome::Completed => Some(0),
                Outcome::Compensated => Some(1),
                Outcome::Failed => Some(2),
                Outcome::Duplicate => Some(3),
                Outcome::Elsewhere => Some(4),
                Outcome::DeadLettered => None,
            };
            if let Some(slot) = slot {
                tally.lock().unwrap_or_else(|p| p.into_inner())[slot] += 1;
            }
            mark.lock().unwrap_or_else(|p| p.into_inner()).finish(line.number, line.end);
            sagas.add(1);
            std::future::ready(Ok::<(), BoxError>(()))
        })
        .await;
    saver.abort();
    let final_cursor = watermark.lock().unwrap_or_else(|p| p.into_inner()).cursor();
    store.save_cursor(&key, &serde_json::to_value(final_cursor)?).await?;
    let ending = match signals.seen() {
        0 => Ending::Finished,
        1 => Ending::Drained,
        _ => Ending::Aborted,
    };
    if ending == Ending::Finished {
        settle(&store, &engine, &signals, &progress).await?;
    }
    watcher.abort();
    progress.finish();
    if ending != Ending::Aborted {
        report?;
    }
    if let Some(error) = read_failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(error.into());
    }

    let [completed, compensated, failed, duplicates, elsewhere] = *counts.lock().unwrap_or_else(|p| p.into_inner());
    let elapsed = started.elapsed();
    let commits = store.commit_metrics();
    let busy = commits.busy.saturating_sub(commits_before.busy);
    let lines_read = read.value();
    let figures = RunFigures {
        input: opts.input.display().to_string(),
        lines_read,
        lines_skipped: skipped.load(Ordering::Relaxed),
        completed,
        compensated,
        failed,
        duplicates,
        dead_lettered: dead_lettered.load(Ordering::Relaxed),
        elsewhere,
        resumed: resumed.resumed,
        taken_over: engine.reclaimed(),
        elapsed_ms: elapsed.as_millis() as u64,
        orders_per_second: lines_read as f64 / elapsed.as_secs_f64().max(1e-9),
        commit_share: busy.as_secs_f64() / elapsed.as_secs_f64().max(1e-9),
        transactions: commits.transactions - commits_before.transactions,
        breaker_openings: payments.openings(),
        ending,
    };
    store.save_cursor(LAST_RUN, &serde_json::to_value(&figures)?).await?;
    Ok(figures)
}

/// One reason per dead-lettered input position (older copies of one line,
/// stored before dead letters were keyed, count once).
pub async fn dead_letter_reasons(store: &Store) -> Result<Vec<String>, BoxError> {
    let parked = store.dead_letters::<Line>(LINES_QUEUE).list().await?;
    let mut by_line = std::collections::BTreeMap::new();
    for e in parked {
        let key = e.key.clone().unwrap_or_else(|| letter_key(&e.item));
        by_line.entry(key).or_insert_with(|| e.error_chain.last().cloned().unwrap_or_default());
    }
    Ok(by_line.into_values().collect())
}
