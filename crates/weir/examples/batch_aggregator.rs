//! Seed task 19: events arrive in bursts and pauses; the aggregator emits
//! batches of up to 100 events or after 1 s, to a downstream channel. A
//! flaky downstream is retried; a batch it keeps rejecting goes whole to
//! the dead-letter queue and the aggregator goes on. Paused clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir::durable::dlq::{DeadLetterQueue, MemoryDlq};
use weir::error::BoxError;
use weir::pipeline::batch::Batcher;
use weir::policy::retry::RetryPolicy;

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let start = Instant::now();
    let (events, rx) = mpsc::channel::<u32>(500);
    tokio::spawn(async move {
        for (burst, pause_ms) in [(230u32, 2500u64), (40, 300), (20, 3000), (150, 0)] {
            for _ in 0..burst {
                let _ = events.send(0).await;
            }
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    });
    let mut rx = rx;
    let input = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let (downstream, mut out) = mpsc::channel::<Vec<u32>>(16);
    let dlq = MemoryDlq::new();
    let flushes = AtomicU32::new(0);
    let retry = RetryPolicy::builder().max_attempts(3).initial_delay(Duration::from_millis(50)).build().expect("valid");
    let batcher = Batcher::builder()
        .name("events")
        .max_items(100)
        .max_wait(Duration::from_secs(1))
        .retry(retry)
        .build()
        .expect("valid");
    let report = batcher
        .run(
            input,
            |batch: Vec<u32>| {
                let n = flushes.fetch_add(1, Ordering::Relaxed) + 1;
                let downstream = downstream.clone();
                async move {
                    // The 2nd flush is rejected once (flaky); every attempt of the 4th is rejected (poison).
                    if n == 2 || (4..=6).contains(&n) {
                        return Err::<(), BoxError>(format!("downstream rejected flush #{n}").into());
                    }
                    println!("{:>6?}: flushed a batch of {}", start.elapsed(), batch.len());
                    downstream.send(batch).await.map_err(|e| e.to_string().into())
                }
            },
            Some(&dlq),
        )
        .await
        .expect("dead letters keep the run going");
    drop(downstream);
    let mut delivered = 0;
    while let Some(batch) = out.recv().await {
        delivered += batch.len();
    }
    println!("{report:?}");
    let parked = dlq.drain().await.expect("memory queue");
    println!(
        "dead-lettered: {} batch(es), {} event(s): {:?}",
        parked.len(),
        parked.iter().map(|e| e.item.len()).sum::<usize>(),
        parked[0].error_chain
    );
    assert_eq!(report.items, 440);
    assert_eq!(report.items_flushed + report.items_dead_lettered, report.items, "every event accounted for");
    assert_eq!(delivered as u64, report.items_flushed);
}
