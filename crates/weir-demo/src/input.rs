//! Splitting the input into lines with bounded memory.
//!
//! A line longer than the limit is not buffered whole: its first bytes are
//! kept (so an operator can tell which line it was), the rest is skipped up
//! to its newline, and the line is marked as over the limit. The reader
//! never holds more than the limit per line, whatever the file holds.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The default limit of one input line, in bytes (`--max-line-bytes`).
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// One line as read: its bytes (without the newline, at most the limit)
/// and how many bytes it took in the input (with the newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// The line's bytes; only the first `limit` when it is over the limit.
    pub bytes: Vec<u8>,
    /// Bytes the line took in the input, its newline included.
    pub len: u64,
    /// The line was longer than the limit; `bytes` holds its start.
    pub over_limit: bool,
}

/// Assembles lines from chunks of input, however the chunks fall.
#[derive(Debug)]
pub struct LineAssembler {
    limit: usize,
    bytes: Vec<u8>,
    len: u64,
}

impl LineAssembler {
    /// An assembler keeping at most `limit` bytes of a line (at least 1).
    pub fn new(limit: usize) -> Self {
        Self { limit: limit.max(1), bytes: Vec::new(), len: 0 }
    }

    /// Takes bytes from the front of `chunk`, up to and including its first
    /// newline. Returns how many bytes it took, and the line if the newline
    /// was among them.
    pub fn feed(&mut self, chunk: &[u8]) -> (usize, Option<RawLine>) {
        let (taken, line_end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, Some(i)),
            None => (chunk.len(), None),
        };
        let content = &chunk[..line_end.unwrap_or(taken)];
        let room = (self.limit + 1).saturating_sub(self.bytes.len());
        // One byte over the limit is kept to know the line is too long.
        self.bytes.extend_from_slice(&content[..content.len().min(room)]);
        self.len += taken as u64;
        let Some(_) = line_end else { return (taken, None) };
        (taken, self.finish())
    }

    /// Whether part of a line (without its newline yet) is held.
    pub fn has_partial(&self) -> bool {
        self.len > 0
    }

    /// Ends the input: the part of a line held (the bytes after the last
    /// newline) is the last line, read like any other. `None` if nothing is
    /// held.
    pub fn finish(&mut self) -> Option<RawLine> {
        if !self.has_partial() {
            return None;
        }
        let mut bytes = std::mem::take(&mut self.bytes);
        let over_limit = bytes.len() > self.limit;
        bytes.truncate(self.limit);
        Some(RawLine { bytes, len: std::mem::take(&mut self.len), over_limit })
    }
}

/// Reads the next line from `reader`. At the end of the input, the bytes
/// after the last newline are the last line (a file need not end with a
/// newline); `Ok(None)` after that.
///
/// # Errors
/// The reader's I/O error.
///
/// # Cancel safety
/// Not cancel safe: a dropped call loses the part of the line it read.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    assembler: &mut LineAssembler,
) -> std::io::Result<Option<RawLine>> {
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(assembler.finish());
        }
        let (taken, line) = assembler.feed(chunk);
        reader.consume(taken);
        if line.is_some() {
            return Ok(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], limit: usize, chunk: usize) -> (Vec<RawLine>, bool) {
        let mut assembler = LineAssembler::new(limit);
        let mut lines = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (taken, line) = assembler.feed(rest);
                rest = &rest[taken..];
                lines.extend(line);
            }
        }
        (lines, assembler.has_partial())
    }

    #[test]
    fn lines_come_whole_whatever_the_chunks() {
        for chunk in [1, 2, 3, 7, 100] {
            let (lines, partial) = split(b"ab\n\ncdef\ngh", 10, chunk);
            let texts: Vec<&[u8]> = lines.iter().map(|l| l.bytes.as_slice()).collect();
            assert_eq!(texts, [&b"ab"[..], b"", b"cdef"]);
            assert_eq!(lines.iter().map(|l| l.len).collect::<Vec<_>>(), [3, 1, 5]);
            assert!(partial, "`gh` waits for its newline");
        }
    }

    #[test]
    fn a_line_over_the_limit_keeps_its_start_and_its_length() {
        for chunk in [1, 4, 64] {
            let (lines, _) = split(b"0123456789\nok\n0123\n", 4, chunk);
            assert_eq!(lines[0], RawLine { bytes: b"0123".to_vec(), len: 11, over_limit: true });
            assert_eq!(lines[1], RawLine { bytes: b"ok".to_vec(), len: 3, over_limit: false });
            assert_eq!(lines[2], RawLine { bytes: b"0123".to_vec(), len: 5, over_limit: false }, "exactly the limit");
        }
    }

    /// The bytes after the last newline are a line too (they were dropped).
    #[tokio::test]
    async fn read_line_reads_a_last_line_without_its_newline() {
        let mut reader = tokio::io::BufReader::with_capacity(3, &b"one\ntwo\nthree"[..]);
        let mut assembler = LineAssembler::new(4);
        assert_eq!(read_line(&mut reader, &mut assembler).await.unwrap().unwrap().bytes, b"one");
        assert_eq!(read_line(&mut reader, &mut assembler).await.unwrap().unwrap().bytes, b"two");
        let last = read_line(&mut reader, &mut assembler).await.unwrap().unwrap();
        assert_eq!(last, RawLine { bytes: b"thre".to_vec(), len: 5, over_limit: true });
        assert_eq!(read_line(&mut reader, &mut assembler).await.unwrap(), None);
        let mut empty = &b""[..];
        assert_eq!(read_line(&mut empty, &mut LineAssembler::new(4)).await.unwrap(), None);
    }
}
