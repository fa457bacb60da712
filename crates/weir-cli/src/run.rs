//! `weir run`: the integration pipeline (seed task 20) on an input file.
//!
//! ```text
//! lines ─▶ parse (fan-out; bad lines and panics → dead letters) ─▶ saga per order
//!          (per-tenant bulkhead; reserve → charge [breaker, retry] → ship) ─▶ tally
//! ```
//! The input is read from a saved cursor (byte offset); the cursor only
//! moves past a line once it is fully handled (its saga ended, or it is in
//! the dead-letter queue), so a rerun after a crash resumes without loss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, BufReader};
use weir::bulkhead::{Bulkhead, KeyedBulkhead};
use weir::error::BoxError;
use weir::pipeline::{DeadLetter, DeadLetterSink, Pipeline, Stage};
use weir::saga::SagaEngine;
use weir::store::{Store, StoreDlq};

use crate::business::{Payments, order_saga};
use crate::input::{LineAssembler, read_line};
use crate::ledger::Ledger;
use crate::orders::{Line, Order, parse};
use crate::progress::Progress;

/// Orders of one tenant in flight at once: one tenant's flood or outage
/// never takes the whole pipeline.
pub const PER_TENANT: usize = 32;

/// The dead-letter queue of input lines.
pub const LINES_QUEUE: &str = "weir-cli:lines";
/// Where the last run's figures are kept (as a cursor entry).
pub const LAST_RUN: &str = "weir-cli:last-run";

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub input: PathBuf,
    pub location: String,
    pub workers: usize,
    pub faults: f64,
    pub down_tenant: Option<String>,
    pub worker_id: Option<String>,
    /// The longest line read whole; see [`crate::input`].
    pub max_line_bytes: usize,
    pub quiet: bool,
}

/// Figures of one run, kept in the store for `weir report`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunFigures {
    pub input: String,
    pub lines_read: u64,
    pub completed: u64,
    pub compensated: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    pub resumed: u64,
    pub elapsed_ms: u64,
    pub orders_per_second: f64,
    pub commit_share: f64,
    pub transactions: u64,
    pub breaker_openings: Vec<(String, u64)>,
}

/// Where the input stands: byte offset and line number of the first line
/// not fully handled.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Cursor {
    offset: u64,
    line: u64,
}

/// Lines handled out of order; the cursor moves over the contiguous ones.
#[derive(Debug, Default)]
struct Watermark {
    cursor: Cursor,
    done: BTreeMap<u64, u64>,
}

impl Watermark {
    fn finish(&mut self, line: u64, end: u64) {
        self.done.insert(line, end);
        while let Some(end) = self.done.remove(&(self.cursor.line + 1)) {
            self.cursor = Cursor { offset: end, line: self.cursor.line + 1 };
        }
    }
}

/// The dead-letter sink of the parse stage: stores the line durably, then
/// counts it as handled.
struct LineDeadLetters {
    queue: StoreDlq<Line>,
    watermark: Arc<Mutex<Watermark>>,
    count: Arc<AtomicU64>,
}

impl DeadLetterSink<Line> for LineDeadLetters {
    fn dead_letter(&self, letter: DeadLetter<Line>) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            let (number, end) = (letter.item.number, letter.item.end);
            tracing::warn!(line = number, error = %letter.error, "line dead-lettered");
            self.queue.dead_letter(letter).await?;
            self.count.fetch_add(1, Ordering::Relaxed);
            self.watermark.lock().unwrap_or_else(|p| p.into_inner()).finish(number, end);
            Ok(())
        })
    }
}

/// How an order ended.
#[derive(Debug)]
enum Outcome {
    Completed,
    Compensated,
    Failed,
    /// Another live worker holds the saga (several `weir run` share a
    /// PostgreSQL database); it finishes it.
    Elsewhere,
}

/// The SQLite path or PostgreSQL URL as sqlx's `Any` driver wants it.
pub fn any_url(location: &str) -> String {
    if location.starts_with("postgres") { location.to_owned() } else { format!("sqlite://{location}") }
}

fn cursor_name(input: &Path) -> String {
    let canonical = std::fs::canonicalize(input).unwrap_or_else(|_| input.to_path_buf());
    format!("weir-cli:input:{}", canonical.display())
}

