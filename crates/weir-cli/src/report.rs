//! The report of what a database holds: per tenant, the orders completed,
//! compensated, failed and dead-lettered; the top error reasons; the
//! ledger invariants; the last run's figures.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::Row;
use weir::error::BoxError;
use weir::store::Store;

use crate::ledger::{Invariants, Ledger};
use crate::orders::Order;
use crate::run::{LAST_RUN, RunFigures, any_url, dead_letter_reasons};

#[derive(Debug, Default, Clone, Serialize)]
pub struct TenantRow {
    pub completed: u64,
    pub compensated: u64,
    pub failed: u64,
    pub in_progress: u64,
    pub dead_lettered: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub database: String,
    pub tenants: BTreeMap<String, TenantRow>,
    pub totals: TenantRow,
    pub top_errors: Vec<(String, u64)>,
    pub invariants: Invariants,
    pub invariants_hold: bool,
    pub last_run: Option<RunFigures>,
}

/// The tenant bucket of lines that never became orders.
const REJECTED: &str = "(rejected lines)";

pub async fn build(store: &Store, location: &str) -> Result<Report, BoxError> {
    let ledger = Ledger::connect(&any_url(location)).await?;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&any_url(location)).await?;
    let mut tenants: BTreeMap<String, TenantRow> = BTreeMap::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    let (mut completed, mut compensated) = (BTreeMap::new(), HashSet::new());
    let mut rows = sqlx::query("SELECT id, status, input, error FROM weir_sagas").fetch(&pool);
    while let Some(row) = rows.try_next().await? {
        let (id, status, input, error): (String, String, String, Option<String>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        let order: Order = serde_json::from_str(&input)?;
        let t = tenants.entry(order.tenant.clone()).or_default();
        match status.as_str() {
            "completed" => {
                t.completed += 1;
                completed.insert(id, order.amount_cents as i64);
            }
            "compensated" => {
                t.compensated += 1;
                compensated.insert(id);
            }
            "failed" => t.failed += 1,
            _ => t.in_progress += 1,
        }
        if let Some(error) = error {
            *errors.entry(normalize(&error)).or_default() += 1;
        }
    }
    for reason in dead_letter_reasons(store).await? {
        tenants.entry(REJECTED.to_owned()).or_default().dead_lettered += 1;
        *errors.entry(normalize(&reason)).or_default() += 1;
    }
    let totals = tenants.values().fold(TenantRow::default(), |a, t| TenantRow {
        completed: a.completed + t.completed,
        compensated: a.compensated + t.compensated,
        failed: a.failed + t.failed,
        in_progress: a.in_progress + t.in_progress,
        dead_lettered: a.dead_lettered + t.dead_lettered,
    });
    let mut top_errors: Vec<(String, u64)> = errors.into_iter().collect();
    top_errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_errors.truncate(8);
    let invariants = ledger.check(&completed, &compensated, totals.in_progress).await?;
    let last_run = store.cursor(LAST_RUN).await?.map(serde_json::from_value).transpose()?;
    Ok(Report {
        database: store.target(),
        tenants,
        totals,
        top_errors,
        invariants_hold: invariants.hold(),
        invariants,
        last_run,
    })
}

/// An error message without its ids and numbers, so that alike errors
/// count together.
fn normalize(error: &str) -> String {
    let text = error.split("; next probe").next().unwrap_or(error);
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

pub fn print(report: &Report) {
    println!("weir report — {}", report.database);
    if let Some(run) = &report.last_run {
        println!(
            "last run: {} lines of {} in {:.2} s ({:.0} orders/s); {:.0} % of the time committing ({} transactions); resumed {} saga(s) left by an earlier run",
            run.lines_read,
            run.input,
            run.elapsed_ms as f64 / 1000.0,
            run.orders_per_second,
            run.commit_share * 100.0,
            run.transactions,
            run.resumed
        );
        if run.breaker_openings.is_empty() {
            println!("payment breakers: none opened");
        } else {
            let opened: Vec<String> = run.breaker_openings.iter().map(|(t, n)| format!("{t} ×{n}")).collect();
            println!("payment breakers opened: {}", opened.join(", "));
        }
    }
    println!();
    println!(
        "{:<18} {:>10} {:>12} {:>8} {:>12} {:>14}",
        "tenant", "completed", "compensated", "failed", "in progress", "dead-lettered"
    );
    for (tenant, t) in &report.tenants {
        println!(
            "{tenant:<18} {:>10} {:>12} {:>8} {:>12} {:>14}",
            t.completed, t.compensated, t.failed, t.in_progress, t.dead_lettered
        );
    }
    let t = &report.totals;
    println!(
        "{:<18} {:>10} {:>12} {:>8} {:>12} {:>14}",
        "total", t.completed, t.compensated, t.failed, t.in_progress, t.dead_lettered
    );
    println!();
    println!("top error reasons:");
    for (reason, n) in &report.top_errors {
        println!("  {n:>7}  {reason}");
    }
    println!();
    let i = &report.invariants;
    let mark = |ok: bool| if ok { "ok" } else { "VIOLATED" };
    println!("ledger invariants:");
    println!(
        "  charges not refunded = completed orders: {} ({} = {} cents)",
        mark(i.charged_cents == i.completed_cents),
        i.charged_cents,
        i.completed_cents
    );
    println!("  no stock below zero: {}", mark(i.negative_stock.is_empty()));
    println!("  every compensated order refunded: {}", mark(i.unrefunded_compensated.is_empty()));
    println!("  no order charged twice: {}", mark(i.charged_twice.is_empty()));
}
