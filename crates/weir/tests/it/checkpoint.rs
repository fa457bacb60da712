//! Behaviour of `weir::durable::checkpoint` (seed task 17).
#![cfg(feature = "sqlite")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::durable::checkpoint::{ChannelSource, CursorConsumer, JsonlFileSource, LineFileSource, OutboxSource};
use weir::durable::store::Store;
use weir::error::BoxError;

async fn feed(n: u32) -> ChannelSource<u32> {
    let (tx, rx) = tokio::sync::mpsc::channel(n as usize + 1);
    for i in 1..=n {
        tx.send(i).await.unwrap();
    }
    ChannelSource::new(rx)
}

#[tokio::test]
async fn a_restart_resumes_after_the_last_checkpoint() {
    let store = Store::memory();
    let consumer = CursorConsumer::builder(store.clone(), "events").every(10).build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    // First run: the handler fails on event 25; the cursor stays at 20.
    let err = consumer
        .run(&mut feed(50).await, |n| {
            s.lock().unwrap().push(n);
            async move { if n == 25 { Err::<(), BoxError>("crash".into()) } else { Ok(()) } }
        })
        .await
        .unwrap_err();
    assert_eq!(err.report.saved_at, serde_json::json!(24), "events 1..=24 were done in order");
    assert_eq!(store.cursor("events").await.unwrap(), Some(serde_json::json!(24)));
    // Second run: the producer sends everything again; 1..=24 are skipped.
    let s = seen.clone();
    let report = consumer
        .run(&mut feed(50).await, |n| {
            s.lock().unwrap().push(n);
            async { Ok::<(), BoxError>(()) }
        })
        .await
        .unwrap();
    assert_eq!(report.processed, 26);
    assert_eq!(report.checkpoints, 3, "at 34, 44, and the end (50)");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|&&n| n == 25).count(), 2, "event 25 was redelivered");
    assert_eq!(seen.len(), 25 + 26);
}

#[tokio::test(start_paused = true)]
async fn a_slow_stream_is_checkpointed_by_time() {
    let store = Store::memory();
    let consumer =
        CursorConsumer::builder(store.clone(), "slow").every(1000).interval(Duration::from_secs(1)).build().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(10);
    tokio::spawn(async move {
        for i in 0..10u32 {
            tx.send(i).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let report = consumer.run(&mut ChannelSource::new(rx), |_| async { Ok::<(), BoxError>(()) }).await.unwrap();
    assert_eq!(report.processed, 10);
    assert!(report.checkpoints >= 3, "every second while events flow: {report:?}");
}

type Ids = Arc<Mutex<Vec<u64>>>;

/// A handler that notes each JSON event's `id`, and what it noted.
fn id_collector() -> (Ids, impl Fn(serde_json::Value) -> std::future::Ready<Result<(), BoxError>> + Clone) {
    let ids = Ids::default();
    let noted = ids.clone();
    let handler = move |e: serde_json::Value| {
        noted.lock().unwrap().push(e["id"].as_u64().unwrap());
        std::future::ready(Ok::<(), BoxError>(()))
    };
    (ids, handler)
}

#[tokio::test]
async fn a_growing_jsonl_file_is_read_by_byte_offset_and_a_partial_line_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, "{\"id\":1}\n{\"id\":2}\n{\"id\":3").unwrap(); // 3 is still being written
    let store = Store::memory();
    let consumer = CursorConsumer::builder(store.clone(), "file").every(1).build().unwrap();
    let (ids, handler) = id_collector();
    let mut source = JsonlFileSource::<serde_json::Value>::new(&path).growing();
    consumer.run(&mut source, handler.clone()).await.unwrap();
    assert_eq!(store.cursor("file").await.unwrap(), Some(serde_json::json!(18)));
    std::fs::write(&path, "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n").unwrap();
    consumer.run(&mut source, handler).await.unwrap();
    assert_eq!(*ids.lock().unwrap(), [1, 2, 3, 4]);
}

/// A complete file's last line needs no newline: it is read like any other
/// and the cursor ends at the end of the file (it was dropped before).
#[tokio::test]
async fn the_last_line_of_a_complete_file_is_read_without_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, "{\"id\":1}\r\n{\"id\":2}").unwrap();
    let store = Store::memory();
    let consumer = CursorConsumer::builder(store.clone(), "file").every(1).build().unwrap();
    let (ids, handler) = id_collector();
    let report = consumer.run(&mut JsonlFileSource::<serde_json::Value>::new(&path), handler.clone()).await.unwrap();
    assert_eq!(report.processed, 2);
    assert_eq!(*ids.lock().unwrap(), [1, 2]);
    assert_eq!(store.cursor("file").await.unwrap(), Some(serde_json::json!(18)));
    let again = consumer.run(&mut LineFileSource::new(&path), |_| async { Ok::<(), BoxError>(()) }).await.unwrap();
    assert_eq!(again.processed, 0, "nothing is read twice");
}

#[tokio::test]
async fn a_malformed_json_line_is_named_by_file_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, "{\"id\":1}\nnot json\n").unwrap();
    let consumer = CursorConsumer::builder(Store::memory(), "bad").build().unwrap();
    let err = consumer
        .run(&mut JsonlFileSource::<serde_json::Value>::new(&path), |_| async { Ok::<(), BoxError>(()) })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad.jsonl at byte 9: malformed line"), "{text}");
    assert_eq!(err.report.processed, 1);
    let missing = consumer
        .run(&mut LineFileSource::new(dir.path().join("missing")), |_| async { Ok::<(), BoxError>(()) })
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("cannot open"), "{missing}");
}

