//! Where a command's state lives: a SQLite file or a PostgreSQL URL, checked
//! before anything is created, opened for writing (creating the file) or
//! reading (never creating it), and locked on SQLite so that one process
//! writes it at a time.

use weir::durable::store::Store;

use crate::Failure;
use crate::args::DbArgs;

/// Whether a location as [`Location::raw`] gives it is a PostgreSQL URL
/// (the one place that tells the two apart after parsing).
pub fn is_postgres(raw: &str) -> bool {
    raw.starts_with("postgres://") || raw.starts_with("postgresql://")
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    /// The location from the options: `--db` wins; then `--database-url`
    /// (or `WEIR_DATABASE_URL`), which must be a PostgreSQL URL; then
    /// `weir.db`. Nothing is created here.
    pub fn from_args(db: &DbArgs) -> Result<Self, Failure> {
        if let Some(path) = &db.db {
            return Ok(Location::Sqlite(path.clone()));
        }
        let Some(url) = &db.database_url else { return Ok(Location::Sqlite("weir.db".into())) };
        const ACCEPTED: &str = "weir-demo accepts postgres:// and postgresql:// URLs, or --db FILE for SQLite";
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(Failure::usage(format!("--database-url is not a URL; {ACCEPTED}")));
        };
        if !matches!(scheme, "postgres" | "postgresql") {
            let scheme: String = scheme.chars().filter(char::is_ascii_alphanumeric).take(20).collect();
            return Err(Failure::usage(format!(
                "--database-url has the scheme `{scheme}`, which weir does not support; {ACCEPTED}"
            )));
        }
        if rest.is_empty() || rest.starts_with('/') && rest.len() == 1 {
            return Err(Failure::usage(format!("--database-url names no server; {ACCEPTED}")));
        }
        Ok(Location::Postgres(url.clone()))
    }

    /// The path or URL (with its password: for connecting only).
    pub fn raw(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }

    /// Opens the store, creating a SQLite file if missing.
    pub async fn open(&self, db: &DbArgs) -> Result<Store, Failure> {
        let opened = match self {
            Location::Postgres(url) => {
                Store::postgres_with_retry(url, std::time::Duration::from_secs(db.connect_timeout)).await
            }
            Location::Sqlite(path) => Store::open(&path.display().to_string()).await,
        };
        opened.map_err(Failure::input)
    }

    /// A SQLite file must exist already (for commands that never create
    /// one); a PostgreSQL database is the server's to have.
    pub fn require_existing(&self) -> Result<(), Failure> {
        match self {
            Location::Sqlite(path) if !path.exists() => Err(Failure::input(format!(
                "no database at {}: nothing has run there; pass --db with the file a run used, or run `weir-demo run` first",
                path.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Opens the store of a command that never creates one.
    pub async fn open_existing(&self, db: &DbArgs) -> Result<Store, Failure> {
        self.require_existing()?;
        self.open(db).await
    }

    /// Locks (see [`lock`](Self::lock)) and opens an existing store.
    pub async fn lock_existing(&self, db: &DbArgs) -> Result<(Option<std::fs::File>, Store), Failure> {
        self.require_existing()?;
        let lock = self.lock()?;
        Ok((lock, self.open(db).await?))
    }

    /// One process at a time writes a SQLite database: holds its lock file
    /// (`<db>.lock`) until the process ends. PostgreSQL needs none.
    pub fn lock(&self) -> Result<Option<std::fs::File>, Failure> {
        let Location::Sqlite(path) = self else { return Ok(None) };
        let lock_path = format!("{}.lock", path.display());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Failure::input(format!("cannot open the lock file {lock_path}: {e}")))?;
        match file.try_lock() {
            Ok(()) => {
                use std::io::Write;
                file.set_len(0).ok();
                let _ = write!(file, "{}", std::process::id());
                Ok(Some(file))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
                let holder = if holder.trim().is_empty() { String::new() } else { format!(" (pid {})", holder.trim()) };
                Err(Failure::input(format!(
                    "another weir process{holder} is working on {}; wait for it to end, or use PostgreSQL (--database-url) for several workers at once",
                    path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Failure::input(format!("cannot lock {lock_path}: {e}"))),
        }
    }
}
