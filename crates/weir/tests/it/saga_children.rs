//! Child sagas: a step runs another saga and waits for its end. Started
//! once, driven at once by the parent's worker, parked with its parent
//! when it sleeps; a rolled-back child is a failed step of its parent; a
//! parent rolled back (or cancelled) rolls its child back. On memory,
//! SQLite and PostgreSQL, and across SIGKILLed worker processes.
#![cfg(feature = "sqlite")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::stores::{every_kind as stores, until_ended};
use weir::durable::saga::{
    CancelOutcome, ChildSagaFailed, OnTimeout, SagaDefinition, SagaEngine, StepContext, StepError,
};
use weir::durable::store::{SagaStatus, StepStatus, Store};

/// The steps that ran, in order.
type Log = Arc<Mutex<Vec<String>>>;

fn note(
    log: &Log,
    name: &'static str,
) -> impl Fn(StepContext) -> futures_util::future::Ready<Result<(), StepError>> + use<> {
    let log = log.clone();
    move |_| {
        log.lock().unwrap().push(name.to_owned());
        futures_util::future::ready(Ok(()))
    }
}

fn failing(
    log: &Log,
    name: &'static str,
) -> impl Fn(StepContext) -> futures_util::future::Ready<Result<(), StepError>> + use<> {
    let log = log.clone();
    move |_| {
        log.lock().unwrap().push(name.to_owned());
        futures_util::future::ready(Err(StepError::terminal(format!("{name} refused"))))
    }
}

fn ran(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// payment: charge (its amount, from the input) → capture; each undone.
/// With `capture_fails`, capture refuses.
fn payment(log: &Log, capture_fails: bool) -> SagaDefinition {
    let charged = log.clone();
    let builder = SagaDefinition::builder("payment").step(
        "charge",
        move |ctx: StepContext| {
            charged.lock().unwrap().push("charge".into());
            async move { Ok::<_, StepError>(ctx.input::<u32>()? * 100) }
        },
        note(log, "refund"),
    );
    let builder = if capture_fails {
        builder.step("capture", failing(log, "capture"), note(log, "uncapture"))
    } else {
        builder.step("capture", note(log, "capture"), note(log, "uncapture"))
    };
    builder.build().unwrap()
}

/// order: reserve → pay (a payment child, input 7) → ship (which fails
/// when `ship_fails`).
fn order(log: &Log, ship_fails: bool) -> SagaDefinition {
    let builder = SagaDefinition::builder("order").step("reserve", note(log, "reserve"), note(log, "release")).child(
        "pay",
        "payment",
        |ctx| ctx.input::<u32>(),
    );
    let builder = if ship_fails {
        builder.step_without_compensation("ship", failing(log, "ship"))
    } else {
        builder.step_without_compensation("ship", note(log, "ship"))
    };
    builder.build().unwrap()
}

fn engine(store: Store, defs: Vec<SagaDefinition>) -> SagaEngine {
    let builder = SagaEngine::builder(store).worker_id("w1").lease(Duration::from_secs(1));
    defs.into_iter().fold(builder, |b, d| b.definition(d)).build().unwrap()
}

/// The child runs at once in the parent's worker, under the id
/// `parent/step`, linked to its parent; the parent's step output is the
/// child's outputs; running the parent again starts no second child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_child_runs_once_and_its_outputs_are_its_step_output() {
    for (store, _, _dir) in stores("saga_child_runs").await {
        let log = Log::default();
        let engine = engine(store.clone(), vec![payment(&log, false), order(&log, false)]);
        engine.run_with_id("o-1", "order", &7).await.unwrap();
        assert_eq!(ran(&log), ["reserve", "charge", "capture", "ship"]);

        let child = store.saga("o-1/pay").await.unwrap().unwrap();
        assert_eq!((child.status, child.parent.as_deref()), (SagaStatus::Completed, Some("o-1")));
        assert_eq!((child.definition.as_str(), &child.input), ("payment", &serde_json::json!(7)));
        let parent = store.saga("o-1").await.unwrap().unwrap();
        assert_eq!(parent.status, SagaStatus::Completed);
        assert_eq!(parent.steps[1].child.as_deref(), Some("o-1/pay"));
        assert_eq!(parent.steps[1].output, Some(serde_json::json!({"charge": 700, "capture": null})));

        engine.run_with_id("o-1", "order", &7).await.unwrap();
        assert_eq!(ran(&log).len(), 4, "nothing ran again");
        let all = store.sagas(None, 100).await.unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
    }
}

