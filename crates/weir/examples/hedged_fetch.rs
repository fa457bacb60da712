//! Seed task 18: the same request to several replicas; the first success
//! wins and the others are cancelled; if all fail, every error comes back.
//! Three local HTTP replicas with different latency and failure rates,
//! fetched with reqwest: plain requests to replica 0 against hedged
//! requests that go to the next replica after the observed p95.

#[path = "support/http_server.rs"]
mod http_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_server::{Reply, serve};
use weir::error::BoxError;
use weir::policy::hedge::{Hedge, HedgeDelay};

/// A replica: answers in `fast` ms, but every `slow_every`-th request in
/// `slow` ms; fails every `fail_every`-th request.
async fn replica(
    fast: u64,
    slow: u64,
    slow_every: u64,
    fail_every: u64,
) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let count = Arc::new(AtomicU64::new(0));
    let (addr, server) = serve(move |_path| {
        let n = count.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let delay = Duration::from_millis(if n.is_multiple_of(slow_every) { slow } else { fast });
            let status = if n.is_multiple_of(fail_every) { 503 } else { 200 };
            Reply { delay, status, body: "quote: 42".into() }
        }
    })
    .await?;
    Ok((format!("http://{addr}/quote"), server))
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, BoxError> {
    Ok(client.get(url).send().await?.error_for_status()?.text().await?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let replicas = [replica(3, 250, 25, 1000).await?, replica(4, 250, 30, 7).await?, replica(5, 250, 40, 1000).await?];
    let urls: Vec<String> = replicas.iter().map(|(url, _)| url.clone()).collect();
    let client = reqwest::Client::new();

    let mut plain = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        fetch(&client, &urls[0]).await?;
        plain.push(t.elapsed());
    }
    let hedge = Hedge::builder()
        .delay(HedgeDelay::Percentile { percentile: 0.95, fallback: Duration::from_millis(20) })
        .max_attempts(3)
        .max_extra_load(0.10)
        .build()?;
    let mut hedged = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        hedge.call(|n| fetch(&client, &urls[n as usize])).await.map_err(|e| e.to_string())?;
        hedged.push(t.elapsed());
    }
    plain.sort_unstable();
    hedged.sort_unstable();
    let m = hedge.metrics();
    println!("plain : p50 {:?}, p99 {:?}", percentile(&plain, 0.5), percentile(&plain, 0.99));
    println!("hedged: p50 {:?}, p99 {:?}", percentile(&hedged, 0.5), percentile(&hedged, 0.99));
    println!(
        "extra requests: {} of {} calls ({:.1} %), won by a hedge: {}",
        m.hedges,
        m.calls,
        m.hedges as f64 * 100.0 / m.calls as f64,
        m.won_by_hedge
    );

    // Every replica failing: the error holds each attempt's error.
    let all_down = Hedge::builder().delay(HedgeDelay::Parallel).max_attempts(3).max_extra_load(1.0).build()?;
    let (down, down_server) =
        serve(|_| async { Reply { delay: Duration::ZERO, status: 503, body: String::new() } }).await?;
    let down_urls: Vec<String> = (0..3).map(|n| format!("http://{down}/replica/{n}")).collect();
    let err = all_down.call(|n| fetch(&client, &down_urls[n as usize])).await.unwrap_err();
    down_server.abort();
    println!("all replicas failing:\n{err}");
    assert_eq!(err.len(), 3);
    assert!(percentile(&hedged, 0.99) < percentile(&plain, 0.99), "hedging cut the tail");
    for (_, server) in replicas {
        server.abort();
    }
    Ok(())
}
