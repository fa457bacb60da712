//! [`Call`]: the future of [`Breaker::call`](super::Breaker::call).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use super::{CircuitOpen, Inner, Permit};

pin_project_lite::pin_project! {
    /// The future of [`Breaker::call`]: admits the call on first poll,
    /// runs it, reports its outcome.
    #[must_use = "futures do nothing unless polled"]
    pub struct Call<'a, F, Fut, P> {
        pub(super) inner: &'a Inner,
        #[pin]
        pub(super) state: CallState<F, Fut>,
        pub(super) is_failure: P,
        pub(super) permit: Option<(u32, bool)>,
    }

    impl<F, Fut, P> PinnedDrop for Call<'_, F, Fut, P> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped while the call ran: cancelled, so not counted.
            if let Some((generation, probe)) = this.permit.take() {
                drop(Permit { inner: this.inner, generation, probe, done: false });
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = CallStateProj]
    pub(super) enum CallState<F, Fut> {
        /// Not yet admitted.
        Start { call: Option<F> },
        /// Admitted and running.
        Running { #[pin] future: Fut },
    }
}

impl<T, E, F, Fut, P> Future for Call<'_, F, Fut, P>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<CircuitOpen>,
    P: Fn(&E) -> bool,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        let mut this = self.project();
        if let CallStateProj::Start { call } = this.state.as_mut().project() {
            let call = call.take().expect("polled after admission");
            *this.permit = Some(this.inner.try_acquire()?);
            this.state.set(CallState::Running { future: call() });
        }
        let CallStateProj::Running { future } = this.state.project() else { unreachable!("admitted above") };
        let result = ready!(future.poll(cx));
        let (generation, probe) = this.permit.take().expect("admitted calls hold a permit");
        match &result {
            Err(error) if (this.is_failure)(error) => this.inner.on_failure(generation, probe),
            _ => this.inner.on_success(generation, probe),
        }
        Poll::Ready(result)
    }
}
