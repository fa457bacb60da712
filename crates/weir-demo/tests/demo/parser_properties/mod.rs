//! The properties of the input parsers, stated once and checked by two
//! harnesses: the proptests of `tests/cli/parsers.rs` (in CI) and the
//! `cargo fuzz` targets of `fuzz/` (which include this file by path).
//! Each function panics when the property does not hold.

#![allow(dead_code)]

use weir_demo::input::{LineAssembler, RawLine};
use weir_demo::orders::{Line, parse};

/// Splits `data` fed in chunks of `chunk` bytes (at least 1); the lines and
/// whether a partial line is left.
pub fn split(data: &[u8], limit: usize, chunk: usize) -> (Vec<RawLine>, bool) {
    let mut assembler = LineAssembler::new(limit);
    let mut lines = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (taken, line) = assembler.feed(rest);
            assert!(taken > 0 && taken <= rest.len(), "progress on every feed");
            rest = &rest[taken..];
            lines.extend(line);
        }
    }
    (lines, assembler.has_partial())
}

/// The input's newline-terminated lines come out in order, cut to the
/// limit and flagged when longer, their lengths adding up; a tail without
/// its newline is held back.
pub fn check_lines(data: &[u8], limit: usize, chunk: usize) {
    let limit = limit.max(1);
    let (lines, partial) = split(data, limit, chunk);
    let complete: Vec<&[u8]> = match data.iter().rposition(|&b| b == b'\n') {
        Some(last) => data[..last].split(|&b| b == b'\n').collect(),
        None => Vec::new(),
    };
    assert_eq!(lines.len(), complete.len());
    for (line, expected) in lines.iter().zip(&complete) {
        assert_eq!(line.len, expected.len() as u64 + 1);
        assert_eq!(line.over_limit, expected.len() > limit);
        assert_eq!(line.bytes.as_slice(), &expected[..expected.len().min(limit)]);
    }
    let tail = data.len() - complete.iter().map(|l| l.len() + 1).sum::<usize>();
    assert_eq!(partial, tail > 0);
}

/// Every line parses to a valid order or to an error naming the line.
/// Lines holding the demo's poison SKU (which panics on purpose) are left
/// out.
pub fn check_parse(data: &[u8], limit: usize) {
    let limit = limit.max(1);
    let (lines, _) = split(data, limit, 64);
    let mut end = 0;
    for (i, raw) in lines.into_iter().enumerate() {
        let number = i as u64 + 1;
        end += raw.len;
        let line = Line::from_raw(raw, number, end, limit);
        if line.text.contains("PANIC") {
            continue;
        }
        match parse(&line) {
            Ok(order) => {
                assert!(!order.order_id.is_empty() && !order.tenant.is_empty(), "{order:?}");
                assert!(order.qty > 0 && order.amount_cents > 0, "{order:?}");
                assert!(line.over_limit.is_none() && !line.invalid_utf8);
            }
            Err(bad) => {
                let text = bad.to_string();
                assert!(text.starts_with(&format!("line {number}: ")), "{text}");
            }
        }
    }
}
