//! Signals during a run: the first SIGINT or SIGTERM drains the pipeline
//! (no new lines; the orders in flight finish), a second aborts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use weir::pipeline::Control;

/// What the signal watcher saw: nothing, one signal (drain), two (abort).
#[derive(Debug, Default, Clone)]
pub struct Signals(Arc<AtomicU8>);

impl Signals {
    pub fn seen(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }

    /// Drains on the first SIGINT/SIGTERM, aborts on the second.
    pub fn watch(&self, control: Control, quiet: bool) -> tokio::task::JoinHandle<()> {
        let seen = Arc::clone(&self.0);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut interrupt), Ok(mut terminate)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                return;
            };
            for n in 1..=2u8 {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                seen.store(n, Ordering::SeqCst);
                if n == 1 {
                    control.drain();
                    if !quiet {
                        eprintln!(
                            "weir: stopping: no new lines are read, the orders in flight finish (again to stop at once)"
                        );
                    }
                } else {
                    control.abort();
                    if !quiet {
                        eprintln!("weir-demo: stopping at once; the next run resumes where this one stopped");
                    }
                }
            }
        })
    }
}
