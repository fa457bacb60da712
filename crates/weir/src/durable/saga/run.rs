//! Drives one saga from its stored record to an end: forward step by step,
//! or backward through the compensations, writing each transition before
//! the next begins.

use std::sync::Arc;

use futures_util::TryFutureExt;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::definition::StepDef;
use super::engine::CancelSignal;
use super::{SagaCancelled, SagaDefinition, SagaError, StepContext, StepError};
use crate::durable::store::{
    DEADLINE_PASSED, SagaRecord, SagaStatus, SagaWrite, StepStatus, Store, now_ms, stop_reason,
};
use crate::error::{BoxError, Errors, Origin};
use crate::policy::Stack;
use crate::policy::retry::is_transient;

pub(crate) struct Driver<'a> {
    pub(crate) store: &'a Store,
    pub(crate) definition: &'a SagaDefinition,
    pub(crate) steps: &'a Stack,
    pub(crate) compensations: &'a Stack,
    /// Fired when the saga is cancelled while this drive holds it.
    pub(crate) cancel: &'a CancelSignal,
}

/// A failure remembered while compensating: the step and the cause.
struct Failure {
    step: String,
    cause: BoxError,
}

impl Driver<'_> {
    /// Runs `record` to completed, compensated or failed.
    pub(crate) async fn drive(&self, mut record: SagaRecord) -> Result<String, SagaError> {
        let input = Arc::new(record.input.clone());
        let mut failure: Option<Failure> = None;
        let due = record.cancel_requested.is_some() || deadline_left(&record).is_some_and(|left| left.is_zero());
        if record.status == SagaStatus::Running && due {
            let reason = stop_reason(record.cancel_requested.clone(), record.deadline_at);
            // Claimed with a cancel request or past its deadline: a worker
            // before this one (the fence says there was one) may have been
            // inside the first pending step, so it counts as interrupted.
            let held_before = record.fence > 1;
            let maybe_inside = record.steps.iter().position(|s| s.status == StepStatus::Pending);
            failure = Some(self.stop(&mut record, &reason, maybe_inside.filter(|_| held_before)).await?);
        }
        loop {
            match record.status {
                SagaStatus::Running if self.cancel.token.is_cancelled() => {
                    let reason = self.cancel.reason.get().cloned().unwrap_or_default();
                    failure = Some(self.stop(&mut record, &reason, None).await?);
                }
                SagaStatus::Running if deadline_left(&record).is_some_and(|left| left.is_zero()) => {
                    failure = Some(self.stop(&mut record, DEADLINE_PASSED, None).await?);
                }
                SagaStatus::Running => match record.steps.iter().position(|s| s.status == StepStatus::Pending) {
                    None => return self.finish(&mut record, SagaStatus::Completed).await.map(|()| record.id),
                    Some(i) => {
                        if let Some(f) = self.forward(&mut record, &input, i).await? {
                            failure = Some(f);
                        }
                    }
                },
                SagaStatus::Compensating => match record.steps.iter().rposition(|s| s.needs_compensation()) {
                    Some(i) => self.compensate(&mut record, &input, i).await?,
                    None => return self.end_compensation(record, failure).await,
                },
                SagaStatus::Completed => return Ok(record.id),
                SagaStatus::Compensated | SagaStatus::Failed => return Err(self.ended(&record, failure)),
            }
        }
    }

    /// Runs step `i` forward with retries; records `Done` (or `Failed` and
    /// starts compensating).
    async fn forward(
        &self,
        record: &mut SagaRecord,
        input: &Arc<Value>,
        i: usize,
    ) -> Result<Option<Failure>, SagaError> {
        let step = &self.definition.steps[i];
        let forward = |attempt| (step.forward)(self.context(record, input, i, attempt));
        let policies = step.policies.as_ref().unwrap_or(self.steps);
        let deadline = async {
            match deadline_left(record) {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        let run = tokio::select! {
            biased;
            () = self.cancel.token.cancelled() => Err(self.cancel.reason.get().cloned().unwrap_or_default()),
            () = deadline => Err(DEADLINE_PASSED.to_owned()),
            run = self.attempts(policies, &step.name, forward) => Ok(run),
        };
        let (result, attempts) = match run {
            Ok(run) => run,
            // Cancelled inside the step: it is dropped at its next await,
            // its effect unknown, so it is compensated too.
            Err(reason) => return self.stop(record, &reason, Some(i)).await.map(Some),
        };
        let rec = &mut record.steps[i];
        rec.attempts += attempts;
        let failure = match result {
            Ok(output) => {
                rec.status = StepStatus::Done;
                rec.output = Some(output);
                rec.error = None;
                let last = i + 1 == record.steps.len();
                let status = if last { SagaStatus::Completed } else { SagaStatus::Running };
                tracing::debug!(saga = %record.id, step = %step.name, attempts, "step done");
                record.status = status;
                None
            }
            Err(error) => {
                tracing::warn!(saga = %record.id, step = %step.name, attempts, %error, "step failed; compensating");
                // A step that timed out may have taken effect: compensated
                // too when its definition asks.
                let unknown = step.compensate_timed_out && error.timed_out();
                rec.status = if unknown { StepStatus::Interrupted } else { StepStatus::Failed };
                rec.error = Some(error.to_string());
                record.status = SagaStatus::Compensating;
                record.error = Some(format!("step `{}` failed: {error}", step.name));
                Some(Failure { step: step.name.to_string(), cause: error.into_cause() })
            }
        };
        self.save(record).await?;
        Ok(failure)
    }

    /// Undoes step `i` with retries; records `Compensated` or
    /// `CompensationFailed`.
    async fn compensate(&self, record: &mut SagaRecord, input: &Arc<Value>, i: usize) -> Result<(), SagaError> {
        let step: &StepDef = &self.definition.steps[i];
        let (result, attempts) = match &step.compensate {
            None => (Ok(()), 0),
            Some(undo) => {
                let undo_name: Arc<str> = Arc::from(format!("{}/undo", step.name));
                let undo = |attempt| {
                    let mut ctx = self.context(record, input, i, attempt);
                    ctx.step_name = Arc::clone(&undo_name);
                    undo(ctx)
                };
                self.attempts(self.compensations, &step.name, undo).await
            }
        };
        let rec = &mut record.steps[i];
        rec.compensation_attempts += attempts;
        match result {
            Ok(()) => rec.status = StepStatus::Compensated,
            Err(error) => {
                tracing::error!(saga = %record.id, step = %step.name, attempts, %error, "compensation failed");
                rec.status = StepStatus::CompensationFailed;
                rec.error = Some(error.to_string());
            }
        }
        self.save(record).await
    }

    /// Stops the saga going forward because it was cancelled (or its
    /// deadline passed): step
    /// `interrupted` (if any) is marked so and compensated with the done
    /// ones; the saga starts compensating.
    async fn stop(
        &self,
        record: &mut SagaRecord,
        reason: &str,
        interrupted: Option<usize>,
    ) -> Result<Failure, SagaError> {
        if let Some(i) = interrupted {
            let step = &mut record.steps[i];
            step.status = StepStatus::Interrupted;
            step.error = Some("interrupted by a cancel; its effect is unknown, so it is compensated".into());
        }
        tracing::info!(saga = %record.id, reason, "saga cancelled; compensating");
        record.status = SagaStatus::Compensating;
        record.error = Some(format!("cancelled: {reason}"));
        record.cancel_requested.get_or_insert_with(|| reason.to_owned());
        self.save(record).await?;
        Ok(Failure { step: String::new(), cause: Box::new(SagaCancelled { reason: reason.to_owned() }) })
    }

    async fn end_compensation(&self, mut record: SagaRecord, failure: Option<Failure>) -> Result<String, SagaError> {
        let any_failed = record.steps.iter().any(|s| s.status == StepStatus::CompensationFailed);
        let status = if any_failed { SagaStatus::Failed } else { SagaStatus::Compensated };
        self.finish(&mut record, status).await?;
        Err(self.ended(&record, failure))
    }

    /// The error for a saga that ended without completing, from what this
    /// run saw (live causes) or from the record (after a resume).
    fn ended(&self, record: &SagaRecord, failure: Option<Failure>) -> SagaError {
        let (step, cause) = match failure {
            Some(f) => (f.step, f.cause),
            None if record.cancel_requested.is_some()
                && !record.steps.iter().any(|s| s.status == StepStatus::Failed) =>
            {
                let reason = record.cancel_requested.clone().unwrap_or_default();
                (String::new(), Box::new(SagaCancelled { reason }) as BoxError)
            }
            None => {
                let failed = record.steps.iter().find(|s| s.status == StepStatus::Failed);
                let step = failed.map(|s| s.name.clone()).unwrap_or_default();
                let cause = failed.and_then(|s| s.error.clone()).or_else(|| record.error.clone()).unwrap_or_default();
                (step, cause.into())
            }
        };
        let compensations: Errors<BoxError> = record
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::CompensationFailed)
            .map(|s| (Origin::Stage(Arc::from(s.name.as_str())), s.error.clone().unwrap_or_default().into()))
            .collect();
        if compensations.is_empty() {
            SagaError::compensated(&record.id, &step, cause)
        } else {
            SagaError::failed(&record.id, &step, cause, compensations)
        }
    }

    async fn finish(&self, record: &mut SagaRecord, status: SagaStatus) -> Result<(), SagaError> {
        if record.status != status {
            record.status = status;
            self.save(record).await?;
        }
        tracing::info!(saga = %record.id, %status, "saga ended");
        Ok(())
    }

    async fn save(&self, record: &SagaRecord) -> Result<(), SagaError> {
        let write = SagaWrite::Update {
            id: record.id.clone(),
            fence: record.fence,
            status: record.status,
            steps_json: serde_json::to_string(&record.steps).expect("step records serialize"),
            error: record.error.clone(),
        };
        self.store.write(write).await.map(drop).map_err(|e| SagaError::store(&record.id, e))
    }

    fn context(&self, record: &SagaRecord, input: &Arc<Value>, i: usize, attempt: u32) -> StepContext {
        let outputs = record.steps.iter().map(|s| (s.name.clone(), s.output.clone())).collect();
        StepContext {
            saga_id: Arc::from(record.id.as_str()),
            step: i,
            step_name: self.definition.steps[i].name.clone(),
            attempt,
            input: Arc::clone(input),
            outputs: Arc::new(outputs),
        }
    }

    /// Calls `call` through `policies` until it succeeds, fails
    /// terminally, or the retry gives up; returns the result and the
    /// attempts made. A panic is caught (by the stack) and is terminal
    /// ([`Panicked`](crate::error::Panicked)): retrying a bug rarely helps,
    /// and the saga must still reach an end. A timeout is retryable
    /// ([`TimedOut`](crate::error::TimedOut)).
    async fn attempts<T, F>(&self, policies: &Stack, key: &str, call: F) -> (Result<T, StepError>, u32)
    where
        T: Send,
        F: Fn(u32) -> BoxFuture<'static, Result<T, StepError>> + Sync,
    {
        let mut retries = 0;
        let attempt = |attempt| call(attempt).map_err(StepError::into_box_error);
        let retryable = |error: &BoxError| !StepError::is_terminal_box_error(error) && is_transient(&**error);
        let result = policies.drive(key, &attempt, retryable, |_, _, _| retries += 1).await;
        let result = result.map_err(|e| StepError::from_box_error(e.into_attempted()));
        (result, retries + 1)
    }
}

/// How long until `record`'s deadline (zero once it passed); `None`
/// without one.
fn deadline_left(record: &SagaRecord) -> Option<std::time::Duration> {
    let at = record.deadline_at?;
    Some(std::time::Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)))
}
