//! Drives one saga from its stored record to an end: forward step by step,
//! or backward through the compensations, writing each transition before
//! the next begins.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryFutureExt;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tracing::Instrument;

use super::child::{ChildOutcome, child_id, child_output};
use super::definition::{Action, OnTimeout, StepDef};
use super::engine::{CancelSignal, Inner, WAKE_AHEAD};
use super::{EventTimedOut, SagaCancelled, SagaDefinition, SagaError, StepContext, StepError};
use crate::durable::store::{
    DEADLINE_PASSED, SagaRecord, SagaStatus, SagaWrite, StepStatus, Store, StoreError, WakeIf, ms, now_ms, stop_reason,
};
use crate::error::{BoxError, Errors, Origin};
use crate::observe;
use crate::policy::Stack;
use crate::policy::retry::is_transient;

pub(crate) struct Driver<'a> {
    pub(crate) store: &'a Store,
    pub(crate) definition: &'a SagaDefinition,
    pub(crate) steps: &'a Stack,
    pub(crate) compensations: &'a Stack,
    /// Fired when the saga is cancelled while this drive holds it.
    pub(crate) cancel: &'a CancelSignal,
    /// Told when the saga parks: the engine's waker looks again for the
    /// next saga due.
    pub(crate) parked: &'a tokio::sync::Notify,
    /// The engine, to drive child sagas.
    pub(crate) engine: &'a Arc<Inner>,
}

/// A failure remembered while compensating: the step and the cause.
struct Failure {
    step: String,
    cause: BoxError,
}

