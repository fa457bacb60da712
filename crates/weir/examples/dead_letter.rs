//! Seed task 16: after 3 attempts a poison message goes to the dead-letter
//! queue and the pipeline goes on; the parked messages keep their story
//! (error chain, stage, tenant, attempts, times) and are replayed once the
//! cause is fixed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir::durable::dlq::{DeadLetterQueue, MemoryDlq};
use weir::pipeline::{Pipeline, Stage, StageFn};
use weir::policy::retry::RetryPolicy;

#[derive(Debug, Clone)]
struct Message {
    id: u32,
    tenant: &'static str,
    body: String,
}

fn handle(schema_v2_supported: Arc<AtomicBool>) -> Stage<Message, impl StageFn<Message, Output = u32>> {
    let retry = RetryPolicy::builder().max_attempts(3).initial_delay(Duration::from_millis(1)).build().expect("valid");
    Stage::try_map("handle", move |m: Message| {
        let v2 = schema_v2_supported.load(Ordering::SeqCst);
        async move {
            if m.body.starts_with("v2:") && !v2 {
                Err(format!("message {}: unknown schema version 2", m.id))
            } else {
                Ok(m.id)
            }
        }
    })
    .retry(retry)
    .key(|m| format!("msg-{}", m.id))
    .tenant(|m| m.tenant.to_string())
}

#[tokio::main]
async fn main() {
    let messages: Vec<Message> = (1..=12)
        .map(|id| Message {
            id,
            tenant: if id % 2 == 0 { "acme" } else { "globex" },
            body: if id % 5 == 0 { "v2:{}" } else { "v1:{}" }.into(),
        })
        .collect();
    let dlq = Arc::new(MemoryDlq::new());
    let v2 = Arc::new(AtomicBool::new(false));
    let (handled, report) = Pipeline::from_iter(messages)
        .stage(handle(v2.clone()).dead_letter(dlq.clone()))
        .collect()
        .await
        .expect("poison messages do not stop the run");
    println!("handled {:?}\n{report}", handled);
    for e in dlq.list().await.unwrap() {
        println!(
            "parked #{}: {} tenant={} attempts={} chain={:?} failing for {:?}",
            e.id,
            e.key.as_deref().unwrap_or("-"),
            e.tenant.as_deref().unwrap_or("-"),
            e.attempts,
            e.error_chain,
            e.last_failure.duration_since(e.first_failure).unwrap_or_default()
        );
    }
    assert_eq!(report.stage("handle").map(|s| s.dead_lettered), Some(2));

    println!("deploying schema v2 support, replaying the dead letters:");
    v2.store(true, Ordering::SeqCst);
    let parked = dlq.drain().await.expect("memory queue");
    let (replayed, _) = Pipeline::from_iter(parked.into_iter().map(|e| e.item))
        .stage(handle(v2).dead_letter(dlq.clone()))
        .collect()
        .await
        .expect("replay");
    println!("replayed {replayed:?}; queue now holds {}", dlq.count().await.expect("memory queue"));
    assert_eq!(replayed, [5, 10]);
}
