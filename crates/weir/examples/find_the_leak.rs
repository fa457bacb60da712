//! Bonus task 2: pipelines that "work" but leave a task behind on every
//! run — a sender never dropped, a cancellation ignored, a task never
//! joined — each caught by `LeakCheck`, and the fixed version with weir's
//! `Group` passing it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weir::group::Group;
use weir::testing::LeakCheck;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Leak 1: the producer keeps a clone of the sender, so the consumer's
/// `recv` never sees the channel close and waits forever.
async fn missing_close() -> u64 {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(8);
    let keep = tx.clone(); // the bug: never dropped
    tokio::spawn(async move {
        let _keep = keep;
        for n in 1..=5 {
            let _ = tx.send(n).await;
        }
        std::future::pending::<()>().await;
    });
    let mut sum = 0;
    for _ in 0..5 {
        sum += rx.recv().await.unwrap_or_default();
    }
    sum
}

/// Leak 2: a worker loop that never looks at the cancellation token.
async fn ignored_cancel() {
    let token = CancellationToken::new();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await; // the bug: no `token.cancelled()` here
        }
    });
    token.cancel();
}

/// Leak 3: a task spawned and never joined or aborted.
async fn unjoined() {
    let _handle = tokio::spawn(async { std::future::pending::<()>().await });
}

/// The fix: every task in a Group, which joins them in `wait` and aborts
/// them on the first error or when dropped.
async fn fixed() -> Result<u64, BoxError> {
    let group: Group<BoxError> = Group::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(8);
    let (total_tx, total_rx) = tokio::sync::oneshot::channel();
    group
        .spawn(async move {
            for n in 1..=5 {
                tx.send(n).await?;
            }
            Ok(()) // tx dropped here: the channel closes
        })
        .await;
    group
        .spawn(async move {
            let mut sum = 0;
            while let Some(n) = rx.recv().await {
                sum += n;
            }
            let _ = total_tx.send(sum);
            Ok(())
        })
        .await;
    group.wait().await?;
    Ok(total_rx.await?)
}

#[tokio::main]
async fn main() {
    let check = LeakCheck::start();
    assert_eq!(missing_close().await, 15, "it works…");
    let leak = check.finish().await.unwrap_err();
    println!("missing close: {leak}");

    let check = LeakCheck::start();
    ignored_cancel().await;
    println!("ignored cancel: {}", check.finish().await.unwrap_err());

    let check = LeakCheck::start();
    unjoined().await;
    println!("unjoined task: {}", check.finish().await.unwrap_err());

    let check = LeakCheck::start();
    assert_eq!(fixed().await.expect("runs"), 15);
    check.finish().await.expect("the fixed pipeline leaves nothing behind");
    println!("fixed with a Group: no task left");
}
