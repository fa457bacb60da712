//! A saga's definition: a name and its steps.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::{StepContext, StepError};
use crate::error::ConfigError;
use crate::policy::Stack;

pub(crate) type Forward = Arc<dyn Fn(StepContext) -> BoxFuture<'static, Result<Value, StepError>> + Send + Sync>;
pub(crate) type Compensate = Arc<dyn Fn(StepContext) -> BoxFuture<'static, Result<(), StepError>> + Send + Sync>;

pub(crate) struct StepDef {
    pub(crate) name: Arc<str>,
    pub(crate) forward: Forward,
    pub(crate) compensate: Option<Compensate>,
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

    fn push<F, FFut, O>(mut self, name: &str, forward: F, compensate: Option<Compensate>) -> Self
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
        self.steps.push(StepDef {
            name: Arc::from(name),
            forward,
            compensate,
            policies: None,
            compensate_timed_out: false,
        });
        self
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
