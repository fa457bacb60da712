//! What an operator meets: the report's judgement, secrets, bad URLs and
//! options, missing or busy databases, progress output, replays.

use super::*;

/// One judgement, the same in text, JSON and exit code: "not settled" while
/// a saga is in progress (exit 5; before: text said VIOLATED, JSON said the
/// invariants hold, exit 0), "holds" once settled (exit 0), "violated"
/// with `a ≠ b` for a broken sum (exit 4).
#[test]
fn the_report_gives_one_judgement_in_text_json_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "orders.jsonl", 5);
    assert!(weir(dir.path(), &["run", "orders.jsonl"]).status.success());
    assert_eq!(report(dir.path(), &[])["judgement"], "holds");

    // A saga stored but not run yet: in progress.
    with_store(dir.path(), "weir.db", async |store| {
        // The order saga's steps by name (a record lists its steps); the
        // command's own definition runs them on `resume`.
        let mut definition = weir::durable::saga::SagaDefinition::builder("order");
        for step in ["reserve", "charge", "ship"] {
            definition =
                definition.step(step, |_| async { Ok::<_, weir::durable::saga::StepError>(()) }, |_| async { Ok(()) });
        }
        let definition = definition.build().unwrap();
        let engine = weir::durable::saga::SagaEngine::builder(store).definition(definition).build().unwrap();
        let order = serde_json::json!({"order_id": "late-1", "tenant": "merchant-00", "sku": "mug", "qty": 1, "amount_cents": 700, "address": "1 Main St"});
        assert!(engine.submit("late-1", "order", &order).await.unwrap());
    });
    let (code, json) = report_with_code(dir.path(), &[]);
    assert_eq!((code, &json["judgement"]), (Some(5), &serde_json::json!("not_settled")), "{json}");
    let text = weir(dir.path(), &["report"]);
    assert_eq!(text.status.code(), Some(5));
    let text = stdout(&text);
    assert!(text.contains("not settled") && !text.contains("VIOLATED"), "{text}");

    // Resumed in the database's environment: settled again.
    assert!(weir(dir.path(), &["resume"]).status.success());
    assert_eq!(report(dir.path(), &[])["totals"]["completed"], 6);

    // A charge no order explains: the sums differ.
    with_store(dir.path(), "weir.db", async |_| {
        let pool =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("weir.db").display())).await.unwrap();
        sqlx::query("INSERT INTO ledger_charges (key, order_id, tenant, amount) VALUES ('rogue', 'rogue', 'x', 5)")
            .execute(&pool)
            .await
            .unwrap();
    });
    let (code, json) = report_with_code(dir.path(), &[]);
    assert_eq!((code, &json["judgement"]), (Some(4), &serde_json::json!("violated")), "{json}");
    let text = stdout(&weir(dir.path(), &["report"]));
    let sums = text.lines().find(|l| l.contains("charges not refunded")).unwrap();
    let figures = sums.split('(').nth(1).unwrap();
    assert!(sums.contains("VIOLATED") && figures.contains(" ≠ ") && !figures.contains('='), "{sums}");
}

/// No password is printed: not in help (the environment's value was shown
/// before), not in errors.
#[test]
fn a_database_password_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3tPW";
    let url = format!("postgres://app:{secret}@127.0.0.1:1/orders");
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["report", "--help"],
        &["replay", "--help"],
        &["report", "--connect-timeout", "1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weir-demo"))
            .current_dir(dir.path())
            .env("WEIR_DATABASE_URL", &url)
            .args(args)
            .output()
            .unwrap();
        let all = stdout(&out) + &stderr(&out);
        assert!(!all.contains(secret), "weir {args:?} printed the password: {all}");
    }
    let out = weir(dir.path(), &["report", "--database-url", &url, "--connect-timeout", "1"]);
    assert!(stderr(&out).contains("app:***@127.0.0.1:1"), "{}", stderr(&out));
}

/// An unsupported scheme or a malformed URL is a usage error naming what
/// weir accepts, and creates nothing (before: files named after the URL,
/// password included).
#[test]
fn a_bad_database_url_is_a_usage_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "orders.jsonl", 1);
    for url in ["mysql://root:pw@host/x", "not a url", "sqlite:weir.db"] {
        for command in [&["run", "orders.jsonl"][..], &["report"], &["resume"]] {
            let mut args = command.to_vec();
            args.extend(["--database-url", url]);
            let out = weir(dir.path(), &args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains("postgres://") && !err.contains("pw@"), "{err}");
        }
    }
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["orders.jsonl"], "nothing else was created");
}

