//! Runs sagas: starts new ones durably, resumes stored ones, keeps the
//! leases of the ones it holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::builder::{SagaEngineBuilder, Settings};
use super::definition::name_of;
use super::run::Driver;
use super::{SagaDefinition, SagaError};
use crate::durable::store::{
    ClaimScope, SagaRecord, SagaStatus, SagaWrite, StepRecord, Store, StoreError, WAITING_FOR, now_ms,
};
use crate::error::BoxError;
use crate::group::Group;
use crate::policy::Stack;

/// Runs sagas against a [`Store`].
///
/// - [`run`](Self::run) writes a new saga before its first step and drives
///   it to the end; each step's transition is durable before the next step
///   starts.
/// - [`resume`](Self::resume) claims every stored saga that is still
///   running or compensating and whose lease expired (a crashed worker's),
///   and drives each from where it stopped.
/// - Many engines (processes, machines) can share one PostgreSQL store:
///   claims skip locked rows, the lease of each saga an engine is driving
///   is renewed while it drives it, and every write carries the claim's
///   fencing token, so a worker that lost its lease cannot write.
/// - While it runs (from its first `run` or `resume` on), an engine keeps
///   taking over sagas whose lease expired (their worker died or stopped)
///   with its free slots, every third of the lease, and drives them in the
///   background: a saga is never left stuck while a live worker could
///   finish it. See [`SagaEngineBuilder::reclaim_expired`].
///
/// # Guarantees
/// - A step runs **at least once**: if the process dies after a step's
///   effect but before its transition is committed, the step runs again on
///   resume. Its [`idempotency_key`](super::StepContext::idempotency_key)
///   is the same every time; a step whose effect must happen exactly once
///   records that key with the effect (a unique key in the effect's own
///   table, or the downstream API's idempotency header).
/// - Each transition is **recorded exactly once**: a write whose fence is
///   stale changes nothing.
/// - Concurrent sagas' transitions are committed together (group commit);
///   no step starts before the previous transition is durable.
#[derive(Clone)]
pub struct SagaEngine {
    pub(super) inner: Arc<Inner>,
    background: Arc<Background>,
}

pub(super) struct Inner {
    pub(super) store: Store,
    /// By [key](SagaDefinition::key): every version registered.
    pub(super) definitions: HashMap<String, SagaDefinition>,
    /// By name: the key of the highest version registered, which new
    /// sagas start on.
    latest: HashMap<String, String>,
    steps: Stack,
    compensations: Stack,
    pub(super) lease: Duration,
    pub(super) worker: String,
    pub(super) slots: Arc<Semaphore>,
    pub(super) max_in_flight: usize,
    reclaim: bool,
    /// How long ended sagas are kept, and when they were last pruned.
    retention: Option<(Duration, Mutex<Option<std::time::Instant>>)>,
    /// How many [`work`](SagaEngine::work) loops run: while one does, the
    /// heartbeat takes over no expired saga (the queue redelivers their
    /// jobs within its limits).
    pub(super) serving_queues: AtomicU64,
    /// The names of `definitions`, for claims.
    definition_names: Vec<String>,
    /// Every (definition, waiting for) pair `weir_saga_parked` was set
    /// for: set again each time, to 0 once none is parked.
    parked_shown: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// The sagas this engine is driving now (their leases are renewed),
    /// each with the signal that stops it when it is cancelled.
    driving: Mutex<HashMap<String, Arc<CancelSignal>>>,
    /// Held across each claim and the registration of what it claimed in
    /// `driving`: a claim that takes this worker's own sagas ([`resume`]'s)
    /// must not see one that another claim of this engine (the heartbeat's
    /// take-over) just took but has not registered yet, or it claims it a
    /// second time and the first drive's fence goes stale.
    ///
    /// [`resume`]: SagaEngine::resume
    pub(super) claiming: tokio::sync::Mutex<()>,
    /// Sagas taken over in the background since the engine started.
    reclaimed: AtomicU64,
    /// Whether a registered definition sleeps or waits for events (then
    /// the engine runs a waker).
    has_waits: bool,
    /// Wakes the waker to look again for the next due saga: a saga parked
    /// or an event sent here.
    pub(super) rewake: tokio::sync::Notify,
    /// Parked sagas this engine woke since it started.
    woken: AtomicU64,
    /// The cron schedules this engine fires.
    pub(super) schedules: Vec<super::SagaSchedule>,
    /// Background drives not finished yet, and a wake-up when none is.
    background_running: AtomicU64,
    background_idle: tokio::sync::Notify,
    /// Sagas driven now (`driving`'s size), for the metrics recorder.
    in_flight: crate::observe::Gauge,
}

