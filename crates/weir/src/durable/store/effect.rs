//! An application's own writes, committed in the store's group commit.
//!
//! On SQLite one connection at a time may write a file. An application
//! that keeps its own tables beside weir's (the orders demo's ledger) and
//! writes them through a pool of its own makes every saga commit wait for
//! SQLite's write lock behind its writes, and its writes wait behind the
//! commits, each wait a sleep of SQLite's busy handler (1 to 100 ms): the
//! demo spent 84 % of its time in commits and made 0.23 orders per raw
//! commit the disk can do. An effect goes to the store's one writer
//! instead: it runs in the next group commit's transaction, beside the saga
//! writes queued with it, in a savepoint of its own, and its caller hears
//! its result once that transaction is durable. One writer, one `fsync`
//! for the lot.

use std::any::Any;

use futures_util::future::BoxFuture;

use super::{Store, StoreError};
use crate::error::BoxError;

impl Store {
    /// Runs `effect` — the application's own writes to its own tables in
    /// this database — inside the store's next group commit, and returns
    /// its output once that transaction is durable. The effect gets the
    /// store's writer connection with the transaction open ([`Tx`]); it
    /// runs in a savepoint, so an effect that fails is rolled back alone.
    ///
    /// Why: on SQLite one connection at a time may write a file; an
    /// application writing its tables through a pool of its own makes the
    /// store's commits and its own writes wait for each other (see
    /// `effect.rs`: the orders demo made 0.23 orders per raw commit that
    /// way). Through here they share one writer and one `fsync`.
    ///
    /// The effect may run more than once (the committer runs its batch
    /// again after a PostgreSQL deadlock; a caller retries after a crash):
    /// make it idempotent, keyed as a saga step's effects are.
    ///
    /// # Errors
    /// The effect's own error (its writes rolled back, the rest of the
    /// batch committed); [`StoreError`] (boxed) if the transaction failed
    /// as a whole, or for the memory store, which has no SQL.
    ///
    /// # Cancel safety
    /// Not cancel safe: once queued, the effect runs and commits even if
    /// this future is dropped; only its output is lost.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::store::{Store, Tx};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::error::BoxError> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("app.db").to_str().unwrap()).await?;
    /// let created = store
    ///     .commit_effect(|tx: &mut Tx| {
    ///         Box::pin(async move {
    ///             let Tx::Sqlite(conn) = tx else { unreachable!("a SQLite file") };
    ///             sqlx::query("CREATE TABLE IF NOT EXISTS notes (text TEXT)").execute(&mut *conn).await?;
    ///             let n = sqlx::query("INSERT INTO notes VALUES ('hello')").execute(&mut *conn).await?;
    ///             Ok(n.rows_affected())
    ///         })
    ///     })
    ///     .await?;
    /// assert_eq!(created, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit_effect<T, F>(&self, effect: F) -> Result<T, BoxError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut Tx) -> BoxFuture<'t, Result<T, BoxError>> + Send + Sync + 'static,
    {
        let Some(committer) = &self.inner.committer else {
            return Err(Box::new(StoreError::Open {
                target: self.target(),
                source: "the memory store runs no SQL: open a SQLite file or a PostgreSQL database for effects".into(),
            }));
        };
        let erased: Effect = Box::new(move |tx| {
            let run = effect(tx);
            Box::pin(async move { run.await.map(|output| Box::new(output) as Output) })
        });
        let output = committer.effect(erased).await?;
        Ok(*output.downcast::<T>().expect("an effect's output has the type its caller asked for"))
    }
}

/// Runs `$body` with `$conn` bound to the transaction's connection,
/// whichever the database: for statements whose text is the same on
/// SQLite and PostgreSQL (`$1` placeholders work on both).
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            #[cfg(feature = "sqlite")]
            $crate::durable::store::Tx::Sqlite($conn) => $body,
            #[cfg(feature = "postgres")]
            $crate::durable::store::Tx::Postgres($conn) => $body,
            #[allow(unreachable_patterns)]
            _ => unreachable!("a database store"),
        }
    };
}
pub(crate) use on_tx;

/// The group commit's connection, lent to an effect inside the open
/// transaction (see [`Store::commit_effect`](super::Store::commit_effect)).
/// Run statements on it; never `BEGIN`, `COMMIT` or `ROLLBACK`: the
/// transaction is the committer's.
#[non_exhaustive]
pub enum Tx {
    /// A SQLite store's writer.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::sqlite::SqliteConnection),
    /// A PostgreSQL store's writer.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::postgres::PgConnection),
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(_) => f.write_str("Tx::Sqlite"),
            #[cfg(feature = "postgres")]
            Tx::Postgres(_) => f.write_str("Tx::Postgres"),
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            _ => unreachable!("no database store in this build"),
        }
    }
}

impl Tx {
    /// Whether the connection still answers.
    pub(crate) async fn ping(&mut self) -> bool {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(conn) => sqlx::Connection::ping(conn).await.is_ok(),
            #[cfg(feature = "postgres")]
            Tx::Postgres(conn) => sqlx::Connection::ping(conn).await.is_ok(),
            #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
            _ => unreachable!("no database store in this build"),
        }
    }
}

/// An effect's result, its type erased until its caller gets it back.
pub(crate) type Output = Box<dyn Any + Send>;

/// An effect as the committer runs it: callable again when a deadlock
/// makes the committer run its whole batch again.
pub(crate) type Effect = Box<dyn for<'t> Fn(&'t mut Tx) -> BoxFuture<'t, Result<Output, BoxError>> + Send + Sync>;

/// Runs `effects` in order inside the open transaction, each in a
/// savepoint: an effect that fails is rolled back alone and its caller gets
/// its error; the others stay in the transaction. (Running them without
/// savepoints and again with them only when one fails measured no faster
/// on SQLite: 987 against 1,008 orders/s in the orders demo.)
///
/// # Errors
/// A savepoint statement failing: the transaction cannot go on.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn run_all(tx: &mut Tx, effects: &[Effect]) -> Result<Vec<Result<Output, BoxError>>, sqlx::Error> {
    let mut results = Vec::with_capacity(effects.len());
    for effect in effects {
        execute(tx, "SAVEPOINT weir_effect").await?;
        let result = effect(tx).await;
        if result.is_err() {
            execute(tx, "ROLLBACK TO SAVEPOINT weir_effect").await?;
        }
        execute(tx, "RELEASE SAVEPOINT weir_effect").await?;
        results.push(result);
    }
    Ok(results)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn execute(tx: &mut Tx, sql: &'static str) -> Result<(), sqlx::Error> {
    match tx {
        #[cfg(feature = "sqlite")]
        Tx::Sqlite(conn) => sqlx::query(sql).execute(conn).await.map(drop),
        #[cfg(feature = "postgres")]
        Tx::Postgres(conn) => sqlx::query(sql).execute(conn).await.map(drop),
        #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
        _ => unreachable!("no database store in this build"),
    }
}
