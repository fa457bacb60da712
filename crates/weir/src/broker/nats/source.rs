//! [`JetStreamSource`]: a durable pull consumer as a pipeline's source.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures_util::{Stream, StreamExt};

use super::delivery::Delivery;
use super::dlq::JetStreamDlq;
use super::ticket::{KeepAlive, Ticket};
use crate::durable::dlq::{DeadLetterQueue, Envelope};
use crate::error::{BoxError, ConfigError};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::policy::retry::RetryPolicy;

/// A JetStream durable pull consumer as a pipeline's source: each message
/// becomes a [`Delivery`] item with a [`Ticket`], acknowledged once the
/// item's fate is final (at least once). Many processes on one durable
/// consumer split its messages: each message goes to one of them at a
/// time.
///
/// How weir's outcomes map onto JetStream's is on [`Ticket`]. In short: a
/// stage's own [`retry`](crate::pipeline::Stage::retry) runs first, in
/// process (a blip costs milliseconds, not a redelivery); an item still
/// failing with a transient error is **nak'ed with the redelivery policy's
/// delay** while it has deliveries left, so a longer outage does not hold
/// a worker and the message may go to another process; on its last
/// delivery it goes to the stage's failure policy (its dead-letter queue).
///
/// **Deliveries are counted by weir, not the server.** The consumer must
/// not set `max_deliver` (or set it above the redelivery policy's
/// `max_attempts`): JetStream drops a message past its `max_deliver` with
/// only an advisory. A message that arrives past weir's limit (its
/// workers died or stalled on it each time: a poison message that crashes
/// the process) is put in the dead-letter queue at once, never run again.
///
/// # Defaults
/// - redelivery: at most 5 deliveries, nak delays from 1 s doubling to
///   60 s, full jitter;
/// - 64 messages pulled per request (at most the consumer's
///   `max_ack_pending`);
/// - "work in progress" sent every third of the consumer's `ack_wait`.
pub struct JetStreamSource {
    consumer: PullConsumer,
    client: async_nats::Client,
    dead_letters: JetStreamDlq,
    redelivery: RetryPolicy,
    batch: usize,
}

impl std::fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("consumer", &self.consumer.cached_info().name)
            .field("redelivery", &self.redelivery)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// The redelivery policy's defaults; see [`JetStreamSource`].
fn default_redelivery() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(5)
        .initial_delay(Duration::from_secs(1))
        .max_delay(Duration::from_secs(60))
        .build()
        .expect("valid defaults")
}

impl JetStreamSource {
    /// A source over `consumer` (a durable pull consumer with explicit
    /// acknowledgements), putting messages it must give up on in
    /// `dead_letters`. `client` is the connection the consumer came from.
    pub fn new(client: async_nats::Client, consumer: PullConsumer, dead_letters: JetStreamDlq) -> Self {
        Self { consumer, client, dead_letters, redelivery: default_redelivery(), batch: 64 }
    }

    /// How many deliveries a message gets (`max_attempts`) and how long a
    /// nak'ed message waits before the next (its backoff).
    pub fn redelivery(mut self, policy: RetryPolicy) -> Self {
        self.redelivery = policy;
        self
    }

    /// How many messages each pull request asks for.
    pub fn batch(mut self, messages: usize) -> Self {
        self.batch = messages.max(1);
        self
    }

    /// Checks the consumer's settings against the source's.
    fn check(&self) -> Result<Duration, ConfigError> {
        let config = &self.consumer.cached_info().config;
        if config.ack_policy != AckPolicy::Explicit {
            return Err(ConfigError::new(
                "JetStream consumer ack_policy",
                format!("{:?}", config.ack_policy),
                "weir acknowledges each message once its fate is final; create the consumer with AckPolicy::Explicit",
            ));
        }
        let limit = i64::from(self.redelivery.max_attempts());
        if config.max_deliver > 0 && config.max_deliver <= limit {
            return Err(ConfigError::new(
                "JetStream consumer max_deliver",
                format!("{} (the source's redelivery allows {limit})", config.max_deliver),
                "the server would drop a message before weir dead-letters it; leave max_deliver unset (-1) and set the limit with JetStreamSource::redelivery",
            ));
        }
        if config.ack_wait < Duration::from_millis(300) {
            return Err(ConfigError::new(
                "JetStream consumer ack_wait",
                format!("{:?}", config.ack_wait),
                "too short to keep a message alive while it is worked on; use at least 1 s (the server's default is 30 s)",
            ));
        }
        Ok(config.ack_wait)
    }

