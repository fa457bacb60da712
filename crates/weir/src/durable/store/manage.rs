//! Managing sagas in production: a durable request to cancel one, and
//! deleting the ones that ended (one by one, or by age: retention).
//!
//! Each statement is the same text on SQLite and PostgreSQL and runs in
//! the store's group commit, so it is ordered with the sagas' own writes.

use std::time::SystemTime;

use super::record::{SagaRecord, SagaStatus, now_ms};
use super::{Backend, Store, StoreError, on_tx};
use crate::error::BoxError;

impl Store {
    /// Records a request to cancel saga `id` with `reason`, if it is
    /// running forward (a saga already compensating or ended is left as it
    /// is; a second request keeps the first reason). The request is
    /// durable: the worker holding the saga stops it at its next heartbeat
    /// and compensates its completed steps, or the next worker to claim it
    /// does. Returns the saga as it stands after the request, `None` if
    /// there is none. Use [`SagaEngine::cancel`] to also carry the cancel
    /// out at once when no live worker holds the saga.
    ///
    /// [`SagaEngine::cancel`]: crate::durable::saga::SagaEngine::cancel
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be written.
    pub async fn request_cancel(&self, id: &str, reason: &str) -> Result<Option<SagaRecord>, StoreError> {
        let (id_owned, reason, now) = (id.to_owned(), reason.to_owned(), now_ms());
        match &*self.inner.backend {
            Backend::Memory(m) => m.request_cancel(id, &reason, now),
            _ => {
                self.statement(move |tx| {
                    let (id, reason) = (id_owned.clone(), reason.clone());
                    Box::pin(async move {
                        // A parked saga (sleeping, waiting for an event) is due at once.
                        let sql = "UPDATE weir_sagas SET cancel_requested = COALESCE(cancel_requested, $2), updated_at = $3, \
                                   lease_until = CASE WHEN lease_owner IS NULL AND lease_until IS NOT NULL \
                                   THEN $3 - 1 ELSE lease_until END \
                                   WHERE id = $1 AND status = 'running'";
                        on_tx!(tx, conn => {
                            sqlx::query(sql).bind(&id).bind(&reason).bind(now).execute(&mut *conn).await?;
                        });
                        Ok(())
                    })
                })
                .await?;
            }
        }
        self.saga(id).await
    }

    /// Reopens completed saga `id` for compensation (its parent saga
    /// compensates the step that ran it): it becomes `compensating` with a
    /// cancel request `reason`, held by no one, so the next claim undoes
    /// its done steps in reverse. `false` if it is not completed.
    pub(crate) async fn reopen_for_compensation(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        if let Backend::Memory(m) = &*self.inner.backend {
            return Ok(m.reopen(id, reason, now));
        }
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.statement(move |tx| {
            let (id, reason) = (id.clone(), reason.clone());
            Box::pin(async move {
                let sql = "UPDATE weir_sagas SET status = 'compensating', \
                           cancel_requested = COALESCE(cancel_requested, $2), error = $3, \
                           lease_owner = NULL, lease_until = NULL, updated_at = $4 \
                           WHERE id = $1 AND status = 'completed'";
                let error = format!("cancelled: {reason}");
                Ok(on_tx!(tx, conn => {
                    sqlx::query(sql).bind(&id).bind(&reason).bind(&error).bind(now)
                        .execute(&mut *conn).await?.rows_affected() == 1
                }))
            })
        })
        .await
    }

    /// The running sagas `owner` holds that were asked to be cancelled or
    /// whose deadline passed: `(id, reason)`.
    pub(crate) async fn cancel_requests(&self, owner: &str) -> Result<Vec<(String, String)>, StoreError> {
        let now = now_ms();
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        let found: Vec<(String, Option<String>, Option<i64>)> = if let Backend::Memory(m) = &*self.inner.backend {
            m.cancel_requests(owner, now)
        } else {
            let owner = owner.to_owned();
            self.statement(move |tx| {
                let owner = owner.clone();
                Box::pin(async move {
                    let sql = "SELECT id, cancel_requested, deadline_at FROM weir_sagas \
                               WHERE lease_owner = $1 AND status = 'running' \
                               AND (cancel_requested IS NOT NULL OR deadline_at <= $2)";
                    Ok(on_tx!(tx, conn => sqlx::query_as(sql).bind(&owner).bind(now).fetch_all(&mut *conn).await?))
                })
            })
            .await?
        };
        Ok(found.into_iter().map(|(id, asked, deadline)| (id, stop_reason(asked, deadline))).collect())
    }

