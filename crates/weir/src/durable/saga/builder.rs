//! [`SagaEngineBuilder`]: an engine's settings, checked once.

use std::collections::HashMap;
use std::time::Duration;

use super::{SagaDefinition, SagaEngine, SagaSchedule};
use crate::durable::store::Store;
use crate::error::ConfigError;
use crate::policy::retry::RetryPolicy;
use crate::policy::{Stack, StackBuilder};

/// Configures a [`SagaEngine`].
///
/// # Defaults
/// - steps retried by [`RetryPolicy`]'s defaults (3 attempts), no other
///   policy;
/// - compensations retried up to 5 attempts;
/// - no step timeout (a step that never returns holds its saga, and the
///   saga's lease, until the engine is dropped);
/// - leases of 30 s, renewed every 10 s;
/// - expired sagas taken over every 10 s while the engine runs;
/// - at most 64 sagas in flight;
/// - worker id `"{hostname or 'host'}-{pid}-{random}"`.
pub struct SagaEngineBuilder {
    store: Store,
    definitions: Vec<SagaDefinition>,
    steps: StackBuilder,
    compensations: StackBuilder,
    lease: Duration,
    worker: Option<String>,
    max_in_flight: usize,
    reclaim: bool,
    retention: Option<Duration>,
    schedules: Vec<SagaSchedule>,
}

/// A checked [`SagaEngineBuilder`], for [`SagaEngine`] to start from.
pub(super) struct Settings {
    pub(super) store: Store,
    pub(super) definitions: HashMap<String, SagaDefinition>,
    pub(super) steps: Stack,
    pub(super) compensations: Stack,
    pub(super) lease: Duration,
    pub(super) worker: String,
    pub(super) max_in_flight: usize,
    pub(super) reclaim: bool,
    pub(super) retention: Option<Duration>,
    pub(super) schedules: Vec<SagaSchedule>,
}

impl std::fmt::Debug for SagaEngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaEngineBuilder").field("store", &self.store).finish_non_exhaustive()
    }
}

impl SagaEngineBuilder {
    pub(super) fn new(store: Store) -> Self {
        let compensation_retry = RetryPolicy::builder().max_attempts(5).build().expect("valid");
        Self {
            store,
            definitions: Vec::new(),
            steps: Stack::builder().retry(RetryPolicy::default()),
            compensations: Stack::builder().retry(compensation_retry),
            lease: Duration::from_secs(30),
            worker: None,
            max_in_flight: 64,
            reclaim: true,
            retention: None,
            schedules: Vec::new(),
        }
    }

    /// Starts a saga of the schedule's definition at each of its ticks,
    /// from this engine's first `run`, `resume` or `work` on, for as long
    /// as it lives. Register the same schedule on every worker: each tick
    /// starts one saga whichever workers fire it (see [`SagaSchedule`]).
    pub fn schedule(mut self, schedule: SagaSchedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Retention: sagas that ended completed or compensated are deleted
    /// once they have been ended this long, by the running engine's
    /// heartbeat (checked every `keep` or every minute, whichever is
    /// sooner). `failed` sagas are kept: they wait for a person. Off by
    /// default (sagas are kept until [`Store::prune_sagas`] or
    /// `weir sagas prune`).
    ///
    /// [`Store::prune_sagas`]: crate::durable::store::Store::prune_sagas
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = Some(keep);
        self
    }

    /// Registers a definition under its name.
    pub fn definition(mut self, definition: SagaDefinition) -> Self {
        self.definitions.push(definition);
        self
    }

    /// The policies every step attempt goes through (retry, breaker, rate
    /// limit, bulkhead, hedge, timeout, in weir's order; per-key policies
    /// are keyed by the step's name). Replaces the step retry and timeout
    /// set before. A step's [`StepError::terminal`](super::StepError::terminal)
    /// failure is never retried; a retryable one is retried when its cause
    /// is [transient](crate::policy::retry::is_transient).
    pub fn step_policies(mut self, policies: Stack) -> Self {
        self.steps = policies.into_builder();
        self
    }

