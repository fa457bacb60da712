//! End-to-end tests of the `weir` binary: state made with the library (as
//! an application would), looked at and changed with the command, on
//! SQLite and (with `WEIR_TEST_POSTGRES_URL`) PostgreSQL. One test binary,
//! a module per command group.

mod browser;
mod cursors;
mod dlq;
mod dlq_nats;
mod errors;
mod queues;
mod sagas;
mod ui;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::Store;
use weir::policy::Stack;

/// A database the command is pointed at: its options and a library handle.
pub struct Target {
    pub args: Vec<String>,
    pub store: Store,
    _guard: Guard,
}

enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin: String, name: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { admin, name } = self {
            let (admin, name) = (admin.clone(), name.clone());
            // A runtime of its own: the test's may be shutting down.
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join()
            .unwrap();
        }
    }
}

/// A fresh SQLite file, and a fresh PostgreSQL database when
/// `WEIR_TEST_POSTGRES_URL` is set.
pub async fn targets(test: &str) -> Vec<Target> {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("app.db");
    let store = Store::sqlite(&path).await.unwrap();
    let mut targets =
        vec![Target { args: vec!["--db".into(), path.display().to_string()], store, _guard: Guard::Dir(dir) }];
    match std::env::var("WEIR_TEST_POSTGRES_URL") {
        Err(_) => eprintln!("{test}: PostgreSQL skipped: set WEIR_TEST_POSTGRES_URL to run it there too"),
        Ok(admin) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to WEIR_TEST_POSTGRES_URL");
            let name = format!("weir_cmd_test_{}_{:08x}", std::process::id(), fastrand::u32(..));
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
            let url = format!("{}/{name}", admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin));
            let store = Store::open(&url).await.unwrap();
            targets.push(Target {
                args: vec!["--database-url".into(), url],
                store,
                _guard: Guard::Postgres { admin, name },
            });
        }
    }
    targets
}

/// Runs `weir ARGS` (off the runtime's threads).
pub async fn weir(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_weir")).args(&args).output().unwrap())
        .await
        .unwrap()
}

/// Runs `weir ARGS` on `target`.
pub async fn weir_on(target: &Target, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(target.args.iter().map(String::as_str));
    weir(&all).await
}

/// Runs `weir ARGS` on `target`; it must succeed; its stdout.
pub async fn ok(target: &Target, args: &[&str]) -> String {
    let out = weir_on(target, args).await;
    assert!(out.status.success(), "weir {args:?}: {:?}: {}", out.status, stderr(&out));
    stdout(&out)
}

/// Runs `weir ARGS --json` on `target`; it must succeed; its JSON.
pub async fn json(target: &Target, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok(target, &all).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("weir {args:?} --json: {e}: {text}"))
}

/// Runs `weir ARGS` on `target`; it must fail with `code`; its stderr.
pub async fn fails(target: &Target, args: &[&str], code: i32) -> String {
    let out = weir_on(target, args).await;
    assert_eq!(out.status.code(), Some(code), "weir {args:?}: {}{}", stdout(&out), stderr(&out));
    stderr(&out)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An application's engine: an `order` saga whose `ship` step fails for
/// input `"fail"`, and whose `reserve` compensation fails while
/// `undo_fails` is set; a `refund` saga of one step.
pub fn engine(store: &Store, undo_fails: Arc<AtomicBool>) -> SagaEngine {
    let order = SagaDefinition::builder("order")
        .step(
            "reserve",
            |_| async { Ok::<_, StepError>(serde_json::json!({"bin": 4})) },
            move |_| {
                let fails = undo_fails.load(Ordering::SeqCst);
                async move { if fails { Err(StepError::terminal("warehouse down")) } else { Ok(()) } }
            },
        )
        .step(
            "ship",
            |ctx: StepContext| async move {
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
