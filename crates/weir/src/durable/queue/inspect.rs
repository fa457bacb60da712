//! What operators see of a queue and do to it: every queue with its
//! counts, a queue's jobs page by page, and jobs that ended badly put back
//! (the `weir queues` command is built on these).

use std::sync::Arc;
use std::time::SystemTime;

use super::sql::on;
use super::{QueueCounts, WorkQueue};
use crate::durable::store::{Store, Tx, ms};
use crate::error::BoxError;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Waiting to be claimed: new, delayed, given back, or claimed by a
    /// worker whose lease expired.
    Queued,
    /// Claimed under a live lease.
    Claimed,
    /// Ran to the end.
    Done,
    /// Skipped.
    Skipped,
    /// Failed for good (for a saga: it was compensated or failed).
    Failed,
    /// Can never run as it is; kept with the reason.
    Dead,
}

impl JobStatus {
    /// The status as stored and as the `weir` command spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Claimed => "claimed",
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// The SQL condition for jobs in this status at `$2` (now, ms): a
    /// claim whose lease expired counts as queued.
    fn condition(self) -> &'static str {
        match self {
            Self::Queued => "(status = 'queued' OR (status = 'claimed' AND lease_until <= $2))",
            Self::Claimed => "(status = 'claimed' AND lease_until > $2)",
            Self::Done => "status = 'done'",
            Self::Skipped => "status = 'skipped'",
            Self::Failed => "status = 'failed'",
            Self::Dead => "status = 'dead'",
        }
    }

    fn parse(stored: &str, lease_until: Option<i64>, now: i64) -> Result<Self, BoxError> {
        Ok(match stored {
            "queued" => Self::Queued,
            "claimed" if lease_until.is_some_and(|until| until <= now) => Self::Queued,
            "claimed" => Self::Claimed,
            "done" => Self::Done,
            "skipped" => Self::Skipped,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            other => return Err(format!("a queue job with an unknown status `{other}`").into()),
        })
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobRecord {
    /// Its id.
    pub id: i64,
    /// Where it stands.
    pub status: JobStatus,
    /// What was enqueued.
    pub payload: serde_json::Value,
    /// Its deduplication id.
    pub dedup_id: Option<String>,
    /// Its partition key.
    pub partition_key: Option<String>,
    /// Its priority.
    pub priority: i32,
    /// Claims so far.
    pub attempts: u32,
    /// The worker holding it (or that last held it, when its lease expired).
    pub lease_owner: Option<String>,
    /// When its lease ends (ms since the epoch).
    pub lease_until: Option<i64>,
    /// Not claimed before this (ms since the epoch).
    pub available_at: i64,
    /// Why its last claim did not finish it, or why it is dead.
    pub last_error: Option<String>,
    /// When it was enqueued (ms since the epoch).
    pub created_at: i64,
    /// When it last changed (ms since the epoch).
    pub updated_at: i64,
}

/// Which jobs [`WorkQueue::jobs`] returns: oldest first, a page at a time.
///
/// # Defaults
/// Every status and key, from the first job, 50 at most.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobQuery {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs with this partition key.
    pub partition_key: Option<String>,
    /// Only jobs after this id (the last of the previous page).
    pub after: Option<i64>,
    /// The most jobs returned.
    pub limit: usize,
}

impl Default for JobQuery {
    fn default() -> Self {
        Self { status: None, partition_key: None, after: None, limit: 50 }
    }
}

impl JobQuery {
    /// Every job, 50 at most.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only jobs in `status`.
    pub fn status(mut self, status: JobStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only jobs with partition key `key`.
    pub fn partition_key(mut self, key: impl Into<String>) -> Self {
        self.partition_key = Some(key.into());
        self
    }

    /// The page after job `id`.
    pub fn after(mut self, id: i64) -> Self {
        self.after = Some(id);
        self
    }

    /// At most `limit` jobs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

type Row = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i32,
    i32,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
    i64,
    i64,
);

const COLUMNS: &str = "id, status, payload, dedup_id, partition_key, priority, attempts, lease_owner, lease_until, \
                       available_at, last_error, created_at, updated_at";

impl WorkQueue {
    /// Every queue in `store` that holds a job, by name, with its counts.
    ///
    /// # Errors
    /// The store failing, or a memory store.
    pub async fn queues(store: &Store) -> Result<Vec<(String, QueueCounts)>, BoxError> {
        let names: Vec<String> = store
            .commit_effect(|tx| {
                Box::pin(async move {
                    let sql = "SELECT DISTINCT queue FROM weir_queue_jobs ORDER BY queue";
                    Ok(on!(tx, conn => sqlx::query_scalar(sql).fetch_all(&mut *conn).await?))
                })
            })
            .await?;
        let mut all = Vec::with_capacity(names.len());
        for name in names {
            let counts = WorkQueue::new(store.clone(), name.as_str()).counts().await?;
            all.push((name, counts));
        }
        Ok(all)
    }

