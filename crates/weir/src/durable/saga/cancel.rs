//! [`SagaEngine::cancel`]: stop a running saga and compensate what it did;
//! [`SagaEngine::fork`]: start an ended one again, on a newer version.
//!
//! A cancel is a durable request first ([`Store::request_cancel`]); then
//! whoever holds the saga carries it out. Compensations are never
//! skipped:
//! - the worker driving the saga stops it at its next heartbeat (every
//!   third of the lease): the step running then is dropped at its next
//!   `.await` and, its effect unknown, compensated with the done ones;
//! - a saga no live worker holds is taken by the engine that cancels it
//!   (or, if that engine does not know its definition or is gone, by the
//!   next worker that claims it); if a worker before held it, its first
//!   pending step may have been running and is compensated too;
//! - a crash anywhere after the request leaves the request stored: the
//!   next claim compensates.
//!
//! Compensations themselves are never cancelled; one that keeps failing
//! ends the saga `failed`, as any compensation does.
//!
//! [`Store::request_cancel`]: crate::durable::store::Store::request_cancel

use super::engine::Driving;
use super::{SagaEngine, SagaError};
use crate::durable::store::{SagaStatus, StoreError};

/// What [`SagaEngine::cancel`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// No live worker held the saga: this engine took it and rolled it
    /// back; the error says how it ended
    /// ([`is_compensated`](SagaError::is_compensated), or
    /// [`is_failed`](SagaError::is_failed) if a compensation failed) and
    /// [`is_cancelled`](SagaError::is_cancelled) is true.
    RolledBack(SagaError),
    /// A live worker holds the saga (this engine included): it stops the
    /// saga within a third of its lease and compensates it; the request is
    /// durable meanwhile.
    Requested {
        /// The worker holding the saga.
        worker: String,
    },
    /// Nothing to cancel: the saga is already rolling back or has ended.
    NotRunning(SagaStatus),
}

impl SagaEngine {
    /// Cancels saga `id` with `reason`: the running step is stopped and
    /// every step that completed (or may have: the one interrupted) is
    /// compensated in reverse.
    ///
    /// The request is stored first ([`Store::request_cancel`](crate::durable::store::Store::request_cancel)). The worker
    /// driving the saga reads it at its next heartbeat (a third of the
    /// lease), drops the running step and compensates; a saga no live
    /// worker holds is taken and compensated here (or, if this engine does
    /// not know its definition, by the next worker that claims it). A
    /// crash after the request leaves it stored for the next claim.
    /// Compensations are never cancelled.
    ///
    /// # Errors
    /// [`SagaError`] wrapping [`StoreError::NotFound`] if there is no saga
    /// `id`; the store failing.
    ///
    /// # Cancel safety
    /// The request is durable once written; dropping the future after
    /// that leaves it to the saga's holder or next claimer.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::saga::{CancelOutcome, SagaDefinition, SagaEngine, StepError};
    /// use weir::durable::store::{SagaStatus, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::error::BoxError> {
    /// let store = Store::memory();
    /// let order = SagaDefinition::builder("order")
    ///     .step("charge", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
    ///     .build()?;
    /// let engine = SagaEngine::builder(store.clone()).definition(order).build()?;
    /// engine.submit("order-1", "order", &7).await?; // stored, not started
    /// match engine.cancel("order-1", "the customer changed their mind").await? {
    ///     CancelOutcome::RolledBack(how) => assert!(how.is_cancelled() && how.is_compensated()),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert_eq!(store.saga("order-1").await?.unwrap().status, SagaStatus::Compensated);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cancel(&self, id: &str, reason: &str) -> Result<CancelOutcome, SagaError> {
        let store = &self.inner.store;
        // Held from the request to the claim: a sleeping saga is due once
        // the request is stored, and this engine's own waker must not take
        // it in between (the cancel would then be carried out there, and
        // this call could only say it was requested).
        let claiming = self.inner.claiming.lock().await;
        let requested = store.request_cancel(id, reason).await.map_err(|e| SagaError::store(id, e))?;
        let Some(saga) = requested else {
            return Err(SagaError::store(
                id,
                StoreError::NotFound { target: store.target(), what: format!("saga {id}") },
            ));
        };
        if saga.status != SagaStatus::Running {
            return Ok(CancelOutcome::NotRunning(saga.status));
        }
        if let Some(signal) = self.inner.signal_of(id) {
            signal.fire(saga.cancel_requested.as_deref().unwrap_or(reason));
            return Ok(CancelOutcome::Requested { worker: self.inner.worker.clone() });
        }
        let holder = || CancelOutcome::Requested { worker: saga.lease_owner.clone().unwrap_or_default() };
        if !self.inner.definitions.contains_key(&saga.definition) {
            return Ok(holder());
        }
        self.start_heartbeat();
        let claimed = {
            let _claiming = claiming;
            let claimed = store.claim_one(id, &self.inner.worker, self.inner.lease).await;
            let claimed = claimed.map_err(|e| SagaError::store(id, e))?;
            claimed.and_then(|record| Some((Driving::start(&self.inner, id)?, record)))
        };
        let Some((driving, record)) = claimed else { return Ok(holder()) };
        match self.inner.drive_claimed(record, &driving).await {
            Err(error) if error.is_compensated() || error.is_failed() => Ok(CancelOutcome::RolledBack(error)),
            Err(error) => Err(error),
            // It ended before the request reached it.
            Ok(_) => Ok(CancelOutcome::NotRunning(SagaStatus::Completed)),
        }
    }
}

