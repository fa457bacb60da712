//! Any bytes as input lines of `weir run`: the parser returns a valid order
//! or an error naming the line; it never panics (lines holding the demo's
//! poison SKU, which panics on purpose, are left out).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_cli::input::LineAssembler;
use weir_cli::orders::{Line, parse};

fuzz_target!(|data: &[u8]| {
    let limit = 4096;
    let mut assembler = LineAssembler::new(limit);
    let mut rest = data;
    let mut number = 0;
    let mut end = 0;
    while !rest.is_empty() {
        let (taken, raw) = assembler.feed(rest);
        rest = &rest[taken..];
        let Some(raw) = raw else { continue };
        number += 1;
        end += raw.len;
        let line = Line::from_raw(raw, number, end, limit);
        if line.text.contains("PANIC") {
            continue; // the demo's poison SKU panics on purpose
        }
        match parse(&line) {
            Ok(order) => {
                assert!(!order.order_id.is_empty() && !order.tenant.is_empty());
                assert!(order.qty > 0 && order.amount_cents > 0);
            }
            Err(bad) => assert!(bad.to_string().starts_with(&format!("line {number}: ")), "{bad}"),
        }
    }
});
