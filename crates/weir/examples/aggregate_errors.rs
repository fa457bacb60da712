//! Seed task 8: process every item in parallel, keep going when some fail,
//! and return every error with the task that produced it (Go's
//! `errors.Join`).

use weir::error::BoxError;
use weir::group::Group;

#[derive(Debug)]
struct Item {
    id: u32,
    price_cents: i64,
}

async fn process(item: Item) -> Result<(), BoxError> {
    tokio::task::yield_now().await;
    if item.price_cents < 0 {
        return Err(format!("item {}: negative price {}", item.id, item.price_cents).into());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let items = (1..=8).map(|id| Item { id, price_cents: if id % 3 == 0 { -1 } else { 100 * i64::from(id) } });
    let group = Group::<BoxError>::builder().limit(4).build_collect().expect("valid settings");
    for item in items {
        group.spawn_named(format!("item {}", item.id), process(item)).await;
    }
    let mut errors = group.wait().await.unwrap_err();
    errors.sort_by_key(|origin, _| origin.to_string());
    println!("{errors}");
    assert_eq!(errors.len(), 2);
    assert!(errors.errors().all(|e| e.to_string().contains("negative price")));
}
