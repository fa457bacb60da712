//! Behaviour of `weir::pipeline::batch` (seed task 19), on paused time with bursts
//! and pauses.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::time::{Instant, sleep};
use weir::durable::dlq::{DeadLetterQueue, MemoryDlq};
use weir::error::BoxError;
use weir::pipeline::batch::Batcher;
use weir::pipeline::{DeadLetter, DeadLetterSink};
use weir::policy::Stack;
use weir::policy::breaker::Breaker;
use weir::policy::retry::{Jitter, RetryPolicy};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn seed_batcher() -> Batcher {
    let retry = RetryPolicy::builder().max_attempts(3).initial_delay(ms(10)).jitter(Jitter::None).build().unwrap();
    Batcher::builder().max_items(100).max_wait(Duration::from_secs(1)).retry(retry).build().unwrap()
}

/// Sends a burst of `n` items, then pauses.
async fn burst(tx: &tokio::sync::mpsc::Sender<u32>, from: u32, n: u32, pause: Duration) {
    for i in from..from + n {
        tx.send(i).await.unwrap();
    }
    sleep(pause).await;
}

fn channel_stream(mut rx: tokio::sync::mpsc::Receiver<u32>) -> impl futures_util::Stream<Item = u32> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(start_paused = true)]
async fn bursts_flush_by_size_and_pauses_flush_by_time() {
    let (tx, rx) = tokio::sync::mpsc::channel(1000);
    let start = Instant::now();
    tokio::spawn(async move {
        burst(&tx, 0, 250, Duration::from_secs(3)).await; // 100, 100, then 50 after 1 s
        burst(&tx, 250, 30, ms(200)).await; // 30 items, then 200 ms pause: the batch keeps waiting
        burst(&tx, 280, 5, Duration::from_secs(5)).await; // joins the 30: 35 at 1 s after item 250
    });
    let batches: Vec<(usize, Duration)> =
        seed_batcher().batches(channel_stream(rx)).map(|b| (b.len(), start.elapsed())).collect().await;
    assert_eq!(batches, [(100, ms(0)), (100, ms(0)), (50, ms(1000)), (35, ms(4000))], "sizes and flush times");
}

#[tokio::test(start_paused = true)]
async fn the_remainder_is_flushed_on_close_and_no_batch_is_empty() {
    let batches: Vec<Vec<u32>> = seed_batcher().batches(futures_util::stream::iter(0..205)).collect().await;
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [100, 100, 5]);
    let none: Vec<Vec<u32>> = seed_batcher().batches(futures_util::stream::iter(0..0)).collect().await;
    assert!(none.is_empty());
    assert_eq!(batches.concat(), (0..205).collect::<Vec<_>>(), "order kept, nothing lost");
}

#[tokio::test(start_paused = true)]
async fn failed_flushes_are_retried_and_a_persistent_failure_goes_to_the_dlq_whole() {
    let dlq = MemoryDlq::new();
    let flushed = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let (f, a) = (flushed.clone(), attempts.clone());
    let report = seed_batcher()
        .run(
            futures_util::stream::iter(0..350u32),
            move |batch: Vec<u32>| {
                let first = batch[0];
                let n = {
                    let mut a = a.lock().unwrap();
                    let n = a.entry(first).or_insert(0);
                    *n += 1;
                    *n
                };
                let f = f.clone();
                async move {
                    match first {
                        100 if n < 3 => Err::<(), BoxError>("sink busy".into()), // flaky: 2 failures then ok
                        200 => Err("batch rejected: bad record".into()),         // poison batch
                        _ => {
                            f.lock().unwrap().push(batch.len());
                            Ok(())
                        }
                    }
                }
            },
            Some(&dlq),
        )
        .await
        .unwrap();
    assert_eq!(*flushed.lock().unwrap(), [100, 100, 50]);
    assert_eq!((report.items, report.items_flushed, report.items_dead_lettered), (350, 250, 100));
    assert_eq!((report.batches_flushed, report.batches_dead_lettered, report.retries), (3, 1, 4));
    let parked = dlq.drain().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].item, (200..300).collect::<Vec<_>>());
    assert_eq!((parked[0].attempts, parked[0].error_chain[0].as_str()), (3, "batch rejected: bad record"));
}

#[tokio::test(start_paused = true)]
async fn without_a_dlq_a_failed_batch_comes_back_in_the_error() {
    let err = seed_batcher()
        .run(futures_util::stream::iter(0..10u32), |_| async { Err::<(), BoxError>("down".into()) }, None)
        .await
        .unwrap_err();
    assert_eq!(err.batch, (0..10).collect::<Vec<_>>());
    assert_eq!(err.report.items, 10);
    assert!(err.to_string().contains("after 3 attempt(s): down"), "{err}");
}

