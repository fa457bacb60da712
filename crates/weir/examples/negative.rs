//! Seed task 2: a negative number makes the producer fail with a sentinel
//! error; the consumer stops; the caller finds the sentinel through the
//! chain (Go's `errors.Is`).

use weir::error::{BoxError, find, is};
use weir::group::Group;

/// The sentinel: a negative number was seen.
#[derive(Debug, thiserror::Error)]
#[error("negative number {0} at position {1}")]
struct Negative(i64, usize);

/// The wrapper the producer adds at its boundary (Go's `%w`).
#[derive(Debug, thiserror::Error)]
#[error("producer failed")]
struct ProducerFailed(#[source] Negative);

async fn sum(nums: Vec<i64>) -> Result<i64, BoxError> {
    let group: Group<BoxError> = Group::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let (total_tx, total_rx) = tokio::sync::oneshot::channel();
    group
        .spawn(async move {
            for (i, n) in nums.into_iter().enumerate() {
                if n < 0 {
                    return Err(ProducerFailed(Negative(n, i)).into());
                }
                tx.send(n).await?;
            }
            Ok(())
        })
        .await;
    group
        .spawn(async move {
            let mut total = 0;
            while let Some(n) = rx.recv().await {
                total += n;
            }
            let _ = total_tx.send(total);
            Ok(())
        })
        .await;
    group.wait().await?;
    Ok(total_rx.await?)
}

#[tokio::main]
async fn main() {
    let err = sum(vec![1, 2, -1, 4]).await.unwrap_err();
    println!("error: {err}");
    let negative = find::<Negative>(&*err).expect("the sentinel is in the chain");
    println!("found through the chain: {negative}");
    assert!(is::<Negative>(&*err));
    assert_eq!(negative.0, -1);
    assert_eq!(sum(vec![1, 2, 3]).await.unwrap(), 6);
    println!("without negatives: 6");
}
