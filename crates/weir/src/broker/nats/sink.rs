//! [`JetStreamSink`]: publishing to a stream, each message stored once.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;

use super::delivery::Delivery;
use crate::error::BoxError;

/// Publishes to JetStream and waits for the stream's acknowledgement, so a
/// publish that returned `Ok` is stored. Each message carries a
/// deduplication id (`Nats-Msg-Id`): a publish retried after a lost
/// acknowledgement, or by the successor of a worker that died after
/// publishing, is stored once (within the stream's duplicate window, 2
/// minutes by default; [`PublishAck::duplicate`] says it was one).
///
/// Use it in the sink of a pipeline (`for_each`) or a stage; errors are
/// transient (wrap the call in a [`RetryPolicy`](crate::policy::retry::RetryPolicy)
/// or a stage's retry).
#[derive(Debug, Clone)]
pub struct JetStreamSink {
    context: jetstream::Context,
}

impl JetStreamSink {
    /// A sink publishing through `context`.
    pub fn new(context: jetstream::Context) -> Self {
        Self { context }
    }

    /// Publishes `payload` on `subject` with deduplication id `id`, and
    /// waits until the stream stored it.
    ///
    /// # Errors
    /// No stream captures `subject`, the server did not answer in time, or
    /// the connection is down: the message may or may not be stored;
    /// publishing again with the same `id` stores it at most once.
    pub async fn publish(&self, subject: &str, id: &str, payload: Bytes) -> Result<PublishAck, BoxError> {
        self.publish_with_headers(subject, id, HeaderMap::new(), payload).await
    }

    /// Like [`publish`](Self::publish), with headers of the caller's.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_with_headers(
        &self,
        subject: &str,
        id: &str,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishAck, BoxError> {
        headers.insert("Nats-Msg-Id", id);
        let ack = self
            .context
            .publish_with_headers(subject.to_owned(), headers, payload)
            .await
            .map_err(|e| format!("publishing to `{subject}`: {e}"))?
            .await
            .map_err(|e| format!("publishing to `{subject}`: no acknowledgement from the stream: {e}"))?;
        Ok(ack)
    }

    /// Republishes a dead-lettered message where it first went, with its
    /// own headers and a deduplication id naming it (`weir-replay:`
    /// subject, sequence): the function to give
    /// [`DeadLetterQueue::replay`](crate::durable::dlq::DeadLetterQueue::replay).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn republish(&self, delivery: Delivery) -> Result<(), BoxError> {
        let id = format!("weir-replay:{}:{}", delivery.subject, delivery.stream_sequence);
        let headers = delivery.headers.unwrap_or_default();
        self.publish_with_headers(&delivery.subject, &id, headers, delivery.payload).await.map(drop)
    }
}