/// A panic in the flush (in the call or in its future) fails that batch
/// at once, without a retry; the batch is dead-lettered with the panic's
/// message and the run goes on. A `Permanent` error is not retried either.
#[tokio::test(start_paused = true)]
async fn a_panicking_or_permanent_flush_is_dead_lettered_without_retry_and_the_run_goes_on() {
    let dlq = MemoryDlq::new();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let report = seed_batcher()
        .run(
            futures_util::stream::iter(0..400u32),
            move |batch: Vec<u32>| {
                let first = batch[0];
                c.lock().unwrap().push(first);
                if first == 0 {
                    panic!("flush exploded before its future");
                }
                async move {
                    match first {
                        100 => panic!("flush exploded inside its future"),
                        200 => Err(weir::error::Permanent::new("schema rejected")),
                        _ => Ok(()),
                    }
                }
            },
            Some(&dlq),
        )
        .await
        .unwrap();
    assert_eq!(*calls.lock().unwrap(), [0, 100, 200, 300], "nothing was retried");
    assert_eq!((report.items_flushed, report.items_dead_lettered, report.retries), (100, 300, 0));
    let parked = dlq.drain().await.unwrap();
    let reasons: Vec<&str> = parked.iter().map(|e| e.error_chain[0].as_str()).collect();
    assert_eq!(
        reasons,
        [
            "panicked: flush exploded before its future",
            "panicked: flush exploded inside its future",
            "permanent failure: schema rejected"
        ]
    );
    assert!(parked.iter().all(|e| e.attempts == 1 && e.item.len() == 100));
}

#[tokio::test(start_paused = true)]
async fn a_slow_flush_pushes_back_on_the_producer() {
    let (tx, rx) = tokio::sync::mpsc::channel(10);
    let producer = tokio::spawn(async move {
        let start = Instant::now();
        for i in 0..300u32 {
            tx.send(i).await.unwrap();
        }
        start.elapsed()
    });
    let report = seed_batcher()
        .run(
            channel_stream(rx),
            |_| async {
                sleep(Duration::from_secs(1)).await;
                Ok::<(), BoxError>(())
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(report.items, 300);
    assert!(producer.await.unwrap() >= Duration::from_secs(2), "the producer waited for the flushes");
}

#[test]
fn bad_settings_are_configuration_errors() {
    assert_eq!(Batcher::builder().max_items(0).build().unwrap_err().setting(), "batcher max_items");
    assert_eq!(Batcher::builder().max_wait(Duration::ZERO).build().unwrap_err().setting(), "batcher max_wait");
}

/// A batch whose dead-letter sink fails comes back whole in the error
/// (before, the batch was moved into the sink and lost with its failure).
#[tokio::test(start_paused = true)]
async fn a_failing_dead_letter_sink_gives_the_batch_back() {
    struct Broken;
    impl DeadLetterSink<Vec<u32>> for Broken {
        fn dead_letter(&self, _: DeadLetter<Vec<u32>>) -> BoxFuture<'_, Result<(), BoxError>> {
            Box::pin(async { Err("disk full".into()) })
        }
    }
    let err = seed_batcher()
        .run(futures_util::stream::iter(0..5u32), |_| async { Err::<(), BoxError>("down".into()) }, Some(&Broken))
        .await
        .unwrap_err();
    assert_eq!(err.batch, [0, 1, 2, 3, 4]);
    assert!(err.to_string().contains("down; and the dead-letter sink failed: disk full"), "{err}");
}

/// A batcher's flushes go through its whole policy stack: here a breaker
/// that opens after two failed batches, so the third is refused without a
/// call and dead-lettered as `CircuitOpen` (not retried), and a timeout
/// that bounds each attempt.
#[tokio::test(start_paused = true)]
async fn flushes_go_through_the_batchers_policy_stack() {
    let breaker = Breaker::builder().consecutive_failures(2).build().unwrap();
    let stack = Stack::builder().breaker(breaker.clone()).timeout(ms(100)).build().unwrap();
    let batcher = Batcher::builder().max_items(10).policies(stack).build().unwrap();
    let dlq = MemoryDlq::new();
    let calls = AtomicU32::new(0);
    let report = batcher
        .run(
            futures_util::stream::iter(0..30u32),
            |_| {
                calls.fetch_add(1, Ordering::Relaxed);
                async {
                    sleep(Duration::from_secs(1)).await; // past the timeout
                    Ok::<(), BoxError>(())
                }
            },
            Some(&dlq),
        )
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 2, "the open breaker refused the third flush");
    assert_eq!((report.batches_dead_lettered, report.retries), (3, 0));
    let reasons: Vec<String> = dlq.drain().await.unwrap().into_iter().map(|e| e.error_chain[0].clone()).collect();
    assert!(reasons[0].contains("timed out") && reasons[1].contains("timed out"), "{reasons:?}");
    assert!(reasons[2].contains("circuit") && reasons[2].contains("open"), "{reasons:?}");
}
