//! Seed task 5: a process that fails the first two times for each item,
//! then succeeds, retried with exponential backoff (3 attempts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::pipeline::{Pipeline, Stage};
use weir::policy::retry::RetryPolicy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let attempts: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let seen = Arc::clone(&attempts);
    let process = move |item: u32| {
        let seen = Arc::clone(&seen);
        async move {
            let mut seen = seen.lock().expect("not poisoned");
            let n = seen.entry(item).or_insert(0);
            *n += 1;
            if *n <= 2 { Err(format!("item {item}: transient failure {n}")) } else { Ok(item * 10) }
        }
    };
    let policy = RetryPolicy::builder().max_attempts(3).initial_delay(Duration::from_millis(5)).build()?;
    let (out, report) =
        Pipeline::from_iter(1..=5u32).stage(Stage::try_map("process", process).retry(policy)).collect().await?;
    println!("results: {out:?}");
    println!("{report}");
    assert_eq!(out, [10, 20, 30, 40, 50]);
    assert_eq!(report.stage("process").map(|s| s.retries), Some(10));
    Ok(())
}
