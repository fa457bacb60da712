//! `weir queues list | show | requeue`, on any work queue: payloads are
//! shown as JSON, whatever the application's type.

use serde_json::json;
use weir::durable::queue::{JobQuery, JobRecord, JobStatus, QueueCounts, WorkQueue};
use weir::durable::store::Store;
use weir::error::BoxError;

use crate::args::{DbArgs, QueuesCommand};
use crate::failure::{Exit, Failure};
use crate::output;

/// Jobs read per page when `requeue --all` collects them.
const PAGE: usize = 500;

pub async fn run(db: &DbArgs, command: QueuesCommand) -> Result<(), Failure> {
    let store = crate::store::open(db).await?;
    match command {
        QueuesCommand::List { queue: None, listing, .. } => {
            let queues = WorkQueue::queues(&store).await.map_err(failed)?;
            if listing.json {
                let all: Vec<_> =
                    queues.iter().map(|(name, c)| json!({ "queue": name, "counts": counts_json(c) })).collect();
                output::json(&json!({ "queues": all }));
            } else {
                let rows: Vec<Vec<String>> = queues
                    .iter()
                    .map(|(name, c)| {
                        let n = [c.queued, c.claimed, c.done, c.skipped, c.failed, c.dead];
                        std::iter::once(name.clone()).chain(n.iter().map(u64::to_string)).collect()
                    })
                    .collect();
                output::table(&["QUEUE", "QUEUED", "CLAIMED", "DONE", "SKIPPED", "FAILED", "DEAD"], &rows);
            }
        }
        QueuesCommand::List { queue: Some(queue), status, key, after, listing } => {
            let queue = existing(&store, &queue).await?;
            let mut query = JobQuery::new().limit(listing.limit as usize);
            if let Some(status) = status {
                query = query.status(status.into());
            }
            if let Some(key) = key {
                query = query.partition_key(key);
            }
            if let Some(after) = after {
                query = query.after(after);
            }
            let jobs = queue.jobs(&query).await.map_err(failed)?;
            if listing.json {
                let next = (jobs.len() as u64 == listing.limit).then(|| jobs.last().map(|j| j.id)).flatten();
                let all: Vec<_> = jobs.iter().map(job_json).collect();
                output::json(&json!({ "queue": queue.name(), "jobs": all, "next_after": next }));
            } else {
                let rows: Vec<Vec<String>> = jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.to_string(),
                            j.status.to_string(),
                            j.partition_key.clone().unwrap_or_default(),
                            j.attempts.to_string(),
                            output::time_ms(j.updated_at),
                            j.payload.to_string(),
                            j.last_error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "STATUS", "KEY", "ATTEMPTS", "CHANGED", "PAYLOAD", "LAST ERROR"], &rows);
                if let Some(last) = jobs.last() {
                    super::next_page(jobs.len(), listing.limit, &last.id.to_string());
                }
            }
        }
        QueuesCommand::Show { queue, id, json } => {
            let queue = existing(&store, &queue).await?;
            let job = queue.job(id).await.map_err(failed)?.ok_or_else(|| no_job(&queue, id))?;
            if json {
                output::json(&job_json(&job));
            } else {
                print_job(queue.name(), &job);
            }
        }
        QueuesCommand::Requeue { queue, ids, all, status } => {
            let queue = existing(&store, &queue).await?;
            let ids = if all { ended(&queue, status.map(Into::into)).await? } else { ids };
            let requeued = queue.requeue(&ids).await.map_err(failed)?;
            if !all && requeued.len() < ids.len() {
                return Err(not_requeued(&queue, &ids, &requeued).await);
            }
            println!("{} job(s) of {} queued again with fresh attempts", requeued.len(), queue.name());
        }
    }
    Ok(())
}

/// The queue `name`, if it holds a job.
async fn existing(store: &Store, name: &str) -> Result<WorkQueue, Failure> {
    let queues = WorkQueue::queues(store).await.map_err(failed)?;
    if queues.iter().any(|(queue, _)| queue == name) {
        return Ok(WorkQueue::new(store.clone(), name));
    }
    let known: Vec<&str> = queues.iter().map(|(queue, _)| queue.as_str()).collect();
    let there =
        if known.is_empty() { "none holds a job".to_owned() } else { format!("there are: {}", known.join(", ")) };
    Err(Failure::new(Exit::NotFound, format!("no work queue named {name} in {} ({there})", store.target())))
}

