//! [`HedgeLayer`]: a [`Hedge`] around each call of a service.

use crate::policy::hedge::Hedge;
use crate::policy::impls::one_error;

policy_layer! {
    /// Hedges a service's calls: when the first is slow, sends a copy of the
    /// request again (by the [`Hedge`]'s delay and budget); the first success
    /// wins and the other calls are dropped. When every copy fails: the only
    /// error, or all of them in an [`Errors`](crate::error::Errors).
    ///
    /// Each copy sends a clone of the request (see the [module docs](super)).
    /// The first uses the service that `poll_ready` made ready; each other
    /// copy calls a clone of it, made ready first.
    pub struct HedgeLayer;
    /// A service whose slow calls are hedged; see [`HedgeLayer`].
    pub struct HedgeService;
    hedge: Hedge, "A layer sharing `hedge` (its latencies and budget)."
}

repeating_service!(HedgeService, hedge, |hedge, copies| hedge.call(move |_| copies.call()).await.map_err(one_error));
