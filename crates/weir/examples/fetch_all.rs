//! Seed task 3: fetch URLs in parallel with at most 8 in flight, bodies in
//! input order; the first failure cancels the fetches in flight and the
//! error names the URL. Starts its own HTTP server on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
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

/// Serves `/page/N` with a body, `/slow/N` after 10 s, `/broken` with 500.
async fn serve(listener: TcpListener, served: Arc<AtomicUsize>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        let served = Arc::clone(&served);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            if path.starts_with("/slow") {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            let (status, body) = if path == "/broken" {
                ("500 Internal Server Error", String::new())
            } else {
                ("200 OK", format!("body of {path}"))
            };
            let response =
                format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            if socket.write_all(response.as_bytes()).await.is_ok() {
                served.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let served = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn(serve(listener, Arc::clone(&served)));
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
