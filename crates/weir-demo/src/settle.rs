//! The end of a run: no saga it could finish is left behind.

use std::collections::{HashMap, HashSet};

use weir::durable::saga::SagaEngine;
use weir::durable::store::{SagaStatus, Store};
use weir::error::BoxError;

use crate::progress::Progress;
use crate::run::LEASE;
use crate::signals::Signals;

/// After the input: the run does not end while a saga it could finish is
/// stuck. It finishes the sagas whose worker died (their lease expired:
/// the engine takes them over) and waits for those it drives; it stops
/// waiting for a saga held by another worker once that worker is seen
/// renewing its lease (it is alive and finishes it). A signal ends it.
pub async fn settle(
    store: &Store,
    engine: &SagaEngine,
    signals: &Signals,
    progress: &Progress,
) -> Result<(), BoxError> {
    let mut first_lease: HashMap<String, Option<i64>> = HashMap::new();
    // Sagas this engine cannot finish (no definition, the store failing
    // on them): reported by `resume`, not waited for.
    let mut unfinishable = HashSet::new();
    let mut said = false;
    let mut failures = 0;
    while signals.seen() == 0 {
        // A lost connection (the database restarted, an operator cut it)
        // is not the end of the run: look again, a few times.
        let looked = async {
            let resumed = engine.resume().await?;
            let mut open = store.sagas(Some(SagaStatus::Running), usize::MAX >> 1).await?;
            open.extend(store.sagas(Some(SagaStatus::Compensating), usize::MAX >> 1).await?);
            Ok::<_, BoxError>((resumed, open))
        };
        let (resumed, open) = match looked.await {
            Ok(looked) => looked,
            Err(error) if failures < 5 => {
                failures += 1;
                tracing::warn!(error = %error, "settling: looking at the sagas failed; trying again");
                tokio::time::sleep(LEASE / 10).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        unfinishable.extend(resumed.unknown_definitions.into_iter().map(|(id, _)| id));
        unfinishable.extend(resumed.errors.iter().map(|e| e.saga_id().to_owned()));
        let mut waiting = 0;
        for saga in open {
            if unfinishable.contains(&saga.id) {
                continue;
            }
            if saga.lease_owner.as_deref() == Some(engine.worker_id()) {
                waiting += 1;
                continue;
            }
            let first = *first_lease.entry(saga.id.clone()).or_insert(saga.lease_until);
            let renewed = matches!((first, saga.lease_until), (Some(a), Some(b)) if b > a);
            if !renewed {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return Ok(());
        }
        if !said {
            progress.note(&format!("waiting for {waiting} saga(s) left by other workers or still in flight"));
            said = true;
        }
        tokio::time::sleep(LEASE / 5).await;
    }
    Ok(())
}
