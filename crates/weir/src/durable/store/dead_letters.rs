//! The durable dead-letter queue: envelopes in the store's database, the
//! item kept as JSON.

use std::future::Future;
use std::marker::PhantomData;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::inspect::{LetterQuery, ms, time};
use super::{Backend, DeadLetterRow, Store, StoreError};
use crate::durable::dlq::{DeadLetterQueue, Envelope, ReplayReport, replay_letters};
use crate::error::BoxError;

/// A dead-letter queue in a [`Store`]: a poison item survives a crash and
/// can be listed, drained and replayed later, from another process too.
///
/// # Examples
/// ```
/// use weir::durable::dlq::{DeadLetterQueue, Envelope};
/// use weir::durable::store::Store;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let store = Store::memory();
/// let queue = store.dead_letters::<String>("orders");
/// queue.push(Envelope::new("bad line".to_string(), "parse", 1)).await?;
/// assert_eq!(queue.list().await?[0].item, "bad line");
/// assert_eq!(queue.drain().await?.len(), 1);
/// assert_eq!(queue.count().await?, 0);
/// # Ok(())
/// # }
/// ```
pub struct StoreDlq<T> {
    store: Store,
    queue: String,
    item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for StoreDlq<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDlq").field("store", &self.store.target()).field("queue", &self.queue).finish()
    }
}

impl<T> Clone for StoreDlq<T> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), queue: self.queue.clone(), item: PhantomData }
    }
}

impl<T> StoreDlq<T> {
    pub(crate) fn new(store: Store, queue: &str) -> Self {
        Self { store, queue: queue.to_owned(), item: PhantomData }
    }