    /// Deletes saga `id` if it has ended (completed, compensated or
    /// failed); `false` if there is none.
    ///
    /// # Errors
    /// [`StoreError::Active`] for a saga still running or compensating
    /// (cancel it first); [`StoreError`] if the store fails.
    pub async fn delete_saga(&self, id: &str) -> Result<bool, StoreError> {
        let Some(saga) = self.saga(id).await? else { return Ok(false) };
        if saga.status.is_active() {
            return Err(StoreError::Active { target: self.target(), saga: id.to_owned(), status: saga.status });
        }
        // A child goes with its parent, or once the parent has ended (the
        // parent may yet compensate it).
        if let Some(parent) = &saga.parent
            && let Some(parent) = self.saga(parent).await?
            && parent.status.is_active()
        {
            return Err(StoreError::Active { target: self.target(), saga: parent.id, status: parent.status });
        }
        let deleted = self.delete_ended(Some(id.to_owned()), &[saga.status], i64::MAX).await?;
        Ok(deleted == 1)
    }

    /// Retention: deletes the sagas in one of `statuses` (active ones are
    /// never deleted: they are skipped) last changed before `before`;
    /// how many were deleted.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn prune_sagas(&self, statuses: &[SagaStatus], before: SystemTime) -> Result<u64, StoreError> {
        let ended: Vec<SagaStatus> = statuses.iter().copied().filter(|s| !s.is_active()).collect();
        if ended.is_empty() {
            return Ok(0);
        }
        let before = super::inspect::ms(before);
        self.delete_ended(None, &ended, before).await
    }

    /// Deletes ended sagas in `statuses` changed before `before` (ms),
    /// only saga `id` if given.
    async fn delete_ended(&self, id: Option<String>, statuses: &[SagaStatus], before: i64) -> Result<u64, StoreError> {
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        if let Backend::Memory(m) = &*self.inner.backend {
            return Ok(m.delete_ended(id.as_deref(), statuses, before));
        }
        // Status names are weir's own words: safe to write into the statement.
        let names: Vec<String> = statuses.iter().map(|s| format!("'{}'", s.as_str())).collect();
        // A child whose parent is still active is kept: the parent may yet
        // compensate it.
        let doomed = format!(
            "status IN ({}) AND updated_at < $1 AND ($2 IS NULL OR id = $2) AND (parent_id IS NULL OR NOT EXISTS \
             (SELECT 1 FROM weir_sagas p WHERE p.id = weir_sagas.parent_id AND p.status IN ('running', 'compensating')))",
            names.join(", ")
        );
        let events =
            format!("DELETE FROM weir_saga_events WHERE saga_id IN (SELECT id FROM weir_sagas WHERE {doomed})");
        let sagas = format!("DELETE FROM weir_sagas WHERE {doomed}");
        self.statement(move |tx| {
            let (events, sagas, id) = (events.clone(), sagas.clone(), id.clone());
            Box::pin(async move {
                Ok(on_tx!(tx, conn => {
                    sqlx::query(&events).bind(before).bind(&id).execute(&mut *conn).await?;
                    sqlx::query(&sagas).bind(before).bind(&id).execute(&mut *conn).await?.rows_affected()
                }))
            })
        })
        .await
    }

    /// Runs `effect` in the group commit; its error as a [`StoreError`].
    pub(super) async fn statement<T, F>(&self, effect: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut super::Tx) -> futures_util::future::BoxFuture<'t, Result<T, BoxError>>
            + Send
            + Sync
            + 'static,
    {
        self.commit_effect(effect).await.map_err(|source| match source.downcast::<StoreError>() {
            Ok(error) => *error,
            Err(source) => StoreError::Query { target: self.target(), source },
        })
    }
}

/// The reason a saga stopped by its deadline gives.
pub(crate) const DEADLINE_PASSED: &str = "its deadline passed";

/// Why a running saga must stop: the request's reason, or its deadline.
pub(crate) fn stop_reason(asked: Option<String>, deadline: Option<i64>) -> String {
    match (asked, deadline) {
        (Some(reason), _) => reason,
        (None, Some(_)) => DEADLINE_PASSED.to_owned(),
        (None, None) => String::new(),
    }
}
