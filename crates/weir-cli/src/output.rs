//! How results are shown: aligned tables for people, JSON for machines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The widest a table cell gets; longer text ends in `…` (`show` and
/// `--json` give it whole).
const MAX_CELL: usize = 60;

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let cells: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|c| clip(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in &cells {
        line(row);
    }
}

/// One line of `text`, at most [`MAX_CELL`] characters.
fn clip(text: &str) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= MAX_CELL {
        return one_line;
    }
    let mut clipped: String = one_line.chars().take(MAX_CELL - 1).collect();
    clipped.push('…');
    clipped
}

/// Prints `value` as indented JSON.
pub fn json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("JSON values serialize"));
}

/// A time as RFC 3339, to the second, in UTC.
pub fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A stored time in ms since the epoch, as RFC 3339.
pub fn time_ms(ms: i64) -> String {
    time(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}
