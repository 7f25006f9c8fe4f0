//! Log lines, captured: what a test's own `tracing` subscriber wrote.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock};

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
        scoped(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish(),
        )
    }
}

/// Makes `subscriber` this thread's until the guard is dropped, as
/// `tracing::subscriber::set_default` does, so that it sees every callsite
/// whichever thread meets one first.
///
/// tracing-core caches each callsite's interest when the callsite is first
/// met. While exactly one subscriber is registered, it asks only the
/// subscriber of the thread that meets the callsite: a test without one
/// (another test of the binary, or a worker thread) leaves the callsite
/// cached as wanted by no one, and this test never sees its spans or
/// events (`observability::a_batch_is_a_span_with_its_hits_and_loads`
/// failed so in two full runs: its batch's span seen, its calls' not). With
/// a second subscriber kept registered for the whole process, every
/// subscriber registered is asked.
pub fn scoped(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    static STANDING: OnceLock<tracing::Dispatch> = OnceLock::new();
    STANDING.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    // Registering it asks every callsite met so far again; as
    // `SubscriberInitExt` does, `log` records are passed on too.
    subscriber.set_default()
}
