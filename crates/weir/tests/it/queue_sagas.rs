//! Sagas started through the work queue (`SagaEngine::enqueue` and
//! `SagaEngine::work`), on SQLite and PostgreSQL: idempotent starts,
//! workers that split the sagas, a dead worker's saga carried on by
//! another, and the queue's per-tenant limit holding across worker
//! processes, one of them SIGKILLed.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weir::durable::queue::WorkQueue;
use weir::durable::saga::{SagaDefinition, SagaEngine, SagaStart, StepContext, StepError, WorkReport};
use weir::durable::store::{SagaStatus, Store};
use weir::error::BoxError;
use weir::policy::retry::{Jitter, RetryPolicy};

/// A SQLite file, and a PostgreSQL database when the server is there:
/// where to open stores (one per simulated worker).
async fn locations(test: &str) -> Vec<(String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.db").to_str().unwrap().to_owned();
    Store::open(&path).await.unwrap();
    let mut all = vec![(path, Some(dir))];
    #[cfg(feature = "postgres")]
    if let Some(url) = crate::support::stores::postgres_url(test).await {
        all.push((url, None));
    }
    #[cfg(not(feature = "postgres"))]
    let _ = test;
    all
}

/// Runs per step name and saga, across every engine of a test.
type Calls = Arc<Mutex<HashMap<(String, String), u32>>>;

/// `order`: reserve, charge, ship; ship fails for good when the input
/// says `"fail": true`. Every step and compensation counts its runs.
fn order(calls: &Calls, pause: Duration) -> SagaDefinition {
    let count = |calls: &Calls, ctx: &StepContext| {
        let key = (ctx.saga_id().to_owned(), ctx.step_name().to_owned());
        *calls.lock().unwrap().entry(key).or_default() += 1;
    };
    let (a, b, c, d, e) = (calls.clone(), calls.clone(), calls.clone(), calls.clone(), calls.clone());
    SagaDefinition::builder("order")
        .step(
            "reserve",
            move |ctx: StepContext| {
                count(&a, &ctx);
                async move {
                    tokio::time::sleep(pause).await;
                    Ok::<_, StepError>(())
                }
            },
            move |ctx| {
                count(&b, &ctx);
                async { Ok(()) }
            },
        )
        .step(
            "charge",
            move |ctx: StepContext| {
                count(&c, &ctx);
                async { Ok::<_, StepError>(()) }
            },
            move |ctx| {
                count(&d, &ctx);
                async { Ok(()) }
            },
        )
        .step(
            "ship",
            move |ctx: StepContext| {
                count(&e, &ctx);
                async move {
                    let input: serde_json::Value = ctx.input()?;
                    match input["fail"].as_bool() {
                        Some(true) => Err(StepError::terminal("no courier")),
                        _ => Ok(()),
                    }
                }
            },
            |_| async { Ok(()) },
        )
        .build()
        .unwrap()
}

fn engine(store: Store, calls: &Calls, worker: &str) -> SagaEngine {
    SagaEngine::builder(store)
        .definition(order(calls, Duration::from_millis(5)))
        .worker_id(worker)
        .lease(Duration::from_secs(1))
        .max_in_flight(4)
        .build()
        .unwrap()
}

