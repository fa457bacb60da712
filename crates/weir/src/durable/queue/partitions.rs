//! A queue's unfinished jobs by partition key (tenant): how many each key
//! has in flight and waiting (the dashboard's queue page shows it).

use std::sync::Arc;
use std::time::SystemTime;

use super::WorkQueue;
use super::sql::on;
use crate::durable::store::ms;
use crate::error::BoxError;

/// One partition key's unfinished jobs ([`WorkQueue::partitions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionCounts {
    /// The key (`None`: jobs enqueued without one).
    pub partition_key: Option<String>,
    /// Claimed under a live lease: running now, on some worker.
    pub in_flight: u64,
    /// Waiting to be claimed (delayed ones, and claims whose lease
    /// expired, included).
    pub waiting: u64,
}

impl WorkQueue {
    /// The partition keys holding unfinished jobs, each with how many it
    /// has in flight and waiting: the most in flight first (then the most
    /// waiting, then by key), at most `limit` keys. One grouped query over
    /// the queue's unfinished jobs (the `(queue, status, …)` index).
    ///
    /// # Errors
    /// The store failing, or a memory store.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::queue::{NewJob, WorkQueue};
    /// use weir::durable::store::Store;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::error::BoxError> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::sqlite(&dir.path().join("q.db")).await?;
    /// let mail = WorkQueue::new(store, "mail");
    /// for tenant in ["acme", "acme", "globex"] {
    ///     mail.enqueue(NewJob::new(serde_json::json!("hi")).partition_key(tenant)).await?;
    /// }
    /// let keys = mail.partitions(10).await?;
    /// assert_eq!(keys[0].partition_key.as_deref(), Some("acme"));
    /// assert_eq!((keys[0].in_flight, keys[0].waiting), (0, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn partitions(&self, limit: usize) -> Result<Vec<PartitionCounts>, BoxError> {
        let queue = Arc::clone(&self.name);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(Option<String>, i64, i64)> = self
            .store
            .commit_effect(move |tx| {
                let queue = Arc::clone(&queue);
                Box::pin(async move {
                    let sql = "SELECT partition_key, \
                                 SUM(CASE WHEN status = 'claimed' AND lease_until > $2 THEN 1 ELSE 0 END) AS running, \
                                 SUM(CASE WHEN status = 'claimed' AND lease_until > $2 THEN 0 ELSE 1 END) AS waiting \
                               FROM weir_queue_jobs WHERE queue = $1 AND status IN ('queued', 'claimed') \
                               GROUP BY partition_key ORDER BY running DESC, waiting DESC, partition_key LIMIT $3";
                    let now = ms(SystemTime::now());
                    Ok(on!(tx, conn => sqlx::query_as(sql).bind(&*queue).bind(now).bind(limit).fetch_all(&mut *conn).await?))
                })
            })
            .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|(partition_key, running, waiting)| PartitionCounts {
                partition_key,
                in_flight: count(running),
                waiting: count(waiting),
            })
            .collect())
    }
}
