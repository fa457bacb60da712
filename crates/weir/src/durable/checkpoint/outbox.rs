//! The outbox pattern: events in a SQL table, read by increasing id.

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::CursorSource;
use crate::error::{BoxError, ConfigError};

/// Rows read per query.
const PAGE: i64 = 500;

/// Reads `(id, payload)` rows of an outbox table in increasing `id`, in
/// pages; the position is the last id read. The table needs an integer
/// `id` column and a text `payload` column.
#[derive(Debug, Clone)]
pub struct OutboxSource {
    pool: Pool,
    select: String,
}

#[derive(Debug, Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// A table name must be a plain identifier: it cannot be bound as a value.
fn check_table(table: &str) -> Result<(), ConfigError> {
    let mut chars = table.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new("outbox table", format!("{table:?}"), "use a plain identifier: letters, digits and _"))
    }
}

impl OutboxSource {
    /// Reads `table` through a SQLite pool.
    ///
    /// # Errors
    /// [`ConfigError`] if `table` is not a plain identifier.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(pool: sqlx::SqlitePool, table: &str) -> Result<Self, ConfigError> {
        check_table(table)?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
            select: format!("SELECT id, payload FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2"),
        })
    }

    /// Reads `table` through a PostgreSQL pool.
    ///
    /// # Errors
    /// [`ConfigError`] if `table` is not a plain identifier.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(pool: sqlx::PgPool, table: &str) -> Result<Self, ConfigError> {
        check_table(table)?;
        Ok(Self {
            pool: Pool::Postgres(pool),
            select: format!("SELECT id, payload FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"),
        })
    }

    async fn page(&self, after: i64) -> Result<Vec<(i64, String)>, BoxError> {
        Ok(match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => sqlx::query_as(&self.select).bind(after).bind(PAGE).fetch_all(pool).await?,
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => sqlx::query_as(&self.select).bind(after).bind(PAGE).fetch_all(pool).await?,
        })
    }
}

impl CursorSource for OutboxSource {
    type Event = String;
    type Position = i64;

    fn read(&mut self, from: Option<i64>) -> BoxStream<'_, Result<(i64, String), BoxError>> {
        let source = &*self;
        futures_util::stream::unfold(Some(from.unwrap_or(0)), move |after| async move {
            let after = after?;
            match source.page(after).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let last = rows.last().map(|(id, _)| *id);
                    Some((futures_util::stream::iter(rows.into_iter().map(Ok)).boxed(), last))
                }
                Err(e) => Some((futures_util::stream::once(std::future::ready(Err(e))).boxed(), None)),
            }
        })
        .flatten()
        .boxed()
    }
}