/// Serves `queue` until it holds no queued or claimed job.
async fn work_until_empty(engine: SagaEngine, queue: WorkQueue) -> WorkReport {
    let stop = CancellationToken::new();
    let watch = (queue.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let counts = watch.0.counts().await.unwrap();
            if counts.queued + counts.claimed == 0 {
                watch.1.cancel();
                return;
            }
        }
    });
    engine.work(&queue, stop).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_sagas_run_once_on_the_workers_that_claim_them() {
    for (location, _dir) in locations("queue_sagas_run_once_on_the_workers_that_claim_them").await {
        let calls = Calls::default();
        let first = engine(Store::open(&location).await.unwrap(), &calls, "w1");
        let queue = WorkQueue::new(first.store().clone(), "sagas");
        let mut jobs = Vec::new();
        for n in 0..20 {
            let start = SagaStart::new(format!("o-{n}"), "order", &json!({ "n": n, "fail": n % 7 == 3 })).unwrap();
            jobs.push(first.enqueue(&queue, &start.partition_key(format!("t{}", n % 3))).await.unwrap());
        }
        let again = SagaStart::new("o-1", "order", &json!({ "n": 1, "fail": false })).unwrap();
        assert_eq!(first.enqueue(&queue, &again).await.unwrap(), jobs[1], "the same start is queued once");
        let other = SagaStart::new("o-1", "order", &json!({ "n": 99 })).unwrap();
        let conflict = first.enqueue(&queue, &other).await.unwrap_err();
        assert_eq!(conflict.conflicting_input(), Some(&json!({ "n": 1, "fail": false })), "{conflict}");
        let unknown = first.enqueue(&queue, &SagaStart::new("x", "refund", &1).unwrap()).await.unwrap_err();
        assert_eq!(unknown.unknown_definition(), Some("refund"));
        assert_eq!(queue.counts().await.unwrap().queued, 20, "neither the conflict nor the unknown one was queued");

        // Two workers, each on its own store (as two processes would be).
        let second = engine(Store::open(&location).await.unwrap(), &calls, "w2");
        let (a, b) = tokio::join!(
            work_until_empty(first.clone(), queue.clone()),
            work_until_empty(second.clone(), WorkQueue::new(second.store().clone(), "sagas")),
        );
        assert_eq!(a.completed + b.completed, 17, "{a:?} {b:?}");
        assert_eq!(a.compensated + b.compensated, 3, "{a:?} {b:?}");
        // (How the two split them is timing; the process test below shows a
        // fleet sharing within limits.)
        let counts = queue.counts().await.unwrap();
        assert_eq!((counts.done, counts.failed, counts.queued, counts.claimed, counts.dead), (17, 3, 0, 0, 0));
        let sagas = first.store().sagas(None, 100).await.unwrap();
        assert_eq!(sagas.iter().filter(|s| s.status == SagaStatus::Completed).count(), 17);
        assert_eq!(sagas.iter().filter(|s| s.status == SagaStatus::Compensated).count(), 3);
        for n in 0..20 {
            let charged = calls.lock().unwrap()[&(format!("o-{n}"), "charge".to_owned())];
            assert_eq!(charged, 1, "o-{n} charged once");
        }

        // Enqueued again after they ran: nothing runs again.
        first.enqueue(&queue, &again).await.unwrap();
        assert_eq!(queue.counts().await.unwrap().queued, 0);
    }
}

#[tokio::test]
async fn queue_sagas_enqueued_in_a_failed_transaction_do_not_exist() {
    for (location, _dir) in locations("queue_sagas_enqueued_in_a_failed_transaction_do_not_exist").await {
        let engine = engine(Store::open(&location).await.unwrap(), &Calls::default(), "w");
        let start = SagaStart::new("o-1", "order", &json!({})).unwrap();
        let (inside, start_inside) = (engine.clone(), start.clone());
        let failed = engine
            .store()
            .commit_effect(move |tx| {
                let (engine, start) = (inside.clone(), start_inside.clone());
                Box::pin(async move {
                    engine.enqueue_in(tx, "sagas", &start).await?;
                    Err::<(), BoxError>("the caller's own write failed".into())
                })
            })
            .await;
        assert!(failed.is_err());
        let queue = WorkQueue::new(engine.store().clone(), "sagas");
        assert_eq!(queue.counts().await.unwrap().queued, 0);
        let inside = engine.clone();
        engine
            .store()
            .commit_effect(move |tx| {
                let (engine, start) = (inside.clone(), start.clone());
                Box::pin(async move { Ok(engine.enqueue_in(tx, "sagas", &start).await?) })
            })
            .await
            .unwrap();
        assert_eq!(queue.counts().await.unwrap().queued, 1);
    }
}

