//! Durable sagas per second: 3-step sagas on SQLite (synchronous = FULL)
//! and PostgreSQL with 1, 64 and 256 in flight (and on PostgreSQL, 4
//! processes with 64 each), beside the raw single-row commit rate and the
//! batched insert rate measured the same way, in the same run.
//! PostgreSQL figures need `WEIR_BENCH_POSTGRES_URL` (a database the bench
//! may create tables in). Run with `cargo bench -p weir --bench durable --all-features`.
//! Also a saga's own latency with one in flight (p50, p99) beside the
//! latency of one raw single-row commit on the same database.
//! `-- sqlite-256` runs only SQLite with 256 in flight, three times (for
//! comparing two builds back to back).
//! Prints a table; it does not use criterion's sampling because each figure
//! is a throughput over thousands of real commits.

use std::time::{Duration, Instant};

use sqlx::Connection;
use weir::durable::saga::{SagaDefinition, SagaEngine, StepError};
use weir::durable::store::Store;

fn definition() -> SagaDefinition {
    SagaDefinition::builder("bench")
        .step("one", |_| async { Ok::<_, StepError>(1) }, |_| async { Ok(()) })
        .step("two", |_| async { Ok::<_, StepError>(2) }, |_| async { Ok(()) })
        .step("three", |_| async { Ok::<_, StepError>(3) }, |_| async { Ok(()) })
        .build()
        .expect("valid")
}

/// Sagas/s with `in_flight` sagas running at once, over `total` sagas.
/// Also prints what the store's group committer did meanwhile: writes per
/// transaction, and the share of the time it spent inside transactions.
async fn sagas_per_second(store: Store, in_flight: usize, total: usize) -> f64 {
    let committed_before = store.commit_metrics();
    let engine =
        SagaEngine::builder(store.clone()).definition(definition()).max_in_flight(in_flight).build().expect("valid");
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let engine = engine.clone();
        let share = total / in_flight;
        running.spawn(async move {
            for _ in 0..share {
                engine.run("bench", &()).await.expect("completes");
            }
        });
    }
    while let Some(done) = running.join_next().await {
        done.expect("bench task");
    }
    let elapsed = started.elapsed();
    let committed = store.commit_metrics();
    let transactions = committed.transactions - committed_before.transactions;
    let writes = committed.writes - committed_before.writes;
    println!(
        "  ({in_flight} in flight: {transactions} transactions, {:.1} writes each, in a transaction {:.0} % of the time)",
        writes as f64 / transactions.max(1) as f64,
        (committed.busy - committed_before.busy).as_secs_f64() / elapsed.as_secs_f64() * 100.0,
    );
    (total / in_flight * in_flight) as f64 / elapsed.as_secs_f64()
}

/// Each saga's latency, one at a time, over `total` sagas: p50 and p99.
async fn saga_latency(store: Store, total: usize) -> (Duration, Duration) {
    let engine = SagaEngine::builder(store).definition(definition()).build().expect("valid");
    let mut samples = Vec::with_capacity(total);
    for _ in 0..total {
        let started = Instant::now();
        engine.run("bench", &()).await.expect("completes");
        samples.push(started.elapsed());
    }
    percentiles(samples)
}

/// p50 and p99 of `samples`.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// Raw commit rates and the latency of one single-row commit.
struct Raw {
    single: f64,
    batched: f64,
    commit: (Duration, Duration),
}

/// Events/s through a cursor consumer reading a JSONL file, saving its
/// cursor every 1,000 events.
async fn consumer_events_per_second(store: Store, path: &std::path::Path) -> f64 {
    use weir::durable::checkpoint::{CursorConsumer, JsonlFileSource};
    let events = 500_000u64;
    std::fs::write(path, (0..events).map(|i| format!("{{\"id\":{i}}}\n")).collect::<String>()).expect("write events");
    let consumer = CursorConsumer::builder(store, "bench").every(1000).build().expect("valid");
    let started = Instant::now();
    let report = consumer
        .run(&mut JsonlFileSource::<serde_json::Value>::new(path), |e| {
            std::hint::black_box(e);
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        })
        .await
        .expect("consumes");
    assert_eq!(report.processed, events);
    events as f64 / started.elapsed().as_secs_f64()
}

