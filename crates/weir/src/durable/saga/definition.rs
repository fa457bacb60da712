//! A saga's definition: a name and its steps.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::{StepContext, StepError};
use crate::error::ConfigError;
use crate::policy::Stack;

pub(crate) type Forward = Arc<dyn Fn(StepContext) -> BoxFuture<'static, Result<Value, StepError>> + Send + Sync>;
pub(crate) type Compensate = Arc<dyn Fn(StepContext) -> BoxFuture<'static, Result<(), StepError>> + Send + Sync>;

/// What a step does.
pub(crate) enum Action {
    /// Calls `forward`; `compensate` undoes it.
    Call { forward: Forward, compensate: Option<Compensate> },
    /// Sleeps until the time this gives when the saga first reaches the
    /// step (kept, so a restart does not move it).
    Sleep(WakeTime),
    /// Waits for event `event`, at most `timeout` from when the saga first
    /// reached the step.
    Event { event: Arc<str>, timeout: Duration, on_timeout: OnTimeout },
    /// Runs a child saga of `definition` (a name, or a `name@vN` key) with
    /// the input this computes, and waits for its end.
    Child { definition: Arc<str>, input: ChildInput },
}

pub(crate) type ChildInput = Arc<dyn Fn(&StepContext) -> Result<Value, StepError> + Send + Sync>;

pub(crate) type WakeTime = Arc<dyn Fn(&StepContext) -> Result<SystemTime, StepError> + Send + Sync>;

/// What a step waiting for an event does when none arrives in time
/// ([`SagaDefinitionBuilder::wait_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// The step fails with [`EventTimedOut`](super::EventTimedOut) and the
    /// saga compensates its completed steps (no approval in 24 h: undo).
    Compensate,
    /// The step completes with `null` as its output and the saga goes on;
    /// a later step reads `ctx.output::<Option<T>>(step)` and decides.
    Continue,
}

pub(crate) struct StepDef {
    pub(crate) name: Arc<str>,
    pub(crate) action: Action,
    /// The step's own policies, instead of the engine's step policies.
    pub(crate) policies: Option<Stack>,
    /// Whether the step is compensated when it failed because its last
    /// attempt timed out (its effect unknown).
    pub(crate) compensate_timed_out: bool,
}

/// A named sequence of steps, each with a forward action and (usually) a
/// compensation that undoes it. Register it with a
/// [`SagaEngine`](super::SagaEngine) under its name; stored sagas refer to
/// it by that name.
#[derive(Clone)]
pub struct SagaDefinition {
    pub(crate) name: Arc<str>,
    pub(crate) version: u32,
    pub(crate) steps: Arc<Vec<StepDef>>,
}

impl std::fmt::Debug for SagaDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: Vec<&str> = self.steps.iter().map(|s| &*s.name).collect();
        let f = &mut f.debug_struct("SagaDefinition");
        f.field("name", &self.name).field("version", &self.version).field("steps", &steps).finish()
    }
}

impl SagaDefinition {
    /// Starts a definition named `name`.
    pub fn builder(name: impl Into<Arc<str>>) -> SagaDefinitionBuilder {
        SagaDefinitionBuilder {
            name: name.into(),
            version: 1,
            steps: Vec::new(),
            policies: Vec::new(),
            timed_out: Vec::new(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its version (1 unless [set](SagaDefinitionBuilder::version)).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The definitions its child steps start.
    pub(crate) fn children(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match &s.action {
            Action::Child { definition, .. } => Some(&**definition),
            _ => None,
        })
    }

    /// Whether a step of it sleeps, waits for an event or for a child saga.
    pub(crate) fn has_waits(&self) -> bool {
        self.steps.iter().any(|s| !matches!(s.action, Action::Call { .. }))
    }

    /// What a stored saga names its definition by: the name for version 1
    /// (so sagas stored before versions existed are version 1), else
    /// `name@v{version}`.
    pub fn key(&self) -> String {
        key(&self.name, self.version)
    }
}

/// A definition's key from its name and version.
pub(crate) fn key(name: &str, version: u32) -> String {
    if version == 1 { name.to_owned() } else { format!("{name}@v{version}") }
}

/// The name in a definition key (`order@v2` → `order`).
pub(crate) fn name_of(key: &str) -> &str {
    match key.rsplit_once("@v") {
        Some((name, version)) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => key,
    }
}

/// Builds a [`SagaDefinition`].
pub struct SagaDefinitionBuilder {
    name: Arc<str>,
    version: u32,
    steps: Vec<StepDef>,
    policies: Vec<(String, Stack)>,
    timed_out: Vec<String>,
}

impl std::fmt::Debug for SagaDefinitionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaDefinitionBuilder").field("name", &self.name).field("steps", &self.steps.len()).finish()
    }
}

