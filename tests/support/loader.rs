//! The test loader: a stand-in for the database behind a cached call, which
//! counts its runs and can be held at a gate, slowed or made to fail.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// A boxed load, for loaders that must be `'static` (detached, spawned).
pub type Load<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// Counts the loads it serves. Clones share the counts and the gate.
#[derive(Clone, Default)]
pub struct Loader {
    runs: Arc<AtomicU64>,
    /// Loads that returned.
    done: Arc<AtomicU64>,
    /// While set, a load waits for a permit from it before it returns.
    gate: Option<Arc<Notify>>,
}

impl Loader {
    pub fn new() -> Loader {
        Loader::default()
    }

    /// A loader whose loads wait at `gate` (one `notify_one` lets one through).
    pub fn gated() -> (Loader, Arc<Notify>) {
        let gate = Arc::new(Notify::new());
        let loader = Loader {
            gate: Some(gate.clone()),
            ..Loader::default()
        };
        (loader, gate)
    }

    /// Loads started so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(SeqCst)
    }

    /// Loads that returned so far.
    pub fn done(&self) -> u64 {
        self.done.load(SeqCst)
    }

    /// A load that returns `value` at once, counted now (for `|| db.ready(v)`).
    pub fn ready<T>(&self, value: T) -> std::future::Ready<io::Result<T>> {
        self.answer(Some(value))
    }

    /// A load that returns `Some` value, or fails as a database that is down.
    pub fn answer<T>(&self, value: Option<T>) -> std::future::Ready<io::Result<T>> {
        self.runs.fetch_add(1, SeqCst);
        self.done.fetch_add(1, SeqCst);
        std::future::ready(value.ok_or_else(|| io::Error::other("database down")))
    }

    /// A `'static` loader that returns `result`, after the gate if there is
    /// one, and after `time(run)` (`run`: the loads started before it).
    pub fn timed<T: Send + 'static>(
        &self,
        result: io::Result<T>,
        time: fn(u64) -> Duration,
    ) -> impl FnOnce() -> Load<T> + Send + 'static {
        let loader = self.clone();
        move || {
            Box::pin(async move {
                let run = loader.runs.fetch_add(1, SeqCst);
                if let Some(gate) = &loader.gate {
                    gate.notified().await;
                }
                let time = time(run);
                if !time.is_zero() {
                    tokio::time::sleep(time).await;
                }
                loader.done.fetch_add(1, SeqCst);
                result
            })
        }
    }

    /// A `'static` loader that returns `result` (after the gate, if any).
    pub fn load<T: Send + 'static>(
        &self,
        result: io::Result<T>,
    ) -> impl FnOnce() -> Load<T> + Send + 'static {
        self.timed(result, |_| Duration::ZERO)
    }
}
