//! A saga on a cron schedule, fired by two workers sharing one database:
//! every tick starts exactly one saga (its id is the schedule's name and
//! the tick's time), whichever worker gets there first. Here the pattern
//! ticks every second; a real one would be `0 2 * * *` (02:00 UTC daily).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::durable::saga::{Missed, SagaDefinition, SagaEngine, SagaSchedule, StepContext, StepError};
use weir::durable::store::{SagaQuery, SagaStatus, Store};

fn report(ran: Arc<Mutex<Vec<String>>>) -> Result<SagaDefinition, weir::error::ConfigError> {
    SagaDefinition::builder("report")
        .step_without_compensation("build", move |ctx: StepContext| {
            let tick: String = ctx.input::<serde_json::Value>().map(|v| v["tick"].to_string()).unwrap_or_default();
            println!("  {} builds the report for tick {tick}", ctx.saga_id());
            ran.lock().unwrap().push(ctx.saga_id().to_owned());
            async { Ok::<_, StepError>(()) }
        })
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("reports.db");
    let path = path.to_str().ok_or("a UTF-8 path")?;
    let ran = Arc::new(Mutex::new(Vec::new()));
    let schedule = SagaSchedule::new("reports", "* * * * * *", "report")?.missed(Missed::CatchUp(1));

    // Two workers, each with its own connection, both firing the schedule.
    let mut workers = Vec::new();
    for name in ["worker-a", "worker-b"] {
        let store = Store::open(path).await?;
        let engine = SagaEngine::builder(store)
            .definition(report(ran.clone())?)
            .schedule(schedule.clone())
            .worker_id(name)
            .build()?;
        engine.resume().await?; // starts its background work: heartbeat, scheduler
        workers.push(engine);
    }
    // Wait for three ticks to finish (a loaded machine may be slow: the
    // deadline is generous, the wait ends as soon as they are done).
    let store = Store::open(path).await?;
    let query = SagaQuery::new().definition("report").status(SagaStatus::Completed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store.find_sagas(&query).await?.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "three ticks within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(workers);

    let completed = store.find_sagas(&query).await?;
    let ran = ran.lock().unwrap().clone();
    println!("{} ticks completed, one saga each, {} step runs", completed.len(), ran.len());
    let distinct: std::collections::BTreeSet<&String> = ran.iter().collect();
    assert_eq!(distinct.len(), ran.len(), "no tick ran twice");
    assert!(completed.iter().all(|s| distinct.contains(&s.id)), "each completed tick ran its step");
    Ok(())
}
