//! Managing sagas: cancel (the running step stopped, every completed step
//! and the interrupted one compensated in reverse, whoever carries it
//! out, across a crash), delete and retention; on memory, SQLite and
//! PostgreSQL.
#![cfg(feature = "sqlite")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::support::stores::{another_handle, every_kind as stores};
use weir::durable::saga::{CancelOutcome, SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, StepStatus, Store, StoreError};

type Log = Arc<Mutex<Vec<String>>>;

/// reserve → charge → ship; `ship` waits until it is dropped (a call
/// that never answers), so a saga sits in it until cancelled.
fn order(log: &Log) -> SagaDefinition {
    let step = |log: &Log, name: &'static str| {
        let log = log.clone();
        move |_: StepContext| {
            log.lock().unwrap().push(name.to_owned());
            async { Ok::<_, StepError>(()) }
        }
    };
    let undo = |log: &Log, name: &'static str| {
        let log = log.clone();
        move |_: StepContext| {
            log.lock().unwrap().push(name.to_owned());
            async { Ok(()) }
        }
    };
    let shipping = log.clone();
    SagaDefinition::builder("order")
        .step("reserve", step(log, "reserve"), undo(log, "release"))
        .step("charge", step(log, "charge"), undo(log, "refund"))
        .step(
            "ship",
            move |_: StepContext| {
                shipping.lock().unwrap().push("ship".to_owned());
                std::future::pending::<Result<(), StepError>>()
            },
            undo(log, "recall"),
        )
        .build()
        .unwrap()
}

fn engine(store: Store, log: &Log, worker: &str) -> SagaEngine {
    SagaEngine::builder(store).definition(order(log)).worker_id(worker).lease(Duration::from_secs(1)).build().unwrap()
}

async fn wait_for(log: &Log, entry: &str) {
    while !log.lock().unwrap().iter().any(|e| e == entry) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A cancel from another process while a live worker sits in `ship`: the
/// worker stops the step at its next heartbeat and compensates it (its
/// effect unknown) and the done steps, in reverse; its caller hears a
/// cancelled, compensated saga.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_cancel_stops_the_running_step_and_compensates_in_reverse() {
    for (store, location, _dir) in stores("saga_cancel_stops_the_running_step_and_compensates_in_reverse").await {
        let log = Log::default();
        let worker = engine(store.clone(), &log, "worker");
        let running = tokio::spawn({
            let worker = worker.clone();
            async move { worker.run_with_id("o-1", "order", &1).await }
        });
        wait_for(&log, "ship").await;

        let operator = engine(another_handle(&store, &location).await, &log, "operator");
        let asked = operator.cancel("o-1", "customer changed their mind").await.unwrap();
        assert!(matches!(&asked, CancelOutcome::Requested { worker } if worker == "worker"), "{asked:?}");
        let error =
            tokio::time::timeout(Duration::from_secs(10), running).await.expect("stopped").unwrap().unwrap_err();
        assert!(error.is_cancelled() && error.is_compensated(), "{error}");
        assert!(error.to_string().contains("cancelled: customer changed their mind"), "{error}");
        assert_eq!(*log.lock().unwrap(), ["reserve", "charge", "ship", "recall", "refund", "release"]);

        let saga = store.saga("o-1").await.unwrap().unwrap();
        assert_eq!(saga.status, SagaStatus::Compensated);
        assert_eq!(saga.cancel_requested.as_deref(), Some("customer changed their mind"));
        assert!(saga.steps.iter().all(|s| s.status == StepStatus::Compensated), "{:?}", saga.steps);
        let again = operator.cancel("o-1", "twice").await.unwrap();
        assert!(matches!(again, CancelOutcome::NotRunning(SagaStatus::Compensated)), "{again:?}");
    }
}

