//! Behaviour of `weir::durable::saga` on the memory and SQLite stores (seed tasks 11
//! and 12).
#![cfg(feature = "sqlite")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::stores;
use serde::{Deserialize, Serialize};
use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, StepStatus, Store, StoreError};
use weir::error::find;
use weir::policy::Stack;
use weir::policy::breaker::{Breaker, CircuitOpen};
use weir::policy::retry::{Jitter, RetryPolicy};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: u32,
    cents: u64,
}

type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .initial_delay(Duration::from_millis(1))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

/// Seed task 11: three steps; step 3 fails; compensators 2 and 1 run in
/// reverse; compensator 1 fails too, and both errors are reported.
fn seed_saga(log: &Log, fail_compensation_1: bool) -> SagaDefinition {
    let (l1, l1u, l2, l2u) = (log.clone(), log.clone(), log.clone(), log.clone());
    SagaDefinition::builder("order")
        .step(
            "reserve",
            move |ctx: StepContext| {
                note(&l1, format!("reserve {}", ctx.idempotency_key()));
                async { Ok::<_, StepError>(serde_json::json!({"reservation": 7})) }
            },
            move |ctx: StepContext| {
                note(&l1u, format!("release {}", ctx.idempotency_key()));
                async move {
                    if fail_compensation_1 {
                        Err(StepError::terminal("inventory service refused the release"))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .step(
            "charge",
            move |ctx: StepContext| {
                let reservation: serde_json::Value = ctx.output("reserve").unwrap();
                note(&l2, format!("charge with reservation {}", reservation["reservation"]));
                async { Ok::<_, StepError>(42) }
            },
            move |_| {
                note(&l2u, "refund");
                async { Ok(()) }
            },
        )
        .step(
            "ship",
            |ctx: StepContext| async move {
                let order: Order = ctx.input()?;
                if order.cents > 1000 { Err(StepError::terminal("no courier for heavy orders")) } else { Ok(()) }
            },
            |_| async { Ok(()) },
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn step_3_fails_and_steps_2_and_1_are_compensated_in_reverse() {
    let log = Log::default();
    let store = Store::memory();
    let engine = SagaEngine::builder(store.clone()).definition(seed_saga(&log, false)).build().unwrap();
    let err = engine.run("order", &Order { id: 1, cents: 5000 }).await.unwrap_err();
    assert!(err.is_compensated(), "{err}");
    assert_eq!(err.failed_step(), Some("ship"));
    assert_eq!(err.cause().unwrap().to_string(), "no courier for heavy orders");
    let log = log.lock().unwrap().clone();
    let id = err.saga_id();
    assert_eq!(
        log,
        [
            format!("reserve {id}/reserve"),
            "charge with reservation 7".into(),
            "refund".into(),
            format!("release {id}/reserve/undo")
        ]
    );
    let record = store.saga(id).await.unwrap().unwrap();
    assert_eq!(record.status, SagaStatus::Compensated);
    let steps: Vec<StepStatus> = record.steps.iter().map(|s| s.status).collect();
    assert_eq!(steps, [StepStatus::Compensated, StepStatus::Compensated, StepStatus::Failed]);
}

#[tokio::test]
async fn a_failing_compensation_is_collected_with_the_original_cause() {
    let log = Log::default();
    let store = Store::memory();
    let engine = SagaEngine::builder(store.clone())
        .definition(seed_saga(&log, true))
        .compensation_retry(fast_retry(2))
        .build()
        .unwrap();
    let err = engine.run("order", &Order { id: 2, cents: 5000 }).await.unwrap_err();
    assert!(err.is_failed());
    let compensations = err.compensation_errors().unwrap();
    assert_eq!(compensations.len(), 1);
    assert!(err.to_string().contains("no courier") && err.to_string().contains("refused the release"), "{err}");
    let record = store.saga(err.saga_id()).await.unwrap().unwrap();
    assert_eq!(record.status, SagaStatus::Failed);
    assert_eq!(record.steps[0].status, StepStatus::CompensationFailed);
    assert_eq!(record.steps[0].compensation_attempts, 1, "terminal compensation errors are not retried");
}

#[tokio::test]
async fn a_completed_saga_keeps_every_output_and_attempt() {
    let store = Store::memory();
    let engine = SagaEngine::builder(store.clone()).definition(seed_saga(&Log::default(), false)).build().unwrap();
    let id = engine.run("order", &Order { id: 3, cents: 10 }).await.unwrap();
    let record = store.saga(&id).await.unwrap().unwrap();
    assert_eq!(record.status, SagaStatus::Completed);
    assert_eq!(record.steps[1].output, Some(serde_json::json!(42)));
    assert!(record.steps.iter().all(|s| s.status == StepStatus::Done && s.attempts == 1));
    assert_eq!(record.input, serde_json::json!({"id": 3, "cents": 10}));
}

#[tokio::test]
async fn retryable_step_failures_are_retried_and_counted() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let flaky = SagaDefinition::builder("flaky")
        .step_without_compensation("call", move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(StepError::retryable("timeout")) } else { Ok(()) } }
        })
        .build()
        .unwrap();
    let store = Store::memory();
    let engine = SagaEngine::builder(store.clone()).definition(flaky).step_retry(fast_retry(3)).build().unwrap();
    let id = engine.run("flaky", &()).await.unwrap();
    assert_eq!(store.saga(&id).await.unwrap().unwrap().steps[0].attempts, 3);
}

/// Saga steps go through a policy stack: a breaker of the `charge` step
/// alone (shared by every saga of the definition) opens after two failed
/// attempts; the next saga's charge is refused with `CircuitOpen` without
/// calling the provider, not retried, and its reservation (which ran
/// through the engine's policies, not the breaker) is compensated.
#[tokio::test]
async fn saga_steps_go_through_the_engines_policy_stack() {
    let charges = Arc::new(AtomicU32::new(0));
    let c = charges.clone();
    let breaker = Breaker::builder().name("provider").consecutive_failures(2).build().unwrap();
    let charge_policies = Stack::builder().retry(fast_retry(2)).breaker(breaker.clone()).build().unwrap();
    let payment = SagaDefinition::builder("payment")
        .step("reserve", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
        .step_without_compensation("charge", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(StepError::retryable("provider down")) }
        })
        .step_policies("charge", charge_policies)
        .build()
        .unwrap();
    let store = Store::memory();
    let engine_policies = Stack::builder().retry(fast_retry(3)).build().unwrap();
    let engine = SagaEngine::builder(store.clone()).definition(payment).step_policies(engine_policies).build().unwrap();
    let first = engine.run("payment", &1).await.unwrap_err();
    assert!(first.is_compensated() && first.to_string().contains("provider down"), "{first}");
    assert_eq!(charges.load(Ordering::SeqCst), 2, "two attempts, both failed: the breaker opens");
    let second = engine.run("payment", &2).await.unwrap_err();
    assert!(second.is_compensated(), "{second}");
    let open = find::<CircuitOpen>(second.cause().unwrap()).expect("refused by the breaker");
    assert_eq!(open.breaker(), "provider");
    assert_eq!(charges.load(Ordering::SeqCst), 2, "the open breaker kept the provider from being called");
    let record = store.saga(second.saga_id()).await.unwrap().unwrap();
    assert_eq!(record.steps[1].attempts, 1, "an open circuit is not retried: {record:?}");
    assert_eq!(record.steps[0].compensation_attempts, 1, "the reservation was released");
    let unknown = SagaDefinition::builder("p")
        .step_without_compensation("a", |_| async { Ok::<_, StepError>(()) })
        .step_policies("b", Stack::default())
        .build()
        .unwrap_err();
    assert_eq!(unknown.setting(), "saga step_policies");
}

/// A panic in a step is a terminal failure (never retried): the completed
/// steps are compensated and the error names the panic. A panic in a
/// compensation is a failed compensation: the saga ends `failed`.
#[tokio::test]
async fn a_panicking_step_is_compensated_and_a_panicking_compensation_fails_the_saga() {
    let log = Log::default();
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    let definition = |name: &str, panic_in_undo: bool| {
        let (l1, l2, l3) = (l1.clone(), l2.clone(), l3.clone());
        SagaDefinition::builder(name)
            .step(
                "reserve",
                move |_| {
                    note(&l1, "reserve");
                    async { Ok::<_, StepError>(()) }
                },
                move |_| {
                    note(&l2, "release");
                    assert!(!panic_in_undo, "release exploded");
                    async { Ok(()) }
                },
            )
            .step_without_compensation("charge", move |_| {
                note(&l3, "charge");
                async { panic!("card reader exploded") as Result<(), StepError> }
            })
            .build()
            .unwrap()
    };
    let store = Store::memory();
    let engine = SagaEngine::builder(store.clone())
        .definition(definition("undo-ok", false))
        .definition(definition("undo-panics", true))
        .step_retry(fast_retry(5))
        .compensation_retry(fast_retry(5))
        .build()
        .unwrap();

    let err = engine.run("undo-ok", &()).await.unwrap_err();
    assert!(err.is_compensated(), "{err}");
    assert_eq!(err.failed_step(), Some("charge"));
    let panic = find::<weir::error::Panicked>(err.cause().unwrap()).expect("the cause is the panic");
    assert_eq!(panic.message(), "card reader exploded");
    assert_eq!(*log.lock().unwrap(), ["reserve", "charge", "release"], "the panic is not retried");
    let record = store.saga(err.saga_id()).await.unwrap().unwrap();
    assert_eq!(record.status, SagaStatus::Compensated);
    assert_eq!(record.steps[1].attempts, 1);

    log.lock().unwrap().clear();
    let err = engine.run("undo-panics", &()).await.unwrap_err();
    assert!(err.is_failed(), "{err}");
    assert!(err.to_string().contains("release exploded"), "{err}");
    let record = store.saga(err.saga_id()).await.unwrap().unwrap();
    assert_eq!(record.status, SagaStatus::Failed);
    assert_eq!(record.steps[0].status, StepStatus::CompensationFailed);
    assert_eq!(record.steps[0].compensation_attempts, 1, "a panicking compensation is not retried");
}

/// A step that never returns is bounded by the step timeout: each attempt
/// times out, is retried, and the saga compensates in the end.
#[tokio::test(start_paused = true)]
async fn a_hanging_step_times_out_is_retried_and_compensated() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let definition = SagaDefinition::builder("hangs")
        .step("first", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
        .step_without_compensation("stuck", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), StepError>>()
        })
        .build()
        .unwrap();
    let store = Store::memory();
    let engine = SagaEngine::builder(store.clone())
        .definition(definition)
        .step_retry(fast_retry(3))
        .step_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = engine.run("hangs", &()).await.unwrap_err();
    assert!(err.is_compensated(), "{err}");
    let timed_out = find::<weir::error::TimedOut>(err.cause().unwrap()).expect("the cause is the timeout");
    assert_eq!(timed_out.after(), Duration::from_secs(5));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() >= Duration::from_secs(15) && started.elapsed() < Duration::from_secs(16));
    let record = store.saga(err.saga_id()).await.unwrap().unwrap();
    assert_eq!(record.steps[0].status, StepStatus::Compensated);

    let zero = SagaEngine::builder(Store::memory()).step_timeout(Duration::ZERO).build().unwrap_err();
    assert!(zero.to_string().contains("step_timeout"), "{zero}");
}

