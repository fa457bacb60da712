//! The durable work queue on SQLite and PostgreSQL: enqueue (deduplicated,
//! prioritized, delayed, in the caller's transaction), claims under leases
//! and fences, settlement by fate, and fleet-wide concurrency limits that
//! hold across independent stores (as across processes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use weir::durable::queue::{Job, NewJob, WorkQueue};
use weir::durable::store::Store;
use weir::error::{BoxError, Permanent};
use weir::pipeline::{Pipeline, Stage};

/// A SQLite store, and a PostgreSQL one when the server is there; the
/// URL (or path) to open more stores on the same database.
async fn stores(test: &str) -> Vec<(Store, String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db").to_str().unwrap().to_owned();
    let mut all = vec![(Store::open(&path).await.unwrap(), path, Some(dir))];
    #[cfg(feature = "postgres")]
    if let Some(url) = crate::support::stores::postgres_url(test).await {
        all.push((Store::open(&url).await.unwrap(), url, None));
    }
    #[cfg(not(feature = "postgres"))]
    let _ = test;
    all
}

#[tokio::test]
async fn queue_jobs_are_deduplicated_prioritized_delayed_and_claimed_once() {
    for (store, _, _dir) in stores("queue_jobs_are_deduplicated_prioritized_delayed_and_claimed_once").await {
        let queue = WorkQueue::new(store.clone(), "mail");
        let low = queue.enqueue(NewJob::new(json!("low")).dedup_id("a")).await.unwrap();
        assert_eq!(queue.enqueue(NewJob::new(json!("low again")).dedup_id("a")).await.unwrap(), low, "deduplicated");
        queue.enqueue(NewJob::new(json!("high")).priority(5)).await.unwrap();
        queue.enqueue(NewJob::new(json!("later")).delay(Duration::from_secs(3600))).await.unwrap();
        let first = queue.claim("w1", 10).await.unwrap();
        let payloads: Vec<&serde_json::Value> = first.iter().map(|j| &j.payload).collect();
        assert_eq!(payloads, [&json!("high"), &json!("low")], "by priority; the delayed one waits");
        assert!(first.iter().all(|j| j.attempts == 1 && j.fence == 1));
        assert!(queue.claim("w2", 10).await.unwrap().is_empty(), "a claimed job is nobody else's");
        let counts = queue.counts().await.unwrap();
        assert_eq!((counts.queued, counts.claimed), (1, 2));
        assert_eq!(queue.complete_all(&first).await.unwrap(), 2);
        assert_eq!(queue.complete_all(&first).await.unwrap(), 0, "done already");
        assert_eq!(queue.counts().await.unwrap().done, 2);
    }
}

#[tokio::test]
async fn queue_a_job_enqueued_in_a_failed_transaction_does_not_exist() {
    for (store, _, _dir) in stores("queue_a_job_enqueued_in_a_failed_transaction_does_not_exist").await {
        let failed = store
            .commit_effect(|tx| {
                Box::pin(async move {
                    WorkQueue::enqueue_in(tx, "mail", &NewJob::new(json!("ghost"))).await?;
                    Err::<(), BoxError>("the caller's own write failed".into())
                })
            })
            .await;
        assert!(failed.is_err());
        store
            .commit_effect(|tx| {
                Box::pin(async move { WorkQueue::enqueue_in(tx, "mail", &NewJob::new(json!("real"))).await })
            })
            .await
            .unwrap();
        let jobs = WorkQueue::new(store, "mail").claim("w", 10).await.unwrap();
        assert_eq!(jobs.iter().map(|j| &j.payload).collect::<Vec<_>>(), [&json!("real")]);
    }
}

