//! Seed task 12: a saga persisted to SQLite survives a crash.
//!
//! Run with no arguments for the whole story: the example starts itself as
//! a child process that runs an order saga and is killed (SIGKILL) right
//! after the payment step's effect, then resumes the saga from the file and
//! shows that it completed, with the payment step run again under the same
//! idempotency key (so a real payment API would not charge twice).
//!
//! Or step by step:
//! ```text
//! cargo run -p weir --example saga_persistent -- run    /tmp/orders.db   # dies inside "charge"
//! cargo run -p weir --example saga_persistent -- show   /tmp/orders.db   # running, 1 step done
//! cargo run -p weir --example saga_persistent -- resume /tmp/orders.db   # completes it
//! cargo run -p weir --example saga_persistent -- show   /tmp/orders.db   # completed
//! ```

use std::time::Duration;

use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::Store;

fn order_saga(crash_in_charge: bool) -> SagaDefinition {
    let step = move |name: &'static str| {
        move |ctx: StepContext| async move {
            println!("  {name}: effect with idempotency key {}", ctx.idempotency_key());
            if crash_in_charge && name == "charge" {
                println!("  (crashing: SIGKILL before the step's transition is written)");
                let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok::<_, StepError>(())
        }
    };
    SagaDefinition::builder("order")
        .step("reserve", step("reserve"), |_| async { Ok(()) })
        .step("charge", step("charge"), |_| async { Ok(()) })
        .step("ship", step("ship"), |_| async { Ok(()) })
        .build()
        .expect("valid definition")
}

async fn engine(db: &str, crash: bool) -> SagaEngine {
    let store = Store::open(db).await.expect("open the database");
    // A stable worker id: the restarted worker takes its sagas back at once.
    SagaEngine::builder(store).definition(order_saga(crash)).worker_id("example-worker").build().expect("valid")
}

async fn show(db: &str) {
    let store = Store::open(db).await.expect("open the database");
    for saga in store.sagas(None, 10).await.expect("read") {
        let steps: Vec<String> =
            saga.steps.iter().map(|s| format!("{}={:?}(x{})", s.name, s.status, s.attempts)).collect();
        println!("  saga {} [{}]: {}", saga.id, saga.status, steps.join(" "));
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["run", db] => {
            let _ = engine(db, true).await.run_with_id("order-1", "order", &"order-1").await;
        }
        ["resume", db] => {
            let report = engine(db, false).await.resume().await.expect("resume");
            println!("  resumed {}, completed {}", report.resumed, report.completed);
        }
        ["show", db] => show(db).await,
        [] => {
            let dir = std::env::temp_dir().join(format!("weir-saga-persistent-{}", std::process::id()));
            let db = dir.join("orders.db");
            let db = db.to_str().expect("utf-8 path");
            println!("1. run the saga in a child process, which dies inside `charge`:");
            let status = std::process::Command::new(std::env::current_exe().expect("own path"))
                .args(["run", db])
                .status()
                .expect("child");
            println!("   child exited with {status}");
            println!("2. what the database holds:");
            show(db).await;
            println!("3. a fresh engine on the same file resumes it, as after a restart:");
            let report = engine(db, false).await.resume().await.expect("resume");
            println!("  resumed {}, completed {}", report.resumed, report.completed);
            show(db).await;
            assert_eq!(report.completed, 1);
            let _ = std::fs::remove_dir_all(dir);
        }
        _ => {
            eprintln!("usage: saga_persistent [run|resume|show DB]");
            std::process::exit(2);
        }
    }
}
