use std::collections::VecDeque;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::{DeadLetterQueue, Envelope};
use crate::error::BoxError;

/// A dead-letter queue in memory: for tests, and for runs whose dead
/// letters are handled before the process ends.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use weir::durable::dlq::{DeadLetterQueue, MemoryDlq};
/// use weir::pipeline::{Pipeline, Stage};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let dlq = Arc::new(MemoryDlq::new());
/// let (ok, report) = Pipeline::from_iter([1, -2, 3])
///     .stage(Stage::try_map("check", |n: i32| async move { if n < 0 { Err("negative") } else { Ok(n) } }).dead_letter(dlq.clone()))
///     .collect()
///     .await
///     .unwrap();
/// assert_eq!(ok, [1, 3]);
/// assert_eq!(report.stage("check").unwrap().dead_lettered, 1);
/// let letters = dlq.drain().await.unwrap();
/// assert_eq!((letters[0].item, letters[0].error_chain[0].as_str()), (-2, "negative"));
/// # }
/// ```
#[derive(Debug)]
pub struct MemoryDlq<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    envelopes: VecDeque<Envelope<T>>,
    next_id: u64,
}

impl<T> Default for MemoryDlq<T> {
    fn default() -> Self {
        Self { state: Mutex::new(State { envelopes: VecDeque::new(), next_id: 1 }) }
    }
}

impl<T> MemoryDlq<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Clone + Send + 'static> DeadLetterQueue<T> for MemoryDlq<T> {
    fn push(&self, mut envelope: Envelope<T>) -> BoxFuture<'_, Result<u64, BoxError>> {
        let mut state = self.lock();
        let same_key = |e: &&mut Envelope<T>| e.key.is_some() && e.key == envelope.key;
        if let Some(stored) = state.envelopes.iter_mut().find(same_key) {
            let (id, first_failure) = (stored.id, stored.first_failure);
            *stored = Envelope { id, first_failure, ..envelope };
            return Box::pin(std::future::ready(Ok(id)));
        }
        envelope.id = state.next_id;
        state.next_id += 1;
        let id = envelope.id;
        state.envelopes.push_back(envelope);
        Box::pin(std::future::ready(Ok(id)))
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, BoxError>> {
        let len = self.lock().envelopes.len();
        Box::pin(std::future::ready(Ok(len)))
    }

    fn drain(&self) -> BoxFuture<'_, Result<Vec<Envelope<T>>, BoxError>> {
        let all = self.lock().envelopes.drain(..).collect();
        Box::pin(std::future::ready(Ok(all)))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Envelope<T>>, BoxError>> {
        let all = self.lock().envelopes.iter().cloned().collect();
        Box::pin(std::future::ready(Ok(all)))
    }

    fn remove<'a>(&'a self, ids: &'a [u64]) -> BoxFuture<'a, Result<(), BoxError>> {
        self.lock().envelopes.retain(|e| !ids.contains(&e.id));
        Box::pin(std::future::ready(Ok(())))
    }
}
