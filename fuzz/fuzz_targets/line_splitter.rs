//! Any bytes, cut into any chunks, with any limit: the input's lines in
//! order, cut to the limit and flagged, lengths adding up (see
//! `check_lines`).
#![no_main]

#[path = "../../crates/weir-demo/tests/demo/parser_properties/mod.rs"]
mod parser_properties;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (limit, chunk, data) = input;
    parser_properties::check_lines(data, usize::from(limit) + 1, usize::from(chunk) + 1);
});
