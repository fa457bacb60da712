//! Where each cron schedule of sagas stands: the time up to which its
//! ticks have been fired (see `saga::schedule`).

use super::record::now_ms;
use super::{Backend, Store, StoreError, on_tx};

/// A schedule's stored state ([`Store::saga_schedules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScheduleRecord {
    /// The schedule's name.
    pub name: String,
    /// Its ticks up to this time (ms since the epoch) have been fired.
    pub last_fired: i64,
    /// When that was written (ms since the epoch).
    pub updated_at: i64,
}

impl Store {
    /// Schedule `name`'s `last_fired`; a schedule met for the first time
    /// is stored as fired up to `start` (no ticks before it are fired).
    pub(crate) async fn schedule_fired_up_to(&self, name: &str, start: i64) -> Result<i64, StoreError> {
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        if let Backend::Memory(m) = &*self.inner.backend {
            return Ok(m.schedule_fired_up_to(name, start));
        }
        let name = name.to_owned();
        self.statement(move |tx| {
            let name = name.clone();
            Box::pin(async move {
                let insert = "INSERT INTO weir_saga_schedules (name, last_fired, updated_at) VALUES ($1, $2, $2) \
                              ON CONFLICT (name) DO NOTHING";
                let read = "SELECT last_fired FROM weir_saga_schedules WHERE name = $1";
                Ok(on_tx!(tx, conn => {
                    sqlx::query(insert).bind(&name).bind(start).execute(&mut *conn).await?;
                    let last: i64 = sqlx::query_scalar(read).bind(&name).fetch_one(&mut *conn).await?;
                    last
                }))
            })
        })
        .await
    }

    /// Moves schedule `name`'s `last_fired` from `from` to `to`; `false`
    /// if another worker moved it first (that worker fires the ticks).
    pub(crate) async fn advance_schedule(&self, name: &str, from: i64, to: i64) -> Result<bool, StoreError> {
        let now = now_ms();
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        if let Backend::Memory(m) = &*self.inner.backend {
            return Ok(m.advance_schedule(name, from, to, now));
        }
        let name = name.to_owned();
        self.statement(move |tx| {
            let name = name.clone();
            Box::pin(async move {
                let sql = "UPDATE weir_saga_schedules SET last_fired = $1, updated_at = $2 WHERE name = $3 AND last_fired = $4";
                Ok(on_tx!(tx, conn => {
                    sqlx::query(sql).bind(to).bind(now).bind(&name).bind(from).execute(&mut *conn).await?.rows_affected() == 1
                }))
            })
        })
        .await
    }

    /// Every schedule's stored state, by name.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    pub async fn saga_schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        #[allow(irrefutable_let_patterns)] // without a database feature, memory is all there is
        if let Backend::Memory(m) = &*self.inner.backend {
            return Ok(m.saga_schedules());
        }
        let rows: Vec<(String, i64, i64)> = self
            .statement(move |tx| {
                Box::pin(async move {
                    let sql = "SELECT name, last_fired, updated_at FROM weir_saga_schedules ORDER BY name";
                    Ok(on_tx!(tx, conn => sqlx::query_as(sql).fetch_all(&mut *conn).await?))
                })
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(name, last_fired, updated_at)| ScheduleRecord { name, last_fired, updated_at })
            .collect())
    }
}
