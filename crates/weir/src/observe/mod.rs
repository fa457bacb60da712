//! What weir reports about itself while it runs: metrics through the
//! [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), and a
//! Prometheus endpoint for them (feature `prometheus`).
//!
//! Without the `metrics` feature every recording below compiles to
//! nothing. With it, weir records into whichever recorder the application
//! installed (Prometheus, StatsD, OpenTelemetry's bridge, a test's
//! debugging recorder); with none installed a recording is a no-op. Install
//! the recorder before building pipelines and engines: handles are taken
//! when a stage or an engine starts.
//!
//! # The metrics
//!
//! Names are Prometheus-style (`weir_` prefix, `_total` for counters, base
//! units in the name); where OpenTelemetry's semantic conventions have a
//! counterpart it is named.
//!
//! | name | kind | labels | what | OpenTelemetry counterpart |
//! | --- | --- | --- | --- | --- |
//! | `weir_stage_items_total` | counter | `stage`, `outcome` = `received` · `emitted` · `filtered` · `skipped` · `failed` · `dead_lettered` · `released` | items through a pipeline stage, by what became of them | `messaging.client.consumed.messages` (for `received`) |
//! | `weir_stage_retries_total` | counter | `stage` | attempts beyond the first | |
//! | `weir_stage_in_flight` | gauge | `stage` | items a stage took and has not accounted for yet | |
//! | `weir_stage_item_duration_seconds` | histogram | `stage` | one item's time in the stage, attempts and retries included (the first item of each chunk: sampled) | `messaging.process.duration` |
//! | `weir_breaker_state` | gauge | `breaker` | 0 closed, 1 half-open, 2 open, 3 forced open (after its first change) | |
//! | `weir_breaker_transitions_total` | counter | `breaker`, `to` | state changes | |
//! | `weir_bulkhead_in_use` | gauge | `bulkhead` | calls holding a slot | |
//! | `weir_bulkhead_rejected_total` | counter | `bulkhead` | calls refused when full | |
//! | `weir_rate_limit_refused_total` | counter | `limiter` | calls refused (or told to wait) for want of a token | |
//! | `weir_rate_limit_in_use` · `weir_rate_limit_waiting` | gauge | `limiter` (a keyed limiter: the key) | slots of the burst taken now (fractional: the budget refills continuously); calls holding a reserved slot not due yet. Sampled each second by one task per process, so they fall back to 0 as the budget refills with nobody calling; the calls pay nothing for them | |
//! | `weir_hedge_fired_total` · `weir_hedge_won_total` | counter | `hedge` | hedged attempts started; those that answered first | |
//! | `weir_retry_attempts_total` | counter | `policy` = the key of the call | retries made by a retry policy | |
//! | `weir_retry_budget_refused_total` | counter | | retries the retry budget refused | |
//! | `weir_saga_started_total` | counter | `definition` | sagas stored by `run` / `submit` / a schedule / a child step | |
//! | `weir_saga_ended_total` | counter | `definition`, `status` = `completed` · `compensated` · `failed` | sagas that reached an end here | |
//! | `weir_saga_step_duration_seconds` | histogram | `definition`, `step`, `outcome` = `done` · `failed` | a step's attempts, from first to last | |
//! | `weir_saga_in_flight` | gauge | | sagas an engine is driving | |
//! | `weir_saga_parked_total` · `weir_saga_woken_total` | counter | | sagas parked (a timer, an event, a child) and woken by this process | |
//! | `weir_saga_parked` | gauge | `definition`, `waiting_for` | sagas of the definition parked in the store now, whichever worker parked them, by what they wait for: `timer` (asleep), `event`, `child` (`unknown`: parked by a weir before schema 10); counted by an engine's waker every 5 s, one grouped query | |
//! | `weir_store_commit_batch_size` | histogram | `store` = `sqlite` · `postgres` | writes per group commit | |
//! | `weir_store_commit_duration_seconds` | histogram | `store` | one group commit, `BEGIN` to `COMMIT` | `db.client.operation.duration` |
//! | `weir_queue_claimed_total` | counter | `queue` | jobs claimed from a work queue | |
//! | `weir_queue_settled_total` | counter | `queue`, `status` = `done` · `skipped` · `failed` · `dead` · `retry` | jobs settled (by this process) | |
//! | `weir_queue_jobs` | gauge | `queue`, `status` = `queued` · `claimed` · `done` · `skipped` · `failed` · `dead` | the queue's depth by status (all processes), read by a claiming worker every 5 s and by `WorkQueue::counts` | |
//!
//! Label values are the names you gave (stage, breaker, bulkhead, hedge,
//! limiter, definition, step, queue): keep them few. No item, saga id or
//! input ever becomes a label.
//!
//! # The spans
//!
//! Through [`tracing`](https://docs.rs/tracing), always on (a span costs a
//! check of the subscriber's interest when nobody listens); exported to
//! OpenTelemetry with [`otel_layer`] (feature `otel`).
//!
//! | span | level | fields | parent |
//! | --- | --- | --- | --- |
//! | `saga` | info | `saga.id`, `saga.definition`, `saga.parent`, `outcome` = `completed` · `compensated` · `failed` · `parked` · `stopped` | the caller's span (`run`, `resume`), the engine's worker, or a parent's `saga.step` for a child saga |
//! | `saga.step` | info | `step`, `attempts`, `outcome` = `done` · `failed` · `pending` (parked) · `interrupted` | its `saga` |
//! | `saga.compensate` | info | `step`, `attempts`, `outcome` = `compensated` · `compensation_failed` | its `saga` |
//! | `store.commit` | info | `db.system` = `sqlite` · `postgres`, `writes`, `effects`, `outcome` = `committed` · `failed` | none: one transaction serves many callers |
//! | `checkpoint.save` | info | `consumer`, `events` (since the last save) | the consumer's caller |
//! | `batch.flush` | info | `batcher`, `items`, `attempts`, `outcome` = `flushed` · `failed` | the batcher's caller |
//! | `stage` | info | `stage`, `worker` | the pipeline's caller |
//! | `item` | trace | `stage`, `item`, `tenant`, `attempt` | its `stage` |
//!
//! A group's tasks run inside the span they were spawned in.

#[cfg(not(feature = "metrics"))]
mod off;
#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "metrics")]
mod record;

#[cfg(not(feature = "metrics"))]
pub(crate) use self::off::*;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use self::otel::otel_layer;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use self::prometheus::{PrometheusError, serve_prometheus};
#[cfg(feature = "metrics")]
pub(crate) use self::record::*;
