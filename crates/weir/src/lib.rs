#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]
//! Concurrent pipelines whose errors propagate correctly: nothing leaks,
//! nothing hangs, nothing is swallowed, nothing is lost.
//!
//! # At a glance
//!
//! | use | when you want |
//! | --- | --- |
//! | [`group::Group`] | to run tasks together, stop all on the first error, turn panics into errors, and be sure none outlives the group (Go's errgroup, plus what it lacks) |
//! | [`group::CollectGroup`] | to run every task to the end and get every error back, each with its task |
//! | [`Group::map`](group::Group::map) | a lazy, ordered, limited parallel map over an iterator or a stream ([`map_stream`](group::Group::map_stream)); the first error cancels the rest |
//! | [`group::ScopedGroup`] | the same contract for tasks that borrow from the caller, run on the caller's task |
//! | [`group::CancelCause`] | why a group (or a pipeline, [`Control::cause`](pipeline::Control::cause)) was cancelled: the first error, the deadline, the parent, a reason |
//! | [`pipeline::Pipeline`] | a source → named stages → sink over bounded channels, with workers per stage, retries, timeouts, skip / collect / dead-letter policies and a report that accounts for every item |
//! | [`policy::retry::RetryPolicy`] | backoff with jitter, attempt and time limits, permanent errors, a retry budget; as a wrapper or a stage setting |
//! | [`policy::Stack`] | retry, breaker, rate limit, bulkhead, hedge and timeout around any call (or a stage) in the right order, with one error convention; [`policy::Policy`] composes them in another |
//! | [`policy::rate::RateLimiter`] | at most n calls per period with a burst, for one dependency or per key; waits or refuses with when to try again |
//! | [`error`] | errors that say where they came from ([`StageError`](error::StageError)), an aggregate that keeps them all ([`Errors`](error::Errors)), and [`find`](error::find) / [`is`](error::is) to walk chains |
//!
//! # How the parts compose
//!
//! A pipeline runs every stage in one [`Group`](group::Group), so the
//! group's guarantees hold for the whole run: the first failure cancels
//! the rest, a dropped run aborts every task, and `wait` returns only when
//! no task is alive. Within a stage, each item goes through, in order:
//!
//! 1. **panic capture** (a [`Panicked`](error::Panicked) error);
//! 2. the stage's [policy stack](policy::Stack), innermost first: the
//!    **timeout** (a [`TimedOut`](error::TimedOut) error), hedge,
//!    bulkhead, rate limit, breaker, and the **retry** of errors that are
//!    transient (not [`Permanent`](error::Permanent), not a panic);
//! 3. the **failure policy**: fail the run, skip the item, collect the
//!    error, or hand the item to a dead-letter sink.
//!
//! An item that returns [`Skip`](error::Skip) is counted as skipped and never retried.
//!
//! # Correctness without `-race`
//!
//! Go checks pipelines for data races with `-race` at run time. In Rust the
//! type system does that job at compile time: tasks are `Send + 'static`
//! and share state only through types that are safe to share. weir
//! forbids `unsafe` code, so that stays true of weir itself.
//!
//! # Examples
//! ```
//! use weir::error::{find, StageError};
//! use weir::pipeline::{OnError, Pipeline, Stage};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let err = Pipeline::from_iter(["1", "2", "three", "4"])
//!     .stage(Stage::try_map("parse", |s: &str| async move { s.parse::<u32>() }).on_error(OnError::Collect))
//!     .fold(0, |sum, n| sum + n)
//!     .await
//!     .unwrap_err();
//! let failure = find::<StageError>(&err).unwrap();
//! assert_eq!((failure.stage(), failure.item().index()), ("parse", Some(2)));
//! assert!(err.report().is_balanced()); // 4 in: 3 parsed, 1 failed
//! # }
//! ```

// The layers, bottom to top; a module uses only those below it (and its
// own layer's).
pub mod broker;
pub mod durable;
pub mod error;
pub mod group;
pub mod observe;
pub mod pipeline;
pub mod policy;
mod sync;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

// The guide's pages (`docs/guide`) as doc tests: every Rust block in the
// book compiles and runs with `cargo test --doc --all-features`.
#[cfg(all(doctest, feature = "test-util", feature = "sqlite"))]
pub mod guide;