/// A child that rolls itself back is a failed step of its parent (its
/// cause a `ChildSagaFailed` naming the child), and the parent undoes its
/// own done steps; the child's own undo ran once, inside the child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_rolled_back_child_is_a_failed_step_of_its_parent() {
    for (store, _, _dir) in stores("saga_child_rolled_back").await {
        let log = Log::default();
        let engine = engine(store.clone(), vec![payment(&log, true), order(&log, false)]);
        let error = engine.run_with_id("o-2", "order", &7).await.unwrap_err();
        assert!(error.is_compensated(), "{error}");
        let cause = error.cause().and_then(|c| c.downcast_ref::<ChildSagaFailed>()).expect("a ChildSagaFailed");
        assert_eq!((cause.child.as_str(), cause.status), ("o-2/pay", SagaStatus::Compensated));
        assert!(error.to_string().contains("child saga `o-2/pay` was rolled back"), "{error}");
        assert_eq!(ran(&log), ["reserve", "charge", "capture", "refund", "release"]);

        let child = store.saga("o-2/pay").await.unwrap().unwrap();
        assert_eq!(child.status, SagaStatus::Compensated);
        let parent = store.saga("o-2").await.unwrap().unwrap();
        assert_eq!(parent.status, SagaStatus::Compensated);
        assert_eq!(parent.steps[1].status, StepStatus::Failed);
    }
}

/// A parent rolled back after its child completed rolls the child back:
/// the child's done steps are undone in reverse, inside the child, which
/// ends compensated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_parent_rolled_back_later_rolls_its_completed_child_back() {
    for (store, _, _dir) in stores("saga_child_undone").await {
        let log = Log::default();
        let engine = engine(store.clone(), vec![payment(&log, false), order(&log, true)]);
        let error = engine.run_with_id("o-3", "order", &7).await.unwrap_err();
        assert!(error.is_compensated(), "{error}");
        assert_eq!(ran(&log), ["reserve", "charge", "capture", "ship", "uncapture", "refund", "release"]);
        let child = store.saga("o-3/pay").await.unwrap().unwrap();
        assert_eq!(child.status, SagaStatus::Compensated, "{child:?}");
        assert!(child.cancel_requested.as_deref().is_some_and(|r| r.contains("o-3")), "{child:?}");
        let parent = store.saga("o-3").await.unwrap().unwrap();
        assert_eq!(parent.steps[1].status, StepStatus::Compensated);
    }
}

/// A child that sleeps parks, and its parent parks waiting for it (both
/// hold no lease); the child's end wakes the parent at once (well within
/// the parent's one-minute look-again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_child_that_sleeps_parks_its_parent_and_its_end_wakes_it() {
    for (store, _, _dir) in stores("saga_child_sleeps").await {
        let log = Log::default();
        let slow_payment = SagaDefinition::builder("payment")
            .step("charge", note(&log, "charge"), note(&log, "refund"))
            .sleep("settle", Duration::from_millis(300))
            .step_without_compensation("capture", note(&log, "capture"))
            .build()
            .unwrap();
        let engine = engine(store.clone(), vec![slow_payment, order(&log, false)]);
        let asleep = engine.run_with_id("o-4", "order", &7).await.unwrap_err();
        assert!(asleep.is_suspended(), "{asleep}");
        assert!(asleep.to_string().contains("for child saga `o-4/pay`"), "{asleep}");
        let parent = store.saga("o-4").await.unwrap().unwrap();
        let child = store.saga("o-4/pay").await.unwrap().unwrap();
        assert_eq!((parent.lease_owner.as_deref(), child.lease_owner.as_deref()), (None, None));

        let started = std::time::Instant::now();
        let parent = until_ended(&store, "o-4").await;
        assert_eq!(parent.status, SagaStatus::Completed, "{parent:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "woken by the child's end, not the look-again");
        assert_eq!(ran(&log), ["reserve", "charge", "capture", "ship"]);
        assert_eq!(engine.woken(), 2, "the child at its time, then the parent at the child's end");
    }
}

