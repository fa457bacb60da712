//! Bonus task 3's campaign: every pipeline shape weir offers × 1000 runs
//! with 1 % injected faults of every kind (error, panic, delay, hang).
//!
//! For each shape and run: the run ends within a bound (no hang), every
//! injected fault is accounted for (retried to success, skipped,
//! dead-lettered, collected, or named by the run's error), nothing is lost
//! or done twice, and no task outlives the run (a [`LeakCheck`] over the
//! whole campaign). Each test prints its counts.
#![cfg(feature = "test-util")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use weir::durable::dlq::{DeadLetterQueue, MemoryDlq};
use weir::durable::saga::{SagaDefinition, SagaEngine, StepContext, StepError};
use weir::durable::store::{SagaStatus, StepStatus, Store};
use weir::error::Panicked;
use weir::error::{BoxError, TimedOut, is};
use weir::pipeline::batch::Batcher;
use weir::pipeline::{OnError, Pipeline, PipelineError, Stage};
use weir::policy::breaker::{Breaker, CircuitOpen};
use weir::policy::bulkhead::{Bulkhead, KeyedBulkhead};
use weir::policy::hedge::{Hedge, HedgeDelay};
use weir::policy::retry::{Jitter, RetryPolicy};
use weir::testing::{Fault, FaultCounts, FaultInjector, InjectedFault, LeakCheck, quiet_injected_panics};

const RUNS: u64 = 1000;
const ITEMS: u32 = 100;
/// The batcher's runs are longer: with batches of 4, 100 flushes a run.
const BATCHER_ITEMS: u32 = 400;
/// Bounds every call, so an injected hang ends as a timeout.
const CALL_TIMEOUT: Duration = Duration::from_millis(20);
/// Bounds every run: a run still going after this is taken as hung.
const RUN_BOUND: Duration = Duration::from_secs(10);

/// The run's fault kind (they take turns) and its seeded injector.
fn injector(run: u64) -> Arc<FaultInjector> {
    let kind = [Fault::Error, Fault::Panic, Fault::Delay(Duration::from_millis(1)), Fault::Hang][(run % 4) as usize];
    Arc::new(FaultInjector::builder().seed(run).probability(0.01, kind).build().unwrap())
}

