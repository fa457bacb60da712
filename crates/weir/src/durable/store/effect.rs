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

use crate::error::BoxError;

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