/// Commands that only read never create a database (before: `report` on a
/// typo made an empty database and judged it "ok").
#[test]
fn read_only_commands_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["report"][..], &["replay"], &["resume"]] {
        let mut args = args.to_vec();
        args.extend(["--db", "nonexist.db"]);
        let out = weir(dir.path(), &args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(stderr(&out).contains("no database at nonexist.db"), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file was created");
}

/// A second `weir-demo run` on a SQLite file another one is working on refuses
/// with a clear message (before: both ran and reported "0 lines").
#[test]
fn a_second_run_on_one_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "orders.jsonl", 3000);
    let mut first = spawn(dir.path(), &["run", "orders.jsonl", "--quiet"]);
    let lock = dir.path().join("weir.db.lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock).unwrap_or_default().trim() != first.id().to_string() {
        assert!(std::time::Instant::now() < deadline, "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = weir(dir.path(), &["run", "orders.jsonl"]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("another weir process (pid {}) is working on weir.db", first.id())), "{err}");
    assert!(err.contains("--database-url"), "it names the way to run several: {err}");
    // Reading while it runs is fine.
    assert!(matches!(weir(dir.path(), &["report"]).status.code(), Some(0 | 5)));
    assert!(first.wait().unwrap().success());
    assert_accounted(&report(dir.path(), &[]), 3000);
}

/// Without a terminal, progress is plain lines counting input lines (not
/// bytes) against the total, whole-number rates and an ETA; library noise
/// (sqlx's slow-statement notes) stays out.
#[test]
fn plain_progress_counts_lines_with_whole_rates_and_no_library_noise() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "orders.jsonl", 300);
    let out = spawn(dir.path(), &["run", "orders.jsonl"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err.lines().rfind(|l| l.contains("lines read")).unwrap_or_else(|| panic!("{err}"));
    assert!(last.contains("lines read 300/300 (") && last.contains("eta"), "{last}");
    for rate in last.split('(').skip(1) {
        let number = rate.split("/s").next().unwrap();
        assert!(number.chars().all(|c| c.is_ascii_digit()), "a whole rate: {last}");
    }
    assert!(!err.contains("slow statement") && !err.contains("WARN sqlx"), "{err}");
}

/// Usage errors exit 2 at parse time; ids are accepted as listed; lists
/// say when they stop short; options that do not apply are not offered.
#[test]
fn usage_errors_and_lists_say_what_they_mean() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "orders.jsonl", 60);
    for args in [
        &["run", "orders.jsonl", "--workers", "0"][..],
        &["run", "orders.jsonl", "--faults", "2"],
        &["demo", "--faults", "-1"],
        &["replay", "--bogus"],
    ] {
        assert_eq!(weir(dir.path(), args).status.code(), Some(2), "{args:?}");
    }
    let help = stdout(&weir(dir.path(), &["generate", "--help"]));
    assert!(!help.contains("--db") && !help.contains("--database-url"), "{help}");
    let help = stdout(&weir(dir.path(), &["run", "--help"]));
    assert!(help.lines().filter(|l| l.trim_start().starts_with("--")).all(|l| l.trim().contains("  ")), "{help}");

    let mut bytes = std::fs::read(dir.path().join("orders.jsonl")).unwrap();
    bytes.extend_from_slice(b"not json\n");
    std::fs::write(dir.path().join("orders.jsonl"), bytes).unwrap();
    assert!(weir(dir.path(), &["run", "orders.jsonl"]).status.success());
    let dlq = dead_letters(dir.path(), "weir.db");
    assert!(dlq.starts_with('#') && dlq.contains("line 61"), "{dlq}");

    let out = weir(dir.path(), &["run", "."]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("it is a directory"), "{}", stderr(&out));
}

/// A replayed line that panics again goes back to the queue with its
/// reason, printed as a failure (before: "internal error: panicked at
/// crates/weir-cli/src/orders.rs").
#[test]
fn a_replayed_poison_line_is_a_failure_not_an_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    orders_with_a_bad_line(
        dir.path(),
        20,
        10,
        br#"{"order_id":"poison-1","tenant":"merchant-00","sku":"PANIC","qty":1,"amount_cents":500,"address":"1 Main St"}
"#,
    );
    assert!(weir(dir.path(), &["run", "orders.jsonl"]).status.success());
    let out = spawn(dir.path(), &["replay", "--all"]).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("internal error"), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("line 11: still fails: panicked: unhandled SKU PANIC in order poison-1"), "{text}");
    assert!(text.contains("1 line(s) still fail and stay in the queue"), "{text}");
    let dlq = dead_letters(dir.path(), "weir.db");
    assert_eq!(dlq.lines().count(), 1, "{dlq}");
    assert_accounted(&report(dir.path(), &[]), 21);
}

/// `weir-demo replay` replays only the letters an operator marked (`weir
/// dlq replay`); a marked line that fails again is parked again, unmarked.
#[test]
fn replay_takes_only_the_letters_marked_for_it() {
    use weir::durable::store::LetterQuery;
    let dir = tempfile::tempdir().unwrap();
    orders_with_a_bad_line(dir.path(), 20, 5, b"not json\nnot json either\n");
    assert!(weir(dir.path(), &["run", "orders.jsonl"]).status.success());
    with_store(dir.path(), "weir.db", async |store| {
        let queue = store.dead_letters::<serde_json::Value>("weir-cli:lines");
        let letters = queue.list().await.unwrap();
        assert_eq!(letters.len(), 2);
        assert_eq!(queue.request_replay(&[letters[1].id]).await.unwrap(), 1);
    });
    let out = weir(dir.path(), &["replay"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 line(s) still fail"), "{}", stdout(&out));
    with_store(dir.path(), "weir.db", async |store| {
        let queue = store.dead_letters::<serde_json::Value>("weir-cli:lines");
        assert_eq!(queue.list().await.unwrap().len(), 2, "both lines still parked");
        assert!(
            queue.find(&LetterQuery::new().replay_requested(true)).await.unwrap().is_empty(),
            "the mark was served"
        );
    });
    let none = weir(dir.path(), &["replay"]);
    assert!(stdout(&none).contains("0 line(s) still fail"), "{}", stdout(&none));
}
