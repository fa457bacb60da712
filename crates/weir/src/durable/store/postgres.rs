//! The PostgreSQL backend: for several processes or machines sharing the
//! work. Claims use `FOR UPDATE SKIP LOCKED`; every write carries the
//! claim's fencing token.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, QueryBuilder, Row};

use super::committer::Applied;
use super::effect::{self, Effect, Tx};
use super::inspect::{self, CursorRecord, LetterQuery, QueueSummary, SagaQuery};
use super::record::{SagaRecord, SagaWrite, now_ms};
use super::rows;
use super::{ClaimScope, DeadLetterRow, StoreError, WriteResult, in_doubt, redact_url};
use crate::policy::retry::{Jitter, RetryPolicy};

/// The newest schema version this build knows.
const LATEST_SCHEMA: i64 = 10;

pub(crate) struct Postgres {
    pub(crate) target: String,
    pool: PgPool,
    options: PgConnectOptions,
}

impl Postgres {
    /// Connects, retrying with backoff for up to `max_wait` while the server
    /// is unreachable, then migrates.
    pub(crate) async fn open(url: &str, max_wait: Duration) -> Result<Self, StoreError> {
        let target = redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open { target: target.clone(), source: redact(&target, url, e).into() })?
            .disable_statement_logging();
        // Backoff from 100 ms, doubling to 5 s, for as long as `max_wait`.
        let unreachable = RetryPolicy::builder()
            .max_attempts(u32::MAX)
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(5))
            .jitter(Jitter::None)
            .max_elapsed(max_wait)
            .build()
            .expect("valid");
        let connect = |_| {
            PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(max_wait.clamp(Duration::from_secs(1), Duration::from_secs(10)))
                .connect_with(options.clone())
        };
        let warn = |e: &sqlx::Error, _, delay| {
            tracing::warn!(database = %target, error = %redact(&target, url, e), ?delay, "database unreachable; retrying");
        };
        let pool = unreachable.drive(None, connect, is_transient, warn).await.map_err(|e| {
            let e = e.into_attempted();
            StoreError::Open { target: target.clone(), source: redact(&target, url, e).into() }
        })?;
        let store = Self { target, pool, options };
        // A connection cut while migrating (a server restarting, an
        // operator terminating backends) is retried like an unreachable
        // server: the migrations are transactional and run again from
        // where the history says.
        let migrate = |_| async {
            store.check_schema().await.map_err(MigrateFailure::Store)?;
            sqlx::migrate!("./migrations/postgres").run(&store.pool).await.map_err(MigrateFailure::Migrate)
        };
        let cut = |e: &MigrateFailure| e.is_cut_connection();
        let warn = |e: &MigrateFailure, _, delay| {
            tracing::warn!(database = %store.target, error = %e, ?delay, "connection cut while migrating; retrying");
        };
        unreachable.drive(None, migrate, cut, warn).await.map_err(|e| match e.into_attempted() {
            MigrateFailure::Store(e) => e,
            MigrateFailure::Migrate(e) => StoreError::Open { target: store.target.clone(), source: e.into() },
        })?;
        Ok(store)
    }

    async fn check_schema(&self) -> Result<(), StoreError> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.query_error(e))?;
        if !exists {
            let weir_tables: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'weir_sagas' AND schemaname = current_schema()",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.query_error(e))?;
            if weir_tables > 0 {
                return Err(StoreError::Foreign {
                    target: self.target.clone(),
                    reason: "weir tables without a migration history".into(),
                });
            }
            return Ok(());
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.query_error(e))?;
        match found {
            Some(found) if found > LATEST_SCHEMA => {
                Err(StoreError::SchemaTooNew { target: self.target.clone(), found, supported: LATEST_SCHEMA })
            }
            _ => Ok(()),
        }
    }

    /// A connection that listens on `channel` (`LISTEN`).
    pub(crate) async fn listener(&self, channel: &str) -> Result<sqlx::postgres::PgListener, StoreError> {
        let mut listener =
            sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(|e| self.query_error(e))?;
        listener.listen(channel).await.map_err(|e| self.query_error(e))?;
        Ok(listener)
    }

    pub(crate) async fn writer(&self) -> Result<PgConnection, StoreError> {
        self.options
            .connect()
            .await
            .map_err(|e| StoreError::Open { target: self.target.clone(), source: e.to_string().into() })
    }

    fn query_error(&self, e: sqlx::Error) -> StoreError {
        StoreError::from_query(&self.target, e)
    }

    /// Applies `writes`, then `effects`, in one transaction.
    #[allow(irrefutable_let_patterns)] // a build with one database has one `Tx`
    pub(crate) async fn apply(
        &self,
        tx: &mut Tx,
        writes: &[SagaWrite],
        effects: &[Effect],
    ) -> Result<Applied, StoreError> {
        let Tx::Postgres(conn) = tx else { unreachable!("a PostgreSQL store's writer is PostgreSQL") };
        // The transaction's id comes back with `BEGIN` (one round trip):
        // if the answer to `COMMIT` is lost, it says what became of it.
        let began = (&mut *conn).fetch_one("BEGIN; SELECT pg_current_xact_id()::text").await;
        let xid: String = began.and_then(|row| row.try_get(0)).map_err(|e| self.query_error(e))?;
        let applied = match apply_batch(conn, writes).await {
            Ok(results) => effect::run_all(tx, effects).await.map(|outputs| (results, outputs)),
            Err(e) => Err(e),
        };
        let Tx::Postgres(conn) = tx else { unreachable!("a PostgreSQL store's writer is PostgreSQL") };
        match applied {
            Ok(applied) => match (&mut *conn).execute("COMMIT").await {
                Ok(_) => Ok(applied),
                Err(lost) => self.after_lost_commit(conn, &xid, lost, applied).await,
            },
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(self.query_error(e))
            }
        }
    }

    /// `COMMIT` failed: asks the server whether transaction `xid`
    /// committed ([`in_doubt`]). Committed: the batch's results, and the
    /// writer gets a new connection (the old one is most likely gone).
    async fn after_lost_commit(
        &self,
        conn: &mut PgConnection,
        xid: &str,
        lost: sqlx::Error,
        applied: Applied,
    ) -> Result<Applied, StoreError> {
        match in_doubt::settle(&self.pool, xid, &self.target).await {
            in_doubt::Verdict::Committed => {
                tracing::warn!(database = %self.target, xid, error = %lost, "the answer to COMMIT was lost; the server committed it");
                if let Ok(fresh) = self.writer().await {
                    *conn = fresh;
                }
                Ok(applied)
            }
            in_doubt::Verdict::RolledBack => Err(self.query_error(lost)),
            in_doubt::Verdict::Unknown(asking) => Err(StoreError::InDoubt {
                target: self.target.clone(),
                source: format!("{lost}; then {asking}").into(),
            }),
        }
    }

    pub(crate) async fn claim(
        &self,
        owner: &str,
        lease_until: i64,
        now: i64,
        limit: i64,
        scope: &ClaimScope<'_>,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let rows = sqlx::query(
            "UPDATE weir_sagas SET lease_owner = $1, lease_until = $2, fence = fence + 1
             WHERE id IN (SELECT id FROM weir_sagas
                          WHERE status IN ('running', 'compensating')
                            AND (lease_until IS NULL OR lease_until < $3 OR ($6::boolean AND lease_owner = $1))
                            AND NOT (id = ANY($5))
                            AND ($7::text[] IS NULL OR definition = ANY($7))
                            AND (NOT $8::boolean OR (lease_owner IS NULL AND lease_until IS NOT NULL))
                          ORDER BY CASE WHEN $8::boolean THEN lease_until ELSE created_at END LIMIT $4
                          FOR UPDATE SKIP LOCKED)
             RETURNING *",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .bind(scope.own.unwrap_or_default())
        .bind(scope.own.is_some())
        .bind(scope.definitions)
        .bind(scope.parked_only)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.query_error(e))?;
        rows.iter().map(|r| rows::saga(&self.target, r)).collect()
    }

    pub(crate) async fn claim_one(
        &self,
        id: &str,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let row = sqlx::query(
            "UPDATE weir_sagas SET lease_owner = $1, lease_until = $2, fence = fence + 1
             WHERE id = $4 AND status IN ('running', 'compensating')
               AND (lease_until IS NULL OR lease_until < $3 OR lease_owner = $1)
             RETURNING *",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.query_error(e))?;
        row.map(|r| rows::saga(&self.target, &r)).transpose()
    }

    pub(crate) async fn heartbeat(&self, owner: &str, sagas: &[String], lease_until: i64) -> Result<u64, StoreError> {
        sqlx::query(
            "UPDATE weir_sagas SET lease_until = $1
             WHERE lease_owner = $2 AND status IN ('running', 'compensating') AND id = ANY($3)",
        )
        .bind(lease_until)
        .bind(owner)
        .bind(sagas)
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| self.query_error(e))
    }

    pub(crate) async fn next_wake(&self, definitions: &[String]) -> Result<Option<i64>, StoreError> {
        let sql = super::waits::NEXT_WAKE.replace("DEFINITIONS", "SELECT unnest($1::text[])");
        sqlx::query_scalar(&sql).bind(definitions).fetch_optional(&self.pool).await.map_err(|e| self.query_error(e))
    }

    pub(crate) async fn count_parked(
        &self,
        definitions: &[String],
    ) -> Result<Vec<super::waits::ParkedCount>, StoreError> {
        let sql = super::waits::COUNT_PARKED.replace("DEFINITIONS", "SELECT unnest($1::text[])");
        let rows =
            sqlx::query_as(&sql).bind(definitions).fetch_all(&self.pool).await.map_err(|e| self.query_error(e))?;
        Ok(super::waits::parked_counts(rows))
    }

    pub(crate) async fn saga_events(&self, id: &str) -> Result<Vec<super::waits::SagaEvent>, StoreError> {
        let rows: Vec<super::waits::EventRow> = sqlx::query_as(super::waits::EVENTS_OF_SAGA)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.query_error(e))?;
        rows.into_iter().map(|row| super::waits::event(&self.target, row)).collect()
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM weir_sagas WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.query_error(e))?;
        row.map(|r| rows::saga(&self.target, &r)).transpose()
    }

    pub(crate) async fn find_sagas(
        &self,
        query: &SagaQuery,
        after: Option<(i64, &str)>,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let rows = inspect::sagas_sql::<sqlx::Postgres>(query, after, inspect::Json::Postgres)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.query_error(e))?;
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
        inspect::retry_compensations_sql::<sqlx::Postgres>(id, fence, steps, now)
            .build()
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(|e| self.query_error(e))
    }

    pub(crate) async fn cursors(&self) -> Result<Vec<CursorRecord>, StoreError> {
        let rows = sqlx::query(inspect::CURSORS_SQL).fetch_all(&self.pool).await.map_err(|e| self.query_error(e))?;
        rows.iter().map(|r| rows::cursor(&self.target, r)).collect()
    }

    pub(crate) async fn delete_cursor(&self, name: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM weir_cursors WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(|e| self.query_error(e))
    }

    pub(crate) async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT position FROM weir_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.query_error(e))
    }

    pub(crate) async fn push_dead_letter(&self, row: &DeadLetterRow) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO weir_dead_letters
               (queue, item, error_chain, stage, item_index, item_key, tenant, attempts, first_failure, last_failure)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
        .bind(row.attempts as i32)
        .bind(row.first_failure)
        .bind(row.last_failure)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.query_error(e))
    }

    pub(crate) async fn letters(&self, queue: &str, query: &LetterQuery) -> Result<Vec<DeadLetterRow>, StoreError> {
        let rows = inspect::letters_sql::<sqlx::Postgres>(queue, query)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.query_error(e))?;
        rows.iter().map(rows::dead_letter).collect::<Result<_, _>>().map_err(|e| self.query_error(e))
    }

    pub(crate) async fn queues(&self) -> Result<Vec<QueueSummary>, StoreError> {
        let rows = sqlx::query(inspect::QUEUES_SQL).fetch_all(&self.pool).await.map_err(|e| self.query_error(e))?;
        rows.iter().map(rows::queue).collect::<Result<_, _>>().map_err(|e| self.query_error(e))
    }

    /// Marks the listed dead letters for replay at `at`; how many exist.
    pub(crate) async fn request_replay(&self, queue: &str, ids: &[i64], at: i64) -> Result<u64, StoreError> {
        sqlx::query("UPDATE weir_dead_letters SET replay_requested_at = $1 WHERE queue = $2 AND id = ANY($3)")
            .bind(at)
            .bind(queue)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| self.query_error(e))
    }

    pub(crate) async fn delete_dead_letters(&self, queue: &str, ids: &[i64]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM weir_dead_letters WHERE queue = $1 AND id = ANY($2)")
            .bind(queue)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| self.query_error(e))
    }

    pub(crate) async fn count_dead_letters(&self, queue: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM weir_dead_letters WHERE queue = $1")
            .bind(queue)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.query_error(e))
    }
}

