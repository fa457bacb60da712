//! Behaviour of `weir::policy::bulkhead` (seed task 14).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weir::error::{BoxError, Panicked};
use weir::policy::bulkhead::{Bulkhead, BulkheadFull, KeyedBulkhead, run_per_tenant};

#[tokio::test]
async fn a_bulkhead_bounds_calls_in_flight() {
    let bulkhead = Bulkhead::builder().limit(3).build().unwrap();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (bulkhead, running, peak) = (bulkhead.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                bulkhead
                    .call(|| async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<(), BoxError>(())
                    })
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    let m = bulkhead.metrics();
    assert_eq!((m.in_flight, m.admitted, m.rejected), (0, 20, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_rejects_after_its_maximum_wait() {
    let bulkhead = Bulkhead::builder().name("db").limit(1).max_wait(Duration::from_millis(250)).build().unwrap();
    let held = bulkhead.acquire().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = bulkhead.call(|| async { Ok::<(), BoxError>(()) }).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    let full = err.downcast_ref::<BulkheadFull>().unwrap();
    assert_eq!((full.bulkhead(), full.limit()), ("db", 1));
    assert_eq!(full.to_string(), "bulkhead `db` is full: 1 call(s) in flight, waited 250ms");
    drop(held);
    bulkhead.call(|| async { Ok::<(), BoxError>(()) }).await.unwrap();
    assert_eq!(bulkhead.metrics().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_zero_wait_rejects_at_once() {
    let bulkhead = Bulkhead::builder().limit(1).max_wait(Duration::ZERO).build().unwrap();
    let _held = bulkhead.acquire().await.unwrap();
    let started = tokio::time::Instant::now();
    assert!(bulkhead.acquire().await.is_err());
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn a_saturated_tenant_never_delays_another() {
    let per_tenant = KeyedBulkhead::new(Bulkhead::builder().limit(8)).unwrap();
    let (release, gate) = tokio::sync::watch::channel(false);
    let mut stuck = Vec::new();
    for _ in 0..20 {
        let (per_tenant, mut gate) = (per_tenant.clone(), gate.clone());
        stuck.push(tokio::spawn(async move {
            per_tenant
                .call(&"tenant-a".to_string(), || async move {
                    let _ = gate.wait_for(|open| *open).await;
                    Ok::<(), BoxError>(())
                })
                .await
        }));
    }
    tokio::task::yield_now().await;
    assert_eq!(per_tenant.metrics(&"tenant-a".to_string()).unwrap().in_flight, 8, "A is saturated");
    let b = tokio::time::timeout(
        Duration::from_secs(1),
        per_tenant.call(&"tenant-b".to_string(), || async { Ok::<_, BoxError>("b done") }),
    )
    .await
    .expect("B is not delayed by A")
    .unwrap();
    assert_eq!(b, "b done");
    release.send(true).unwrap();
    for call in stuck {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_failures_panics_and_hangs_stay_with_their_tenant() {
    let (release, gate) = tokio::sync::watch::channel(false);
    let (b_done_tx, b_done_rx) = tokio::sync::oneshot::channel::<()>();
    let b_done = Arc::new(std::sync::Mutex::new(Some(b_done_tx)));
    let b_left = Arc::new(AtomicUsize::new(10));
    let mut items: Vec<(String, u32)> = Vec::new();
    for n in 0..10 {
        items.push(("a-stuck".into(), n));
        items.push(("b-fine".into(), n));
        items.push(("c-fails".into(), n));
        items.push(("d-panics".into(), n));
    }
    let run = tokio::spawn(run_per_tenant(items, 8, move |tenant: String, n| {
        let (mut gate, b_done, b_left) = (gate.clone(), b_done.clone(), b_left.clone());
        async move {
            match tenant.as_str() {
                "a-stuck" => {
                    let _ = gate.wait_for(|open| *open).await;
                }
                "b-fine" if b_left.fetch_sub(1, Ordering::SeqCst) == 1 => {
                    let _ = b_done.lock().unwrap().take().map(|tx| tx.send(()));
                }
                "c-fails" if n == 3 => return Err::<(), BoxError>("c failed".into()),
                "d-panics" if n == 5 => panic!("d panicked"),
                _ => {}
            }
            Ok(())
        }
    }));
    tokio::time::timeout(Duration::from_secs(5), b_done_rx).await.expect("B finished while A was stuck").unwrap();
    assert!(!run.is_finished(), "A is still stuck");
    release.send(true).unwrap();
    let outcomes = run.await.unwrap().unwrap();
    assert!(outcomes["a-stuck"].is_ok());
    assert!(outcomes["b-fine"].is_ok());
    assert_eq!(outcomes["b-fine"].completed, 10);
    assert_eq!(outcomes["c-fails"].error.as_ref().unwrap().to_string(), "c failed");
    assert!(outcomes["c-fails"].completed < 10);
    let panic = outcomes["d-panics"].error.as_ref().unwrap();
    assert!(panic.downcast_ref::<Panicked>().is_some(), "{panic}");
}

#[tokio::test]
async fn bad_limits_are_configuration_errors() {
    assert_eq!(Bulkhead::builder().limit(0).build().unwrap_err().setting(), "bulkhead limit");
    assert!(KeyedBulkhead::<String>::new(Bulkhead::builder().limit(0)).is_err());
    let err = run_per_tenant([("t", 1)], 0, |_, _: i32| async { Ok::<(), BoxError>(()) }).await.unwrap_err();
    assert_eq!(err.setting(), "group limit");
}

/// In a pipeline stage: each tenant gets its own slots. A stage's workers
/// are shared, so a saturated tenant's items must not wait for a slot
/// while holding a worker: with a zero maximum wait they fail at once
/// (here collected; in production dead-lettered) and tenant B's items all
/// pass while tenant A is stuck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_with_per_tenant_bulkheads_lets_other_tenants_through() {
    use weir::pipeline::{OnError, Pipeline, Stage};
    let (release, gate) = tokio::sync::watch::channel(false);
    let items: Vec<(char, u32)> = (0..40).map(|n| (if n % 2 == 0 { 'a' } else { 'b' }, n)).collect();
    let per_tenant = KeyedBulkhead::new(Bulkhead::builder().limit(4).max_wait(Duration::ZERO)).unwrap();
    let pipeline = Pipeline::builder().capacity(4).from_iter(items).stage(
        Stage::try_map("call", move |(tenant, n): (char, u32)| {
            let mut gate = gate.clone();
            async move {
                if tenant == 'a' {
                    let _ = gate.wait_for(|open| *open).await;
                }
                Ok::<_, BoxError>((tenant, n))
            }
        })
        .workers(8)
        .tenant(|(tenant, _)| tenant.to_string())
        .bulkhead_per_tenant(per_tenant.clone())
        .on_error(OnError::Collect),
    );
    let (b_done_tx, b_done_rx) = tokio::sync::oneshot::channel();
    let mut b_done_tx = Some(b_done_tx);
    let mut b_seen = 0;
    let run = tokio::spawn(pipeline.for_each(move |(tenant, _)| {
        if tenant == 'b' {
            b_seen += 1;
            if b_seen == 20 {
                let _ = b_done_tx.take().map(|tx| tx.send(()));
            }
        }
        async { Ok::<(), BoxError>(()) }
    }));
    tokio::time::timeout(Duration::from_secs(5), b_done_rx).await.expect("all of B passed while A was stuck").unwrap();
    assert_eq!(per_tenant.metrics(&"a".to_string()).unwrap().in_flight, 4, "A holds only its own 4 slots");
    release.send(true).unwrap();
    let err = run.await.unwrap().unwrap_err();
    let shed = err.collected().unwrap();
    assert!(shed.errors().all(|e| e.cause().is::<BulkheadFull>() && e.tenant() == Some("a")), "{err}");
    let report = err.report();
    assert_eq!(report.sink_received + shed.len() as u64, 40, "every item is accounted for");
    assert!(report.is_balanced());
}
