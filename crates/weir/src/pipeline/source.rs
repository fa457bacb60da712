//! Sources: turn an iterator or a stream into chunks on the first link.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::error::Fault;
use super::link::{Chunk, ChunkSize};

/// Where the source's items go, and when it must stop taking more.
pub(crate) struct SourceOut<T> {
    pub(crate) tx: mpsc::Sender<Chunk<T>>,
    pub(crate) chunk: ChunkSize,
    pub(crate) emitted: Arc<AtomicU64>,
    /// Cancelled by a graceful drain: stop taking items, finish the rest.
    pub(crate) drain: CancellationToken,
}

impl<T> SourceOut<T> {
    /// Sends the chunk at hand; `false` if downstream is gone.
    async fn flush(&self, items: &mut Vec<(u64, T)>) -> bool {
        if items.is_empty() {
            return true;
        }
        let items = std::mem::replace(items, Vec::with_capacity(self.chunk.get()));
        let count = items.len() as u64;
        let sent = self.tx.send(Chunk { seq: 0, items }).await.is_ok();
        if sent {
            self.emitted.fetch_add(count, Ordering::Relaxed);
        }
        sent
    }
}

/// Feeds an iterator's items in chunks. The iterator runs on a runtime
/// thread: it must not block for long (read files through a stream).
pub(crate) async fn from_iter<I>(iter: I, out: SourceOut<I::Item>) -> Result<(), Fault>
where
    I: Iterator,
{
    let chunk = out.chunk.get();
    let mut items = Vec::with_capacity(chunk);
    for (index, item) in (0u64..).zip(iter) {
        items.push((index, item));
        if items.len() == chunk && (!out.flush(&mut items).await || out.drain.is_cancelled()) {
            return Ok(());
        }
    }
    out.flush(&mut items).await;
    Ok(())
}

/// Feeds a stream's items, sending what it has whenever the stream makes
/// it wait, so a slow stream's items are not held back to fill a chunk.
/// `take` turns the stream's item, numbered, into the pipeline's (and
/// keeps what else came with it, a receipt), or fails the run.
pub(crate) async fn from_stream<S, T>(
    stream: S,
    out: SourceOut<T>,
    mut take: impl FnMut(u64, S::Item) -> Result<T, Fault>,
) -> Result<(), Fault>
where
    S: Stream,
{
    let mut stream = std::pin::pin!(stream);
    let chunk = out.chunk.get();
    let mut items = Vec::with_capacity(chunk);
    for index in 0u64.. {
        let next = match stream.next().now_or_never() {
            Some(next) => next,
            None => {
                if !out.flush(&mut items).await {
                    return Ok(());
                }
                tokio::select! {
                    next = stream.next() => next,
                    () = out.drain.cancelled() => return Ok(()),
                }
            }
        };
        let Some(item) = next else { break };
        let item = match take(index, item) {
            Ok(item) => item,
            Err(fault) => {
                // Hand over what was taken: the run settles it either way.
                out.flush(&mut items).await;
                return Err(fault);
            }
        };
        items.push((index, item));
        if items.len() == chunk && (!out.flush(&mut items).await || out.drain.is_cancelled()) {
            return Ok(());
        }
    }
    out.flush(&mut items).await;
    Ok(())
}