/// The worker died inside `ship` (its drive dropped, its lease left to
/// run out): the cancelling engine takes the saga over and compensates it
/// itself, `ship` included (it may have happened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_cancel_of_a_saga_whose_worker_died_is_carried_out_by_the_canceller() {
    for (store, location, _dir) in
        stores("saga_cancel_of_a_saga_whose_worker_died_is_carried_out_by_the_canceller").await
    {
        let log = Log::default();
        let dead = SagaEngine::builder(store.clone())
            .definition(order(&log))
            .worker_id("dead")
            .lease(Duration::from_secs(1))
            .reclaim_expired(false)
            .build()
            .unwrap();
        let running = tokio::spawn(async move { dead.run_with_id("o-1", "order", &1).await });
        wait_for(&log, "ship").await;
        running.abort();
        let _ = running.await;

        // Without background take-overs, so that the cancel is what rolls it back.
        let operator = SagaEngine::builder(another_handle(&store, &location).await)
            .definition(order(&log))
            .worker_id("operator")
            .lease(Duration::from_secs(1))
            .reclaim_expired(false)
            .build()
            .unwrap();
        let first = operator.cancel("o-1", "stuck").await.unwrap();
        // Asked while the dead worker's lease still ran: it is stored.
        assert!(matches!(first, CancelOutcome::Requested { .. }), "{first:?}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let outcome = operator.cancel("o-1", "stuck, again").await.unwrap();
        let CancelOutcome::RolledBack(error) = outcome else { panic!("{outcome:?}") };
        assert!(error.is_cancelled() && error.is_compensated(), "{error}");
        assert!(error.to_string().contains("cancelled: stuck"), "the first reason is kept: {error}");
        assert_eq!(*log.lock().unwrap(), ["reserve", "charge", "ship", "recall", "refund", "release"]);
        let saga = store.saga("o-1").await.unwrap().unwrap();
        assert_eq!(saga.status, SagaStatus::Compensated);
    }
}

/// The crash boundary "cancel requested": the request is stored (here by
/// the `weir` command's path, `Store::request_cancel`), no worker is
/// alive; the next engine to resume compensates the saga. A saga that
/// never started has nothing to compensate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_cancel_requested_while_every_worker_is_down_is_carried_out_on_resume() {
    for (store, location, _dir) in
        stores("saga_cancel_requested_while_every_worker_is_down_is_carried_out_on_resume").await
    {
        let log = Log::default();
        let first = SagaEngine::builder(store.clone())
            .definition(order(&log))
            .worker_id("first")
            .lease(Duration::from_secs(1))
            .reclaim_expired(false) // it must not start the submitted one
            .build()
            .unwrap();
        first.submit("never-started", "order", &2).await.unwrap();
        let running = tokio::spawn({
            let first = first.clone();
            async move { first.run_with_id("o-1", "order", &1).await }
        });
        wait_for(&log, "ship").await;
        running.abort();
        let _ = running.await;
        drop(first);
        let asked = store.request_cancel("o-1", "operator").await.unwrap().unwrap();
        assert_eq!((asked.status, asked.cancel_requested.as_deref()), (SagaStatus::Running, Some("operator")));
        store.request_cancel("never-started", "operator").await.unwrap();
        assert!(store.request_cancel("nope", "operator").await.unwrap().is_none());

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let next = engine(another_handle(&store, &location).await, &log, "next");
        let report = next.resume().await.unwrap();
        // Some may have been taken by its background take-over instead
        // (counted apart); either way resume returns after both ended.
        assert_eq!(report.resumed + next.reclaimed(), 2, "{report:?}");
        assert_eq!(store.saga("o-1").await.unwrap().unwrap().status, SagaStatus::Compensated);
        assert_eq!(*log.lock().unwrap(), ["reserve", "charge", "ship", "recall", "refund", "release"]);
        let untouched = store.saga("never-started").await.unwrap().unwrap();
        assert_eq!(untouched.status, SagaStatus::Compensated);
        assert!(untouched.steps.iter().all(|s| s.status == StepStatus::Pending), "nothing ran, nothing undone");
    }
}