/// A one-step definition `once` and how often its step ran.
fn counting_saga() -> (Arc<AtomicU32>, SagaDefinition) {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let once = SagaDefinition::builder("once")
        .step_without_compensation("effect", move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, StepError>(()) }
        })
        .build()
        .unwrap();
    (calls, once)
}

#[tokio::test]
async fn starting_with_a_known_id_is_idempotent() {
    let (calls, once) = counting_saga();
    let engine = SagaEngine::builder(Store::memory()).definition(once).build().unwrap();
    assert_eq!(engine.run_with_id("order-9", "once", &()).await.unwrap(), "order-9");
    assert_eq!(engine.run_with_id("order-9", "once", &()).await.unwrap(), "order-9");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the second start found it completed");
}

/// A second start of one id with another input is refused, never merged
/// into the first (before, it returned the first saga's outcome as its own).
#[tokio::test]
async fn starting_a_known_id_with_another_input_is_a_conflict() {
    let (calls, once) = counting_saga();
    let (sqlite, _dir) = stores::sqlite().await;
    for store in [Store::memory(), sqlite] {
        calls.store(0, Ordering::SeqCst);
        let engine = SagaEngine::builder(store.clone()).definition(once.clone()).build().unwrap();
        let first = Order { id: 9, cents: 500 };
        engine.run_with_id("order-9", "once", &first).await.unwrap();
        let err = engine.run_with_id("order-9", "once", &Order { id: 9, cents: 600 }).await.unwrap_err();
        assert_eq!(err.conflicting_input(), Some(&serde_json::to_value(&first).unwrap()), "{err}");
        let text = err.to_string();
        assert!(text.contains(r#"exists as once {"cents":500,"id":9}"#), "names the stored input: {text}");
        assert!(text.contains(r#"asked for once {"cents":600,"id":9}"#), "and the request's: {text}");
        assert!(!err.is_compensated() && !err.is_failed() && !err.is_lease_lost());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "nothing ran for the conflicting start");
        assert_eq!(store.saga("order-9").await.unwrap().unwrap().input, serde_json::to_value(&first).unwrap());
    }
}

/// Seed task 12 within one test: the process "dies" inside step 2 (the
/// task driving the saga is aborted); a new engine on the same SQLite file
/// resumes it: step 1 is not run again (its transition was durable), step
/// 2 is (at-least-once), with the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_interrupted_inside_a_step_resumes_from_its_last_transition() {
    let (store, _dir) = stores::sqlite().await;
    let log = Log::default();
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let definition = |log: Log, hang: Arc<std::sync::atomic::AtomicBool>| {
        let l1 = log.clone();
        SagaDefinition::builder("two-steps")
            .step_without_compensation("first", move |ctx: StepContext| {
                note(&l1, format!("first {}", ctx.idempotency_key()));
                async { Ok::<_, StepError>(()) }
            })
            .step_without_compensation("second", move |ctx: StepContext| {
                note(&log, format!("second {}", ctx.idempotency_key()));
                let hang = hang.load(Ordering::SeqCst);
                async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, StepError>(())
                }
            })
            .build()
            .unwrap()
    };
    let first = SagaEngine::builder(store.clone())
        .definition(definition(log.clone(), hang.clone()))
        .worker_id("w1")
        .build()
        .unwrap();
    let running = tokio::spawn(async move { first.run_with_id("s-1", "two-steps", &()).await });
    while log.lock().unwrap().len() < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    running.abort(); // dies inside step 2
    let _ = running.await;
    assert_eq!(store.saga("s-1").await.unwrap().unwrap().steps[0].status, StepStatus::Done);

    hang.store(false, Ordering::SeqCst);
    let second =
        SagaEngine::builder(store.clone()).definition(definition(log.clone(), hang)).worker_id("w1").build().unwrap();
    let report = second.resume().await.unwrap();
    assert_eq!((report.resumed, report.completed), (1, 1));
    assert_eq!(*log.lock().unwrap(), ["first s-1/first", "second s-1/second", "second s-1/second"]);
    assert_eq!(store.saga("s-1").await.unwrap().unwrap().status, SagaStatus::Completed);
}

#[tokio::test]
async fn a_saga_whose_definition_is_not_registered_is_kept_and_reported() {
    let (store, _dir) = stores::sqlite().await;
    let hanging = SagaDefinition::builder("legacy")
        .step_without_compensation("wait", |_| async {
            std::future::pending::<()>().await;
            Ok::<_, StepError>(())
        })
        .build()
        .unwrap();
    let old = SagaEngine::builder(store.clone()).definition(hanging).worker_id("w").build().unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(50), old.run_with_id("legacy-1", "legacy", &())).await;
    let other = SagaDefinition::builder("other")
        .step_without_compensation("x", |_| async { Ok::<_, StepError>(()) })
        .build()
        .unwrap();
    let new = SagaEngine::builder(store.clone()).definition(other).worker_id("w").build().unwrap();
    let report = new.resume().await.unwrap();
    assert_eq!(report.unknown_definitions, [("legacy-1".to_string(), "legacy".to_string())]);
    assert_eq!(report.resumed, 0);
    assert_eq!(store.saga("legacy-1").await.unwrap().unwrap().status, SagaStatus::Running, "kept as it was");
}