/// Faults that make a call fail (a delay only slows it down).
fn failing(counts: FaultCounts) -> u64 {
    counts.errors + counts.panics + counts.hangs
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .initial_delay(Duration::from_micros(100))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

/// A stage whose every call goes through `faults` (the stage option).
fn faulty_stage(faults: &Arc<FaultInjector>) -> Stage<u32, impl weir::pipeline::StageFn<u32, Output = u32> + use<>> {
    Stage::map("faulty", |n: u32| async move { n }).inject_faults(faults.clone()).timeout(CALL_TIMEOUT)
}

async fn bounded<T>(run: u64, shape: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(RUN_BOUND, work).await.unwrap_or_else(|_| panic!("{shape} run {run} hung"))
}

/// Whether an error is one of the injected faults (or the timeout that
/// ended an injected hang).
fn is_injected(err: &(dyn std::error::Error + 'static)) -> bool {
    is::<InjectedFault>(err) || is::<Panicked>(err) || is::<TimedOut>(err)
}

/// Whether an error kept as text (a dead letter's reason, a compensation
/// error read back from the store) names an injected fault.
fn names_a_fault(text: &str) -> bool {
    ["injected", "panicked", "timed out"].iter().any(|k| text.contains(k))
}

#[derive(Default)]
struct Tally {
    runs: u64,
    faults: u64,
    failed_runs: u64,
}

impl Tally {
    fn add(&mut self, counts: FaultCounts) {
        self.runs += 1;
        self.faults += counts.faults();
    }

    fn print(&self, shape: &str, extra: &str) {
        println!(
            "campaign {shape}: {} runs, {} faults injected, {} runs with failed items (each failure named by its fault){extra}; none hung, no task left",
            self.runs, self.faults, self.failed_runs
        );
        assert!(self.faults > 300, "{shape}: too few faults for a campaign ({})", self.faults);
    }
}

/// Plain (fail fast), skip, fan-out with collect, retry, and dead letter:
/// 1000 runs of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_stage_policies() {
    quiet_injected_panics();
    let check = LeakCheck::start();
    let mut tally = Tally::default();
    for run in 0..5 * RUNS {
        let faults = injector(run);
        let stage = faulty_stage(&faults);
        let shape = run % 5;
        let stage = match shape {
            0 => stage,                                                             // plain: fail fast
            1 => stage.on_error(OnError::Skip),                                     // skip
            2 => stage.on_error(OnError::Collect).workers(3),                       // fan-out, collect
            3 => stage.retry(fast_retry(4)),                                        // retry
            _ => stage.dead_letter(Arc::new(weir::durable::dlq::MemoryDlq::new())), // dead letter
        };
        let outcome = bounded(run, "stage", Pipeline::from_iter(0..ITEMS).stage(stage).collect()).await;
        let injected = faults.counts();
        tally.add(injected);
        match outcome {
            Ok((out, report)) => {
                let stage = report.stage("faulty").unwrap();
                assert!(report.is_balanced(), "run {run}: {report}");
                let accounted = stage.skipped + stage.dead_lettered + stage.retries;
                assert!(failing(injected) <= accounted, "run {run}: {injected:?}, {accounted} accounted: {report}");
                assert_eq!(out.len() as u64 + stage.skipped + stage.dead_lettered, u64::from(ITEMS));
            }
            Err(err) => {
                tally.failed_runs += 1;
                assert!(failing(injected) > 0, "run {run} failed without a fault: {err}");
                if let Some(all) = err.collected() {
                    assert!(all.errors().all(|e| is_injected(e)), "run {run}: {err}");
                    assert!(all.len() as u64 >= failing(injected), "run {run}: a fault is missing from {err}");
                } else {
                    assert!(is_injected(&err), "run {run}: the error names the fault: {err}");
                }
            }
        }
    }
    check.finish().await.unwrap();
    tally.print("plain/skip/fan-out+collect/retry/dead-letter (1000 each)", "");
}

/// A breaker in front of a fan-out stage that collects failures: every
/// failed item is an injected fault or a rejection the breaker counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_breaker() {
    quiet_injected_panics();
    let check = LeakCheck::start();
    let mut tally = Tally::default();
    let (mut rejected, mut openings) = (0, 0);
    for run in 0..RUNS {
        let faults = injector(run);
        let breaker = Breaker::builder()
            .name("provider")
            .consecutive_failures(1)
            .open_for(Duration::from_millis(2))
            .build()
            .unwrap();
        let stage = faulty_stage(&faults).breaker(breaker.clone()).workers(4).on_error(OnError::Collect);
        let outcome = bounded(run, "breaker", Pipeline::from_iter(0..ITEMS).stage(stage).collect()).await;
        let injected = faults.counts();
        tally.add(injected);
        let metrics = breaker.metrics();
        let (done, errors): (usize, Vec<&weir::error::StageError>) = match &outcome {
            Ok((out, _)) => (out.len(), Vec::new()),
            Err(err) => {
                tally.failed_runs += 1;
                (0, err.collected().unwrap_or_else(|| panic!("run {run}: {err}")).errors().collect())
            }
        };
        let count = |p: fn(&(dyn std::error::Error + 'static)) -> bool| errors.iter().filter(|e| p(**e)).count() as u64;
        assert_eq!(count(is::<InjectedFault>), injected.errors, "run {run}");
        assert_eq!(count(is::<Panicked>), injected.panics, "run {run}");
        assert!(count(is::<TimedOut>) >= injected.hangs, "run {run}: a hang is missing");
        assert_eq!(count(is::<CircuitOpen>), metrics.rejections, "run {run}: rejections counted once");
        assert_eq!(injected.calls + metrics.rejections, u64::from(ITEMS), "run {run}: every item called or rejected");
        let report = match &outcome {
            Ok((_, report)) => report,
            Err(err) => err.report(),
        };
        assert!(report.is_balanced(), "run {run}: {report}");
        if outcome.is_ok() {
            assert_eq!(done, ITEMS as usize);
        } else {
            assert_eq!(report.stage("faulty").unwrap().emitted + errors.len() as u64, u64::from(ITEMS));
        }
        rejected += metrics.rejections;
        openings += metrics.openings;
    }
    check.finish().await.unwrap();
    assert!(openings > 100, "the breaker opened ({openings})");
    tally.print("breaker", &format!(", breaker opened {openings} times and rejected {rejected} calls"));
}

/// Per-tenant bulkheads (2 slots, 2 ms wait) with retries and a dead-letter
/// queue: every item is emitted or dead-lettered with a fault or a full
/// bulkhead as its reason; no slot stays taken after the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_tenant_bulkheads() {
    quiet_injected_panics();
    let check = LeakCheck::start();
    let mut tally = Tally::default();
    let mut full = 0;
    for run in 0..RUNS {
        let faults = injector(run);
        let bulkheads = KeyedBulkhead::new(Bulkhead::builder().limit(2).max_wait(Duration::from_millis(2))).unwrap();
        let dlq = Arc::new(MemoryDlq::new());
        let stage = faulty_stage(&faults)
            .tenant(|n: &u32| format!("tenant-{}", n % 4))
            .bulkhead_per_tenant(bulkheads.clone())
            .workers(8)
            .retry(fast_retry(3))
            .dead_letter(dlq.clone());
        let (out, report) = bounded(run, "bulkhead", Pipeline::from_iter(0..ITEMS).stage(stage).collect())
            .await
            .unwrap_or_else(|err: PipelineError| panic!("run {run}: dead letters keep the run going: {err}"));
        let injected = faults.counts();
        tally.add(injected);
        let stage = report.stage("faulty").unwrap();
        let parked = dlq.drain().await.unwrap();
        assert_eq!(parked.len() as u64, stage.dead_lettered, "run {run}");
        tally.failed_runs += u64::from(!parked.is_empty());
        let mut seen: Vec<u32> = out.iter().copied().chain(parked.iter().map(|e| e.item)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..ITEMS).collect::<Vec<_>>(), "run {run}: each item emitted or parked, once");
        assert!(failing(injected) <= stage.retries + stage.dead_lettered, "run {run}: {injected:?} {report}");
        for envelope in &parked {
            let reason = &envelope.error_chain[0];
            let explained = names_a_fault(reason) || reason.contains("is full");
            assert!(explained, "run {run}: unexplained dead letter: {reason}");
            full += u64::from(reason.contains("is full"));
        }
        for tenant in 0..4 {
            let metrics = bulkheads.metrics(&format!("tenant-{tenant}")).unwrap();
            assert_eq!(metrics.in_flight, 0, "run {run}: tenant-{tenant} still holds a slot");
        }
    }
    check.finish().await.unwrap();
    tally.print("tenant bulkheads", &format!(", {full} items dead-lettered as bulkhead-full"));
}