/// Cancelling a parent whose child waits for an event cancels the child:
/// the child's done step is undone, then the parent's; both end
/// compensated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_cancelling_a_parent_cancels_its_child() {
    for (store, _, _dir) in stores("saga_child_cancel").await {
        let log = Log::default();
        let approved_payment = SagaDefinition::builder("payment")
            .step("charge", note(&log, "charge"), note(&log, "refund"))
            .wait_event("approval", "approved", Duration::from_secs(3600), OnTimeout::Compensate)
            .build()
            .unwrap();
        let engine = engine(store.clone(), vec![approved_payment, order(&log, false)]);
        assert!(engine.run_with_id("o-5", "order", &7).await.unwrap_err().is_suspended());

        match engine.cancel("o-5", "the customer left").await.unwrap() {
            CancelOutcome::RolledBack(how) => assert!(how.is_cancelled() && how.is_compensated(), "{how}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(ran(&log), ["reserve", "charge", "refund", "release"]);
        let child = store.saga("o-5/pay").await.unwrap().unwrap();
        assert_eq!(child.status, SagaStatus::Compensated, "{child:?}");
        assert!(child.cancel_requested.as_deref().is_some_and(|r| r.contains("o-5")), "{child:?}");
        assert_eq!(store.saga("o-5").await.unwrap().unwrap().status, SagaStatus::Compensated);
    }
}

/// A child whose rollback fails fails its parent's compensation: the
/// parent ends `failed` (a person looks), never `compensated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_child_whose_rollback_fails_leaves_its_parent_failed() {
    for (store, _, _dir) in stores("saga_child_undo_fails").await {
        let log = Log::default();
        let stubborn = SagaDefinition::builder("payment")
            .step("charge", note(&log, "charge"), failing(&log, "refund"))
            .build()
            .unwrap();
        let engine = engine(store.clone(), vec![stubborn, order(&log, true)]);
        let error = engine.run_with_id("o-6", "order", &7).await.unwrap_err();
        assert!(error.is_failed(), "{error}");
        assert_eq!(store.saga("o-6/pay").await.unwrap().unwrap().status, SagaStatus::Failed);
        let parent = store.saga("o-6").await.unwrap().unwrap();
        assert_eq!((parent.status, parent.steps[1].status), (SagaStatus::Failed, StepStatus::CompensationFailed));
        assert_eq!(ran(&log).last().map(String::as_str), Some("release"), "the parent's other steps are undone");
    }
}

/// A child step naming a definition the engine does not have is refused
/// when the engine is built.
#[test]
fn saga_a_child_of_an_unregistered_definition_is_refused() {
    let log = Log::default();
    let error = SagaEngine::builder(Store::memory()).definition(order(&log, false)).build().unwrap_err();
    assert!(error.to_string().contains("`payment` of a step of `order`"), "{error}");
    assert!(error.to_string().contains("register the child's definition"), "{error}");
}

/// A worker process when the harness starts this binary as one (see
/// `saga_a_child_survives_sigkill_of_its_worker`); a no-op in a normal
/// test run. `run` starts saga c-1 and stays up; `serve` resumes until
/// c-1 has ended. Each step appends its name to the log file as it
/// starts.
#[cfg(unix)]
#[test]
fn child_worker_entry() {
    let (Ok(db), Ok(log), Ok(phase)) = (
        std::env::var("WEIR_CHILD_WORKER_DB"),
        std::env::var("WEIR_CHILD_WORKER_LOG"),
        std::env::var("WEIR_CHILD_WORKER_PHASE"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        use std::io::Write;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let file = Arc::new(Mutex::new(file));
        // With a rollback, `confirm` refuses and every step is undone, each
        // undo taking 60 ms (room for a kill inside it).
        let rollback = std::env::var("WEIR_CHILD_WORKER_ROLLBACK").is_ok();
        let step = |name: &'static str, ms: u64, fails: bool| {
            let file = file.clone();
            move |_: StepContext| {
                file.lock().unwrap().write_all(format!("{name}\n").as_bytes()).unwrap();
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    if fails { Err(StepError::terminal("refused")) } else { Ok(()) }
                }
            }
        };
        let payment = SagaDefinition::builder("payment")
            .step("charge", step("charge", 60, false), step("refund", 60, false))
            .step("capture", step("capture", 60, false), step("uncapture", 60, false))
            .build()
            .unwrap();
        let trip = SagaDefinition::builder("trip")
            .step("book", step("book", 0, false), step("unbook", 60, false))
            .child("pay", "payment", |_| Ok(1))
            .step_without_compensation("confirm", step("confirm", 0, rollback))
            .build()
            .unwrap();
        let store = Store::open(&db).await.unwrap();
        let engine = SagaEngine::builder(store.clone())
            .definition(payment)
            .definition(trip)
            .worker_id(format!("pid-{}", std::process::id()))
            .lease(Duration::from_secs(1))
            .build()
            .unwrap();
        if phase == "run" {
            let _ = engine.run_with_id("c-1", "trip", &()).await;
            std::future::pending::<()>().await;
        }
        let _ = engine.resume().await;
        until_ended(&store, "c-1").await;
    });
}

