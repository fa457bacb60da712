//! Applying a group commit's saga writes to SQLite: one multi-row
//! statement per 256 inserts and per 256 updates, padded to a multiple of
//! 16 rows ([`batch::padded_rows`]), and no rows sent back when every
//! write applies.
//!
//! Why no `RETURNING` in the usual case: sqlx runs a SQLite connection on
//! its own thread and hands each result row to the committer task as one
//! channel message, a thread wake-up each. With `RETURNING id` on every
//! statement (132 rows per transaction at 256 sagas in flight), those
//! hand-offs were 14 % of the writer thread's time (`perf`, 2026-12-05).
//! A statement now reports how many rows it changed; only when that falls
//! short (an id started twice, a lease lost) does a second statement find
//! which.

use std::collections::HashSet;

use sqlx::error::ErrorKind;
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite};

use crate::durable::store::WriteResult;
use crate::durable::store::batch::{self, Update};
use crate::durable::store::record::{SagaRecord, SagaWrite, now_ms};

/// Rows per statement: well under SQLite's limit of bound variables.
const ROWS_PER_STATEMENT: usize = 256;

/// Applies `writes` inside the caller's transaction and tells each writer
/// how its write went.
pub(super) async fn apply_batch(
    conn: &mut SqliteConnection,
    writes: &[SagaWrite],
) -> Result<Vec<WriteResult>, sqlx::Error> {
    let (inserts, updates) = batch::split(writes);
    let mut written = HashSet::new();
    for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
        insert(conn, chunk, &mut written).await?;
    }
    let now = now_ms();
    for chunk in updates.chunks(ROWS_PER_STATEMENT) {
        update(conn, chunk, now, &mut written).await?;
    }
    for (name, position, at) in batch::cursors(writes) {
        sqlx::query(
            "INSERT INTO weir_cursors (name, position, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(position)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(batch::results(writes, &written))
}

/// Inserts new sagas. Every id new (the usual case): one statement, no
/// rows back. An id that exists fails that statement, which SQLite undoes
/// alone (the transaction stays open); it is then run again keeping the
/// existing sagas and returning the ids it wrote.
async fn insert(
    conn: &mut SqliteConnection,
    chunk: &[&SagaRecord],
    written: &mut HashSet<String>,
) -> Result<(), sqlx::Error> {
    match batch::insert_sagas::<Sqlite>(chunk, batch::padded_rows(chunk.len())).build().execute(&mut *conn).await {
        Ok(_) => {
            written.extend(chunk.iter().map(|r| r.id.clone()));
            Ok(())
        }
        Err(e) if e.as_database_error().is_some_and(|d| d.kind() == ErrorKind::UniqueViolation) => {
            let mut sql = batch::insert_sagas::<Sqlite>(chunk, chunk.len());
            sql.push(batch::KEEP_EXISTING_RETURN_NEW);
            written.extend(sql.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Writes transitions of sagas this worker holds: a row is written only
/// if it still carries the write's fence (its lease was not lost). All of
/// them written (the usual case): one statement, no rows back. Otherwise
/// the rows still carrying their write's fence are the ones written:
/// nothing else writes inside this transaction, and the update leaves the
/// fence as it was.
async fn update(
    conn: &mut SqliteConnection,
    chunk: &[Update<'_>],
    now: i64,
    written: &mut HashSet<String>,
) -> Result<(), sqlx::Error> {
    let mut sql = QueryBuilder::<Sqlite>::new("WITH v (id, fence, status, steps, error, done) AS (");
    sql.push_values(chunk, |mut row, u| {
        row.push_bind(u.id.to_owned())
            .push_bind(u.fence)
            .push_bind(u.status.as_str())
            .push_bind(u.steps_json.to_owned())
            .push_bind(u.error.map(str::to_owned))
            .push_bind(!u.status.is_active());
    });
    batch::push_null_rows(&mut sql, batch::padded_rows(chunk.len()) - chunk.len(), 6);
    sql.push(") UPDATE weir_sagas SET status = v.status, steps = v.steps, error = v.error, updated_at = ");
    sql.push_bind(now);
    sql.push(
        ", lease_until = CASE WHEN v.done THEN NULL ELSE weir_sagas.lease_until END
         FROM v WHERE weir_sagas.id = v.id AND weir_sagas.fence = v.fence",
    );
    let changed = sql.build().execute(&mut *conn).await?.rows_affected();
    if changed == chunk.len() as u64 {
        written.extend(chunk.iter().map(|u| u.id.to_owned()));
        return Ok(());
    }
    let mut sql = QueryBuilder::<Sqlite>::new("WITH v (id, fence) AS (");
    sql.push_values(chunk, |mut row, u| {
        row.push_bind(u.id.to_owned()).push_bind(u.fence);
    });
    sql.push(") SELECT weir_sagas.id FROM weir_sagas JOIN v ON weir_sagas.id = v.id AND weir_sagas.fence = v.fence");
    written.extend(sql.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;
    use crate::durable::store::Store;
    use crate::durable::store::record::SagaStatus;

    fn saga(id: &str, fence: i64) -> SagaRecord {
        SagaRecord {
            id: id.to_owned(),
            definition: "order".to_owned(),
            input: serde_json::json!({ "id": id }),
            status: SagaStatus::Running,
            steps: Vec::new(),
            error: None,
            fence,
            lease_owner: Some("w".to_owned()),
            lease_until: Some(now_ms() + 60_000),
            cancel_requested: None,
            deadline_at: None,
            parent: None,
            created_at: now_ms(),
            updated_at: now_ms(),
        }
    }

    fn update(id: &str, fence: i64) -> SagaWrite {
        SagaWrite::Update {
            id: id.to_owned(),
            fence,
            status: SagaStatus::Completed,
            steps_json: "[]".to_owned(),
            error: None,
        }
    }

    async fn statuses(conn: &mut SqliteConnection) -> Vec<(String, String, String)> {
        sqlx::query_as("SELECT id, status, input FROM weir_sagas ORDER BY id").fetch_all(conn).await.unwrap()
    }

    /// The fallbacks: a batch mixing new ids with one that exists, and
    /// held sagas with one whose lease was lost, tells each writer its own
    /// outcome and changes nothing it must not.
    #[tokio::test]
    async fn a_batch_with_an_existing_id_and_a_lost_lease_reports_each_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.db");
        let store = Store::open(path.to_str().unwrap()).await.unwrap();
        let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        let before = [saga("held-1", 3), saga("held-2", 3), saga("taken", 3), saga("old", 1)];
        let first: Vec<_> = before.iter().map(|r| SagaWrite::Insert(Box::new(r.clone()))).collect();
        assert!(apply_batch(&mut conn, &first).await.unwrap().iter().all(|r| *r == WriteResult::Applied));

        let mut again = saga("old", 1);
        again.input = serde_json::json!({ "other": true });
        let batch = [
            SagaWrite::Insert(Box::new(saga("new-1", 1))),
            SagaWrite::Insert(Box::new(again)),
            SagaWrite::Insert(Box::new(saga("new-2", 1))),
            update("held-1", 3),
            update("taken", 2),
            update("held-2", 3),
        ];
        let mut tx = conn.begin().await.unwrap();
        let results = apply_batch(&mut tx, &batch).await.unwrap();
        tx.commit().await.unwrap();
        use WriteResult::*;
        assert_eq!(results, [Applied, Exists, Applied, Applied, LeaseLost, Applied]);
        let rows = statuses(&mut conn).await;
        let row = |id: &str| rows.iter().find(|r| r.0 == id).map(|r| (r.1.as_str(), r.2.as_str())).unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(row("held-1").0, "completed");
        assert_eq!(row("held-2").0, "completed");
        assert_eq!(row("taken").0, "running", "a write under a stale fence changes nothing");
        assert_eq!(row("old"), ("running", r#"{"id":"old"}"#), "an existing saga is kept as it was");
        assert_eq!(row("new-1").0, "running");
        drop(store);
    }
}