/// Runs the pipeline on `opts.input` to its end.
pub async fn run(opts: &RunOptions, store: Store) -> Result<RunFigures, BoxError> {
    let started = Instant::now();
    let commits_before = store.commit_stats();
    let ledger = Ledger::connect(&any_url(&opts.location))
        .await
        .map_err(|e| format!("cannot open the ledger in {}: {e}", store.target()))?;
    ledger.seed_stock().await?;
    let payments = Payments::new(opts.faults, opts.down_tenant.clone());
    let mut engine = SagaEngine::builder(store.clone())
        .definition(order_saga(ledger, payments.clone()))
        .max_in_flight(512)
        .lease(Duration::from_secs(10));
    // On SQLite one process works at a time: a stable id lets a rerun take
    // back at once the sagas a killed run held. On PostgreSQL each process
    // gets its own id unless told otherwise.
    match (&opts.worker_id, opts.location.starts_with("postgres")) {
        (Some(id), _) => engine = engine.worker_id(id.clone()),
        (None, false) => engine = engine.worker_id("weir-local"),
        (None, true) => {}
    }
    let engine = engine.build()?;
    let resumed = engine.resume().await?;

    let cursor_key = cursor_name(&opts.input);
    let cursor: Cursor = store.cursor(&cursor_key).await?.map(serde_json::from_value).transpose()?.unwrap_or_default();
    let size = tokio::fs::metadata(&opts.input).await.map(|m| m.len()).unwrap_or(0);
    let read_failed = Arc::new(Mutex::new(None));
    let lines = read_lines(&opts.input, cursor, opts.max_line_bytes, Arc::clone(&read_failed)).await?;
    let mut progress = Progress::new(opts.quiet, size, cursor.offset);
    let watermark = Arc::new(Mutex::new(Watermark { cursor, done: BTreeMap::new() }));
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
    let pipeline = Pipeline::builder()
        .capacity(512)
        .from_stream(futures_util::StreamExt::inspect(lines, move |line: &Line| read.add(line.end)))
        .stage(
            Stage::try_map("parse", move |line: Line| {
                let parsed = parsed.clone();
                async move {
                    let order = parse(&line)?;
                    parsed.add(1);
                    Ok::<_, BoxError>((line, order))
                }
            })
            .workers(opts.workers.max(1))
            .key(|line: &Line| format!("line {}", line.number))
            .dead_letter(dead_letters),
        )
        .stage(
            Stage::try_map("saga", move |(line, order): (Line, Order)| {
                let engine = engine.clone();
                async move {
                    let outcome = match engine.run_with_id(&order.order_id, "order", &order).await {
                        Ok(_) => Outcome::Completed,
                        Err(e) if e.is_compensated() => Outcome::Compensated,
                        Err(e) if e.is_failed() => Outcome::Failed,
                        Err(e) if e.is_lease_lost() => Outcome::Elsewhere,
                        Err(e) => return Err(e),
                    };
                    Ok((line, outcome))
                }
            })
            .workers(512)
            .tenant(|(_, order): &(Line, Order)| order.tenant.clone())
            .bulkhead_per_tenant(per_tenant),
        );
    let counts = Arc::new(Mutex::new([0u64; 3]));
    let (tally, mark) = (Arc::clone(&counts), Arc::clone(&watermark));
    let (saver_store, saver_mark, saver_key) = (store.clone(), Arc::clone(&watermark), cursor_key.clone());
    let saver = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let cursor = saver_mark.lock().unwrap_or_else(|p| p.into_inner()).cursor;
            let _ = saver_store.save_cursor(&saver_key, &serde_json::to_value(cursor).expect("serializes")).await;
        }
    });
    let report = pipeline
        .for_each(move |(line, outcome): (Line, Outcome)| {
            let slot = match outcome {
                Outcome::Completed => Some(0),
                Outcome::Compensated => Some(1),
                Outcome::Failed => Some(2),
                Outcome::Elsewhere => None,
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
    let final_cursor = watermark.lock().unwrap_or_else(|p| p.into_inner()).cursor;
    store.save_cursor(&cursor_key, &serde_json::to_value(final_cursor)?).await?;
    progress.finish();
    let report = report?;
    if let Some(error) = read_failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(error.into());
    }

    let [completed, compensated, failed] = *counts.lock().unwrap_or_else(|p| p.into_inner());
    let elapsed = started.elapsed();
    let commits = store.commit_stats();
    let busy = commits.busy.saturating_sub(commits_before.busy);
    let figures = RunFigures {
        input: opts.input.display().to_string(),
        lines_read: report.source_emitted,
        completed,
        compensated,
        failed,
        dead_lettered: dead_lettered.load(Ordering::Relaxed),
        resumed: resumed.resumed,
        elapsed_ms: elapsed.as_millis() as u64,
        orders_per_second: report.source_emitted as f64 / elapsed.as_secs_f64().max(1e-9),
        commit_share: busy.as_secs_f64() / elapsed.as_secs_f64().max(1e-9),
        transactions: commits.transactions - commits_before.transactions,
        breaker_openings: payments.openings(),
    };
    store.save_cursor(LAST_RUN, &serde_json::to_value(&figures)?).await?;
    Ok(figures)
}

/// The input's lines from `cursor` on, numbered, each with the offset just
/// after it; a line over `max_line_bytes` comes with only its start (see
/// [`crate::input`]). A last line without its newline is not read. A read
/// error ends the stream and is left in `failed` for the run to report.
async fn read_lines(
    path: &Path,
    cursor: Cursor,
    max_line_bytes: usize,
    failed: Arc<Mutex<Option<String>>>,
) -> Result<impl futures_util::Stream<Item = Line> + Send + 'static, BoxError> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    file.seek(std::io::SeekFrom::Start(cursor.offset)).await?;
    let reader = BufReader::new(file);
    let name = path.display().to_string();
    let assembler = LineAssembler::new(max_line_bytes);
    Ok(futures_util::stream::unfold(Some((reader, assembler, cursor)), move |state| {
        let (failed, name) = (Arc::clone(&failed), name.clone());
        async move {
            let (mut reader, mut assembler, cursor) = state?;
            match read_line(&mut reader, &mut assembler).await {
                Ok(Some(raw)) => {
                    let end = cursor.offset + raw.len;
                    let line = Line::from_raw(raw, cursor.line + 1, end, max_line_bytes);
                    let next = Cursor { offset: line.end, line: line.number };
                    Some((line, Some((reader, assembler, next))))
                }
                Ok(None) => None,
                Err(e) => {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("reading {name} after line {}: {e}", cursor.line));
                    None
                }
            }
        }
    }))
}

/// One reason per dead-lettered line (a line dead-lettered twice, by two
/// workers or by a rerun after a crash, counts once).
pub async fn dead_letter_reasons(store: &Store) -> Result<Vec<String>, BoxError> {
    let parked = store.dead_letters::<Line>(LINES_QUEUE).list().await?;
    let mut by_line = BTreeMap::new();
    for e in parked {
        by_line.entry(e.item.number).or_insert_with(|| e.error_chain.last().cloned().unwrap_or_default());
    }
    Ok(by_line.into_values().collect())
}
