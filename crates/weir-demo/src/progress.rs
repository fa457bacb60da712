//! Progress: bars per stage on a terminal, plain log lines otherwise,
//! nothing with `--quiet`. Log events go through [`LogWriter`], which
//! prints them above the bars (never over them).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};

/// The bars on screen, if any: log lines are printed above them.
static BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// A `tracing` writer for stderr that keeps log lines off the bars.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log event, printed whole when dropped.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        print_above_bars(&self.0);
    }
}

fn print_above_bars(bytes: &[u8]) {
    let bars = BARS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match bars {
        Some(bars) => bars.suspend(|| std::io::stderr().write_all(bytes)),
        None => std::io::stderr().write_all(bytes),
    }
    .ok();
}

/// One figure of the run, shown as a bar or in the log lines.
#[derive(Clone)]
pub struct Counter {
    bar: Option<ProgressBar>,
    value: Arc<AtomicU64>,
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// The counter's value (this run's count).
    pub fn value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A rate as a whole number per second.
fn whole_rate(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0}/s", state.per_sec());
}

pub struct Progress {
    multi: Option<MultiProgress>,
    /// Lines in the input, and lines handled before this run.
    total: u64,
    start: u64,
    started: Instant,
    logger: Option<tokio::task::JoinHandle<()>>,
    counters: Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    quiet: bool,
}

impl Progress {
    /// Progress over an input of `total` lines, `start` of them handled.
    pub fn new(quiet: bool, total: u64, start: u64) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
        *BARS.lock().unwrap_or_else(|p| p.into_inner()) = multi.clone();
        Self { multi, total, start, started: Instant::now(), logger: None, counters: Mutex::new(Vec::new()), quiet }
    }

    /// A counter named `name`; "lines read" is the one with a length (the
    /// input's lines) and an ETA.
    pub fn counter(&self, name: &'static str) -> Counter {
        let value = Arc::new(AtomicU64::new(0));
        let lines = name == "lines read";
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).push((name, Arc::clone(&value)));
        let bar = self.multi.as_ref().map(|multi| {
            let (bar, template) = if lines {
                let bar = ProgressBar::new(self.total);
                bar.set_position(self.start);
                (bar, "{prefix:>12} [{bar:30}] {pos}/{len} lines {rate} eta {eta}")
            } else {
                (ProgressBar::no_length(), "{prefix:>12} {pos} ({rate})")
            };
            let style = ProgressStyle::with_template(template)
                .expect("valid template")
                .with_key("rate", whole_rate)
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(name);
            multi.add(bar)
        });
        Counter { bar, value }
    }

    /// One line of news for the person watching (above the bars).
    pub fn note(&self, text: &str) {
        if !self.quiet {
            print_above_bars(format!("weir: {text}\n").as_bytes());
        }
    }

    fn line(counters: &[(&'static str, Arc<AtomicU64>)], total: u64, start: u64, elapsed: Duration) -> String {
        let parts: Vec<String> = counters
            .iter()
            .map(|(name, value)| {
                let n = value.load(Ordering::Relaxed);
                let rate = n as f64 / elapsed.as_secs_f64().max(1e-3);
                if *name == "lines read" {
                    let done = start + n;
                    let eta = if rate > 0.0 { total.saturating_sub(done) as f64 / rate } else { 0.0 };
                    format!("{name} {done}/{total} ({rate:.0}/s, eta {eta:.0} s)")
                } else {
                    format!("{name} {n} ({rate:.0}/s)")
                }
            })
            .collect();
        parts.join(", ")
    }

    /// Starts plain log lines every 2 s when there are no bars.
    pub fn start_logging(&mut self) {
        if self.multi.is_some() || self.quiet {
            return;
        }
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (total, start, started) = (self.total, self.start, self.started);
        self.logger = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("weir-demo: {}", Self::line(&counters, total, start, started.elapsed()));
            }
        }));
    }

    /// Removes the bars (or stops the log lines and prints a last one).
    pub fn finish(&self) {
        if let Some(logger) = &self.logger {
            logger.abort();
            let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner()).clone();
            eprintln!("weir-demo: {}", Self::line(&counters, self.total, self.start, self.started.elapsed()));
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
        *BARS.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
