//! Looking at a store from outside its application (what the `weir`
//! command does): sagas by filter and page, a failed saga's compensations
//! retried, dead-letter queues, letters marked for replay, cursors. The
//! same checks on memory, SQLite and (with `WEIR_TEST_POSTGRES_URL`)
//! PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::json;
use weir::durable::dlq::{DeadLetterQueue, Envelope};
use weir::durable::saga::{SagaDefinition, SagaEngine, StepError};
use weir::durable::store::{LetterQuery, SagaQuery, SagaStatus, StepStatus, Store, StoreError};
use weir::policy::Stack;

/// Runs `check` on every store this build and machine have.
async fn on_every_store<F, Fut>(test: &str, check: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    check(Store::memory()).await;
    let (store, _dir) = crate::support::stores::sqlite().await;
    check(store).await;
    #[cfg(feature = "postgres")]
    if let Some(url) = crate::support::stores::postgres_url(test).await {
        check(Store::open(&url).await.unwrap()).await;
    }
    let _ = test;
}

/// An engine with an `order` saga (its `ship` step fails for input
/// `"fail"`) and a `refund` saga; `reserve`'s compensation fails while
/// `undo_fails` is set.
fn engine(store: &Store, undo_fails: Arc<AtomicBool>) -> SagaEngine {
    let order = SagaDefinition::builder("order")
        .step(
            "reserve",
            |_| async { Ok::<_, StepError>(1) },
            move |_| {
                let fails = undo_fails.load(Ordering::SeqCst);
                async move { if fails { Err(StepError::terminal("warehouse down")) } else { Ok(()) } }
            },
        )
        .step(
            "ship",
            |ctx: weir::durable::saga::StepContext| async move {
                let input: String = ctx.input()?;
                if input == "fail" { Err(StepError::terminal("no courier")) } else { Ok(()) }
            },
            |_| async { Ok(()) },
        )
        .build()
        .unwrap();
    let refund = SagaDefinition::builder("refund")
        .step("pay_back", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
        .build()
        .unwrap();
    SagaEngine::builder(store.clone())
        .definition(order)
        .definition(refund)
        .compensation_policies(Stack::default())
        // Sagas are resumed when the test says, not by the background
        // take-over (which would race the test's checks).
        .reclaim_expired(false)
        .build()
        .unwrap()
}

#[tokio::test]
async fn sagas_are_found_by_status_definition_and_time_a_page_at_a_time() {
    on_every_store("sagas_are_found_by_status_definition_and_time_a_page_at_a_time", |store| async move {
        let engine = engine(&store, Arc::new(AtomicBool::new(false)));
        let before = SystemTime::now() - Duration::from_secs(1);
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(engine.run_with_id(&format!("o{i}"), "order", &"ok").await.unwrap());
        }
        engine.run_with_id("o5", "order", &"fail").await.unwrap_err();
        engine.run_with_id("r0", "refund", &"ok").await.unwrap();
        engine.run_with_id("r1", "refund", &json!({"tenant": "acme", "cents": 5})).await.unwrap();

        let all = store.find_sagas(&SagaQuery::new().limit(100)).await.unwrap();
        assert_eq!(all.len(), 8);
        let orders = store.find_sagas(&SagaQuery::new().definition("order")).await.unwrap();
        assert_eq!(orders.len(), 6);
        // A saga's tenant is its input's top-level `tenant`; inputs that are
        // no object, or another tenant's, are left out.
        let acme = store.find_sagas(&SagaQuery::new().tenant("acme")).await.unwrap();
        assert_eq!(acme.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["r1"]);
        assert!(store.find_sagas(&SagaQuery::new().tenant("ok")).await.unwrap().is_empty());
        let compensated = store.find_sagas(&SagaQuery::new().status(SagaStatus::Compensated)).await.unwrap();
        assert_eq!(compensated.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["o5"]);
        let since = store.find_sagas(&SagaQuery::new().updated_since(before)).await.unwrap();
        assert_eq!(since.len(), 8);
        assert!(store.find_sagas(&SagaQuery::new().updated_before(before)).await.unwrap().is_empty());

        // Pages of two, each after the last id of the one before, give
        // every saga once, in the order of one big page.
        let mut paged = Vec::new();
        let mut query = SagaQuery::new().limit(2);
        loop {
            let page = store.find_sagas(&query).await.unwrap();
            let Some(last) = page.last() else { break };
            query = query.after(last.id.clone());
            paged.extend(page.into_iter().map(|s| s.id));
        }
        assert_eq!(paged, all.iter().map(|s| s.id.clone()).collect::<Vec<_>>());

        let err = store.find_sagas(&SagaQuery::new().after("nope")).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }) && err.to_string().contains("saga nope"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_failed_saga_retried_is_compensated_by_the_next_worker() {
    on_every_store("a_failed_saga_retried_is_compensated_by_the_next_worker", |store| async move {
        let undo_fails = Arc::new(AtomicBool::new(true));
        let engine = engine(&store, undo_fails.clone());
        engine.run_with_id("o1", "order", &"fail").await.unwrap_err();
        let failed = store.saga("o1").await.unwrap().unwrap();
        assert_eq!(failed.status, SagaStatus::Failed);
        assert_eq!(failed.steps[0].status, StepStatus::CompensationFailed);

        // Not failed: nothing to retry.
        engine.run_with_id("o2", "order", &"ok").await.unwrap();
        let completed = store.saga("o2").await.unwrap().unwrap();
        assert!(!store.retry_compensations(&completed).await.unwrap());

        assert!(store.retry_compensations(&failed).await.unwrap());
        // The record read before is stale now: a second retry from it is refused.
        assert!(!store.retry_compensations(&failed).await.unwrap());
        let reopened = store.saga("o1").await.unwrap().unwrap();
        assert_eq!(reopened.status, SagaStatus::Compensating);
        assert_eq!((reopened.steps[0].status, reopened.steps[0].compensation_attempts), (StepStatus::Done, 0));

        undo_fails.store(false, Ordering::SeqCst);
        let report = engine.resume().await.unwrap();
        assert_eq!((report.resumed, report.compensated), (1, 1), "{report:?}");
        let done = store.saga("o1").await.unwrap().unwrap();
        assert_eq!(done.status, SagaStatus::Compensated);
        assert_eq!(done.steps[0].status, StepStatus::Compensated);
    })
    .await;
}

#[tokio::test]
async fn dead_letter_queues_are_listed_filtered_and_marked_for_replay() {
    on_every_store("dead_letter_queues_are_listed_filtered_and_marked_for_replay", |store| async move {
        let lines = store.dead_letters::<String>("lines");
        let mut ids = Vec::new();
        for i in 0..5 {
            let mut letter = Envelope::new(format!("line {i}"), if i < 3 { "parse" } else { "charge" }, 1);
            letter.tenant = Some(format!("t{}", i % 2));
            ids.push(lines.push(letter).await.unwrap());
        }
        store.dead_letters::<u32>("batches").push(Envelope::new(7, "flush", 2)).await.unwrap();

        let queues = store.dead_letter_queues().await.unwrap();
        let summary: Vec<(&str, u64)> = queues.iter().map(|q| (q.name.as_str(), q.letters)).collect();
        assert_eq!(summary, [("batches", 1), ("lines", 5)]);
        assert!(queues.iter().all(|q| q.oldest <= q.newest && q.replay_requested == 0));

        // Any queue reads as JSON, whatever its item type.
        let any = store.dead_letters::<serde_json::Value>("lines");
        let t0 = any.find(&LetterQuery::new().tenant("t0")).await.unwrap();
        assert_eq!(
            t0.iter().map(|e| e.item.clone()).collect::<Vec<_>>(),
            [json!("line 0"), json!("line 2"), json!("line 4")]
        );
        assert_eq!(any.find(&LetterQuery::new().stage("charge")).await.unwrap().len(), 2);
        let page = any.find(&LetterQuery::new().after(ids[1]).limit(2)).await.unwrap();
        assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[2], ids[3]]);

        // Marking: only existing ids count; the application finds the marked ones.
        assert_eq!(lines.request_replay(&[ids[1], ids[3], 9999]).await.unwrap(), 2);
        let marked = lines.find(&LetterQuery::new().replay_requested(true)).await.unwrap();
        assert_eq!(marked.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[1], ids[3]]);
        assert!(marked.iter().all(|e| e.replay_requested.is_some()));
        assert_eq!(lines.find(&LetterQuery::new().replay_requested(false)).await.unwrap().len(), 3);
        let queues = store.dead_letter_queues().await.unwrap();
        assert_eq!(queues[1].replay_requested, 2);
        lines.remove(&[ids[1]]).await.unwrap();
        assert_eq!(lines.count().await.unwrap(), 4);
    })
    .await;
}