/// One background drive, counted while it lives (aborted ones included).
struct BackgroundDrive(Arc<Inner>);

impl BackgroundDrive {
    fn start(inner: &Arc<Inner>) -> Self {
        inner.background_running.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(inner))
    }
}

impl Drop for BackgroundDrive {
    fn drop(&mut self) {
        if self.0.background_running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.background_idle.notify_waiters();
        }
    }
}

/// The engine's background work: the heartbeat (which also takes over
/// expired sagas) and the drives of the sagas it took over. Stopped when
/// the last handle of the engine is dropped.
struct Background {
    heartbeat: OnceLock<JoinHandle<()>>,
    waker: OnceLock<JoinHandle<()>>,
    scheduler: OnceLock<JoinHandle<()>>,
    drives: Arc<Mutex<JoinSet<()>>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in [self.heartbeat.get(), self.waker.get(), self.scheduler.get()].into_iter().flatten() {
            task.abort();
        }
        self.drives.lock().unwrap_or_else(|p| p.into_inner()).abort_all();
    }
}

/// A saga this engine is driving, for as long as the guard lives.
pub(super) struct Driving {
    inner: Arc<Inner>,
    id: String,
    signal: Arc<CancelSignal>,
}

/// How a drive learns that its saga was cancelled: the heartbeat (or
/// [`SagaEngine::cancel`] here) sets the reason, then fires the token.
#[derive(Debug, Default)]
pub(super) struct CancelSignal {
    pub(super) token: tokio_util::sync::CancellationToken,
    pub(super) reason: OnceLock<String>,
}

impl CancelSignal {
    pub(super) fn fire(&self, reason: &str) {
        let _ = self.reason.set(reason.to_owned());
        self.token.cancel();
    }
}

impl Driving {
    /// Marks `id` as driven here; `None` if it is already.
    pub(super) fn start(inner: &Arc<Inner>, id: &str) -> Option<Self> {
        let mut driving = inner.driving.lock().unwrap_or_else(|p| p.into_inner());
        if driving.contains_key(id) {
            return None;
        }
        let signal = Arc::new(CancelSignal::default());
        driving.insert(id.to_owned(), Arc::clone(&signal));
        inner.in_flight.increment(1.0);
        Some(Self { inner: Arc::clone(inner), id: id.to_owned(), signal })
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        let mut driving = self.inner.driving.lock().unwrap_or_else(|p| p.into_inner());
        if driving.get(&self.id).is_some_and(|signal| Arc::ptr_eq(signal, &self.signal)) {
            driving.remove(&self.id);
            self.inner.in_flight.decrement(1.0);
        }
    }
}

impl std::fmt::Debug for SagaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.inner.definitions.keys().collect();
        names.sort();
        f.debug_struct("SagaEngine")
            .field("store", &self.inner.store)
            .field("worker", &self.inner.worker)
            .field("definitions", &names)
            .finish()
    }
}

/// What [`SagaEngine::resume`] did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ResumeReport {
    /// Sagas claimed and driven.
    pub resumed: u64,
    /// Of those, how many completed.
    pub completed: u64,
    /// How many were rolled back.
    pub compensated: u64,
    /// How many ended failed (a compensation failed).
    pub failed: u64,
    /// How many another worker took over meanwhile.
    pub lease_lost: u64,
    /// How many went to sleep or to wait for an event (parked: a worker's
    /// wake-up carries each on when it is due).
    pub suspended: u64,
    /// Sagas whose definition is not registered: kept as they are, never
    /// dropped; `(saga id, definition name)`.
    pub unknown_definitions: Vec<(String, String)>,
    /// Other errors (the store failing), per saga.
    pub errors: Vec<SagaError>,
}

impl SagaEngine {
    /// Configures an engine on `store`.
    pub fn builder(store: Store) -> SagaEngineBuilder {
        SagaEngineBuilder::new(store)
    }

