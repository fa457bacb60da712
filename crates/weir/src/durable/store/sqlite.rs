//! The embedded SQLite backend: one file, WAL, `synchronous = FULL`, a
//! single writer connection owned by the group committer, a small pool of
//! readers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

use crate::error::find;
use crate::policy::retry::RetryPolicy;

use super::committer::Applied;
use super::effect::{self, Effect, Tx};
use super::inspect::{self, CursorRecord, LetterQuery, QueueSummary, SagaQuery};
use super::record::{SagaRecord, SagaWrite};
use super::rows;
use super::{ClaimScope, DeadLetterRow, StoreError};

mod batch;
use self::batch::apply_batch;

/// The newest schema version this build knows.
const LATEST_SCHEMA: i64 = 10;

pub(crate) struct Sqlite {
    pub(crate) target: String,
    readers: SqlitePool,
    options: SqliteConnectOptions,
}

impl Sqlite {
    pub(crate) async fn open(path: &Path) -> Result<Self, StoreError> {
        let target = path.display().to_string();
        create_private(path).map_err(|e| StoreError::Open { target: target.clone(), source: e.into() })?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| StoreError::Open { target: target.clone(), source: e.into() })?
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .disable_statement_logging();
        // Openers of one new file at once (processes starting together)
        // contend for the switch to WAL, which SQLite answers with "database
        // is locked" without waiting out the busy timeout: retried.
        let busy = RetryPolicy::builder()
            .max_attempts(1000)
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(200))
            .max_elapsed(Duration::from_secs(30))
            .build()
            .expect("valid");
        let open = || Self::connect_and_migrate(target.clone(), options.clone());
        busy.call_if(open, is_busy).await.map_err(|e| e.into_attempted())
    }

    async fn connect_and_migrate(target: String, options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(|e| open_error(&target, e))?;
        let store = Self { target, readers, options };
        store.migrate().await?;
        Ok(store)
    }

    /// Checks the schema and migrates it, holding the file's write lock
    /// from the check to the last migration: openers of one new file at
    /// once (processes starting together) migrate it one after another,
    /// and each later one finds it done. sqlx's SQLite migrator takes no
    /// lock of its own; its deferred transactions upgraded to writes at
    /// once fail with "database is locked".
    async fn migrate(&self) -> Result<(), StoreError> {
        let open = |e: sqlx::Error| open_error(&self.target, e);
        let mut conn = self.readers.acquire().await.map_err(open)?;
        let mut locked = (*conn).begin_with("BEGIN IMMEDIATE").await.map_err(|e| foreign_or_query(&self.target, e))?;
        self.check_schema(&mut locked).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run_direct(&mut *locked)
            .await
            .map_err(|e| StoreError::Open { target: self.target.clone(), source: e.into() })?;
        locked.commit().await.map_err(open)
    }

    /// Refuses a file that is not weir's, or was written by a newer weir.
    async fn check_schema(&self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| foreign_or_query(&self.target, e))?;
        if tables.is_empty() {
            return Ok(());
        }
        if !tables.iter().any(|t| t == "_sqlx_migrations") {
            return Err(StoreError::Foreign {
                target: self.target.clone(),
                reason: format!("it holds other tables: {}", tables.join(", ")),
            });
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        match found {
            Some(found) if found > LATEST_SCHEMA => {
                Err(StoreError::SchemaTooNew { target: self.target.clone(), found, supported: LATEST_SCHEMA })
            }
            _ => Ok(()),
        }
    }

    pub(crate) async fn writer(&self) -> Result<SqliteConnection, StoreError> {
        self.options.connect().await.map_err(|e| open_error(&self.target, e))
    }

    /// Applies `writes`, then `effects`, in one immediate transaction: one
    /// fsync for all.
    #[allow(irrefutable_let_patterns)] // a build with one database has one `Tx`
    pub(crate) async fn apply(
        &self,
        tx: &mut Tx,
        writes: &[SagaWrite],
        effects: &[Effect],
    ) -> Result<Applied, StoreError> {
        let q = |e| query_error(&self.target, e);
        let Tx::Sqlite(conn) = tx else { unreachable!("a SQLite store's writer is SQLite") };
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(q)?;
        let applied = match apply_batch(conn, writes).await {
            Ok(results) => effect::run_all(tx, effects).await.map(|outputs| (results, outputs)),
            Err(e) => Err(e),
        };
        let Tx::Sqlite(conn) = tx else { unreachable!("a SQLite store's writer is SQLite") };
        match applied {
            Ok(applied) => match sqlx::query("COMMIT").execute(&mut *conn).await {
                Ok(_) => Ok(applied),
                Err(e) => {
                    // A failed COMMIT (a full disk) can leave the transaction
                    // open, holding the write lock: end it.
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(q(e))
                }
            },
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(query_error(&self.target, e))
            }
        }
    }

    pub(crate) async fn claim(
        conn: &mut SqliteConnection,
        target: &str,
        owner: &str,
        lease_until: i64,
        now: i64,
        limit: i64,
        scope: &ClaimScope<'_>,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let json = |names: &[String]| serde_json::to_string(names).expect("strings serialize");
        let rows = sqlx::query(
            "UPDATE weir_sagas SET lease_owner = ?1, lease_until = ?2, fence = fence + 1
             WHERE id IN (SELECT id FROM weir_sagas
                          WHERE status IN ('running', 'compensating')
                            AND (lease_until IS NULL OR lease_until < ?3 OR (?6 AND lease_owner = ?1))
                            AND id NOT IN (SELECT value FROM json_each(?5))
                            AND (?7 IS NULL OR definition IN (SELECT value FROM json_each(?7)))
                            AND (NOT ?8 OR (lease_owner IS NULL AND lease_until IS NOT NULL))
                          ORDER BY CASE WHEN ?8 THEN lease_until ELSE created_at END LIMIT ?4)
             RETURNING *",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .bind(json(scope.own.unwrap_or_default()))
        .bind(scope.own.is_some())
        .bind(scope.definitions.map(json))
        .bind(scope.parked_only)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| query_error(target, e))?;
        rows.iter().map(|r| rows::saga(target, r)).collect()
    }

    pub(crate) async fn claim_one(
        conn: &mut SqliteConnection,
        target: &str,
        id: &str,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let row = sqlx::query(
            "UPDATE weir_sagas SET lease_owner = ?1, lease_until = ?2, fence = fence + 1
             WHERE id = ?4 AND status IN ('running', 'compensating')
               AND (lease_until IS NULL OR lease_until < ?3 OR lease_owner = ?1)
             RETURNING *",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| query_error(target, e))?;
        row.map(|r| rows::saga(target, &r)).transpose()
    }

    pub(crate) async fn heartbeat(
        conn: &mut SqliteConnection,
        target: &str,
        owner: &str,
        sagas: &[String],
        lease_until: i64,
    ) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE weir_sagas SET lease_until = ?1
             WHERE lease_owner = ?2 AND status IN ('running', 'compensating')
               AND id IN (SELECT value FROM json_each(?3))",
        )
        .bind(lease_until)
        .bind(owner)
        .bind(serde_json::to_string(sagas).expect("strings serialize"))
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| query_error(target, e))
    }

    pub(crate) async fn next_wake(&self, definitions: &[String]) -> Result<Option<i64>, StoreError> {
        let sql = super::waits::NEXT_WAKE.replace("DEFINITIONS", "SELECT value FROM json_each($1)");
        sqlx::query_scalar(&sql)
            .bind(serde_json::to_string(definitions).expect("strings serialize"))
            .fetch_optional(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))
    }

    pub(crate) async fn count_parked(
        &self,
        definitions: &[String],
    ) -> Result<Vec<super::waits::ParkedCount>, StoreError> {
        let sql = super::waits::COUNT_PARKED.replace("DEFINITIONS", "SELECT value FROM json_each($1)");
        let rows = sqlx::query_as(&sql)
            .bind(serde_json::to_string(definitions).expect("strings serialize"))
            .fetch_all(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        Ok(super::waits::parked_counts(rows))
    }

    pub(crate) async fn saga_events(&self, id: &str) -> Result<Vec<super::waits::SagaEvent>, StoreError> {
        let rows: Vec<super::waits::EventRow> = sqlx::query_as(super::waits::EVENTS_OF_SAGA)
            .bind(id)
            .fetch_all(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        rows.into_iter().map(|row| super::waits::event(&self.target, row)).collect()
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM weir_sagas WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        row.map(|r| rows::saga(&self.target, &r)).transpose()
    }

    pub(crate) async fn find_sagas(
        &self,
        query: &SagaQuery,
        after: Option<(i64, &str)>,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let rows = inspect::sagas_sql::<sqlx::Sqlite>(query, after, inspect::Json::Sqlite)
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        rows.iter().map(|r| rows::saga(&self.target, r)).collect()
    }

    /// Sends failed saga `id` back to compensating (at `fence`, bumping
    /// it) with `steps`; `false` if it is not failed at that fence.
    pub(crate) async fn retry_compensations(
        &self,
        id: &str,
        fence: i64,
        steps: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        inspect::retry_compensations_sql::<sqlx::Sqlite>(id, fence, steps, now)
            .build()
            .execute(&self.readers)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(|e| query_error(&self.target, e))
    }

    pub(crate) async fn cursors(&self) -> Result<Vec<CursorRecord>, StoreError> {
        let rows = sqlx::query(inspect::CURSORS_SQL)
            .fetch_all(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        rows.iter().map(|r| rows::cursor(&self.target, r)).collect()
    }

    pub(crate) async fn delete_cursor(&self, name: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM weir_cursors WHERE name = ?1")
            .bind(name)
            .execute(&self.readers)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(|e| query_error(&self.target, e))
    }

    pub(crate) async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT position FROM weir_cursors WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))
    }

    pub(crate) async fn push_dead_letter(&self, row: &DeadLetterRow) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO weir_dead_letters
               (queue, item, error_chain, stage, item_index, item_key, tenant, attempts, first_failure, last_failure)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (queue, item_key) WHERE item_key IS NOT NULL DO UPDATE SET
               item = excluded.item, error_chain = excluded.error_chain, stage = excluded.stage,
               item_index = excluded.item_index, tenant = excluded.tenant,
               attempts = excluded.attempts, last_failure = excluded.last_failure,
               replay_requested_at = NULL
             RETURNING id",
        )
        .bind(&row.queue)
        .bind(&row.item)
        .bind(&row.error_chain)
        .bind(&row.stage)
        .bind(row.item_index)
        .bind(&row.key)
        .bind(&row.tenant)
        .bind(row.attempts)
        .bind(row.first_failure)
        .bind(row.last_failure)
        .fetch_one(&self.readers)
        .await
        .map_err(|e| query_error(&self.target, e))
    }

    pub(crate) async fn letters(&self, queue: &str, query: &LetterQuery) -> Result<Vec<DeadLetterRow>, StoreError> {
        let rows = inspect::letters_sql::<sqlx::Sqlite>(queue, query)
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        rows.iter().map(rows::dead_letter).collect::<Result<_, _>>().map_err(|e| query_error(&self.target, e))
    }

    pub(crate) async fn queues(&self) -> Result<Vec<QueueSummary>, StoreError> {
        let rows = sqlx::query(inspect::QUEUES_SQL)
            .fetch_all(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))?;
        rows.iter().map(rows::queue).collect::<Result<_, _>>().map_err(|e| query_error(&self.target, e))
    }

    /// Marks the listed dead letters for replay at `at`; how many exist.
    pub(crate) async fn request_replay(&self, queue: &str, ids: &[i64], at: i64) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE weir_dead_letters SET replay_requested_at = ?1
             WHERE queue = ?2 AND id IN (SELECT value FROM json_each(?3))",
        )
        .bind(at)
        .bind(queue)
        .bind(serde_json::to_string(ids).expect("numbers serialize"))
        .execute(&self.readers)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| query_error(&self.target, e))
    }

    /// Deletes the listed dead letters.
    pub(crate) async fn delete_dead_letters(&self, queue: &str, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM weir_dead_letters WHERE queue = ?1 AND id IN (SELECT value FROM json_each(?2))")
            .bind(queue)
            .bind(serde_json::to_string(ids).expect("numbers serialize"))
            .execute(&self.readers)
            .await
            .map(drop)
            .map_err(|e| query_error(&self.target, e))
    }

    pub(crate) async fn count_dead_letters(&self, queue: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM weir_dead_letters WHERE queue = ?1")
            .bind(queue)
            .fetch_one(&self.readers)
            .await
            .map_err(|e| query_error(&self.target, e))
    }
}

