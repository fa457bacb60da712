//! [`JetStreamDlq`]: a dead-letter queue on a JetStream stream.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::delivery::Delivery;
use crate::durable::dlq::{DeadLetterQueue, Envelope};
use crate::error::BoxError;
use crate::policy::retry::{Jitter, RetryPolicy};

/// Attempts to store one dead letter before giving up (the item then goes
/// back to its source: see [`DeadLetterSink`](crate::pipeline::DeadLetterSink)).
const PUBLISH_ATTEMPTS: u32 = 3;

/// The headers weir adds to a dead letter; the body is the message's own
/// payload, untouched, so a replay republishes exactly what was sent.
pub mod headers {
    /// The stage the item failed in.
    pub const STAGE: &str = "Weir-Stage";
    /// The error chain, outermost first, as a JSON array of strings.
    pub const ERROR_CHAIN: &str = "Weir-Error-Chain";
    /// Attempts made (in-process retries and deliveries).
    pub const ATTEMPTS: &str = "Weir-Attempts";
    /// When the first attempt failed, milliseconds since the Unix epoch.
    pub const FIRST_FAILURE: &str = "Weir-First-Failure-Ms";
    /// When the last attempt failed, milliseconds since the Unix epoch.
    pub const LAST_FAILURE: &str = "Weir-Last-Failure-Ms";
    /// The item's index in the run that dead-lettered it.
    pub const ITEM_INDEX: &str = "Weir-Item-Index";
    /// The item's key, if its stage labels items.
    pub const KEY: &str = "Weir-Key";
    /// The item's tenant, if its stage labels tenants.
    pub const TENANT: &str = "Weir-Tenant";
    /// The subject the message was first published on.
    pub const SUBJECT: &str = "Weir-Original-Subject";
    /// The message's sequence in the stream it was consumed from.
    pub const SEQUENCE: &str = "Weir-Original-Sequence";
    /// How many times it had been delivered.
    pub const DELIVERED: &str = "Weir-Delivered";
    /// When the original stream stored it, milliseconds since the Unix epoch.
    pub const PUBLISHED: &str = "Weir-Published-Ms";
}

/// A dead-letter queue on a JetStream stream: each letter is one message
/// on the queue's subject, its body the failed message's payload, weir's
/// envelope (stage, error chain, attempts, first and last failure, key,
/// tenant, where it came from) in [`headers`]. A letter's id is its
/// sequence in the dead-letter stream.
///
/// A dead letter is published with a `Nats-Msg-Id` made of its origin
/// (subject and sequence) and attempts, so a worker that dies between storing a letter
/// and acknowledging the message, and whose successor stores it again,
/// leaves one letter (within the stream's duplicate window, 2 minutes by
/// default).
///
/// It is a [`DeadLetterQueue<Delivery>`]: a stage over [`Delivery`] items
/// hands it failed messages with `.dead_letter(Arc::new(dlq))`, and
/// [`replay`](DeadLetterQueue::replay) gives them back (republish them with
/// a [`JetStreamSink`](super::JetStreamSink)).
#[derive(Debug, Clone)]
pub struct JetStreamDlq {
    context: jetstream::Context,
    stream: String,
    subject: String,
}

impl JetStreamDlq {
    /// The dead-letter queue on stream `stream`, created if it does not
    /// exist, whose letters go to `subject` (which the stream captures).
    ///
    /// # Errors
    /// The server refusing the stream (a name in use with other subjects).
    pub async fn create(context: jetstream::Context, stream: &str, subject: &str) -> Result<Self, BoxError> {
        let config = stream::Config {
            name: stream.to_owned(),
            subjects: vec![subject.to_owned()],
            // Letters stay until replayed or purged.
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        };
        context
            .get_or_create_stream(config)
            .await
            .map_err(|e| format!("dead-letter stream `{stream}` for subject `{subject}`: {e}"))?;
        Ok(Self { context, stream: stream.to_owned(), subject: subject.to_owned() })
    }

