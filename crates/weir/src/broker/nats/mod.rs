//! NATS JetStream: a durable pull consumer as a pipeline's source
//! ([`JetStreamSource`]), a stream as a sink that stores each message once
//! ([`JetStreamSink`]), and a dead-letter queue on a stream
//! ([`JetStreamDlq`]).
//!
//! ```text
//! stream ──(durable pull consumer, shared by N processes)──▶ Delivery + Ticket
//!    ──▶ stages (retry in process) ──▶ sink ──▶ +ACK
//!          │ transient, deliveries left ──▶ -NAK with delay (redelivered later, maybe elsewhere)
//!          │ permanent / last delivery ──▶ dead-letter stream, then +ACK
//!          │ Skip ──▶ +TERM
//!          └ run aborted / failed ──▶ -NAK (redelivered now)
//! ```
//!
//! **Promises.** A message is acknowledged only after its fate is final:
//! the sink's closure returned, or the dead-letter stream stored it. A
//! process killed at any moment leaves its unacknowledged messages to be
//! redelivered after `ack_wait`: at least once, never at most once. Make
//! what the sink writes idempotent by [`Delivery::stream_sequence`] (or a
//! key in the message) and [`JetStreamSink`]'s deduplication ids, and the
//! effect is once.
//!
//! **Stopping.** [`Control::drain`](crate::pipeline::Control::drain) stops
//! pulling; messages already taken go through and are acknowledged.
//! Messages pulled but not yet taken (at most one pull batch) are dropped
//! unacknowledged and come back after `ack_wait`. An abort nak's what was
//! inside the run, so other workers get it at once.
//!
//! **Order.** A consumer shared by many workers, or a stage with several
//! workers, does not keep order. For per-key order, give each key a
//! subject (`orders.<tenant>`), and each subject one consumer
//! (`filter_subject`) with `max_ack_pending = 1`, read by one pipeline
//! whose stages have one worker: a message then waits for the one before it
//! to be acknowledged. The cost is one message in flight per key: the
//! throughput of a key is one round trip per message, and parallelism
//! comes only from running many keys.
//!
//! Needs the `nats` feature; built on `async-nats`, NATS's own client.

mod delivery;
mod dlq;
mod sink;
mod source;
mod ticket;

pub use self::delivery::Delivery;
pub use self::dlq::{JetStreamDlq, headers};
pub use self::sink::JetStreamSink;
pub use self::source::JetStreamSource;
pub use self::ticket::Ticket;
