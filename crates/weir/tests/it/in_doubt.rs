//! A PostgreSQL `COMMIT` whose answer is lost: the server committed, the
//! connection dropped before the reply reached the store. A proxy between
//! the store and the server forwards the `COMMIT`, swallows the answer and
//! cuts the connection. The batch must be reported as what it was:
//! committed (before, the store told its writers it had failed, and a saga
//! step whose effect was there was taken not to have happened).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::durable::store::{Store, Tx};

/// Forwards connections to the PostgreSQL server of `url`; once `armed`,
/// the first `COMMIT` a client sends reaches the server, and then that
/// connection is cut with the server's answer unread.
async fn proxy(url: &str, armed: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let after_scheme = url.split_once("://").unwrap().1;
    let host_port = after_scheme.split(['/', '?']).next().unwrap().rsplit('@').next().unwrap().to_owned();
    let server_addr = if host_port.contains(':') { host_port.clone() } else { format!("{host_port}:5432") };
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(&server_addr).await.unwrap();
            tokio::spawn(relay(client, server, Arc::clone(&armed)));
        }
    });
    url.replacen(&host_port, &format!("127.0.0.1:{port}"), 1)
}

async fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let answers = {
        let cut = Arc::clone(&cut);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if cut.load(Ordering::SeqCst) || client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let commit = buf[..n].windows(7).any(|w| w == b"COMMIT\0");
        if commit && armed.swap(false, Ordering::SeqCst) {
            cut.store(true, Ordering::SeqCst);
            let _ = server_write.write_all(&buf[..n]).await;
            // Let the server commit and answer; the answer is dropped.
            tokio::time::sleep(Duration::from_millis(300)).await;
            break;
        }
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    answers.abort();
}

async fn exec(tx: &mut Tx, sql: &'static str) -> Result<u64, weir::error::BoxError> {
    match tx {
        Tx::Postgres(conn) => Ok(sqlx::query(sql).execute(&mut *conn).await?.rows_affected()),
        #[allow(unreachable_patterns)]
        _ => unreachable!("a PostgreSQL store"),
    }
}

async fn rows(url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM paid").fetch_one(&mut conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_is_reported_as_what_the_server_did() {
    let test = "a_commit_whose_answer_is_lost_is_reported_as_what_the_server_did";
    let Some(url) = crate::support::stores::postgres_url(test).await else { return };
    let armed = Arc::new(AtomicBool::new(false));
    let through_proxy = proxy(&url, Arc::clone(&armed)).await;
    let store = Store::open(&through_proxy).await.unwrap();
    let made = store.commit_effect(|tx| Box::pin(exec(tx, "CREATE TABLE paid (id INT PRIMARY KEY)"))).await;
    assert!(made.is_ok(), "{made:?}");

    // The server commits; its answer never arrives.
    armed.store(true, Ordering::SeqCst);
    let paid = store.commit_effect(|tx| Box::pin(exec(tx, "INSERT INTO paid VALUES (1)"))).await;
    assert!(!armed.load(Ordering::SeqCst), "the proxy cut a COMMIT");
    assert_eq!(rows(&url).await, 1, "the server committed the write");
    assert_eq!(paid.ok(), Some(1), "a committed write is reported committed, with its output");

    // The writer carries on, on a new connection.
    let next = store.commit_effect(|tx| Box::pin(exec(tx, "INSERT INTO paid VALUES (2)"))).await;
    assert_eq!(next.ok(), Some(1));
    assert_eq!(rows(&url).await, 2);
}

/// A `COMMIT` the server refuses (a deferred constraint checked at commit)
/// is asked about like a lost one, and reported failed: nothing of it is
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_server_refuses_is_reported_failed() {
    let test = "a_commit_the_server_refuses_is_reported_failed";
    let Some(url) = crate::support::stores::postgres_url(test).await else { return };
    let store = Store::open(&url).await.unwrap();
    let made = store
        .commit_effect(|tx| {
            Box::pin(exec(tx, "CREATE TABLE paid (id INT, CONSTRAINT once UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)"))
        })
        .await;
    assert!(made.is_ok(), "{made:?}");
    let twice = store
        .commit_effect(|tx| {
            Box::pin(async move {
                exec(tx, "INSERT INTO paid VALUES (1)").await?;
                exec(tx, "INSERT INTO paid VALUES (1)").await
            })
        })
        .await;
    let error = twice.expect_err("the second row breaks the constraint at COMMIT");
    assert!(error.to_string().contains("once"), "the server's reason is kept: {error}");
    assert_eq!(rows(&url).await, 0);
    let next = store.commit_effect(|tx| Box::pin(exec(tx, "INSERT INTO paid VALUES (3)"))).await;
    assert_eq!(next.ok(), Some(1), "the writer carries on");
}