/// Rows per statement (PostgreSQL allows 65,535 bound values).
const ROWS_PER_STATEMENT: usize = 512;

/// Applies a batch with one multi-row statement per 512 inserts and per
/// 512 updates, padded to a multiple of 16 rows
/// ([`padded_rows`](super::batch::padded_rows)): a statement text seen
/// before is prepared already, one round trip fewer.
async fn apply_batch(conn: &mut PgConnection, writes: &[SagaWrite]) -> Result<Vec<WriteResult>, sqlx::Error> {
    let (inserts, updates) = super::batch::split(writes);
    let mut done = std::collections::HashSet::new();
    for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
        let mut sql = super::batch::insert_sagas::<sqlx::Postgres>(chunk, super::batch::padded_rows(chunk.len()));
        sql.push(super::batch::KEEP_EXISTING_RETURN_NEW);
        done.extend(sql.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    }
    for chunk in updates.chunks(ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<sqlx::Postgres>::new(
            "UPDATE weir_sagas AS s SET status = v.status, steps = v.steps, error = v.error, updated_at = ",
        );
        sql.push_bind(now_ms());
        sql.push(", lease_until = CASE WHEN v.done THEN NULL ELSE s.lease_until END FROM (");
        sql.push_values(chunk, |mut row, u| {
            row.push_bind(u.id.to_owned())
                .push_unseparated("::text")
                .push_bind(u.fence)
                .push_unseparated("::bigint")
                .push_bind(u.status.as_str())
                .push_unseparated("::text")
                .push_bind(u.steps_json.to_owned())
                .push_unseparated("::text")
                .push_bind(u.error.map(str::to_owned))
                .push_unseparated("::text")
                .push_bind(!u.status.is_active())
                .push_unseparated("::boolean");
        });
        super::batch::push_null_rows(&mut sql, super::batch::padded_rows(chunk.len()) - chunk.len(), 6);
        sql.push(
            ") AS v (id, fence, status, steps, error, done) WHERE s.id = v.id AND s.fence = v.fence RETURNING s.id",
        );
        done.extend(sql.build_query_scalar::<String>().fetch_all(&mut *conn).await?);
    }
    if let Some(mut upsert) = super::batch::upsert_cursors::<sqlx::Postgres>(writes) {
        upsert.build().execute(&mut *conn).await?;
    }
    Ok(super::batch::results(writes, &done))
}

/// A connection error's text with the URL's password removed, in case the
/// driver echoes the URL.
fn redact(target: &str, url: &str, e: impl std::fmt::Display) -> String {
    e.to_string().replace(url, target)
}

fn is_transient(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
}

/// Whether `e` says the connection went away: an I/O error, or the server
/// ending it (class 57P: an administrator's command, a shutdown; class
/// 08: a connection exception).
fn is_cut(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|d| d.code()).unwrap_or_default();
    is_transient(e) || code.starts_with("57P") || code.starts_with("08")
}

/// How opening failed after connecting.
#[derive(Debug, thiserror::Error)]
enum MigrateFailure {
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Migrate(sqlx::migrate::MigrateError),
}

impl MigrateFailure {
    fn is_cut_connection(&self) -> bool {
        match self {
            Self::Store(StoreError::Query { source, .. }) => source.downcast_ref::<sqlx::Error>().is_some_and(is_cut),
            Self::Store(_) => false,
            Self::Migrate(
                sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
            ) => is_cut(e),
            Self::Migrate(_) => false,
        }
    }
}
