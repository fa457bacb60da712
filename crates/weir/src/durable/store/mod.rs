//! Durable state: sagas, stream cursors and dead letters, in memory, in an
//! embedded SQLite file (feature `sqlite`, default) or in PostgreSQL
//! (feature `postgres`) when several processes share the work.
//!
//! - Every statement binds its values; none is built from input.
//! - A database URL's password never appears in a log line, an error or a
//!   report ([`redact_url`]); a SQLite file weir creates is readable by its
//!   owner only.
//! - Saga transitions go through one **group committer** per store: the
//!   writes that concurrent sagas queue while a commit is in flight are
//!   committed together in the next transaction, and no writer is told its
//!   write is done before that transaction is durable.
//! - Opening refuses a file that is not weir's, and a schema newer than
//!   this build, with an error that names the file and what to do.

mod batch;
mod committer;
mod dead_letters;
mod effect;
mod error;
#[cfg(feature = "postgres")]
mod in_doubt;
mod inspect;
mod manage;
pub(crate) use self::manage::{DEADLINE_PASSED, stop_reason};
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
mod schedules;
#[cfg(feature = "sqlite")]
mod sqlite;
mod waits;

use std::sync::Arc;
use std::time::Duration;

use self::committer::Committer;
pub use self::dead_letters::StoreDlq;
pub use self::effect::Tx;
pub(crate) use self::effect::on_tx;
pub use self::error::{StoreError, redact_url};
pub(crate) use self::inspect::ms;
pub use self::inspect::{CursorRecord, LetterQuery, QueueSummary, SagaQuery};
use self::memory::Memory;
pub use self::record::{SagaRecord, SagaStatus, StepRecord, StepStatus};
pub(crate) use self::record::{SagaWrite, now_ms};
pub use self::schedules::ScheduleRecord;
pub use self::waits::SagaEvent;
pub(crate) use self::waits::{WAITING_FOR, WakeIf};

/// A handle on a store; cheap to clone (clones share the connection pool
/// and the committer).
///
/// # Examples
/// ```
/// use weir::durable::store::Store;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), weir::durable::store::StoreError> {
/// let dir = std::env::temp_dir().join(format!("weir-doc-{}", std::process::id()));
/// let store = Store::open(dir.join("state.db").to_str().unwrap()).await?;
/// store.save_cursor("orders", &serde_json::json!({"offset": 42})).await?;
/// assert_eq!(store.cursor("orders").await?, Some(serde_json::json!({"offset": 42})));
/// # drop(store);
/// # let _ = std::fs::remove_dir_all(dir);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<Backend>,
    committer: Option<Committer>,
}

pub(crate) enum Backend {
    Memory(Memory),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::Sqlite),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Postgres),
}

impl Backend {
    /// A new connection for the group committer.
    pub(crate) async fn writer(&self) -> Result<Tx, StoreError> {
        match self {
            Backend::Memory(_) => unreachable!("the memory store has no committer"),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => Ok(Tx::Sqlite(s.writer().await?)),
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => Ok(Tx::Postgres(p.writer().await?)),
        }
    }
}

/// What a store's group committer did: transactions, saga writes in
/// them, and the time spent from `BEGIN` to `COMMIT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitMetrics {
    /// Transactions committed (or failed).
    pub transactions: u64,
    /// Saga writes they carried.
    pub writes: u64,
    /// Time spent in them.
    pub busy: Duration,
}

/// How one write of a batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteResult {
    Applied,
    /// The saga's fence moved on: another worker owns it now.
    LeaseLost,
    /// An insert found a saga with that id already.
    Exists,
}

/// A dead letter as stored (the item as JSON).
#[derive(Debug, Clone, Default)]
pub(crate) struct DeadLetterRow {
    pub(crate) id: i64,
    pub(crate) queue: String,
    pub(crate) item: String,
    pub(crate) error_chain: String,
    pub(crate) stage: String,
    pub(crate) item_index: Option<i64>,
    pub(crate) key: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) attempts: i64,
    pub(crate) first_failure: i64,
    pub(crate) last_failure: i64,
    /// When an operator marked it for replay (ms since the epoch).
    pub(crate) replay_requested_at: Option<i64>,
}

/// Which sagas a claim may take, besides expired and unleased ones.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClaimScope<'a> {
    /// Also those the claimer itself holds but is not driving (a restarted
    /// worker with a stable id takes its sagas back at once); the list is
    /// the ones it is driving, which are left alone.
    pub(crate) own: Option<&'a [String]>,
    /// Only sagas of these definitions (`None`: any).
    pub(crate) definitions: Option<&'a [String]>,
    /// Only sagas that sleep or wait (no lease owner) and are due, the
    /// earliest due first: a worker's wake-ups, which take nothing a dead
    /// worker left (a queue's redelivery does that).
    pub(crate) parked_only: bool,
    /// With `parked_only`: also those due within this much time (the
    /// waker claims a little ahead, so that a claim's commit is not part
    /// of how late a saga wakes; the drive holds until the stored time).
    pub(crate) due_within: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("target", &self.target()).finish()
    }
}