/// Hedged calls (a second call after 2 ms): a hang or a slow first call is
/// won by the hedge; an item fails only if its calls fail, and the losing
/// calls are dropped (the leak check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_hedge() {
    quiet_injected_panics();
    let check = LeakCheck::start();
    let mut tally = Tally::default();
    let (mut hedges, mut won) = (0, 0);
    for run in 0..RUNS {
        let faults = injector(run);
        let hedge =
            Hedge::builder().delay(HedgeDelay::Fixed(Duration::from_millis(2))).max_attempts(2).build().unwrap();
        let stage = faulty_stage(&faults).hedge(hedge.clone()).on_error(OnError::Collect);
        let outcome = bounded(run, "hedge", Pipeline::from_iter(0..ITEMS).stage(stage).collect()).await;
        let injected = faults.counts();
        tally.add(injected);
        let metrics = hedge.metrics();
        assert!(injected.calls <= 2 * u64::from(ITEMS), "run {run}: at most one hedge per call");
        assert_eq!(injected.calls, u64::from(ITEMS) + metrics.hedges, "run {run}: calls = items + hedges");
        match outcome {
            Ok((out, _)) => assert_eq!(out.len(), ITEMS as usize),
            Err(err) => {
                tally.failed_runs += 1;
                let all = err.collected().unwrap_or_else(|| panic!("run {run}: {err}"));
                assert!(all.errors().all(|e| is_injected(e)), "run {run}: {err}");
                assert!(all.len() as u64 <= failing(injected), "run {run}: an item failed without a fault");
                assert_eq!(err.report().stage("faulty").unwrap().emitted + all.len() as u64, u64::from(ITEMS));
            }
        }
        hedges += metrics.hedges;
        won += metrics.won_by_hedge;
    }
    check.finish().await.unwrap();
    assert!(won > 50, "hedges rescued hung calls ({won})");
    tally.print("hedge", &format!(", {hedges} hedges sent, {won} calls won by a hedge"));
}