/// Single-row transactions per second, one connection, on the same kind of
/// store; and rows/s in 1,000-row transactions.
async fn sqlite_raw(path: &std::path::Path) -> Raw {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
    for pragma in
        ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"]
    {
        sqlx::query(pragma).execute(&mut conn).await.expect("setup");
    }
    raw_rates(&mut conn, "INSERT INTO t (v) VALUES (?1)").await
}

async fn raw_rates<C>(conn: &mut C, insert: &'static str) -> Raw
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'q> String: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, C::Database>,
{
    let n = 2000;
    let started = Instant::now();
    let mut commits = Vec::with_capacity(n);
    for i in 0..n {
        let one = Instant::now();
        let mut tx = conn.begin().await.expect("begin");
        sqlx::query(insert).bind(format!("row {i}")).execute(&mut *tx).await.expect("insert");
        tx.commit().await.expect("commit");
        commits.push(one.elapsed());
    }
    let single = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for batch in 0..20 {
        let mut tx = conn.begin().await.expect("begin");
        for i in 0..1000 {
            sqlx::query(insert).bind(format!("row {batch}-{i}")).execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
    }
    let batched = 20_000.0 / started.elapsed().as_secs_f64();
    Raw { single, batched, commit: percentiles(commits) }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // `-- pg-worker URL SAGAS START_MS`: one of the processes of the
    // several-process PostgreSQL run (see `postgres_processes`).
    #[cfg(feature = "postgres")]
    if let [_, flag, url, sagas, start_ms, ..] = &std::env::args().collect::<Vec<_>>()[..]
        && flag == "pg-worker"
    {
        rt.block_on(postgres_worker(url, sagas.parse().expect("sagas"), start_ms.parse().expect("start")));
        return;
    }
    // `-- raw`: the raw commit rates only, in `WEIR_BENCH_DIR` (the folder
    // of the database they are compared with: the same disk) or a temporary
    // one; `bench/demo.sh` compares the orders demo with them.
    let raw_only = std::env::args().any(|a| a == "raw");
    rt.block_on(async {
        let dir = match std::env::var("WEIR_BENCH_DIR") {
            Ok(parent) => tempfile::tempdir_in(parent).expect("temp dir in WEIR_BENCH_DIR"),
            Err(_) => tempfile::tempdir().expect("temp dir"),
        };
        let Raw { single, batched, commit } = sqlite_raw(&dir.path().join("raw.db")).await;
        println!("sqlite FULL raw single-row commits: {single:>10.0} tx/s");
        println!("sqlite FULL raw 1000-row transactions: {batched:>10.0} rows/s");
        // `-- sqlite-256`: only the SQLite run with 256 in flight, three
        // times (for comparing two builds back to back).
        if std::env::args().any(|a| a == "sqlite-256") {
            for round in 0..3 {
                let path = dir.path().join(format!("sagas-256-{round}.db"));
                let store = Store::open(path.to_str().expect("utf-8")).await.expect("store");
                let rate = sagas_per_second(store, 256, 40_000).await;
                println!("sqlite FULL 3-step sagas, 256 in flight: {rate:>10.0} sagas/s");
            }
            return;
        }
        if raw_only {
            #[cfg(feature = "postgres")]
            if let Ok(url) = std::env::var("WEIR_BENCH_POSTGRES_URL") {
                postgres_raw(&url).await;
            }
            return;
        }
        for (in_flight, total) in [(1, 1_000), (64, 20_000), (256, 40_000)] {
            let store = Store::open(dir.path().join(format!("sagas-{in_flight}.db")).to_str().expect("utf-8"))
                .await
                .expect("store");
            let rate = sagas_per_second(store, in_flight, total).await;
            println!(
                "sqlite FULL 3-step sagas, {in_flight:>2} in flight: {rate:>10.0} sagas/s ({:.2}x the raw commit rate)",
                rate / single
            );
        }
        let store = Store::open(dir.path().join("latency.db").to_str().expect("utf-8")).await.expect("store");
        let (p50, p99) = saga_latency(store, 500).await;
        println!(
            "sqlite FULL 3-step saga latency, 1 in flight: p50 {p50:?} p99 {p99:?} (one raw commit: p50 {:?} p99 {:?})",
            commit.0, commit.1
        );
        let store = Store::open(dir.path().join("cursor.db").to_str().expect("utf-8")).await.expect("store");
        let rate = consumer_events_per_second(store, &dir.path().join("events.jsonl")).await;
        println!("sqlite FULL cursor consumer, checkpoint every 1,000: {rate:>10.0} events/s");
        #[cfg(feature = "postgres")]
        if let Ok(url) = std::env::var("WEIR_BENCH_POSTGRES_URL") {
            postgres(&url).await;
        }
        let _ = Duration::ZERO;
    });
}

/// PostgreSQL's raw commit rates (a table of their own, dropped after).
#[cfg(feature = "postgres")]
async fn postgres_raw(url: &str) -> Raw {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
    for sql in ["DROP TABLE IF EXISTS bench_raw", "CREATE TABLE bench_raw (id BIGSERIAL PRIMARY KEY, v TEXT)"] {
        sqlx::query(sql).execute(&mut conn).await.expect("setup");
    }
    let raw = raw_rates(&mut conn, "INSERT INTO bench_raw (v) VALUES ($1)").await;
    sqlx::query("DROP TABLE bench_raw").execute(&mut conn).await.expect("clean up");
    println!("postgres raw single-row commits (1 connection): {:>10.0} tx/s", raw.single);
    println!("postgres raw 1000-row transactions: {:>10.0} rows/s", raw.batched);
    raw
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres");
    // Every table an earlier run's weir made (whatever its schema version).
    let drop_weir = "DO $$ DECLARE t text; BEGIN
        FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema()
                 AND (tablename LIKE 'weir\\_%' OR tablename = '_sqlx_migrations') LOOP
            EXECUTE format('DROP TABLE %I CASCADE', t);
        END LOOP; END $$";
    sqlx::raw_sql(drop_weir).execute(&mut conn).await.expect("setup");
    let Raw { single, commit, .. } = postgres_raw(url).await;
    let (p50, p99) = saga_latency(Store::open(url).await.expect("store"), 500).await;
    println!(
        "postgres 3-step saga latency, 1 in flight: p50 {p50:?} p99 {p99:?} (one raw commit: p50 {:?} p99 {:?})",
        commit.0, commit.1
    );
    for (in_flight, total) in [(1, 1_000), (64, 20_000), (256, 40_000)] {
        let store = Store::open(url).await.expect("store");
        let rate = sagas_per_second(store, in_flight, total).await;
        println!(
            "postgres 3-step sagas, {in_flight:>2} in flight: {rate:>10.0} sagas/s ({:.2}x the raw commit rate)",
            rate / single
        );
    }
    let rate = postgres_processes(url, 4, 20_000).await;
    println!(
        "postgres 3-step sagas, 4 processes x 64 in flight: {rate:>10.0} sagas/s ({:.2}x the raw commit rate)",
        rate / single
    );
}

/// Sagas/s of `processes` processes (this bench run again as
/// `pg-worker`), each running `sagas` with 64 in flight on its own store
/// of the same database: all start at one agreed wall-clock time, and the
/// rate is every saga over the time from then to the last one's end.
#[cfg(feature = "postgres")]
async fn postgres_processes(url: &str, processes: usize, sagas: usize) -> f64 {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let start_ms = now() + 3_000; // time for every process to open its store
    let exe = std::env::current_exe().expect("this bench's path");
    let workers: Vec<_> = (0..processes)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["pg-worker", url, &sagas.to_string(), &start_ms.to_string()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("start a worker process")
        })
        .collect();
    let mut last_end = 0u64;
    for worker in workers {
        let out = tokio::task::spawn_blocking(move || worker.wait_with_output()).await.expect("join").expect("worker");
        assert!(out.status.success(), "a worker process failed: {}", out.status);
        let end: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the worker's end time");
        last_end = last_end.max(end);
    }
    (processes * (sagas / 64 * 64)) as f64 / ((last_end - start_ms) as f64 / 1e3)
}

/// One process of [`postgres_processes`]: opens its store, waits for the
/// agreed start, runs `sagas` with 64 in flight, prints its end time (ms
/// since the epoch).
#[cfg(feature = "postgres")]
async fn postgres_worker(url: &str, sagas: usize, start_ms: u64) {
    let store = Store::open(url).await.expect("store");
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(now()))).await;
    let engine = SagaEngine::builder(store).definition(definition()).max_in_flight(64).build().expect("valid");
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let engine = engine.clone();
        running.spawn(async move {
            for _ in 0..sagas / 64 {
                engine.run("bench", &()).await.expect("completes");
            }
        });
    }
    while let Some(done) = running.join_next().await {
        done.expect("bench task");
    }
    println!("{}", now());
}