#[tokio::test]
async fn bad_definitions_and_settings_are_configuration_errors() {
    assert_eq!(SagaDefinition::builder("empty").build().unwrap_err().setting(), "saga steps");
    let dup = SagaDefinition::builder("dup")
        .step_without_compensation("a", |_| async { Ok::<_, StepError>(()) })
        .step_without_compensation("a", |_| async { Ok::<_, StepError>(()) })
        .build()
        .unwrap_err();
    assert_eq!(dup.setting(), "saga step name");
    assert!(SagaEngine::builder(Store::memory()).max_in_flight(0).build().is_err());
    let engine = SagaEngine::builder(Store::memory()).build().unwrap();
    let err = engine.run("nope", &()).await.unwrap_err();
    assert_eq!(err.unknown_definition(), Some("nope"));
}

#[tokio::test]
async fn the_sqlite_file_is_private_and_foreign_or_newer_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    drop(store);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
    let err = Store::open(garbage.to_str().unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("garbage.db") && err.to_string().contains("move it aside"), "{err}");

    let foreign = dir.path().join("foreign.db");
    {
        use sqlx::Connection;
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", foreign.display())).await.unwrap();
        sqlx::query("CREATE TABLE invoices (id INTEGER)").execute(&mut conn).await.unwrap();
    }
    let err = Store::open(foreign.to_str().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("invoices"), "{err}");

    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'future', 1, x'00', 0)")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let err = Store::open(path.to_str().unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade weir"));
}