    /// An engine with checked settings; background tasks start with its
    /// first `run` or `resume`.
    pub(super) fn start(settings: Settings) -> Self {
        let definition_names = settings.definitions.keys().cloned().collect();
        let mut latest: HashMap<String, (u32, String)> = HashMap::new();
        for (key, def) in &settings.definitions {
            let entry = latest.entry(def.name().to_owned()).or_insert((def.version(), key.clone()));
            if def.version() > entry.0 {
                *entry = (def.version(), key.clone());
            }
        }
        let latest = latest.into_iter().map(|(name, (_, key))| (name, key)).collect();
        let has_waits = settings.definitions.values().any(SagaDefinition::has_waits);
        Self {
            background: Arc::new(Background {
                heartbeat: OnceLock::new(),
                waker: OnceLock::new(),
                scheduler: OnceLock::new(),
                drives: Arc::default(),
            }),
            inner: Arc::new(Inner {
                store: settings.store,
                definitions: settings.definitions,
                latest,
                steps: settings.steps,
                compensations: settings.compensations,
                lease: settings.lease,
                worker: settings.worker,
                slots: Arc::new(Semaphore::new(settings.max_in_flight)),
                max_in_flight: settings.max_in_flight,
                reclaim: settings.reclaim,
                retention: settings.retention.map(|keep| (keep, Mutex::new(None))),
                serving_queues: AtomicU64::new(0),
                definition_names,
                parked_shown: Mutex::default(),
                driving: Mutex::default(),
                claiming: tokio::sync::Mutex::default(),
                reclaimed: AtomicU64::new(0),
                has_waits,
                rewake: tokio::sync::Notify::new(),
                woken: AtomicU64::new(0),
                schedules: settings.schedules,
                background_running: AtomicU64::new(0),
                background_idle: tokio::sync::Notify::new(),
                in_flight: crate::observe::gauge("weir_saga_in_flight", Vec::new),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// This worker's id (lease owner).
    pub fn worker_id(&self) -> &str {
        &self.inner.worker
    }

    /// How many sagas whose lease had expired this engine took over in the
    /// background since it started (not counting [`resume`](Self::resume)).
    pub fn reclaimed(&self) -> u64 {
        self.inner.reclaimed.load(Ordering::Relaxed)
    }

    /// How many sleeping or waiting sagas this engine woke when they were
    /// due (or an event arrived) since it started.
    pub fn woken(&self) -> u64 {
        self.inner.woken.load(Ordering::Relaxed)
    }

    /// Starts a saga of `definition` with `input` and drives it to its end.
    /// The saga is written before its first step runs. Returns its id.
    ///
    /// # Errors
    /// [`SagaError`]: rolled back (with the failed step's cause), failed
    /// (with the compensation errors too), an unknown definition, or the
    /// store failing; [`SagaError::is_suspended`] when it went to sleep or
    /// to wait for an event (not a failure: it is stored, and a worker's
    /// wake-up carries it on when it is due).
    ///
    /// # Cancel safety
    /// Dropping the future stops the saga between two durable transitions
    /// or inside a step; [`resume`](Self::resume) (here or in another
    /// process, once the lease expired) carries it on.
    pub async fn run<I: Serialize>(&self, definition: &str, input: &I) -> Result<String, SagaError> {
        self.run_with_id(&new_saga_id(), definition, input).await
    }

    /// Like [`run`](Self::run) with a caller-chosen id, so that starting is
    /// idempotent: if saga `id` exists with the same definition and input,
    /// it is not started again but driven on if it is still active and not
    /// held by a live worker, and its outcome returned if it ended.
    ///
    /// # Errors
    /// As [`run`](Self::run); also when another live worker holds the saga
    /// ([`SagaError::is_lease_lost`]), this engine included (two calls with
    /// one id at once: the second does not wait for the first); and when
    /// saga `id` exists with another definition or input
    /// ([`SagaError::conflicting_input`]): a conflicting request is never
    /// merged into the first, and nothing runs.
    ///
    /// # Cancel safety
    /// As [`run`](Self::run).
    pub async fn run_with_id<I: Serialize>(&self, id: &str, definition: &str, input: &I) -> Result<String, SagaError> {
        self.run_in_a_slot(id, definition, input, None).await
    }

    /// Like [`run_with_id`](Self::run_with_id), with a durable deadline:
    /// if the saga has not ended by `deadline`, it is cancelled and
    /// compensated (the running step stopped, as by
    /// [`cancel`](Self::cancel)) by whichever worker holds it then, or by
    /// the next one to claim it. A saga that already exists keeps the
    /// deadline it started with.
    ///
    /// # Errors
    /// As [`run_with_id`](Self::run_with_id); a saga stopped by its
    /// deadline ends with [`SagaError::is_cancelled`] and the reason "its
    /// deadline passed".
    ///
    /// # Cancel safety
    /// As [`run`](Self::run): the deadline is stored with the saga.
    pub async fn run_with_deadline<I: Serialize>(
        &self,
        id: &str,
        definition: &str,
        input: &I,
        deadline: std::time::SystemTime,
    ) -> Result<String, SagaError> {
        self.run_in_a_slot(id, definition, input, Some(deadline)).await
    }

    /// Waits for a free slot, then [`run_in_slot`](Self::run_in_slot).
    async fn run_in_a_slot<I: Serialize>(
        &self,
        id: &str,
        definition: &str,
        input: &I,
        deadline: Option<std::time::SystemTime>,
    ) -> Result<String, SagaError> {
        if self.inner.resolve(definition).is_none() {
            return Err(SagaError::for_unknown_definition(id, definition));
        }
        let _slot = self.inner.slots.acquire().await.expect("never closed");
        self.run_in_slot(id, definition, input, deadline).await
    }

    /// [`run_with_id`](Self::run_with_id) in a slot the caller holds.
    pub(super) async fn run_in_slot<I: Serialize>(
        &self,
        id: &str,
        definition: &str,
        input: &I,
        deadline: Option<std::time::SystemTime>,
    ) -> Result<String, SagaError> {
        let (def, mut record) = self.new_record(id, definition, input)?;
        record.deadline_at = deadline.map(crate::durable::store::ms);
        self.start_heartbeat();
        let Some(driving) = Driving::start(&self.inner, id) else {
            return Err(SagaError::store(id, StoreError::LeaseLost { saga: id.to_owned() }));
        };
        // Started here, so held here from the first write on.
        record.fence = 1;
        record.lease_owner = Some(self.inner.worker.clone());
        record.lease_until = Some(record.created_at + self.inner.lease.as_millis() as i64);
        let store = &self.inner.store;
        if store.write(SagaWrite::Insert(Box::new(record.clone()))).await.map_err(|e| SagaError::store(id, e))? {
            tracing::debug!(saga = %id, definition, "saga started");
            return self.inner.driver(def, &driving.signal).drive(record).await;
        }
        // It exists: with another input it is another request under the same
        // id (refused); else drive it on if it is ours to take, or report how
        // it ended.
        let stored = store.saga(id).await.map_err(|e| SagaError::store(id, e))?;
        // (Another version of the same definition is the same request: the
        // saga goes on with the version it started on.)
        if let Some(stored) = stored
            && (stored.input != record.input || name_of(&stored.definition) != name_of(&record.definition))
        {
            let stored_start = (stored.definition.as_str(), &stored.input);
            return Err(SagaError::input_conflict(id, stored_start, (definition, &record.input)));
        }
        let claimed = {
            let _claiming = self.inner.claiming.lock().await;
            store.claim_one(id, &self.inner.worker, self.inner.lease).await.map_err(|e| SagaError::store(id, e))?
        };
        match claimed {
            Some(record) => self.inner.drive_claimed(record, &driving).await,
            None => {
                let record = store.saga(id).await.map_err(|e| SagaError::store(id, e))?;
                match record {
                    Some(record) if !record.status.is_active() => {
                        self.inner.driver(def, &driving.signal).drive(record).await
                    }
                    Some(record) if let Some(asleep) = suspended(&record) => Err(asleep),
                    _ => Err(SagaError::store(id, StoreError::LeaseLost { saga: id.to_owned() })),
                }
            }
        }
    }

    /// Stores a new saga of `definition` with `input` under `id` without
    /// running it: any engine sharing the store picks it up on its next
    /// [`resume`](Self::resume). `Ok(false)` if a saga with that id exists.
    ///
    /// # Errors
    /// [`SagaError`] for an unknown definition or the store failing.
    pub async fn submit<I: Serialize>(&self, id: &str, definition: &str, input: &I) -> Result<bool, SagaError> {
        // Unclaimed (fence 0, no lease): the first engine to resume takes it.
        let (_, record) = self.new_record(id, definition, input)?;
        self.inner.store.write(SagaWrite::Insert(Box::new(record))).await.map_err(|e| SagaError::store(id, e))
    }

    /// Claims and drives every stored saga that is still active and not
    /// held by a live worker, until none is left; returns what happened.
    /// Sagas the engine's background take-over started meanwhile are
    /// driven to their end too before it returns (they are counted by
    /// [`reclaimed`](Self::reclaimed), not in the report).
    ///
    /// # Errors
    /// [`StoreError`] if claiming fails (sagas already claimed are driven
    /// and reported first).
    pub async fn resume(&self) -> Result<ResumeReport, StoreError> {
        self.start_heartbeat();
        let report = Arc::new(Mutex::new(ResumeReport::default()));
        let mut seen = std::collections::HashSet::new();
        // Round by round: claim a batch, drive it to the end, claim again.
        // A saga met twice (its definition is unknown, or it could not
        // finish) is left for a later resume rather than looped over.
        loop {
            let inner = &self.inner;
            let claimed = {
                let _claiming = inner.claiming.lock().await;
                let driving = inner.driving_ids();
                let scope = ClaimScope {
                    own: Some(&driving),
                    definitions: None,
                    parked_only: false,
                    due_within: Duration::ZERO,
                };
                let batch = inner.store.claim(&inner.worker, inner.lease, inner.max_in_flight, scope).await?;
                // Claimed while this engine started driving it: leave it there.
                let fresh = batch.into_iter().filter(|r| seen.insert(r.id.clone()));
                fresh.filter_map(|r| Some((Driving::start(inner, &r.id)?, r))).collect::<Vec<_>>()
            };
            if claimed.is_empty() {
                break;
            }
            let round: Group<BoxError> = Group::new();
            for (driving, record) in claimed {
                let (inner, report) = (Arc::clone(inner), Arc::clone(&report));
                round
                    .spawn(async move {
                        let outcome = inner.drive_claimed(record, &driving).await;
                        drop(driving);
                        engine_record(&report, outcome);
                        Ok(())
                    })
                    .await;
            }
            round.wait().await.map_err(|e| StoreError::Query { target: self.inner.store.target(), source: e })?;
        }
        // The heartbeat may have taken some over meanwhile: they end too
        // before `resume` returns (a process that exits after `resume` would
        // otherwise cut them off mid-way).
        self.inner.background_idle().await;
        let report = std::mem::take(&mut *report.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(report)
    }

    /// A new, unclaimed record of saga `id`: every step pending.
    fn new_record<I: Serialize>(
        &self,
        id: &str,
        definition: &str,
        input: &I,
    ) -> Result<(&SagaDefinition, SagaRecord), SagaError> {
        let Some((key, def)) = self.inner.resolve(definition) else {
            return Err(SagaError::for_unknown_definition(id, definition));
        };
        let input = serde_json::to_value(input).map_err(|e| {
            SagaError::store(id, StoreError::Corrupt { target: "saga input".into(), detail: e.to_string() })
        })?;
        Ok((def, new_record(id, key, def, input)))
    }

    /// Every third of the lease, while the engine lives: renews the leases
    /// of the sagas it drives, then takes over expired ones. Also starts
    /// the waker if a definition sleeps or waits, and the scheduler if
    /// schedules are registered.
    pub(super) fn start_heartbeat(&self) {
        if !self.inner.schedules.is_empty() {
            self.background.scheduler.get_or_init(|| {
                let (inner, drives) = (Arc::clone(&self.inner), Arc::clone(&self.background.drives));
                tokio::spawn(async move { inner.run_schedules(&drives).await })
            });
        }
        if self.inner.has_waits {
            self.background.waker.get_or_init(|| {
                let (inner, drives) = (Arc::clone(&self.inner), Arc::clone(&self.background.drives));
                tokio::spawn(async move { inner.wake_parked(&drives).await })
            });
        }
        self.background.heartbeat.get_or_init(|| {
            let (inner, drives) = (Arc::clone(&self.inner), Arc::clone(&self.background.drives));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(inner.lease / 3);
                loop {
                    tick.tick().await;
                    let (store, worker) = (&inner.store, &inner.worker);
                    if let Err(error) = store.heartbeat(worker, &inner.driving_ids(), inner.lease).await {
                        tracing::warn!(%worker, %error, "could not renew leases");
                    }
                    inner.stop_cancelled().await;
                    inner.prune_if_due().await;
                    if inner.reclaim && inner.serving_queues.load(Ordering::Relaxed) == 0 {
                        inner.take_over(&drives, false).await;
                    }
                }
            })
        });
    }
}

impl Inner {
    /// Waits until no background drive is running.
    async fn background_idle(&self) {
        loop {
            let idle = self.background_idle.notified();
            if self.background_running.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// The definition a new saga of `definition` starts on, with its key:
    /// the highest version registered under that name, or exactly the
    /// version a key (`order@v2`, `order@v1`) names.
    pub(super) fn resolve(&self, definition: &str) -> Option<(String, &SagaDefinition)> {
        let key = match self.latest.get(definition) {
            Some(latest) => latest.clone(),
            None => definition.strip_suffix("@v1").unwrap_or(definition).to_owned(),
        };
        let def = self.definitions.get(&key)?;
        Some((key, def))
    }

    fn driving_ids(&self) -> Vec<String> {
        self.driving.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// The cancel signal of saga `id`, if this engine is driving it.
    pub(super) fn signal_of(&self, id: &str) -> Option<Arc<CancelSignal>> {
        self.driving.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Deletes the completed and compensated sagas older than the
    /// retention, at most once per `min(retention, 1 min)`.
    async fn prune_if_due(&self) {
        let Some((keep, last)) = &self.retention else { return };
        {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < (*keep).min(Duration::from_secs(60))) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        let before = std::time::SystemTime::now() - *keep;
        match self.store.prune_sagas(&[SagaStatus::Completed, SagaStatus::Compensated], before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "ended sagas past their retention deleted"),
            Err(error) => tracing::warn!(%error, "could not delete ended sagas past their retention"),
        }
    }

    /// Stops the drives of the sagas this engine holds that were asked to
    /// be cancelled (they compensate).
    async fn stop_cancelled(&self) {
        match self.store.cancel_requests(&self.worker).await {
            Ok(requests) => {
                for (id, reason) in requests {
                    if let Some(signal) = self.signal_of(&id) {
                        signal.fire(&reason);
                    }
                }
            }
            Err(error) => tracing::warn!(worker = %self.worker, %error, "could not read cancel requests"),
        }
    }

    pub(super) async fn drive_claimed(
        self: &Arc<Self>,
        record: SagaRecord,
        driving: &Driving,
    ) -> Result<String, SagaError> {
        match self.definitions.get(&record.definition) {
            None => Err(SagaError::for_unknown_definition(&record.id, &record.definition)),
            Some(def) => self.driver(def, &driving.signal).drive(record).await,
        }
    }

    fn driver<'a>(self: &'a Arc<Self>, definition: &'a SagaDefinition, cancel: &'a CancelSignal) -> Driver<'a> {
        let (steps, compensations, parked) = (&self.steps, &self.compensations, &self.rewake);
        Driver { store: &self.store, definition, steps, compensations, cancel, parked, engine: self }
    }

    /// Claims as many sagas as there are free slots and drives each in
    /// `drives`: those whose lease expired and the parked ones that are due
    /// (only the parked ones with `parked_only`: a wake-up). Returns how
    /// many it claimed.
    async fn take_over(self: &Arc<Self>, drives: &Mutex<JoinSet<()>>, parked_only: bool) -> usize {
        // Finished drives are reaped here, so the set stays small.
        while drives.lock().unwrap_or_else(|p| p.into_inner()).try_join_next().is_some() {}
        let free = self.slots.available_permits();
        if free == 0 {
            return 0;
        }
        // Only expired or due ones (a saga this engine drives has a live
        // lease, so no claim here can race a drive that is just starting),
        // and only of definitions it has (another engine may have the
        // others).
        let due_within = if parked_only { WAKE_AHEAD } else { Duration::ZERO };
        let scope = ClaimScope { own: None, definitions: Some(&self.definition_names), parked_only, due_within };
        // Counted from the claim on, so that `resume` waiting for the
        // background to be idle cannot miss a claim under way.
        let _claim_counted = BackgroundDrive::start(self);
        let _claiming = self.claiming.lock().await;
        let claimed = match self.store.claim(&self.worker, self.lease, free, scope).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(worker = %self.worker, %error, "could not take over expired or due sagas");
                return 0;
            }
        };
        let count = claimed.len();
        for record in claimed {
            let Some(driving) = Driving::start(self, &record.id) else { continue };
            if parked_only || was_parked(&record) {
                self.woken.fetch_add(1, Ordering::Relaxed);
                crate::observe::counter("weir_saga_woken_total", Vec::new).increment(1);
                tracing::debug!(saga = %record.id, worker = %self.worker, "woke a saga that was due");
            } else {
                self.reclaimed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(saga = %record.id, worker = %self.worker, "took over a saga whose lease expired");
            }
            self.spawn_drive(drives, record, driving);
        }
        count
    }

    /// Drives a saga this engine claimed in the background, in `drives`,
    /// once a slot is free.
    pub(super) fn spawn_drive(self: &Arc<Self>, drives: &Mutex<JoinSet<()>>, record: SagaRecord, driving: Driving) {
        let inner = Arc::clone(self);
        let counted = BackgroundDrive::start(self);
        drives.lock().unwrap_or_else(|p| p.into_inner()).spawn(async move {
            let _counted = counted;
            let _slot = inner.slots.acquire().await.expect("never closed");
            let id = record.id.clone();
            if let Err(error) = inner.drive_claimed(record, &driving).await
                && !(error.is_compensated() || error.is_failed() || error.is_suspended())
            {
                tracing::warn!(saga = %id, %error, "a saga driven in the background did not finish");
            }
            drop(driving);
        });
    }

    /// Sets `weir_saga_parked{definition, waiting_for}`: sagas of each of
    /// this engine's definitions (by key, as the other saga metrics:
    /// `order`, `order@v2`) parked in the store, whichever worker parked
    /// them, by what they wait for (`timer`, `event`, `child`; `unknown`
    /// for a saga parked before schema 10). A failed count is logged,
    /// not returned.
    async fn show_parked(&self) {
        let counts = match self.store.count_parked(&self.definition_names).await {
            Ok(counts) => counts,
            Err(error) => {
                tracing::debug!(worker = %self.worker, %error, "could not count the parked sagas");
                return;
            }
        };
        let mut shown = self.parked_shown.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.definition_names {
            shown.extend(WAITING_FOR.iter().map(|w| (key.clone(), (*w).to_owned())));
        }
        shown.extend(counts.iter().map(|c| (c.definition.clone(), c.waiting_for.clone())));
        for (key, waiting_for) in shown.iter() {
            let n =
                counts.iter().find(|c| c.definition == *key && c.waiting_for == *waiting_for).map_or(0, |c| c.count);
            let labels = || vec![("definition", key.clone()), ("waiting_for", waiting_for.clone())];
            crate::observe::gauge("weir_saga_parked", labels).set(n as f64);
        }
    }

    /// The waker: sleeps until the earliest parked saga of this engine's
    /// definitions is due within [`WAKE_AHEAD`] (looking again at least
    /// every `WAKE_POLL`, and whenever a saga parks or an event is sent
    /// here), then claims those with its free slots. One task and one
    /// indexed query per poll, however many sagas sleep.
    async fn wake_parked(self: &Arc<Self>, drives: &Mutex<JoinSet<()>>) {
        let mut parked_read: Option<tokio::time::Instant> = None;
        loop {
            if crate::observe::ENABLED && parked_read.is_none_or(|at| at.elapsed() >= PARKED_EVERY) {
                parked_read = Some(tokio::time::Instant::now());
                self.show_parked().await;
            }
            let rewake = self.rewake.notified();
            let next = match self.store.next_wake(&self.definition_names).await {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(worker = %self.worker, %error, "could not look for sagas to wake");
                    None
                }
            };
            let now = now_ms();
            let ahead = WAKE_AHEAD.as_millis() as i64;
            match next {
                Some(at) if at < now + ahead => {
                    if self.take_over(drives, true).await == 0 {
                        // No free slot (or another worker was quicker):
                        // wait for a slot, or a moment.
                        tokio::select! {
                            permit = self.slots.acquire() => drop(permit),
                            () = tokio::time::sleep(WAKE_RETRY) => {}
                        }
                    }
                }
                _ => {
                    let until_due = next.map_or(WAKE_POLL, |at| Duration::from_millis((at - ahead - now + 1) as u64));
                    tokio::select! {
                        () = tokio::time::sleep(until_due.min(WAKE_POLL)) => {}
                        () = rewake => {}
                    }
                }
            }
        }
    }
}

/// How often the waker counts the parked sagas of its definitions for the
/// `weir_saga_parked` gauge (one grouped count), when metrics are on.
const PARKED_EVERY: Duration = Duration::from_secs(5);

/// How often the waker looks for sagas made due elsewhere (an event sent
/// by another process, a saga parked by another worker to wake sooner
/// than any this one knew).
const WAKE_POLL: Duration = Duration::from_secs(1);

/// How far ahead of a parked saga's time the waker claims it, and how
/// long a drive holds a saga that sleeps or waits in place rather than
/// parking it. The claim (a write: one commit) then happens before the
/// saga is due, not after: 100,000 sagas waking at 1,667 a second on a
/// SQLite file woke 23 ms late at p99 when claimed once due, 9 ms when
/// claimed this far ahead (`cargo bench -p weir --bench waits`). A claimed
/// saga holds a lease and an in-flight slot for at most this long before
/// its time.
pub(super) const WAKE_AHEAD: Duration = Duration::from_millis(50);

/// How long the waker waits before claiming again when it could not.
const WAKE_RETRY: Duration = Duration::from_millis(20);

/// A new, unclaimed record of saga `id` of `def` (stored under `key`):
/// every step pending.
pub(super) fn new_record(id: &str, key: String, def: &SagaDefinition, input: serde_json::Value) -> SagaRecord {
    let now = now_ms();
    SagaRecord {
        id: id.to_owned(),
        definition: key,
        input,
        status: SagaStatus::Running,
        steps: def.steps.iter().map(|s| StepRecord::pending(&s.name)).collect(),
        error: None,
        fence: 0,
        lease_owner: None,
        lease_until: None,
        cancel_requested: None,
        deadline_at: None,
        parent: None,
        created_at: now,
        updated_at: now,
    }
}

/// Whether `record` was parked at its first pending step (that step has a
/// wake-up time).
fn was_parked(record: &SagaRecord) -> bool {
    let pending = record.steps.iter().find(|s| s.status == crate::durable::store::StepStatus::Pending);
    pending.is_some_and(|s| s.wake_at.is_some())
}

/// The error for a saga that sleeps or waits (parked: no lease owner, a
/// pending step with a wake-up time), if `record` is one.
pub(super) fn suspended(record: &SagaRecord) -> Option<SagaError> {
    if record.status != SagaStatus::Running || record.lease_owner.is_some() {
        return None;
    }
    let step = record.steps.iter().find(|s| s.status == crate::durable::store::StepStatus::Pending)?;
    step.wake_at?;
    Some(SagaError::suspended(&record.id, step))
}

fn engine_record(report: &Mutex<ResumeReport>, outcome: Result<String, SagaError>) {
    let mut report = report.lock().unwrap_or_else(|p| p.into_inner());
    report.resumed += 1;
    match outcome {
        Ok(_) => report.completed += 1,
        Err(e) if e.is_compensated() => report.compensated += 1,
        Err(e) if e.is_failed() => report.failed += 1,
        Err(e) if e.is_lease_lost() => report.lease_lost += 1,
        Err(e) if e.is_suspended() => report.suspended += 1,
        Err(e) => match e.unknown_definition() {
            Some(definition) => {
                report.resumed -= 1;
                report.unknown_definitions.push((e.saga_id().to_owned(), definition.to_owned()));
            }
            None => report.errors.push(e),
        },
    }
}

/// A new saga id: 32 hex digits, the first 12 the time in ms since the
/// epoch, the other 20 random (80 bits). Ids started close together sort
/// together, so a store's primary-key index takes each new saga on its
/// last page rather than on a random one: fewer pages written per group
/// commit.
fn new_saga_id() -> String {
    let random = u128::from(fastrand::u64(..)) << 16 | u128::from(fastrand::u16(..));
    format!("{:012x}{:020x}", now_ms() & 0xffff_ffff_ffff, random)
}