#[tokio::test]
async fn queue_a_worker_whose_lease_expired_cannot_settle_the_job_again() {
    for (store, _, _dir) in stores("queue_a_worker_whose_lease_expired_cannot_settle_the_job_again").await {
        let queue = WorkQueue::new(store, "mail").lease(Duration::from_millis(200));
        queue.enqueue(NewJob::new(json!(1))).await.unwrap();
        // Worker A claims and stalls past its lease (nothing renews it).
        let job_a = queue.claim("a", 1).await.unwrap().remove(0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let again = queue.claim("b", 10).await.unwrap();
        assert_eq!(again.len(), 1, "the expired claim is claimed again");
        assert_eq!((again[0].id, again[0].fence, again[0].attempts), (job_a.id, job_a.fence + 1, 2));
        // A wakes up and settles: fenced off, B's claim stands.
        assert!(!queue.complete(&job_a).await.unwrap(), "A's claim is gone");
        assert!(!queue.retry_later(&job_a, Duration::ZERO, "late").await.unwrap());
        let counts = queue.counts().await.unwrap();
        assert_eq!((counts.claimed, counts.done), (1, 0), "A's late settlement changed nothing");
        assert!(queue.complete(&again[0]).await.unwrap());
        assert_eq!(queue.counts().await.unwrap().done, 1);
    }
}

#[tokio::test]
async fn queue_fates_become_statuses() {
    for (store, _, _dir) in stores("queue_fates_become_statuses").await {
        let retry = weir::policy::retry::RetryPolicy::builder()
            .max_attempts(2)
            .initial_delay(Duration::from_millis(10))
            .jitter(weir::policy::retry::Jitter::None)
            .build()
            .unwrap();
        let queue = WorkQueue::new(store, "orders").retry(retry);
        for n in 1..=4 {
            queue.enqueue(NewJob::new(json!(n))).await.unwrap();
        }
        let dlq = Arc::new(weir::durable::dlq::MemoryDlq::new());
        let flaky = Arc::new(AtomicU32::new(0));
        let calls = Arc::clone(&flaky);
        let pipeline = Pipeline::builder().from_receipts(queue.source("w")).stage(
            Stage::try_map("handle", move |job: Job| {
                let calls = Arc::clone(&calls);
                async move {
                    match job.payload.as_i64() {
                        Some(2) => Err(Permanent::new("bad order").into()),
                        Some(3) if calls.fetch_add(1, Ordering::SeqCst) == 0 => Err("blip".into()),
                        Some(4) => Err(weir::error::Skip.into()),
                        _ => Ok::<_, BoxError>(job.id),
                    }
                }
            })
            .dead_letter(dlq.clone()),
        );
        let control = pipeline.control();
        let watch = queue.clone();
        tokio::spawn(async move {
            loop {
                let counts = watch.counts().await.unwrap();
                if counts.done + counts.dead + counts.skipped == 4 {
                    control.drain();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let report = pipeline.for_each(|_| async { Ok::<_, BoxError>(()) }).await.unwrap();
        let counts = queue.counts().await.unwrap();
        assert_eq!((counts.done, counts.dead, counts.skipped, counts.queued), (2, 1, 1, 0), "{report}");
        assert_eq!(report.stage("handle").unwrap().released, 1, "the blip went back to the queue once");
    }
}

/// Four independent stores on one database (as four processes would be),
/// each running a pipeline over the queue: no partition key ever has more
/// than its limit of jobs running, nor the queue more than its own, and
/// every job runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_limits_hold_across_workers() {
    for (_, location, _dir) in stores("queue_limits_hold_across_workers").await {
        let (per_key, total) = (2u32, 5u32);
        let first = Store::open(&location).await.unwrap();
        let queue = WorkQueue::new(first, "limited");
        for n in 0..120 {
            queue.enqueue(NewJob::new(json!(n)).partition_key(format!("tenant-{}", n % 4))).await.unwrap();
        }
        let running: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let peaks: Arc<Mutex<(HashMap<String, u32>, u32)>> = Arc::default();
        let ran: Arc<Mutex<Vec<i64>>> = Arc::default();
        let mut workers = Vec::new();
        for w in 0..4 {
            let store = Store::open(&location).await.unwrap();
            let queue = WorkQueue::new(store, "limited").concurrency(total).concurrency_per_key(per_key);
            let (running, peaks, ran) = (Arc::clone(&running), Arc::clone(&peaks), Arc::clone(&ran));
            let pipeline = Pipeline::builder().from_receipts(queue.source(format!("w{w}"))).stage(
                Stage::map("work", move |job: Job| {
                    let (running, peaks, ran) = (Arc::clone(&running), Arc::clone(&peaks), Arc::clone(&ran));
                    async move {
                        let key = job.partition_key.clone().unwrap();
                        {
                            let mut running = running.lock().unwrap();
                            let n = {
                                let n = running.entry(key.clone()).or_default();
                                *n += 1;
                                *n
                            };
                            let sum = running.values().sum::<u32>();
                            let mut peaks = peaks.lock().unwrap();
                            let peak = peaks.0.entry(key.clone()).or_default();
                            *peak = (*peak).max(n);
                            peaks.1 = peaks.1.max(sum);
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        *running.lock().unwrap().get_mut(&key).unwrap() -= 1;
                        ran.lock().unwrap().push(job.id);
                    }
                })
                .workers(8),
            );
            let control = pipeline.control();
            let watch = queue.clone();
            tokio::spawn(async move {
                while watch.counts().await.map(|c| c.done).unwrap_or(0) < 120 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                control.drain();
            });
            workers.push(tokio::spawn(pipeline.for_each(|()| async { Ok::<_, BoxError>(()) })));
        }
        for worker in workers {
            tokio::time::timeout(Duration::from_secs(60), worker).await.expect("the workers finish").unwrap().unwrap();
        }
        let (per_key_peaks, total_peak) = peaks.lock().unwrap().clone();
        assert!(per_key_peaks.values().all(|p| *p <= per_key), "per-key peaks {per_key_peaks:?} over {per_key}");
        assert!(total_peak <= total, "queue peak {total_peak} over {total}");
        assert!(per_key_peaks.values().any(|p| *p == per_key), "the limit was reached (the test tests something)");
        let mut ran = ran.lock().unwrap().clone();
        assert_eq!(ran.len(), 120, "120 runs");
        ran.sort_unstable();
        ran.dedup();
        assert_eq!(ran.len(), 120, "of 120 jobs: each ran once");
        assert_eq!(queue.counts().await.unwrap().done, 120);
    }
}

/// A per-key rate limit (4 claims a second per tenant) holds across four
/// independent stores: in no window shorter than the period (less the
/// time from claim to start) does a tenant start more than 4 jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_rate_limits_hold_across_workers() {
    for (_, location, _dir) in stores("queue_rate_limits_hold_across_workers").await {
        let first = Store::open(&location).await.unwrap();
        let queue = WorkQueue::new(first, "rated");
        for n in 0..24 {
            queue.enqueue(NewJob::new(json!(n)).partition_key(format!("tenant-{}", n % 2))).await.unwrap();
        }
        let started_at: Arc<Mutex<Vec<(String, std::time::Instant)>>> = Arc::default(); // every job ran
        let began = std::time::Instant::now();
        let mut workers = Vec::new();
        for w in 0..4 {
            let store = Store::open(&location).await.unwrap();
            let queue = WorkQueue::new(store, "rated").rate_per_key(4, Duration::from_secs(1));
            let started_at = Arc::clone(&started_at);
            let pipeline = Pipeline::builder().from_receipts(queue.source(format!("w{w}"))).stage(
                Stage::map("work", move |job: Job| {
                    started_at.lock().unwrap().push((job.partition_key.clone().unwrap(), std::time::Instant::now()));
                    async {}
                })
                .workers(4),
            );
            let control = pipeline.control();
            let watch = queue.clone();
            tokio::spawn(async move {
                while watch.counts().await.map(|c| c.done).unwrap_or(0) < 24 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                control.drain();
            });
            workers.push(tokio::spawn(pipeline.for_each(|()| async { Ok::<_, BoxError>(()) })));
        }
        for worker in workers {
            tokio::time::timeout(Duration::from_secs(60), worker).await.expect("the workers finish").unwrap().unwrap();
        }
        let started = started_at.lock().unwrap().clone();
        assert_eq!(started.len(), 24);
        // The claim times the workers stored (each job was claimed once):
        // no tenant had more than 4 claims in any second. (Start times in
        // the stage lag their claims by however long the machine takes, so
        // the check reads the claims themselves.)
        for (tenant, mut claims) in claim_times(&location, "rated").await {
            claims.sort_unstable();
            for (i, at) in claims.iter().enumerate() {
                let within = claims[..=i].iter().filter(|earlier| **earlier > at - 1000).count();
                assert!(within <= 4, "{tenant}: {within} claims within a second, up to {at}");
            }
        }
        // 12 jobs per tenant at 4 a second: at least two full periods.
        assert!(began.elapsed() >= Duration::from_secs(2), "the limit held jobs back");
    }
}

/// On PostgreSQL an enqueue announces itself when it commits (`NOTIFY
/// weir_queue, '<queue>'`), so idle workers claim at once instead of at
/// their next poll; an enqueue in a transaction that fails announces
/// nothing.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn queue_an_enqueue_wakes_idle_workers_on_postgres() {
    let Some(url) = crate::support::stores::postgres_url("queue_an_enqueue_wakes_idle_workers_on_postgres").await
    else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(&url).await.unwrap();
    listener.listen("weir_queue").await.unwrap();
    let failed = store
        .commit_effect(|tx| {
            Box::pin(async move {
                WorkQueue::enqueue_in(tx, "mail", &NewJob::new(json!("ghost"))).await?;
                Err::<(), BoxError>("rolled back".into())
            })
        })
        .await;
    assert!(failed.is_err());
    WorkQueue::new(store, "mail").enqueue(NewJob::new(json!("real"))).await.unwrap();
    let note = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await.unwrap().unwrap();
    assert_eq!(note.payload(), "mail");
    let none = tokio::time::timeout(Duration::from_millis(300), listener.recv()).await;
    assert!(none.is_err(), "one notification: the rolled-back enqueue sent none");
}

/// Runs a queue worker when the harness starts this binary as one (see
/// `queue_limits_hold_across_processes`); a no-op in a normal test run.
#[test]
fn queue_limit_worker_entry() {
    let (Ok(location), Ok(log)) = (std::env::var("WEIR_QUEUE_WORKER_DB"), std::env::var("WEIR_QUEUE_WORKER_LOG"))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = Store::open(&location).await.unwrap();
        let queue = WorkQueue::new(store, "fleet").concurrency(5).concurrency_per_key(2);
        let intervals = Arc::new(Mutex::new(String::new()));
        let written = Arc::clone(&intervals);
        let pipeline = Pipeline::builder().from_receipts(queue.source(format!("pid-{}", std::process::id()))).stage(
            Stage::map("work", move |job: Job| {
                let intervals = Arc::clone(&written);
                async move {
                    let start = now_ns();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    let line = format!("{} {start} {}\n", job.partition_key.unwrap(), now_ns());
                    intervals.lock().unwrap().push_str(&line);
                }
            })
            .workers(8),
        );
        let control = pipeline.control();
        let watch = queue.clone();
        tokio::spawn(async move {
            while watch.counts().await.map(|c| c.done).unwrap_or(0) < 120 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            control.drain();
        });
        pipeline.for_each(|()| async { Ok::<_, BoxError>(()) }).await.unwrap();
        std::fs::write(&log, intervals.lock().unwrap().as_bytes()).unwrap();
    });
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Four worker processes on one limited queue: counting the jobs each
/// was running, on one clock, no tenant ever had more than 2 running at
/// once in the fleet, nor the queue more than 5.
#[tokio::test]
async fn queue_limits_hold_across_processes() {
    for (_, location, _dir) in stores("queue_limits_hold_across_processes").await {
        let queue = WorkQueue::new(Store::open(&location).await.unwrap(), "fleet");
        for n in 0..120 {
            queue.enqueue(NewJob::new(json!(n)).partition_key(format!("tenant-{}", n % 4))).await.unwrap();
        }
        let logs = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..4)
            .map(|w| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "queue::queue_limit_worker_entry", "--nocapture", "--test-threads=1"])
                    .env("WEIR_QUEUE_WORKER_DB", &location)
                    .env("WEIR_QUEUE_WORKER_LOG", logs.path().join(format!("{w}.log")))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
            assert!(status.success());
        }
        // Every start and end, in time order: the running count per tenant.
        let mut events: Vec<(u128, i32, String)> = Vec::new();
        for w in 0..4 {
            for line in std::fs::read_to_string(logs.path().join(format!("{w}.log"))).unwrap().lines() {
                let parts: Vec<&str> = line.split(' ').collect();
                events.push((parts[1].parse().unwrap(), 1, parts[0].to_owned()));
                events.push((parts[2].parse().unwrap(), -1, parts[0].to_owned()));
            }
        }
        assert_eq!(events.len(), 240, "120 jobs ran, once each");
        events.sort_by_key(|(at, delta, _)| (*at, *delta)); // an end before a start at the same instant
        let (mut running, mut total, mut peak, mut peak_total) = (HashMap::<String, i32>::new(), 0, 0, 0);
        for (_, delta, tenant) in events {
            let n = running.entry(tenant).or_default();
            *n += delta;
            total += delta;
            peak = peak.max(*n);
            peak_total = peak_total.max(total);
        }
        assert!(peak <= 2, "a tenant had {peak} jobs running at once across the processes");
        assert!(peak_total <= 5, "the queue had {peak_total} jobs running at once");
        assert_eq!(peak, 2, "the per-tenant limit was reached (the test tests something)");
        assert_eq!(queue.counts().await.unwrap().done, 120);
    }
}

