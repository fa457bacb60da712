//! Sagas that sleep or wait for an event, and the events sent to them.
//!
//! A saga that reaches a timer or an event it has not received is
//! **parked**: its steps are written, its lease is given up (no owner) and
//! its `lease_until` becomes the time it is due — the wake-up time, or at
//! once when an event arrives. It then costs a row, no task and no lease;
//! any worker's wake-up claim takes it when it is due (a claim takes
//! sagas whose `lease_until` has passed).
//!
//! Sending an event and parking are ordered so that no wake-up is lost:
//! parking makes the saga due at once if an event of the awaited name is
//! already stored, and sending makes a parked saga due at once. On
//! PostgreSQL the sender first locks the saga's row, so a park and a send
//! running at the same moment serialize on it.

use serde_json::Value;

use super::record::now_ms;
use super::{Backend, Store, StoreError};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use super::{SagaStatus, Tx};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use crate::error::BoxError;

/// What makes a parked saga due at once if it is already there when it
/// parks ([`Store::park`]).
#[derive(Debug, Clone)]
pub(crate) enum WakeIf {
    /// An event of this name, not taken yet.
    Event(String),
    /// The end of this child saga.
    ChildEnded(String),
}

/// What a parked saga can wait for, as `weir_sagas.waiting_for` and the
/// `waiting_for` label of `weir_saga_parked` say it: its wake-up time, an
/// event, or a child saga's end. Sagas parked by a weir older than schema
/// 10 count as `unknown`.
pub(crate) const WAITING_FOR: [&str; 3] = ["timer", "event", "child"];

impl WakeIf {
    /// What a saga parked with `wake_if` waits for: one of
    /// [`WAITING_FOR`] (no `wake_if`: only its time).
    pub(crate) fn waiting_for(wake_if: Option<&WakeIf>) -> &'static str {
        match wake_if {
            None => "timer",
            Some(WakeIf::Event(_)) => "event",
            Some(WakeIf::ChildEnded(_)) => "child",
        }
    }
}

/// How many sagas of one definition are parked waiting for one kind of
/// thing ([`Store::count_parked`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ParkedCount {
    /// The stored definition key (`order`, `order@v2`).
    pub(crate) definition: String,
    /// One of [`WAITING_FOR`], or `unknown`.
    pub(crate) waiting_for: String,
    /// How many.
    pub(crate) count: i64,
}

/// An event sent to a saga ([`Store::saga_events`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SagaEvent {
    /// Its number, increasing in the order events were stored.
    pub id: i64,
    /// The saga it was sent to.
    pub saga_id: String,
    /// The event's name (what a step waits for).
    pub name: String,
    /// What it carries.
    pub payload: Value,
    /// When it was stored (ms since the epoch).
    pub sent_at: i64,
    /// The step that took it, once one did.
    pub consumed_by: Option<String>,
    /// When that step took it (ms since the epoch).
    pub consumed_at: Option<i64>,
}

impl Store {
    /// Parks saga `id` (held with `fence`): writes `steps_json`, gives up
    /// the lease and makes the saga due at `until` — at once instead if
    /// what it waits for is already there (`wake_if`). `false` if the fence
    /// is stale (another worker took the saga over).
    pub(crate) async fn park(
        &self,
        id: &str,
        fence: i64,
        steps_json: String,
        until: i64,
        wake_if: Option<WakeIf>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        if let Backend::Memory(m) = &*self.inner.backend {
            return Ok(m.park(id, fence, &steps_json, until, wake_if.as_ref(), now));
        }
        let id = id.to_owned();
        let waiting_for = WakeIf::waiting_for(wake_if.as_ref());
        self.statement(move |tx| {
            let (id, steps, wake_if) = (id.clone(), steps_json.clone(), wake_if.clone());
            Box::pin(async move {
                let parked = "UPDATE weir_sagas SET steps = $1, lease_owner = NULL, lease_until = $2, updated_at = $3, \
                              waiting_for = $6 WHERE id = $4 AND fence = $5 AND status = 'running'";
                // A second statement, so that it reads what was committed up
                // to now (an event sent, a child ended) after this
                // transaction holds the saga's row.
                let (due_now, awaited) = match &wake_if {
                    Some(WakeIf::Event(event)) => (
                        "UPDATE weir_sagas SET lease_until = $1 WHERE id = $2 AND EXISTS \
                         (SELECT 1 FROM weir_saga_events e WHERE e.saga_id = $2 AND e.name = $3 AND e.consumed_by IS NULL)",
                        Some(event),
                    ),
                    Some(WakeIf::ChildEnded(child)) => (
                        "UPDATE weir_sagas SET lease_until = $1 WHERE id = $2 AND EXISTS \
                         (SELECT 1 FROM weir_sagas c WHERE c.id = $3 AND c.status NOT IN ('running', 'compensating'))",
                        Some(child),
                    ),
                    None => ("", None),
                };
                Ok(super::on_tx!(tx, conn => {
                    let n = sqlx::query(parked).bind(&steps).bind(until).bind(now).bind(&id).bind(fence).bind(waiting_for)
                        .execute(&mut *conn).await?.rows_affected();
                    if n == 1 && let Some(awaited) = awaited {
                        sqlx::query(due_now).bind((now - 1).min(until)).bind(&id).bind(awaited).execute(&mut *conn).await?;
                    }
                    n == 1
                }))
            })
        })
        .await
    }

