//! Looking at a store from outside the application that owns it: sagas by
//! status, definition and time, a page at a time; dead-letter queues and
//! their letters; cursors. And the few changes an operator makes: a failed
//! saga's compensations retried, letters marked for replay, a letter
//! purged, a cursor removed. The `weir` command is built on these alone:
//! no SQL against weir's tables is written outside this crate.
//!
//! The filters are written once: as SQL for both databases
//! ([`sagas_sql`], [`letters_sql`], the same text with each database's
//! placeholders) and as a predicate for the memory store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::{SagaRecord, SagaStatus, StepStatus, now_ms};
use super::{Backend, Store, StoreError};

/// What an operator looks at and the few changes one makes.
impl Store {
    /// The page of sagas `query` asks for, oldest first; the next page is
    /// the same query [`after`](SagaQuery::after) this page's last id.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the saga the page starts after is not
    /// there; [`StoreError`] if the store cannot be read.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::store::{SagaQuery, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::durable::store::StoreError> {
    /// let store = Store::memory();
    /// let first = store.find_sagas(&SagaQuery::new().limit(100)).await?;
    /// assert!(first.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn find_sagas(&self, query: &SagaQuery) -> Result<Vec<SagaRecord>, StoreError> {
        let after = match &query.after {
            None => None,
            Some(id) => {
                let Some(saga) = self.saga(id).await? else {
                    return Err(StoreError::NotFound { target: self.target(), what: format!("saga {id}") });
                };
                Some((saga.created_at, saga.id))
            }
        };
        let after = after.as_ref().map(|(at, id)| (*at, id.as_str()));
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.find_sagas(query, after)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.find_sagas(query, after).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.find_sagas(query, after).await,
        }
    }

    /// Sends `saga`, failed because a compensation failed, back to
    /// compensating: the steps whose compensation failed are compensated
    /// again (with fresh attempts) by the next worker of its application
    /// that claims it. Compensations must be idempotent for this, as for a
    /// crash. `false` if the saga is no longer failed at the fence it was
    /// read at (someone else changed it since).
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be written.
    pub async fn retry_compensations(&self, saga: &SagaRecord) -> Result<bool, StoreError> {
        if saga.status != SagaStatus::Failed {
            return Ok(false);
        }
        let mut steps = saga.steps.clone();
        for step in steps.iter_mut().filter(|s| s.status == StepStatus::CompensationFailed) {
            step.status = StepStatus::Done;
            step.compensation_attempts = 0;
        }
        let steps = serde_json::to_string(&steps).expect("step records serialize");
        let (id, fence, now) = (saga.id.as_str(), saga.fence, now_ms());
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.retry_compensations(id, fence, &steps, now)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.retry_compensations(id, fence, &steps, now).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.retry_compensations(id, fence, &steps, now).await,
        }
    }

    /// Every saved cursor, by name.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read or a position is not
    /// JSON.
    pub async fn cursors(&self) -> Result<Vec<CursorRecord>, StoreError> {
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.cursors()),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.cursors().await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.cursors().await,
        }
    }

    /// Removes cursor `name`: its owner starts from the beginning next
    /// time. `false` if there was none.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be written.
    pub async fn delete_cursor(&self, name: &str) -> Result<bool, StoreError> {
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.delete_cursor(name)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.delete_cursor(name).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.delete_cursor(name).await,
        }
    }

    /// Every dead-letter queue that holds letters, by name.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read.
    pub async fn dead_letter_queues(&self) -> Result<Vec<QueueSummary>, StoreError> {
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.queues()),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.queues().await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.queues().await,
        }
    }
}

/// Which sagas [`Store::find_sagas`](super::Store::find_sagas) returns:
/// oldest first (by creation, then id), at most [`limit`](Self::limit).
///
/// # Defaults
/// Every saga, 50 at most.
///
/// # Examples
/// ```
/// use weir::durable::store::{SagaQuery, SagaStatus};
///
/// let failed_orders = SagaQuery::new().status(SagaStatus::Failed).definition("order").limit(20);
/// # let _ = failed_orders;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaQuery {
    pub(crate) status: Option<SagaStatus>,
    pub(crate) definition: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) updated_since: Option<i64>,
    pub(crate) updated_before: Option<i64>,
    pub(crate) after: Option<String>,
    pub(crate) limit: usize,
}

