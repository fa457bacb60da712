//! Crash tests for durable sagas (seed task 12: "kill the process between
//! steps, restart, observe completion"). The test re-runs its own binary as
//! a worker process, SIGKILLs it at chosen points (before a step's effect,
//! after the effect but before the step returns, inside compensations) and
//! at random moments, restarts it, and checks that every saga ended
//! completed or compensated and that no effect was applied twice.
#![cfg(all(feature = "sqlite", unix))]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::{Connection, Row};
use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, Store};

const SAGAS: u32 = 8;
/// The saga whose last step fails, so it is compensated.
const FAILING: u32 = 5;

/// Runs the worker when the harness starts this binary as one; a no-op in
/// a normal test run.
#[test]
fn crash_worker_entry() {
    let Ok(db) = std::env::var("WEIR_CRASH_WORKER_DB") else { return };
    let die_at = std::env::var("WEIR_DIE_AT").ok();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(worker(&db, die_at));
}

async fn worker(db: &str, die_at: Option<String>) {
    let store = Store::open(db).await.expect("open store");
    let effects = sqlx::SqlitePool::connect(&format!("sqlite://{db}")).await.expect("effects pool");
    sqlx::query("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY)").execute(&effects).await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS effect_log (key TEXT NOT NULL)").execute(&effects).await.unwrap();
    sqlx::query("CREATE TABLE IF NOT EXISTS calls (key TEXT NOT NULL)").execute(&effects).await.unwrap();
    let hooks = Hooks { effects, die_at };
    let mut builder = SagaDefinition::builder("order");
    for step in ["reserve", "charge", "ship"] {
        let (forward, undo) = (hooks.clone(), hooks.clone());
        builder =
            builder.step(step, move |ctx| forward.clone().apply(ctx), move |ctx| undo.clone().apply(ctx).map_ok());
    }
    let engine = SagaEngine::builder(store)
        .definition(builder.build().unwrap())
        .worker_id("crash-worker")
        .lease(Duration::from_secs(1))
        .build()
        .unwrap();
    engine.resume().await.expect("resume");
    let mut running = Vec::new();
    for n in 0..SAGAS {
        let engine = engine.clone();
        running.push(tokio::spawn(async move { engine.run_with_id(&format!("order-{n}"), "order", &n).await }));
    }
    for run in running {
        let _ = run.await.unwrap();
    }
}

#[derive(Clone)]
struct Hooks {
    effects: sqlx::SqlitePool,
    die_at: Option<String>,
}

trait MapOk {
    fn map_ok(self) -> futures_util::future::BoxFuture<'static, Result<(), StepError>>;
}

impl<F: std::future::Future<Output = Result<(), StepError>> + Send + 'static> MapOk for F {
    fn map_ok(self) -> futures_util::future::BoxFuture<'static, Result<(), StepError>> {
        Box::pin(self)
    }
}

impl Hooks {
    /// A step (or compensation): records the call, dies if told to, applies
    /// its effect once per idempotency key, dies if told to.
    async fn apply(self, ctx: StepContext) -> Result<(), StepError> {
        let saga: u32 = ctx.input()?;
        let key = ctx.idempotency_key();
        sqlx::query("INSERT INTO calls (key) VALUES (?1)").bind(&key).execute(&self.effects).await?;
        self.maybe_die(saga, ctx.step_name(), "before");
        if saga == FAILING && ctx.step_name() == "ship" {
            return Err(StepError::terminal("no courier"));
        }
        let mut tx = self.effects.begin().await?;
        let applied = sqlx::query("INSERT OR IGNORE INTO effects (key) VALUES (?1)")
            .bind(&key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if applied == 1 {
            sqlx::query("INSERT INTO effect_log (key) VALUES (?1)").bind(&key).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.maybe_die(saga, ctx.step_name(), "inside");
        Ok(())
    }

    fn maybe_die(&self, saga: u32, step: &str, phase: &str) {
        if self.die_at.as_deref() == Some(&format!("{saga}:{step}:{phase}")) {
            let _ = Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
            std::thread::sleep(Duration::from_secs(10));
            unreachable!("SIGKILL ends the process");
        }
    }
}

/// Starts the worker process on `db`, optionally told where to die.
fn spawn_worker(db: &Path, die_at: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "saga_crash::crash_worker_entry", "--nocapture", "--test-threads=1"])
        .env("WEIR_CRASH_WORKER_DB", db)
        .env_remove("WEIR_DIE_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(point) = die_at {
        cmd.env("WEIR_DIE_AT", point);
    }
    cmd.spawn().expect("spawn worker")
}