    async fn rows(&self, query: &LetterQuery) -> Result<Vec<DeadLetterRow>, StoreError> {
        match self.store.backend() {
            Backend::Memory(m) => Ok(m.letters(&self.queue, query)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.letters(&self.queue, query).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.letters(&self.queue, query).await,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.queue
    }

    /// Marks the letters with these ids for replay (ids not queued are
    /// ignored); returns how many were found. An operator marks them (the
    /// `weir dlq replay` command does only this: it cannot run the
    /// application's code); the application that owns the queue finds them
    /// with [`LetterQuery::replay_requested`], replays them and
    /// [`remove`](Self::remove)s those that went through; pushing a keyed
    /// letter again (it failed again) clears its mark. Marking again moves
    /// the mark's time.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be written.
    pub async fn request_replay(&self, ids: &[u64]) -> Result<u64, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let at = super::now_ms();
        match self.store.backend() {
            Backend::Memory(m) => Ok(m.request_replay(&self.queue, &ids, at)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.request_replay(&self.queue, &ids, at).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.request_replay(&self.queue, &ids, at).await,
        }
    }

    async fn delete(&self, ids: &[i64]) -> Result<(), StoreError> {
        match self.store.backend() {
            Backend::Memory(m) => {
                m.delete_dead_letters(&self.queue, ids);
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.delete_dead_letters(&self.queue, ids).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.delete_dead_letters(&self.queue, ids).await,
        }
    }
}

impl<T: DeserializeOwned> StoreDlq<T> {
    /// Every envelope, oldest first, leaving them queued.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read or an item is not the
    /// expected type.
    pub async fn list(&self) -> Result<Vec<Envelope<T>>, StoreError> {
        self.find(&LetterQuery::all()).await
    }

    /// The page of envelopes `query` asks for, oldest first, leaving them
    /// queued; the next page is the same query
    /// [`after`](LetterQuery::after) this page's last id. With
    /// `T = serde_json::Value` any queue reads, whatever its item type.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read or an item is not the
    /// expected type.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::dlq::{DeadLetterQueue, Envelope};
    /// use weir::durable::store::{LetterQuery, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let store = Store::memory();
    /// let queue = store.dead_letters::<String>("orders");
    /// let id = queue.push(Envelope::new("bad line".to_string(), "parse", 1)).await?;
    /// queue.request_replay(&[id]).await?;
    /// let any = store.dead_letters::<serde_json::Value>("orders");
    /// let marked = any.find(&LetterQuery::new().replay_requested(true)).await?;
    /// assert_eq!(marked[0].item, serde_json::json!("bad line"));
    /// assert!(marked[0].replay_requested.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn find(&self, query: &LetterQuery) -> Result<Vec<Envelope<T>>, StoreError> {
        self.rows(query).await?.into_iter().map(|row| self.decode(row)).collect()
    }

    /// Takes the envelopes with these ids out of the queue (ids not queued
    /// are ignored): after replaying some letters one by one, the ones that
    /// went through are removed and the rest stay, so a crash midway loses
    /// none.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be written.
    pub async fn remove(&self, ids: &[u64]) -> Result<(), StoreError> {
        let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        self.delete(&ids).await
    }

    fn decode(&self, row: DeadLetterRow) -> Result<Envelope<T>, StoreError> {
        let corrupt = |what: &str, e: serde_json::Error| StoreError::Corrupt {
            target: self.store.target(),
            detail: format!("dead letter {} of queue {}: {what}: {e}", row.id, self.queue),
        };
        let mut envelope = Envelope::new(
            serde_json::from_str(&row.item).map_err(|e| corrupt("item", e))?,
            &row.stage,
            row.attempts as u32,
        );
        envelope.id = row.id as u64;
        envelope.error_chain = serde_json::from_str(&row.error_chain).map_err(|e| corrupt("error chain", e))?;
        envelope.item_index = row.item_index.map(|i| i as u64);
        envelope.key = row.key;
        envelope.tenant = row.tenant;
        envelope.first_failure = time(row.first_failure);
        envelope.last_failure = time(row.last_failure);
        envelope.replay_requested = row.replay_requested_at.map(time);
        Ok(envelope)
    }
}

impl<T> StoreDlq<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    /// Replays the letters an operator marked for replay
    /// ([`request_replay`](Self::request_replay): `weir dlq replay`, the
    /// dashboard's Replay button), oldest first, 500 read at a time, as
    /// [`DeadLetterQueue::replay`] does every letter: one that goes
    /// through is removed, one that fails again stays with its new error,
    /// one more attempt and no mark. Letters not marked are left alone.
    ///
    /// # Errors
    /// The store failing (letters not replayed yet keep their mark); the
    /// items `retry` fails are counted in the report, not errors.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::dlq::{DeadLetterQueue, Envelope};
    /// use weir::durable::store::Store;
    /// use weir::error::BoxError;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let queue = Store::memory().dead_letters::<i32>("orders");
    /// let mut ids = Vec::new();
    /// for n in [1, -2, 3] {
    ///     ids.push(queue.push(Envelope::new(n, "check", 3)).await?);
    /// }
    /// queue.request_replay(&ids[..2]).await?; // an operator marks 1 and -2
    /// let report = queue
    ///     .replay_requested(|n| async move { if n > 0 { Ok(()) } else { Err(BoxError::from("still negative")) } })
    ///     .await?;
    /// assert_eq!((report.replayed, report.failed), (1, 1));
    /// let left: Vec<i32> = queue.list().await?.into_iter().map(|e| e.item).collect();
    /// assert_eq!(left, [3, -2], "3 was not marked; -2 failed again");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn replay_requested<F, Fut>(&self, mut retry: F) -> Result<ReplayReport, BoxError>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = Result<(), BoxError>>,
    {
        let mut report = ReplayReport::default();
        let mut page = LetterQuery::new().replay_requested(true).limit(500);
        loop {
            let letters = self.find(&page).await?;
            let Some(last) = letters.last() else { break };
            page = page.after(last.id);
            replay_letters(self, letters, &mut retry, &mut report).await?;
        }
        Ok(report)
    }
}

impl<T> DeadLetterQueue<T> for StoreDlq<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    fn push(&self, envelope: Envelope<T>) -> BoxFuture<'_, Result<u64, BoxError>> {
        Box::pin(async move {
            let row = DeadLetterRow {
                id: 0,
                queue: self.queue.clone(),
                item: serde_json::to_string(&envelope.item)?,
                error_chain: serde_json::to_string(&envelope.error_chain)?,
                stage: envelope.stage,
                item_index: envelope.item_index.map(|i| i as i64),
                key: envelope.key,
                tenant: envelope.tenant,
                attempts: i64::from(envelope.attempts),
                first_failure: ms(envelope.first_failure),
                last_failure: ms(envelope.last_failure),
                replay_requested_at: None,
            };
            let id = match self.store.backend() {
                Backend::Memory(m) => m.push_dead_letter(&row),
                #[cfg(feature = "sqlite")]
                Backend::Sqlite(s) => s.push_dead_letter(&row).await?,
                #[cfg(feature = "postgres")]
                Backend::Postgres(p) => p.push_dead_letter(&row).await?,
            };
            Ok(id as u64)
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, BoxError>> {
        Box::pin(async move {
            let n = match self.store.backend() {
                Backend::Memory(m) => m.letters(&self.queue, &LetterQuery::all()).len() as i64,
                #[cfg(feature = "sqlite")]
                Backend::Sqlite(s) => s.count_dead_letters(&self.queue).await?,
                #[cfg(feature = "postgres")]
                Backend::Postgres(p) => p.count_dead_letters(&self.queue).await?,
            };
            Ok(n as usize)
        })
    }

    fn drain(&self) -> BoxFuture<'_, Result<Vec<Envelope<T>>, BoxError>> {
        Box::pin(async move {
            // Decode first, delete after: a letter that cannot be read stays
            // queued and the error says which.
            let rows = self.rows(&LetterQuery::all()).await?;
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let envelopes = rows.into_iter().map(|row| self.decode(row)).collect::<Result<Vec<_>, _>>()?;
            self.delete(&ids).await?;
            Ok(envelopes)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Envelope<T>>, BoxError>> {
        Box::pin(async move { Ok(StoreDlq::list(self).await?) })
    }

    fn remove<'a>(&'a self, ids: &'a [u64]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move { Ok(StoreDlq::remove(self, ids).await?) })
    }
}
