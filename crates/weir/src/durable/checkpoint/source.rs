//! Where a cursor consumer reads events from.

use std::path::PathBuf;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};

use crate::error::BoxError;

/// The events of a source after a position, each with the position just
/// after it.
pub type Events<'a, P, E> = BoxStream<'a, Result<(P, E), BoxError>>;

/// A source of events that can start again from a saved position.
pub trait CursorSource: Send + 'static {
    /// One event.
    type Event: Send + 'static;
    /// Where the source stands after an event; saved as JSON.
    type Position: Serialize + DeserializeOwned + Clone + Send + Sync + std::fmt::Debug + 'static;

    /// Events after `from` (all of them for `None`), each with the
    /// position just after it.
    fn read(&mut self, from: Option<Self::Position>) -> Events<'_, Self::Position, Self::Event>;
}

/// The seed's fake source: events from a channel, numbered 1, 2, 3, … in
/// the order they arrive. On restart the producer sends from the start
/// again and the events up to the saved number are skipped.
#[derive(Debug)]
pub struct ChannelSource<T> {
    rx: tokio::sync::mpsc::Receiver<T>,
}

impl<T> ChannelSource<T> {
    /// Reads `rx`.
    pub fn new(rx: tokio::sync::mpsc::Receiver<T>) -> Self {
        Self { rx }
    }
}

impl<T: Send + 'static> CursorSource for ChannelSource<T> {
    type Event = T;
    type Position = u64;

    fn read(&mut self, from: Option<u64>) -> BoxStream<'_, Result<(u64, T), BoxError>> {
        let skip = from.unwrap_or(0);
        let events = futures_util::stream::poll_fn(|cx| self.rx.poll_recv(cx));
        events
            .zip(futures_util::stream::iter(1u64..))
            .filter(move |(_, n)| std::future::ready(*n > skip))
            .map(|(event, n)| Ok((n, event)))
            .boxed()
    }
}

/// A file of lines (for example JSON lines, parsed by your handler so that
/// a malformed line can go to a dead-letter queue). The position is the
/// byte offset just after a line.
///
/// # Defaults
/// - The file is complete: a last line without its newline is read like
///   any other (its position is the end of the file), never dropped. For a
///   file another process is still appending to, [`growing`](Self::growing)
///   makes such a line wait for its newline instead.
/// - Lines of at most 1 MiB ([`DEFAULT_MAX_LINE_BYTES`]): a longer one ends
///   the read with an error naming the file, its byte offset and the
///   limit, instead of reading it into memory whole (a file without
///   newlines would otherwise be read in one piece).
///
/// Lines are framed here rather than by `tokio-util`'s `LinesCodec`: the
/// cursor needs each line's exact end offset (`\n` or `\r\n`), which
/// the codec's strings do not tell, and a growing file's last partial line
/// must stay unconsumed.
#[derive(Debug, Clone)]
pub struct LineFileSource {
    path: PathBuf,
    growing: bool,
    max_line_bytes: usize,
}

/// The longest line a [`LineFileSource`] reads by default: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

impl LineFileSource {
    /// Reads the complete file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), growing: false, max_line_bytes: DEFAULT_MAX_LINE_BYTES }
    }

    /// The longest line read, newline excluded; a longer one is an error.
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes;
        self
    }

    /// The file is still being appended to: a last line without its newline
    /// may be half-written, so it is not read (nor consumed) until its
    /// newline arrives; a later read picks it up whole.
    pub fn growing(mut self) -> Self {
        self.growing = true;
        self
    }
}

impl CursorSource for LineFileSource {
    type Event = String;
    type Position = u64;

    fn read(&mut self, from: Option<u64>) -> BoxStream<'_, Result<(u64, String), BoxError>> {
        let (path, growing, max) = (self.path.clone(), self.growing, self.max_line_bytes);
        let start = from.unwrap_or(0);
        let opened = async move {
            let mut file =
                tokio::fs::File::open(&path).await.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(|e| format!("cannot seek {} to byte {start}: {e}", path.display()))?;
            Ok::<_, BoxError>((BufReader::new(file), start, path))
        };
        futures_util::stream::once(opened)
            .flat_map(move |opened| match opened {
                Err(e) => futures_util::stream::once(std::future::ready(Err(e))).boxed(),
                Ok((reader, start, path)) => lines_from(reader, start, path, growing, max).boxed(),
            })
            .boxed()
    }
}

fn lines_from(
    reader: BufReader<tokio::fs::File>,
    start: u64,
    path: PathBuf,
    growing: bool,
    max: usize,
) -> impl Stream<Item = Result<(u64, String), BoxError>> + Send {
    futures_util::stream::unfold(Some((reader, start)), move |state| {
        let path = path.clone();
        async move {
            let (mut reader, offset) = state?;
            let mut line = String::new();
            // At most the limit, its `\r\n` and one byte more: enough to
            // tell a line that is too long.
            let mut bounded = (&mut reader).take(max as u64 + 3);
            match bounded.read_line(&mut line).await {
                Ok(0) => None,
                Ok(_) if line.trim_end_matches(['\n', '\r']).len() > max => {
                    let error = format!(
                        "{} at byte {offset}: line longer than {max} bytes; raise max_line_bytes, or split the line",
                        path.display()
                    );
                    Some((Err(error.into()), None))
                }
                // A last line without its newline: half-written in a growing
                // file (not consumed), the last line of a complete one.
                Ok(_) if growing && !line.ends_with('\n') => None,
                Ok(n) => {
                    let next = offset + n as u64;
                    if line.ends_with('\n') {
                        line.pop();
                    }
                    if line.ends_with('\r') {
                        line.pop();
                    }
                    Some((Ok((next, line)), Some((reader, next))))
                }
                Err(e) => Some((Err(format!("{} at byte {offset}: {e}", path.display()).into()), None)),
            }
        }
    })
}

/// JSON lines parsed as `T`: a [`LineFileSource`] whose lines are
/// deserialized; a malformed line ends the read with an error naming the
/// file and byte offset.
#[derive(Debug, Clone)]
pub struct JsonlFileSource<T> {
    lines: LineFileSource,
    item: std::marker::PhantomData<fn() -> T>,
}

impl<T> JsonlFileSource<T> {
    /// Reads the complete file at `path` (see [`LineFileSource`]).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { lines: LineFileSource::new(path), item: std::marker::PhantomData }
    }

    /// The file is still being appended to; see [`LineFileSource::growing`].
    pub fn growing(mut self) -> Self {
        self.lines = self.lines.growing();
        self
    }
}

impl<T: DeserializeOwned + Send + 'static> CursorSource for JsonlFileSource<T> {
    type Event = T;
    type Position = u64;

    fn read(&mut self, from: Option<u64>) -> BoxStream<'_, Result<(u64, T), BoxError>> {
        let path = self.lines.path.clone();
        let start = from.unwrap_or(0);
        let mut previous = start;
        self.lines
            .read(from)
            .map(move |line| {
                let (next, line) = line?;
                let at = std::mem::replace(&mut previous, next);
                serde_json::from_str(&line)
                    .map(|event| (next, event))
                    .map_err(|e| format!("{} at byte {at}: malformed line: {e}", path.display()).into())
            })
            .boxed()
    }
}