/// Deleting a saga needs it ended; retention deletes ended sagas by
/// status and age, never active ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_delete_and_retention_remove_only_ended_sagas() {
    for (store, _, _dir) in stores("saga_delete_and_retention_remove_only_ended_sagas").await {
        let log = Log::default();
        let quick = SagaDefinition::builder("quick")
            .step("one", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
            .build()
            .unwrap();
        let failing = SagaDefinition::builder("failing")
            .step("one", |_| async { Err::<(), _>(StepError::terminal("no")) }, |_| async { Ok(()) })
            .build()
            .unwrap();
        let engine = SagaEngine::builder(store.clone())
            .definition(quick)
            .definition(failing)
            .definition(order(&log))
            .build()
            .unwrap();
        for n in 0..3 {
            engine.run_with_id(&format!("done-{n}"), "quick", &n).await.unwrap();
        }
        engine.run_with_id("rolled-back", "failing", &0).await.unwrap_err();
        engine.submit("waiting", "order", &0).await.unwrap();

        let busy = store.delete_saga("waiting").await.unwrap_err();
        assert!(matches!(busy, StoreError::Active { status: SagaStatus::Running, .. }), "{busy}");
        assert!(busy.to_string().contains("cancel it"), "{busy}");
        assert!(store.delete_saga("done-0").await.unwrap());
        assert!(!store.delete_saga("done-0").await.unwrap(), "gone");

        let future = SystemTime::now() + Duration::from_secs(60);
        let past = SystemTime::now() - Duration::from_secs(3600);
        assert_eq!(store.prune_sagas(&[SagaStatus::Completed], past).await.unwrap(), 0, "none that old");
        let all = [SagaStatus::Completed, SagaStatus::Compensated, SagaStatus::Running];
        assert_eq!(store.prune_sagas(&all, future).await.unwrap(), 3, "2 completed, 1 compensated; running kept");
        let left: Vec<String> = store.sagas(None, 10).await.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(left, ["waiting"]);
    }
}

/// A step whose every attempt timed out may have taken effect: with
/// `compensate_if_timed_out` its compensation runs with the done steps'
/// (it is `interrupted`); without, it is `failed` and not compensated. A
/// step that failed with an answer is never compensated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_timed_out_step_is_compensated_when_its_definition_asks() {
    for asks in [true, false] {
        let log = Log::default();
        let (a, b, c) = (log.clone(), log.clone(), log.clone());
        let mut def = SagaDefinition::builder("pay")
            .step(
                "reserve",
                |_| async { Ok::<_, StepError>(()) },
                move |_| {
                    a.lock().unwrap().push("release".to_owned());
                    async { Ok(()) }
                },
            )
            .step(
                "charge",
                move |_| {
                    b.lock().unwrap().push("charge".to_owned());
                    std::future::pending::<Result<(), StepError>>()
                },
                move |_| {
                    c.lock().unwrap().push("refund".to_owned());
                    async { Ok(()) }
                },
            );
        if asks {
            def = def.compensate_if_timed_out("charge");
        }
        let retry = weir::policy::retry::RetryPolicy::builder()
            .max_attempts(2)
            .initial_delay(Duration::from_millis(1))
            .build()
            .unwrap();
        let (store, _dir) = crate::support::stores::sqlite().await;
        let engine = SagaEngine::builder(store.clone())
            .definition(def.build().unwrap())
            .step_timeout(Duration::from_millis(30))
            .step_retry(retry)
            .build()
            .unwrap();
        let error = engine.run_with_id("p-1", "pay", &1).await.unwrap_err();
        assert!(error.is_compensated() && !error.is_cancelled(), "{error}");
        assert!(error.to_string().contains("timed out"), "{error}");
        let expected: &[&str] =
            if asks { &["charge", "charge", "refund", "release"] } else { &["charge", "charge", "release"] };
        assert_eq!(*log.lock().unwrap(), expected);
        let charge = &store.saga("p-1").await.unwrap().unwrap().steps[1];
        let status = if asks { StepStatus::Compensated } else { StepStatus::Failed };
        assert_eq!(charge.status, status);
    }
}

