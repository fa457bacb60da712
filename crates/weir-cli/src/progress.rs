//! Progress: bars per stage on a terminal, plain log lines otherwise,
//! nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Counter {
    bar: Option<ProgressBar>,
    value: Arc<AtomicU64>,
    bytes: bool,
}

impl Counter {
    /// Adds `n` (for the byte counter: sets the position to `n`).
    pub fn add(&self, n: u64) {
        if self.bytes {
            self.value.store(n, Ordering::Relaxed);
            if let Some(bar) = &self.bar {
                bar.set_position(n);
            }
        } else {
            self.value.fetch_add(n, Ordering::Relaxed);
            if let Some(bar) = &self.bar {
                bar.inc(n);
            }
        }
    }
}

pub struct Progress {
    multi: Option<MultiProgress>,
    size: u64,
    start: u64,
    logger: Option<tokio::task::JoinHandle<()>>,
    counters: std::sync::Mutex<Vec<(&'static str, Arc<AtomicU64>)>>,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool, size: u64, start: u64) -> Self {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
        Self { multi, size, start, logger: None, counters: std::sync::Mutex::new(Vec::new()), quiet }
    }

    pub fn counter(&self, name: &'static str) -> Counter {
        let value = Arc::new(AtomicU64::new(0));
        let bytes = name == "lines read";
        self.counters.lock().expect("not poisoned").push((name, Arc::clone(&value)));
        let bar = self.multi.as_ref().map(|multi| {
            let bar = if bytes { ProgressBar::new(self.size) } else { ProgressBar::no_length() };
            let template = if bytes {
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}"
            } else {
                "{prefix:>12} {pos} ({per_sec})"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
            bar.set_prefix(name);
            if bytes {
                bar.set_position(self.start);
            }
            multi.add(bar)
        });
        Counter { bar, value, bytes }
    }

    /// Starts plain log lines every 2 s when there are no bars.
    pub fn start_logging(&mut self) {
        if self.multi.is_some() || self.quiet {
            return;
        }
        let counters: Vec<(&'static str, Arc<AtomicU64>)> = self.counters.lock().expect("not poisoned").clone();
        self.logger = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let line: Vec<String> =
                    counters.iter().map(|(n, v)| format!("{n}: {}", v.load(Ordering::Relaxed))).collect();
                eprintln!("weir: {}", line.join(", "));
            }
        }));
    }

    pub fn finish(&self) {
        if let Some(logger) = &self.logger {
            logger.abort();
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}
