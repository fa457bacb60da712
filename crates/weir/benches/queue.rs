//! The durable work queue on PostgreSQL: jobs claimed and completed per
//! second by 1 and 4 worker processes, without limits and with a
//! fleet-wide per-key limit; and 3-step sagas started through the queue
//! (`SagaEngine::enqueue` / `work`) by 1 and 4 processes, beside the same
//! sagas run by one process directly (`run`, the same in flight), same run.
//!
//! `WEIR_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p weir --features postgres --bench queue`
//! (skipped without the variable). It creates a database of its own and
//! drops it. The workers are this program started again with
//! `WEIR_BENCH_QUEUE_WORKER` set.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;
use weir::durable::queue::{NewJob, WorkQueue};
use weir::durable::saga::{SagaDefinition, SagaEngine, SagaStart, StepError};
use weir::durable::store::Store;

const JOBS: u64 = 20_000;
/// Sagas per saga run.
const SAGAS: u64 = 4_000;
/// Sagas in flight per process.
const IN_FLIGHT: usize = 64;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if let Ok(url) = std::env::var("WEIR_BENCH_QUEUE_WORKER") {
        let limited = std::env::var("WEIR_BENCH_QUEUE_LIMITED").is_ok();
        match std::env::var("WEIR_BENCH_QUEUE_SAGAS") {
            Ok(_) => rt.block_on(saga_worker(&url)),
            Err(_) => rt.block_on(worker(&url, limited)),
        }
        return;
    }
    let Ok(admin) = std::env::var("WEIR_BENCH_POSTGRES_URL") else {
        println!("queue bench skipped: set WEIR_BENCH_POSTGRES_URL (a PostgreSQL server)");
        return;
    };
    let only_sagas = std::env::var("WEIR_BENCH_QUEUE_ONLY").is_ok_and(|only| only == "sagas");
    println!("jobs claimed and completed per second, {JOBS} jobs, PostgreSQL:");
    for limited in [false, true].into_iter().filter(|_| !only_sagas) {
        for processes in [1, 4] {
            let rate = rt.block_on(run(&admin, processes, limited));
            let how = if limited { "at most 8 per key (16 keys), 64 in all" } else { "no limit" };
            println!("  {processes} process(es), {how}: {rate:>8.0} jobs/s");
        }
    }
    println!("3-step sagas per second, {SAGAS} sagas, {IN_FLIGHT} in flight per process, PostgreSQL:");
    let direct = rt.block_on(sagas_direct(&admin));
    println!("  1 process, run directly (the peer): {direct:>8.0} sagas/s");
    for processes in [1, 4] {
        let rate = rt.block_on(sagas_through_queue(&admin, processes));
        println!("  {processes} process(es) through the queue: {rate:>8.0} sagas/s ({:.2}x the peer)", rate / direct);
    }
}

fn definition() -> SagaDefinition {
    SagaDefinition::builder("bench")
        .step("one", |_| async { Ok::<_, StepError>(1) }, |_| async { Ok(()) })
        .step("two", |_| async { Ok::<_, StepError>(2) }, |_| async { Ok(()) })
        .step("three", |_| async { Ok::<_, StepError>(3) }, |_| async { Ok(()) })
        .build()
        .unwrap()
}

fn saga_engine(store: Store) -> SagaEngine {
    SagaEngine::builder(store).definition(definition()).max_in_flight(IN_FLIGHT).build().unwrap()
}

/// A fresh database: its URL, and the admin connection that drops it.
async fn database(admin: &str) -> (String, String, sqlx::PgConnection) {
    let name = format!("weir_bench_queue_{:08x}", fastrand::u32(..));
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    (name, url, conn)
}

/// The peer: one process runs the sagas with `run`, `IN_FLIGHT` at once.
async fn sagas_direct(admin: &str) -> f64 {
    let (name, url, mut conn) = database(admin).await;
    let engine = saga_engine(Store::open(&url).await.unwrap());
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for lane in 0..IN_FLIGHT as u64 {
        let engine = engine.clone();
        running.spawn(async move {
            for n in (lane..SAGAS).step_by(IN_FLIGHT) {
                engine.run_with_id(&format!("s-{n}"), "bench", &n).await.unwrap();
            }
        });
    }
    while running.join_next().await.is_some() {}
    let rate = SAGAS as f64 / started.elapsed().as_secs_f64();
    drop(engine);
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await;
    rate
}