/// A batcher flushing batches of 4 (of 400 items) with retries and a
/// dead-letter queue: every item is flushed or parked exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_batcher() {
    quiet_injected_panics();
    let check = LeakCheck::start();
    let mut tally = Tally::default();
    let mut parked_batches = 0;
    for run in 0..RUNS {
        let faults = injector(run);
        let batcher =
            Batcher::builder().max_items(4).max_wait(Duration::from_millis(5)).retry(fast_retry(3)).build().unwrap();
        let dlq = MemoryDlq::new();
        let flushed = Arc::new(Mutex::new(Vec::new()));
        let (flush_faults, sink) = (faults.clone(), flushed.clone());
        let flush = move |batch: Vec<u32>| {
            let (f, sink) = (flush_faults.clone(), sink.clone());
            async move {
                match tokio::time::timeout(CALL_TIMEOUT, f.call(|| async { Ok::<_, BoxError>(()) })).await {
                    Ok(Ok(())) => {
                        sink.lock().unwrap().extend(batch);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(BoxError::from("flush timed out")),
                }
            }
        };
        let input = futures_util::stream::iter(0..BATCHER_ITEMS).then(|n| async move {
            if n % 50 == 0 {
                tokio::task::yield_now().await;
            }
            n
        });
        let report = bounded(run, "batcher", batcher.run(input, flush, Some(&dlq)))
            .await
            .unwrap_or_else(|err| panic!("run {run}: the dead-letter queue keeps the run going: {err}"));
        let injected = faults.counts();
        tally.add(injected);
        let parked = dlq.drain().await.unwrap();
        assert_eq!(parked.len() as u64, report.batches_dead_lettered, "run {run}");
        tally.failed_runs += u64::from(!parked.is_empty());
        let mut all: Vec<u32> = flushed.lock().unwrap().clone();
        all.extend(parked.iter().flat_map(|e| e.item.iter().copied()));
        all.sort_unstable();
        assert_eq!(all, (0..BATCHER_ITEMS).collect::<Vec<_>>(), "run {run}: each item flushed or parked, once");
        assert_eq!(report.items_flushed + report.items_dead_lettered, u64::from(BATCHER_ITEMS), "run {run}");
        assert!(failing(injected) <= report.retries + report.batches_dead_lettered, "run {run}: {injected:?}");
        for envelope in &parked {
            let reason = &envelope.error_chain[0];
            assert!(names_a_fault(reason), "run {run}: unexplained dead letter: {reason}");
        }
        parked_batches += report.batches_dead_lettered;
    }
    check.finish().await.unwrap();
    tally.print("batcher", &format!(", {parked_batches} batches dead-lettered whole"));
}

/// The effects of one campaign run's sagas: how many times each step's
/// effect (key `saga/step`) and each undo (key `saga/step/undo`) happened.
type Effects = Arc<Mutex<HashMap<String, u32>>>;

fn saga_definition(faults: &Arc<FaultInjector>, effects: &Effects) -> SagaDefinition {
    let mut builder = SagaDefinition::builder("campaign");
    for step in ["reserve", "charge", "ship"] {
        let (f, e, fu, eu) = (faults.clone(), effects.clone(), faults.clone(), effects.clone());
        builder = builder.step(
            step,
            move |ctx: StepContext| effect(f.clone(), e.clone(), ctx),
            move |ctx: StepContext| effect(fu.clone(), eu.clone(), ctx),
        );
    }
    builder.build().unwrap()
}

