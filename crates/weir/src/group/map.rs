use std::future::Future;
use std::sync::{Arc, Mutex};

use super::Group;
use crate::error::{Cancelled, Panicked};

impl<E> Group<E>
where
    E: From<Panicked> + From<Cancelled> + Send + 'static,
{
    /// Runs `f` on every item in this group and returns the results in
    /// input order; the first error cancels the rest.
    ///
    /// The group's settings apply: with a [limit](super::GroupBuilder::limit)
    /// of 8, at most 8 calls run at once. On a group with no earlier tasks,
    /// a failure's [`TaskId`](crate::error::TaskId) index is the item's
    /// position.
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
    pub async fn map<I, T, U, F, Fut>(self, items: I, mut f: F) -> Result<Vec<U>, E>
    where
        I: IntoIterator<Item = T>,
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<U, E>> + Send + 'static,
        U: Send + 'static,
    {
        let items: Vec<T> = items.into_iter().collect();
        let slots: Arc<Mutex<Vec<Option<U>>>> = Arc::new(Mutex::new((0..items.len()).map(|_| None).collect()));
        for (index, item) in items.into_iter().enumerate() {
            let call = f(item);
            let slots = Arc::clone(&slots);
            self.spawn(async move {
                let value = call.await?;
                slots.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(value);
                Ok(())
            })
            .await;
        }
        self.wait().await?;
        let slots = std::mem::take(&mut *slots.lock().unwrap_or_else(|p| p.into_inner()));
        // `wait` returned Ok, so every task ran to completion and filled its slot.
        Ok(slots.into_iter().map(|slot| slot.expect("every task succeeded")).collect())
    }
}
