//! The testing kit itself (feature `test-util`), and bonus task 3's
//! campaign: pipelines of every stage policy × 1000 runs with 1 % injected
//! faults of every kind; no run hangs, every fault is accounted for, no
//! task outlives its run.
#![cfg(feature = "test-util")]

use std::sync::Arc;
use std::time::Duration;

use weir::error::{BoxError, is};
use weir::group::Group;
use weir::pipeline::{ItemPanic, OnError, Pipeline, Stage};
use weir::retry::{Jitter, RetryPolicy};
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

/// Bonus 3 campaign: every stage policy × 1000 runs × 1 % faults of each
/// kind. Each run is bounded by a timeout (no hang); each injected fault is
/// retried to success, dead-lettered, collected, or in the run's error;
/// no task outlives its run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_every_policy_1000_runs_with_injected_faults() {
    let check = LeakCheck::start();
    let (mut runs, mut faults_total, mut errors_seen) = (0u64, 0u64, 0u64);
    for run in 0..1000u64 {
        let kind =
            [Fault::Error, Fault::Panic, Fault::Delay(Duration::from_millis(1)), Fault::Hang][(run % 4) as usize];
        let faults = Arc::new(FaultInjector::builder().seed(run).probability(0.01, kind).build().unwrap());
        let shape = run % 5;
        let f = faults.clone();
        let stage = Stage::try_map("faulty", move |n: u32| {
            let f = f.clone();
            async move { f.call(|| async { Ok::<_, BoxError>(n) }).await }
        })
        .timeout(Duration::from_millis(20));
        let stage = match shape {
            0 => stage,                                       // fail fast
            1 => stage.on_error(OnError::Skip),               // skip
            2 => stage.on_error(OnError::Collect).workers(3), // fan-out, collect
            3 => stage.retry(
                RetryPolicy::builder()
                    .max_attempts(4)
                    .initial_delay(Duration::from_micros(100))
                    .jitter(Jitter::None)
                    .build()
                    .unwrap(),
            ), // retry
            _ => stage.dead_letter(Arc::new(weir::dlq::MemoryDlq::new())), // dead letter
        };
        let outcome =
            tokio::time::timeout(Duration::from_secs(10), Pipeline::from_iter(0..100u32).stage(stage).collect())
                .await
                .unwrap_or_else(|_| panic!("run {run} hung"));
        let injected = faults.counts();
        faults_total += injected.faults();
        let failing = injected.errors + injected.panics + injected.hangs; // delays only slow a call down
        match outcome {
            Ok((out, report)) => {
                let stage = report.stage("faulty").unwrap();
                assert!(report.is_balanced(), "run {run}: {report}");
                let accounted = stage.skipped + stage.dead_lettered + stage.retries;
                assert!(failing <= accounted, "run {run}: {failing} failing faults, {accounted} accounted: {report}");
                assert_eq!(out.len() as u64 + stage.skipped + stage.dead_lettered, 100);
            }
            Err(err) => {
                errors_seen += 1;
                assert!(failing > 0, "run {run} failed without a fault: {err}");
                let explained = is::<InjectedFault>(&err) || is::<ItemPanic>(&err) || is::<weir::error::TimedOut>(&err);
                assert!(explained, "run {run}: the error names the fault: {err}");
            }
        }
        runs += 1;
    }
    check.finish().await.unwrap();
    println!(
        "campaign: {runs} runs, {faults_total} faults injected, {errors_seen} runs ended in an error naming its fault, none hung, no task left"
    );
    assert!(faults_total > 500);
}
