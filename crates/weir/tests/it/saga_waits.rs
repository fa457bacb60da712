//! Durable timers and external events: a saga that sleeps or waits is
//! parked (no lease, no task), wakes at its stored time on whichever
//! worker is alive, after a restart too; events are durable, taken once,
//! and a wait that runs out is a normal outcome; a cancel or a deadline
//! reaches a parked saga at once. On memory, SQLite and PostgreSQL, and
//! across SIGKILLed worker processes.
#![cfg(feature = "sqlite")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::stores::{another_handle, every_kind as stores, until_ended};
use weir::durable::saga::{
    CancelOutcome, EventTimedOut, OnTimeout, SagaDefinition, SagaEngine, StepContext, StepError,
};
use weir::durable::store::{SagaStatus, StepStatus, Store};

/// Each step's name and the time it ran (ms since the epoch).
type Log = Arc<Mutex<Vec<(String, i64)>>>;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn logging(
    log: &Log,
    name: &'static str,
) -> impl Fn(StepContext) -> futures_util::future::Ready<Result<(), StepError>> + use<> {
    let log = log.clone();
    move |_| {
        log.lock().unwrap().push((name.to_owned(), now_ms()));
        futures_util::future::ready(Ok(()))
    }
}

fn ran(log: &Log, name: &str) -> Vec<i64> {
    log.lock().unwrap().iter().filter(|(n, _)| n == name).map(|(_, at)| *at).collect()
}

/// reserve → sleep `nap` → ship.
fn napping(log: &Log, nap: Duration) -> SagaDefinition {
    SagaDefinition::builder("nap")
        .step("reserve", logging(log, "reserve"), logging(log, "release"))
        .sleep("nap", nap)
        .step_without_compensation("ship", logging(log, "ship"))
        .build()
        .unwrap()
}

/// reserve → wait for `approved` (at most `timeout`) → pay, which records
/// what the event carried (or that none came).
fn approval(log: &Log, timeout: Duration, on_timeout: OnTimeout) -> SagaDefinition {
    let paid = log.clone();
    SagaDefinition::builder("refund")
        .step("reserve", logging(log, "reserve"), logging(log, "release"))
        .wait_event("approval", "approved", timeout, on_timeout)
        .step_without_compensation("pay", move |ctx: StepContext| {
            let approver: Result<Option<String>, _> = ctx.output("approval");
            paid.lock().unwrap().push((format!("pay:{}", approver.unwrap().unwrap_or_default()), now_ms()));
            async { Ok::<_, StepError>(()) }
        })
        .build()
        .unwrap()
}

fn engine(store: Store, def: SagaDefinition, worker: &str) -> SagaEngine {
    SagaEngine::builder(store).definition(def).worker_id(worker).lease(Duration::from_secs(1)).build().unwrap()
}

/// A sleep parks the saga (stored, no lease owner, its wake-up time in
/// its record; `run` says it is suspended) and the engine's waker carries
/// it on at that time, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_sleep_parks_the_saga_and_its_worker_wakes_it_at_the_stored_time() {
    for (store, _, _dir) in stores("saga_sleep_wakes").await {
        let log = Log::default();
        let engine = engine(store.clone(), napping(&log, Duration::from_millis(400)), "w1");
        let started = now_ms();
        let asleep = engine.run_with_id("n-1", "nap", &()).await.unwrap_err();
        assert!(asleep.is_suspended(), "{asleep}");
        assert!(asleep.to_string().contains("sleeps in step `nap`"), "{asleep}");
        let until = asleep.suspended_until().unwrap().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!(until >= started + 400, "{until} vs {started}");

        let parked = store.saga("n-1").await.unwrap().unwrap();
        assert_eq!((parked.status, parked.lease_owner.as_deref()), (SagaStatus::Running, None));
        assert_eq!(parked.steps[1].wake_at, Some(until));
        assert!(ran(&log, "ship").is_empty());

        let done = until_ended(&store, "n-1").await;
        assert_eq!(done.status, SagaStatus::Completed, "{done:?}");
        let shipped = ran(&log, "ship");
        assert_eq!(shipped.len(), 1);
        assert!(shipped[0] >= until, "woke {} ms early", until - shipped[0]);
        assert_eq!((ran(&log, "reserve").len(), engine.woken()), (1, 1));
    }
}

