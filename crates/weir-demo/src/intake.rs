//! Which input line an order belongs to, and how a parsed line starts its
//! saga.
//!
//! An order id is the saga's id, so two lines with one order id must never
//! become one saga with the second line gone. The saga's input is the order
//! *and the line it came from*; the engine refuses to start an existing id
//! with another input, so a second line with the same id is told apart
//! atomically, across reruns and workers, with no write of its own: it is
//! an *identical duplicate* (same order: counted as such) or a *conflict*
//! (other content: dead-lettered with a reason naming both lines). Within
//! one run, lines are parsed in parallel, so [`SeenInRun`] decides in input
//! order which line is first.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use weir::durable::saga::SagaEngine;
use weir::error::BoxError;

use crate::ledger::Error;
use crate::orders::{Line, Order};

/// A line of an input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRef {
    pub input: String,
    pub line: u64,
}

impl LineRef {
    pub fn of(line: &Line) -> Self {
        Self { input: line.input.clone(), line: line.number }
    }
}

impl std::fmt::Display for LineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} of {}", self.line, self.input)
    }
}

/// A saga's input: the order, and the line that carried it. The saga's
/// steps read it as an [`Order`] (the extra field is ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderFromLine {
    #[serde(flatten)]
    pub order: Order,
    pub from: LineRef,
}

/// A line that repeats an earlier line's order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repeat {
    /// The same order, identical.
    Duplicate { first: LineRef },
    /// The same id with other content.
    Conflict { first: LineRef },
}

/// The order ids seen so far in this run, in input order, with each
/// order's canonical JSON (about 200 bytes per order).
#[derive(Debug, Default)]
pub struct SeenInRun {
    first: HashMap<String, (u64, String)>,
}

impl SeenInRun {
    /// `None` if `line` is the first in this run with `order`'s id;
    /// otherwise how it compares with the first one.
    pub fn check(&mut self, line: &Line, order: &Order) -> Option<Repeat> {
        let content = serde_json::to_string(order).expect("an order serializes");
        match self.first.get(&order.order_id) {
            None => {
                self.first.insert(order.order_id.clone(), (line.number, content));
                None
            }
            Some((first, _)) if *first == line.number => None,
            Some((first, stored)) => {
                let first = LineRef { input: line.input.clone(), line: *first };
                Some(if *stored == content { Repeat::Duplicate { first } } else { Repeat::Conflict { first } })
            }
        }
    }
}

/// How a parsed line ended.
#[derive(Debug)]
pub enum Started {
    Completed,
    Compensated,
    Failed,
    /// Counted as a duplicate of an earlier line.
    Duplicate,
    /// A conflicting duplicate: the reason names both lines.
    Conflict(String),
    /// Another live worker is driving the saga (several `weir-demo run` share
    /// a PostgreSQL database); it finishes it.
    Elsewhere,
}

/// Runs `line`'s order as a saga, unless the line repeats an earlier one
/// (`earlier`, from [`SeenInRun`], or as the stored saga says).
///
/// # Errors
/// The store or the ledger failing.
pub async fn start(
    engine: &SagaEngine,
    pool: &AnyPool,
    line: &Line,
    order: Order,
    earlier: Option<Repeat>,
) -> Result<Started, BoxError> {
    let input = OrderFromLine { order, from: LineRef::of(line) };
    let repeat = match earlier {
        Some(repeat) => repeat,
        None => match engine.run_with_id(&input.order.order_id, "order", &input).await {
            Ok(_) => return Ok(Started::Completed),
            Err(e) if e.is_compensated() => return Ok(Started::Compensated),
            Err(e) if e.is_failed() => return Ok(Started::Failed),
            Err(e) if e.is_lease_lost() => return Ok(Started::Elsewhere),
            Err(e) => match e.conflicting_input() {
                Some(stored) => compare(stored, &input.order).map_err(|err| {
                    format!("line {}: the stored saga {} is unreadable: {err}", line.number, input.order.order_id)
                })?,
                None => return Err(e.into()),
            },
        },
    };
    Ok(match repeat {
        Repeat::Duplicate { first } => {
            record_duplicate(pool, line, &input.order, &first).await?;
            Started::Duplicate
        }
        Repeat::Conflict { first } => Started::Conflict(format!(
            "line {}: order {} conflicts with {first}: same order_id, different content",
            line.number, input.order.order_id
        )),
    })
}

/// How our order compares with the stored saga's input.
fn compare(stored: &serde_json::Value, ours: &Order) -> Result<Repeat, serde_json::Error> {
    let theirs: Order = serde_json::from_value(stored.clone())?;
    // Sagas started before inputs named their line have no `from`.
    let first = serde_json::from_value(stored["from"].clone())
        .unwrap_or_else(|_| LineRef { input: "an earlier run".into(), line: 0 });
    Ok(if theirs == *ours { Repeat::Duplicate { first } } else { Repeat::Conflict { first } })
}

/// Records that `line` repeated `first` (once per line).
///
/// # Errors
/// The database failing.
async fn record_duplicate(pool: &AnyPool, line: &Line, order: &Order, first: &LineRef) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO weir_cli_duplicates (input, line, order_id, tenant, first_input, first_line) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (input, line) DO NOTHING",
    )
    .bind(&line.input)
    .bind(line.number as i64)
    .bind(&order.order_id)
    .bind(&order.tenant)
    .bind(&first.input)
    .bind(first.line as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Duplicate lines per tenant.
///
/// # Errors
/// The database failing.
pub async fn duplicates_per_tenant(pool: &AnyPool) -> Result<Vec<(String, u64)>, Error> {
    let rows = sqlx::query("SELECT tenant, COUNT(*) FROM weir_cli_duplicates GROUP BY tenant").fetch_all(pool).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64))).collect()
}
