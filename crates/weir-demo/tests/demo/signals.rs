//! Ctrl-C and SIGTERM: the first drains and reports, a second stops at
//! once; both leave a state the next run finishes from.

use super::*;

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -{name}");
}

/// Waits until the run has handled some lines (its cursor moved), so the
/// signal lands mid-run. Reads the cursor on a read-only connection of its
/// own: opening a `Store` on the running demo's file every poll migrated
/// and wrote beside it, and could fail with the file busy.
fn wait_until_started(dir: &Path) {
    use sqlx::Connection;
    let path = dir.join("weir.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let line = || {
        runtime.block_on(async {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).read_only(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await.ok()?;
            let position: String =
                sqlx::query_scalar("SELECT position FROM weir_cursors WHERE name LIKE '%/orders.jsonl'")
                    .fetch_optional(&mut conn)
                    .await
                    .ok()??;
            serde_json::from_str::<serde_json::Value>(&position).ok()?["line"].as_u64()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // The run creates the file; this only reads one that is there.
    while !(path.exists() && line().unwrap_or(0) > 0) {
        assert!(std::time::Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first SIGINT stops reading, lets the orders in flight finish,
/// saves the cursor and prints the report (exit 130); before, the process
/// died at once with ~500 sagas in flight.
#[test]
fn the_first_signal_drains_and_reports_and_a_rerun_finishes() {
    for name in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        // Long enough that a signal lands mid-run: 2,048 orders are in
        // flight at once and the cursor is first saved after 500 ms.
        generate(dir.path(), "orders.jsonl", 12_000);
        let child = spawn(dir.path(), &["run", "orders.jsonl"]);
        wait_until_started(dir.path());
        signal(&child, name);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "SIG{name}: {}", stderr(&out));
        assert!(stderr(&out).contains("stopping: no new lines are read"), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("stopped by a signal after the orders in flight finished"), "{text}");
        let (_, drained) = report_with_code(dir.path(), &[]);
        assert_eq!(drained["totals"]["in_progress"], 0, "in-flight orders finished: {drained}");
        let handled = drained["lines_handled"].as_u64().unwrap();
        assert!(handled < 12_000, "the run stopped early ({handled} lines)");
        // Everything taken in was finished and the cursor saved with it: a
        // rerun re-reads nothing that was done.
        assert_eq!(drained["lines_accounted"].as_u64().unwrap(), handled, "{drained}");
        let out = weir(dir.path(), &["run", "orders.jsonl"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_accounted(&report(dir.path(), &[]), 12_000);
    }
}

/// A second signal stops at once (exit 130); the next run resumes the
/// sagas left in flight and the rest of the input.
#[test]
fn a_second_signal_stops_at_once_and_a_rerun_finishes() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "orders.jsonl", 12_000);
    let child = spawn(dir.path(), &["run", "orders.jsonl"]);
    wait_until_started(dir.path());
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(20));
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopping at once"), "{}", stderr(&out));
    let out = weir(dir.path(), &["run", "orders.jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_accounted(&report(dir.path(), &[]), 12_000);
}
