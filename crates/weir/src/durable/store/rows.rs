//! Decoding weir's rows, written once for SQLite and PostgreSQL: the two
//! differ only in how a column is read ([`Columns`]), not in what a saga or
//! a dead letter is made of.

use super::inspect::{self, CursorRecord, QueueSummary};
use super::record::{SagaRecord, SagaStatus, StepRecord};
use super::{DeadLetterRow, StoreError};

/// The column reads the decoders need, one impl per database.
pub(super) trait Columns {
    /// A text column that may be NULL.
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    /// An integer column of any width that may be NULL.
    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
}

#[cfg(feature = "sqlite")]
impl Columns for sqlx::sqlite::SqliteRow {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }

    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }
}

#[cfg(feature = "postgres")]
impl Columns for sqlx::postgres::PgRow {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::Row::try_get(self, column)
    }

    /// `BIGINT` columns, and `INTEGER` ones (attempts) widened.
    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::Row::try_get::<Option<i64>, _>(self, column)
            .or_else(|_| sqlx::Row::try_get::<Option<i32>, _>(self, column).map(|v| v.map(i64::from)))
    }
}

/// A saga row; a column that does not decode is [`StoreError::Corrupt`]
/// naming the saga and the column.
pub(super) fn saga(target: &str, row: &impl Columns) -> Result<SagaRecord, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { target: target.to_owned(), detail };
    let id = required_text(row, "id").map_err(|e| corrupt(format!("column id: {e}")))?;
    let column = |e: sqlx::Error, name: &str| corrupt(format!("saga {id}: {name}: {e}"));
    let text = |name: &str| required_text(row, name).map_err(|e| column(e, name));
    let int = |name: &str| required_int(row, name).map_err(|e| column(e, name));
    let status = text("status")?;
    let steps: Vec<StepRecord> =
        serde_json::from_str(&text("steps")?).map_err(|e| corrupt(format!("saga {id}: steps: {e}")))?;
    Ok(SagaRecord {
        definition: text("definition")?,
        input: serde_json::from_str(&text("input")?).map_err(|e| corrupt(format!("saga {id}: input: {e}")))?,
        status: SagaStatus::parse(&status).ok_or_else(|| corrupt(format!("saga {id}: unknown status {status:?}")))?,
        steps,
        error: row.text("error").map_err(|e| column(e, "error"))?,
        fence: int("fence")?,
        lease_owner: row.text("lease_owner").map_err(|e| column(e, "lease_owner"))?,
        lease_until: row.int("lease_until").map_err(|e| column(e, "lease_until"))?,
        cancel_requested: row.text("cancel_requested").map_err(|e| column(e, "cancel_requested"))?,
        deadline_at: row.int("deadline_at").map_err(|e| column(e, "deadline_at"))?,
        parent: row.text("parent_id").map_err(|e| column(e, "parent_id"))?,
        created_at: int("created_at")?,
        updated_at: int("updated_at")?,
        id,
    })
}

/// A dead-letter row.
pub(super) fn dead_letter(row: &impl Columns) -> Result<DeadLetterRow, sqlx::Error> {
    Ok(DeadLetterRow {
        id: required_int(row, "id")?,
        queue: required_text(row, "queue")?,
        item: required_text(row, "item")?,
        error_chain: required_text(row, "error_chain")?,
        stage: required_text(row, "stage")?,
        item_index: row.int("item_index")?,
        key: row.text("item_key")?,
        tenant: row.text("tenant")?,
        attempts: required_int(row, "attempts")?,
        first_failure: required_int(row, "first_failure")?,
        last_failure: required_int(row, "last_failure")?,
        replay_requested_at: row.int("replay_requested_at")?,
    })
}

/// A dead-letter queue's summary row ([`inspect::QUEUES_SQL`]).
pub(super) fn queue(row: &impl Columns) -> Result<QueueSummary, sqlx::Error> {
    Ok(QueueSummary {
        name: required_text(row, "queue")?,
        letters: required_int(row, "letters")? as u64,
        replay_requested: required_int(row, "replay_requested")? as u64,
        oldest: inspect::time(required_int(row, "oldest")?),
        newest: inspect::time(required_int(row, "newest")?),
    })
}

/// A cursor row ([`inspect::CURSORS_SQL`]); a position that is not JSON is
/// [`StoreError::Corrupt`] naming the cursor.
pub(super) fn cursor(target: &str, row: &impl Columns) -> Result<CursorRecord, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { target: target.to_owned(), detail };
    let name = required_text(row, "name").map_err(|e| corrupt(format!("cursor name: {e}")))?;
    let position = required_text(row, "position").map_err(|e| corrupt(format!("cursor {name}: position: {e}")))?;
    let updated_at = required_int(row, "updated_at").map_err(|e| corrupt(format!("cursor {name}: updated_at: {e}")))?;
    Ok(CursorRecord {
        position: serde_json::from_str(&position).map_err(|e| corrupt(format!("cursor {name}: position: {e}")))?,
        updated_at: inspect::time(updated_at),
        name,
    })
}

fn required_text(row: &impl Columns, column: &str) -> Result<String, sqlx::Error> {
    row.text(column)?.ok_or_else(|| null(column))
}

fn required_int(row: &impl Columns, column: &str) -> Result<i64, sqlx::Error> {
    row.int(column)?.ok_or_else(|| null(column))
}

fn null(column: &str) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: "unexpected NULL".into() }
}
