//! How full each rate limiter is, as gauges (feature `metrics`):
//! `weir_rate_limit_in_use{limiter}`, the slots of its burst taken now
//! (fractional: GCRA refills continuously), and
//! `weir_rate_limit_waiting{limiter}`, the calls that hold a reserved slot
//! and wait for it.
//!
//! Both change with the clock alone (a spent burst refills while nobody
//! calls), so they are not set when a call passes but sampled: every
//! limiter's budget is listed here when it is made, and one task per
//! process (started by the first limiter made inside a tokio runtime, and
//! again by the next if that runtime ended) sets the gauges of every live
//! budget each second; a dropped budget's gauges go to 0 and it leaves the
//! list. The calls themselves pay nothing for it.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::gcra::Gcra;
use crate::observe::Gauge;

/// How often the gauges are set.
const EVERY: Duration = Duration::from_secs(1);

struct Sampled {
    budget: Weak<Gcra>,
    in_use: Gauge,
    waiting: Gauge,
}

#[derive(Default)]
struct Sampler {
    budgets: Vec<Sampled>,
    task: Option<JoinHandle<()>>,
}

static SAMPLER: Mutex<Sampler> = Mutex::new(Sampler { budgets: Vec::new(), task: None });

/// Lists `budget` (named `limiter`) for sampling; its gauges are taken
/// now, from the recorder current here.
pub(super) fn watch(limiter: &str, budget: &Arc<Gcra>) {
    let labels = || vec![("limiter", limiter.to_owned())];
    let sampled = Sampled {
        budget: Arc::downgrade(budget),
        in_use: crate::observe::gauge("weir_rate_limit_in_use", labels),
        waiting: crate::observe::gauge("weir_rate_limit_waiting", labels),
    };
    let mut sampler = SAMPLER.lock().unwrap_or_else(|p| p.into_inner());
    sampler.budgets.push(sampled);
    if sampler.task.as_ref().is_none_or(JoinHandle::is_finished)
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        sampler.task = Some(runtime.spawn(sample_every_second()));
    }
}

/// Sets every listed budget's gauges each second; ends when none is left.
async fn sample_every_second() {
    loop {
        tokio::time::sleep(EVERY).await;
        let mut sampler = SAMPLER.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sampler.budgets.retain(|sampled| match sampled.budget.upgrade() {
            Some(budget) => {
                let (in_use, waiting) = budget.occupancy(now);
                sampled.in_use.set(in_use);
                sampled.waiting.set(waiting);
                true
            }
            None => {
                sampled.in_use.set(0.0);
                sampled.waiting.set(0.0);
                false
            }
        });
        if sampler.budgets.is_empty() {
            sampler.task = None;
            return;
        }
    }
}
