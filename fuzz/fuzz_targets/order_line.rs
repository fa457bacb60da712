//! Any bytes as input lines of `weir run`: each parses to a valid order or
//! to an error naming the line, and never panics (see `check_parse`).
#![no_main]

#[path = "../../crates/weir-demo/tests/demo/parser_properties/mod.rs"]
mod parser_properties;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| parser_properties::check_parse(data, 4096));
