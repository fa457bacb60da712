//! The edges of the input: a last line without its newline, order ids that
//! repeat.

use super::*;

/// A file whose last line has no newline: that line is an order like any
/// other (it was dropped: "last run: 1 lines").
#[test]
fn a_last_line_without_its_newline_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = generate(dir.path(), "orders.jsonl", 2);
    assert_eq!(bytes.pop(), Some(b'\n'));
    std::fs::write(dir.path().join("orders.jsonl"), &bytes).unwrap();
    let out = weir(dir.path(), &["run", "orders.jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = report(dir.path(), &[]);
    assert_accounted(&report, 2);
    assert_eq!(report["totals"]["completed"], 2);
    assert_eq!(report["last_run"]["lines_read"], 2);

    // Bytes after the last newline that are not an order are a bad line,
    // dead-lettered like any other, not dropped.
    let mut bytes = generate(dir.path(), "more.jsonl", 3);
    bytes.extend_from_slice(b"{\"order_id\": \"half-writ");
    std::fs::write(dir.path().join("more.jsonl"), &bytes).unwrap();
    let out = weir(dir.path(), &["run", "more.jsonl", "--db", "more.db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_accounted(&self::report(dir.path(), &["--db", "more.db"]), 4);
    let dlq = dead_letters(dir.path(), "more.db");
    assert!(dlq.contains("line 4") && dlq.contains("not a JSON order"), "{dlq}");
}

/// Two lines with one order id: an identical one is counted as a
/// duplicate; a different one is dead-lettered with a reason naming both
/// lines (the second was merged away before: 10 of 11 lines accounted).
#[test]
fn a_repeated_order_id_is_a_counted_duplicate_or_a_dead_lettered_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = generate(dir.path(), "orders.jsonl", 10);
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut input = bytes.clone();
    // Line 11 repeats line 3; line 12 reuses line 5's id with another quantity.
    input.extend_from_slice(lines[2]);
    input.push(b'\n');
    let mut conflicting: serde_json::Value = serde_json::from_slice(lines[4]).unwrap();
    conflicting["qty"] = serde_json::json!(conflicting["qty"].as_u64().unwrap() + 1);
    input.extend_from_slice(conflicting.to_string().as_bytes());
    input.push(b'\n');
    std::fs::write(dir.path().join("orders.jsonl"), &input).unwrap();

    let out = weir(dir.path(), &["run", "orders.jsonl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = report(dir.path(), &[]);
    assert_accounted(&report, 12);
    assert_eq!(report["totals"]["duplicates"], 1, "{}", report["totals"]);
    assert_eq!(report["totals"]["dead_lettered"], 1, "{}", report["totals"]);
    let dlq = dead_letters(dir.path(), "weir.db");
    let id = conflicting["order_id"].as_str().unwrap();
    assert!(dlq.contains("line 12") && dlq.contains(&format!("order {id} conflicts with line 5 of")), "{dlq}");
    assert!(dlq.contains("same order_id, different content"), "{dlq}");

    // A rerun from the start counts nothing twice; a replay keeps the conflict.
    read_from_start(dir.path(), "orders.jsonl");
    assert!(weir(dir.path(), &["run", "orders.jsonl"]).status.success());
    let replay = weir(dir.path(), &["replay", "--all"]);
    assert!(stdout(&replay).contains("1 line(s) still fail"), "{}", stdout(&replay));
    let again = self::report(dir.path(), &[]);
    assert_accounted(&again, 12);
    assert_eq!(again["totals"], report["totals"]);
}
