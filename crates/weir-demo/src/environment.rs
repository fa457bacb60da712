//! The simulated world a database's orders run in: how flaky the payment
//! provider is and which tenant's provider is down.
//!
//! It belongs to the database, not to one command: the first run stores
//! it, and every later `run`, `resume` and `dlq replay` on that database
//! uses the stored one. A resume after a kill therefore cannot change an
//! order's outcome (before, `resume` without `--down-tenant` charged the
//! orders of the tenant that is down).

use serde::{Deserialize, Serialize};
use weir::durable::store::Store;

/// Where the environment is kept (a cursor entry of weir's store).
const KEY: &str = "weir-cli:environment";

/// The simulated payment provider's behaviour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Share of provider calls that fail transiently.
    pub faults: f64,
    /// A tenant whose provider always fails.
    pub down_tenant: Option<String>,
}

impl std::fmt::Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--faults {}", self.faults)?;
        match &self.down_tenant {
            Some(t) => write!(f, " --down-tenant {t}"),
            None => write!(f, " (no tenant down)"),
        }
    }
}

/// What a command was told; `None` where it was not.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub faults: Option<f64>,
    pub down_tenant: Option<String>,
}

/// Why the given environment cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error(
        "{location} was first run with {stored}; this run says {given}. Outcomes must not change between runs of one database: pass the same options (or none), or use a new database"
    )]
    Mismatch { location: String, stored: Environment, given: Environment },
    #[error(transparent)]
    Store(#[from] weir::durable::store::StoreError),
    #[error("the stored environment of {location} is unreadable: {source}")]
    Corrupt { location: String, source: serde_json::Error },
}

/// The environment stored in `store`, or the default if none is.
///
/// # Errors
/// The store failing, or an unreadable entry.
pub async fn load(store: &Store) -> Result<Option<Environment>, EnvironmentError> {
    let Some(value) = store.cursor(KEY).await? else { return Ok(None) };
    serde_json::from_value(value)
        .map(Some)
        .map_err(|source| EnvironmentError::Corrupt { location: store.target(), source })
}

/// The environment a run uses: the stored one (which the options given must
/// agree with), or, on the database's first run, the one given (stored).
///
/// # Errors
/// [`EnvironmentError::Mismatch`] when an option given differs from the
/// stored environment; the store failing.
pub async fn settle(store: &Store, given: Given) -> Result<Environment, EnvironmentError> {
    match load(store).await? {
        Some(stored) => {
            let faults_differ = given.faults.is_some_and(|f| f != stored.faults);
            let tenant_differs = given.down_tenant.is_some() && given.down_tenant != stored.down_tenant;
            if faults_differ || tenant_differs {
                let given = Environment {
                    faults: given.faults.unwrap_or(stored.faults),
                    down_tenant: given.down_tenant.or_else(|| stored.down_tenant.clone()),
                };
                return Err(EnvironmentError::Mismatch { location: store.target(), stored, given });
            }
            Ok(stored)
        }
        None => {
            let env = Environment { faults: given.faults.unwrap_or(0.0), down_tenant: given.down_tenant };
            store.save_cursor(KEY, &serde_json::to_value(&env).expect("serializes")).await?;
            Ok(env)
        }
    }
}