    /// The queue's jobs that `query` selects, oldest first.
    ///
    /// # Errors
    /// The store failing, or a stored job that cannot be read.
    pub async fn jobs(&self, query: &JobQuery) -> Result<Vec<JobRecord>, BoxError> {
        let (queue, query) = (Arc::clone(&self.name), query.clone());
        self.store
            .commit_effect(move |tx| {
                let (queue, query) = (Arc::clone(&queue), query.clone());
                Box::pin(async move { select_jobs(tx, &queue, &query).await })
            })
            .await
    }

    /// Job `id` of this queue, if there is one.
    ///
    /// # Errors
    /// As [`jobs`](Self::jobs).
    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>, BoxError> {
        let page = self.jobs(&JobQuery::new().after(id - 1).limit(1)).await?;
        Ok(page.into_iter().find(|job| job.id == id))
    }

    /// Puts jobs that ended `failed`, `dead` or `skipped` back in the
    /// queue with fresh attempts (for example once the code that failed
    /// them is fixed or the definition they need is deployed); the ids of
    /// those put back (others are left as they are).
    ///
    /// # Errors
    /// The store failing.
    pub async fn requeue(&self, ids: &[i64]) -> Result<Vec<i64>, BoxError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Integers: safe to write into the statement.
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let sql = format!(
            "UPDATE weir_queue_jobs SET status = 'queued', attempts = 0, available_at = $2, lease_owner = NULL, \
             lease_until = NULL, updated_at = $2 WHERE queue = $1 AND status IN ('failed', 'dead', 'skipped') \
             AND id IN ({}) RETURNING id",
            list.join(", ")
        );
        let queue = Arc::clone(&self.name);
        let mut requeued: Vec<i64> = self
            .store
            .commit_effect(move |tx| {
                let (queue, sql) = (Arc::clone(&queue), sql.clone());
                Box::pin(async move {
                    let now = ms(SystemTime::now());
                    let ids =
                        on!(tx, conn => sqlx::query_scalar(&sql).bind(&*queue).bind(now).fetch_all(&mut *conn).await?);
                    super::sql::notify(tx, &queue).await?;
                    Ok::<Vec<i64>, BoxError>(ids)
                })
            })
            .await?;
        requeued.sort_unstable();
        Ok(requeued)
    }
}

async fn select_jobs(tx: &mut Tx, queue: &str, query: &JobQuery) -> Result<Vec<JobRecord>, BoxError> {
    let now = ms(SystemTime::now());
    let status = query.status.map_or("TRUE", JobStatus::condition);
    let sql = format!(
        "SELECT {COLUMNS} FROM weir_queue_jobs WHERE queue = $1 AND {status} \
         AND ($3 IS NULL OR partition_key = $3) AND id > $4 ORDER BY id LIMIT $5"
    );
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let rows: Vec<Row> = on!(tx, conn => sqlx::query_as(&sql)
        .bind(queue)
        .bind(now)
        .bind(&query.partition_key)
        .bind(query.after.unwrap_or(i64::MIN))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?);
    rows.into_iter().map(|row| record(row, now)).collect()
}

fn record(row: Row, now: i64) -> Result<JobRecord, BoxError> {
    let (id, status, payload, dedup_id, partition_key, priority, attempts, lease_owner, lease_until, available_at) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9);
    let (last_error, created_at, updated_at) = (row.10, row.11, row.12);
    Ok(JobRecord {
        id,
        status: JobStatus::parse(&status, lease_until, now)?,
        payload: serde_json::from_str(&payload).map_err(|e| format!("queue job {id}: its payload: {e}"))?,
        dedup_id,
        partition_key,
        priority,
        attempts: attempts.max(0) as u32,
        lease_owner,
        lease_until,
        available_at,
        last_error,
        created_at,
        updated_at,
    })
}
