//! Sagas: multi-step business logic with compensations, durable in a
//! [`Store`](crate::durable::store::Store), resumed after a crash.
//!
//! ```text
//!  run ─▶ write saga ─▶ step 1 ─▶ write ─▶ step 2 ─▶ write ─▶ step 3 ✗ ─▶ write (compensating)
//!                                                                       │
//!        write (compensated) ◀─ write ◀─ undo 1 ◀─ write ◀─ undo 2 ◀────┘
//! ```
//!
//! Every arrow into "write" is a durable transition: nothing after it runs
//! before it is committed. A crash anywhere leaves the saga at its last
//! transition; [`SagaEngine::resume`] carries on from there, forward or
//! backward. See [`SagaEngine`] for what is guaranteed (at-least-once
//! steps, exactly-once recording) and what a step must do for an
//! exactly-once effect (use its idempotency key).
//!
//! A step that panics fails terminally (its cause is
//! [`Panicked`](crate::error::Panicked)) and the saga compensates; a
//! compensation that panics counts as failed and the saga ends `failed`.
//! A step that may never return needs
//! [`step_timeout`](SagaEngineBuilder::step_timeout).
//!
//! # Examples
//! Step 3 fails; steps 2 and 1 are compensated in reverse.
//! ```
//! use std::sync::{Arc, Mutex};
//! use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
//! use weir::durable::store::Store;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let (a, b, c, d) = (log.clone(), log.clone(), log.clone(), log.clone());
//! let order = SagaDefinition::builder("order")
//!     .step("reserve", move |_| { a.lock().unwrap().push("reserve"); async { Ok::<_, StepError>(()) } },
//!                      move |_| { b.lock().unwrap().push("release"); async { Ok(()) } })
//!     .step("charge", move |_| { c.lock().unwrap().push("charge"); async { Ok::<_, StepError>(()) } },
//!                     move |_| { d.lock().unwrap().push("refund"); async { Ok(()) } })
//!     .step("ship", |_: StepContext| async { Err::<(), _>(StepError::terminal("no courier")) }, |_| async { Ok(()) })
//!     .build()
//!     .unwrap();
//! let engine = SagaEngine::builder(Store::memory()).definition(order).build().unwrap();
//! let err = engine.run("order", &"order-1").await.unwrap_err();
//! assert!(err.is_compensated());
//! assert_eq!(*log.lock().unwrap(), ["reserve", "charge", "refund", "release"]);
//! # }
//! ```

mod builder;
mod cancel;
mod child;
mod definition;
mod engine;
mod error;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod queued;
mod run;
mod schedule;
mod step;

pub use self::builder::SagaEngineBuilder;
pub use self::cancel::CancelOutcome;
pub use self::definition::{OnTimeout, SagaDefinition, SagaDefinitionBuilder};
pub use self::engine::{ResumeReport, SagaEngine};
pub use self::error::{ChildSagaFailed, EventTimedOut, SagaCancelled, SagaError};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use self::queued::{SagaStart, WorkReport};
pub use self::schedule::{Missed, SagaSchedule};
pub use self::step::{StepContext, StepError};