/// Each partition key's claim times (ms), read from the store's table.
async fn claim_times(location: &str, queue: &str) -> HashMap<String, Vec<i64>> {
    use sqlx::Connection;
    let sql = "SELECT partition_key, claimed_at FROM weir_queue_jobs WHERE queue = $1";
    let rows: Vec<(String, i64)> = if location.starts_with("postgres") {
        #[cfg(feature = "postgres")]
        {
            let mut conn = sqlx::PgConnection::connect(location).await.unwrap();
            sqlx::query_as(sql).bind(queue).fetch_all(&mut conn).await.unwrap()
        }
        #[cfg(not(feature = "postgres"))]
        unreachable!("a PostgreSQL location without the feature")
    } else {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{location}")).await.unwrap();
        sqlx::query_as(sql).bind(queue).fetch_all(&mut conn).await.unwrap()
    };
    let mut by_key = HashMap::<String, Vec<i64>>::new();
    for (key, at) in rows {
        by_key.entry(key).or_default().push(at);
    }
    by_key
}

/// What an operator sees and does: every queue with its counts, a
/// queue's jobs by status and key, page by page, an expired claim shown
/// as queued, and failed or dead jobs put back with fresh attempts
/// (others left as they are).
#[tokio::test]
async fn queue_jobs_are_listed_and_the_ones_that_ended_badly_requeued() {
    use weir::durable::queue::{JobQuery, JobStatus};
    for (store, _, _dir) in stores("queue_jobs_are_listed_and_the_ones_that_ended_badly_requeued").await {
        let mail = WorkQueue::new(store.clone(), "mail").lease(Duration::from_millis(100));
        let other = WorkQueue::new(store.clone(), "other");
        for n in 0..5 {
            mail.enqueue(NewJob::new(json!(n)).partition_key(if n % 2 == 0 { "even" } else { "odd" })).await.unwrap();
        }
        other.enqueue(NewJob::new(json!("x"))).await.unwrap();
        let claimed = mail.claim("w", 3).await.unwrap();
        mail.complete(&claimed[0]).await.unwrap();
        assert!(mail.mark_dead(&claimed[1], "bad payload").await.unwrap());
        let names: Vec<String> = WorkQueue::queues(&store).await.unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["mail", "other"]);

        let all = mail.jobs(&JobQuery::new()).await.unwrap();
        let statuses: Vec<JobStatus> = all.iter().map(|j| j.status).collect();
        use JobStatus::*;
        assert_eq!(statuses, [Done, Dead, Claimed, Queued, Queued]);
        assert_eq!(all[1].last_error.as_deref(), Some("bad payload"));
        let page = mail.jobs(&JobQuery::new().after(all[1].id).limit(2)).await.unwrap();
        assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), [all[2].id, all[3].id]);
        let even = mail.jobs(&JobQuery::new().partition_key("even").status(Queued)).await.unwrap();
        assert_eq!(even.iter().map(|j| &j.payload).collect::<Vec<_>>(), [&json!(4)], "2 is claimed");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(mail.job(all[2].id).await.unwrap().unwrap().status, Queued, "its lease expired");
        assert!(mail.job(all[4].id + 100).await.unwrap().is_none());

        let requeued = mail.requeue(&[all[0].id, all[1].id, all[3].id]).await.unwrap();
        assert_eq!(requeued, [all[1].id], "only the dead one: done and queued ones stay");
        let back = mail.job(all[1].id).await.unwrap().unwrap();
        assert_eq!((back.status, back.attempts), (Queued, 0));
    }
}
