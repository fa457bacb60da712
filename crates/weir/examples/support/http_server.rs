//! A tiny HTTP/1.1 server on 127.0.0.1 for the examples: each request is
//! answered by a handler that picks a delay, a status and a body.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server answers to one request.
pub struct Reply {
    pub delay: Duration,
    pub status: u16,
    pub body: String,
}

/// Serves until the returned handle is aborted; `handler` gets each path.
pub async fn serve<H, Fut>(handler: H) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    H: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let handler = Arc::new(handler);
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let reply = handler(path).await;
                tokio::time::sleep(reply.delay).await;
                let reason = if reply.status == 200 { "OK" } else { "Error" };
                let response = format!(
                    "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok((addr, server))
}
