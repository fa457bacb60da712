//! One file per command group; each opens its store through
//! [`crate::store::open`] and uses weir's public API only.

pub mod cursors;
pub mod dlq;
pub mod dlq_nats;
pub mod queues;
pub mod sagas;

/// The line that ends a full page: how to ask for the next one.
fn next_page(shown: usize, limit: u64, after: &str) {
    if shown as u64 == limit {
        println!("(more may follow: pass --after {after} for the next page)");
    }
}
