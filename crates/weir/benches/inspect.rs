//! What a dashboard page costs over 100,000 sagas: the queries `weir ui`
//! and `weir sagas list` make (`Store::find_sagas` pages of 50, keyset
//! paged, with and without filters; one saga and its events), timed as
//! p50 / p99 of 50 runs each on a SQLite file (and on PostgreSQL with
//! `WEIR_TEST_POSTGRES_URL`). Issue 16's bar: a page in under 100 ms.
//!
//! `cargo bench -p weir --features postgres --bench inspect`
//! (`WEIR_BENCH_SAGAS` for another count than 100,000).

use std::time::{Duration, Instant};

use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaQuery, SagaStatus, Store};

const RUNS: usize = 50;

fn main() {
    let sagas: usize = std::env::var("WEIR_BENCH_SAGAS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open(dir.path().join("pages.db").to_str().unwrap()).await.unwrap();
        measure("sqlite", sqlite, sagas, None).await;
        if let Ok(admin) = std::env::var("WEIR_TEST_POSTGRES_URL") {
            let url = fresh_postgres(&admin).await;
            measure("postgres", Store::open(&url).await.unwrap(), sagas, Some(&url)).await;
        } else {
            println!("postgres skipped: set WEIR_TEST_POSTGRES_URL");
        }
    });
}

/// A database of its own on the server of `admin` (dropped at the next
/// run's start, not at exit: a bench may be stopped halfway).
async fn fresh_postgres(admin: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    let name = "weir_bench_inspect";
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    format!("{}/{name}", admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(admin))
}

/// Fills `store` with `count` three-step sagas, one in a hundred
/// compensated and one in twenty of a second definition.
async fn fill(store: &Store, count: usize) {
    let step = |name: &'static str| {
        move |ctx: StepContext| async move {
            let n: u64 = ctx.input()?;
            if name == "ship" && n % 100 == 7 { Err(StepError::terminal("no courier")) } else { Ok(n) }
        }
    };
    let undo = |_| async { Ok(()) };
    let definition = |name: &str| {
        SagaDefinition::builder(name)
            .step("reserve", step("reserve"), undo)
            .step("charge", step("charge"), undo)
            .step("ship", step("ship"), undo)
            .build()
            .unwrap()
    };
    let engine = SagaEngine::builder(store.clone())
        .definition(definition("order"))
        .definition(definition("refund"))
        .max_in_flight(256)
        .build()
        .unwrap();
    let mut running = tokio::task::JoinSet::new();
    for n in 0..count as u64 {
        if running.len() >= 256 {
            running.join_next().await.unwrap().unwrap();
        }
        let engine = engine.clone();
        let definition = if n % 20 == 3 { "refund" } else { "order" };
        running.spawn(async move {
            let _ = engine.run_with_id(&format!("saga-{n:07}"), definition, &n).await;
        });
    }
    while let Some(done) = running.join_next().await {
        done.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// Fills `store` and times its pages. On PostgreSQL (`analyze` is its
/// URL) the table is analyzed first, as autovacuum would soon after a
/// bulk load: without statistics the planner guesses a filter's rows.
async fn measure(name: &str, store: Store, count: usize, analyze: Option<&str>) {
    let started = Instant::now();
    fill(&store, count).await;
    println!("{name}: {count} sagas stored in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(url) = analyze {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("ANALYZE weir_sagas").execute(&mut conn).await.unwrap();
    }
    let middle = format!("saga-{:07}", count / 2);
    let pages: Vec<(&str, SagaQuery)> = vec![
        ("first page", SagaQuery::new()),
        ("a page in the middle", SagaQuery::new().after(middle.clone())),
        ("failed only (none)", SagaQuery::new().status(SagaStatus::Failed)),
        ("compensated (1%)", SagaQuery::new().status(SagaStatus::Compensated)),
        ("definition refund (5%)", SagaQuery::new().definition("refund")),
    ];
    println!("{:<28} {:>9} {:>9} {:>6}", "page of 50", "p50 ms", "p99 ms", "rows");
    for (label, query) in pages {
        let mut took = Vec::with_capacity(RUNS);
        let mut rows = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            rows = store.find_sagas(&query).await.unwrap().len();
            took.push(start.elapsed());
        }
        took.sort();
        println!("{label:<28} {:>9.2} {:>9.2} {rows:>6}", percentile(&took, 0.5), percentile(&took, 0.99));
    }
    let mut took = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        store.saga(&middle).await.unwrap().expect("the saga");
        store.saga_events(&middle).await.unwrap();
        took.push(start.elapsed());
    }
    took.sort();
    println!(
        "{:<28} {:>9.2} {:>9.2} {:>6}",
        "one saga and its events",
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        1
    );
}
