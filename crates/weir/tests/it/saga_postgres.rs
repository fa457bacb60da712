//! Sagas on PostgreSQL: the same semantics as SQLite, and several worker
//! processes sharing the work with leases and fencing. Needs
//! `WEIR_TEST_POSTGRES_URL`; without it each test says it was skipped.
#![cfg(all(feature = "postgres", unix))]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::stores::postgres_url;
use sqlx::Row;
use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, Store, StoreError};

const SAGAS: usize = 1000;

#[tokio::test]
async fn a_saga_completes_or_compensates_on_postgres() {
    let Some(url) = postgres_url("a_saga_completes_or_compensates_on_postgres").await else { return };
    let store = Store::open(&url).await.unwrap();
    let def = SagaDefinition::builder("order")
        .step("reserve", |_| async { Ok::<_, StepError>(1) }, |_| async { Ok(()) })
        .step(
            "ship",
            |ctx: StepContext| async move {
                let heavy: bool = ctx.input()?;
                if heavy { Err(StepError::terminal("too heavy")) } else { Ok(()) }
            },
            |_| async { Ok(()) },
        )
        .build()
        .unwrap();
    let engine = SagaEngine::builder(store.clone()).definition(def).build().unwrap();
    let ok = engine.run("order", &false).await.unwrap();
    assert_eq!(store.saga(&ok).await.unwrap().unwrap().status, SagaStatus::Completed);
    let err = engine.run("order", &true).await.unwrap_err();
    assert_eq!(store.saga(err.saga_id()).await.unwrap().unwrap().status, SagaStatus::Compensated);
    assert_eq!(store.sagas(None, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_unreachable_server_gives_a_clear_error_without_the_password() {
    let err = Store::postgres_with_retry("postgres://app:s3cret@127.0.0.1:1/orders", Duration::from_millis(300))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{text}");
    assert!(text.contains("postgres://app:***@127.0.0.1:1/orders") && !text.contains("s3cret"), "{text}");
}

/// A worker process: resumes until every saga is done.
#[test]
fn pg_worker_entry() {
    let Ok(url) = std::env::var("WEIR_PG_WORKER_URL") else { return };
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
        let engine = engine(&url, &std::env::var("WEIR_PG_WORKER_ID").unwrap()).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            engine.resume().await.expect("resume");
            let active = engine.store().sagas(Some(SagaStatus::Running), 1).await.unwrap().len()
                + engine.store().sagas(Some(SagaStatus::Compensating), 1).await.unwrap().len();
            if active == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("work left after 60 s");
    });
}

async fn engine(url: &str, worker: &str) -> SagaEngine {
    let store = Store::open(url).await.unwrap();
    let effects = sqlx::PgPool::connect(url).await.unwrap();
    let mut def = SagaDefinition::builder("transfer");
    for step in ["debit", "credit", "notify"] {
        let effects = effects.clone();
        def = def.step_without_compensation(step, move |ctx: StepContext| {
            let effects = effects.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                let key = ctx.idempotency_key();
                let mut tx = effects.begin().await?;
                let applied = sqlx::query("INSERT INTO effects (key) VALUES ($1) ON CONFLICT DO NOTHING")
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if applied == 1 {
                    sqlx::query("INSERT INTO effect_log (key) VALUES ($1)").bind(&key).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok::<_, StepError>(())
            }
        });
    }
    SagaEngine::builder(store)
        .definition(def.build().unwrap())
        .worker_id(worker)
        .lease(Duration::from_secs(1))
        .max_in_flight(16)
        .build()
        .unwrap()
}

/// 4 worker processes share 1000 sagas; 2 are SIGKILLed mid-run; the other
/// two take over their sagas when the leases expire. Every saga completes,
/// and no step's effect is applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_share_1000_sagas_and_two_are_killed_mid_run() {
    let Some(url) = postgres_url("four_workers_share_1000_sagas_and_two_are_killed_mid_run").await else { return };
    let submitter = engine(&url, "submitter").await;
    let effects = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE effects (key TEXT PRIMARY KEY)").execute(&effects).await.unwrap();
    sqlx::query("CREATE TABLE effect_log (key TEXT NOT NULL)").execute(&effects).await.unwrap();
    for n in 0..SAGAS {
        assert!(submitter.submit(&format!("t-{n}"), "transfer", &n).await.unwrap());
    }
    let started = Instant::now();
    let mut workers: Vec<_> = (0..4)
        .map(|w| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "saga_postgres::pg_worker_entry", "--nocapture", "--test-threads=1"])
                .env("WEIR_PG_WORKER_URL", &url)
                .env("WEIR_PG_WORKER_ID", format!("worker-{w}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let done = |store: &Store| {
        let store = store.clone();
        async move { store.sagas(Some(SagaStatus::Completed), SAGAS).await.unwrap().len() }
    };
    while done(submitter.store()).await < SAGAS / 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    workers[0].kill().unwrap();
    workers[1].kill().unwrap();
    let at_kill = done(submitter.store()).await;
    assert!(at_kill < SAGAS, "the kill happened mid-run ({at_kill} done)");
    for worker in &mut workers[2..] {
        assert!(worker.wait().unwrap().success(), "a surviving worker finished the work");
    }
    let _ = workers[0].wait();
    let _ = workers[1].wait();
    assert_eq!(done(submitter.store()).await, SAGAS, "every saga completed");
    let doubles: i64 =
        sqlx::query("SELECT COUNT(*) FROM (SELECT key FROM effect_log GROUP BY key HAVING COUNT(*) > 1) d")
            .fetch_one(&effects)
            .await
            .unwrap()
            .get(0);
    let applied: i64 = sqlx::query("SELECT COUNT(*) FROM effects").fetch_one(&effects).await.unwrap().get(0);
    println!(
        "1000 sagas over 4 workers, 2 killed at {at_kill} done; finished in {:?}; effects {applied}, applied twice {doubles}",
        started.elapsed()
    );
    assert_eq!(applied as usize, SAGAS * 3);
    assert_eq!(doubles, 0);
}

#[tokio::test]
async fn cursors_and_dead_letters_are_durable_on_postgres() {
    use weir::durable::dlq::{DeadLetterQueue, Envelope};
    let Some(url) = postgres_url("cursors_and_dead_letters_are_durable_on_postgres").await else { return };
    {
        let store = Store::open(&url).await.unwrap();
        store.save_cursor("orders", &serde_json::json!(1234)).await.unwrap();
        let queue = store.dead_letters::<String>("lines");
        let mut envelope = Envelope::new("{bad json".to_string(), "parse", 1);
        envelope.error_chain = vec!["expected value at line 1".into()];
        queue.push(envelope).await.unwrap();
    }
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.cursor("orders").await.unwrap(), Some(serde_json::json!(1234)));
    let queue = store.dead_letters::<String>("lines");
    let parked = queue.drain().await.unwrap();
    assert_eq!((parked[0].item.as_str(), parked[0].error_chain[0].as_str()), ("{bad json", "expected value at line 1"));
    assert_eq!(queue.count().await.unwrap(), 0);
}