/// A sleep no longer than the waker's claim-ahead (50 ms) is waited out
/// in place, holding the lease: `run` carries the saga to its end (no
/// park, no wake-up), and the next step still runs no sooner than the
/// stored time. A deadline that falls inside the wait still stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_sleep_within_the_claim_ahead_is_waited_out_in_place() {
    for (store, _, _dir) in stores("saga_short_sleep").await {
        let log = Log::default();
        let engine = engine(store.clone(), napping(&log, Duration::from_millis(30)), "w1");
        engine.run_with_id("s-1", "nap", &()).await.unwrap();
        let saga = store.saga("s-1").await.unwrap().unwrap();
        assert_eq!(saga.status, SagaStatus::Completed, "{saga:?}");
        let wake_at = saga.steps[1].wake_at.unwrap();
        let shipped = ran(&log, "ship");
        assert!(shipped[0] >= wake_at, "woke {} ms early", wake_at - shipped[0]);
        assert_eq!(engine.woken(), 0, "held in place, never parked and woken");

        // The deadline comes 20 ms into the 40 ms sleep: the first step
        // takes until then.
        let deadline = now_ms() + 300;
        let late = SagaDefinition::builder("late")
            .step(
                "reserve",
                |ctx: StepContext| async move {
                    let deadline: i64 = ctx.input()?;
                    tokio::time::sleep(Duration::from_millis((deadline - 20 - now_ms()).max(0) as u64)).await;
                    Ok::<_, StepError>(())
                },
                logging(&log, "release"),
            )
            .sleep("nap", Duration::from_millis(40))
            .step_without_compensation("ship", logging(&log, "ship"))
            .build()
            .unwrap();
        let engine = self::engine(store.clone(), late, "w2");
        let at = UNIX_EPOCH + Duration::from_millis(deadline as u64);
        let stopped = engine.run_with_deadline("s-2", "late", &deadline, at).await.unwrap_err();
        assert!(stopped.is_compensated(), "{stopped}");
        let saga = store.saga("s-2").await.unwrap().unwrap();
        assert_eq!(saga.status, SagaStatus::Compensated);
        assert!(saga.error.unwrap_or_default().contains("its deadline passed"));
        assert_eq!((ran(&log, "ship").len(), ran(&log, "release").len()), (1, 1));
    }
}

/// The wake-up time survives the worker: a new engine (another process
/// would be the same) wakes the saga at the stored time; one started
/// after the time passed carries it on at once, inside `resume`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_sleeping_saga_wakes_on_another_worker_after_a_restart() {
    for (store, location, _dir) in stores("saga_sleep_restart").await {
        let log = Log::default();
        let first = engine(store.clone(), napping(&log, Duration::from_millis(300)), "w1");
        assert!(first.run_with_id("late", "nap", &()).await.unwrap_err().is_suspended());
        let soon = engine(store.clone(), napping(&log, Duration::from_millis(600)), "w1");
        assert!(soon.run_with_id("soon", "nap", &()).await.unwrap_err().is_suspended());
        drop((first, soon)); // the worker is gone: nothing holds either saga

        tokio::time::sleep(Duration::from_millis(350)).await;
        let next = engine(another_handle(&store, &location).await, napping(&log, Duration::from_secs(3600)), "w2");
        let report = next.resume().await.unwrap();
        // `late` was due: carried on at once (by `resume`, or by the waker
        // it starts: `resume` waits for both). `soon` was not: left parked.
        assert_eq!(report.completed + next.woken(), 1, "{report:?}");
        assert_eq!(store.saga("late").await.unwrap().unwrap().status, SagaStatus::Completed);
        assert_eq!(store.saga("soon").await.unwrap().unwrap().status, SagaStatus::Running);
        // Woken by the new worker at the time stored by the first (600 ms),
        // not the one its own definition would set (an hour).
        let done = until_ended(&store, "soon").await;
        assert_eq!(done.status, SagaStatus::Completed);
        assert_eq!(ran(&log, "ship").len(), 2);
        assert_eq!(ran(&log, "reserve").len(), 2, "nothing before the sleep ran again");
    }
}

