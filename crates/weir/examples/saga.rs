//! Seed task 11: a saga of three steps (reserve inventory, charge payment,
//! create shipment). Step 3 fails, so the compensations of steps 2 and 1
//! run in reverse; the refund fails too, and both errors are reported. The
//! second order goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, Store};

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: u32,
    cents: u64,
    address: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let refunds_down = Arc::new(AtomicBool::new(true));
    let down = refunds_down.clone();
    let order = SagaDefinition::builder("order")
        .step(
            "reserve",
            |ctx: StepContext| async move {
                let order: Order = ctx.input()?;
                println!("  reserve inventory for order {} (key {})", order.id, ctx.idempotency_key());
                Ok::<_, StepError>(format!("reservation-{}", order.id))
            },
            |ctx: StepContext| async move {
                let reservation: String = ctx.output("reserve")?;
                println!("  compensate: release {reservation}");
                Ok(())
            },
        )
        .step(
            "charge",
            |ctx: StepContext| async move {
                let order: Order = ctx.input()?;
                println!("  charge {} cents", order.cents);
                Ok::<_, StepError>(format!("payment-{}", order.id))
            },
            move |ctx: StepContext| {
                let down = down.load(Ordering::SeqCst);
                async move {
                    let payment: String = ctx.output("charge")?;
                    println!("  compensate: refund {payment} (attempt {})", ctx.attempt());
                    if down { Err(StepError::terminal("refund service unavailable")) } else { Ok(()) }
                }
            },
        )
        .step(
            "ship",
            |ctx: StepContext| async move {
                let order: Order = ctx.input()?;
                match order.address {
                    Some(address) => {
                        println!("  ship to {address}");
                        Ok(())
                    }
                    None => Err(StepError::terminal(format!("order {} has no shipping address", order.id))),
                }
            },
            |_| async { Ok(()) },
        )
        .build()?;
    let store = Store::memory();
    let engine = SagaEngine::builder(store.clone()).definition(order).build()?;

    println!("order 1 (no address):");
    let err = engine.run("order", &Order { id: 1, cents: 4200, address: None }).await.unwrap_err();
    println!("=> {err}");
    assert!(err.is_failed());
    assert_eq!(err.compensation_errors().map(|e| e.len()), Some(1));
    assert_eq!(store.saga(err.saga_id()).await?.map(|s| s.status), Some(SagaStatus::Failed));

    refunds_down.store(false, Ordering::SeqCst);
    println!("order 2 (no address, refunds back up):");
    let err = engine.run("order", &Order { id: 2, cents: 990, address: None }).await.unwrap_err();
    println!("=> {err}");
    assert!(err.is_compensated());

    println!("order 3:");
    let id = engine.run("order", &Order { id: 3, cents: 1500, address: Some("1 Main St".into()) }).await?;
    println!("=> saga {id} completed");
    Ok(())
}