#[tokio::test]
async fn cursors_are_listed_and_removed() {
    on_every_store("cursors_are_listed_and_removed", |store| async move {
        assert!(store.cursors().await.unwrap().is_empty());
        store.save_cursor("b-file", &json!({"line": 7})).await.unwrap();
        store.save_cursor("a-file", &json!({"line": 1})).await.unwrap();
        let cursors = store.cursors().await.unwrap();
        assert_eq!(cursors.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a-file", "b-file"]);
        assert_eq!(cursors[1].position, json!({"line": 7}));
        assert!(cursors[0].updated_at > SystemTime::now() - Duration::from_secs(60));
        assert!(store.delete_cursor("b-file").await.unwrap());
        assert!(!store.delete_cursor("b-file").await.unwrap());
        assert_eq!(store.cursor("b-file").await.unwrap(), None);
        assert_eq!(store.cursors().await.unwrap().len(), 1);
    })
    .await;
}

/// Runs `sql` with one text bind on the effect's connection, whichever the
/// database (`$1` binds on both).
async fn exec(
    tx: &mut weir::durable::store::Tx,
    sql: &'static str,
    text: String,
) -> Result<u64, weir::error::BoxError> {
    use weir::durable::store::Tx;
    Ok(match tx {
        Tx::Sqlite(conn) => sqlx::query(sql).bind(text).execute(&mut *conn).await?.rows_affected(),
        #[cfg(feature = "postgres")]
        Tx::Postgres(conn) => sqlx::query(sql).bind(text).execute(&mut *conn).await?.rows_affected(),
        #[allow(unreachable_patterns)]
        _ => unreachable!("a database store"),
    })
}

/// An application's writes ride in the store's group commit: their output
/// comes back once committed, many concurrent ones share transactions, and
/// one that fails is rolled back alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_commit_in_the_group_commit_and_fail_alone() {
    let (sqlite, _dir) = crate::support::stores::sqlite().await;
    let mut stores = vec![sqlite];
    #[cfg(feature = "postgres")]
    if let Some(url) = crate::support::stores::postgres_url("effects_commit_in_the_group_commit_and_fail_alone").await {
        stores.push(Store::open(&url).await.unwrap());
    }
    for store in stores {
        let made = store
            .commit_effect(|tx| {
                Box::pin(async move { exec(tx, "CREATE TABLE notes (text TEXT PRIMARY KEY)", String::new()).await })
            })
            .await;
        assert!(made.is_ok(), "{made:?}");
        let before = store.commit_metrics().transactions;
        let writes = (0..200).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .commit_effect(move |tx| {
                        Box::pin(async move { exec(tx, "INSERT INTO notes VALUES ($1)", format!("note {i}")).await })
                    })
                    .await
            })
        });
        for inserted in futures_util::future::join_all(writes).await {
            assert_eq!(inserted.unwrap().unwrap(), 1);
        }
        let transactions = store.commit_metrics().transactions - before;
        assert!(transactions < 200, "200 concurrent effects took {transactions} transactions");

        // A failing effect (a duplicate key, after a write of its own) is
        // rolled back whole; the next one commits.
        let failed = store
            .commit_effect(|tx| {
                Box::pin(async move {
                    exec(tx, "INSERT INTO notes VALUES ($1)", "half done".into()).await?;
                    exec(tx, "INSERT INTO notes VALUES ($1)", "note 7".into()).await
                })
            })
            .await;
        assert!(failed.is_err());
        let count = |text: &'static str| {
            let store = store.clone();
            async move {
                store
                    .commit_effect(move |tx| {
                        Box::pin(
                            async move { exec(tx, "UPDATE notes SET text = text WHERE text = $1", text.into()).await },
                        )
                    })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(count("half done").await, 0, "the failed effect's first write was rolled back");
        assert_eq!(count("note 199").await, 1);
    }
    let err = Store::memory().commit_effect(|_| Box::pin(async { Ok(()) })).await.unwrap_err();
    assert!(err.to_string().contains("memory store runs no SQL"), "{err}");
}

