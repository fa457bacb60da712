//! Child sagas: a step of one saga (the parent) that runs another saga and
//! waits for its end ([`SagaDefinitionBuilder::child`]).
//!
//! - **Started once.** The child's id is `"{parent id}/{step name}"` and it
//!   is stored insert-if-absent, with its parent's id, so a parent that
//!   reaches the step again (after a crash, or woken) finds the same child.
//! - **Driven at once, in the parent's slot**, by the parent's worker. If
//!   the child sleeps, waits for an event, or another worker holds it, the
//!   parent parks (no worker, no lease): the child's end makes it due (one
//!   statement after the child's last write; the park itself checks
//!   whether the child already ended, so the two cannot miss each other),
//!   and a parent parked a minute looks again in case that wake-up was
//!   lost to a crash.
//! - **Rolled back with its parent.** Compensating the child step cancels
//!   a running child, or reopens a completed one for compensation, then
//!   drives it here until it is compensated (or waits for the worker that
//!   holds it). A child that was rolled back by itself is a failed step of
//!   the parent, which compensates its own done steps.
//!
//! [`SagaDefinitionBuilder::child`]: super::SagaDefinitionBuilder::child

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::engine::{Driving, Inner, new_record};
use super::{ChildSagaFailed, SagaError, StepError};
use crate::durable::store::{SagaRecord, SagaStatus, SagaWrite, StoreError};

/// How a child saga stands, for the parent's step.
pub(super) enum ChildOutcome {
    /// It ended (completed, compensated or failed): its record.
    Ended(Box<SagaRecord>),
    /// It could not start (its input could not be computed, or its
    /// definition is not registered): the step fails with this.
    NotStarted(StepError),
    /// It sleeps, waits, or another worker drives it: the parent waits for
    /// its end.
    Elsewhere,
}

/// The id of the child that step `step` of saga `parent` starts.
pub(super) fn child_id(parent: &str, step: &str) -> String {
    format!("{parent}/{step}")
}

/// What the parent's step made of an ended child: its outputs (step name
/// to output) if it completed, else a terminal [`ChildSagaFailed`].
pub(super) fn child_output(child: &SagaRecord) -> Result<Value, StepError> {
    if child.status == SagaStatus::Completed {
        let outputs = child.steps.iter().map(|s| (s.name.clone(), s.output.clone().unwrap_or(Value::Null)));
        return Ok(Value::Object(outputs.collect()));
    }
    Err(StepError::terminal(ChildSagaFailed {
        child: child.id.clone(),
        status: child.status,
        error: child.error.clone().unwrap_or_default(),
    }))
}

/// How often the compensation of a child step looks again at a child that
/// another worker holds, while it waits for that worker to roll it back.
const UNDO_POLL: Duration = Duration::from_millis(200);

impl Inner {
    /// Runs child saga `id` of `definition` for `parent`: starts it with
    /// the input `input` computes (only if it does not exist yet), drives
    /// it here if no live worker holds it, and says how it stands.
    ///
    /// # Errors
    /// [`SagaError`] when the store fails.
    pub(super) async fn run_child(
        self: &Arc<Self>,
        id: &str,
        definition: &str,
        parent: &SagaRecord,
        input: impl FnOnce() -> Result<Value, StepError>,
    ) -> Result<ChildOutcome, SagaError> {
        let fail = |e: StoreError| SagaError::store(&parent.id, e);
        // Driven by this engine already (a take-over claimed it): its end
        // wakes the parent.
        let Some(driving) = Driving::start(self, id) else { return Ok(ChildOutcome::Elsewhere) };
        if self.store.saga(id).await.map_err(fail)?.is_none() {
            let Some((key, def)) = self.resolve(definition) else {
                let missing = format!("no definition `{definition}` is registered for child saga `{id}`");
                return Ok(ChildOutcome::NotStarted(StepError::terminal(missing)));
            };
            let input = match input() {
                Ok(input) => input,
                Err(error) => return Ok(ChildOutcome::NotStarted(error)),
            };
            let mut record = new_record(id, key, def, input);
            record.parent = Some(parent.id.clone());
            record.deadline_at = parent.deadline_at;
            // Started here, so held here from the first write on.
            record.fence = 1;
            record.lease_owner = Some(self.worker.clone());
            record.lease_until = Some(record.created_at + self.lease.as_millis() as i64);
            if self.store.write(SagaWrite::Insert(Box::new(record.clone()))).await.map_err(fail)? {
                tracing::debug!(saga = %id, parent = %parent.id, "child saga started");
                return self.drive_child(record, &driving, parent).await;
            }
        }
        let claimed = {
            let _claiming = self.claiming.lock().await;
            self.store.claim_one(id, &self.worker, self.lease).await.map_err(fail)?
        };
        match claimed {
            Some(record) => self.drive_child(record, &driving, parent).await,
            None => match self.store.saga(id).await.map_err(fail)? {
                Some(child) if !child.status.is_active() => Ok(ChildOutcome::Ended(Box::new(child))),
                _ => Ok(ChildOutcome::Elsewhere),
            },
        }
    }

