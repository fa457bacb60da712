//! Helpers shared by the behaviour tests: leak checks from the runtime's
//! count of alive tasks.

#![allow(dead_code)] // each test file uses a part

use std::time::Duration;

/// How many tasks the current runtime has alive.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Waits (up to 2 s of real time) until `done` holds: an aborted task is
/// dropped by a runtime thread shortly after the abort, and a finished
/// task's slot is released just after its `JoinHandle` resolves.
pub async fn settle(done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(feature = "sqlite")]
pub mod stores;