impl SagaDefinitionBuilder {
    /// Adds a step: `forward` does it and returns an output (kept in the
    /// store, readable by later steps); `compensate` undoes it.
    pub fn step<F, FFut, O, C, CFut>(self, name: &str, forward: F, compensate: C) -> Self
    where
        F: Fn(StepContext) -> FFut + Send + Sync + 'static,
        FFut: Future<Output = Result<O, StepError>> + Send + 'static,
        O: Serialize,
        C: Fn(StepContext) -> CFut + Send + Sync + 'static,
        CFut: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        let compensate: Compensate = Arc::new(move |ctx| Box::pin(compensate(ctx)));
        self.push(name, forward, Some(compensate))
    }

    /// Adds a step with nothing to undo (a read, a notification).
    pub fn step_without_compensation<F, FFut, O>(self, name: &str, forward: F) -> Self
    where
        F: Fn(StepContext) -> FFut + Send + Sync + 'static,
        FFut: Future<Output = Result<O, StepError>> + Send + 'static,
        O: Serialize,
    {
        self.push(name, forward, None)
    }

    fn push<F, FFut, O>(self, name: &str, forward: F, compensate: Option<Compensate>) -> Self
    where
        F: Fn(StepContext) -> FFut + Send + Sync + 'static,
        FFut: Future<Output = Result<O, StepError>> + Send + 'static,
        O: Serialize,
    {
        let forward: Forward = Arc::new(move |ctx| {
            let call = forward(ctx);
            Box::pin(async move {
                let output = call.await?;
                serde_json::to_value(output).map_err(|e| StepError::terminal(format!("step output is not JSON: {e}")))
            })
        });
        self.push_action(name, Action::Call { forward, compensate })
    }

    fn push_action(mut self, name: &str, action: Action) -> Self {
        self.steps.push(StepDef { name: Arc::from(name), action, policies: None, compensate_timed_out: false });
        self
    }

    /// Adds a durable timer: the saga sleeps for `duration` from when it
    /// first reaches this step. The wake-up time is stored; while it
    /// sleeps the saga holds no worker, no lease and no task, and after a
    /// restart it wakes at the stored time (at once if that has passed),
    /// on whichever worker is alive. Its output is `null`; nothing to undo.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use weir::durable::saga::{SagaDefinition, SagaEngine, StepError};
    /// use weir::durable::store::Store;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::error::BoxError> {
    /// let trial = SagaDefinition::builder("trial")
    ///     .step("start", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
    ///     .sleep("wait a day", Duration::from_secs(24 * 3600))
    ///     .step_without_compensation("bill", |_| async { Ok::<_, StepError>(()) })
    ///     .build()?;
    /// let engine = SagaEngine::builder(Store::memory()).definition(trial).build()?;
    /// let asleep = engine.run_with_id("trial-1", "trial", &()).await.unwrap_err();
    /// assert!(asleep.is_suspended()); // stored; any worker wakes it in a day
    /// # Ok(())
    /// # }
    /// ```
    pub fn sleep(self, name: &str, duration: Duration) -> Self {
        self.push_action(name, Action::Sleep(Arc::new(move |_: &StepContext| Ok(SystemTime::now() + duration))))
    }

    /// Adds a durable timer until the time `when` computes from the saga
    /// (its input, earlier steps' outputs) when the saga first reaches this
    /// step; the time is stored, as for [`sleep`](Self::sleep). A time
    /// already past goes on at once; an error from `when` fails the step
    /// (the saga compensates).
    pub fn sleep_until<W>(self, name: &str, when: W) -> Self
    where
        W: Fn(&StepContext) -> Result<SystemTime, StepError> + Send + Sync + 'static,
    {
        self.push_action(name, Action::Sleep(Arc::new(when)))
    }

    /// Adds a step that waits for event `event`, sent with
    /// [`SagaEngine::send_event`](super::SagaEngine::send_event) (from
    /// any process, before or after the saga got here), at most `timeout`
    /// from when the saga first reaches it. The step's output is the
    /// event's payload; later steps read it with
    /// [`StepContext::output`]. Events are durable: one sent is delivered
    /// at least once and taken by one step once (the oldest of that name
    /// not taken yet). While it waits the saga holds no worker and no
    /// lease. When no event arrives in time, `on_timeout` decides: fail
    /// and compensate, or go on with `null`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use weir::durable::saga::{OnTimeout, SagaDefinition, SagaEngine, StepError};
    /// use weir::durable::store::{SagaStatus, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::error::BoxError> {
    /// let refund = SagaDefinition::builder("refund")
    ///     .wait_event("approval", "approved", Duration::from_secs(24 * 3600), OnTimeout::Compensate)
    ///     .step_without_compensation("pay", |ctx| async move {
    ///         let approver: String = ctx.output("approval")?;
    ///         Ok::<_, StepError>(format!("paid, approved by {approver}"))
    ///     })
    ///     .build()?;
    /// let store = Store::memory();
    /// let engine = SagaEngine::builder(store.clone()).definition(refund).build()?;
    /// assert!(engine.run_with_id("r-1", "refund", &()).await.unwrap_err().is_suspended());
    /// engine.send_event("r-1", "approved", &"ana").await?;
    /// engine.resume().await?; // a worker's wake-up does this on its own
    /// assert_eq!(store.saga("r-1").await?.unwrap().status, SagaStatus::Completed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_event(self, name: &str, event: &str, timeout: Duration, on_timeout: OnTimeout) -> Self {
        self.push_action(name, Action::Event { event: Arc::from(event), timeout, on_timeout })
    }

    /// Adds a step that runs a **child saga**: a saga of `definition` (a
    /// name, for its highest registered version, or a `name@vN` key),
    /// with the input `input` computes from this saga when it first
    /// reaches the step, under the id `"{this saga's id}/{step name}"` (so
    /// the child starts once, whatever crashes). The child is driven at
    /// once by the same worker; if it sleeps, waits for an event, or
    /// another worker drives it, this saga parks (no worker, no lease)
    /// until the child ends, which wakes it.
    ///
    /// - The step's output is the child's step outputs, as a JSON object
    ///   from step name to output.
    /// - A child that was rolled back (or failed) is a failed step: its
    ///   cause is [`ChildSagaFailed`](super::ChildSagaFailed) and this saga
    ///   compensates its completed steps (the child has undone its own).
    /// - Compensating this step (a later step failed, or a cancel)
    ///   compensates the child: its done steps are undone in reverse. A
    ///   child still running is cancelled first (the parent waits for its
    ///   rollback, wherever it runs). A child whose compensation failed
    ///   fails this step's compensation, and this saga ends `failed`.
    /// - Cancelling this saga cancels its child; the child inherits this
    ///   saga's deadline.
    ///
    /// Register the child's definition on the same engine.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::saga::{SagaDefinition, SagaEngine, StepError};
    /// use weir::durable::store::{SagaStatus, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weir::error::BoxError> {
    /// let payment = SagaDefinition::builder("payment")
    ///     .step("charge", |ctx| async move { Ok::<_, StepError>(ctx.input::<u32>()? * 100) }, |_| async { Ok(()) })
    ///     .build()?;
    /// let order = SagaDefinition::builder("order")
    ///     .child("pay", "payment", |ctx| ctx.input::<u32>())
    ///     .step_without_compensation("ship", |ctx| async move {
    ///         let paid: serde_json::Value = ctx.output("pay")?;
    ///         Ok::<_, StepError>(paid["charge"].as_u64())
    ///     })
    ///     .build()?;
    /// let store = Store::memory();
    /// let engine = SagaEngine::builder(store.clone()).definition(payment).definition(order).build()?;
    /// engine.run_with_id("o-1", "order", &7).await?;
    /// let child = store.saga("o-1/pay").await?.unwrap();
    /// assert_eq!((child.status, child.parent.as_deref()), (SagaStatus::Completed, Some("o-1")));
    /// assert_eq!(store.saga("o-1").await?.unwrap().steps[1].output, Some(serde_json::json!(700)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn child<I, In>(self, name: &str, definition: &str, input: I) -> Self
    where
        I: Fn(&StepContext) -> Result<In, StepError> + Send + Sync + 'static,
        In: Serialize,
    {
        let input: ChildInput = Arc::new(move |ctx| {
            let input = input(ctx)?;
            serde_json::to_value(input).map_err(|e| StepError::terminal(format!("child saga input is not JSON: {e}")))
        });
        self.push_action(name, Action::Child { definition: Arc::from(definition), input })
    }

    /// The policies of step `step`'s attempts, instead of the engine's
    /// [step policies](super::SagaEngineBuilder::step_policies): a breaker
    /// or rate limit for the one dependency that step calls. Its
    /// compensation keeps the engine's compensation policies (an undo must
    /// not be refused by the breaker that its step opened).
    ///
    /// # Examples
    /// ```
    /// use weir::durable::saga::{SagaDefinition, StepError};
    /// use weir::policy::{breaker::Breaker, Stack};
    ///
    /// let provider = Breaker::builder().name("payments").build().unwrap();
    /// let order = SagaDefinition::builder("order")
    ///     .step("charge", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
    ///     .step_policies("charge", Stack::builder().breaker(provider).build().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(order.name(), "order");
    /// ```
    pub fn step_policies(mut self, step: &str, policies: Stack) -> Self {
        self.policies.push((step.to_owned(), policies));
        self
    }

    /// The definition's version (default 1). Register each version of a
    /// definition with the engine: a saga finishes on the version it
    /// started on (stored with it as its [`key`](SagaDefinition::key)),
    /// new sagas start on the highest version registered, and a saga whose
    /// version no worker registered is kept and reported, never run by
    /// another version's code.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::saga::{SagaDefinition, StepError};
    ///
    /// let v2 = SagaDefinition::builder("order")
    ///     .version(2)
    ///     .step("charge", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
    ///     .build()
    ///     .unwrap();
    /// assert_eq!((v2.version(), v2.key()), (2, "order@v2".to_owned()));
    /// ```
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Compensates step `step` also when it fails because its last attempt
    /// timed out ([`step_timeout`](super::SagaEngineBuilder::step_timeout)):
    /// the call may have taken effect without answering (a payment sent,
    /// its reply lost), so its compensation runs with the done steps'. Its
    /// compensation must then accept a step that did not happen (look it
    /// up by the step's idempotency key). Off by default: a step that
    /// failed is taken not to have happened.
    ///
    /// # Examples
    /// ```
    /// use weir::durable::saga::{SagaDefinition, StepError};
    ///
    /// let order = SagaDefinition::builder("order")
    ///     .step("charge", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) })
    ///     .compensate_if_timed_out("charge")
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(order.name(), "order");
    /// ```
    pub fn compensate_if_timed_out(mut self, step: &str) -> Self {
        self.timed_out.push(step.to_owned());
        self
    }

    /// Checks the definition.
    ///
    /// # Errors
    /// [`ConfigError`] for no steps, an empty or repeated step name, or
    /// policies (or `compensate_if_timed_out`) for a step the definition
    /// does not have.
    pub fn build(mut self) -> Result<SagaDefinition, ConfigError> {
        if self.version == 0 {
            return Err(ConfigError::new("saga version", format!("0 in `{}`", self.name), "versions start at 1"));
        }
        if self.name.contains("@v") {
            return Err(ConfigError::new(
                "saga definition name",
                &*self.name,
                "leave `@v` out of the name: set the version with `version(n)`",
            ));
        }
        if self.steps.is_empty() {
            return Err(ConfigError::new("saga steps", format!("none in `{}`", self.name), "add at least one step"));
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.name.is_empty() || self.steps[..i].iter().any(|s| s.name == step.name) {
                return Err(ConfigError::new(
                    "saga step name",
                    format!("{:?} in `{}`", step.name, self.name),
                    "give every step a distinct, non-empty name (it keys the step's record and idempotency key)",
                ));
            }
        }
        for (name, policies) in self.policies {
            let Some(step) = self.steps.iter_mut().find(|s| *s.name == *name) else {
                return Err(ConfigError::new(
                    "saga step_policies",
                    format!("{name:?} in `{}`", self.name),
                    "name a step of the definition",
                ));
            };
            if !matches!(step.action, Action::Call { .. }) {
                return Err(ConfigError::new(
                    "saga step_policies",
                    format!("{name:?} in `{}`", self.name),
                    "name a step that calls something: a step that sleeps, waits or runs a child saga has no attempts to shape",
                ));
            }
            step.policies = Some(policies);
        }
        for name in self.timed_out {
            let Some(step) = self.steps.iter_mut().find(|s| *s.name == *name) else {
                return Err(ConfigError::new(
                    "saga compensate_if_timed_out",
                    format!("{name:?} in `{}`", self.name),
                    "name a step of the definition",
                ));
            };
            step.compensate_timed_out = true;
        }
        Ok(SagaDefinition { name: self.name, version: self.version, steps: Arc::new(self.steps) })
    }
}