    /// Drives claimed child `record` to its end or its park. (Boxed, and
    /// not an `async fn`: a child may have children of its own, so the
    /// drive's future contains itself.)
    fn drive_child<'a>(
        self: &'a Arc<Self>,
        record: SagaRecord,
        driving: &'a Driving,
        parent: &'a SagaRecord,
    ) -> BoxFuture<'a, Result<ChildOutcome, SagaError>> {
        Box::pin(async move { self.drive_child_here(record, driving, parent).await })
    }

    async fn drive_child_here(
        self: &Arc<Self>,
        record: SagaRecord,
        driving: &Driving,
        parent: &SagaRecord,
    ) -> Result<ChildOutcome, SagaError> {
        let id = record.id.clone();
        match self.drive_claimed(record, driving).await {
            Ok(_) => {}
            Err(e) if e.is_compensated() || e.is_failed() => {}
            Err(e) if e.is_suspended() || e.is_lease_lost() || e.unknown_definition().is_some() => {
                return Ok(ChildOutcome::Elsewhere);
            }
            Err(e) => return Err(e),
        }
        match self.store.saga(&id).await.map_err(|e| SagaError::store(&parent.id, e))? {
            Some(child) if !child.status.is_active() => Ok(ChildOutcome::Ended(Box::new(child))),
            _ => Ok(ChildOutcome::Elsewhere),
        }
    }

    /// Rolls child saga `id` of `parent` back: cancels it if it runs,
    /// reopens it if it completed, retries its compensations once if they
    /// had failed, and drives its compensation here (or waits while
    /// another worker holds it) until it ends.
    ///
    /// # Errors
    /// A [`StepError`]: the store failing (retryable), or the child's
    /// compensation failing (terminal: it ends `failed`, waiting for a
    /// person).
    pub(super) fn undo_child(self: Arc<Self>, id: String, parent: String) -> BoxFuture<'static, Result<(), StepError>> {
        // (Boxed, and not an `async fn`: the child's rollback may undo
        // children of its own.)
        Box::pin(async move { self.undo_child_here(&id, &parent).await })
    }

    async fn undo_child_here(self: &Arc<Self>, id: &str, parent: &str) -> Result<(), StepError> {
        let reason = format!("its parent saga `{parent}` is rolled back");
        let mut retried_failed = false;
        loop {
            let Some(child) = self.store.saga(id).await? else {
                return Ok(()); // never started
            };
            match child.status {
                SagaStatus::Compensated => return Ok(()),
                SagaStatus::Failed if !retried_failed => drop(self.store.retry_compensations(&child).await?),
                SagaStatus::Failed => return Err(child_output(&child).expect_err("failed")),
                SagaStatus::Completed => drop(self.store.reopen_for_compensation(id, &reason).await?),
                SagaStatus::Running => drop(self.store.request_cancel(id, &reason).await?),
                SagaStatus::Compensating => {}
            }
            // (A failed child is retried once per rollback of its parent:
            // an operator's `resume` of the parent retries it again.)
            retried_failed = true;
            let claimed = match Driving::start(self, id) {
                None => None,
                Some(driving) => {
                    let _claiming = self.claiming.lock().await;
                    let claimed = self.store.claim_one(id, &self.worker, self.lease).await?;
                    claimed.map(|record| (driving, record))
                }
            };
            match claimed {
                Some((driving, record)) => {
                    if let Err(error) = self.drive_claimed(record, &driving).await
                        && !(error.is_compensated() || error.is_failed())
                    {
                        tracing::debug!(saga = %id, %error, "rolling back a child saga: looking again");
                        tokio::time::sleep(UNDO_POLL).await;
                    }
                }
                // Another worker (or another drive of this engine) holds it:
                // it sees the request at its next heartbeat.
                None => tokio::time::sleep(UNDO_POLL).await,
            }
        }
    }
}