/// Events: one sent before the saga reaches its wait is taken when it
/// gets there; one sent while it waits wakes it; each is taken once, the
/// oldest first, and a second stays for a later wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_an_event_is_taken_once_whether_it_came_before_or_during_the_wait() {
    for (store, _, _dir) in stores("saga_events").await {
        let log = Log::default();
        let engine = engine(store.clone(), approval(&log, Duration::from_secs(3600), OnTimeout::Compensate), "w1");

        // Before: the saga is stored, not started, when two events come;
        // the oldest is taken, the other stays for a later wait.
        engine.submit("early", "refund", &()).await.unwrap();
        engine.send_event("early", "approved", &"ana").await.unwrap();
        engine.send_event("early", "approved", &"bo").await.unwrap();
        engine.run_with_id("early", "refund", &()).await.unwrap();
        assert!(log.lock().unwrap().iter().any(|(n, _)| n == "pay:ana"));
        let events = store.saga_events("early").await.unwrap();
        let taken: Vec<Option<&str>> = events.iter().map(|e| e.consumed_by.as_deref()).collect();
        assert_eq!(taken, [Some("approval"), None]);

        // During: parked until the event comes, then woken at once.
        let waiting = engine.run_with_id("late", "refund", &()).await.unwrap_err();
        assert!(waiting.to_string().contains("for event `approved`"), "{waiting}");
        engine.send_event("late", "approved", &"cy").await.unwrap();
        let done = until_ended(&store, "late").await;
        assert_eq!(done.status, SagaStatus::Completed);
        assert_eq!(done.steps[1].output, Some(serde_json::json!("cy")));
        assert!(log.lock().unwrap().iter().any(|(n, _)| n == "pay:cy"));

        // Refused: no such saga, or one that ended (nothing stored).
        let missing = engine.send_event("nobody", "approved", &1).await.unwrap_err();
        assert!(missing.to_string().contains("saga nobody is not in"), "{missing}");
        let ended = engine.send_event("late", "approved", &1).await.unwrap_err();
        assert!(ended.to_string().contains("is completed, so no step of it will take the event"), "{ended}");
        assert_eq!(store.saga_events("late").await.unwrap().len(), 1);
    }
}

/// A wait that runs out is a normal outcome: compensate (the definition's
/// choice) or go on with `null`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_wait_that_runs_out_compensates_or_goes_on_as_its_definition_says() {
    for (store, _, _dir) in stores("saga_event_timeout").await {
        let log = Log::default();
        let strict = engine(store.clone(), approval(&log, Duration::from_millis(300), OnTimeout::Compensate), "w1");
        assert!(strict.run_with_id("strict", "refund", &()).await.unwrap_err().is_suspended());
        let rolled_back = until_ended(&store, "strict").await;
        assert_eq!(rolled_back.status, SagaStatus::Compensated, "{rolled_back:?}");
        assert_eq!(rolled_back.steps[1].status, StepStatus::Failed);
        let why = rolled_back.error.unwrap_or_default();
        assert!(why.contains("no event `approved` arrived within 300ms"), "{why}");
        assert_eq!(ran(&log, "release").len(), 1);
        assert!(!log.lock().unwrap().iter().any(|(n, _)| n.starts_with("pay")));
        drop(strict);

        let lenient = engine(store.clone(), approval(&log, Duration::from_millis(300), OnTimeout::Continue), "w2");
        assert!(lenient.run_with_id("lenient", "refund", &()).await.unwrap_err().is_suspended());
        assert_eq!(until_ended(&store, "lenient").await.status, SagaStatus::Completed);
        assert!(log.lock().unwrap().iter().any(|(n, _)| n == "pay:"), "pay saw no approval");
    }
}

/// A cancel reaches a parked saga at once (not at its wake-up time), and
/// so does a deadline that comes before the wake-up; the step that slept
/// is not taken for an interrupted call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_cancel_or_a_deadline_reaches_a_sleeping_saga_before_its_wake_up() {
    for (store, _, _dir) in stores("saga_sleep_cancel").await {
        let log = Log::default();
        let engine = engine(store.clone(), napping(&log, Duration::from_secs(3600)), "w1");
        assert!(engine.run_with_id("c-1", "nap", &()).await.unwrap_err().is_suspended());
        match engine.cancel("c-1", "customer left").await.unwrap() {
            CancelOutcome::RolledBack(how) => assert!(how.is_cancelled() && how.is_compensated(), "{how}"),
            other => panic!("{other:?}"),
        }
        let saga = store.saga("c-1").await.unwrap().unwrap();
        assert_eq!(saga.status, SagaStatus::Compensated);
        assert_eq!(saga.steps[1].status, StepStatus::Pending, "{:?}", saga.steps);
        assert_eq!(ran(&log, "release").len(), 1);

        let deadline = SystemTime::now() + Duration::from_millis(300);
        let asleep = engine.run_with_deadline("d-1", "nap", &(), deadline).await.unwrap_err();
        assert!(asleep.is_suspended(), "{asleep}");
        let saga = until_ended(&store, "d-1").await;
        assert_eq!(saga.status, SagaStatus::Compensated);
        assert!(saga.error.unwrap_or_default().contains("its deadline passed"));
        assert!(ran(&log, "ship").is_empty());
    }
}

