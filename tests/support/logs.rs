//! Log lines, captured: what a test's own `tracing` subscriber wrote.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tracing_subscriber::util::SubscriberInitExt;

/// The captured lines; clones share them.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Captures what this thread logs until the guard is dropped (on a
    /// current-thread runtime: what the test's tasks log).
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let guard = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish()
            .set_default();
        // A callsite that a test without a subscriber registers while this
        // one is being set can stay cached as wanted by no one (tracing-core
        // asks the subscribers it knew when the registration began): asked
        // again, now that this one is known.
        tracing::callsite::rebuild_interest_cache();
        guard
    }
}
