//! State that outlives the process: the [`store`] (memory, SQLite,
//! PostgreSQL), [`saga`]s written step by step, [`checkpoint`]ed stream
//! consumers, and dead-letter queues ([`dlq`]).
//!
//! The durable layer sits on the pipeline and policy layers: a saga step's
//! retries are a [`RetryPolicy`](crate::policy::retry::RetryPolicy), a
//! dead-letter queue is a pipeline stage's
//! [`DeadLetterSink`](crate::pipeline::DeadLetterSink).

pub mod checkpoint;
pub mod dlq;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod queue;
pub mod saga;
// Without a database feature only the memory store remains; the shared
// database plumbing is then unused, not wrong.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_variables, unreachable_patterns, unreachable_code)
)]
pub mod store;
