use std::error::Error;

use super::{BoxError, Errors, StageError};

/// Iterates over `err` and every error in its `source()` chain, outermost
/// first.
///
/// Works for any `&dyn Error`, so also for a `Box<dyn Error + Send + Sync>`
/// (`chain(&*boxed)`) and an `anyhow::Error` (`chain(err.as_ref())`).
/// An aggregate ([`Errors`]) ends its own chain; [`find`] and [`is`] look
/// inside it.
///
/// # Examples
/// ```
/// use weir::error::{chain, Skip, StageError};
/// let err = StageError::builder("parse", Skip).index(3).build();
/// let messages: Vec<String> = chain(&err).map(|e| e.to_string()).collect();
/// assert_eq!(messages, ["stage `parse` failed on item 3: item skipped", "item skipped"]);
/// ```
pub fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// Finds the first error of type `T` in `err`'s `source()` chain: Go's
/// `errors.As`.
///
/// weir's own wrappers ([`StageError`], [`Cancelled`](super::Cancelled),
/// the retry errors) expose their cause through `source()`, so a sentinel
/// returned from deep inside a stage is found from the pipeline's error.
/// Like Go's `errors.As` on a joined error, it also searches every entry of
/// an [`Errors<StageError>`](Errors) or `Errors<BoxError>` met on the way
/// (depth first, in order).
///
/// # Examples
/// ```
/// use weir::error::{find, StageError};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("negative number {0}")]
/// struct Negative(i64);
///
/// let err = StageError::builder("produce", Negative(-1)).index(2).build();
/// let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
/// assert_eq!(find::<Negative>(&*boxed).map(|n| n.0), Some(-1));
/// ```
pub fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    for link in chain(err) {
        if let Some(found) = link.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(found) = find_in_aggregate::<T>(link) {
            return Some(found);
        }
    }
    None
}

fn find_in_aggregate<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    if let Some(all) = err.downcast_ref::<Errors<StageError>>() {
        return all.errors().find_map(|e| find::<T>(e));
    }
    if let Some(all) = err.downcast_ref::<Errors<BoxError>>() {
        return all.errors().find_map(|e| find::<T>(&**e));
    }
    None
}

/// Tells whether `err`'s `source()` chain holds an error of type `T`: Go's
/// `errors.Is` for sentinel types. Searches aggregates as [`find`] does.
///
/// # Examples
/// ```
/// use weir::error::{is, Skip, StageError};
/// let err = StageError::builder("filter", Skip).build();
/// assert!(is::<Skip>(&err));
/// assert!(!is::<std::io::Error>(&err));
/// ```
pub fn is<T: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    find::<T>(err).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Origin, Skip};

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] BoxError);

    #[test]
    fn find_walks_through_boxes_and_wrappers() {
        let inner = StageError::builder("s", std::io::Error::other("io")).build();
        let outer = Wrapper(Box::new(inner));
        assert!(is::<std::io::Error>(&outer));
        assert_eq!(find::<StageError>(&outer).map(StageError::stage), Some("s"));
        assert!(!is::<Skip>(&outer));
    }

    #[test]
    fn find_searches_every_entry_of_an_aggregate() {
        let mut all = Errors::new();
        all.push(Origin::Unattributed, StageError::builder("a", std::io::Error::other("x")).build());
        all.push(Origin::Unattributed, StageError::builder("b", Skip).build());
        let outer = Wrapper(Box::new(all));
        assert!(is::<Skip>(&outer));
        assert!(is::<std::io::Error>(&outer));
    }

    #[test]
    fn find_searches_boxed_aggregates() {
        let mut all: Errors<BoxError> = Errors::new();
        all.push(Origin::Unattributed, "plain".into());
        all.push(Origin::Unattributed, Box::new(Skip));
        assert!(is::<Skip>(&all));
    }

    #[test]
    fn find_works_through_anyhow() {
        let err = anyhow::Error::new(StageError::builder("s", Skip).build()).context("outer");
        assert!(is::<Skip>(err.as_ref()));
    }
}