/// Calls through the injector, then records the effect under the step's
/// idempotency key (only once the call succeeded).
async fn effect(faults: Arc<FaultInjector>, effects: Effects, ctx: StepContext) -> Result<(), StepError> {
    faults.call(|| async { Ok::<_, BoxError>(()) }).await?;
    *effects.lock().unwrap().entry(ctx.idempotency_key()).or_default() += 1;
    Ok(())
}

/// Ten sagas per run on the memory store, with a step timeout and retries:
/// every saga ends completed, compensated or failed (none left running);
/// a completed saga has each effect once and no undo; a compensated one
/// has every effect undone once; a failed one names the compensation that
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_sagas() {
    quiet_injected_panics();
    let check = LeakCheck::start();
    let mut tally = Tally::default();
    let mut ends: HashMap<&str, u64> = HashMap::new();
    for run in 0..RUNS {
        let faults = injector(run);
        let effects = Effects::default();
        let store = Store::memory();
        let engine = SagaEngine::builder(store.clone())
            .definition(saga_definition(&faults, &effects))
            .step_timeout(CALL_TIMEOUT)
            .step_retry(fast_retry(3))
            .compensation_retry(fast_retry(3))
            .build()
            .unwrap();
        let sagas = (0..10).map(|i| {
            let engine = engine.clone();
            async move { engine.run_with_id(&format!("order-{i}"), "campaign", &i).await }
        });
        let results = bounded(run, "saga", futures_util::future::join_all(sagas)).await;
        let injected = faults.counts();
        tally.add(injected);
        let effects = effects.lock().unwrap().clone();
        assert!(effects.values().all(|&n| n == 1), "run {run}: an effect happened twice: {effects:?}");
        let mut failed_sagas = 0;
        for (i, result) in results.iter().enumerate() {
            let id = format!("order-{i}");
            let record = store.saga(&id).await.unwrap().unwrap();
            let done = |step: &str| effects.contains_key(&format!("{id}/{step}"));
            let undone = |step: &str| effects.contains_key(&format!("{id}/{step}/undo"));
            match result {
                Ok(_) => {
                    assert_eq!(record.status, SagaStatus::Completed, "run {run} {id}");
                    assert!(["reserve", "charge", "ship"].iter().all(|s| done(s) && !undone(s)), "run {run} {id}");
                    *ends.entry("completed").or_default() += 1;
                }
                Err(err) if err.is_compensated() => {
                    failed_sagas += 1;
                    assert_eq!(record.status, SagaStatus::Compensated, "run {run} {id}");
                    assert!(is_injected(err.cause().unwrap()), "run {run} {id}: {err}");
                    for (step, rec) in ["reserve", "charge", "ship"].iter().zip(&record.steps) {
                        assert_eq!(done(step), undone(step), "run {run} {id}: {step} done but not undone");
                        assert_ne!(rec.status, StepStatus::Done, "run {run} {id}");
                    }
                    *ends.entry("compensated").or_default() += 1;
                }
                Err(err) if err.is_failed() => {
                    failed_sagas += 1;
                    assert_eq!(record.status, SagaStatus::Failed, "run {run} {id}");
                    let compensations = err.compensation_errors().unwrap();
                    // Compensation errors come back from the record, as text.
                    let explained = |e: &BoxError| names_a_fault(&e.to_string());
                    assert!(compensations.errors().all(explained), "run {run} {id}: {err}");
                    *ends.entry("failed").or_default() += 1;
                }
                Err(err) => panic!("run {run} {id}: unexpected end: {err}"),
            }
        }
        if failed_sagas > 0 {
            tally.failed_runs += 1;
            assert!(failing(injected) > 0, "run {run}: a saga failed without a fault");
        }
        for status in [SagaStatus::Running, SagaStatus::Compensating] {
            assert!(store.sagas(Some(status), 10).await.unwrap().is_empty(), "run {run}: a saga left {status}");
        }
    }
    check.finish().await.unwrap();
    tally.print("saga", &format!(", sagas ended {ends:?}"));
}