/// The group committer's connection terminated by the server (an
/// operator's `pg_terminate_backend`, a failover): the batch in flight
/// fails, the committer reconnects, and the next writes commit. Before,
/// every write of the process failed from then on.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_store_reconnects_after_its_connections_are_terminated() {
    use sqlx::Connection;
    let test = "the_store_reconnects_after_its_connections_are_terminated";
    let Some(url) = crate::support::stores::postgres_url(test).await else { return };
    let store = Store::open(&url).await.unwrap();
    let select = |store: Store| async move {
        store.commit_effect(|tx| Box::pin(async move { exec(tx, "SELECT 1", String::new()).await })).await
    };
    assert!(select(store.clone()).await.is_ok());
    let name = url.rsplit_once('/').unwrap().1.to_owned();
    let admin_url = std::env::var("WEIR_TEST_POSTGRES_URL").unwrap();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed >= 1, "the committer's connection was there to terminate");
    // The first write may fail (it met the dead connection); then it works.
    let mut results = Vec::new();
    for _ in 0..3 {
        results.push(select(store.clone()).await.map_err(|e| e.to_string()));
    }
    assert!(results[1..].iter().all(Result::is_ok), "{results:?}");
    // Reads through the pool recover too.
    assert!(store.find_sagas(&weir::durable::store::SagaQuery::new()).await.is_ok());
}