impl Default for SagaQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl SagaQuery {
    /// Every saga, 50 at most.
    pub fn new() -> Self {
        Self {
            status: None,
            definition: None,
            tenant: None,
            updated_since: None,
            updated_before: None,
            after: None,
            limit: 50,
        }
    }

    /// Only sagas in `status`.
    pub fn status(mut self, status: SagaStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only sagas of the definition named `name`.
    pub fn definition(mut self, name: impl Into<String>) -> Self {
        self.definition = Some(name.into());
        self
    }

    /// Only sagas whose input is a JSON object with `"tenant": name` at its
    /// top level (weir's convention for a saga's tenant: sagas have no
    /// tenant of their own).
    pub fn tenant(mut self, name: impl Into<String>) -> Self {
        self.tenant = Some(name.into());
        self
    }

    /// Only sagas last changed at or after `time`.
    pub fn updated_since(mut self, time: SystemTime) -> Self {
        self.updated_since = Some(ms(time));
        self
    }

    /// Only sagas last changed before `time`.
    pub fn updated_before(mut self, time: SystemTime) -> Self {
        self.updated_before = Some(ms(time));
        self
    }

    /// The page after the saga `id` (the last one of the previous page).
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }

    /// At most `n` sagas.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// Whether `saga` passes the filters (the page position aside).
    pub(crate) fn matches(&self, saga: &SagaRecord) -> bool {
        self.status.is_none_or(|s| saga.status == s)
            && self.definition.as_ref().is_none_or(|d| &saga.definition == d)
            && self.tenant.as_ref().is_none_or(|t| saga.input.get("tenant").and_then(|v| v.as_str()) == Some(t))
            && self.updated_since.is_none_or(|t| saga.updated_at >= t)
            && self.updated_before.is_none_or(|t| saga.updated_at < t)
    }
}

/// Which letters [`StoreDlq::find`](super::StoreDlq::find) returns: oldest
/// first (by id), at most [`limit`](Self::limit).
///
/// # Defaults
/// Every letter of the queue, 50 at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterQuery {
    pub(crate) tenant: Option<String>,
    pub(crate) stage: Option<String>,
    pub(crate) replay_requested: Option<bool>,
    pub(crate) after: Option<u64>,
    pub(crate) limit: usize,
}

impl Default for LetterQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl LetterQuery {
    /// Every letter, 50 at most.
    pub fn new() -> Self {
        Self { tenant: None, stage: None, replay_requested: None, after: None, limit: 50 }
    }

    /// Every letter at once (a queue is read whole: drain, list).
    pub(crate) fn all() -> Self {
        Self { limit: usize::MAX, ..Self::new() }
    }

    /// Only the letters of `tenant`.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Only the letters that failed in `stage`.
    pub fn stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    /// Only the letters marked for replay (`true`) or not marked (`false`);
    /// see [`StoreDlq::request_replay`](super::StoreDlq::request_replay).
    pub fn replay_requested(mut self, requested: bool) -> Self {
        self.replay_requested = Some(requested);
        self
    }

    /// The page after letter `id`.
    pub fn after(mut self, id: u64) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `n` letters.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    pub(crate) fn matches(&self, row: &super::DeadLetterRow) -> bool {
        self.tenant.as_ref().is_none_or(|t| row.tenant.as_ref() == Some(t))
            && self.stage.as_ref().is_none_or(|s| &row.stage == s)
            && self.replay_requested.is_none_or(|r| row.replay_requested_at.is_some() == r)
            && self.after.is_none_or(|after| row.id > after as i64)
    }
}

/// A dead-letter queue as [`Store::dead_letter_queues`](super::Store::dead_letter_queues) finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSummary {
    /// The queue's name.
    pub name: String,
    /// Letters in it.
    pub letters: u64,
    /// Of those, the ones marked for replay.
    pub replay_requested: u64,
    /// The oldest first failure among them.
    pub oldest: SystemTime,
    /// The newest last failure among them.
    pub newest: SystemTime,
}

/// A saved cursor as [`Store::cursors`](super::Store::cursors) finds it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CursorRecord {
    /// Its name.
    pub name: String,
    /// Its position, as its owner saved it.
    pub position: serde_json::Value,
    /// When it was last saved.
    pub updated_at: SystemTime,
}