/// A parent and its child with their worker process SIGKILLed at moments
/// around the child's start and its steps: the next worker process
/// finishes both — one child (its id is the parent's and the step's),
/// every step at least once and at most twice, nothing compensated.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_child_survives_sigkill_of_its_worker() {
    // How long after `book` starts the first worker is killed: as the
    // child starts, inside `charge`, inside `capture`, after the child.
    for kill_ms in [0u64, 30, 90, 200] {
        let (steps, context) = killed_once(kill_ms, false).await;
        let count = |name: &str| steps.iter().filter(|n| *n == name).count();
        for step in ["book", "charge", "capture", "confirm"] {
            assert!((1..=2).contains(&count(step)), "{step}: {context}");
        }
        for undo in ["unbook", "refund", "uncapture"] {
            assert_eq!(count(undo), 0, "{undo}: {context}");
        }
    }
}

/// The same while the parent rolls back (its last step refuses): killed
/// inside the child's undo of `capture`, of `charge`, and inside the
/// parent's own `unbook`, the next worker process finishes every undo —
/// none skipped, each at most twice — and both end compensated.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_child_rolled_back_with_its_parent_survives_sigkill_of_its_worker() {
    // book, charge 60 ms, capture 60 ms, confirm refuses; then uncapture,
    // refund, unbook, 60 ms each.
    for kill_ms in [150u64, 210, 270] {
        let (steps, context) = killed_once(kill_ms, true).await;
        let count = |name: &str| steps.iter().filter(|n| *n == name).count();
        for undo in ["uncapture", "refund", "unbook"] {
            assert!((1..=2).contains(&count(undo)), "{undo}: {context}");
        }
        let order: Vec<&String> =
            steps.iter().filter(|n| ["uncapture", "refund", "unbook"].contains(&n.as_str())).collect();
        assert_eq!(order.last().map(|s| s.as_str()), Some("unbook"), "the parent's own undo last: {context}");
    }
}

/// Runs saga c-1 in a worker process, SIGKILLs it `kill_ms` after `book`
/// starts, lets a second worker process finish; checks that both sagas
/// ended as they should (completed, or compensated with `rollback`) and
/// that there is one child. Returns the steps that ran, and a context
/// line for assertions.
#[cfg(unix)]
async fn killed_once(kill_ms: u64, rollback: bool) -> (Vec<String>, String) {
    {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weir.db").to_str().unwrap().to_owned();
        let log = dir.path().join("steps.log");
        let store = Store::open(&db).await.unwrap();
        let worker = |phase: &str| {
            let mut command = std::process::Command::new(std::env::current_exe().unwrap());
            command
                .args(["--exact", "saga_children::child_worker_entry", "--nocapture", "--test-threads=1"])
                .env("WEIR_CHILD_WORKER_DB", &db)
                .env("WEIR_CHILD_WORKER_LOG", &log)
                .env("WEIR_CHILD_WORKER_PHASE", phase)
                .stdout(std::process::Stdio::null());
            if rollback {
                command.env("WEIR_CHILD_WORKER_ROLLBACK", "1");
            }
            command.spawn().unwrap()
        };
        let read = || -> Vec<String> {
            std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_owned).collect()
        };

        let mut first = worker("run");
        let started = std::time::Instant::now();
        while !read().iter().any(|n| n == "book") {
            assert!(started.elapsed() < Duration::from_secs(20), "the first worker never booked");
            std::thread::sleep(Duration::from_millis(2));
        }
        tokio::time::sleep(Duration::from_millis(kill_ms)).await;
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();
        let killed_after = read();

        let mut second = worker("serve");
        let status = tokio::task::spawn_blocking(move || second.wait()).await.unwrap().unwrap();
        assert!(status.success());

        let steps = read();
        let context = format!("killed {kill_ms} ms after book, having run {killed_after:?}; all: {steps:?}");
        let ended = if rollback { SagaStatus::Compensated } else { SagaStatus::Completed };
        let parent = store.saga("c-1").await.unwrap().unwrap();
        assert_eq!(parent.status, ended, "{context}");
        let child = store.saga("c-1/pay").await.unwrap().unwrap();
        assert_eq!((child.status, child.parent.as_deref()), (ended, Some("c-1")), "{context}");
        let all = store.sagas(None, 100).await.unwrap();
        assert_eq!(all.len(), 2, "one parent, one child: {context}");
        eprintln!("{context}");
        (steps, context)
    }
}
