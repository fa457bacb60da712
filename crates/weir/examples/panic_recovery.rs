//! Seed task 13: a stage panics on one item; the panic becomes that item's
//! error (the process does not crash), the other items flow on, and a
//! panicking task of a `Group` becomes a `Panicked` error that cancels
//! its siblings, which exit cleanly.

use weir::error::{BoxError, Panicked, find};
use weir::group::Group;
use weir::pipeline::{OnError, Pipeline, Stage};

#[tokio::main]
async fn main() {
    // In a pipeline: the panic fails one item; with Skip the run goes on.
    let (out, report) = Pipeline::from_iter(0..10u32)
        .stage(
            Stage::map("risky", |n: u32| async move {
                assert!(n != 7, "cannot handle item {n}");
                n
            })
            .on_error(OnError::Skip),
        )
        .collect()
        .await
        .expect("skipped, not failed");
    println!("items through: {}; {report}", out.len());
    assert_eq!(report.stage("risky").map(|s| s.skipped), Some(1));

    // With the default policy the run stops and names the item.
    let err = Pipeline::from_iter(0..10u32)
        .map("risky", |n: u32| async move {
            assert!(n != 7, "cannot handle item {n}");
            n
        })
        .collect()
        .await
        .unwrap_err();
    println!("{err}");
    assert!(find::<Panicked>(&err).is_some());

    // In a group: the panic is an error naming the task.
    let group: Group<BoxError> = Group::new();
    let token = group.token();
    group
        .spawn_named("sibling", async move {
            token.cancelled().await;
            Ok(())
        })
        .await;
    group.spawn_named("parser", async { panic!("unexpected byte 0xff") }).await;
    let err = group.wait().await.unwrap_err();
    println!("group: {err}");
    let panic = err.downcast_ref::<Panicked>().expect("a Panicked");
    assert_eq!(panic.task().unwrap().name(), Some("parser"));
}