    /// The policies every compensation attempt goes through; see
    /// [`step_policies`](Self::step_policies).
    pub fn compensation_policies(mut self, policies: Stack) -> Self {
        self.compensations = policies.into_builder();
        self
    }

    /// How a failing step is retried (only retryable errors): sets the
    /// retry of the [step policies](Self::step_policies).
    pub fn step_retry(mut self, policy: RetryPolicy) -> Self {
        self.steps = self.steps.retry(policy);
        self
    }

    /// How a failing compensation is retried: sets the retry of the
    /// [compensation policies](Self::compensation_policies).
    pub fn compensation_retry(mut self, policy: RetryPolicy) -> Self {
        self.compensations = self.compensations.retry(policy);
        self
    }

    /// Bounds each attempt of a step or compensation (the timeout of both
    /// stacks): an attempt still running after `timeout` is dropped and
    /// fails with [`TimedOut`](crate::error::TimedOut), which is retried
    /// like any retryable failure. Dropping an attempt cancels it at its
    /// next `.await`; an effect it already sent may still happen, which the
    /// step's idempotency key covers.
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.steps = self.steps.timeout(timeout);
        self.compensations = self.compensations.timeout(timeout);
        self
    }

    /// How long a claim lasts without renewal.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// This worker's id, as lease owner.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker = Some(id.into());
        self
    }

    /// The most sagas driven at once.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Whether the running engine takes over, with its free slots, sagas
    /// whose lease expired (a worker died, or stopped renewing): checked
    /// every third of the lease. On by default; turn it off for an engine
    /// that only drives the sagas it starts (others then wait for an
    /// explicit [`resume`](SagaEngine::resume)).
    pub fn reclaim_expired(mut self, on: bool) -> Self {
        self.reclaim = on;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] for two definitions with one name and version, a
    /// child step whose definition is not registered here, 0
    /// sagas in flight, a zero step timeout, or a lease under 1 s.
    pub fn build(self) -> Result<SagaEngine, ConfigError> {
        let mut definitions = HashMap::new();
        for def in self.definitions {
            let key = def.key();
            if definitions.insert(key.clone(), def).is_some() {
                return Err(ConfigError::new("saga definition", key, "register each definition name and version once"));
            }
        }
        for def in definitions.values() {
            for child in def.children() {
                let known = definitions.values().any(|d| d.name() == child || d.key() == child);
                if !known {
                    return Err(ConfigError::new(
                        "saga child definition",
                        format!("`{child}` of a step of `{}`", def.key()),
                        "register the child's definition on the same engine",
                    ));
                }
            }
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::new("saga max_in_flight", 0, "use at least 1"));
        }
        let (steps, compensations) = (self.steps.unvalidated(), self.compensations.unvalidated());
        let zero = |stack: &Stack| stack.timeout().is_some_and(|t| t.after().is_zero());
        if zero(&steps) || zero(&compensations) {
            return Err(ConfigError::new("saga step_timeout", "0s", "use a positive duration, or leave it unset"));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "saga lease",
                format!("{:?}", self.lease),
                "use at least 1s (leases are renewed every third)",
            ));
        }
        for (i, schedule) in self.schedules.iter().enumerate() {
            if self.schedules[..i].iter().any(|s| s.name == schedule.name) {
                return Err(ConfigError::new("saga schedule", &*schedule.name, "register each schedule name once"));
            }
            let known = definitions.values().any(|d| d.name() == schedule.definition || d.key() == schedule.definition);
            if !known {
                return Err(ConfigError::new(
                    "saga schedule definition",
                    format!("`{}` of schedule `{}`", schedule.definition, schedule.name),
                    "register that definition on the same engine",
                ));
            }
        }
        let worker = self.worker.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
            format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
        });
        Ok(SagaEngine::start(Settings {
            store: self.store,
            definitions,
            steps,
            compensations,
            lease: self.lease,
            worker,
            max_in_flight: self.max_in_flight,
            reclaim: self.reclaim,
            retention: self.retention,
            schedules: self.schedules,
        }))
    }
}
