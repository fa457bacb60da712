//! A refund that waits: it holds the money, sleeps through a cooling-off
//! period, then waits up to a day for a person's approval. While it
//! sleeps or waits it is only a row in the database: no task, no lease,
//! no worker. Here the approval comes from a second handle on the same
//! file (another process would do the same: `weir sagas send-event
//! refund-1 approved --payload '"ana"'`), and a second refund whose
//! approval never comes is rolled back when its wait runs out.

use std::time::Duration;

use weir::durable::saga::{OnTimeout, SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, Store};

fn refund(approval_timeout: Duration) -> Result<SagaDefinition, weir::error::ConfigError> {
    SagaDefinition::builder("refund")
        .step(
            "hold",
            |ctx: StepContext| async move {
                println!("  {}: hold the refund", ctx.saga_id());
                Ok::<_, StepError>(())
            },
            |ctx: StepContext| async move {
                println!("  {}: compensate: release the hold", ctx.saga_id());
                Ok(())
            },
        )
        .sleep("cooling off", Duration::from_millis(200))
        .wait_event("approval", "approved", approval_timeout, OnTimeout::Compensate)
        .step_without_compensation("pay", |ctx: StepContext| async move {
            let approver: String = ctx.output("approval")?;
            println!("  {}: pay out, approved by {approver}", ctx.saga_id());
            Ok::<_, StepError>(())
        })
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("refunds.db");
    let store = Store::open(path.to_str().ok_or("a UTF-8 path")?).await?;
    let engine = SagaEngine::builder(store.clone()).definition(refund(Duration::from_secs(2))?).build()?;

    println!("refund-1 and refund-2 start; both go to sleep");
    for id in ["refund-1", "refund-2"] {
        let asleep = engine.run_with_id(id, "refund", &()).await.unwrap_err();
        assert!(asleep.is_suspended());
        println!("  {asleep}");
    }

    // Another process approves refund-1 (here: another handle on the file).
    let elsewhere = Store::open(path.to_str().ok_or("a UTF-8 path")?).await?;
    elsewhere.send_event("refund-1", "approved", &serde_json::json!("ana")).await?;
    println!("refund-1 approved by ana; refund-2 never is");

    // The engine's waker carries both on: refund-1 pays out, refund-2's
    // wait runs out after 2 s and it is rolled back.
    for id in ["refund-1", "refund-2"] {
        while store.saga(id).await?.ok_or("stored")?.status.is_active() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let one = store.saga("refund-1").await?.ok_or("stored")?;
    let two = store.saga("refund-2").await?.ok_or("stored")?;
    println!("refund-1: {}; refund-2: {} ({})", one.status, two.status, two.error.clone().unwrap_or_default());
    assert_eq!(one.status, SagaStatus::Completed);
    assert_eq!(two.status, SagaStatus::Compensated);
    assert!(two.error.unwrap_or_default().contains("no event `approved` arrived within 2s"));
    Ok(())
}