/// A worker stops mid-saga (its `work` future dropped: the job goes back
/// at once, the saga's lease is left to run out); the next worker waits
/// out that lease, then carries the saga on from its last transition:
/// the step that had completed does not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_sagas_a_stopped_workers_saga_is_carried_on_by_the_next() {
    for (location, _dir) in locations("queue_sagas_a_stopped_workers_saga_is_carried_on_by_the_next").await {
        let calls = Calls::default();
        let slow = SagaEngine::builder(Store::open(&location).await.unwrap())
            .definition(order(&calls, Duration::from_secs(3600)))
            .worker_id("stuck")
            .lease(Duration::from_secs(1))
            // A stopped worker takes nothing over (it would race the next).
            .reclaim_expired(false)
            .build()
            .unwrap();
        let queue = WorkQueue::new(slow.store().clone(), "sagas");
        slow.enqueue(&queue, &SagaStart::new("o-1", "order", &json!({})).unwrap()).await.unwrap();
        let stuck = tokio::spawn({
            let (slow, queue) = (slow.clone(), queue.clone());
            async move { slow.work(&queue, CancellationToken::new()).await }
        });
        let reserve = ("o-1".to_owned(), "reserve".to_owned());
        while !calls.lock().unwrap().contains_key(&reserve) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stuck.abort();
        let _ = stuck.await;

        let next = engine(Store::open(&location).await.unwrap(), &calls, "next");
        let began = std::time::Instant::now();
        let report = work_until_empty(next.clone(), WorkQueue::new(next.store().clone(), "sagas")).await;
        assert_eq!(report.completed, 1, "{report:?}");
        assert!(began.elapsed() >= Duration::from_millis(300), "it waited for the stuck worker's saga lease");
        let saga = next.store().saga("o-1").await.unwrap().unwrap();
        assert_eq!(saga.status, SagaStatus::Completed);
        let calls = calls.lock().unwrap();
        assert_eq!(calls[&reserve], 2, "reserve had not completed: it ran again");
        assert_eq!(calls[&("o-1".to_owned(), "charge".to_owned())], 1);
    }
}

/// A worker that does not know a saga's definition gives its job back
/// (another worker may know it); after the queue's last attempt the job
/// is kept as `dead` with the reason, and the saga never ran.
#[tokio::test]
async fn queue_sagas_an_unknown_definition_is_given_back_then_kept_dead() {
    for (location, _dir) in locations("queue_sagas_an_unknown_definition_is_given_back_then_kept_dead").await {
        let calls = Calls::default();
        let knows = engine(Store::open(&location).await.unwrap(), &calls, "knows");
        let queue = WorkQueue::new(knows.store().clone(), "sagas");
        knows.enqueue(&queue, &SagaStart::new("o-1", "order", &json!({})).unwrap()).await.unwrap();
        let other =
            SagaDefinition::builder("refund").step("pay", |_| async { Ok::<_, StepError>(()) }, |_| async { Ok(()) });
        let stranger = SagaEngine::builder(Store::open(&location).await.unwrap())
            .definition(other.build().unwrap())
            .build()
            .unwrap();
        let retry = RetryPolicy::builder()
            .max_attempts(2)
            .initial_delay(Duration::from_millis(10))
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let queue = WorkQueue::new(stranger.store().clone(), "sagas").retry(retry);
        let stop = CancellationToken::new();
        let watch = (queue.clone(), stop.clone());
        tokio::spawn(async move {
            while watch.0.counts().await.unwrap().dead == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            watch.1.cancel();
        });
        let report = stranger.work(&queue, stop).await.unwrap();
        assert_eq!((report.given_back, report.dead), (1, 1), "{report:?}");
        assert!(stranger.store().saga("o-1").await.unwrap().is_none(), "the saga never started");
        assert!(calls.lock().unwrap().is_empty());
    }
}

