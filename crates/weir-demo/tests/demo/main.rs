//! End-to-end tests of the `weir-demo` binary on small generated inputs:
//! one test binary, a module per subject. The state a run leaves is read
//! with the library (as the `weir` command reads it; its own tests are in
//! `crates/weir-cli`).

mod input;
mod nats;
mod operators;
mod parser_properties;
mod parsers;
mod postgres;
mod signals;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// Opens the SQLite file `db` in `dir` with the library.
fn with_store<T>(dir: &Path, db: &str, f: impl AsyncFnOnce(weir::durable::store::Store) -> T) -> T {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = weir::durable::store::Store::open(dir.join(db).to_str().unwrap()).await.unwrap();
        f(store).await
    })
}

/// The dead letters of `db` in `dir`, one per line: `#ID line N: reason`.
fn dead_letters(dir: &Path, db: &str) -> String {
    with_store(dir, db, async |store| {
        let mut lines = String::new();
        for queue in store.dead_letter_queues().await.unwrap() {
            for e in store.dead_letters::<serde_json::Value>(&queue.name).list().await.unwrap() {
                let reason = e.error_chain.last().cloned().unwrap_or_default();
                lines += &format!("#{} line {} {reason}\n", e.id, e.item["number"]);
            }
        }
        lines
    })
}

/// Makes the next run on `input` read it from its start: removes its
/// cursor (what `weir cursors reset NAME` does).
fn read_from_start(dir: &Path, input: &str) {
    with_store(dir, "weir.db", async |store| {
        let cursors = store.cursors().await.unwrap();
        let cursor = cursors.iter().find(|c| c.name.ends_with(&format!("/{input}"))).expect("the input's cursor");
        assert!(store.delete_cursor(&cursor.name).await.unwrap());
    });
}

/// Runs `weir-demo ARGS --quiet` in `dir`.
fn weir(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir-demo")).current_dir(dir).args(args).arg("--quiet").output().expect("run weir")
}