impl Store {
    /// A store in memory: same semantics, no durability.
    pub fn memory() -> Self {
        Self { inner: Arc::new(Inner { backend: Arc::new(Backend::Memory(Memory::default())), committer: None }) }
    }

    /// Opens `location`: a `postgres://` or `postgresql://` URL, or a path
    /// to a SQLite file (created, owner-only, if missing). Runs migrations.
    ///
    /// # Errors
    /// [`StoreError`] naming the location (password redacted) and the fix:
    /// unreachable, not a weir database, a newer schema.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn open(location: &str) -> Result<Self, StoreError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return Self::postgres(location).await;
            #[cfg(not(feature = "postgres"))]
            return Err(StoreError::Open {
                target: redact_url(location),
                source: "this build has no PostgreSQL support; rebuild weir with the `postgres` feature".into(),
            });
        }
        #[cfg(feature = "sqlite")]
        return Self::sqlite(std::path::Path::new(location)).await;
        #[cfg(not(feature = "sqlite"))]
        Err(StoreError::Open {
            target: location.to_owned(),
            source: "this build has no SQLite support; rebuild weir with the `sqlite` feature".into(),
        })
    }

    /// Opens (or creates) a SQLite file.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub async fn sqlite(path: &std::path::Path) -> Result<Self, StoreError> {
        let backend = Arc::new(Backend::Sqlite(sqlite::Sqlite::open(path).await?));
        let committer = Committer::start(Arc::clone(&backend), backend.writer().await?);
        Ok(Self { inner: Arc::new(Inner { backend, committer: Some(committer) }) })
    }

    /// Connects to PostgreSQL, retrying with backoff for up to 30 s while
    /// the server is unreachable.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn postgres(url: &str) -> Result<Self, StoreError> {
        Self::postgres_with_retry(url, Duration::from_secs(30)).await
    }

    /// Like [`postgres`](Self::postgres), retrying for at most `max_wait`.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub async fn postgres_with_retry(url: &str, max_wait: Duration) -> Result<Self, StoreError> {
        let backend = Arc::new(Backend::Postgres(postgres::Postgres::open(url, max_wait).await?));
        let committer = Committer::start(Arc::clone(&backend), backend.writer().await?);
        Ok(Self { inner: Arc::new(Inner { backend, committer: Some(committer) }) })
    }

    /// What the store is: `memory`, a path, or a URL with its password
    /// redacted.
    pub fn target(&self) -> String {
        match &*self.inner.backend {
            Backend::Memory(_) => "memory".to_owned(),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.target.clone(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.target.clone(),
        }
    }

    /// Writes a saga change; returns once it is durable. `Ok(false)` for an
    /// insert of an id that exists.
    pub(crate) async fn write(&self, write: SagaWrite) -> Result<bool, StoreError> {
        let started = match &write {
            SagaWrite::Insert(r) => Some(r.definition.clone()),
            _ => None,
        };
        let id = match &write {
            SagaWrite::Insert(r) => r.id.clone(),
            SagaWrite::Update { id, .. } => id.clone(),
            SagaWrite::Cursor { name, .. } => name.clone(),
        };
        let result = match (&*self.inner.backend, &self.inner.committer) {
            (Backend::Memory(m), _) => m.apply(&write),
            (_, Some(committer)) => committer.write(write).await?,
            (_, None) => unreachable!("database stores have a committer"),
        };
        match result {
            WriteResult::Applied => {
                if let Some(definition) = started {
                    crate::observe::counter("weir_saga_started_total", || vec![("definition", definition)])
                        .increment(1);
                }
                Ok(true)
            }
            WriteResult::Exists => Ok(false),
            WriteResult::LeaseLost => Err(StoreError::LeaseLost { saga: id }),
        }
    }

    /// Claims saga `id` for `owner` if it is active and its lease expired
    /// (or `owner` holds it already), bumping its fence.
    pub(crate) async fn claim_one(
        &self,
        id: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<SagaRecord>, StoreError> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.claim_one(id, owner, until, now)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let (target, owner, id) = (s.target.clone(), owner.to_owned(), id.to_owned());
                self.on_sqlite_writer(move |conn| {
                    let (target, owner, id) = (target.clone(), owner.clone(), id.clone());
                    Box::pin(async move { sqlite::Sqlite::claim_one(conn, &target, &id, &owner, until, now).await })
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.claim_one(id, owner, until, now).await,
        }
    }

    /// Claims up to `limit` active sagas whose lease expired (or that never
    /// had one), within `scope`, for `owner`, bumping each one's fence.
    pub(crate) async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        scope: ClaimScope<'_>,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        // Only parked sagas (no lease owner) are taken with `parked_only`,
        // so moving "now" ahead takes no live lease early.
        let now = if scope.parked_only { now + scope.due_within.as_millis() as i64 } else { now };
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.claim(owner, until, now, limit, &scope)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let (target, owner) = (s.target.clone(), owner.to_owned());
                let own = scope.own.map(<[String]>::to_vec);
                let definitions = scope.definitions.map(<[String]>::to_vec);
                let (parked_only, due_within) = (scope.parked_only, scope.due_within);
                self.on_sqlite_writer(move |conn| {
                    let (target, owner, own, definitions) =
                        (target.clone(), owner.clone(), own.clone(), definitions.clone());
                    Box::pin(async move {
                        let scope = ClaimScope {
                            own: own.as_deref(),
                            definitions: definitions.as_deref(),
                            parked_only,
                            due_within,
                        };
                        sqlite::Sqlite::claim(conn, &target, &owner, until, now, limit as i64, &scope).await
                    })
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.claim(owner, until, now, limit as i64, &scope).await,
        }
    }

    /// Runs `write` on a SQLite store's one writer connection, in the group
    /// commit beside the saga transitions. Lease writes (claims,
    /// heartbeats) used to go through a reader connection, and contended
    /// with the committer for SQLite's single write lock: SQLite's busy
    /// handler then sleeps 1, 2, 5 … up to 100 ms between tries: 100,000
    /// sagas waking at 1,667 a second woke 133 ms late at p99 that way,
    /// 9 ms with the claims here (`cargo bench -p weir --bench waits`).
    #[cfg(feature = "sqlite")]
    async fn on_sqlite_writer<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> Fn(&'t mut sqlx::SqliteConnection) -> futures_util::future::BoxFuture<'t, Result<T, StoreError>>
            + Send
            + Sync
            + 'static,
    {
        let done = self
            .commit_effect(move |tx| match tx {
                Tx::Sqlite(conn) => {
                    let write = write(conn);
                    Box::pin(async move { write.await.map_err(crate::error::BoxError::from) })
                }
                #[allow(unreachable_patterns)] // with the `postgres` feature too
                _ => unreachable!("a SQLite store's writer"),
            })
            .await;
        done.map_err(|error| match error.downcast::<StoreError>() {
            Ok(error) => *error,
            Err(other) => StoreError::Query { target: self.target(), source: other },
        })
    }

    /// Extends the leases of the sagas `owner` is driving (`sagas`); a saga
    /// it holds but no longer drives (its future was dropped) is left to
    /// expire, so that any worker can take it over.
    pub(crate) async fn heartbeat(&self, owner: &str, sagas: &[String], lease: Duration) -> Result<u64, StoreError> {
        if sagas.is_empty() {
            return Ok(0);
        }
        let until = now_ms() + lease.as_millis() as i64;
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.heartbeat(owner, sagas, until)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let (target, owner, sagas) = (s.target.clone(), owner.to_owned(), sagas.to_vec());
                self.on_sqlite_writer(move |conn| {
                    let (target, owner, sagas) = (target.clone(), owner.clone(), sagas.clone());
                    Box::pin(async move { sqlite::Sqlite::heartbeat(conn, &target, &owner, &sagas, until).await })
                })
                .await
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.heartbeat(owner, sagas, until).await,
        }
    }

    /// One saga's record.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read.
    pub async fn saga(&self, id: &str) -> Result<Option<SagaRecord>, StoreError> {
        match &*self.inner.backend {
            Backend::Memory(m) => Ok(m.get(id)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.get(id).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.get(id).await,
        }
    }

    /// Sagas, oldest first, optionally only those with `status`.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read.
    pub async fn sagas(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<SagaRecord>, StoreError> {
        let query = SagaQuery { status, ..SagaQuery::new() }.limit(limit);
        self.find_sagas(&query).await
    }

    /// The saved position of cursor `name`.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be read or the position is not
    /// JSON.
    pub async fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let raw = match &*self.inner.backend {
            Backend::Memory(m) => m.load_cursor(name),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => s.load_cursor(name).await?,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.load_cursor(name).await?,
        };
        raw.map(|raw| {
            serde_json::from_str(&raw)
                .map_err(|e| StoreError::Corrupt { target: self.target(), detail: format!("cursor {name}: {e}") })
        })
        .transpose()
    }

    /// Saves cursor `name` at `position`; returns once it is durable.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot be written.
    pub async fn save_cursor(&self, name: &str, position: &serde_json::Value) -> Result<(), StoreError> {
        let raw = position.to_string();
        match &*self.inner.backend {
            Backend::Memory(m) => {
                m.save_cursor(name, &raw);
                Ok(())
            }
            // Through the group committer: one writer, no lock waits.
            _ => self.write(SagaWrite::Cursor { name: name.to_owned(), position: raw, at: now_ms() }).await.map(drop),
        }
    }

    /// What the group committer did so far (zeros for the memory store).
    pub fn commit_metrics(&self) -> CommitMetrics {
        use std::sync::atomic::Ordering::Relaxed;
        match &self.inner.committer {
            None => CommitMetrics::default(),
            Some(c) => CommitMetrics {
                transactions: c.stats.transactions.load(Relaxed),
                writes: c.stats.writes.load(Relaxed),
                busy: Duration::from_nanos(c.stats.busy_ns.load(Relaxed)),
            },
        }
    }

    /// A durable dead-letter queue named `queue` in this store.
    pub fn dead_letters<T>(&self, queue: &str) -> StoreDlq<T> {
        StoreDlq::new(self.clone(), queue)
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }
}
