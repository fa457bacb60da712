//! Seed task 17: a consumer reads events from an append-only JSONL file,
//! saving its cursor (a byte offset) every 100 events. The first run's
//! handler fails at event 250: the consumer saves the progress it made in
//! order (through event 249) and stops; the second run resumes there, so
//! event 250 is delivered again and nothing is lost. (After a real crash —
//! SIGKILL — up to one checkpoint interval is delivered again; the test
//! `sigkill_mid_stream_loses_no_event_and_bounds_redelivery` shows it.)

use weir::durable::checkpoint::{CursorConsumer, JsonlFileSource};
use weir::durable::store::Store;
use weir::error::BoxError;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("weir-cursor-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let events = dir.join("events.jsonl");
    std::fs::write(
        &events,
        (1..=1000).map(|i| format!("{{\"id\":{i},\"kind\":\"order-created\"}}\n")).collect::<String>(),
    )?;
    let store = Store::open(dir.join("state.db").to_str().expect("utf-8")).await?;
    let consumer = CursorConsumer::builder(store.clone(), "orders").every(100).build()?;
    let mut source = JsonlFileSource::<serde_json::Value>::new(&events);
    let mut seen = Vec::new();

    let crash = consumer
        .run(&mut source, |e| {
            let id = e["id"].as_u64().unwrap_or_default();
            seen.push(id);
            async move { if id == 250 { Err::<(), BoxError>("simulated crash at event 250".into()) } else { Ok(()) } }
        })
        .await
        .unwrap_err();
    println!("first run: {crash}");
    let cursor = store.cursor("orders").await?;
    println!("saved cursor: byte {}", cursor.clone().unwrap_or_default());

    let report = consumer
        .run(&mut source, |e| {
            seen.push(e["id"].as_u64().unwrap_or_default());
            async { Ok::<(), BoxError>(()) }
        })
        .await?;
    println!(
        "second run: {} events, {} checkpoints, cursor now byte {}",
        report.processed, report.checkpoints, report.saved_at
    );
    let redelivered = seen.len() - 1000;
    println!("every event seen at least once: {}; redelivered: {redelivered}", (1..=1000).all(|i| seen.contains(&i)));
    assert!(redelivered <= 100);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