/// A line longer than the limit ends the read with an error naming the
/// file, the byte and the fix, after the lines before it; it is never read
/// into memory whole (before, `lines_from` had no limit: a file without
/// newlines was one line as large as the file). Lines of exactly the limit
/// pass, with `\n` or `\r\n`.
#[tokio::test]
async fn a_line_longer_than_the_limit_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.txt");
    let (fits, too_long) = ("a".repeat(16), "b".repeat(17));
    std::fs::write(&path, format!("{fits}\n{fits}\r\n{too_long}\nafter\n")).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = CursorConsumer::builder(Store::memory(), "long").every(1).build().unwrap();
    let s = seen.clone();
    let err = consumer
        .run(&mut LineFileSource::new(&path).max_line_bytes(16), move |line: String| {
            s.lock().unwrap().push(line.len());
            async { Ok::<(), BoxError>(()) }
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("long.txt at byte 35: line longer than 16 bytes; raise max_line_bytes"), "{text}");
    assert_eq!(*seen.lock().unwrap(), [16, 16], "the lines before it were handled");
    let all = consumer.run(&mut LineFileSource::new(&path), |_| async { Ok::<(), BoxError>(()) }).await.unwrap();
    assert_eq!(all.processed, 2, "with the default limit the rest reads on");
}

#[tokio::test]
async fn an_outbox_table_is_read_by_increasing_id_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display())).await.unwrap();
    sqlx::query("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)").execute(&pool).await.unwrap();
    for i in 1..=1200 {
        sqlx::query("INSERT INTO outbox (payload) VALUES (?1)")
            .bind(format!("event {i}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    // weir keeps its state in its own file: it refuses a database that
    // holds other tables and none of its own.
    assert!(Store::open(db.to_str().unwrap()).await.is_err());
    let store = Store::open(dir.path().join("weir.db").to_str().unwrap()).await.unwrap();
    let consumer = CursorConsumer::builder(store.clone(), "outbox").every(500).build().unwrap();
    let mut source = OutboxSource::sqlite(pool.clone(), "outbox").unwrap();
    let report = consumer.run(&mut source, |_| async { Ok::<(), BoxError>(()) }).await.unwrap();
    assert_eq!((report.processed, report.saved_at.clone()), (1200, serde_json::json!(1200)));
    sqlx::query("INSERT INTO outbox (payload) VALUES ('late')").execute(&pool).await.unwrap();
    let report = consumer
        .run(
            &mut source,
            |p| async move { if p == "late" { Ok::<(), BoxError>(()) } else { Err("redelivered".into()) } },
        )
        .await
        .unwrap();
    assert_eq!(report.processed, 1);
    assert!(OutboxSource::sqlite(pool, "outbox; DROP TABLE x").is_err(), "table names are checked");
}

#[test]
fn bad_settings_are_configuration_errors() {
    let store = Store::memory();
    assert_eq!(CursorConsumer::builder(store.clone(), "x").every(0).build().unwrap_err().setting(), "checkpoint every");
    assert!(CursorConsumer::builder(store.clone(), "x").interval(Duration::ZERO).build().is_err());
    assert!(CursorConsumer::builder(store, "x").concurrency(0).build().is_err());
}

/// The consumer process, when the crash test starts this binary as one.
#[test]
fn consumer_worker_entry() {
    let Ok(db) = std::env::var("WEIR_CONSUMER_DB") else { return };
    let events = std::env::var("WEIR_CONSUMER_EVENTS").unwrap();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
        let store = Store::open(&db).await.unwrap();
        let log = sqlx::SqlitePool::connect(&format!("sqlite://{db}")).await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS processed (id INTEGER NOT NULL)").execute(&log).await.unwrap();
        let consumer = CursorConsumer::builder(store, "crash").every(CHECKPOINT_EVERY).build().unwrap();
        consumer
            .run(&mut JsonlFileSource::<serde_json::Value>::new(&events), |e| {
                let log = log.clone();
                async move {
                    sqlx::query("INSERT INTO processed (id) VALUES (?1)").bind(e["id"].as_i64()).execute(&log).await?;
                    Ok::<(), BoxError>(())
                }
            })
            .await
            .unwrap();
    });
}

const CHECKPOINT_EVERY: u64 = 100;

/// SIGKILL the consumer mid-stream many times; after the restarts every
/// event was processed at least once, and each crash redelivered at most
/// one checkpoint interval of events.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_event_and_bounds_redelivery() {
    use sqlx::Row;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (db, events) = (dir.path().join("weir.db"), dir.path().join("events.jsonl"));
    let lines: String = (1..=5000).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    std::fs::write(&events, lines).unwrap();
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "checkpoint::consumer_worker_entry", "--nocapture", "--test-threads=1"])
            .env("WEIR_CONSUMER_DB", &db)
            .env("WEIR_CONSUMER_EVENTS", &events)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut rng = fastrand::Rng::with_seed(17);
    let mut crashes = 0;
    for _ in 0..12 {
        let mut child = spawn();
        std::thread::sleep(Duration::from_millis(rng.u64(30..250)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            crashes += 1;
        }
        let _ = child.wait();
    }
    assert!(spawn().wait().unwrap().success());
    let log = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let row = sqlx::query("SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM processed")
        .fetch_one(&log)
        .await
        .unwrap();
    let (total, distinct, min, max): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    let redelivered = total - distinct;
    println!("{crashes} crashes; 5000 events; processed {total} times, {distinct} distinct; redelivered {redelivered}");
    assert_eq!((distinct, min, max), (5000, 1, 5000), "every event processed at least once");
    assert!(crashes >= 5, "the test crashed the consumer mid-stream ({crashes} times)");
    assert!(
        redelivered <= crashes * CHECKPOINT_EVERY as i64,
        "redelivery bounded by the checkpoint interval per crash"
    );
}
