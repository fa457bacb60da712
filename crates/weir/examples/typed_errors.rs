//! Bonus task 1: code that matched error strings, rewritten with typed
//! errors, and where the wrap chain must be kept.

use weir::error::{BoxError, find, is};

/// The sentinel, defined once and documented: the lookup found nothing.
#[derive(Debug, thiserror::Error)]
#[error("order {0} not found")]
struct NotFound(String);

/// A wrapper that keeps the chain: the cause is its `source()`.
#[derive(Debug, thiserror::Error)]
#[error("loading order for invoice {invoice}")]
struct LoadFailed {
    invoice: u32,
    #[source]
    source: BoxError,
}

fn lookup(id: &str) -> Result<u64, BoxError> {
    if id == "o-404" { Err(Box::new(NotFound(id.to_owned()))) } else { Ok(4200) }
}

/// Before: the error is flattened into a string; callers can only match
/// text ("not found"), which breaks as soon as the message changes.
fn load_stringly(invoice: u32, id: &str) -> Result<u64, String> {
    lookup(id).map_err(|e| format!("loading order for invoice {invoice}: {e}"))
}

/// After: the cause stays in the chain.
fn load_typed(invoice: u32, id: &str) -> Result<u64, LoadFailed> {
    lookup(id).map_err(|source| LoadFailed { invoice, source })
}

fn main() {
    // Before: string matching.
    let err = load_stringly(7, "o-404").unwrap_err();
    let missing_before = err.contains("not found");
    println!("stringly: {err:?}; matched by text: {missing_before}");

    // After: typed, found through the chain like Go's errors.Is / errors.As.
    let err = load_typed(7, "o-404").unwrap_err();
    println!("typed: {err}");
    assert!(is::<NotFound>(&err));
    let found = find::<NotFound>(&err).expect("the sentinel is in the chain");
    println!("found through the chain: {found} (order id {:?})", found.0);

    // Where the chain is lost: formatting the cause into a new message.
    let flattened: BoxError = format!("loading order: {}", load_typed(7, "o-404").unwrap_err()).into();
    assert!(!is::<NotFound>(&*flattened), "a formatted message keeps no chain");
    println!("after format!(): is::<NotFound> = {}", is::<NotFound>(&*flattened));
    assert!(load_typed(8, "o-1").is_ok());
}
