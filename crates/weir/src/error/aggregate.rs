use std::fmt;
use std::sync::Arc;

use super::TaskId;

/// Where an error in an [`Errors`] aggregate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A task of a group.
    Task(TaskId),
    /// A pipeline stage (the error itself, a [`StageError`](super::StageError), names the item).
    Stage(Arc<str>),
    /// An attempt of a hedged call, from 0.
    Attempt(u32),
    /// Added by the caller without an origin.
    Unattributed,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Task(task) => task.fmt(f),
            Origin::Stage(stage) => write!(f, "stage `{stage}`"),
            Origin::Attempt(n) => write!(f, "attempt {n}"),
            Origin::Unattributed => f.write_str("-"),
        }
    }
}

/// Every error of a run that kept going, each with its origin: Go's
/// `errors.Join` that remembers who failed.
///
/// Displays as a count and then one error per line. It is itself an
/// [`Error`](std::error::Error) (for any displayable `E`, including
/// `anyhow::Error` and `Box<dyn Error>`), so it travels through `?`.
///
/// `source()` is `None`: an aggregate has many causes, not one. To look for
/// a type among them, iterate, or use [`find`](super::find) /
/// [`is`](super::is), which search every entry of an `Errors<StageError>`
/// or `Errors<BoxError>` they meet.
///
/// # Examples
/// ```
/// use weir::error::{Errors, Origin};
/// let mut errors = Errors::new();
/// errors.push(Origin::Unattributed, "first");
/// errors.push(Origin::Unattributed, "second");
/// assert_eq!(errors.len(), 2);
/// assert_eq!(errors.to_string(), "2 errors:\n  -: first\n  -: second");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors<E> {
    entries: Vec<(Origin, E)>,
}

impl<E> Default for Errors<E> {
    fn default() -> Self {
        Self { entries: Vec::new() }
    }
}

impl<E> Errors<E> {
    /// An empty aggregate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an error with its origin. Order is kept.
    pub fn push(&mut self, origin: Origin, error: E) {
        self.entries.push((origin, error));
    }

    /// How many errors it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no error.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The errors with their origins, in the order they were added.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Origin, &E)> {
        self.entries.iter().map(|(origin, error)| (origin, error))
    }

    /// The errors alone, in order.
    pub fn errors(&self) -> impl ExactSizeIterator<Item = &E> {
        self.entries.iter().map(|(_, error)| error)
    }

    /// Takes the entries out.
    pub fn into_vec(self) -> Vec<(Origin, E)> {
        self.entries
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// Sorts the entries with `key`, e.g. by task index for a stable report.
    pub fn sort_by_key<K: Ord>(&mut self, mut key: impl FnMut(&Origin, &E) -> K) {
        self.entries.sort_by_key(|(origin, error)| key(origin, error));
    }
}

impl<E> FromIterator<(Origin, E)> for Errors<E> {
    fn from_iter<I: IntoIterator<Item = (Origin, E)>>(iter: I) -> Self {
        Self { entries: iter.into_iter().collect() }
    }
}

impl<E> IntoIterator for Errors<E> {
    type Item = (Origin, E);
    type IntoIter = std::vec::IntoIter<(Origin, E)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<E: fmt::Display> fmt::Display for Errors<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entries.len() {
            1 => f.write_str("1 error:")?,
            n => write!(f, "{n} errors:")?,
        }
        for (origin, error) in &self.entries {
            write!(f, "\n  {origin}: {error}")?;
        }
        Ok(())
    }
}

impl<E: fmt::Display + fmt::Debug> std::error::Error for Errors<E> {}
