//! Any bytes, cut into any chunks, with any limit: the assembler yields the
//! input's newline-terminated lines in order, each cut to the limit and
//! flagged when longer, their lengths adding up to the bytes consumed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_cli::input::LineAssembler;

fuzz_target!(|input: (u8, u8, &[u8])| {
    let (limit, chunk, data) = input;
    let limit = usize::from(limit) + 1;
    let chunk = usize::from(chunk) + 1;
    let mut assembler = LineAssembler::new(limit);
    let mut lines = Vec::new();
    for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (taken, line) = assembler.feed(rest);
            assert!(taken > 0 && taken <= rest.len());
            rest = &rest[taken..];
            lines.extend(line);
        }
    }
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
    assert_eq!(assembler.has_partial(), tail > 0);
});