/// Creates the database file readable and writable by its owner only
/// (SQLite gives its WAL and shared-memory files the same mode).
fn create_private(path: &Path) -> std::io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// SQLite's "database is locked" or "table is locked": another connection
/// holds a lock its busy handler did not wait out.
fn is_busy(error: &StoreError) -> bool {
    let code = find::<sqlx::Error>(error).and_then(|e| e.as_database_error()).and_then(|e| e.code());
    matches!(code.as_deref(), Some("5" | "6"))
}

fn open_error(target: &str, e: sqlx::Error) -> StoreError {
    foreign_or(target, e, |target, e| match StoreError::from_query(&target, e) {
        StoreError::Query { target, source } => StoreError::Open { target, source },
        full => full,
    })
}

fn foreign_or_query(target: &str, e: sqlx::Error) -> StoreError {
    foreign_or(target, e, |target, e| StoreError::from_query(&target, e))
}

fn foreign_or(target: &str, e: sqlx::Error, otherwise: impl FnOnce(String, sqlx::Error) -> StoreError) -> StoreError {
    let text = e.to_string();
    if text.contains("file is not a database") || text.contains("file is encrypted") || text.contains("malformed") {
        return StoreError::Foreign {
            target: target.to_owned(),
            reason: format!("not a SQLite database or corrupt: {text}"),
        };
    }
    otherwise(target.to_owned(), e)
}

fn query_error(target: &str, e: sqlx::Error) -> StoreError {
    StoreError::from_query(target, e)
}
