//! [`Delivery`]: one JetStream message as a pipeline item.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use bytes::Bytes;

/// One message delivered by a JetStream consumer, as a pipeline's item.
///
/// It is the raw message: parse it in the pipeline's first stage, and
/// mark a message that cannot be parsed
/// [`Permanent`](crate::error::Permanent), so that it is dead-lettered
/// at once instead of redelivered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The subject it was published on.
    pub subject: String,
    /// Its body, as published.
    pub payload: Bytes,
    /// Its headers, as published.
    pub headers: Option<HeaderMap>,
    /// Its sequence number in its stream: unique within the stream, the
    /// same on every redelivery (an idempotency key for what the pipeline
    /// writes).
    pub stream_sequence: u64,
    /// Which delivery this is, from 1.
    pub delivered: u32,
    /// When the stream stored it.
    pub published: SystemTime,
}

impl Delivery {
    pub(crate) fn from_message(message: &async_nats::jetstream::Message) -> Result<Self, async_nats::Error> {
        let info = message.info()?;
        let nanos = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
        Ok(Self {
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            headers: message.headers.clone(),
            stream_sequence: info.stream_sequence,
            delivered: u32::try_from(info.delivered).unwrap_or(u32::MAX),
            published: SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
        })
    }

    /// A message read from a stream rather than delivered by a consumer
    /// (a dead letter made by hand, a test): delivered 0 times, stored now.
    pub fn from_stored(subject: impl Into<String>, payload: Bytes, stream_sequence: u64) -> Self {
        Self {
            subject: subject.into(),
            payload,
            headers: None,
            stream_sequence,
            delivered: 0,
            published: SystemTime::now(),
        }
    }

    /// The value of header `name`, if the message has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name).map(|v| v.as_str())
    }
}
