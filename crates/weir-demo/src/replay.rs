//! `weir-demo replay`: the parked lines an operator marked for replay
//! (`weir dlq replay`; or every one with `--all`) are tried again, the way a run
//! handles it (parse, claim the order id for the line, run the saga). A
//! line that goes through is removed from the queue; one that fails again
//! stays, with its new reason. Nothing is taken out before it is handled,
//! so a replay killed midway loses no line.

use std::time::SystemTime;

use sqlx::AnyPool;
use weir::durable::dlq::{DeadLetterQueue, Envelope};
use weir::durable::saga::SagaEngine;
use weir::durable::store::{LetterQuery, StoreDlq};
use weir::error::BoxError;

use crate::Failure;
use crate::intake::{self, Started};
use crate::orders::{Line, parse};

/// Letters read per query.
const LETTERS_PER_PAGE: usize = 500;

/// What a replay did.
#[derive(Debug, Default)]
pub struct Tally {
    pub completed: u64,
    pub rolled_back: u64,
    pub duplicates: u64,
    /// Lines that failed again: (line number, reason).
    pub still_failing: Vec<(u64, String)>,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "replayed: {} order(s) completed, {} rolled back, {} duplicate(s) counted; {} line(s) still fail and stay in the queue",
            self.completed,
            self.rolled_back,
            self.duplicates,
            self.still_failing.len()
        )
    }
}

/// Replays the letters of `queue` that `which` selects through `engine`,
/// a page at a time.
///
/// # Errors
/// The store failing (letters not yet handled stay queued).
pub async fn replay(
    queue: &StoreDlq<Line>,
    which: LetterQuery,
    engine: &SagaEngine,
    pool: &AnyPool,
    quiet: bool,
) -> Result<Tally, Failure> {
    let mut tally = Tally::default();
    let mut done = Vec::new();
    let store_failure = |e: &dyn std::fmt::Display| {
        Failure::input(format!("replay stopped; the lines not replayed stay in the queue: {e}"))
    };
    let mut page = which.limit(LETTERS_PER_PAGE);
    loop {
        let letters = queue.find(&page).await.map_err(|e| store_failure(&e))?;
        let Some(last) = letters.last() else { break };
        page = page.after(last.id);
        for envelope in letters {
            match retry_line(&envelope.item, engine, pool).await {
                Ok(Replayed::Completed) => tally.completed += 1,
                Ok(Replayed::RolledBack) => tally.rolled_back += 1,
                Ok(Replayed::Duplicate) => tally.duplicates += 1,
                Ok(Replayed::Fails(reason)) => {
                    if !quiet {
                        println!("line {}: still fails: {reason}", envelope.item.number);
                    }
                    tally.still_failing.push((envelope.item.number, reason.clone()));
                    park_again(queue, envelope, reason).await.map_err(|e| store_failure(&e))?;
                    continue;
                }
                Err(e) => {
                    queue.remove(&done).await.map_err(|e| store_failure(&e))?;
                    return Err(store_failure(&e));
                }
            }
            done.push(envelope.id);
        }
        queue.remove(&done).await.map_err(|e| store_failure(&e))?;
        done.clear();
    }
    Ok(tally)
}

enum Replayed {
    Completed,
    RolledBack,
    Duplicate,
    Fails(String),
}

async fn retry_line(line: &Line, engine: &SagaEngine, pool: &AnyPool) -> Result<Replayed, BoxError> {
    // Parsed on a runtime worker thread, where a panic (the demo's poison
    // order) is recovered quietly and its message kept as the reason.
    let parsed = tokio::spawn({
        let line = line.clone();
        async move { parse(&line) }
    })
    .await;
    let order = match parsed {
        Ok(Ok(order)) => order,
        Ok(Err(bad)) => return Ok(Replayed::Fails(bad.to_string())),
        Err(join) if join.is_panic() => {
            let payload = join.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".into());
            return Ok(Replayed::Fails(format!("panicked: {message}")));
        }
        Err(join) => return Err(join.into()),
    };
    Ok(match intake::start(engine, pool, line, order, None).await? {
        Started::Completed => Replayed::Completed,
        Started::Compensated | Started::Failed => Replayed::RolledBack,
        Started::Duplicate => Replayed::Duplicate,
        Started::Conflict(reason) => Replayed::Fails(reason),
        Started::Elsewhere => Replayed::Fails("another live worker is running this order; replay later".into()),
    })
}

/// Puts a letter back with its new reason (same key: the same letter).
async fn park_again(queue: &StoreDlq<Line>, mut envelope: Envelope<Line>, reason: String) -> Result<(), BoxError> {
    envelope.error_chain = vec![reason];
    envelope.attempts += 1;
    envelope.last_failure = SystemTime::now();
    let old = envelope.id;
    let keyed = envelope.key.is_some();
    if !keyed {
        // Parked before letters were keyed: keyed now, the old copy goes.
        envelope.key = Some(crate::run::letter_key(&envelope.item));
    }
    queue.push(envelope).await?;
    if !keyed {
        queue.remove(&[old]).await?;
    }
    Ok(())
}