/// A durable deadline: passed while the saga sits in `ship`, its holder
/// stops the step and compensates; passed while its worker is dead, the
/// live worker that takes it over compensates instead of going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_passed_deadline_cancels_and_compensates_on_whichever_worker_is_alive() {
    for (store, location, _dir) in
        stores("saga_a_passed_deadline_cancels_and_compensates_on_whichever_worker_is_alive").await
    {
        let log = Log::default();
        let worker = engine(store.clone(), &log, "worker");
        let soon = SystemTime::now() + Duration::from_millis(300);
        let error = worker.run_with_deadline("o-1", "order", &1, soon).await.unwrap_err();
        assert!(error.is_cancelled() && error.is_compensated(), "{error}");
        assert!(error.to_string().contains("deadline passed"), "{error}");
        assert!(SystemTime::now() >= soon, "not before its deadline");
        assert_eq!(*log.lock().unwrap(), ["reserve", "charge", "ship", "recall", "refund", "release"]);
        assert!(store.saga("o-1").await.unwrap().unwrap().deadline_at.is_some());
        drop(worker); // it would take part two's saga over with its own log

        // The worker dies inside `ship`; the deadline passes; a live worker
        // (its background take-over) rolls the saga back.
        let log = Log::default();
        let dying = SagaEngine::builder(store.clone())
            .definition(order(&log))
            .worker_id("dying")
            .lease(Duration::from_secs(1))
            .reclaim_expired(false)
            .build()
            .unwrap();
        // Before its lease (1 s) runs out: the take-over finds it past due.
        let soon = SystemTime::now() + Duration::from_millis(400);
        let running = tokio::spawn(async move { dying.run_with_deadline("o-2", "order", &2, soon).await });
        wait_for(&log, "ship").await;
        running.abort();
        let _ = running.await;
        let live = engine(another_handle(&store, &location).await, &log, "live");
        live.resume().await.unwrap(); // starts its take-over; o-2's lease has not expired yet
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while store.saga("o-2").await.unwrap().unwrap().status.is_active() {
            assert!(std::time::Instant::now() < deadline, "the live worker rolled it back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let saga = store.saga("o-2").await.unwrap().unwrap();
        assert_eq!(saga.status, SagaStatus::Compensated);
        assert!(saga.error.as_deref().unwrap_or_default().contains("deadline passed"), "{:?}", saga.error);
        let log = log.lock().unwrap().clone();
        assert_eq!(log.iter().filter(|e| *e == "ship").count(), 1, "never went forward again: {log:?}");
        assert_eq!(&log[log.len() - 3..], ["recall", "refund", "release"]);
    }
}

/// A worker process when the harness starts this binary as one (see
/// `saga_cancel_survives_a_sigkill_of_the_worker_at_any_moment`); a no-op
/// in a normal test run. `run` drives saga o-1 into `ship`, where it
/// waits; `resume` resumes what is left. Each step and compensation
/// appends its name to the log file as it starts.
#[cfg(unix)]
#[test]
fn cancel_worker_entry() {
    let (Ok(db), Ok(log), Ok(phase)) = (
        std::env::var("WEIR_CANCEL_WORKER_DB"),
        std::env::var("WEIR_CANCEL_WORKER_LOG"),
        std::env::var("WEIR_CANCEL_WORKER_PHASE"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        use std::io::Write;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let file = Arc::new(Mutex::new(file));
        let note = move |name: &str| file.lock().unwrap().write_all(format!("{name}\n").as_bytes()).unwrap();
        let step = |name: &'static str| {
            let note = note.clone();
            move |_: StepContext| {
                note(name);
                async { Ok::<_, StepError>(()) }
            }
        };
        let undo = |name: &'static str| {
            let note = note.clone();
            move |_: StepContext| {
                note(name);
                async {
                    // Long enough for a kill to land inside a compensation.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(())
                }
            }
        };
        let ship = note.clone();
        let def = SagaDefinition::builder("order")
            .step("reserve", step("reserve"), undo("release"))
            .step("charge", step("charge"), undo("refund"))
            .step(
                "ship",
                move |_: StepContext| {
                    ship("ship");
                    std::future::pending::<Result<(), StepError>>()
                },
                undo("recall"),
            )
            .build()
            .unwrap();
        let store = Store::open(&db).await.unwrap();
        let engine = SagaEngine::builder(store)
            .definition(def)
            .worker_id(format!("pid-{}", std::process::id()))
            .lease(Duration::from_secs(1))
            .build()
            .unwrap();
        match phase.as_str() {
            "run" => drop(engine.run_with_id("o-1", "order", &1).await),
            _ => drop(engine.resume().await.unwrap()),
        }
    });
}

