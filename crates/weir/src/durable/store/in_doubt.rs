//! A PostgreSQL `COMMIT` whose answer was lost: the connection dropped
//! (an operator's `pg_terminate_backend`, a failover, a network cut)
//! after the server may have committed. The transaction's id, read when
//! it began, is looked up on another connection with `pg_xact_status`:
//! `committed` means every write and effect of the batch is there, and the
//! batch is reported committed; `aborted` means none is.
//!
//! Why: reported as failed, a committed batch lies to its writers. A saga
//! step whose effect committed this way was taken not to have happened, so
//! its compensation never ran (a charge kept for a rolled-back order, seen
//! in the four-worker NATS demo while its connections were cut).

use sqlx::postgres::PgPool;

use super::StoreError;

/// What became of a transaction whose `COMMIT` got no answer.
#[derive(Debug)]
pub(super) enum Verdict {
    /// The server committed it.
    Committed,
    /// The server rolled it back (or never got the `COMMIT`).
    RolledBack,
    /// The server could not be asked (unreachable for ~15 s).
    Unknown(StoreError),
}

/// The transaction's status is still `in progress`: its backend has not
/// finished (it is ending after being terminated); ask again.
#[derive(Debug, thiserror::Error)]
#[error("transaction {0} is still in progress on the server")]
struct StillInProgress(String);

/// Asks the server what became of transaction `xid` (as read by
/// `pg_current_xact_id()`), on a connection of `pool`, retrying as the
/// writer reconnects (about 15 s) while the server cannot answer or the
/// transaction is still ending.
pub(super) async fn settle(pool: &PgPool, xid: &str, target: &str) -> Verdict {
    let ask = super::committer::until_the_server_is_back();
    let status = |_| async {
        let status: Option<String> = sqlx::query_scalar("SELECT pg_xact_status($1::text::xid8)")
            .bind(xid)
            .fetch_one(pool)
            .await
            .map_err(|e| StoreError::from_query(target, e))?;
        match status.as_deref() {
            Some("in progress") => {
                Err(StoreError::Query { target: target.to_owned(), source: Box::new(StillInProgress(xid.to_owned())) })
            }
            _ => Ok(status),
        }
    };
    let warn = |error: &StoreError, attempt, delay| {
        tracing::warn!(xid, attempt, error = %error, ?delay, "a commit's answer was lost; asking the server again");
    };
    match ask.drive(None, status, |_| true, warn).await {
        Ok(Some(status)) if status == "committed" => Verdict::Committed,
        // `aborted`, or no status: an id this old is long settled, and a
        // transaction that wrote nothing has none.
        Ok(_) => Verdict::RolledBack,
        Err(error) => Verdict::Unknown(error.into_attempted()),
    }
}
