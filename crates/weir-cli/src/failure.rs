//! What a failed command tells the person (one line naming the input and
//! the fix) and the script (an exit code by cause).

use weir::durable::store::StoreError;

/// Exit codes scripts can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// An unexpected failure (a query failed mid-way).
    Failed = 1,
    /// Bad usage: an unknown option, a bad value, an unsupported URL
    /// (clap's own usage errors exit 2 too).
    Usage = 2,
    /// The database cannot be used: missing, unreachable, not weir's, or
    /// from a newer weir.
    Database = 3,
    /// A stored record breaks weir's invariants (it cannot be read back).
    Invariant = 4,
    /// The saga, letter, queue or cursor named is not there.
    NotFound = 6,
    /// The thing named is there but not in a state that allows the
    /// request (resuming a completed saga, a saga a live worker holds).
    BadState = 7,
}

/// The exit codes, for `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 done; 1 unexpected failure; 2 bad usage; 3 database missing, unreachable, not weir's or too new; 4 a stored record is corrupt; 6 not found; 7 not in a state that allows it.";

/// A failed command: its message and exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(code: Exit, message: impl std::fmt::Display) -> Self {
        Self { code, message: message.to_string() }
    }
}

impl From<StoreError> for Failure {
    /// The store's errors name the database (its password redacted) and
    /// the fix already; the code follows the cause.
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::Open { .. } | StoreError::Foreign { .. } | StoreError::SchemaTooNew { .. } => Exit::Database,
            StoreError::Corrupt { .. } => Exit::Invariant,
            StoreError::NotFound { .. } => Exit::NotFound,
            StoreError::LeaseLost { .. } | StoreError::Active { .. } | StoreError::NotRunning { .. } => Exit::BadState,
            _ => Exit::Failed,
        };
        Failure::new(code, e)
    }
}
