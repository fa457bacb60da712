//! Which input line an order belongs to.
//!
//! An order id is the saga's id, so two lines with one order id would be
//! one saga and the second line would vanish into the first. Each order id
//! is claimed by the first line that carries it (by input file and line
//! number, kept in the database so that reruns and other workers agree). A
//! later line with the same id is an *identical duplicate* (same order:
//! counted as such) or a *conflict* (different content: dead-lettered with
//! a reason naming both lines).

use std::collections::HashMap;

use sqlx::{AnyPool, Row};

use crate::ledger::Error;
use crate::orders::Order;

/// Where a line stands with its order id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This line carries the order (first seen here, or seen here before a
    /// restart): run its saga.
    Mine,
    /// An earlier line carried the same order, identical.
    Duplicate { first: LineRef },
    /// An earlier line carried the same order id with other content.
    Conflict { first: LineRef },
}

/// A line of an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    pub input: String,
    pub line: u64,
}

impl std::fmt::Display for LineRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} of {}", self.line, self.input)
    }
}

/// The order ids seen so far in this run, in input order: lines are
/// parsed in parallel but come here in order, so within a run the first
/// line with an id is the one that keeps it, whatever line finishes
/// parsing first. (Across runs and workers the database decides.) Holds
/// each order's id and canonical JSON: about 200 bytes per order.
#[derive(Debug, Default)]
pub struct SeenInRun {
    first: HashMap<String, (u64, String)>,
}

impl SeenInRun {
    /// `None` if `line` is the first in this run with `order`'s id;
    /// otherwise how it compares with the first one.
    pub fn check(&mut self, input: &str, line: u64, order: &Order) -> Option<Claim> {
        let content = serde_json::to_string(order).expect("an order serializes");
        match self.first.get(&order.order_id) {
            None => {
                self.first.insert(order.order_id.clone(), (line, content));
                None
            }
            Some((first, _)) if *first == line => None,
            Some((first, stored)) => {
                let first = LineRef { input: input.to_owned(), line: *first };
                Some(if *stored == content { Claim::Duplicate { first } } else { Claim::Conflict { first } })
            }
        }
    }
}

/// Claims `order`'s id for `line` of `input`, or says which line has it.
///
/// # Errors
/// The database failing.
pub async fn claim(pool: &AnyPool, input: &str, line: u64, order: &Order) -> Result<Claim, Error> {
    let content = serde_json::to_string(order)?;
    let inserted = sqlx::query(
        "INSERT INTO weir_cli_order_lines (order_id, input, line, content) VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&order.order_id)
    .bind(input)
    .bind(line as i64)
    .bind(&content)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Mine);
    }
    let row = sqlx::query("SELECT input, line, content FROM weir_cli_order_lines WHERE order_id = $1")
        .bind(&order.order_id)
        .fetch_one(pool)
        .await?;
    let first = LineRef { input: row.try_get(0)?, line: row.try_get::<i64, _>(1)? as u64 };
    let stored: String = row.try_get(2)?;
    Ok(if first.input == input && first.line == line {
        Claim::Mine
    } else if stored == content {
        Claim::Duplicate { first }
    } else {
        Claim::Conflict { first }
    })
}

/// Records that `line` of `input` repeated `first` (once per line).
///
/// # Errors
/// The database failing.
pub async fn record_duplicate(
    pool: &AnyPool,
    input: &str,
    line: u64,
    order: &Order,
    first: &LineRef,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO weir_cli_duplicates (input, line, order_id, tenant, first_input, first_line) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (input, line) DO NOTHING",
    )
    .bind(input)
    .bind(line as i64)
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
