//! Behaviour of `weir::durable::dlq` (seed task 16).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::durable::dlq::{DeadLetterQueue, Envelope, MemoryDlq};
use weir::pipeline::{Pipeline, Stage, StageFn};
use weir::policy::retry::{Jitter, RetryPolicy};

#[derive(Debug, thiserror::Error)]
#[error("payment provider rejected order {0}")]
struct Rejected(u32);

fn retry3() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(100))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

/// The stage under test: rejects orders divisible by 10 while `broken`.
fn charge(broken: Arc<AtomicBool>) -> Stage<u32, impl StageFn<u32, Output = u32>> {
    Stage::try_map("charge", move |n: u32| {
        let broken = broken.load(Ordering::SeqCst);
        async move { if broken && n.is_multiple_of(10) { Err(Rejected(n)) } else { Ok(n) } }
    })
    .tenant(|n| format!("tenant-{}", n % 3))
    .key(|n| format!("order-{n}"))
}

#[tokio::test(start_paused = true)]
async fn poison_items_are_parked_with_their_story_and_the_run_goes_on() {
    let dlq = Arc::new(MemoryDlq::new());
    let broken = Arc::new(AtomicBool::new(true));
    let started = std::time::SystemTime::now();
    let (ok, report) = Pipeline::from_iter(1..=50u32)
        .stage(charge(broken.clone()).retry(retry3()).dead_letter(dlq.clone()))
        .collect()
        .await
        .expect("poison items do not fail the run");
    assert_eq!(ok.len(), 45);
    let stage = report.stage("charge").unwrap();
    assert_eq!((stage.received, stage.emitted, stage.dead_lettered, stage.retries), (50, 45, 5, 10));
    assert!(report.is_balanced());

    let letters = dlq.list().await.unwrap();
    assert_eq!(letters.iter().map(|e| e.item).collect::<Vec<_>>(), [10, 20, 30, 40, 50]);
    let first = &letters[0];
    assert_eq!(first.id, 1);
    assert_eq!(first.stage, "charge");
    assert_eq!(first.key.as_deref(), Some("order-10"));
    assert_eq!(first.tenant.as_deref(), Some("tenant-1"));
    assert_eq!(first.item_index, Some(9));
    assert_eq!(first.attempts, 3);
    assert_eq!(first.error_chain, ["payment provider rejected order 10"]);
    assert!(started <= first.first_failure && first.first_failure <= first.last_failure);
    assert_eq!(dlq.count().await.unwrap(), 5, "list leaves them queued");

    // Replay: the provider is fixed; drain and run the same stage again.
    broken.store(false, Ordering::SeqCst);
    let parked = dlq.drain().await.unwrap();
    let (replayed, report) = Pipeline::from_iter(parked.into_iter().map(|e| e.item))
        .stage(charge(broken).retry(retry3()).dead_letter(dlq.clone()))
        .collect()
        .await
        .unwrap();
    assert_eq!(replayed, [10, 20, 30, 40, 50]);
    assert_eq!(report.stage("charge").unwrap().dead_lettered, 0);
    assert_eq!(dlq.count().await.unwrap(), 0);
}

/// Pushes the same keyed letter three times (a crash and two reruns) and an
/// unkeyed one twice: the keyed one is stored once, with its newest reason
/// and its first id; unkeyed letters are all kept.
async fn a_keyed_letter_is_stored_once<Q: DeadLetterQueue<String>>(queue: &Q) -> Vec<Envelope<String>> {
    let mut ids = Vec::new();
    for attempt in 1..=3u32 {
        let mut letter = Envelope::new("not json".to_string(), "parse", attempt);
        letter.key = Some("orders.jsonl:7".into());
        letter.error_chain = vec![format!("rejected on run {attempt}")];
        ids.push(queue.push(letter).await.unwrap());
    }
    assert_eq!(ids[0], ids[1], "same key, same letter");
    assert_eq!(ids[1], ids[2]);
    for _ in 0..2 {
        queue.push(Envelope::new("unkeyed".to_string(), "parse", 1)).await.unwrap();
    }
    assert_eq!(queue.count().await.unwrap(), 3);
    let letters = queue.drain().await.unwrap();
    let keyed: Vec<_> = letters.iter().filter(|l| l.key.is_some()).collect();
    assert_eq!(keyed.len(), 1, "{letters:?}");
    assert_eq!(keyed[0].id, ids[0]);
    assert_eq!(keyed[0].error_chain, ["rejected on run 3"]);
    assert_eq!(keyed[0].attempts, 3);
    assert!(keyed[0].first_failure <= keyed[0].last_failure);
    letters
}