    /// Makes saga `id` due at once if it is parked (a child of it ended).
    pub(crate) async fn wake(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        if let Backend::Memory(m) = &*self.inner.backend {
            m.wake(id, now);
            return Ok(());
        }
        let id = id.to_owned();
        self.statement(move |tx| {
            let id = id.clone();
            Box::pin(async move {
                // Due a millisecond ago: claims take sagas whose time has passed.
                let wake = "UPDATE weir_sagas SET lease_until = $1 \
                            WHERE id = $2 AND status = 'running' AND lease_owner IS NULL AND lease_until > $1";
                super::on_tx!(tx, conn => { sqlx::query(wake).bind(now - 1).bind(&id).execute(&mut *conn).await?; });
                Ok(())
            })
        })
        .await
    }

    /// When the earliest parked saga of one of `definitions` is due (ms
    /// since the epoch), if any is parked.
    pub(crate) async fn next_wake(&self, definitions: &[String]) -> Result<Option<i64>, StoreError> {
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.next_wake(definitions)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.next_wake(definitions).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.next_wake(definitions).await,
        }
    }

    /// How many sagas of each of `definitions` are parked (asleep, or
    /// waiting for an event or a child), by stored definition key and what
    /// they wait for; pairs with none are left out.
    pub(crate) async fn count_parked(&self, definitions: &[String]) -> Result<Vec<ParkedCount>, StoreError> {
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.count_parked(definitions)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.count_parked(definitions).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.count_parked(definitions).await,
        }
    }

    /// Stores event `name` with `payload` for saga `id` and, if the saga
    /// is parked, makes it due at once. Returns the event's number.
    ///
    /// Prefer [`SagaEngine::send_event`], which also wakes a saga parked
    /// on this engine's store at once rather than at the next wake-up
    /// poll.
    ///
    /// [`SagaEngine::send_event`]: crate::durable::saga::SagaEngine::send_event
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if there is no saga `id`;
    /// [`StoreError::NotRunning`] if it is compensating or ended (no step
    /// of it would take the event; nothing is stored); the store failing.
    pub async fn send_event(&self, id: &str, name: &str, payload: &Value) -> Result<i64, StoreError> {
        let now = now_ms();
        let found = match &*self.inner.backend {
            Backend::Memory(m) => m.send_event(id, name, payload, now),
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            _ => {
                let (id, name, payload) = (id.to_owned(), name.to_owned(), payload.to_string());
                self.statement(move |tx| {
                    let (id, name, payload) = (id.clone(), name.clone(), payload.clone());
                    Box::pin(async move { send_event_in(tx, &id, &name, &payload, now).await })
                })
                .await?
            }
        };
        match found {
            Ok(event) => Ok(event),
            Err(None) => Err(StoreError::NotFound { target: self.target(), what: format!("saga {id}") }),
            Err(Some(status)) => Err(StoreError::NotRunning { target: self.target(), saga: id.to_owned(), status }),
        }
    }

    /// The payload of the event step `step` of saga `id` took; if it took
    /// none yet, takes the oldest event named `name` not taken yet. Taken
    /// once: a step that runs again (after a crash) gets the same event.
    /// `None` if none is there, or the fence is stale.
    pub(crate) async fn take_event(
        &self,
        id: &str,
        fence: i64,
        step: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        let now = now_ms();
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        let payload = if let Backend::Memory(m) = &*self.inner.backend {
            m.take_event(id, fence, step, name, now)
        } else {
            let (id, step, name) = (id.to_owned(), step.to_owned(), name.to_owned());
            self.statement(move |tx| {
                let (id, step, name) = (id.clone(), step.clone(), name.clone());
                Box::pin(async move {
                    let take = "UPDATE weir_saga_events SET consumed_by = $1, consumed_at = $2 \
                                WHERE id = (SELECT id FROM weir_saga_events WHERE saga_id = $3 AND name = $4 \
                                            AND consumed_by IS NULL ORDER BY id LIMIT 1) \
                                AND NOT EXISTS (SELECT 1 FROM weir_saga_events WHERE saga_id = $3 AND consumed_by = $1) \
                                AND EXISTS (SELECT 1 FROM weir_sagas WHERE id = $3 AND fence = $5)";
                    let taken = "SELECT payload FROM weir_saga_events WHERE saga_id = $1 AND consumed_by = $2 \
                                 ORDER BY id LIMIT 1";
                    Ok(super::on_tx!(tx, conn => {
                        sqlx::query(take).bind(&step).bind(now).bind(&id).bind(&name).bind(fence)
                            .execute(&mut *conn).await?;
                        let payload: Option<String> =
                            sqlx::query_scalar(taken).bind(&id).bind(&step).fetch_optional(&mut *conn).await?;
                        payload
                    }))
                })
            })
            .await?
        };
        payload
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    target: self.target(),
                    detail: format!("the payload of an event of saga {id}: {e}"),
                })
            })
            .transpose()
    }

    /// The events sent to saga `id`, oldest first, taken or not.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails or a payload is not JSON.
    pub async fn saga_events(&self, id: &str) -> Result<Vec<SagaEvent>, StoreError> {
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.saga_events(id)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.saga_events(id).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.saga_events(id).await,
        }
    }
}