impl SagaEngine {
    /// Starts saga `new_id` with the input of ended saga `id` (completed,
    /// compensated or failed), on `definition` — a key such as
    /// `order@v3`, or a name for its highest registered version; `None`
    /// for the highest version of `id`'s own definition — and drives it
    /// like [`run_with_id`](Self::run_with_id) (so forking twice with one
    /// `new_id` starts it once). For the saga that was rolled back because
    /// of a bug since fixed in a new version. The original is left as it
    /// is.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] (in a [`SagaError`]) if there is no saga
    /// `id`; [`StoreError::Active`] if it has not ended (cancel it first);
    /// as [`run_with_id`](Self::run_with_id) for the new saga.
    ///
    /// # Cancel safety
    /// As [`run`](Self::run).
    pub async fn fork(&self, id: &str, new_id: &str, definition: Option<&str>) -> Result<String, SagaError> {
        let store = &self.inner.store;
        let Some(saga) = store.saga(id).await.map_err(|e| SagaError::store(id, e))? else {
            return Err(SagaError::store(
                id,
                StoreError::NotFound { target: store.target(), what: format!("saga {id}") },
            ));
        };
        if saga.status.is_active() {
            let active = StoreError::Active { target: store.target(), saga: id.to_owned(), status: saga.status };
            return Err(SagaError::store(id, active));
        }
        let definition = definition.unwrap_or_else(|| super::definition::name_of(&saga.definition));
        self.run_with_id(new_id, definition, &saga.input).await
    }
}

impl SagaEngine {
    /// Sends event `name` with `payload` to saga `id`: stored durably
    /// first, then the saga, if it is parked waiting, is due at once (this
    /// engine's waker takes it now; another process's within its poll of
    /// a second). A step waiting for `name`
    /// ([`wait_event`](super::SagaDefinitionBuilder::wait_event)) takes
    /// the oldest event of that name not taken yet, once; an event sent
    /// before the saga reaches that step waits for it. Sending twice
    /// stores two events (a second step waiting for the same name takes
    /// the second). Returns the event's number.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] (in a [`SagaError`]) if there is no saga
    /// `id`; [`StoreError::NotRunning`] if it is compensating or ended
    /// (no step of it would take the event: nothing is stored); the
    /// payload not serializing to JSON; the store failing.
    ///
    /// # Cancel safety
    /// The event is stored once the store's write commits, even if this
    /// future is dropped after that.
    pub async fn send_event<P: serde::Serialize>(&self, id: &str, name: &str, payload: &P) -> Result<i64, SagaError> {
        let payload = serde_json::to_value(payload).map_err(|e| {
            SagaError::store(id, StoreError::Corrupt { target: "event payload".into(), detail: e.to_string() })
        })?;
        let event = self.inner.store.send_event(id, name, &payload).await.map_err(|e| SagaError::store(id, e))?;
        self.inner.rewake.notify_one();
        Ok(event)
    }
}
