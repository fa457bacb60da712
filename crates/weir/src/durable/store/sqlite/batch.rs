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
use crate::durable::store::record::{SagaRecord, SagaStatus, SagaWrite, now_ms};

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
    let (stays_running, transitions): (Vec<_>, Vec<_>) =
        updates.into_iter().partition(|u| u.status == SagaStatus::Running);
    for chunk in stays_running.chunks(ROWS_PER_STATEMENT) {
        update(conn, chunk, Shape::StaysRunning, now, &mut written).await?;
    }
    for chunk in transitions.chunks(ROWS_PER_STATEMENT) {
        update(conn, chunk, Shape::Transition, now, &mut written).await?;
    }
    if let Some(mut upsert) = batch::upsert_cursors::<Sqlite>(writes) {
        upsert.build().execute(&mut *conn).await?;
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

/// Which columns an update writes.
#[derive(Clone, Copy)]
enum Shape {
    /// A step done and more to go: the saga was running and stays so, its
    /// lease unchanged; only its steps, error and time are written.
    /// SQLite rewrites an index entry whenever a column of that index is
    /// set, even to the value it had, and `(status, lease_until)` is
    /// indexed (`weir_sagas_claimable`): leaving both out spares that
    /// rewrite in two of a 3-step saga's three updates. The row must still be
    /// running (a write never takes a saga back to running, so it is); if
    /// it were not, the write is refused as if the lease were lost rather
    /// than written under the wrong status.
    StaysRunning,
    /// Any other status: written, and the lease ended when the saga ended.
    Transition,
}

impl Shape {
    /// The `v` columns, the `SET` list after `steps` and `error`, and the
    /// condition beyond the id and fence.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::StaysRunning => ("(id, fence, steps, error)", "", " AND weir_sagas.status = 'running'"),
            Self::Transition => (
                "(id, fence, steps, error, status, done)",
                ", status = v.status, lease_until = CASE WHEN v.done THEN NULL ELSE weir_sagas.lease_until END",
                "",
            ),
        }
    }
}