/// A saga row that does not decode (a status this build does not know,
/// steps that are not JSON) is an error naming the saga and the column,
/// never a default.
#[tokio::test]
async fn a_corrupt_saga_row_is_an_error_naming_the_saga_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    let engine = SagaEngine::builder(store.clone()).definition(seed_saga(&Log::default(), false)).build().unwrap();
    let err = engine.run("order", &Order { id: 1, cents: 5000 }).await.unwrap_err();
    let id = err.saga_id().to_owned();
    assert!(store.saga(&id).await.unwrap().is_some());

    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("UPDATE weir_sagas SET status = 'paused' WHERE id = ?1").bind(&id).execute(&mut conn).await.unwrap();
    let err = store.saga(&id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&id) && err.to_string().contains("unknown status \"paused\""), "{err}");

    sqlx::query("UPDATE weir_sagas SET status = 'failed', steps = 'not json' WHERE id = ?1")
        .bind(&id)
        .execute(&mut conn)
        .await
        .unwrap();
    let err = store.sagas(None, 10).await.unwrap_err();
    assert!(err.to_string().contains(&format!("saga {id}: steps")), "{err}");
}

/// Many openers of one new SQLite file at once (processes starting
/// together) all get a migrated store: the migration runs once, under the
/// file's write lock (before, two migrated at once and one failed with
/// "table already exists").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_of_one_sqlite_file_all_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.db").to_str().unwrap().to_owned();
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { Store::open(&path).await })
            })
            .collect();
        for open in opens {
            let store = open.await.unwrap().expect("every concurrent first open succeeds");
            assert!(store.sagas(None, 1).await.unwrap().is_empty());
        }
    }
}

