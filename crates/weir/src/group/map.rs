//! [`Group::map`] and [`Group::map_stream`]: a lazy, limited map whose
//! first error stops it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};

use super::Group;
use crate::error::{Cancelled, Panicked};

/// The order of a map's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The order of the input. The default.
    #[default]
    Input,
    /// The order in which the calls finished.
    Completion,
}

impl<E> Group<E>
where
    E: From<Panicked> + From<Cancelled> + std::fmt::Display + Send + 'static,
{
    /// Runs `f` on every item in this group and returns the results in
    /// input order; the first error cancels the rest.
    ///
    /// Lazy: an item is taken from `items` only when a slot of the group's
    /// [limit](super::GroupBuilder::limit) is free, so at most `limit`
    /// items are taken and not yet finished at any time, and neither is an
    /// item taken nor `f` called once the group has stopped (an error, a
    /// deadline, a cancel). `items` may be endless: with a limit of 8, an
    /// error at item 100 while items 101–107 are still running ends the
    /// map with 108 items taken. Without a limit every item is taken at
    /// once, as every call may run at once.
    ///
    /// On a group with no earlier tasks, a failure's
    /// [`TaskId`](crate::error::TaskId) index is the item's position.
    ///
    /// # Errors
    /// The first error, as [`Group::wait`] returns it.
    ///
    /// # Cancel safety
    /// Dropping this future drops the group and aborts every call.
    ///
    /// # Examples
    /// ```
    /// use weir::group::Group;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let group: Group<anyhow::Error> = Group::builder().limit(8).build()?;
    /// let squares = group.map(1..=5u64, |n| async move { Ok(n * n) }).await?;
    /// assert_eq!(squares, [1, 4, 9, 16, 25]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn map<I, T, U, F, Fut>(self, items: I, f: F) -> Result<Vec<U>, E>
    where
        I: IntoIterator<Item = T>,
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
        U: Send + 'static,
    {
        self.map_stream(futures_util::stream::iter(items), Order::Input, f).await
    }

    /// Like [`map`](Self::map), over a [`Stream`], with the results in the
    /// `order` asked for.
    ///
    /// # Errors
    /// The first error, as [`Group::wait`] returns it.
    ///
    /// # Cancel safety
    /// Dropping this future drops the group and aborts every call; the
    /// items taken from `items` so far are lost with it.
    ///
    /// # Examples
    /// ```
    /// use weir::group::{Group, Order};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let lines = futures_util::stream::iter(["3", "1", "2"]);
    /// let group: Group<anyhow::Error> = Group::builder().limit(2).build()?;
    /// let mut numbers = group.map_stream(lines, Order::Completion, |s| async move { Ok(s.parse::<u32>()?) }).await?;
    /// numbers.sort();
    /// assert_eq!(numbers, [1, 2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn map_stream<S, T, U, F, Fut>(self, items: S, order: Order, mut f: F) -> Result<Vec<U>, E>
    where
        S: Stream<Item = T>,
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
        U: Send + 'static,
    {
        let mut items = std::pin::pin!(items);
        let results: Arc<Mutex<Results<U>>> = Arc::new(Mutex::new(Results::new(order)));
        loop {
            if self.is_stopped() || !self.take_slot().await {
                break;
            }
            let item = match items.next().await {
                Some(item) if !self.is_stopped() => item,
                _ => {
                    self.core.release_slot();
                    break;
                }
            };
            let call = f(item);
            let slot = lock(&results).reserve();
            let results = Arc::clone(&results);
            self.dispatch(None, async move {
                let value = call.await?;
                lock(&results).fill(slot, value);
                Ok(())
            });
        }
        self.wait().await?;
        // `wait` returned Ok: every call ran to completion and filled its slot.
        let results = std::mem::replace(&mut *lock(&results), Results::new(order));
        Ok(results.into_vec())
    }
}

fn lock<U>(results: &Mutex<Results<U>>) -> std::sync::MutexGuard<'_, Results<U>> {
    results.lock().unwrap_or_else(|p| p.into_inner())
}

/// A map's results as they arrive: a slot per item taken (input order), or
/// a list in the order the calls finished.
enum Results<U> {
    Input(Vec<Option<U>>),
    Completion(Vec<U>),
}

impl<U> Results<U> {
    fn new(order: Order) -> Self {
        match order {
            Order::Input => Self::Input(Vec::new()),
            Order::Completion => Self::Completion(Vec::new()),
        }
    }

    /// The slot of the next item taken.
    fn reserve(&mut self) -> usize {
        match self {
            Self::Input(slots) => {
                slots.push(None);
                slots.len() - 1
            }
            Self::Completion(_) => 0,
        }
    }

    fn fill(&mut self, slot: usize, value: U) {
        match self {
            Self::Input(slots) => slots[slot] = Some(value),
            Self::Completion(values) => values.push(value),
        }
    }

    fn into_vec(self) -> Vec<U> {
        match self {
            Self::Input(slots) => slots.into_iter().map(|slot| slot.expect("every call succeeded")).collect(),
            Self::Completion(values) => values,
        }
    }
}
