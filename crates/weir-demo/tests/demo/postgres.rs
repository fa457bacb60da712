//! Several `weir-demo run` on one PostgreSQL database: they share the work, take
//! over a killed one's sagas while they run, and a database's simulated
//! environment holds for every command on it. Needs
//! `WEIR_TEST_POSTGRES_URL`; without it each test says it was skipped.

use super::*;

/// A fresh database on the test server, dropped when the guard is.
pub(crate) struct TestDatabase {
    pub(crate) admin: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    pub(crate) fn create(test: &str) -> Option<Self> {
        let Ok(admin) = std::env::var("WEIR_TEST_POSTGRES_URL") else {
            eprintln!("{test}: skipped: set WEIR_TEST_POSTGRES_URL to run it");
            return None;
        };
        let name = format!("weir_cli_test_{}_{:08x}", std::process::id(), fastrand::u32(..));
        let created = Command::new("psql")
            .args([admin.as_str(), "-c", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql");
        assert!(created.status.success(), "{}", stderr(&created));
        let url = format!("{}/{name}", admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin));
        Some(Self { admin, name, url })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([self.admin.as_str(), "-c", &format!("DROP DATABASE {} WITH (FORCE)", self.name)])
            .output();
    }
}

fn worker(dir: &Path, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir-demo"))
        .current_dir(dir)
        .args(["run", "orders.jsonl", "--database-url", url, "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A run that ends while another worker still finishes its sagas says so
/// with exit 5 (not settled); any other exit is a failure.
fn assert_done(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(matches!(out.status.code(), Some(0 | 5)), "{:?}: {}", out.status, stderr(&out));
}

#[test]
fn two_workers_share_one_postgres_database() {
    let Some(db) = TestDatabase::create("two_workers_share_one_postgres_database") else { return };
    let dir = tempfile::tempdir().unwrap();
    assert!(weir(dir.path(), &["generate", "orders.jsonl", "--orders", "800", "--tenants", "4"]).status.success());
    let workers: Vec<_> = (0..2).map(|_| worker(dir.path(), &db.url)).collect();
    for w in workers {
        assert_done(w);
    }
    assert_accounted(&report(dir.path(), &["--database-url", &db.url]), 800);
}

/// Two workers without `--worker-id` (each its own), one SIGKILLed and
/// restarted twice: the live ones take over the dead one's sagas while
/// they run, and when both have ended no saga is left in progress (before:
/// both exited 0 with 1,042 sagas stuck under dead workers' expired leases).
#[test]
fn a_killed_workers_sagas_are_taken_over_while_the_others_run() {
    let Some(db) = TestDatabase::create("a_killed_workers_sagas_are_taken_over_while_the_others_run") else { return };
    let dir = tempfile::tempdir().unwrap();
    let args = ["generate", "orders.jsonl", "--orders", "3000", "--tenants", "4", "--faults", "0.02"];
    assert!(weir(dir.path(), &args).status.success());
    let steady = worker(dir.path(), &db.url);
    for pause in [600, 900] {
        let mut doomed = worker(dir.path(), &db.url);
        std::thread::sleep(Duration::from_millis(pause));
        doomed.kill().unwrap();
        let _ = doomed.wait();
    }
    let last = worker(dir.path(), &db.url);
    assert_done(steady);
    assert_done(last);
    let report = report(dir.path(), &["--database-url", &db.url]);
    assert_accounted(&report, 3000);
    assert!(report["invariants"]["charged_twice"].as_array().unwrap().is_empty());
}

/// The simulated environment belongs to the database: `resume` after a
/// kill keeps the down tenant down (before, it charged that tenant's
/// orders), and a run with other options is refused.
#[test]
fn resume_keeps_the_databases_environment() {
    let Some(db) = TestDatabase::create("resume_keeps_the_databases_environment") else { return };
    let dir = tempfile::tempdir().unwrap();
    assert!(weir(dir.path(), &["generate", "orders.jsonl", "--orders", "2000", "--tenants", "2"]).status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir-demo"))
        .current_dir(dir.path())
        .args([
            "run",
            "orders.jsonl",
            "--database-url",
            &db.url,
            "--down-tenant",
            "merchant-01",
            "--worker-id",
            "w1",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    child.kill().unwrap();
    let _ = child.wait();
    let other = weir(dir.path(), &["run", "orders.jsonl", "--database-url", &db.url, "--down-tenant", "merchant-00"]);
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    assert!(stderr(&other).contains("was first run with --faults 0 --down-tenant merchant-01"), "{}", stderr(&other));
    // Wait out the killed worker's leases, then resume.
    std::thread::sleep(Duration::from_secs(11));
    let resumed = weir(dir.path(), &["resume", "--database-url", &db.url]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stdout(&resumed).contains("--down-tenant merchant-01"), "{}", stdout(&resumed));
    let (_, report) = report_with_code(dir.path(), &["--database-url", &db.url]);
    assert_eq!(report["tenants"]["merchant-01"]["completed"], 0, "the down tenant stays down: {report}");
    assert_eq!(report["totals"]["in_progress"], 0, "{report}");
    let out = weir(dir.path(), &["run", "orders.jsonl", "--database-url", &db.url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = self::report(dir.path(), &["--database-url", &db.url]);
    assert_accounted(&report, 2000);
    assert_eq!(report["tenants"]["merchant-01"]["completed"], 0);
}
