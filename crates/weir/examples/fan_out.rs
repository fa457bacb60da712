//! Seed task 7: a stage fans out to 4 workers inside the pipeline's group;
//! if a worker fails, the stage fails and so does the run. A nested
//! `Group` shows the same with explicit tasks: its token derives from the
//! outer group's, and its error travels out through the outer task.

use weir::error::BoxError;
use weir::group::Group;
use weir::pipeline::{Pipeline, Stage};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Fan-out inside a pipeline stage, order kept.
    let (out, report) = Pipeline::from_iter(1..=20u64)
        .stage(Stage::map("square", |n: u64| async move { n * n }).workers(4).ordered())
        .collect()
        .await?;
    println!("squares: {out:?}");
    assert_eq!(out, (1..=20u64).map(|n| n * n).collect::<Vec<_>>());
    assert_eq!(report.stage("square").map(|s| s.workers), Some(4));

    // A failing worker fails the stage.
    let err = Pipeline::from_iter(1..=20u64)
        .stage(
            Stage::try_map("square", |n: u64| async move { if n == 13 { Err("unlucky") } else { Ok(n * n) } })
                .workers(4),
        )
        .collect()
        .await
        .unwrap_err();
    println!("with a failing worker: {err}");

    // The same with a nested group.
    let outer: Group<BoxError> = Group::new();
    let parent = outer.token();
    outer
        .spawn(async move {
            let inner: Group<BoxError> = Group::builder().parent(&parent).limit(4).build()?;
            for n in 1..=20u64 {
                inner
                    .spawn(async move { if n == 13 { Err(format!("worker for {n} failed").into()) } else { Ok(()) } })
                    .await;
            }
            inner.wait().await
        })
        .await;
    let nested = outer.wait().await.unwrap_err();
    println!("nested group: {nested}");
    assert_eq!(nested.to_string(), "worker for 13 failed");
    Ok(())
}