/// Stores an event inside the group commit's transaction: `Err(None)` if
/// there is no saga `id`, `Err(Some(status))` if it is not running.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn send_event_in(
    tx: &mut Tx,
    id: &str,
    name: &str,
    payload: &str,
    now: i64,
) -> Result<Result<i64, Option<SagaStatus>>, BoxError> {
    // PostgreSQL: lock the saga's row first, so a park under way finishes
    // (and sees this event) or starts after this send (and sees it).
    let status: Option<String> = match tx {
        #[cfg(feature = "sqlite")]
        Tx::Sqlite(conn) => {
            sqlx::query_scalar("SELECT status FROM weir_sagas WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }
        #[cfg(feature = "postgres")]
        Tx::Postgres(conn) => {
            sqlx::query_scalar("SELECT status FROM weir_sagas WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let Some(status) = status else { return Ok(Err(None)) };
    let status = SagaStatus::parse(&status).ok_or_else(|| format!("saga {id} has an unknown status {status:?}"))?;
    if status != SagaStatus::Running {
        return Ok(Err(Some(status)));
    }
    let insert = "INSERT INTO weir_saga_events (saga_id, name, payload, sent_at) VALUES ($1, $2, $3, $4) RETURNING id";
    // Due a millisecond ago: claims take sagas whose time has passed.
    let wake = "UPDATE weir_sagas SET lease_until = $1 \
                WHERE id = $2 AND status = 'running' AND lease_owner IS NULL AND lease_until > $1";
    Ok(super::on_tx!(tx, conn => {
        let event: i64 = sqlx::query_scalar(insert).bind(id).bind(name).bind(payload).bind(now).fetch_one(&mut *conn).await?;
        sqlx::query(wake).bind(now - 1).bind(id).execute(&mut *conn).await?;
        Ok(event)
    }))
}

/// An event from its columns: id, saga_id, name, payload (JSON), sent_at,
/// consumed_by, consumed_at.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) type EventRow = (i64, String, String, String, i64, Option<String>, Option<i64>);

/// The columns of [`EventRow`], oldest first.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) const EVENTS_OF_SAGA: &str = "SELECT id, saga_id, name, payload, sent_at, consumed_by, consumed_at \
                                         FROM weir_saga_events WHERE saga_id = $1 ORDER BY id";

/// The earliest due time of a parked saga of the definitions in `$1`
/// (SQLite: a JSON array; PostgreSQL: an array) — found in the
/// `(status, lease_until)` index's order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) const NEXT_WAKE: &str = "SELECT lease_until FROM weir_sagas \
                                    WHERE status = 'running' AND lease_owner IS NULL AND lease_until IS NOT NULL \
                                    AND definition IN (DEFINITIONS) ORDER BY lease_until LIMIT 1";

/// Parked sagas by definition and what they wait for: the same condition
/// as [`NEXT_WAKE`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) const COUNT_PARKED: &str = "SELECT definition, COALESCE(waiting_for, 'unknown'), COUNT(*) FROM weir_sagas \
                                       WHERE status = 'running' AND lease_owner IS NULL AND lease_until IS NOT NULL \
                                       AND definition IN (DEFINITIONS) GROUP BY definition, waiting_for";

/// [`ParkedCount`]s from [`COUNT_PARKED`]'s rows.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) fn parked_counts(rows: Vec<(String, String, i64)>) -> Vec<ParkedCount> {
    rows.into_iter().map(|(definition, waiting_for, count)| ParkedCount { definition, waiting_for, count }).collect()
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(super) fn event(
    target: &str,
    (id, saga_id, name, payload, sent_at, consumed_by, consumed_at): EventRow,
) -> Result<SagaEvent, StoreError> {
    let payload = serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
        target: target.to_owned(),
        detail: format!("the payload of event {id}: {e}"),
    })?;
    Ok(SagaEvent { id, saga_id, name, payload, sent_at, consumed_by, consumed_at })
}