    /// The messages as a pipeline's source stream: `(Delivery, Ticket)`
    /// pairs for [`PipelineBuilder::from_receipts`]. Transient consumer
    /// errors (a missed heartbeat while the server restarts) are logged and
    /// ridden out; the stream fails only when the consumer is gone.
    ///
    /// # Errors
    /// The consumer's settings do not fit (see [`JetStreamSource`]), or the
    /// first pull request fails.
    pub async fn messages(
        self,
    ) -> Result<impl Stream<Item = Result<(Delivery, Ticket), BoxError>> + Send + 'static, BoxError> {
        let ack_wait = self.check()?;
        let keep_alive = KeepAlive::start(self.client.clone(), ack_wait / 3);
        let messages = self
            .consumer
            .stream()
            .max_messages_per_batch(self.batch)
            .heartbeat(Duration::from_secs(5).min(ack_wait / 2))
            .messages()
            .await?;
        let intake = Arc::new(Intake {
            client: self.client,
            dead_letters: self.dead_letters,
            redelivery: Arc::new(self.redelivery),
            keep_alive,
        });
        let stream = messages.filter_map(move |next| {
            let intake = Arc::clone(&intake);
            async move { intake.take(next).await }
        });
        Ok(stream)
    }

    /// A pipeline over this source's messages.
    ///
    /// # Errors
    /// As [`messages`](Self::messages).
    pub async fn pipeline(self, builder: PipelineBuilder) -> Result<Pipeline<Delivery>, BoxError> {
        Ok(builder.from_receipts(self.messages().await?))
    }
}

/// What turns pulled messages into items.
struct Intake {
    client: async_nats::Client,
    dead_letters: JetStreamDlq,
    redelivery: Arc<RetryPolicy>,
    keep_alive: Arc<KeepAlive>,
}

impl Intake {
    /// One pulled message (or error) as an item; `None` to go on without
    /// one.
    async fn take(&self, next: Result<Message, pull::MessagesError>) -> Option<Result<(Delivery, Ticket), BoxError>> {
        let message = match next {
            Ok(message) => message,
            Err(error) => {
                return match error.kind() {
                    MessagesErrorKind::ConsumerDeleted
                    | MessagesErrorKind::PushBasedConsumer
                    | MessagesErrorKind::RequestLimitExceeded => Some(Err(error.into())),
                    _ => {
                        tracing::warn!(error = %error, "JetStream consumer hiccup; pulling again");
                        None
                    }
                };
            }
        };
        let delivery = match Delivery::from_message(&message) {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(error = %error, subject = %message.subject, "not a JetStream delivery; skipped");
                return None;
            }
        };
        let Some(reply) = message.message.reply.clone() else {
            tracing::warn!(subject = %message.subject, "a JetStream delivery without a reply subject; skipped");
            return None;
        };
        if delivery.delivered > self.redelivery.max_attempts() {
            self.give_up(message, delivery).await;
            return None;
        }
        let ticket =
            Ticket::new(self.client.clone(), reply, delivery.delivered, Arc::clone(&self.redelivery), &self.keep_alive);
        Some(Ok((delivery, ticket)))
    }

    /// Dead-letters a message delivered more often than allowed without
    /// ever being settled, then acknowledges it. If the dead-letter queue
    /// fails, the message is left to come back.
    async fn give_up(&self, message: Message, delivery: Delivery) {
        let delivered = delivery.delivered;
        let reason = format!(
            "delivered {delivered} times without being settled (more than the {} allowed): each worker died or stalled on it",
            self.redelivery.max_attempts()
        );
        tracing::error!(subject = %delivery.subject, sequence = delivery.stream_sequence, "{reason}; dead-lettered");
        let mut envelope = Envelope::new(delivery, "jetstream source", delivered);
        envelope.error_chain = vec![reason];
        envelope.first_failure = SystemTime::now();
        match self.dead_letters.push(envelope).await {
            Ok(_) => {
                if let Err(error) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %error, "could not acknowledge a dead-lettered message; it will come back and be dead-lettered again (once: the letter is deduplicated)");
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "could not dead-letter an over-delivered message; it will come back");
            }
        }
    }
}
