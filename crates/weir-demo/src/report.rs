//! The report of what a database holds: per tenant, the orders completed,
//! compensated, failed, duplicated and dead-lettered; the input lines read
//! against the lines accounted for; the top error reasons; the ledger
//! invariants; one judgement; the last run's figures.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use weir::durable::store::{SagaQuery, SagaStatus, Store};
use weir::error::BoxError;

use crate::cursor::Cursor;
use crate::intake;
use crate::ledger::{Invariants, Ledger};
use crate::orders::Order;
use crate::run::{Ending, INPUT_CURSOR, LAST_RUN, RunFigures, any_url, dead_letter_reasons};

#[derive(Debug, Default, Clone, Serialize)]
pub struct TenantRow {
    pub completed: u64,
    pub compensated: u64,
    pub failed: u64,
    pub in_progress: u64,
    /// Lines that repeated an earlier line's order, identical.
    pub duplicates: u64,
    pub dead_lettered: u64,
}

impl TenantRow {
    /// Lines this row accounts for: each line ends in exactly one column.
    pub fn lines(&self) -> u64 {
        self.completed + self.compensated + self.failed + self.in_progress + self.duplicates + self.dead_lettered
    }

    fn add(&self, t: &TenantRow) -> TenantRow {
        TenantRow {
            completed: self.completed + t.completed,
            compensated: self.compensated + t.compensated,
            failed: self.failed + t.failed,
            in_progress: self.in_progress + t.in_progress,
            duplicates: self.duplicates + t.duplicates,
            dead_lettered: self.dead_lettered + t.dead_lettered,
        }
    }
}

/// What the report concludes, the same in text, JSON and exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// Every invariant holds and nothing is in progress (exit 0).
    Holds,
    /// An invariant is broken, or a line read is not accounted for (exit 4).
    Violated,
    /// Nothing is broken, but sagas are still in progress, so the sums
    /// cannot be judged yet (exit 5).
    NotSettled,
}