/// Starts `weir ARGS` in `dir` (not quiet), output piped.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir-demo"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `weir report --json EXTRA`: its exit code and the report.
fn report_with_code(dir: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec!["report", "--json"];
    args.extend_from_slice(extra);
    let out = weir(dir, &args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report JSON: {e}: {}", stderr(&out)));
    (out.status.code(), report)
}

/// The report of a settled database whose invariants hold (exit 0).
fn report(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let (code, report) = report_with_code(dir, extra);
    assert_eq!(code, Some(0), "report: {report}");
    report
}

/// Writes `name` in `dir`: `orders` valid generated orders (2 tenants, no
/// faults).
fn generate(dir: &Path, name: &str, orders: u32) -> Vec<u8> {
    let count = orders.to_string();
    let args = ["generate", name, "--orders", &count, "--tenants", "2", "--faults", "0"];
    assert!(weir(dir, &args).status.success());
    std::fs::read(dir.join(name)).unwrap()
}

/// Every line is accounted for once: completed, compensated, failed,
/// duplicate or dead-lettered; nothing is left in progress; every line was
/// handled; and the judgement is that every invariant holds.
fn assert_accounted(report: &serde_json::Value, lines: u64) {
    let t = &report["totals"];
    let sum: u64 = ["completed", "compensated", "failed", "duplicates", "dead_lettered"]
        .iter()
        .map(|k| t[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, lines, "totals {t}");
    assert_eq!(t["in_progress"], 0);
    assert_eq!(report["lines_handled"], lines, "{report}");
    assert_eq!(report["lines_accounted"], lines, "{report}");
    assert_eq!(report["judgement"], "holds", "invariants {}", report["invariants"]);
}

#[test]
fn the_demo_runs_end_to_end_and_its_report_adds_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(dir.path(), &["demo", "--orders", "600", "--tenants", "4", "--faults", "0.05", "--seed", "7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ledger invariants") && text.contains("merchant-03"), "{text}");
    let report = report(dir.path(), &[]);
    assert_accounted(&report, 600);
    assert!(report["totals"]["completed"].as_u64().unwrap() > 300);
    assert_eq!(report["tenants"]["merchant-03"]["completed"], 0, "the tenant whose provider is down completes nothing");
    assert!(report["tenants"]["(rejected lines)"]["dead_lettered"].as_u64().unwrap() > 0);
    let listed = dead_letters(dir.path(), "weir.db");
    assert!(
        listed.contains("line ") && (listed.contains("not a JSON order") || listed.contains("panicked")),
        "{listed}"
    );
    let before = dead_letters(dir.path(), "weir.db").lines().count();
    let replay = weir(dir.path(), &["replay", "--all"]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert!(
        String::from_utf8_lossy(&replay.stdout).contains(&format!("{before} line(s) still fail")),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );
    let after = dead_letters(dir.path(), "weir.db").lines().count();
    assert_eq!(before, after, "lines that still fail are back in the queue, none lost");
}

#[test]
fn bad_input_gives_one_clear_line_and_an_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let missing = weir(dir.path(), &["run", "no-such-orders.jsonl"]);
    assert_eq!(missing.status.code(), Some(3));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no-such-orders.jsonl") && err.contains("no such file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    assert_eq!(weir(dir.path(), &["run", "--no-such-flag"]).status.code(), Some(2));

    std::fs::write(dir.path().join("garbage.db"), vec![1u8; 4096]).unwrap();
    let garbage = weir(dir.path(), &["report", "--db", "garbage.db"]);
    assert_eq!(garbage.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("not a weir database"));

    let unreachable = weir(
        dir.path(),
        &["report", "--database-url", "postgres://app:s3cret@127.0.0.1:1/orders", "--connect-timeout", "1"],
    );
    assert_eq!(unreachable.status.code(), Some(3));
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(err.contains("app:***@127.0.0.1:1") && !err.contains("s3cret"), "{err}");
}

#[test]
fn a_run_killed_at_random_moments_finishes_on_rerun_with_the_ledger_intact() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        weir(dir.path(), &["generate", "orders.jsonl", "--orders", "1500", "--tenants", "5", "--faults", "0.03"])
            .status
            .success()
    );
    let mut rng = fastrand::Rng::with_seed(20);
    let mut kills = 0;
    for _ in 0..4 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir-demo"))
            .current_dir(dir.path())
            .args(["run", "orders.jsonl", "--faults", "0.03", "--down-tenant", "merchant-04", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(100..700)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let _ = child.wait();
    }
    let out = weir(dir.path(), &["run", "orders.jsonl", "--faults", "0.03", "--down-tenant", "merchant-04"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = report(dir.path(), &[]);
    assert_accounted(&report, 1500);
    assert!(report["invariants"]["charged_twice"].as_array().unwrap().is_empty());
    println!("killed {kills} times; report totals {}", report["totals"]);
    assert!(kills >= 1, "the run was killed at least once mid-way");

    // Each bad line is parked once, however often it was re-read (it was
    // stored once per reading before: 363 letters for 155 lines).
    let parked = dead_letter_lines(dir.path());
    let distinct: std::collections::BTreeSet<&String> = parked.iter().collect();
    assert_eq!(parked.len(), distinct.len(), "a line parked twice: {parked:?}");
    assert_eq!(parked.len() as u64, report["totals"]["dead_lettered"].as_u64().unwrap());
    assert!(!parked.is_empty());
    // Reading the whole input again (cursor reset) doubles nothing.
    read_from_start(dir.path(), "orders.jsonl");
    let out = weir(dir.path(), &["run", "orders.jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dead_letter_lines(dir.path()), parked);
    assert_accounted(&self::report(dir.path(), &[]), 1500);
}

/// The line numbers of the dead letters, in order.
fn dead_letter_lines(dir: &Path) -> Vec<String> {
    dead_letters(dir, "weir.db")
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "line").nth(1).map(str::to_owned))
        .collect()
}

/// Writes `orders.jsonl` in `dir`: `orders` valid generated orders (2
/// tenants, no faults) with `line` inserted after the first `after`.
fn orders_with_a_bad_line(dir: &Path, orders: u32, after: usize, line: &[u8]) {
    let mut bytes = generate(dir, "orders.jsonl", orders);
    let at = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(after - 1).unwrap().0 + 1;
    bytes.splice(at..at, line.iter().copied());
    std::fs::write(dir.join("orders.jsonl"), bytes).unwrap();
}

#[test]
fn an_invalid_utf8_line_is_dead_lettered_and_the_rest_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    orders_with_a_bad_line(dir.path(), 50, 25, b"{\"order_id\": \"\xff\xfe\"}\n");
    let out = weir(dir.path(), &["run", "orders.jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = report(dir.path(), &[]);
    assert_accounted(&report, 51);
    let dlq = dead_letters(dir.path(), "weir.db");
    assert!(dlq.contains("line 26") && dlq.contains("not valid UTF-8"), "{dlq}");
}

/// A line far over the limit (3 MiB, no structure) is never held whole: it
/// is dead-lettered with its length and the limit, and the lines after it
/// are processed. `dlq replay` keeps it parked (only its start was kept).
#[test]
fn a_huge_line_is_dead_lettered_with_its_length_and_the_rest_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    let mut huge = vec![b'x'; 3 << 20];
    huge.push(b'\n');
    orders_with_a_bad_line(dir.path(), 20, 10, &huge);
    let out = weir(dir.path(), &["run", "orders.jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_accounted(&report(dir.path(), &[]), 21);
    let dlq = dead_letters(dir.path(), "weir.db");
    assert!(dlq.contains("line 11") && dlq.contains("line of 3145729 bytes is over the limit of 1048576"), "{dlq}");
    let replay = weir(dir.path(), &["replay", "--all"]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let dlq = dead_letters(dir.path(), "weir.db");
    assert!(dlq.contains("line 11"), "a cut line is never replayed as if whole: {dlq}");

    // A lower limit is a flag away; 0 is refused at once.
    let out = weir(dir.path(), &["run", "orders.jsonl", "--max-line-bytes", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A small filesystem of its own (tmpfs), unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` at `path`; `None` where mounting is not
    /// allowed (not root, or no mount namespace rights).
    fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk { path: path.to_owned() })
    }

    fn grow(&self, size: &str) {
        let status =
            Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.path).status().unwrap();
        assert!(status.success(), "remount {}", self.path.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A full disk under the database: `weir-demo run` stops with exit 3 and a
/// message naming the database; once there is space again, `weir-demo run`
/// finishes the same input with nothing lost and the invariants holding.
#[test]
fn a_full_disk_stops_the_run_and_a_rerun_with_space_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("db"), "1M") else {
        eprintln!("a_full_disk_stops_the_run_*: skipped: mounting a small tmpfs needs root (CI runs as root)");
        return;
    };
    let args = ["generate", "orders.jsonl", "--orders", "3000", "--tenants", "3", "--faults", "0"];
    assert!(weir(dir.path(), &args).status.success());
    let out = weir(dir.path(), &["run", "--db", "db/weir.db", "orders.jsonl"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("db/weir.db"), "the message names the database: {last}");
    assert!(
        last.contains("disk holding db/weir.db is full")
            || last.contains("database or disk is full")
            || last.contains("locked"),
        "{last}"
    );

    disk.grow("64M");
    let out = weir(dir.path(), &["run", "--db", "db/weir.db", "orders.jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_accounted(&report(dir.path(), &["--db", "db/weir.db"]), 3000);
}

/// `GET http://{addr}/metrics`, if something answers.
fn scrape(addr: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

/// `--metrics-addr` serves the run's metrics in Prometheus' format while
/// it runs (stages, sagas, store commits); a taken address is a usage
/// error naming the option.
#[test]
fn a_run_serves_its_metrics_for_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "orders.jsonl", 3000);
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut child = spawn(dir.path(), &["run", "orders.jsonl", "--metrics-addr", &addr.to_string(), "--quiet"]);
    let mut seen = String::new();
    while child.try_wait().unwrap().is_none() {
        if let Some(body) = scrape(addr)
            && body.contains("weir_saga_started_total")
        {
            seen = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "weir_stage_items_total{stage=\"parse\",outcome=\"received\"}",
        "weir_saga_started_total",
        "weir_store_commit_duration_seconds",
    ] {
        assert!(seen.contains(name), "{name} not served: {seen}");
    }

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let out = weir(dir.path(), &["run", "orders.jsonl", "--metrics-addr", &busy]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--metrics-addr: could not serve metrics on"), "{}", stderr(&out));
}