#[tokio::test]
async fn dead_letters_survive_a_reopen_and_replay() {
    use weir::durable::dlq::{DeadLetterQueue, Envelope};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db");
    {
        let store = Store::open(path.to_str().unwrap()).await.unwrap();
        let queue = store.dead_letters::<Order>("orders");
        let mut envelope = Envelope::new(Order { id: 5, cents: 1 }, "charge", 3);
        envelope.error_chain = vec!["card declined".into()];
        envelope.tenant = Some("acme".into());
        assert_eq!(queue.push(envelope).await.unwrap(), 1);
    }
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    let queue = store.dead_letters::<Order>("orders");
    let listed = queue.list().await.unwrap();
    assert_eq!(listed[0].item, Order { id: 5, cents: 1 });
    assert_eq!((listed[0].attempts, listed[0].tenant.as_deref()), (3, Some("acme")));
    assert_eq!(queue.drain().await.unwrap().len(), 1);
    assert_eq!(queue.count().await.unwrap(), 0);
    assert!(find::<StoreError>(&StoreError::Closed).is_some());
}

/// A definition whose one step hangs while `hang` is set.
fn hanging_saga(hang: Arc<std::sync::atomic::AtomicBool>, runs: Arc<AtomicU32>) -> SagaDefinition {
    SagaDefinition::builder("order")
        .step(
            "charge",
            move |_| {
                let (hang, runs) = (hang.clone(), runs.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    if hang.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, StepError>(())
                }
            },
            |_| async { Ok(()) },
        )
        .build()
        .unwrap()
}