impl Judgement {
    /// The exit code scripts see.
    pub fn exit_code(self) -> u8 {
        match self {
            Judgement::Holds => 0,
            Judgement::Violated => 4,
            Judgement::NotSettled => 5,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub database: String,
    pub tenants: BTreeMap<String, TenantRow>,
    pub totals: TenantRow,
    /// Input lines handled, per the saved cursors of every input.
    pub lines_handled: u64,
    /// Lines the totals account for (their sum).
    pub lines_accounted: u64,
    pub top_errors: Vec<(String, u64)>,
    pub invariants: Invariants,
    pub judgement: Judgement,
    pub last_run: Option<RunFigures>,
}

/// Sagas read per query: the report reads them all, a page at a time.
const SAGAS_PER_PAGE: usize = 1000;

/// The tenant bucket of lines that never became orders.
const REJECTED: &str = "(rejected lines)";

pub async fn build(store: &Store, location: &str) -> Result<Report, BoxError> {
    let ledger = Ledger::connect(&any_url(location), store).await?;
    let pool = ledger.pool().clone();
    let mut tenants: BTreeMap<String, TenantRow> = BTreeMap::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    let (mut completed, mut compensated) = (BTreeMap::new(), HashSet::new());
    let mut page = SagaQuery::new().limit(SAGAS_PER_PAGE);
    loop {
        let sagas = store.find_sagas(&page).await?;
        let Some(last) = sagas.last() else { break };
        page = page.after(last.id.clone());
        for saga in sagas {
            let order: Order = serde_json::from_value(saga.input)?;
            let t = tenants.entry(order.tenant.clone()).or_default();
            match saga.status {
                SagaStatus::Completed => {
                    t.completed += 1;
                    completed.insert(saga.id, order.amount_cents as i64);
                }
                SagaStatus::Compensated => {
                    t.compensated += 1;
                    compensated.insert(saga.id);
                }
                SagaStatus::Failed => t.failed += 1,
                SagaStatus::Running | SagaStatus::Compensating => t.in_progress += 1,
            }
            if let Some(error) = saga.error {
                *errors.entry(normalize(&error)).or_default() += 1;
            }
        }
    }
    for (tenant, n) in intake::duplicates_per_tenant(&pool).await? {
        tenants.entry(tenant).or_default().duplicates += n;
    }
    for reason in dead_letter_reasons(store).await? {
        tenants.entry(REJECTED.to_owned()).or_default().dead_lettered += 1;
        *errors.entry(normalize(&reason)).or_default() += 1;
    }
    let totals = tenants.values().fold(TenantRow::default(), |a, t| a.add(t));
    let mut top_errors: Vec<(String, u64)> = errors.into_iter().collect();
    top_errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top_errors.truncate(8);
    let invariants = ledger.check(&completed, &compensated, totals.in_progress).await?;
    let last_run = store.cursor(LAST_RUN).await?.map(serde_json::from_value).transpose()?;
    let lines_handled = lines_handled(store).await?;
    let lines_accounted = totals.lines();
    // A line the cursor passed but no column holds would be lost. More
    // lines accounted than handled is fine: lines in flight when a run
    // stopped are re-read, and deduplicated, by the next.
    let judgement = if invariants.violated() || lines_accounted < lines_handled {
        Judgement::Violated
    } else if !invariants.settled() {
        Judgement::NotSettled
    } else {
        Judgement::Holds
    };
    Ok(Report {
        database: store.target(),
        tenants,
        totals,
        lines_handled,
        lines_accounted,
        top_errors,
        judgement,
        invariants,
        last_run,
    })
}

/// Lines handled in every input, per their saved cursors.
async fn lines_handled(store: &Store) -> Result<u64, BoxError> {
    let mut lines = 0;
    for saved in store.cursors().await?.into_iter().filter(|c| c.name.starts_with(INPUT_CURSOR)) {
        let cursor: Cursor = serde_json::from_value(saved.position)?;
        lines += cursor.handled_lines();
    }
    Ok(lines)
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
    println!("weir-demo report — {}", report.database);
    if let Some(run) = &report.last_run {
        let ending = match run.ending {
            Ending::Finished => "",
            Ending::Drained => " (stopped by a signal after the orders in flight finished; rerun to go on)",
            Ending::Aborted => " (stopped at once by a second signal; rerun to go on)",
        };
        println!(
            "last run: {} lines of {} in {:.2} s ({:.0} lines/s), {} skipped as handled before{ending}",
            run.lines_read,
            run.input,
            run.elapsed_ms as f64 / 1000.0,
            run.orders_per_second,
            run.lines_skipped,
        );
        println!(
            "          {:.0} % of the time committing ({} transactions); {} saga(s) resumed at start, {} taken over from stopped workers",
            run.commit_share * 100.0,
            run.transactions,
            run.resumed,
            run.taken_over
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
        "{:<18} {:>10} {:>12} {:>8} {:>12} {:>11} {:>14}",
        "tenant", "completed", "compensated", "failed", "in progress", "duplicates", "dead-lettered"
    );
    let row = |name: &str, t: &TenantRow| {
        println!(
            "{name:<18} {:>10} {:>12} {:>8} {:>12} {:>11} {:>14}",
            t.completed, t.compensated, t.failed, t.in_progress, t.duplicates, t.dead_lettered
        );
    };
    for (tenant, t) in &report.tenants {
        row(tenant, t);
    }
    row("total", &report.totals);
    println!();
    println!("top error reasons:");
    for (reason, n) in &report.top_errors {
        println!("  {n:>7}  {reason}");
    }
    println!();
    let mark = |ok: bool| if ok { "ok" } else { "VIOLATED" };
    let (handled, accounted) = (report.lines_handled, report.lines_accounted);
    println!(
        "input lines: {handled} handled, {accounted} accounted for: {}",
        if accounted >= handled { "ok" } else { "VIOLATED (a handled line is in no column)" }
    );
    let i = &report.invariants;
    println!("ledger invariants:");
    let (a, b) = (i.charged_cents, i.completed_cents);
    match i.sums_match() {
        Some(true) => println!("  charges not refunded = completed orders: ok ({a} = {b} cents)"),
        Some(false) => println!("  charges not refunded = completed orders: VIOLATED ({a} ≠ {b} cents)"),
        None => println!(
            "  charges not refunded = completed orders: not settled, {} saga(s) in progress ({a} and {b} cents so far)",
            i.in_progress
        ),
    }
    println!("  no stock below zero: {}", mark(i.negative_stock.is_empty()));
    println!("  every compensated order refunded: {}", mark(i.unrefunded_compensated.is_empty()));
    println!("  no order charged twice: {}", mark(i.charged_twice.is_empty()));
    println!();
    match report.judgement {
        Judgement::Holds => println!("judgement: every invariant holds"),
        Judgement::Violated => println!("judgement: VIOLATED (exit 4)"),
        Judgement::NotSettled => println!(
            "judgement: not settled (exit 5): {} saga(s) in progress; wait for the workers running, or run `weir-demo resume`, then `weir-demo report`",
            i.in_progress
        ),
    }
}
