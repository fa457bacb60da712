//! Pipelines on engines outside the process: a broker feeds a pipeline and
//! hears, item by item, how each one ended.
//!
//! The pipeline side is engine-neutral: a source hands each item over with
//! a [`Receipt`](crate::pipeline::Receipt), and the run settles it with the
//! item's [`Fate`](crate::pipeline::Fate) once that fate is final. Each
//! engine maps the fates onto its own acknowledgements:
//!
//! - [`nats`] (feature `nats`): NATS JetStream pull consumers as a source,
//!   a stream as a sink with deduplication, and a dead-letter stream.

#[cfg(feature = "nats")]
pub mod nats;
