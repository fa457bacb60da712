//! Fault injection into a pipeline stage: the stage's function wrapped,
//! so the pipeline itself knows nothing of the testing kit.

use std::future::Future;
use std::sync::Arc;

use super::FaultInjector;
use crate::error::BoxError;
use crate::pipeline::{Stage, StageFn};

/// A stage function whose every call goes through a [`FaultInjector`]
/// first; see [`Stage::inject_faults`].
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    faults: Arc<FaultInjector>,
}

impl<S> crate::pipeline::sealed::Sealed for Faulty<S> {}

impl<T: Send + 'static, S: StageFn<T>> StageFn<T> for Faulty<S> {
    type Output = S::Output;

    fn call(&self, item: T) -> impl Future<Output = Result<Option<S::Output>, BoxError>> + Send {
        self.faults.call(|| self.inner.call(item))
    }
}

impl<T, S> Stage<T, S> {
    /// Sends every attempt through `faults` first (the testing kit):
    /// an injected error or panic fails the attempt as the function's own
    /// would (caught, retried, dead-lettered by the stage's policies), a
    /// delay slows it, a hang holds it until the stage's timeout or
    /// cancellation. For fault campaigns on a real pipeline.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use weir::pipeline::{OnError, Pipeline, Stage};
    /// use weir::testing::{Fault, FaultInjector};
    ///
    /// # #[tokio::main]
    /// # async fn main() {
    /// let faults = Arc::new(FaultInjector::builder().nth(3, Fault::Error).build().unwrap());
    /// let stage = Stage::map("double", |n: u32| async move { n * 2 }).inject_faults(faults.clone()).on_error(OnError::Skip);
    /// let (out, report) = Pipeline::from_iter(1..=5u32).stage(stage).collect().await.unwrap();
    /// assert_eq!(out, [2, 4, 8, 10]);
    /// assert_eq!((report.stage("double").unwrap().skipped, faults.counts().errors), (1, 1));
    /// # }
    /// ```
    pub fn inject_faults(self, faults: Arc<FaultInjector>) -> Stage<T, Faulty<S>> {
        self.map_fn(|inner| Faulty { inner, faults })
    }
}
