//! A trip booked by a parent saga whose `pay` step runs a payment saga as
//! its child. trip-1's payment goes through and the trip is confirmed;
//! trip-2's payment needs a bank's confirmation (an event), so both sagas
//! park, holding no worker, until trip-2 is cancelled: the cancel reaches
//! the child, which undoes its charge, then the parent releases the seat.
//! Run it twice from the same steps: a child starts once, whatever
//! crashes, because its id is its parent's and the step's.

use std::time::Duration;

use weir::durable::saga::{CancelOutcome, OnTimeout, SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, Store};

fn say(what: &'static str) -> impl Fn(StepContext) -> futures_util::future::Ready<Result<(), StepError>> {
    move |ctx| {
        println!("  {}: {what}", ctx.saga_id());
        futures_util::future::ready(Ok(()))
    }
}

fn definitions() -> Result<[SagaDefinition; 2], weir::error::ConfigError> {
    let payment = SagaDefinition::builder("payment")
        .step(
            "charge",
            |ctx: StepContext| async move {
                let cents: u64 = ctx.input()?;
                println!("  {}: charge {cents} cents", ctx.saga_id());
                Ok::<_, StepError>(format!("ch_{cents}"))
            },
            say("compensate: refund the charge"),
        )
        .wait_event("bank", "bank-confirmed", Duration::from_secs(3600), OnTimeout::Compensate)
        .build()?;
    let trip = SagaDefinition::builder("trip")
        .step("seat", say("hold a seat"), say("compensate: release the seat"))
        .child("pay", "payment", |ctx| Ok(ctx.input::<u64>()? * 100))
        .step_without_compensation("confirm", |ctx: StepContext| async move {
            let paid: serde_json::Value = ctx.output("pay")?;
            println!("  {}: confirmed, paid by {}", ctx.saga_id(), paid["charge"]);
            Ok::<_, StepError>(())
        })
        .build()?;
    Ok([payment, trip])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("trips.db").to_str().ok_or("a UTF-8 path")?).await?;
    let [payment, trip] = definitions()?;
    let engine = SagaEngine::builder(store.clone()).definition(payment).definition(trip).build()?;

    println!("trip-1 and trip-2 start; each pays through a child saga, which waits for its bank");
    for id in ["trip-1", "trip-2"] {
        let parked = engine.run_with_id(id, "trip", &42).await.unwrap_err();
        assert!(parked.is_suspended());
        println!("  {parked}");
    }

    println!("the bank confirms trip-1's payment; its child completes and wakes its parent");
    engine.send_event("trip-1/pay", "bank-confirmed", &"ok").await?;
    while store.saga("trip-1").await?.ok_or("stored")?.status.is_active() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!("trip-2 is cancelled while its payment waits; the cancel reaches the child");
    match engine.cancel("trip-2", "the traveller cancelled").await? {
        CancelOutcome::RolledBack(how) => println!("  {how}"),
        other => return Err(format!("expected a rollback, got {other:?}").into()),
    }

    for (id, expected) in [
        ("trip-1", SagaStatus::Completed),
        ("trip-1/pay", SagaStatus::Completed),
        ("trip-2", SagaStatus::Compensated),
        ("trip-2/pay", SagaStatus::Compensated),
    ] {
        let saga = store.saga(id).await?.ok_or("stored")?;
        println!("{id}: {} (parent: {})", saga.status, saga.parent.as_deref().unwrap_or("none"));
        assert_eq!(saga.status, expected);
    }
    let trip1 = store.saga("trip-1").await?.ok_or("stored")?;
    assert_eq!(trip1.steps[1].output.as_ref().and_then(|o| o.get("charge")), Some(&serde_json::json!("ch_4200")));
    Ok(())
}