/// A saga through the work queue that goes to sleep: its job is done (its
/// start was served) and the engine's waker carries the saga on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_queued_saga_that_sleeps_settles_its_job_and_wakes_later() {
    use weir::durable::queue::{JobQuery, JobStatus, WorkQueue};
    use weir::durable::saga::SagaStart;
    let (store, _dir) = crate::support::stores::sqlite().await;
    let log = Log::default();
    let engine = engine(store.clone(), napping(&log, Duration::from_millis(300)), "w1");
    let queue = WorkQueue::new(store.clone(), "sagas");
    engine.enqueue(&queue, &SagaStart::new("q-1", "nap", &()).unwrap()).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn({
        let (engine, queue, stop) = (engine.clone(), queue.clone(), stop.clone());
        async move { engine.work(&queue, stop).await.unwrap() }
    });
    while store.saga("q-1").await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = until_ended(&store, "q-1").await;
    stop.cancel();
    let report = worker.await.unwrap();
    assert_eq!((report.suspended, report.completed), (1, 0), "{report:?}");
    assert_eq!(done.status, SagaStatus::Completed);
    let jobs = queue.jobs(&JobQuery::default()).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.status).collect::<Vec<_>>(), [JobStatus::Done]);
}

/// What the event-timeout error says and carries.
#[test]
fn saga_event_timed_out_names_the_event_and_the_wait() {
    let e = EventTimedOut { event: "approved".into(), waited: Duration::from_secs(24 * 3600) };
    assert_eq!(e.to_string(), "no event `approved` arrived within 1day");
    let _: &dyn std::error::Error = &e;
}