/// Sagas enqueued, then `processes` workers serve the queue until every
/// job is done.
async fn sagas_through_queue(admin: &str, processes: usize) -> f64 {
    let (name, url, mut conn) = database(admin).await;
    let store = Store::open(&url).await.unwrap();
    let engine = saga_engine(store.clone());
    let jobs = WorkQueue::new(store.clone(), "sagas");
    for n in 0..SAGAS {
        engine.enqueue(&jobs, &SagaStart::new(format!("s-{n}"), "bench", &n).unwrap()).await.unwrap();
    }
    let mut children: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env("WEIR_BENCH_QUEUE_WORKER", &url)
                .env("WEIR_BENCH_QUEUE_SAGAS", "1")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    while jobs.counts().await.unwrap().done < SAGAS {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Timed from the first claim to the last job done, as the database
    // recorded them: the workers' start (a process, a connection, the
    // schema check) is not the queue's cost, and the direct peer has none.
    let (first_claim, last_done): (i64, i64) =
        sqlx::query_as("SELECT MIN(claimed_at), MAX(updated_at) FROM weir_queue_jobs")
            .fetch_one(&mut sqlx::PgConnection::connect(&url).await.unwrap())
            .await
            .unwrap();
    let elapsed = Duration::from_millis((last_done - first_claim).max(1) as u64);
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop((engine, jobs, store));
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await;
    SAGAS as f64 / elapsed.as_secs_f64()
}

/// One saga worker process: serves the queue until killed.
async fn saga_worker(url: &str) {
    let engine = saga_engine(Store::open(url).await.unwrap());
    let queue = WorkQueue::new(engine.store().clone(), "sagas");
    engine.work(&queue, tokio_util::sync::CancellationToken::new()).await.unwrap();
}

fn queue(store: Store, limited: bool) -> WorkQueue {
    let queue = WorkQueue::new(store, "bench");
    if limited { queue.concurrency(64).concurrency_per_key(8) } else { queue }
}

async fn run(admin: &str, processes: usize, limited: bool) -> f64 {
    let name = format!("weir_bench_queue_{:08x}", fastrand::u32(..));
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let store = Store::open(&url).await.unwrap();
    let jobs = queue(store.clone(), limited);
    let enqueues: Vec<_> = (0..JOBS)
        .map(|n| {
            let jobs = jobs.clone();
            tokio::spawn(async move {
                jobs.enqueue(NewJob::new(serde_json::json!(n)).partition_key(format!("k{}", n % 16))).await.unwrap()
            })
        })
        .collect();
    for enqueue in enqueues {
        enqueue.await.unwrap();
    }
    let started = Instant::now();
    let mut children: Vec<Child> = (0..processes)
        .map(|_| {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.env("WEIR_BENCH_QUEUE_WORKER", &url).stdout(Stdio::null());
            if limited {
                command.env("WEIR_BENCH_QUEUE_LIMITED", "1");
            }
            command.spawn().unwrap()
        })
        .collect();
    // Counting scans the queue: look every 50 ms, not more (it competes
    // with the workers for the 2 cores).
    while jobs.counts().await.unwrap().done < JOBS {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop((jobs, store));
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut conn).await;
    JOBS as f64 / elapsed.as_secs_f64()
}

/// One worker process: claims up to 64 jobs and completes them in one statement,
/// until killed, 8 claim loops at once.
async fn worker(url: &str, limited: bool) {
    let store = Store::open(url).await.unwrap();
    let loops: Vec<_> = (0..8)
        .map(|n| {
            let queue = queue(store.clone(), limited);
            tokio::spawn(async move {
                let worker = format!("{}-{n}", std::process::id());
                loop {
                    let jobs = queue.claim(&worker, 64).await.unwrap();
                    if jobs.is_empty() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    queue.complete_all(&jobs).await.unwrap();
                }
            })
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
}
