//! [`RetryLayer`]: a [`RetryPolicy`] around each call of a service.

use crate::error::BoxError;
use crate::policy::retry::{RetryPolicy, is_transient};

policy_layer! {
    /// Retries a service's failed calls by a [`RetryPolicy`]: errors that are
    /// [transient](is_transient), within the policy's attempts, time and
    /// budget; the last attempt's error when it gives up (as the
    /// [`Policy`](crate::policy::Policy) impl does).
    ///
    /// Each attempt sends a clone of the request (see the
    /// [module docs](super) for why the request is `Clone`). The first attempt
    /// uses the service that `poll_ready` made ready; each retry calls a clone
    /// of it, made ready first.
    pub struct RetryLayer;
    /// A service whose failed calls are retried; see [`RetryLayer`].
    pub struct RetryService;
    policy: RetryPolicy, "A layer retrying by `policy` (clones share its budget)."
}

repeating_service!(RetryService, policy, |policy, copies| {
    let attempt = move |_| copies.call();
    let retried = policy.drive(None, attempt, |error: &BoxError| is_transient(&**error), |_, _, _| {});
    retried.await.map_err(|e| e.into_attempted())
});