/// A saga worker when the harness starts this binary as one (see
/// `queue_sagas_split_across_processes_within_tenant_limits`); a no-op
/// in a normal test run. Logs when each saga's `reserve` step starts and
/// ends, and each `charge` with its idempotency key, one line per write.
#[test]
fn queue_saga_worker_entry() {
    let (Ok(location), Ok(log)) = (std::env::var("WEIR_SAGA_WORKER_DB"), std::env::var("WEIR_SAGA_WORKER_LOG")) else {
        return;
    };
    let total: u64 = std::env::var("WEIR_SAGA_WORKER_TOTAL").unwrap().parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let file = Arc::new(Mutex::new(file));
        let line = move |text: String| file.lock().unwrap().write_all(text.as_bytes()).unwrap();
        let (start_line, end_line, charge_line) = (line.clone(), line.clone(), line);
        let def = SagaDefinition::builder("order")
            .step(
                "reserve",
                move |ctx: StepContext| {
                    let (start_line, end_line) = (start_line.clone(), end_line.clone());
                    async move {
                        let tenant = ctx.input::<serde_json::Value>()?["tenant"].as_str().unwrap().to_owned();
                        start_line(format!("S {tenant} {} {}\n", ctx.saga_id(), now_ns()));
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        end_line(format!("E {tenant} {} {}\n", ctx.saga_id(), now_ns()));
                        Ok::<_, StepError>(())
                    }
                },
                |_| async { Ok(()) },
            )
            .step(
                "charge",
                move |ctx: StepContext| {
                    charge_line(format!("C {} {}\n", ctx.saga_id(), ctx.idempotency_key()));
                    async { Ok::<_, StepError>(()) }
                },
                |_| async { Ok(()) },
            )
            .build()
            .unwrap();
        let store = Store::open(&location).await.unwrap();
        let engine = SagaEngine::builder(store.clone())
            .definition(def)
            .lease(Duration::from_secs(1))
            .max_in_flight(3)
            .build()
            .unwrap();
        let queue = WorkQueue::new(store, "fleet").concurrency_per_key(2).lease(Duration::from_secs(1));
        let stop = CancellationToken::new();
        let watch = (queue.clone(), stop.clone());
        tokio::spawn(async move {
            while watch.0.counts().await.map(|c| c.done).unwrap_or(0) < total {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            watch.1.cancel();
        });
        engine.work(&queue, stop).await.unwrap();
    });
}

