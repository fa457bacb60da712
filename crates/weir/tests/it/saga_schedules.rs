//! Sagas on a cron schedule: each tick starts one saga however many
//! workers fire it, worker processes SIGKILLed included; ticks missed
//! while every worker was down are skipped or caught up as the schedule
//! says.
#![cfg(feature = "sqlite")]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use weir::durable::saga::{Missed, SagaDefinition, SagaEngine, SagaSchedule, StepContext, StepError};
use weir::durable::store::{SagaQuery, SagaStatus, Store};

/// One step that appends the saga's id to `log` (a file: several
/// processes write it).
fn tick_definition(log: std::path::PathBuf) -> SagaDefinition {
    SagaDefinition::builder("tick")
        .step_without_compensation("note", move |ctx: StepContext| {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
            file.write_all(format!("{}\n", ctx.saga_id()).as_bytes()).unwrap();
            async { Ok::<_, StepError>(()) }
        })
        .build()
        .unwrap()
}

fn every_second(missed: Missed, grace: Duration) -> SagaSchedule {
    SagaSchedule::new("every", "* * * * * *", "tick").unwrap().missed(missed).grace(grace)
}

fn engine(store: Store, log: std::path::PathBuf, schedule: Option<SagaSchedule>, worker: &str) -> SagaEngine {
    let builder =
        SagaEngine::builder(store).definition(tick_definition(log)).worker_id(worker).lease(Duration::from_secs(1));
    match schedule {
        Some(schedule) => builder.schedule(schedule).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

/// The ticks (as seconds since the epoch) of the schedule's sagas, and
/// whether every one completed.
async fn ticks(store: &Store) -> (Vec<i64>, bool) {
    let sagas = store.find_sagas(&SagaQuery::new().definition("tick").limit(10_000)).await.unwrap();
    let completed = sagas.iter().all(|s| s.status == SagaStatus::Completed);
    let mut ticks: Vec<i64> = sagas
        .iter()
        .map(|s| {
            let at = s.id.strip_prefix("every@").unwrap();
            DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc).timestamp()
        })
        .collect();
    ticks.sort_unstable();
    (ticks, completed)
}

fn gaps(ticks: &[i64]) -> Vec<(i64, i64)> {
    ticks.windows(2).filter(|w| w[1] - w[0] != 1).map(|w| (w[0], w[1])).collect()
}

/// A schedule worker process when the harness starts this binary as one;
/// a no-op in a normal test run. Serves until killed.
#[cfg(unix)]
#[test]
fn schedule_worker_entry() {
    let (Ok(db), Ok(log)) = (std::env::var("WEIR_SCHEDULE_WORKER_DB"), std::env::var("WEIR_SCHEDULE_WORKER_LOG"))
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = Store::open(&db).await.unwrap();
        let worker = format!("pid-{}", std::process::id());
        let engine = engine(store, log.into(), Some(every_second(Missed::Skip, Duration::from_secs(60))), &worker);
        engine.resume().await.unwrap();
        std::future::pending::<()>().await;
    });
}

/// Three worker processes fire a schedule ticking every second; one is
/// SIGKILLed mid-way and another started: every tick from the first to
/// the last has exactly one saga (no gap, no second one: ids are unique
/// by tick), each completed, its step run once or, when a kill landed
/// inside it, twice at most.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_schedule_fires_each_tick_once_across_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("weir.db").to_str().unwrap().to_owned();
    let log = dir.path().join("ticks.log");
    let store = Store::open(&db).await.unwrap();
    let worker = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "saga_schedules::schedule_worker_entry", "--nocapture", "--test-threads=1"])
            .env("WEIR_SCHEDULE_WORKER_DB", &db)
            .env("WEIR_SCHEDULE_WORKER_LOG", &log)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut workers: Vec<_> = (0..3).map(|_| worker()).collect();
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    workers[0].kill().unwrap(); // SIGKILL
    workers[0].wait().unwrap();
    workers[0] = worker();
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    // What a killed worker left half-done, finished by a worker without
    // the schedule once its lease ran out.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    engine(store.clone(), log.clone(), None, "after").resume().await.unwrap();

    let (ticks, completed) = ticks(&store).await;
    let notes = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ticks.len() >= 3, "{ticks:?}; steps: {notes}; sagas: {:?}", store.find_sagas(&SagaQuery::new()).await);
    assert!(completed, "every tick's saga completed");
    assert_eq!(gaps(&ticks), [], "a tick without its saga: {ticks:?}");
    let noted: Vec<&str> = notes.lines().collect();
    let distinct: BTreeSet<&str> = noted.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "every tick's step ran: {noted:?}");
    assert!(noted.len() <= ticks.len() + 1, "a step ran twice beyond one kill: {noted:?}");
    let schedules = store.saga_schedules().await.unwrap();
    assert_eq!(schedules.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["every"]);
    eprintln!("{} ticks, {} step runs", ticks.len(), noted.len());
}

/// Every worker down for 4 s with a grace of 1 s: a schedule that skips
/// leaves those ticks without a saga; one that catches up (as many as
/// missed) fires them all when a worker comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saga_schedule_missed_ticks_are_skipped_or_caught_up() {
    for (missed, expect_gap) in [(Missed::Skip, true), (Missed::CatchUp(100), false)] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ticks.log");
        let store = Store::open(dir.path().join("weir.db").to_str().unwrap()).await.unwrap();
        let schedule = every_second(missed, Duration::from_secs(1));
        let first = engine(store.clone(), log.clone(), Some(schedule.clone()), "first");
        first.resume().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        drop(first); // every worker down
        tokio::time::sleep(Duration::from_millis(4_000)).await;
        let back = engine(store.clone(), log.clone(), Some(schedule), "back");
        back.resume().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        drop(back);
        engine(store.clone(), log.clone(), None, "after").resume().await.unwrap();

        let (ticks, completed) = ticks(&store).await;
        assert!(completed, "{missed:?}");
        let gaps = gaps(&ticks);
        if expect_gap {
            assert!(gaps.iter().any(|(a, b)| b - a >= 3), "{missed:?}: the outage's ticks were fired: {ticks:?}");
        } else {
            assert_eq!(gaps, [], "{missed:?}: a missed tick not caught up: {ticks:?}");
        }
    }
}

/// A schedule must name a definition of its engine, once.
#[test]
fn saga_schedule_of_an_unknown_definition_is_refused() {
    let dir = std::env::temp_dir();
    let unknown = SagaSchedule::new("nightly", "0 2 * * *", "report").unwrap();
    let error = SagaEngine::builder(Store::memory())
        .definition(tick_definition(dir.join("unused.log")))
        .schedule(unknown)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("`report` of schedule `nightly`"), "{error}");
    let twice = SagaEngine::builder(Store::memory())
        .definition(tick_definition(dir.join("unused.log")))
        .schedule(every_second(Missed::Skip, Duration::from_secs(1)))
        .schedule(every_second(Missed::Skip, Duration::from_secs(1)))
        .build()
        .unwrap_err();
    assert!(twice.to_string().contains("register each schedule name once"), "{twice}");
}