/// A cancel requested while a worker process sits in `ship`, then the
/// worker SIGKILLed at moments before, around and after its heartbeat
/// reads the request (and inside a compensation): the next worker
/// process compensates what is left. Every step is undone, in reverse,
/// none is run forward again, and a compensation runs twice at most when
/// the kill landed inside it (at least once, like every step).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_cancel_survives_a_sigkill_of_the_worker_at_any_moment() {
    for delay_ms in [0u64, 150, 350, 420, 700] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weir.db").to_str().unwrap().to_owned();
        let log = dir.path().join("steps.log");
        let store = Store::open(&db).await.unwrap();
        let worker = |phase: &str| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "saga_manage::cancel_worker_entry", "--nocapture", "--test-threads=1"])
                .env("WEIR_CANCEL_WORKER_DB", &db)
                .env("WEIR_CANCEL_WORKER_LOG", &log)
                .env("WEIR_CANCEL_WORKER_PHASE", phase)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let read = || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>();
        let mut first = worker("run");
        while !read().iter().any(|l| l == "ship") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.request_cancel("o-1", "operator").await.unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();

        tokio::time::sleep(Duration::from_millis(1100)).await; // its lease runs out
        let mut next = worker("resume");
        let status = tokio::task::spawn_blocking(move || next.wait()).await.unwrap().unwrap();
        assert!(status.success());

        let saga = store.saga("o-1").await.unwrap().unwrap();
        let steps = read();
        assert_eq!(saga.status, SagaStatus::Compensated, "killed {delay_ms} ms after the request: {steps:?}");
        assert!(saga.error.as_deref().unwrap_or_default().contains("cancelled: operator"), "{:?}", saga.error);
        assert_eq!(&steps[..3], ["reserve", "charge", "ship"], "{steps:?}");
        assert!(
            steps[3..].iter().all(|s| ["recall", "refund", "release"].contains(&s.as_str())),
            "nothing forward: {steps:?}"
        );
        for undo in ["recall", "refund", "release"] {
            let n = steps.iter().filter(|s| *s == undo).count();
            assert!((1..=2).contains(&n), "{undo} ran {n} times after a kill {delay_ms} ms in: {steps:?}");
        }
        let first_run = |name: &str| steps.iter().position(|s| s == name).unwrap();
        assert!(first_run("recall") < first_run("refund") && first_run("refund") < first_run("release"), "{steps:?}");
        eprintln!("killed {delay_ms} ms after the request: {}", steps.join(" "));
    }
}

/// Definition versions: a saga finishes on the version it started on; a
/// worker that has only a newer version keeps the saga and reports it
/// (never runs it with the other code); new sagas start on the highest
/// version registered; asking again for a started saga after an upgrade
/// is the same request, not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_saga_finishes_on_the_version_it_started_on() {
    let (store, _dir) = crate::support::stores::sqlite().await;
    let log = Log::default();
    let version = |n: u32, second_waits: bool| {
        let (a, b) = (log.clone(), log.clone());
        SagaDefinition::builder("order")
            .version(n)
            .step(
                "reserve",
                move |_| {
                    a.lock().unwrap().push(format!("v{n} reserve"));
                    async { Ok::<_, StepError>(()) }
                },
                |_| async { Ok(()) },
            )
            .step(
                "ship",
                move |_| {
                    b.lock().unwrap().push(format!("v{n} ship"));
                    async move {
                        if second_waits {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, StepError>(())
                    }
                },
                |_| async { Ok(()) },
            )
            .build()
            .unwrap()
    };
    let engine = |defs: Vec<SagaDefinition>| {
        let mut builder = SagaEngine::builder(store.clone()).lease(Duration::from_secs(1)).reclaim_expired(false);
        for def in defs {
            builder = builder.definition(def);
        }
        builder.build().unwrap()
    };
    let old = engine(vec![version(1, true)]);
    let running = tokio::spawn(async move { old.run_with_id("o-1", "order", &1).await });
    wait_for(&log, "v1 ship").await;
    running.abort();
    let _ = running.await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let newer = engine(vec![version(2, false)]);
    let report = newer.resume().await.unwrap();
    assert_eq!(report.unknown_definitions, [("o-1".to_owned(), "order".to_owned())], "kept and reported");
    assert_eq!(store.saga("o-1").await.unwrap().unwrap().status, SagaStatus::Running);
    newer.run_with_id("o-2", "order", &2).await.unwrap();
    assert_eq!(store.saga("o-2").await.unwrap().unwrap().definition, "order@v2");

    // The newer worker's claim on o-1 (which it could not run) runs out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let both = engine(vec![version(1, false), version(2, false)]);
    let report = both.resume().await.unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    both.run_with_id("o-1", "order", &1).await.unwrap(); // the same request after the upgrade
    both.run_with_id("o-3", "order", &3).await.unwrap();
    both.run_with_id("o-4", "order@v1", &4).await.unwrap(); // pinned
    assert_eq!(store.saga("o-1").await.unwrap().unwrap().definition, "order");
    assert_eq!(store.saga("o-3").await.unwrap().unwrap().definition, "order@v2");
    assert_eq!(store.saga("o-4").await.unwrap().unwrap().definition, "order");
    assert_eq!(
        *log.lock().unwrap(),
        ["v1 reserve", "v1 ship", "v2 reserve", "v2 ship", "v1 ship", "v2 reserve", "v2 ship", "v1 reserve", "v1 ship"],
        "o-1 finished on v1's code"
    );
    let duplicate =
        SagaEngine::builder(store.clone()).definition(version(2, false)).definition(version(2, false)).build();
    assert!(duplicate.unwrap_err().to_string().contains("order@v2"));
}

