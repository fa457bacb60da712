//! The testing kit itself (feature `test-util`). Bonus task 3's campaign,
//! which uses it on every pipeline shape, is in `campaign.rs`.
#![cfg(feature = "test-util")]

use std::time::Duration;

use weir::error::BoxError;
use weir::group::Group;
use weir::testing::{Fault, FaultInjector, InjectedFault, LeakCheck, drain_within};

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let pattern = |seed| async move {
        let faults = FaultInjector::builder().seed(seed).probability(0.3, Fault::Error).build().unwrap();
        let mut out = Vec::new();
        for _ in 0..50 {
            out.push(faults.call(|| async { Ok::<_, InjectedFault>(()) }).await.is_err());
        }
        out
    };
    assert_eq!(pattern(42).await, pattern(42).await);
    assert_ne!(pattern(42).await, pattern(43).await);
}

#[tokio::test]
async fn nth_and_every_strike_exactly_where_told() {
    let nth = FaultInjector::builder().nth(3, Fault::Error).build().unwrap();
    let mut failed = Vec::new();
    for i in 1..=5 {
        if nth.call(|| async { Ok::<_, InjectedFault>(()) }).await.is_err() {
            failed.push(i);
        }
    }
    assert_eq!(failed, [3]);
    let err = FaultInjector::builder()
        .every(1, Fault::Error)
        .build()
        .unwrap()
        .call(|| async { Ok::<(), InjectedFault>(()) })
        .await
        .unwrap_err();
    assert_eq!(err.call(), 1);
    assert!(FaultInjector::builder().build().is_err());
    assert!(FaultInjector::builder().probability(1.5, Fault::Error).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn delays_and_hangs_behave_as_named() {
    let slow = FaultInjector::builder().every(1, Fault::Delay(Duration::from_secs(3))).build().unwrap();
    let started = tokio::time::Instant::now();
    slow.call(|| async { Ok::<_, InjectedFault>(()) }).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    let hang = FaultInjector::builder().every(1, Fault::Hang).build().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(60), hang.call(|| async { Ok::<_, InjectedFault>(()) }))
            .await
            .is_err()
    );
    assert_eq!(hang.counts().hangs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leak_check_names_a_leak_and_passes_a_clean_run() {
    let check = LeakCheck::start();
    let stray = tokio::spawn(std::future::pending::<()>());
    let leak = check.finish().await.unwrap_err();
    assert_eq!(leak.leaked, 1);
    assert!(leak.to_string().contains("never joined"), "{leak}");
    stray.abort();
    let check = LeakCheck::start();
    let group: Group<BoxError> = Group::new();
    group.spawn(async { Ok(()) }).await;
    group.wait().await.unwrap();
    check.finish().await.unwrap();
}

/// A permit kept past its call is named; given back, the check passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leak_check_names_a_bulkhead_slot_still_held() {
    let bulkhead = weir::policy::bulkhead::Bulkhead::builder().name("tenant-a").limit(2).build().unwrap();
    let check = LeakCheck::start().watch(&bulkhead);
    let kept = bulkhead.acquire().await.unwrap();
    let leak = check.clone().finish().await.unwrap_err();
    assert_eq!((leak.leaked, leak.held.clone()), (0, vec![("tenant-a".to_owned(), 1)]));
    assert_eq!(leak.to_string(), "bulkhead `tenant-a` still holds 1 slot(s): a permit was kept past its call");
    drop(kept);
    check.finish().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_check_reports_a_stage_that_ignores_cancellation() {
    // A task that blocks its thread ignores cancellation until it returns.
    let group: Group<BoxError> = Group::builder().on_cancel(weir::group::OnCancel::Cooperate).build().unwrap();
    group
        .spawn(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(10)).await; // the task has started
    let token = group.token();
    let slow = drain_within(Duration::from_millis(50), || token.cancel(), group.wait()).await.unwrap_err();
    assert_eq!(slow.bound, Duration::from_millis(50));
    assert!(slow.to_string().contains("ignores cancellation"));
}
