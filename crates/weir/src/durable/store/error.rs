use crate::error::BoxError;

/// The store could not do what was asked. Every variant names the database
/// (with any password redacted) and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot open the database {target}: {source}; check the path or URL and that the server is up")]
    Open {
        /// The path, or the URL with its password redacted.
        target: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The file is not a database, or not one of weir's.
    #[error("{target} is not a weir database ({reason}); move it aside or point to another file")]
    Foreign {
        /// The path or redacted URL.
        target: String,
        /// What was found.
        reason: String,
    },
    /// The database was written by a newer weir.
    #[error("{target} has schema version {found}, newer than this weir supports ({supported}); upgrade weir")]
    SchemaTooNew {
        /// The path or redacted URL.
        target: String,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// Another worker claimed the saga since this one did (its lease
    /// expired): this worker must stop working on it.
    #[error("lost the lease on saga {saga}: another worker claimed it")]
    LeaseLost {
        /// The saga's id.
        saga: String,
    },
    /// A saga, letter or cursor named in a request is not there.
    #[error("{what} is not in {target}; check the id or name")]
    NotFound {
        /// The path or redacted URL.
        target: String,
        /// What was looked for (`saga order-7`).
        what: String,
    },
    /// The saga is still running or compensating, and the request needs
    /// one that ended (deleting it).
    #[error("saga {saga} in {target} is {status}: cancel it, or wait until it ends, then try again")]
    Active {
        /// The path or redacted URL.
        target: String,
        /// The saga's id.
        saga: String,
        /// Where it stands.
        status: super::SagaStatus,
    },
    /// The saga is no longer running forward, and the request needs one
    /// that is (an event sent to it: no step of it would ever take it).
    #[error("saga {saga} in {target} is {status}, so no step of it will take the event; nothing was stored")]
    NotRunning {
        /// The path or redacted URL.
        target: String,
        /// The saga's id.
        saga: String,
        /// Where it stands.
        status: super::SagaStatus,
    },
    /// A stored value could not be read back.
    #[error("corrupt record in {target}: {detail}")]
    Corrupt {
        /// The path or redacted URL.
        target: String,
        /// What was wrong.
        detail: String,
    },
    /// A query failed.
    #[error("database error on {target}: {source}")]
    Query {
        /// The path or redacted URL.
        target: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The disk holding the database is full (SQLite's `SQLITE_FULL`,
    /// PostgreSQL's `disk_full`). The write that failed was rolled back
    /// whole; what was committed before is kept, and sagas interrupted by it
    /// resume once there is space.
    #[error(
        "the disk holding {target} is full; free space (or move the database), then run again: what was committed is kept and interrupted sagas resume"
    )]
    Full {
        /// The path or redacted URL.
        target: String,
    },
    /// The connection was lost while the database committed a batch, and
    /// the database could not be asked afterwards whether it did: the
    /// writes may or may not be there. Reading them back tells; a saga
    /// left running is resumed from what was stored.
    #[error(
        "the commit on {target} may or may not have taken effect: the connection was lost during COMMIT and the server could not be asked afterwards ({source}); read the writes back to know"
    )]
    InDoubt {
        /// The path or redacted URL.
        target: String,
        /// Why the server could not be asked.
        #[source]
        source: BoxError,
    },
    /// The store's writer stopped (the store was dropped or its task failed).
    #[error("the store's writer has stopped")]
    Closed,
}

impl StoreError {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    /// The error for a failed query on `target`: [`StoreError::Full`] when
    /// the database says its disk is full, else [`StoreError::Query`].
    pub(crate) fn from_query(target: &str, error: sqlx::Error) -> Self {
        if is_disk_full(&error) {
            return StoreError::Full { target: target.to_owned() };
        }
        StoreError::Query { target: target.to_owned(), source: error.into() }
    }

    /// A copy for each writer of a failed group commit (errors are not
    /// `Clone`; the cause is kept as text).
    pub(crate) fn copy_for_writer(&self) -> Self {
        match self {
            StoreError::Full { target } => StoreError::Full { target: target.clone() },
            StoreError::InDoubt { target, source } => {
                StoreError::InDoubt { target: target.clone(), source: source.to_string().into() }
            }
            StoreError::Query { target, source } => {
                StoreError::Query { target: target.clone(), source: source.to_string().into() }
            }
            other => StoreError::Query { target: String::new(), source: other.to_string().into() },
        }
    }
}

/// SQLite's `SQLITE_FULL` (13) or PostgreSQL's `disk_full` (53100).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn is_disk_full(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|e| e.code());
    matches!(code.as_deref(), Some("13" | "53100"))
}

/// `url` with any password replaced by `***`, for logs, errors and reports.
///
/// # Examples
/// ```
/// use weir::durable::store::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/orders"), "postgres://app:***@db:5432/orders");
/// assert_eq!(redact_url("postgres://db/orders?password=s3cret&x=1"), "postgres://db/orders?password=***&x=1");
/// assert_eq!(redact_url("/var/lib/weir.db"), "/var/lib/weir.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..].find(['/', '?', '#']).map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}
