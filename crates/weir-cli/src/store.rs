//! The one place the command opens a store: `--db FILE` (SQLite) or
//! `--database-url URL` / `WEIR_DATABASE_URL` (PostgreSQL). A SQLite file
//! must exist: looking never creates a database.

use std::time::Duration;

use weir::durable::store::Store;

use crate::args::DbArgs;
use crate::failure::{Exit, Failure};

const ACCEPTED: &str = "pass --db FILE for a SQLite file, or --database-url with a postgres:// or postgresql:// URL";

/// Opens the store the options name.
///
/// # Errors
/// [`Exit::Usage`] for a missing or unsupported location (the URL itself
/// is never repeated: it may hold a password); [`Exit::Database`] if it
/// cannot be opened.
pub async fn open(db: &DbArgs) -> Result<Store, Failure> {
    if let Some(path) = &db.db {
        if !path.is_file() {
            return Err(Failure::new(
                Exit::Database,
                format!(
                    "no weir database at {}: check the path (a run of your application creates it)",
                    path.display()
                ),
            ));
        }
        return Ok(Store::sqlite(path).await?);
    }
    let Some(url) = &db.database_url else {
        return Err(Failure::new(Exit::Usage, format!("no database given: {ACCEPTED}")));
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Failure::new(Exit::Usage, format!("--database-url is not a URL; {ACCEPTED}")));
    };
    if !matches!(scheme, "postgres" | "postgresql") {
        let scheme: String = scheme.chars().filter(char::is_ascii_alphanumeric).take(20).collect();
        return Err(Failure::new(
            Exit::Usage,
            format!("--database-url has the scheme `{scheme}`, which weir does not support; {ACCEPTED}"),
        ));
    }
    if rest.is_empty() || rest == "/" {
        return Err(Failure::new(Exit::Usage, format!("--database-url names no server; {ACCEPTED}")));
    }
    Ok(Store::postgres_with_retry(url, Duration::from_secs(db.connect_timeout)).await?)
}
