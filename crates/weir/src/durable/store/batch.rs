//! Splitting a group commit's writes into multi-row statements, and telling
//! each writer how its write went.

use std::collections::HashSet;

use super::WriteResult;
use super::record::{SagaRecord, SagaStatus, SagaWrite};

/// One update of a batch, borrowed.
pub(crate) struct Update<'a> {
    pub(crate) id: &'a str,
    pub(crate) fence: i64,
    pub(crate) status: SagaStatus,
    pub(crate) steps_json: &'a str,
    pub(crate) error: Option<&'a str>,
}

pub(crate) fn split(writes: &[SagaWrite]) -> (Vec<&SagaRecord>, Vec<Update<'_>>) {
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    for write in writes {
        match write {
            SagaWrite::Insert(record) => inserts.push(&**record),
            SagaWrite::Update { id, fence, status, steps_json, error } => {
                updates.push(Update { id, fence: *fence, status: *status, steps_json, error: error.as_deref() })
            }
            SagaWrite::Cursor { .. } => {}
        }
    }
    // The same lock order in every process: two committers writing
    // overlapping sagas (several workers on one PostgreSQL) cannot deadlock.
    inserts.sort_by(|a, b| a.id.cmp(&b.id));
    updates.sort_by(|a, b| a.id.cmp(b.id));
    (inserts, updates)
}

/// One multi-row insert of new sagas, the same statement in SQLite and
/// PostgreSQL; the caller appends what happens to an id that exists
/// already ([`KEEP_EXISTING_RETURN_NEW`], or nothing: the statement fails).
///
/// `padded_to` (at least the chunk's length) rows are sent: the rest are
/// rows of NULLs that a `WHERE` leaves out, so that a few statement texts
/// serve every batch size and stay prepared (see [`padded_rows`]).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn insert_sagas<'a, DB>(chunk: &[&'a SagaRecord], padded_to: usize) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    const COLUMNS: usize = 13;
    let padding = padded_to.saturating_sub(chunk.len());
    let mut sql = sqlx::QueryBuilder::<DB>::new(
        "INSERT INTO weir_sagas (id, definition, input, status, steps, error, fence, lease_owner, lease_until, deadline_at, parent_id, created_at, updated_at) ",
    );
    if padding > 0 {
        sql.push("SELECT * FROM (");
    }
    sql.push_values(chunk, |mut row, r| {
        row.push_bind(r.id.clone())
            .push_bind(r.definition.clone())
            .push_bind(r.input.to_string())
            .push_bind(r.status.as_str())
            .push_bind(serde_json::to_string(&r.steps).expect("step records serialize"))
            .push_bind(r.error.clone())
            .push_bind(r.fence)
            .push_bind(r.lease_owner.clone())
            .push_bind(r.lease_until)
            .push_bind(r.deadline_at)
            .push_bind(r.parent.clone())
            .push_bind(r.created_at)
            .push_bind(r.updated_at);
    });
    if padding > 0 {
        push_null_rows(&mut sql, padding, COLUMNS);
        sql.push(") AS v WHERE column1 IS NOT NULL");
    }
    sql
}

/// The row count a statement for `rows` rows is padded to: the next
/// multiple of 16. A multi-row statement's text changes with its row
/// count, and a text seen for the first time is parsed and planned again
/// (on SQLite that was 6.5 % of the writer thread's time at 256 sagas in
/// flight, `perf`, 2026-12-05); padded, 16 texts per statement serve
/// batches of up to 256 rows.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn padded_rows(rows: usize) -> usize {
    rows.div_ceil(16) * 16
}

/// Appends `rows` rows of `columns` NULLs to a `VALUES` list that has at
/// least one row already.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn push_null_rows<DB: sqlx::Database>(sql: &mut sqlx::QueryBuilder<'_, DB>, rows: usize, columns: usize) {
    let row = format!(", ({})", vec!["NULL"; columns].join(", "));
    for _ in 0..rows {
        sql.push(&row);
    }
}

/// What [`insert_sagas`] needs to keep the sagas that exist already (an
/// id started twice) and report the ids it wrote.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const KEEP_EXISTING_RETURN_NEW: &str = " ON CONFLICT (id) DO NOTHING RETURNING id";

/// One statement saving a batch's cursor positions ([`cursors`]), the
/// same text for SQLite and PostgreSQL; `None` when the batch saves none.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn upsert_cursors<'a, DB>(writes: &'a [SagaWrite]) -> Option<sqlx::QueryBuilder<'a, DB>>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let cursors = cursors(writes);
    if cursors.is_empty() {
        return None;
    }
    let mut sql = sqlx::QueryBuilder::<DB>::new("INSERT INTO weir_cursors (name, position, updated_at) ");
    sql.push_values(cursors, |mut row, (name, position, at)| {
        row.push_bind(name).push_bind(position).push_bind(at);
    });
    sql.push(" ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at");
    Some(sql)
}

/// The cursor positions of a batch, one per cursor: the last queued wins
/// (a batch may hold several saves of one cursor; one statement may not
/// update a row twice), sorted by name.
fn cursors(writes: &[SagaWrite]) -> Vec<(&str, &str, i64)> {
    let mut latest = std::collections::BTreeMap::new();
    for write in writes {
        if let SagaWrite::Cursor { name, position, at } = write {
            latest.insert(name.as_str(), (position.as_str(), *at));
        }
    }
    latest.into_iter().map(|(name, (position, at))| (name, position, at)).collect()
}

/// Each write's result, given the ids the statements reported as written.
/// A saga's next write waits for the previous one's commit, so a batch
/// holds one write per saga, with one exception: two starts of one id
/// (two engines sharing a store, both firing a schedule's tick). The first
/// of them in the batch is the one written ([`split`]'s sort is stable, and
/// an insert keeps the first row of an id); the later ones are told the
/// saga exists, so only one engine drives it.
pub(crate) fn results(writes: &[SagaWrite], written: &HashSet<String>) -> Vec<WriteResult> {
    let mut started = HashSet::new();
    writes
        .iter()
        .map(|write| match write {
            SagaWrite::Insert(r) if written.contains(&r.id) && started.insert(&r.id) => WriteResult::Applied,
            SagaWrite::Insert(_) => WriteResult::Exists,
            SagaWrite::Update { id, .. } if written.contains(id) => WriteResult::Applied,
            SagaWrite::Update { .. } => WriteResult::LeaseLost,
            SagaWrite::Cursor { .. } => WriteResult::Applied,
        })
        .collect()
}