/// An engine of worker `worker` running [`hanging_saga`] with 1 s leases.
fn short_lease_engine(
    store: &Store,
    hang: &Arc<std::sync::atomic::AtomicBool>,
    runs: &Arc<AtomicU32>,
    worker: &str,
) -> SagaEngine {
    SagaEngine::builder(store.clone())
        .definition(hanging_saga(hang.clone(), runs.clone()))
        .lease(Duration::from_secs(1))
        .worker_id(worker)
        .build()
        .unwrap()
}

async fn wait_until_none_active(store: &Store, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        let running = store.sagas(Some(SagaStatus::Running), 1000).await.unwrap();
        if running.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A worker dies holding sagas: a live worker that keeps running takes
/// them over once their leases expire, without anyone calling `resume`
/// (before, only a `resume` at start claimed them, and they stayed stuck).
/// And a saga whose `run` future was dropped is no longer renewed by its
/// own engine: it expires and is taken over too (the heartbeat renewed
/// every saga of the owner before, so it stayed stuck while the engine
/// lived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_worker_takes_over_expired_sagas_while_it_runs() {
    let (sqlite, _dir) = stores::sqlite().await;
    for store in [Store::memory(), sqlite] {
        let (hang, runs) = (Arc::new(std::sync::atomic::AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
        let engine = |worker: &str| short_lease_engine(&store, &hang, &runs, worker);
        let (dying, live) = (engine("dying"), engine("live"));
        let mut held = Vec::new();
        for i in 0..5 {
            let dying = dying.clone();
            held.push(tokio::spawn(async move { dying.run_with_id(&format!("dead-{i}"), "order", &i).await }));
        }
        let orphan = {
            let live = live.clone();
            tokio::spawn(async move { live.run_with_id("orphan", "order", &9).await })
        };
        while runs.load(Ordering::SeqCst) < 6 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The dying worker stops; the live one drops the future of one run.
        for task in held {
            task.abort();
        }
        drop(dying);
        orphan.abort();
        hang.store(false, Ordering::SeqCst);
        assert!(
            wait_until_none_active(&store, Duration::from_secs(10)).await,
            "{} saga(s) still running on {}",
            store.sagas(Some(SagaStatus::Running), 100).await.unwrap().len(),
            store.target()
        );
        assert_eq!(live.reclaimed(), 6, "{}", store.target());
        for saga in store.sagas(None, 100).await.unwrap() {
            assert_eq!(saga.status, SagaStatus::Completed, "{}", saga.id);
            assert_eq!(saga.lease_owner.as_deref(), Some("live"), "{}", saga.id);
        }
    }
}

/// A budgeted step retry pays into its budget with each first attempt, so
/// a step that fails once is retried on a budget with no reserve (before,
/// saga steps never deposited: they could only spend the reserve, and this
/// saga was compensated).
#[tokio::test(start_paused = true)]
async fn a_saga_step_retry_pays_into_its_budget() {
    let budget = Arc::new(weir::policy::retry::RetryBudget::new(1.0, 0));
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(1))
        .jitter(Jitter::None)
        .budget(budget.clone())
        .build()
        .unwrap();
    let failures = Arc::new(AtomicU32::new(0));
    let f = failures.clone();
    let flaky = SagaDefinition::builder("flaky")
        .step_without_compensation("call", move |_| {
            let first = f.fetch_add(1, Ordering::SeqCst) == 0;
            async move { if first { Err(StepError::retryable("timed out")) } else { Ok(()) } }
        })
        .build()
        .unwrap();
    let engine = SagaEngine::builder(Store::memory()).definition(flaky).step_retry(policy).build().unwrap();
    engine.run("flaky", &()).await.expect("the retry was paid for by the first attempt");
    assert_eq!(failures.load(Ordering::SeqCst), 2, "one failure, one retry");
    assert!(!budget.try_withdraw(), "the one deposit bought exactly the one retry");
}

/// A worker "dying" starts `n` sagas `left-{i}` of [`hanging_saga`] and
/// dies inside their first step; returns once their leases expired, with
/// the step no longer hanging.
async fn leave_expired_sagas(store: &Store, hang: &Arc<std::sync::atomic::AtomicBool>, runs: &Arc<AtomicU32>, n: u32) {
    let dying = short_lease_engine(store, hang, runs, "dying");
    let before = runs.load(Ordering::SeqCst);
    let held: Vec<_> = (0..n)
        .map(|i| {
            let dying = dying.clone();
            tokio::spawn(async move { dying.run_with_id(&format!("left-{i}"), "order", &i).await })
        })
        .collect();
    while runs.load(Ordering::SeqCst) < before + n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held.iter().for_each(|t| t.abort());
    drop(dying);
    hang.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await; // the leases expire
}

/// `resume` returns only once the sagas its engine's heartbeat took over
/// meanwhile have ended too (before, a `weir resume` process could exit
/// with them cut off mid-way, left in progress under its lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_waits_for_the_sagas_taken_over_in_the_background() {
    let store = Store::memory();
    let (hang, runs) = (Arc::new(std::sync::atomic::AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
    let engine = |worker: &str| short_lease_engine(&store, &hang, &runs, worker);
    leave_expired_sagas(&store, &hang, &runs, 5).await;
    let live = engine("live");
    live.run_with_id("quick", "order", &9).await.unwrap(); // its heartbeat takes the five over
    live.resume().await.unwrap();
    let left = store.sagas(Some(SagaStatus::Running), 100).await.unwrap();
    assert!(left.is_empty(), "still running after resume: {:?}", left.iter().map(|s| &s.id).collect::<Vec<_>>());
    assert_eq!(store.sagas(Some(SagaStatus::Completed), 100).await.unwrap().len(), 6);
}

/// `resume` and the engine's own background take-over never claim the
/// same saga twice: the heartbeat's first tick (at the start of `resume`)
/// claims expired sagas while `resume` claims too, and before, `resume`'s
/// claim took the heartbeat's fresh claims again as "its own, not driven":
/// the second claim's fence made the first drive's writes stale, and those
/// sagas were left in progress (a `weir resume` found by CI: 58 of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_and_the_background_take_over_never_claim_one_saga_twice() {
    let (sqlite, _dir) = stores::sqlite().await;
    for store in [sqlite, Store::memory()] {
        let (hang, runs) = (Arc::new(std::sync::atomic::AtomicBool::new(true)), Arc::new(AtomicU32::new(0)));
        leave_expired_sagas(&store, &hang, &runs, 40).await;
        let live = short_lease_engine(&store, &hang, &runs, "live");
        let report = live.resume().await.unwrap();
        let left = store.sagas(Some(SagaStatus::Running), 100).await.unwrap();
        assert!(
            left.is_empty(),
            "{} still running after resume on {} ({report:?}, {} taken over in the background)",
            left.len(),
            store.target(),
            live.reclaimed()
        );
        assert_eq!(report.lease_lost, 0, "{report:?}");
        assert_eq!(report.resumed + live.reclaimed(), 40, "each saga driven once: {report:?}");
        assert_eq!(store.sagas(Some(SagaStatus::Completed), 100).await.unwrap().len(), 40);
    }
}

/// Ids `run` makes are 32 hex digits, unique, and sort in the order the
/// sagas started (a time prefix: a store's id index takes new sagas on its
/// last page).
#[tokio::test]
async fn generated_saga_ids_are_unique_and_sort_by_start() {
    let def = SagaDefinition::builder("noop")
        .step_without_compensation("only", |_| async { Ok::<_, StepError>(()) })
        .build()
        .unwrap();
    let engine = SagaEngine::builder(Store::memory()).definition(def).build().unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(engine.run("noop", &()).await.unwrap());
        std::thread::sleep(Duration::from_millis(2)); // a new millisecond
    }
    for id in &ids {
        assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "unique and in start order");
}
