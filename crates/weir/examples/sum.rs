//! Seed task 1: a producer sends 1..=5 over a channel, a consumer adds them
//! up, a `Group` joins both. Prints 15.

use weir::group::Group;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn sum(nums: Vec<i64>) -> Result<i64, BoxError> {
    let group: Group<BoxError> = Group::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let (total_tx, total_rx) = tokio::sync::oneshot::channel();
    group
        .spawn(async move {
            for n in nums {
                tx.send(n).await?; // the sender is dropped at the end: the channel closes
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
async fn main() -> Result<(), BoxError> {
    let total = sum(vec![1, 2, 3, 4, 5]).await?;
    println!("sum of [1, 2, 3, 4, 5] = {total}");
    assert_eq!(total, 15);
    Ok(())
}