impl Driver<'_> {
    /// Runs `record` to completed, compensated or failed (or parked), in
    /// a span `saga` (see [`observe`](crate::observe) for its fields).
    pub(crate) async fn drive(&self, record: SagaRecord) -> Result<String, SagaError> {
        let span = tracing::info_span!(
            "saga",
            saga.id = %record.id,
            saga.definition = %record.definition,
            saga.parent = record.parent.as_deref(),
            outcome = tracing::field::Empty,
        );
        let result = self.drive_in_span(record).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => "completed",
            Err(error) if error.is_suspended() => "parked",
            Err(error) => match error.status() {
                Some(SagaStatus::Compensated) => "compensated",
                Some(SagaStatus::Failed) => "failed",
                _ => "stopped",
            },
        };
        span.record("outcome", outcome);
        result
    }

    async fn drive_in_span(&self, mut record: SagaRecord) -> Result<String, SagaError> {
        let input = Arc::new(record.input.clone());
        let mut failure: Option<Failure> = None;
        let due = record.cancel_requested.is_some() || deadline_left(&record).is_some_and(|left| left.is_zero());
        if record.status == SagaStatus::Running && due {
            let reason = stop_reason(record.cancel_requested.clone(), record.deadline_at);
            // Claimed with a cancel request or past its deadline: a worker
            // before this one (the fence says there was one) may have been
            // inside the first pending step, so it counts as interrupted.
            let held_before = record.fence > 1;
            // (Not a step that sleeps or waits: it has no effect.)
            let maybe_inside = record.steps.iter().position(|s| s.status == StepStatus::Pending);
            let calls =
                |i: &usize| matches!(self.definition.steps[*i].action, Action::Call { .. } | Action::Child { .. });
            let interrupted = maybe_inside.filter(|i| held_before && calls(i));
            failure = Some(self.stop(&mut record, &reason, interrupted).await?);
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
                        let span = forward_span(&record.steps[i].name);
                        let forward = self.forward(&mut record, &input, i).instrument(span.clone()).await;
                        span.record("outcome", step_outcome(record.steps[i].status));
                        if let Some(f) = forward? {
                            failure = Some(f);
                        }
                    }
                },
                SagaStatus::Compensating => match record.steps.iter().rposition(|s| s.needs_compensation()) {
                    Some(i) => {
                        let span = compensate_span(&record.steps[i].name);
                        let compensated = self.compensate(&mut record, &input, i).instrument(span.clone()).await;
                        span.record("outcome", step_outcome(record.steps[i].status));
                        compensated?;
                    }
                    None => return self.end_compensation(record, failure).await,
                },
                SagaStatus::Completed => return Ok(record.id),
                SagaStatus::Compensated | SagaStatus::Failed => return Err(self.ended(&record, failure)),
            }
        }
    }

    /// Runs step `i` forward with retries; records `Done` (or `Failed` and
    /// starts compensating). A step that sleeps or waits goes to
    /// [`wait`](Self::wait).
    async fn forward(
        &self,
        record: &mut SagaRecord,
        input: &Arc<Value>,
        i: usize,
    ) -> Result<Option<Failure>, SagaError> {
        let step = &self.definition.steps[i];
        let call = match &step.action {
            Action::Call { forward, .. } => forward,
            Action::Child { .. } => return self.child(record, input, i).await,
            Action::Sleep(_) | Action::Event { .. } => return self.wait(record, input, i).await,
        };
        let forward = |attempt| call(self.context(record, input, i, attempt));
        let policies = step.policies.as_ref().unwrap_or(self.steps);
        let timer = observe::Timer::start();
        let run = self.unless_stopped(record, self.attempts(policies, &step.name, forward)).await;
        match run {
            Ok((result, attempts)) => {
                let outcome = if result.is_ok() { "done" } else { "failed" };
                let labels = || {
                    let definition = self.definition.key();
                    vec![("definition", definition), ("step", step.name.to_string()), ("outcome", outcome.to_owned())]
                };
                observe::histogram("weir_saga_step_duration_seconds", labels).record(timer.elapsed().as_secs_f64());
                self.settle_step(record, i, result, attempts).await
            }
            // Cancelled inside the step: it is dropped at its next await,
            // its effect unknown, so it is compensated too.
            Err(reason) => self.stop(record, &reason, Some(i)).await.map(Some),
        }
    }

    /// Runs `work` unless the saga is cancelled or its deadline passes
    /// first: then `work` is dropped and the reason returned.
    async fn unless_stopped<T>(&self, record: &SagaRecord, work: impl Future<Output = T>) -> Result<T, String> {
        let deadline = async {
            match deadline_left(record) {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.cancel.token.cancelled() => Err(self.cancel.reason.get().cloned().unwrap_or_default()),
            () = deadline => Err(DEADLINE_PASSED.to_owned()),
            done = work => Ok(done),
        }
    }

    /// Step `i` runs a child saga: starts it (once: its id is this saga's
    /// and the step's) and drives it here, or finds how it ended. Done
    /// with the child's outputs when it completed; failed when it was
    /// rolled back or failed; when it sleeps, waits, or another worker
    /// drives it, this saga parks until the child's end wakes it (or a
    /// minute passes: a wake-up lost to a crash is found then).
    async fn child(&self, record: &mut SagaRecord, input: &Arc<Value>, i: usize) -> Result<Option<Failure>, SagaError> {
        let step = &self.definition.steps[i];
        let Action::Child { definition, input: child_input } = &step.action else {
            unreachable!("only a child step runs a child")
        };
        let id = child_id(&record.id, &step.name);
        let ctx = self.context(record, input, i, 1);
        let run = self.unless_stopped(record, self.engine.run_child(&id, definition, record, || child_input(&ctx)));
        let outcome = match run.await {
            Ok(outcome) => outcome?,
            // Stopped while the child ran here: the child is cancelled and
            // rolled back when this step is compensated.
            Err(reason) => {
                record.steps[i].child = Some(id);
                return self.stop(record, &reason, Some(i)).await.map(Some);
            }
        };
        record.steps[i].child = Some(id.clone());
        match outcome {
            ChildOutcome::Ended(child) => self.settle_step(record, i, child_output(&child), 1).await,
            ChildOutcome::NotStarted(error) => self.settle_step(record, i, Err(error), 1).await,
            ChildOutcome::Elsewhere => {
                let look_again = now_ms().saturating_add(CHILD_POLL_MS);
                record.steps[i].wake_at = Some(look_again);
                self.park(record, i, look_again, Some(WakeIf::ChildEnded(id))).await
            }
        }
    }

    /// Records how step `i` went forward: `Done` with its output, or
    /// `Failed` (`Interrupted` if it timed out and its definition asks)
    /// and the saga starts compensating.
    async fn settle_step(
        &self,
        record: &mut SagaRecord,
        i: usize,
        result: Result<Value, StepError>,
        attempts: u32,
    ) -> Result<Option<Failure>, SagaError> {
        let step = &self.definition.steps[i];
        tracing::Span::current().record("attempts", attempts);
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

    /// Step `i` sleeps or waits for an event. Its wake-up time is fixed
    /// the first time the saga gets here and kept in its record. Done when
    /// the time has come (a sleep), or an event is taken (its payload is
    /// the output); when a wait runs out, what its definition says.
    /// A time at most [`WAKE_AHEAD`] away is waited out here, holding the
    /// lease (the waker claims that far ahead; a short sleep costs no
    /// park and wake-up); a cancel or the deadline still stops it.
    /// Otherwise the saga is parked until then (or its deadline, if
    /// sooner): written, its lease given up, and this drive ends with
    /// [`SagaError::is_suspended`].
    async fn wait(&self, record: &mut SagaRecord, input: &Arc<Value>, i: usize) -> Result<Option<Failure>, SagaError> {
        let step = &self.definition.steps[i];
        let mut now = now_ms();
        let wake_at = match (record.steps[i].wake_at, &step.action) {
            (Some(at), _) => at,
            (None, Action::Sleep(when)) => match when(&self.context(record, input, i, 1)) {
                Ok(at) => ms(at),
                Err(error) => return self.settle_step(record, i, Err(error), 1).await,
            },
            (None, Action::Event { timeout, .. }) => {
                now.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX))
            }
            (None, Action::Call { .. } | Action::Child { .. }) => unreachable!("only a sleep or a wait waits"),
        };
        let event = match &step.action {
            Action::Event { event, .. } => Some(event),
            _ => None,
        };
        record.steps[i].wake_at = Some(wake_at);
        record.steps[i].event = event.map(ToString::to_string);
        let left = Duration::from_millis(wake_at.saturating_sub(now).max(0) as u64);
        if !left.is_zero() && left <= WAKE_AHEAD {
            if let Err(reason) = self.unless_stopped(record, tokio::time::sleep(left)).await {
                return self.stop(record, &reason, None).await.map(Some);
            }
            // Due now (by the timer: the wall clock is not read again, as
            // it may lag a paused tokio clock).
            now = wake_at;
        }
        let fail = |e: StoreError| SagaError::store(&record.id, e);
        if let Action::Event { event, timeout, on_timeout } = &step.action {
            if let Some(payload) =
                self.store.take_event(&record.id, record.fence, &step.name, event).await.map_err(fail)?
            {
                return self.settle_step(record, i, Ok(payload), 1).await;
            }
            if now >= wake_at {
                let outcome = match on_timeout {
                    OnTimeout::Continue => Ok(Value::Null),
                    OnTimeout::Compensate => {
                        Err(StepError::terminal(EventTimedOut { event: event.to_string(), waited: *timeout }))
                    }
                };
                return self.settle_step(record, i, outcome, 1).await;
            }
        } else if now >= wake_at {
            return self.settle_step(record, i, Ok(Value::Null), 1).await;
        }
        self.park(record, i, wake_at, event.map(|e| WakeIf::Event(e.to_string()))).await
    }

    /// Parks the saga at step `i` until `wake_at` (or its deadline, if
    /// sooner; at once if what it waits for, `wake_if`, is there): written,
    /// its lease given up, and this drive ends with
    /// [`SagaError::is_suspended`].
    async fn park(
        &self,
        record: &SagaRecord,
        i: usize,
        wake_at: i64,
        wake_if: Option<WakeIf>,
    ) -> Result<Option<Failure>, SagaError> {
        let until = record.deadline_at.map_or(wake_at, |deadline| deadline.min(wake_at));
        let steps_json = serde_json::to_string(&record.steps).expect("step records serialize");
        let fail = |e: StoreError| SagaError::store(&record.id, e);
        let parked = self.store.park(&record.id, record.fence, steps_json, until, wake_if).await.map_err(fail)?;
        if !parked {
            return Err(SagaError::store(&record.id, StoreError::LeaseLost { saga: record.id.clone() }));
        }
        self.parked.notify_one();
        observe::counter("weir_saga_parked_total", Vec::new).increment(1);
        tracing::debug!(saga = %record.id, step = %record.steps[i].name, until, "saga parked");
        Err(SagaError::suspended(&record.id, &record.steps[i]))
    }

    /// Undoes step `i` with retries; records `Compensated` or
    /// `CompensationFailed`.
    async fn compensate(&self, record: &mut SagaRecord, input: &Arc<Value>, i: usize) -> Result<(), SagaError> {
        let step: &StepDef = &self.definition.steps[i];
        let compensate = match &step.action {
            Action::Call { compensate, .. } => compensate.as_ref(),
            Action::Child { .. } => None,
            Action::Sleep(_) | Action::Event { .. } => None,
        };
        let (result, attempts) = match compensate {
            // Rolling the child back, through the compensation policies
            // (a store failing is retried; the child's own compensations
            // have their own retries inside).
            None if matches!(step.action, Action::Child { .. }) => {
                let id = record.steps[i].child.clone().unwrap_or_else(|| child_id(&record.id, &step.name));
                let undo = |_| Arc::clone(self.engine).undo_child(id.clone(), record.id.clone());
                self.attempts(self.compensations, &step.name, undo).await
            }
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
        tracing::Span::current().record("attempts", attempts);
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
        self.store.write(write).await.map_err(|e| SagaError::store(&record.id, e))?;
        if !record.status.is_active() {
            let labels = || vec![("definition", record.definition.clone()), ("status", record.status.to_string())];
            observe::counter("weir_saga_ended_total", labels).increment(1);
        }
        // A child's end wakes its parent if it is parked waiting for it
        // (lost to a crash here, the parent's own look-again finds it).
        if let Some(parent) = record.parent.as_ref().filter(|_| !record.status.is_active()) {
            match self.store.wake(parent).await {
                Ok(()) => self.parked.notify_one(),
                Err(error) => tracing::warn!(saga = %record.id, %parent, %error, "could not wake the parent saga"),
            }
        }
        Ok(())
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

/// The span of step `step` going forward; `attempts` and `outcome` are
/// recorded when it ends.
fn forward_span(step: &str) -> tracing::Span {
    tracing::info_span!("saga.step", step, attempts = tracing::field::Empty, outcome = tracing::field::Empty)
}

/// The span of step `step` being compensated, as [`forward_span`].
fn compensate_span(step: &str) -> tracing::Span {
    tracing::info_span!("saga.compensate", step, attempts = tracing::field::Empty, outcome = tracing::field::Empty)
}

/// A step's status as a span's `outcome`.
fn step_outcome(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "pending",
        StepStatus::Done => "done",
        StepStatus::Failed => "failed",
        StepStatus::Compensated => "compensated",
        StepStatus::CompensationFailed => "compensation_failed",
        StepStatus::Interrupted => "interrupted",
    }
}

/// How long a saga waiting for a child saga sleeps before it looks again,
/// in case the wake-up of the child's end was lost to a crash.
const CHILD_POLL_MS: i64 = 60_000;

/// How long until `record`'s deadline (zero once it passed); `None`
/// without one.
fn deadline_left(record: &SagaRecord) -> Option<std::time::Duration> {
    let at = record.deadline_at?;
    Some(std::time::Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)))
}