/// A worker process when the harness starts this binary as one (see
/// `saga_a_timer_and_an_event_survive_sigkill_of_their_workers`); a no-op
/// in a normal test run. `run` starts saga t-1 and stays up; `serve`
/// resumes and keeps waking sagas until t-1 has ended. Each step appends
/// its name (and what it was given) to the log file as it starts.
#[cfg(unix)]
#[test]
fn wait_worker_entry() {
    let (Ok(db), Ok(log), Ok(phase)) = (
        std::env::var("WEIR_WAIT_WORKER_DB"),
        std::env::var("WEIR_WAIT_WORKER_LOG"),
        std::env::var("WEIR_WAIT_WORKER_PHASE"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        use std::io::Write;
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let file = Arc::new(Mutex::new(file));
        let note =
            move |line: String| file.lock().unwrap().write_all(format!("{line} {}\n", now_ms()).as_bytes()).unwrap();
        let (reserve, release, ship) = (note.clone(), note.clone(), note.clone());
        let reserve_ms: u64 =
            std::env::var("WEIR_WAIT_WORKER_RESERVE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let def = SagaDefinition::builder("trip")
            .step(
                "reserve",
                move |_: StepContext| {
                    reserve("reserve".into());
                    async move {
                        tokio::time::sleep(Duration::from_millis(reserve_ms)).await;
                        Ok::<_, StepError>(())
                    }
                },
                move |_: StepContext| {
                    release("release".into());
                    async { Ok(()) }
                },
            )
            .sleep("nap", Duration::from_millis(300))
            .wait_event("approval", "approved", Duration::from_secs(3600), OnTimeout::Compensate)
            .step_without_compensation("ship", move |ctx: StepContext| {
                let approval: Result<String, _> = ctx.output("approval");
                ship(format!("ship:{}", approval.unwrap_or_default()));
                async { Ok::<_, StepError>(()) }
            })
            .build()
            .unwrap();
        let store = Store::open(&db).await.unwrap();
        let engine = SagaEngine::builder(store.clone())
            .definition(def)
            .worker_id(format!("pid-{}", std::process::id()))
            .lease(Duration::from_secs(1))
            .build()
            .unwrap();
        if phase == "run" {
            let _ = engine.run_with_id("t-1", "trip", &()).await;
            std::future::pending::<()>().await;
        }
        let _ = engine.resume().await;
        until_ended(&store, "t-1").await;
    });
}

/// A timer armed and an event received, each with its worker process
/// SIGKILLed at moments around them (before the park is written, while
/// parked, while the event is being taken): the next worker process wakes
/// the saga at the stored time (never before), takes the event once, and
/// the saga completes; nothing before the kill runs again beyond
/// at-least-once, and the step after the wait sees the event's payload.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_a_timer_and_an_event_survive_sigkill_of_their_workers() {
    // (kill the first worker this long after `reserve` starts, kill the
    // second this long after the event is sent, how long `reserve` takes):
    // the first lands inside `reserve` (before the timer is armed).
    for (first_kill_ms, second_kill_ms, reserve_ms) in [(20u64, 0u64, 200u64), (0, 5, 0), (150, 60, 0)] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weir.db").to_str().unwrap().to_owned();
        let log = dir.path().join("steps.log");
        let store = Store::open(&db).await.unwrap();
        let worker = |phase: &str| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "saga_waits::wait_worker_entry", "--nocapture", "--test-threads=1"])
                .env("WEIR_WAIT_WORKER_DB", &db)
                .env("WEIR_WAIT_WORKER_LOG", &log)
                .env("WEIR_WAIT_WORKER_PHASE", phase)
                .env("WEIR_WAIT_WORKER_RESERVE_MS", reserve_ms.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let read = || -> Vec<(String, i64)> {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .map(|l| {
                    let (name, at) = l.rsplit_once(' ').unwrap();
                    (name.to_owned(), at.parse().unwrap())
                })
                .collect()
        };
        let until = |what: &str, done: &dyn Fn() -> bool| {
            let started = std::time::Instant::now();
            while !done() {
                assert!(started.elapsed() < Duration::from_secs(20), "waited 20 s for {what}: {:?}", read());
                std::thread::sleep(Duration::from_millis(5));
            }
        };

        // 1. The timer: killed around the moment the saga parks.
        let mut first = worker("run");
        until("reserve", &|| read().iter().any(|(n, _)| n == "reserve"));
        tokio::time::sleep(Duration::from_millis(first_kill_ms)).await;
        first.kill().unwrap(); // SIGKILL
        first.wait().unwrap();

        // 2. The next worker wakes it and it parks waiting for the event;
        //    the event is sent, and that worker killed around its taking.
        let mut second = worker("serve");
        let waiting = || {
            let handle = tokio::runtime::Handle::current();
            let saga = tokio::task::block_in_place(|| handle.block_on(store.saga("t-1"))).unwrap();
            saga.is_some_and(|s| s.lease_owner.is_none() && s.steps[2].event.is_some())
        };
        until("the saga to wait for its event", &waiting);
        store.send_event("t-1", "approved", &serde_json::json!("go")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(second_kill_ms)).await;
        second.kill().unwrap();
        second.wait().unwrap();

        // 3. Another worker finishes what is left.
        let mut third = worker("serve");
        let status = tokio::task::spawn_blocking(move || third.wait()).await.unwrap().unwrap();
        assert!(status.success());

        let saga = store.saga("t-1").await.unwrap().unwrap();
        let steps = read();
        let kills = format!("kills at {first_kill_ms} / {second_kill_ms} ms: {steps:?}");
        assert_eq!(saga.status, SagaStatus::Completed, "{kills}");
        let count = |name: &str| steps.iter().filter(|(n, _)| n == name).count();
        assert!((1..=2).contains(&count("reserve")), "{kills}");
        assert!(
            count("ship:go") >= 1 && count("ship:go") == steps.iter().filter(|(n, _)| n.starts_with("ship")).count(),
            "{kills}"
        );
        assert_eq!(count("release"), 0, "{kills}");
        let woke_at = saga.steps[1].wake_at.unwrap();
        let shipped = steps.iter().find(|(n, _)| n == "ship:go").unwrap().1;
        assert!(shipped >= woke_at, "ran {} ms before its timer: {kills}", woke_at - shipped);
        let events = store.saga_events("t-1").await.unwrap();
        assert_eq!(events.len(), 1, "{kills}");
        assert_eq!(events[0].consumed_by.as_deref(), Some("approval"), "{kills}");
        assert_eq!(saga.steps[2].output, Some(serde_json::json!("go")), "{kills}");
        eprintln!("{kills}");
    }
}