#[tokio::test]
async fn every_queue_stores_a_keyed_letter_once() {
    a_keyed_letter_is_stored_once(&MemoryDlq::new()).await;
    a_keyed_letter_is_stored_once(&weir::durable::store::Store::memory().dead_letters::<String>("lines")).await;
    let (store, _dir) = crate::support::stores::sqlite().await;
    a_keyed_letter_is_stored_once(&store.dead_letters::<String>("lines")).await;
    // Removing by id takes exactly those out (a replay removes what went
    // through and keeps the rest).
    let queue = store.dead_letters::<String>("lines");
    let ids: Vec<u64> =
        futures_util::future::join_all((0..3).map(|i| queue.push(Envelope::new(format!("l{i}"), "parse", 1))))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    queue.remove(&[ids[0], ids[2], 999]).await.unwrap();
    assert_eq!(queue.list().await.unwrap().iter().map(|e| e.item.as_str()).collect::<Vec<_>>(), ["l1"]);
    queue.drain().await.unwrap();
    // Another queue may hold the same key.
    let other = store.dead_letters::<String>("other");
    let mut letter = Envelope::new("x".to_string(), "parse", 1);
    letter.key = Some("orders.jsonl:7".into());
    other.push(letter.clone()).await.unwrap();
    store.dead_letters::<String>("lines").push(letter).await.unwrap();
    assert_eq!(other.count().await.unwrap(), 1);
    #[cfg(feature = "postgres")]
    if let Some(url) = crate::support::stores::postgres_url("every_queue_stores_a_keyed_letter_once").await {
        let store = weir::durable::store::Store::open(&url).await.unwrap();
        a_keyed_letter_is_stored_once(&store.dead_letters::<String>("lines")).await;
    }
}

/// Replays through the one trait: an item that goes through leaves the
/// queue, one that fails again stays (keyed: in place, same id; unkeyed:
/// once), with the new reason and one more attempt.
async fn replay_keeps_what_fails_again<Q: DeadLetterQueue<String>>(queue: &Q) {
    let mut keyed = Envelope::new("bad-keyed".to_string(), "parse", 3);
    keyed.key = Some("orders.jsonl:9".into());
    let keyed_id = queue.push(keyed).await.unwrap();
    for item in ["good", "bad-unkeyed"] {
        queue.push(Envelope::new(item.to_string(), "parse", 3)).await.unwrap();
    }
    let report = queue
        .replay(|item: String| async move {
            if item.starts_with("bad") { Err(weir::error::BoxError::from(format!("{item} again"))) } else { Ok(()) }
        })
        .await
        .unwrap();
    assert_eq!((report.replayed, report.failed), (1, 2));
    let mut left = queue.list().await.unwrap();
    left.sort_by(|a, b| a.item.cmp(&b.item));
    assert_eq!(left.iter().map(|e| e.item.as_str()).collect::<Vec<_>>(), ["bad-keyed", "bad-unkeyed"]);
    assert_eq!(left[0].id, keyed_id, "a keyed letter keeps its id");
    assert!(left.iter().all(|e| e.attempts == 4), "{left:?}");
    assert_eq!(left[1].error_chain, ["bad-unkeyed again"]);
    queue.drain().await.unwrap();
}

#[tokio::test]
async fn every_queue_replays_and_keeps_what_fails_again() {
    replay_keeps_what_fails_again(&MemoryDlq::new()).await;
    let (store, _dir) = crate::support::stores::sqlite().await;
    replay_keeps_what_fails_again(&store.dead_letters::<String>("lines")).await;
}
