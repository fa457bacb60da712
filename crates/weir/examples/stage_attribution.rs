//! Seed task 9: three stages (parse, transform, store); each failure is a
//! `StageError` naming its stage, item, key and attempt, found with `find`
//! like Go's `errors.As`. Also shows `OnError::Collect`: the run goes on
//! and the report accounts for every line.

use weir::error::{StageError, find};
use weir::pipeline::{OnError, Pipeline, Stage};

#[derive(Debug, Clone)]
struct Order {
    id: String,
    cents: u64,
}

fn parse(line: String) -> Result<Order, String> {
    let (id, cents) = line.split_once(',').ok_or_else(|| format!("no comma in {line:?}"))?;
    let cents = cents.trim().parse().map_err(|e| format!("bad amount {cents:?}: {e}"))?;
    Ok(Order { id: id.trim().to_owned(), cents })
}

#[tokio::main]
async fn main() {
    let input = ["o-1, 1200", "o-2, 99", "garbage", "o-4, 4500000", "o-5, 700"].map(String::from);
    let stored = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&stored);
    let err = Pipeline::from_iter(input)
        .stage(Stage::try_map("parse", |line: String| async move { parse(line) }).on_error(OnError::Collect))
        .stage(
            Stage::try_map("transform", |o: Order| async move {
                if o.cents > 1_000_000 {
                    Err(format!("amount {} over the limit", o.cents))
                } else {
                    Ok(Order { cents: o.cents * 2, ..o })
                }
            })
            .key(|o| o.id.clone())
            .on_error(OnError::Collect),
        )
        .stage(Stage::map("store", move |o: Order| {
            sink.lock().expect("not poisoned").push(o.id.clone());
            async move { o }
        }))
        .collect()
        .await
        .unwrap_err();
    println!("{err}\n");
    println!("{}", err.report());
    let first = find::<StageError>(&err).expect("a StageError in the chain");
    println!("\nfirst failure: stage `{}`, {}", first.stage(), first.item());
    let failures = err.collected().expect("collected failures");
    let stages: Vec<&str> = failures.errors().map(StageError::stage).collect();
    assert_eq!(stages.len(), 2);
    assert!(stages.contains(&"parse") && stages.contains(&"transform"));
    assert_eq!(stored.lock().expect("not poisoned").len(), 3);
    assert!(err.report().is_balanced(), "every line is accounted for");
}