struct Counts {
    double_effects: i64,
    redeliveries: i64,
}

/// Checks every saga ended as it should and no effect was applied twice.
async fn verify(db: &Path) -> Counts {
    let store = Store::open(db.to_str().unwrap()).await.unwrap();
    for n in 0..SAGAS {
        let saga = store.saga(&format!("order-{n}")).await.unwrap().unwrap_or_else(|| panic!("saga {n} lost"));
        let expected = if n == FAILING { SagaStatus::Compensated } else { SagaStatus::Completed };
        assert_eq!(saga.status, expected, "saga {n}: {saga:?}");
    }
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let double_effects: i64 =
        sqlx::query("SELECT COUNT(*) FROM (SELECT key FROM effect_log GROUP BY key HAVING COUNT(*) > 1)")
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
    let keys: Vec<String> = sqlx::query("SELECT key FROM effects ORDER BY key")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for n in 0..SAGAS {
        let mine: Vec<&str> = keys
            .iter()
            .filter(|k| k.starts_with(&format!("order-{n}/")))
            .map(|k| k.split_once('/').unwrap().1)
            .collect();
        let expected: &[&str] = if n == FAILING {
            &["charge", "charge/undo", "reserve", "reserve/undo"]
        } else {
            &["charge", "reserve", "ship"]
        };
        assert_eq!(mine, expected, "effects of saga {n}");
    }
    let calls: i64 = sqlx::query("SELECT COUNT(*) FROM calls").fetch_one(&mut conn).await.unwrap().get(0);
    let distinct: i64 = sqlx::query("SELECT COUNT(DISTINCT key) FROM calls").fetch_one(&mut conn).await.unwrap().get(0);
    Counts { double_effects, redeliveries: calls - distinct }
}

fn kill_points() -> Vec<String> {
    let mut points = Vec::new();
    for saga in [0, 3, 7] {
        for step in ["reserve", "charge", "ship"] {
            for phase in ["before", "inside"] {
                points.push(format!("{saga}:{step}:{phase}"));
            }
        }
    }
    for step in ["reserve", "charge"] {
        for phase in ["before", "inside"] {
            points.push(format!("{FAILING}:{step}:{phase}"));
            points.push(format!("{FAILING}:{step}/undo:{phase}"));
        }
    }
    points.push(format!("{FAILING}:ship:before"));
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_step_boundary_and_at_random_moments_loses_nothing() {
    let (mut killed, mut double_effects, mut redeliveries) = (0, 0, 0);
    let points = kill_points();
    for point in &points {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weir.db");
        let status = spawn_worker(&db, Some(point)).wait().unwrap();
        assert_eq!(status.signal(), Some(9), "the worker died by SIGKILL at {point}");
        killed += 1;
        assert!(spawn_worker(&db, None).wait().unwrap().success(), "the restarted worker finished ({point})");
        let counts = verify(&db).await;
        double_effects += counts.double_effects;
        redeliveries += counts.redeliveries;
    }
    let mut rng = fastrand::Rng::with_seed(12);
    let mut random_kills = 0;
    for _ in 0..25 {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weir.db");
        for _ in 0..3 {
            let mut child = spawn_worker(&db, None);
            std::thread::sleep(Duration::from_millis(rng.u64(5..120)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                random_kills += 1;
            }
            let _ = child.wait();
        }
        assert!(spawn_worker(&db, None).wait().unwrap().success());
        let counts = verify(&db).await;
        double_effects += counts.double_effects;
        redeliveries += counts.redeliveries;
    }
    println!(
        "kill points: {} chosen + {random_kills} random survived; sagas lost: 0; double effects: {double_effects}; redelivered step calls: {redeliveries}",
        killed
    );
    assert!(killed + random_kills >= 50, "at least 50 kills: {killed} + {random_kills}");
    assert_eq!(double_effects, 0);
}
