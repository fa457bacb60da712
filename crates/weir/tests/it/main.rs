//! weir's behaviour tests: one binary, one module per part of the library
//! (one link of sqlx and tokio instead of one per file). Tests that run
//! child processes re-run this binary with `--exact <module>::<entry>`.

mod batch;
mod breaker;
mod bulkhead;
mod campaign;
mod checkpoint;
mod dlq;
mod group;
mod hedge;
#[cfg(feature = "postgres")]
mod in_doubt;
mod inspect;
#[cfg(feature = "nats")]
mod nats;
mod observe;
mod pipeline;
mod policy;
mod properties;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod queue;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod queue_sagas;
mod rate;
mod retry;
mod saga;
mod saga_children;
mod saga_crash;
mod saga_manage;
mod saga_postgres;
mod saga_schedules;
mod saga_waits;
mod scoped;
mod settle;
mod support;
mod testing;
mod timeout;
mod tower;
#[cfg(feature = "otel")]
mod traces;
