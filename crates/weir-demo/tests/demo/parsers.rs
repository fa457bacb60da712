//! The fuzz targets' properties (`fuzz/`, stated in `parser_properties`),
//! as property tests that run in CI: the order-line parser and the bounded
//! line reader on any input.

use crate::parser_properties::{check_lines, check_parse, split};
use proptest::prelude::*;
use weir_demo::orders::{Line, parse};

/// Bytes that look like input: JSON punctuation, newlines, letters, digits
/// and invalid UTF-8 are all likely.
fn input_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"{}[]\":,\n 0123456789abcdefghijklmnopqrstuvwxyz-_.".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..600)
}

/// A valid order line, then damaged by a few byte edits.
fn damaged_order() -> impl Strategy<Value = Vec<u8>> {
    let order = (
        "[a-z0-9-]{0,12}",
        "[a-z-]{0,10}",
        prop::sample::select(vec!["mug", "tee", "limited-print", ""]),
        prop_oneof![Just("0".to_owned()), Just("-1".to_owned()), Just("4294967296".to_owned()), "[0-9]{1,4}"],
        prop_oneof![Just("0".to_owned()), Just("1.5".to_owned()), Just("\"12\"".to_owned()), "[0-9]{1,6}"],
    )
        .prop_map(|(id, tenant, sku, qty, amount)| {
            format!(
                r#"{{"order_id":"{id}","tenant":"{tenant}","sku":"{sku}","qty":{qty},"amount_cents":{amount},"address":"1 Main St"}}"#
            )
            .into_bytes()
        });
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0..3u8);
    (order, prop::collection::vec(edit, 0..4)).prop_map(|(mut line, edits)| {
        for (at, byte, kind) in edits {
            let i = at.index(line.len() + 1);
            match kind {
                0 => line.insert(i, byte),
                1 if i < line.len() => {
                    line.remove(i);
                }
                _ if i < line.len() => line[i] = byte,
                _ => {}
            }
        }
        line.push(b'\n');
        line
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_parse_to_an_order_or_an_error_naming_the_line(data in input_bytes(), limit in 1usize..300) {
        check_parse(&data, limit);
    }

    #[test]
    fn damaged_orders_parse_to_an_order_or_an_error_naming_the_line(
        lines in prop::collection::vec(damaged_order(), 1..8)
    ) {
        check_parse(&lines.concat(), 4096);
    }

    #[test]
    fn lines_come_out_whole_in_order_cut_to_the_limit(
        data in input_bytes(), limit in 1usize..64, chunk in 1usize..40
    ) {
        check_lines(&data, limit, chunk);
    }
}

/// Valid orders survive the trip: written as a line, read back equal.
#[test]
fn generated_orders_round_trip() {
    let text =
        weir_demo::orders::generate(weir_demo::orders::Generate { orders: 300, tenants: 4, faults: 0.0, seed: 7 });
    let (lines, partial) = split(text.as_bytes(), 4096, 100);
    assert!(!partial);
    assert_eq!(lines.len(), 300);
    let mut end = 0;
    for (i, raw) in lines.into_iter().enumerate() {
        end += raw.len;
        let line = Line::from_raw(raw, i as u64 + 1, end, 4096);
        let order = parse(&line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(serde_json::to_string(&order).unwrap(), line.text);
    }
}