    /// The dead-letter queue on the existing stream `stream` (its letters
    /// go to the stream's first subject): what an operator's tool opens.
    ///
    /// # Errors
    /// No such stream, or one without subjects.
    pub async fn open(context: jetstream::Context, stream: &str) -> Result<Self, BoxError> {
        let mut found = context.get_stream(stream).await.map_err(|e| format!("dead-letter stream `{stream}`: {e}"))?;
        let info = found.info().await?;
        let Some(subject) = info.config.subjects.first().cloned() else {
            return Err(format!("stream `{stream}` captures no subject: not a dead-letter stream").into());
        };
        Ok(Self { context, stream: stream.to_owned(), subject })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.stream
    }

    async fn stream(&self) -> Result<stream::Stream, BoxError> {
        Ok(self
            .context
            .get_stream(&self.stream)
            .await
            .map_err(|e| format!("dead-letter stream `{}`: {e}", self.stream))?)
    }

    /// Stores one letter; its id (its sequence in the stream).
    async fn publish(&self, envelope: &Envelope<Delivery>) -> Result<u64, BoxError> {
        let item = &envelope.item;
        let mut map = item.headers.clone().unwrap_or_default();
        map.insert(
            "Nats-Msg-Id",
            format!("weir-dlq:{}:{}:{}", item.subject, item.stream_sequence, envelope.attempts).as_str(),
        );
        map.insert(headers::STAGE, envelope.stage.as_str());
        map.insert(headers::ERROR_CHAIN, serde_json::to_string(&envelope.error_chain)?.as_str());
        map.insert(headers::ATTEMPTS, envelope.attempts.to_string().as_str());
        map.insert(headers::FIRST_FAILURE, millis(envelope.first_failure).to_string().as_str());
        map.insert(headers::LAST_FAILURE, millis(envelope.last_failure).to_string().as_str());
        if let Some(index) = envelope.item_index {
            map.insert(headers::ITEM_INDEX, index.to_string().as_str());
        }
        if let Some(key) = &envelope.key {
            map.insert(headers::KEY, key.as_str());
        }
        if let Some(tenant) = &envelope.tenant {
            map.insert(headers::TENANT, tenant.as_str());
        }
        map.insert(headers::SUBJECT, item.subject.as_str());
        map.insert(headers::SEQUENCE, item.stream_sequence.to_string().as_str());
        map.insert(headers::DELIVERED, item.delivered.to_string().as_str());
        map.insert(headers::PUBLISHED, millis(item.published).to_string().as_str());
        // The deduplication id makes a retried publish safe: a letter whose
        // acknowledgement was lost is stored once.
        let publish = |_| async {
            let ack =
                self.context.publish_with_headers(self.subject.clone(), map.clone(), item.payload.clone()).await?;
            Ok::<_, BoxError>(ack.await?.sequence)
        };
        let warn = |error: &BoxError, attempt, delay| {
            tracing::warn!(error = %error, attempt, ?delay, stream = %self.stream, "dead letter not stored yet; trying again");
        };
        let retry = RetryPolicy::builder()
            .max_attempts(PUBLISH_ATTEMPTS)
            .initial_delay(Duration::from_millis(200))
            .jitter(Jitter::None)
            .build()
            .expect("valid");
        retry
            .drive(None, publish, |_| true, warn)
            .await
            .map_err(|e| format!("dead-letter stream `{}`: {e}", self.stream).into())
    }