/// A saga rolled back by a bug is forked onto the fixed version: the new
/// saga runs with the same input on v2 (once, however often it is asked);
/// the original stays as it was; a running saga cannot be forked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_an_ended_saga_is_forked_onto_a_newer_version() {
    let (store, _dir) = crate::support::stores::sqlite().await;
    let version = |n: u32| {
        SagaDefinition::builder("order")
            .version(n)
            .step(
                "ship",
                move |ctx: StepContext| async move {
                    let weight: u32 = ctx.input()?;
                    if n == 1 && weight > 10 { Err(StepError::terminal("bug: heavy parcels refused")) } else { Ok(n) }
                },
                |_| async { Ok(()) },
            )
            .build()
            .unwrap()
    };
    let v1 = SagaEngine::builder(store.clone()).definition(version(1)).build().unwrap();
    assert!(v1.run_with_id("o-1", "order", &12).await.unwrap_err().is_compensated());
    let both = SagaEngine::builder(store.clone()).definition(version(1)).definition(version(2)).build().unwrap();
    assert_eq!(both.fork("o-1", "o-1-retry", None).await.unwrap(), "o-1-retry");
    both.fork("o-1", "o-1-retry", None).await.unwrap(); // asked again: the same saga
    let forked = store.saga("o-1-retry").await.unwrap().unwrap();
    assert_eq!(
        (forked.definition.as_str(), forked.status, &forked.input),
        ("order@v2", SagaStatus::Completed, &serde_json::json!(12))
    );
    assert_eq!(forked.steps[0].output, Some(serde_json::json!(2)));
    assert_eq!(store.saga("o-1").await.unwrap().unwrap().status, SagaStatus::Compensated, "the original is kept");
    assert!(both.fork("nope", "x", None).await.is_err());
    both.submit("waiting", "order", &1).await.unwrap();
    let busy = both.fork("waiting", "w2", None).await.unwrap_err();
    assert!(busy.to_string().contains("cancel it"), "{busy}");
}

/// With a retention, the running engine deletes completed and compensated
/// sagas once they are older than it; failed and running ones stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_the_engine_deletes_ended_sagas_past_their_retention() {
    let (store, _dir) = crate::support::stores::sqlite().await;
    let log = Log::default();
    let failing = SagaDefinition::builder("failing")
        .step(
            "one",
            |_| async { Ok::<_, StepError>(()) },
            |_| async { Err::<(), _>(StepError::terminal("undo failed")) },
        )
        .step("two", |_| async { Err::<(), _>(StepError::terminal("no")) }, |_| async { Ok(()) })
        .build()
        .unwrap();
    let quick = SagaDefinition::builder("quick")
        .step("one", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
        .build()
        .unwrap();
    let engine = SagaEngine::builder(store.clone())
        .definition(quick)
        .definition(failing)
        .definition(order(&log))
        .lease(Duration::from_secs(1))
        .compensation_retry(weir::policy::retry::RetryPolicy::builder().max_attempts(1).build().unwrap())
        .retention(Duration::from_millis(200))
        .build()
        .unwrap();
    engine.run_with_id("done", "quick", &1).await.unwrap();
    let broken = engine.run_with_id("broken", "failing", &1).await.unwrap_err();
    assert!(broken.is_failed(), "{broken}");
    let waiting = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run_with_id("waiting", "order", &1).await }
    });
    wait_for(&log, "ship").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.saga("done").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the heartbeat pruned it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.saga("broken").await.unwrap().unwrap().status, SagaStatus::Failed, "failed ones stay");
    assert_eq!(store.saga("waiting").await.unwrap().unwrap().status, SagaStatus::Running, "running ones stay");
    waiting.abort();
}