fn now_ns() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// Four worker processes serve one queue of 90 sagas over 3 tenants, at
/// most 2 running per tenant in the fleet; one process is SIGKILLed
/// mid-run and another started in its place. Every saga completes, each
/// is charged under one idempotency key, the sagas run twice are at most
/// the ones the killed worker held, and counting the `reserve` steps
/// running at once across the processes' logs (one clock; the killed
/// worker's open ones end at the kill), no tenant ever had more than 2
/// and no process more than its 3 slots.
#[cfg(unix)]
#[tokio::test]
async fn queue_sagas_split_across_processes_within_tenant_limits() {
    const SAGAS: u64 = 90;
    for (location, _dir) in locations("queue_sagas_split_across_processes_within_tenant_limits").await {
        let store = Store::open(&location).await.unwrap();
        let enqueuer = SagaEngine::builder(store.clone()).definition(order(&Calls::default(), Duration::ZERO)).build();
        let enqueuer = enqueuer.unwrap();
        let queue = WorkQueue::new(store.clone(), "fleet");
        for n in 0..SAGAS {
            let tenant = format!("tenant-{}", n % 3);
            let start = SagaStart::new(format!("o-{n}"), "order", &json!({ "tenant": tenant })).unwrap();
            enqueuer.enqueue(&queue, &start.partition_key(tenant)).await.unwrap();
        }
        let logs = tempfile::tempdir().unwrap();
        let spawn = |w: usize| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "queue_sagas::queue_saga_worker_entry", "--nocapture", "--test-threads=1"])
                .env("WEIR_SAGA_WORKER_DB", &location)
                .env("WEIR_SAGA_WORKER_LOG", logs.path().join(format!("{w}.log")))
                .env("WEIR_SAGA_WORKER_TOTAL", SAGAS.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut children: Vec<_> = (0..4).map(spawn).collect();
        while queue.counts().await.unwrap().done < SAGAS / 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        children[0].kill().unwrap(); // SIGKILL
        let killed_at = now_ns();
        children[0].wait().unwrap();
        children.push(spawn(4));
        for mut child in children.drain(1..) {
            let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
            assert!(status.success());
        }

        let counts = queue.counts().await.unwrap();
        assert_eq!((counts.done, counts.queued, counts.claimed, counts.dead), (SAGAS, 0, 0, 0));
        let sagas = store.sagas(None, 1000).await.unwrap();
        assert_eq!(sagas.iter().filter(|s| s.status == SagaStatus::Completed).count() as u64, SAGAS);

        // Starts and ends of `reserve`, in time order; the killed worker's
        // unfinished ones end when it was killed.
        let mut events: Vec<(u128, i32, String, usize)> = Vec::new();
        let mut charges: HashMap<String, Vec<String>> = HashMap::new();
        for w in 0..5 {
            let text = std::fs::read_to_string(logs.path().join(format!("{w}.log"))).unwrap();
            let mut open: HashMap<String, (u128, String)> = HashMap::new();
            for line in text.lines() {
                let parts: Vec<&str> = line.split(' ').collect();
                match parts[..] {
                    ["S", tenant, saga, at] => {
                        open.insert(saga.to_owned(), (at.parse().unwrap(), tenant.to_owned()));
                    }
                    ["E", _, saga, at] => {
                        let (started, tenant) = open.remove(saga).unwrap();
                        events.push((started, 1, tenant.clone(), w));
                        events.push((at.parse().unwrap(), -1, tenant, w));
                    }
                    ["C", saga, key] => charges.entry(saga.to_owned()).or_default().push(key.to_owned()),
                    _ => {}
                }
            }
            assert!(w == 0 || open.is_empty(), "only the killed worker left steps unfinished");
            for (_, (started, tenant)) in open {
                events.push((started, 1, tenant.clone(), w));
                events.push((killed_at, -1, tenant, w));
            }
        }
        events.sort_by_key(|(at, delta, _, _)| (*at, *delta));
        let (mut by_tenant, mut by_worker) = (HashMap::<String, i32>::new(), HashMap::<usize, i32>::new());
        let (mut tenant_peak, mut worker_peak) = (0, 0);
        for (_, delta, tenant, w) in events {
            let n = by_tenant.entry(tenant).or_default();
            *n += delta;
            tenant_peak = tenant_peak.max(*n);
            let n = by_worker.entry(w).or_default();
            *n += delta;
            worker_peak = worker_peak.max(*n);
        }
        assert!(tenant_peak <= 2, "a tenant had {tenant_peak} sagas running at once across the processes");
        assert_eq!(tenant_peak, 2, "the per-tenant limit was reached (the test tests something)");
        assert!(worker_peak <= 3, "a worker ran {worker_peak} sagas at once, over its 3 slots");

        assert_eq!(charges.len() as u64, SAGAS, "every saga charged");
        let twice: Vec<_> = charges.iter().filter(|(_, keys)| keys.len() > 1).collect();
        assert!(twice.len() <= 3, "charged twice: {twice:?}: at most the killed worker's 3 sagas in flight");
        for (saga, keys) in &charges {
            assert!(keys.iter().all(|k| *k == format!("{saga}/charge")), "{saga}: one idempotency key: {keys:?}");
        }
    }
}