/// Every job of `queue` that ended failed, dead or skipped (or only in
/// `status`).
async fn ended(queue: &WorkQueue, status: Option<JobStatus>) -> Result<Vec<i64>, Failure> {
    let statuses = match status {
        Some(status) => vec![status],
        None => vec![JobStatus::Failed, JobStatus::Dead, JobStatus::Skipped],
    };
    let mut ids = Vec::new();
    for status in statuses {
        let mut after = None;
        loop {
            let mut query = JobQuery::new().status(status).limit(PAGE);
            if let Some(after) = after {
                query = query.after(after);
            }
            let page = queue.jobs(&query).await.map_err(failed)?;
            ids.extend(page.iter().map(|j| j.id));
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.id),
                _ => break,
            }
        }
    }
    Ok(ids)
}

/// Why some of `ids` were not put back: not there, or not ended badly.
async fn not_requeued(queue: &WorkQueue, ids: &[i64], requeued: &[i64]) -> Failure {
    let mut reasons = Vec::new();
    for id in ids.iter().filter(|id| !requeued.contains(id)) {
        match queue.job(*id).await {
            Ok(Some(job)) => reasons.push(format!("job {id} is {}", job.status)),
            Ok(None) => return no_job(queue, *id),
            Err(e) => reasons.push(format!("job {id}: {e}")),
        }
    }
    Failure::new(
        Exit::BadState,
        format!(
            "{} job(s) of {} queued again; not the others: {} (only failed, dead or skipped jobs go back)",
            requeued.len(),
            queue.name(),
            reasons.join(", ")
        ),
    )
}

fn no_job(queue: &WorkQueue, id: i64) -> Failure {
    let name = queue.name();
    Failure::new(Exit::NotFound, format!("no job {id} in work queue {name}; `weir queues list {name}` shows its jobs"))
}

fn failed(error: BoxError) -> Failure {
    Failure::new(Exit::Failed, error)
}

fn print_job(queue: &str, job: &JobRecord) {
    println!("job {} of {queue}: {}", job.id, job.status);
    let line = |label: &str, value: String| println!("  {label:<13}{value}");
    line("key", job.partition_key.clone().unwrap_or_else(|| "-".into()));
    line("dedup id", job.dedup_id.clone().unwrap_or_else(|| "-".into()));
    line("priority", job.priority.to_string());
    line("attempts", job.attempts.to_string());
    if let (Some(owner), Some(until)) = (&job.lease_owner, job.lease_until) {
        line("lease", format!("{owner} until {}", output::time_ms(until)));
    }
    line("available", output::time_ms(job.available_at));
    line("enqueued", output::time_ms(job.created_at));
    line("changed", output::time_ms(job.updated_at));
    line("last error", job.last_error.clone().unwrap_or_else(|| "-".into()));
    println!("  payload:");
    println!("{}", serde_json::to_string_pretty(&job.payload).expect("JSON values serialize"));
}

fn job_json(job: &JobRecord) -> serde_json::Value {
    json!({
        "id": job.id,
        "status": job.status.as_str(),
        "partition_key": job.partition_key,
        "dedup_id": job.dedup_id,
        "priority": job.priority,
        "attempts": job.attempts,
        "lease_owner": job.lease_owner,
        "lease_until": job.lease_until.map(output::time_ms),
        "available_at": output::time_ms(job.available_at),
        "created_at": output::time_ms(job.created_at),
        "updated_at": output::time_ms(job.updated_at),
        "last_error": job.last_error,
        "payload": job.payload,
    })
}

fn counts_json(c: &QueueCounts) -> serde_json::Value {
    json!({ "queued": c.queued, "claimed": c.claimed, "done": c.done, "skipped": c.skipped, "failed": c.failed, "dead": c.dead })
}