/// Writes updates of sagas this worker holds: a row is written only if it
/// still carries the write's fence (its lease was not lost). All of them
/// written (the usual case): one statement, no rows back. Otherwise the
/// rows still carrying their write's fence are the ones written: nothing
/// else writes inside this transaction, and the update leaves the fence
/// as it was.
async fn update(
    conn: &mut SqliteConnection,
    chunk: &[Update<'_>],
    shape: Shape,
    now: i64,
    written: &mut HashSet<String>,
) -> Result<(), sqlx::Error> {
    let (columns, set, guard) = shape.sql();
    let mut sql = QueryBuilder::<Sqlite>::new(format!("WITH v {columns} AS ("));
    sql.push_values(chunk, |mut row, u| {
        row.push_bind(u.id.to_owned())
            .push_bind(u.fence)
            .push_bind(u.steps_json.to_owned())
            .push_bind(u.error.map(str::to_owned));
        if let Shape::Transition = shape {
            row.push_bind(u.status.as_str()).push_bind(!u.status.is_active());
        }
    });
    let width = columns.matches(',').count() + 1;
    batch::push_null_rows(&mut sql, batch::padded_rows(chunk.len()) - chunk.len(), width);
    sql.push(") UPDATE weir_sagas SET steps = v.steps, error = v.error, updated_at = ");
    sql.push_bind(now);
    sql.push(format!("{set} FROM v WHERE weir_sagas.id = v.id AND weir_sagas.fence = v.fence{guard}"));
    let changed = sql.build().execute(&mut *conn).await?.rows_affected();
    if changed == chunk.len() as u64 {
        written.extend(chunk.iter().map(|u| u.id.to_owned()));
        return Ok(());
    }
    let mut sql = QueryBuilder::<Sqlite>::new("WITH v (id, fence) AS (");
    sql.push_values(chunk, |mut row, u| {
        row.push_bind(u.id.to_owned()).push_bind(u.fence);
    });
    sql.push(format!(
        ") SELECT weir_sagas.id FROM weir_sagas JOIN v ON weir_sagas.id = v.id AND weir_sagas.fence = v.fence{guard}"
    ));
    written.extend(sql.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;
    use crate::durable::store::Store;

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

    fn update(id: &str, fence: i64, status: SagaStatus) -> SagaWrite {
        SagaWrite::Update { id: id.to_owned(), fence, status, steps_json: r#"["new"]"#.to_owned(), error: None }
    }

    type Row = (String, String, String, String, Option<i64>);

    /// A migrated database in a directory of its own (kept while the
    /// directory lives) and a connection to it.
    async fn migrated_db() -> (tempfile::TempDir, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.db");
        Store::open(path.to_str().unwrap()).await.unwrap();
        let conn = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        (dir, conn)
    }

    async fn rows(conn: &mut SqliteConnection) -> Vec<Row> {
        sqlx::query_as("SELECT id, status, input, steps, lease_until FROM weir_sagas ORDER BY id")
            .fetch_all(conn)
            .await
            .unwrap()
    }

    /// The fallbacks: a batch mixing new ids with one that exists, and
    /// held sagas with one whose lease was lost, tells each writer its own
    /// outcome and changes nothing it must not; a saga that stays running
    /// keeps its lease, one that ends loses it.
    #[tokio::test]
    async fn a_batch_with_an_existing_id_and_a_lost_lease_reports_each_write() {
        let (_dir, mut conn) = migrated_db().await;
        let mut compensating = saga("compensating", 3);
        compensating.status = SagaStatus::Compensating;
        let before = [saga("ends", 3), saga("goes-on", 3), saga("taken", 3), saga("old", 1), compensating];
        let first: Vec<_> = before.iter().map(|r| SagaWrite::Insert(Box::new(r.clone()))).collect();
        assert!(apply_batch(&mut conn, &first).await.unwrap().iter().all(|r| *r == WriteResult::Applied));
        let held_until = rows(&mut conn).await.into_iter().find(|r| r.0 == "goes-on").unwrap().4;

        let mut again = saga("old", 1);
        again.input = serde_json::json!({ "other": true });
        let batch = [
            SagaWrite::Insert(Box::new(saga("new-1", 1))),
            SagaWrite::Insert(Box::new(again)),
            SagaWrite::Insert(Box::new(saga("new-2", 1))),
            update("ends", 3, SagaStatus::Completed),
            update("taken", 2, SagaStatus::Completed),
            update("goes-on", 3, SagaStatus::Running),
            update("compensating", 3, SagaStatus::Running),
        ];
        let mut tx = conn.begin().await.unwrap();
        let results = apply_batch(&mut tx, &batch).await.unwrap();
        tx.commit().await.unwrap();
        use WriteResult::*;
        assert_eq!(results, [Applied, Exists, Applied, Applied, LeaseLost, Applied, LeaseLost]);
        let rows = rows(&mut conn).await;
        let row = |id: &str| rows.iter().find(|r| r.0 == id).unwrap().clone();
        assert_eq!(rows.len(), 7);
        let new = || r#"["new"]"#.to_owned();
        assert_eq!((row("ends").1, row("ends").3, row("ends").4), ("completed".into(), new(), None));
        assert_eq!((row("goes-on").1, row("goes-on").3, row("goes-on").4), ("running".into(), new(), held_until));
        assert_eq!((row("taken").1, row("taken").3), ("running".into(), "[]".into()), "a stale fence writes nothing");
        assert_eq!(
            (row("compensating").1, row("compensating").3),
            ("compensating".into(), "[]".into()),
            "a saga is never written back to running"
        );
        assert_eq!((row("old").1, row("old").2), ("running".into(), r#"{"id":"old"}"#.into()), "kept as it was");
        assert_eq!(row("new-1").1, "running");
    }

    /// Two starts of one id in one group commit (two engines sharing a
    /// store, a schedule's tick fired by both): the first is written and
    /// told so, the second is told the saga exists, so only one of them
    /// drives it.
    #[tokio::test]
    async fn two_starts_of_one_id_in_one_batch_are_one_start() {
        let (_dir, mut conn) = migrated_db().await;
        let mut second = saga("tick-1", 1);
        second.input = serde_json::json!({ "second": true });
        let batch = [SagaWrite::Insert(Box::new(saga("tick-1", 1))), SagaWrite::Insert(Box::new(second))];
        let results = apply_batch(&mut conn, &batch).await.unwrap();
        assert_eq!(results, [WriteResult::Applied, WriteResult::Exists]);
        let rows = rows(&mut conn).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].2, r#"{"id":"tick-1"}"#, "the first start is the one written");
    }

    /// Cursor saves in one group commit are one statement: several cursors,
    /// one saved twice (the later position wins), one that existed.
    #[tokio::test]
    async fn a_batch_saves_each_cursor_once_with_its_latest_position() {
        let (_dir, mut conn) = migrated_db().await;
        let cursor = |name: &str, position: &str, at| SagaWrite::Cursor {
            name: name.to_owned(),
            position: position.to_owned(),
            at,
        };
        assert_eq!(apply_batch(&mut conn, &[cursor("b", "1", 1)]).await.unwrap(), [WriteResult::Applied]);
        let batch = [cursor("a", "10", 2), cursor("b", "20", 2), cursor("a", "30", 3)];
        let results = apply_batch(&mut conn, &batch).await.unwrap();
        assert_eq!(results, [WriteResult::Applied; 3]);
        let saved: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, position, updated_at FROM weir_cursors ORDER BY name")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(saved, [("a".into(), "30".into(), 3), ("b".into(), "20".into(), 2)]);
    }
}
