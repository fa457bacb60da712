//! The demo split over processes on NATS JetStream and PostgreSQL:
//! `weir-demo publish`, then four `weir-demo work` on one stream, two of
//! them SIGKILLed and restarted, one SIGSTOPped past its leases. Needs
//! `WEIR_TEST_NATS_URL` and `WEIR_TEST_POSTGRES_URL`; skipped without.

use super::*;
use crate::postgres::TestDatabase;

fn nats_url(test: &str) -> Option<String> {
    let url = std::env::var("WEIR_TEST_NATS_URL").ok();
    if url.is_none() {
        eprintln!("{test}: skipped: set WEIR_TEST_NATS_URL to run it");
    }
    url
}

fn work(dir: &Path, db: &str, nats: &str, stream: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir-demo"))
        .current_dir(dir)
        .args(["work", "--database-url", db, "--nats-url", nats, "--stream", stream, "--quiet"])
        .args(["--ack-wait", "2", "--idle-exit", "14", "--faults", "0.02"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn publish_raw(nats: &str, subject: &str, payloads: &[&[u8]]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let context = async_nats::jetstream::new(async_nats::connect(nats).await.unwrap());
        for payload in payloads {
            context.publish(subject.to_owned(), payload.to_vec().into()).await.unwrap().await.unwrap();
        }
    });
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// How many letters the dead-letter stream holds, and their reasons.
fn dead_letter_stream(nats: &str, stream: &str) -> Vec<String> {
    use weir::durable::dlq::DeadLetterQueue;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(nats).await.unwrap();
        let context = async_nats::jetstream::new(client);
        let name = format!("{stream}_DLQ");
        let dlq =
            weir::broker::nats::JetStreamDlq::create(context.clone(), &name, &format!("{name}.letters")).await.unwrap();
        let letters = dlq.list().await.unwrap();
        let _ = context.delete_stream(stream).await;
        let _ = context.delete_stream(&name).await;
        letters.into_iter().map(|l| l.error_chain.last().cloned().unwrap_or_default()).collect()
    })
}

#[test]
fn nats_four_workers_split_the_orders_through_kills_and_a_stopped_worker() {
    let test = "nats_four_workers_split_the_orders_through_kills_and_a_stopped_worker";
    let Some(nats) = nats_url(test) else { return };
    let Some(db) = TestDatabase::create(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let args = ["generate", "orders.jsonl", "--orders", "3000", "--tenants", "4", "--faults", "0.02"];
    assert!(weir(dir.path(), &args).status.success());
    // The same file through one process on SQLite: how many lines are
    // dead letters (malformed, or conflicting with an earlier order).
    let alone = weir(dir.path(), &["run", "orders.jsonl", "--db", "alone.db", "--faults", "0.02"]);
    assert!(alone.status.success(), "{}", stderr(&alone));
    let expected_letters = report(dir.path(), &["--db", "alone.db"])["totals"]["dead_lettered"].as_u64().unwrap();
    assert!(expected_letters > 0);

    let stream = format!("ORDERS_{:08x}", fastrand::u32(..));
    let published = weir(dir.path(), &["publish", "orders.jsonl", "--nats-url", &nats, "--stream", &stream]);
    assert!(published.status.success(), "{}", stderr(&published));
    // Published twice (a publisher that crashed and ran again): stored once.
    let again = weir(dir.path(), &["publish", "orders.jsonl", "--nats-url", &nats, "--stream", &stream]);
    assert!(again.status.success(), "{}", stderr(&again));

    // Messages that are not the pipeline's: bad JSON, the wrong shape, and
    // a huge one. Each is dead-lettered with its reason, once.
    let junk: [&[u8]; 3] = [b"{not json", br#"{"number": "seven"}"#, &vec![b'x'; 700_000]];
    publish_raw(&nats, &format!("{stream}.lines"), &junk);
    let expected_letters = expected_letters + junk.len() as u64;

    let mut workers: Vec<Child> = (0..4).map(|_| work(dir.path(), &db.url, &nats, &stream)).collect();
    std::thread::sleep(Duration::from_millis(300));
    signal(&workers[3], "STOP");
    for (victim, pause) in [(0, 400), (1, 700)] {
        std::thread::sleep(Duration::from_millis(pause));
        signal(&workers[victim], "KILL");
        let _ = workers[victim].wait();
        workers[victim] = work(dir.path(), &db.url, &nats, &stream);
    }
    // Every worker's database connections cut, twice: they reconnect; an
    // order whose write failed is nak'ed and comes back.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(500));
        let cut = Command::new("psql")
            .args([db.admin.as_str(), "-tAc"])
            .arg(format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
                db.name
            ))
            .output()
            .unwrap();
        assert!(cut.status.success(), "{}", stderr(&cut));
    }
    // Past its leases (10 s) and its messages' ack_wait (2 s): the others
    // took its orders over; what it writes now must be fenced off.
    std::thread::sleep(Duration::from_secs(10));
    signal(&workers[3], "CONT");
    let mut figures = Vec::new();
    for worker in workers {
        let out = worker.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        figures.push(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
    }

    let letters = dead_letter_stream(&nats, &stream);
    let mut reasons: Vec<&String> = letters.iter().collect();
    reasons.sort();
    reasons.dedup();
    let (code, report) = report_with_code(dir.path(), &["--database-url", &db.url]);
    assert_eq!(
        code,
        Some(0),
        "report: {report}\n{} dead letters: {:?}",
        letters.len(),
        &reasons[..reasons.len().min(12)]
    );
    let t = &report["totals"];
    let sagas: u64 = ["completed", "compensated", "failed", "duplicates"].iter().map(|k| t[k].as_u64().unwrap()).sum();
    assert_eq!(letters.len() as u64, expected_letters, "exactly the poison lines are dead letters: {letters:?}");
    assert_eq!(sagas + expected_letters, 3000 + 3, "every order accounted for once: {t}");
    for reason in ["not a line of the demo", "expected"] {
        assert!(letters.iter().any(|l| l.contains(reason)), "{reason}: {letters:?}");
    }
    assert_eq!(t["in_progress"], 0);
    assert!(report["invariants"]["charged_twice"].as_array().unwrap().is_empty(), "nobody charged twice");
    assert_eq!(report["judgement"], "holds", "{}", report["invariants"]);
    // Redeliveries are bounded by what was in flight: the workers took
    // each line once, plus what the killed and stopped ones held.
    let taken: u64 = figures.iter().map(|f| f["taken"].as_u64().unwrap()).sum();
    assert!(taken < 3000 + 3 * 4096, "taken {taken}: {figures:?}");
}
