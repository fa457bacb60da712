//! The work queue's statements, the same text on SQLite and PostgreSQL
//! (run on the group commit's connection, inside its transaction).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::{Job, Limits, NewJob, QueueCounts};
use crate::durable::store::{Tx, ms};
use crate::error::BoxError;

pub(super) use crate::durable::store::on_tx as on;

/// The PostgreSQL channel a job's enqueueing is announced on (the payload
/// is the queue's name).
pub(crate) const NOTIFY_CHANNEL: &str = "weir_queue";

fn is_postgres(tx: &Tx) -> bool {
    match tx {
        #[cfg(feature = "postgres")]
        Tx::Postgres(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Enqueues `job`; its id, and the payload stored before if its
/// deduplication id was enqueued before (then nothing is added).
pub(super) async fn enqueue(
    tx: &mut Tx,
    queue: &str,
    job: &NewJob,
    now: SystemTime,
) -> Result<(i64, Option<serde_json::Value>), BoxError> {
    let payload = serde_json::to_string(&job.payload)?;
    let (now, available) = (ms(now), ms(now + job.delay));
    let inserted: Option<i64> = on!(tx, conn => sqlx::query_scalar(
        "INSERT INTO weir_queue_jobs (queue, dedup_id, partition_key, priority, payload, status, available_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $7) ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(queue)
    .bind(&job.dedup_id)
    .bind(&job.partition_key)
    .bind(job.priority)
    .bind(&payload)
    .bind(available)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?);
    if let Some(id) = inserted {
        notify(tx, queue).await?;
        return Ok((id, None));
    }
    // Deduplicated: the job enqueued before under this id.
    let (id, stored): (i64, String) = on!(tx, conn => sqlx::query_as(
        "SELECT id, payload FROM weir_queue_jobs WHERE queue = $1 AND dedup_id = $2",
    )
    .bind(queue)
    .bind(&job.dedup_id)
    .fetch_one(&mut *conn)
    .await?);
    let stored = serde_json::from_str(&stored).map_err(|e| format!("queue job {id}: its payload: {e}"))?;
    Ok((id, Some(stored)))
}

/// On PostgreSQL, wakes the idle workers of `queue` when the transaction
/// commits (nothing if it fails); elsewhere, nothing: workers poll.
pub(super) async fn notify(tx: &mut Tx, queue: &str) -> Result<(), BoxError> {
    if is_postgres(tx) {
        on!(tx, conn => {
            sqlx::query("SELECT pg_notify($1, $2)").bind(NOTIFY_CHANNEL).bind(queue).execute(&mut *conn).await?;
        });
    }
    Ok(())
}

/// A claimable row: id, partition key.
type Candidate = (i64, Option<String>);

pub(super) async fn claim(
    tx: &mut Tx,
    queue: &str,
    worker: &str,
    max: usize,
    limits: Limits,
    lease: Duration,
    now: SystemTime,
) -> Result<Vec<Job>, BoxError> {
    let limited = limits.any();
    let postgres = is_postgres(tx);
    if limited && postgres {
        // Claims of a limited queue are serial across the fleet: each
        // counts what is held, then claims within the limits. (On SQLite
        // the transaction holds the file's write lock already.)
        on!(tx, conn => {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("weir_queue:{queue}"))
                .execute(&mut *conn)
                .await?;
        });
    }
    let now_ms = ms(now);
    let (mut held_total, mut held_by_key) = (0u32, HashMap::<Option<String>, u32>::new());
    if limited {
        let held: Vec<(Option<String>, i64)> = on!(tx, conn => sqlx::query_as(
            "SELECT partition_key, COUNT(*) FROM weir_queue_jobs WHERE queue = $1 AND status = 'claimed' AND lease_until > $2 GROUP BY partition_key",
        )
        .bind(queue)
        .bind(now_ms)
        .fetch_all(&mut *conn)
        .await?);
        for (key, count) in held {
            held_total += count as u32;
            held_by_key.insert(key, count as u32);
        }
    }
    let mut room = limits.per_queue.map_or(max, |limit| limit.saturating_sub(held_total) as usize).min(max);
    if let Some((claims, period)) = limits.rate {
        let recent: i64 = on!(tx, conn => sqlx::query_scalar(
            "SELECT COUNT(*) FROM weir_queue_jobs WHERE queue = $1 AND claimed_at > $2",
        )
        .bind(queue)
        .bind(ms(now - period))
        .fetch_one(&mut *conn)
        .await?);
        room = room.min(claims.saturating_sub(recent.max(0) as u32) as usize);
    }
    let mut recent_by_key = HashMap::<Option<String>, u32>::new();
    if let Some((_, period)) = limits.rate_per_key {
        let recent: Vec<(Option<String>, i64)> = on!(tx, conn => sqlx::query_as(
            "SELECT partition_key, COUNT(*) FROM weir_queue_jobs WHERE queue = $1 AND claimed_at > $2 GROUP BY partition_key",
        )
        .bind(queue)
        .bind(ms(now - period))
        .fetch_all(&mut *conn)
        .await?);
        recent_by_key.extend(recent.into_iter().map(|(key, n)| (key, n.max(0) as u32)));
    }
    if room == 0 {
        return Ok(Vec::new());
    }
    // Look further than `room` when a key may be full, so that other keys'
    // jobs behind it are found.
    let per_key = limits.per_key.is_some() || limits.rate_per_key.is_some();
    let scan = if per_key { (room * 8).max(64) } else { room };
    let skip_locked = if postgres && !limited { " FOR UPDATE SKIP LOCKED" } else { "" };
    let select = format!(
        "SELECT id, partition_key FROM weir_queue_jobs WHERE queue = $1 \
         AND ((status = 'queued' AND available_at <= $2) OR (status = 'claimed' AND lease_until <= $2)) \
         ORDER BY priority DESC, available_at, id LIMIT $3{skip_locked}"
    );
    let candidates: Vec<Candidate> = on!(tx, conn => sqlx::query_as(&select)
        .bind(queue)
        .bind(now_ms)
        .bind(scan as i64)
        .fetch_all(&mut *conn)
        .await?);
    let mut chosen = Vec::with_capacity(room);
    for (id, key) in candidates {
        if chosen.len() == room {
            break;
        }
        let held = held_by_key.get(&key).copied().unwrap_or(0);
        let recent = recent_by_key.get(&key).copied().unwrap_or(0);
        if limits.per_key.is_some_and(|limit| held >= limit)
            || limits.rate_per_key.is_some_and(|(claims, _)| recent >= claims)
        {
            continue;
        }
        *held_by_key.entry(key.clone()).or_default() += 1;
        *recent_by_key.entry(key).or_default() += 1;
        chosen.push(id);
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    // One statement for the batch; the ids are integers the database gave.
    let ids: Vec<String> = chosen.iter().map(i64::to_string).collect();
    let update = format!(
        "UPDATE weir_queue_jobs SET status = 'claimed', lease_owner = $1, lease_until = $2, fence = fence + 1, \
         attempts = attempts + 1, claimed_at = $3, updated_at = $3 WHERE id IN ({}) \
         RETURNING id, payload, partition_key, dedup_id, attempts, fence",
        ids.join(", ")
    );
    type Claimed = (i64, String, Option<String>, Option<String>, i32, i64);
    let rows: Vec<Claimed> = on!(tx, conn => sqlx::query_as(&update)
        .bind(worker)
        .bind(ms(now + lease))
        .bind(now_ms)
        .fetch_all(&mut *conn)
        .await?);
    let mut jobs = Vec::with_capacity(rows.len());
    for (id, payload, partition_key, dedup_id, attempts, fence) in rows {
        let payload = serde_json::from_str(&payload).map_err(|e| format!("queue job {id}: its payload: {e}"))?;
        jobs.push(Job { id, payload, partition_key, dedup_id, attempts: attempts.max(0) as u32, fence });
    }
    // The claim order: priority, then availability (RETURNING's is not).
    let rank: HashMap<i64, usize> = chosen.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    jobs.sort_by_key(|job| rank[&job.id]);
    Ok(jobs)
}

/// How a settled job leaves its claim.
#[derive(Debug, Clone)]
pub(crate) enum Settlement {
    /// A final status (`done`, `skipped`, `failed` or `dead`), with why
    /// when there is more to say than the status.
    Final { status: &'static str, error: Option<String> },
    /// Back to `queued`, claimable after `after`, with why.
    Again { after: Duration, error: Option<String> },
}

impl Settlement {
    pub(crate) fn done() -> Self {
        Self::Final { status: "done", error: None }
    }
}

/// Settles job `id` if `fence` still holds its claim; `false` if another
/// claim took it over (this worker's lease had expired).
pub(super) async fn settle(
    tx: &mut Tx,
    id: i64,
    fence: i64,
    how: &Settlement,
    now: SystemTime,
) -> Result<bool, BoxError> {
    let now_ms = ms(now);
    let changed = match how {
        Settlement::Final { status, error } => on!(tx, conn => sqlx::query(
            "UPDATE weir_queue_jobs SET status = $3, lease_owner = NULL, lease_until = NULL, \
             last_error = COALESCE($5, last_error), updated_at = $4 WHERE id = $1 AND fence = $2 AND status = 'claimed'",
        )
        .bind(id)
        .bind(fence)
        .bind(*status)
        .bind(now_ms)
        .bind(error)
        .execute(&mut *conn)
        .await?
        .rows_affected()),
        Settlement::Again { after, error } => on!(tx, conn => sqlx::query(
            "UPDATE weir_queue_jobs SET status = 'queued', lease_owner = NULL, lease_until = NULL, available_at = $3, \
             last_error = COALESCE($4, last_error), updated_at = $5 WHERE id = $1 AND fence = $2 AND status = 'claimed'",
        )
        .bind(id)
        .bind(fence)
        .bind(ms(now + *after))
        .bind(error)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected()),
    };
    Ok(changed == 1)
}

/// Marks the claims `held` (id, fence) done in one statement; how many
/// were still this worker's.
pub(super) async fn complete_all(tx: &mut Tx, held: &[(i64, i64)], now: SystemTime) -> Result<u64, BoxError> {
    if held.is_empty() {
        return Ok(0);
    }
    // Integers the database gave: safe to write into the statement.
    let pairs: Vec<String> = held.iter().map(|(id, fence)| format!("({id}, {fence})")).collect();
    let update = format!(
        "UPDATE weir_queue_jobs SET status = 'done', lease_owner = NULL, lease_until = NULL, updated_at = $1 \
         WHERE status = 'claimed' AND (id, fence) IN (VALUES {})",
        pairs.join(", ")
    );
    Ok(on!(tx, conn => sqlx::query(&update).bind(ms(now)).execute(&mut *conn).await?.rows_affected()))
}

/// Extends the leases of the claims `held` (id, fence) to `until`; the
/// ids whose claim is no longer this worker's.
pub(super) async fn extend(tx: &mut Tx, held: &[(i64, i64)], until: SystemTime) -> Result<Vec<i64>, BoxError> {
    let mut lost = Vec::new();
    for &(id, fence) in held {
        let changed = on!(tx, conn => sqlx::query(
            "UPDATE weir_queue_jobs SET lease_until = $3 WHERE id = $1 AND fence = $2 AND status = 'claimed'",
        )
        .bind(id)
        .bind(fence)
        .bind(ms(until))
        .execute(&mut *conn)
        .await?
        .rows_affected());
        if changed == 0 {
            lost.push(id);
        }
    }
    Ok(lost)
}

pub(super) async fn counts(tx: &mut Tx, queue: &str, now: SystemTime) -> Result<QueueCounts, BoxError> {
    let rows: Vec<(String, i64)> = on!(tx, conn => sqlx::query_as(
        "SELECT CASE WHEN status = 'claimed' AND lease_until <= $2 THEN 'queued' ELSE status END AS s, COUNT(*) \
         FROM weir_queue_jobs WHERE queue = $1 GROUP BY s",
    )
    .bind(queue)
    .bind(ms(now))
    .fetch_all(&mut *conn)
    .await?);
    let mut counts = QueueCounts::default();
    for (status, n) in rows {
        let n = n.max(0) as u64;
        match status.as_str() {
            "queued" => counts.queued += n,
            "claimed" => counts.claimed += n,
            "done" => counts.done += n,
            "skipped" => counts.skipped += n,
            "failed" => counts.failed += n,
            "dead" => counts.dead += n,
            _ => {}
        }
    }
    Ok(counts)
}
