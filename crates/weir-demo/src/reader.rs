//! Reading the input file: its lines from a cursor on, and how many it has.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncSeekExt, BufReader};
use weir::error::BoxError;

use crate::cursor::Cursor;
use crate::input::{LineAssembler, read_line};
use crate::orders::Line;

/// Counts the lines of `path` (a last line without its newline included),
/// for the progress bar's length and its ETA.
pub async fn count_lines(path: &Path) -> Result<u64, BoxError> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buffer[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// The input's lines from `cursor` on, numbered, each with the offset just
/// after it; a line over `max_line_bytes` comes with only its start (see
/// [`crate::input`]). The bytes after the last newline are the last line.
/// A read error ends the stream and is left in `failed` for the run to
/// report.
pub async fn read_lines(
    path: &Path,
    input: &str,
    cursor: &Cursor,
    max_line_bytes: usize,
    failed: Arc<Mutex<Option<String>>>,
) -> Result<impl futures_util::Stream<Item = Line> + Send + 'static, BoxError> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    file.seek(std::io::SeekFrom::Start(cursor.offset)).await?;
    let reader = BufReader::new(file);
    let (name, input) = (path.display().to_string(), input.to_owned());
    let assembler = LineAssembler::new(max_line_bytes);
    let start = (cursor.offset, cursor.line);
    Ok(futures_util::stream::unfold(Some((reader, assembler, start)), move |state| {
        let (failed, name, input) = (Arc::clone(&failed), name.clone(), input.clone());
        async move {
            let (mut reader, mut assembler, (offset, number)) = state?;
            match read_line(&mut reader, &mut assembler).await {
                Ok(Some(raw)) => {
                    let end = offset + raw.len;
                    let mut line = Line::from_raw(raw, number + 1, end, max_line_bytes);
                    line.input = input;
                    let next = (line.end, line.number);
                    Some((line, Some((reader, assembler, next))))
                }
                Ok(None) => None,
                Err(e) => {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("reading {name} after line {number}: {e}"));
                    None
                }
            }
        }
    }))
}
