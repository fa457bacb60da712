//! Seed task 3: fetch URLs in parallel with at most 8 in flight, bodies in
//! input order; the first failure cancels the fetches in flight and the
//! error names the URL. Starts its own HTTP server on 127.0.0.1.

#[path = "support/http_server.rs"]
mod http_server;

use std::time::Duration;

use http_server::{Reply, serve};
use weir::error::BoxError;
use weir::group::Group;

/// A fetch failed; says which URL.
#[derive(Debug, thiserror::Error)]
#[error("fetching {url} failed: {source}")]
struct FetchError {
    url: String,
    #[source]
    source: BoxError,
}

async fn fetch_all(client: reqwest::Client, urls: Vec<String>) -> Result<Vec<String>, BoxError> {
    let group: Group<BoxError> = Group::builder().limit(8).build()?;
    group
        .map(urls, move |url| {
            let client = client.clone();
            async move {
                let fetched = async { client.get(&url).send().await?.error_for_status()?.text().await };
                fetched.await.map_err(|e| FetchError { url, source: e.into() }.into())
            }
        })
        .await
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // `/page/N` answers with a body, `/slow/N` after 10 s, `/broken` with 500.
    let (addr, server) = serve(|path: String| async move {
        let delay = if path.starts_with("/slow") { Duration::from_secs(10) } else { Duration::ZERO };
        let status = if path == "/broken" { 500 } else { 200 };
        Reply { delay, status, body: format!("body of {path}") }
    })
    .await?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    let urls: Vec<String> = (0..20).map(|n| format!("{base}/page/{n}")).collect();
    let bodies = fetch_all(client.clone(), urls).await?;
    println!("fetched {} pages in order; first: {:?}, last: {:?}", bodies.len(), bodies[0], bodies[19]);
    assert_eq!(bodies[7], "body of /page/7");

    let mut urls: Vec<String> = (0..6).map(|n| format!("{base}/slow/{n}")).collect();
    urls.push(format!("{base}/broken"));
    let started = std::time::Instant::now();
    let err = fetch_all(client, urls).await.unwrap_err();
    println!("error: {err} (after {:?}; slow fetches in flight were cancelled)", started.elapsed());
    assert!(err.to_string().contains("/broken"), "the error names the URL");
    assert!(started.elapsed() < Duration::from_secs(5), "did not wait for the slow fetches");
    server.abort();
    Ok(())
}
