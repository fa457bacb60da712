//! Seed task 4: stage 1 produces 1000 items, stage 2 fails on item 500.
//! The error reaches the caller and every task exits: the runtime's count
//! of alive tasks is the same before and after.

use weir::pipeline::{Pipeline, Stage};

#[tokio::main]
async fn main() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let err = Pipeline::builder()
        .capacity(16)
        .from_iter(0..1000u32)
        .stage(Stage::map("produce", |n: u32| async move { n }))
        .stage(Stage::try_map("validate", |n: u32| async move {
            if n == 500 { Err(format!("item {n} is corrupt")) } else { Ok(n) }
        }))
        .for_each(|_| async { Ok::<(), std::convert::Infallible>(()) })
        .await
        .unwrap_err();
    println!("error: {err}");
    println!("report:\n{}", err.report());
    // Task slots are released by the runtime just after the tasks end.
    let mut after = metrics.num_alive_tasks();
    for _ in 0..1000 {
        if after == before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        after = metrics.num_alive_tasks();
    }
    println!("alive tasks before: {before}, after: {after}");
    assert_eq!(err.stage_error().map(|e| e.item().index()), Some(Some(500)));
    assert!(err.report().source_emitted < 1000, "the producer stopped early");
    assert_eq!(before, after, "no task leaked");
}