    /// Every letter, oldest first.
    async fn letters(&self) -> Result<Vec<Envelope<Delivery>>, BoxError> {
        let mut stream = self.stream().await?;
        let state = stream.info().await?.state.clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return Ok(letters);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            match stream.get_raw_message(sequence).await {
                Ok(message) => letters.push(envelope(message.sequence, message.headers, message.payload)?),
                // A removed letter leaves a gap in the sequence.
                Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(letters)
    }

    async fn delete(&self, ids: &[u64]) -> Result<(), BoxError> {
        let stream = self.stream().await?;
        for &id in ids {
            match stream.delete_message(id).await {
                Ok(_) => {}
                Err(error) if error.to_string().contains("no message found") => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

fn millis(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis()
}

fn from_millis(value: Option<&str>) -> SystemTime {
    let ms = value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Reads a letter back from its headers and body.
fn envelope(id: u64, mut map: HeaderMap, payload: bytes::Bytes) -> Result<Envelope<Delivery>, BoxError> {
    let get = |name: &str| map.get(name).map(|v| v.as_str().to_owned());
    let number = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
    let Some(stage) = get(headers::STAGE) else {
        return Err(format!("dead letter {id} has no `{}` header: not written by weir", headers::STAGE).into());
    };
    let error_chain: Vec<String> = match get(headers::ERROR_CHAIN) {
        Some(json) => serde_json::from_str(&json).map_err(|e| format!("dead letter {id}: its error chain: {e}"))?,
        None => Vec::new(),
    };
    let item = Delivery {
        subject: get(headers::SUBJECT).unwrap_or_default(),
        payload,
        headers: None,
        stream_sequence: number(headers::SEQUENCE).unwrap_or(0),
        delivered: number(headers::DELIVERED).and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        published: from_millis(get(headers::PUBLISHED).as_deref()),
    };
    let mut envelope = Envelope::new(item, &stage, number(headers::ATTEMPTS).map_or(0, |n| n as u32));
    envelope.id = id;
    envelope.error_chain = error_chain;
    envelope.item_index = number(headers::ITEM_INDEX);
    envelope.key = get(headers::KEY);
    envelope.tenant = get(headers::TENANT);
    envelope.first_failure = from_millis(get(headers::FIRST_FAILURE).as_deref());
    envelope.last_failure = from_millis(get(headers::LAST_FAILURE).as_deref());
    // The message's own headers, without weir's and the server's.
    strip(&mut map);
    envelope.item.headers = (map.iter().next().is_some()).then_some(map);
    Ok(envelope)
}

fn strip(map: &mut HeaderMap) {
    let mut kept = HeaderMap::new();
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        if name.starts_with("Weir-") || name.starts_with("Nats-") {
            continue;
        }
        for value in values {
            kept.append(name, value.as_str());
        }
    }
    *map = kept;
}

impl DeadLetterQueue<Delivery> for JetStreamDlq {
    /// Stores a letter. A letter that is already queued (a replay that
    /// failed again: its id is set) is stored anew and the old one
    /// removed: a stream cannot change a message in place, so its id
    /// changes.
    fn push(&self, envelope: Envelope<Delivery>) -> BoxFuture<'_, Result<u64, BoxError>> {
        async move {
            let old = envelope.id;
            let id = self.publish(&envelope).await?;
            if old != 0 && old != id {
                self.delete(&[old]).await?;
            }
            Ok(id)
        }
        .boxed()
    }

    fn count(&self) -> BoxFuture<'_, Result<usize, BoxError>> {
        async move {
            let mut stream = self.stream().await?;
            Ok(usize::try_from(stream.info().await?.state.messages)?)
        }
        .boxed()
    }

    fn drain(&self) -> BoxFuture<'_, Result<Vec<Envelope<Delivery>>, BoxError>> {
        async move {
            let letters = self.letters().await?;
            let ids: Vec<u64> = letters.iter().map(|l| l.id).collect();
            self.delete(&ids).await?;
            Ok(letters)
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<Envelope<Delivery>>, BoxError>> {
        self.letters().boxed()
    }

    fn remove<'a>(&'a self, ids: &'a [u64]) -> BoxFuture<'a, Result<(), BoxError>> {
        self.delete(ids).boxed()
    }
}