pub(crate) fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(crate) fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// A limit as SQL binds it.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// How each database reads a text field of a JSON column.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum Json {
    /// `json_extract(column, '$.field')`
    #[cfg(feature = "sqlite")]
    Sqlite,
    /// `(column::jsonb ->> 'field')`
    #[cfg(feature = "postgres")]
    Postgres,
}

/// The page of sagas `query` asks for, after the saga created at
/// `after.0` with id `after.1`: the same statement in SQLite and
/// PostgreSQL but for the JSON read of the tenant filter.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn sagas_sql<'a, DB>(
    query: &'a SagaQuery,
    after: Option<(i64, &'a str)>,
    json: Json,
) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sql = sqlx::QueryBuilder::<DB>::new("SELECT * FROM weir_sagas WHERE 1 = 1");
    if let Some(status) = query.status {
        sql.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(definition) = &query.definition {
        sql.push(" AND definition = ").push_bind(definition.as_str());
    }
    if let Some(tenant) = &query.tenant {
        sql.push(match json {
            #[cfg(feature = "sqlite")]
            Json::Sqlite => " AND json_valid(input) AND json_extract(input, '$.tenant') = ",
            #[cfg(feature = "postgres")]
            Json::Postgres => " AND (input::jsonb ->> 'tenant') = ",
        });
        sql.push_bind(tenant.as_str());
    }
    if let Some(since) = query.updated_since {
        sql.push(" AND updated_at >= ").push_bind(since);
    }
    if let Some(before) = query.updated_before {
        sql.push(" AND updated_at < ").push_bind(before);
    }
    if let Some((created_at, id)) = after {
        // A row comparison: both databases read it as a range of the
        // (created_at, id) index, where the equivalent OR was a scan.
        sql.push(" AND (created_at, id) > (").push_bind(created_at);
        sql.push(", ").push_bind(id).push(")");
    }
    sql.push(" ORDER BY created_at, id LIMIT ").push_bind(sql_limit(query.limit));
    sql
}

/// The page of `queue`'s letters `query` asks for.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn letters_sql<'a, DB>(queue: &'a str, query: &'a LetterQuery) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sql = sqlx::QueryBuilder::<DB>::new("SELECT * FROM weir_dead_letters WHERE queue = ");
    sql.push_bind(queue);
    if let Some(tenant) = &query.tenant {
        sql.push(" AND tenant = ").push_bind(tenant.as_str());
    }
    if let Some(stage) = &query.stage {
        sql.push(" AND stage = ").push_bind(stage.as_str());
    }
    match query.replay_requested {
        None => {}
        Some(true) => {
            sql.push(" AND replay_requested_at IS NOT NULL");
        }
        Some(false) => {
            sql.push(" AND replay_requested_at IS NULL");
        }
    }
    if let Some(after) = query.after {
        sql.push(" AND id > ").push_bind(after as i64);
    }
    sql.push(" ORDER BY id LIMIT ").push_bind(sql_limit(query.limit));
    sql
}

/// Sends failed saga `id` back to compensating with `steps`, if it is
/// still failed at `fence` (which it bumps, fencing out any old holder);
/// the same statement in SQLite and PostgreSQL.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn retry_compensations_sql<'a, DB>(
    id: &'a str,
    fence: i64,
    steps: &'a str,
    now: i64,
) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut sql = sqlx::QueryBuilder::<DB>::new("UPDATE weir_sagas SET status = 'compensating', steps = ");
    sql.push_bind(steps);
    sql.push(", fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = ").push_bind(now);
    sql.push(" WHERE id = ").push_bind(id);
    sql.push(" AND status = 'failed' AND fence = ").push_bind(fence);
    sql
}

/// Every queue with its counts and failure times.
pub(crate) const QUEUES_SQL: &str = "SELECT queue, COUNT(*) AS letters, COUNT(replay_requested_at) AS replay_requested,
        MIN(first_failure) AS oldest, MAX(last_failure) AS newest
   FROM weir_dead_letters GROUP BY queue ORDER BY queue";

/// Every cursor, by name.
pub(crate) const CURSORS_SQL: &str = "SELECT name, position, updated_at FROM weir_cursors ORDER BY name";
