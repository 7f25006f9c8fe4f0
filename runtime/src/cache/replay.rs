//! Replaying the invalidations that met a failing backend (the queue is
//! [`crate::recovery`]): one task per cache while anything is pending,
//! straight on the backend, past the breaker, so that the replay is what
//! finds the backend back.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Cache, Inner};
use crate::backend::EntryKeys;
use crate::recovery::{Item, Op, Queued, Recovery};
use crate::stats::Counters;
use crate::BackendError;

/// The first pause between two attempts while the backend fails; it doubles
/// up to [`RETRY_MAX`]. Any answer from the backend (another call's) cuts
/// a pause short.
const RETRY_FIRST: Duration = Duration::from_millis(25);
/// The longest pause between two attempts: what a recovery may wait, at
/// most, before the replay starts.
const RETRY_MAX: Duration = Duration::from_millis(200);
/// How many items one replay round trip carries (tags), or how many go at
/// once (keys).
const REPLAY_BATCH: usize = 64;

impl Cache {
    /// Keeps an invalidation that failed with `error` for replay (as
    /// `queue` says), if the backend may answer it later: returns whether
    /// it was kept. A kept one is counted and logged here.
    pub(super) fn keep_for_replay(
        &self,
        error: &BackendError,
        queue: impl FnOnce(&Recovery) -> Queued,
    ) -> bool {
        if !error.is_transient() {
            return false;
        }
        let recovery = &self.inner.recovery;
        let was_empty = recovery.pending() == 0;
        match queue(recovery) {
            Queued::Off => return false,
            Queued::Kept if was_empty => tracing::warn!(
                %error,
                "aside: an invalidation failed; it is kept, with any that follow, and replayed when the backend answers"
            ),
            Queued::Kept => tracing::debug!(%error, "aside: an invalidation failed; kept for replay"),
            Queued::Overflowed => {
                #[cfg(feature = "metrics")]
                self.inner.metrics.overflowed();
                tracing::error!(
                    %error,
                    "aside: more invalidations failed than max_pending keeps; they became one clear of the namespace, replayed when the backend answers"
                );
            }
        }
        // An open breaker's skip is counted as short-circuited already.
        if !matches!(error, BackendError::CircuitOpen) {
            Counters::incr(&self.inner.counters.errors);
        }
        self.inner.report_pending();
        self.inner.spawn_replay();
        true
    }

    /// Whether a read of `keys` must not trust the backend yet: a pending
    /// invalidation covers it. This process then calls through (and stores
    /// nothing), as if the backend had failed, until the replay lands.
    pub(super) fn covered(&self, keys: &EntryKeys) -> bool {
        if !self.inner.recovery.covers(keys) {
            return false;
        }
        // A replay task ends with its runtime: this may be the next one.
        self.inner.spawn_replay();
        true
    }

    /// Waits until every invalidation kept for replay has been replayed
    /// (at once if none is pending): for a graceful shutdown, so that no
    /// invalidation dies with the process. Replay goes on as long as it
    /// takes; bound the wait with a timeout.
    ///
    /// An invalidation (by [`invalidate`](Self::invalidate),
    /// [`invalidate_tags`](Self::invalidate_tags), [`clear`](Self::clear),
    /// `#[invalidate]` or a write) that meets a failing backend is kept and
    /// replayed as soon as the backend answers again; meanwhile this
    /// process reads none of what it covers from the backend. The count is
    /// in [`Stats::pending`](crate::Stats::pending).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    ///
    /// let cache = aside::Cache::memory();
    /// // ... serve, then on shutdown:
    /// if tokio::time::timeout(Duration::from_secs(5), cache.replay_pending()).await.is_err() {
    ///     eprintln!("{} invalidations not replayed", cache.stats().pending);
    /// }
    /// # }
    /// ```
    pub async fn replay_pending(&self) {
        let recovery = &self.inner.recovery;
        loop {
            let drained = recovery.drained.notified();
            let mut drained = std::pin::pin!(drained);
            drained.as_mut().enable();
            if recovery.pending() == 0 {
                return;
            }
            self.inner.spawn_replay();
            drained.await;
        }
    }
}

impl Inner {
    /// Starts the replay task, unless one runs (or there is no runtime to
    /// run it on: the next invalidation or covered read tries again).
    pub(super) fn spawn_replay(self: &Arc<Self>) {
        let recovery = &self.recovery;
        if recovery.replaying.swap(true, SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            recovery.replaying.store(false, SeqCst);
            return;
        };
        let task = Replay {
            inner: Arc::downgrade(self),
            recovery: self.recovery.clone(),
            done: false,
        };
        runtime.spawn(task.run());
    }

    /// Replays `items`, oldest first: the first alone (while the backend is
    /// down, an attempt costs one operation), then the rest, tags in
    /// batches and keys a batch at a time. Stops at the first failure that
    /// may pass; drops, and logs, an item the backend refuses for good.
    async fn replay(&self, items: Vec<Item>) -> Result<(), BackendError> {
        let mut items = items.into_iter();
        let Some(first) = items.next() else {
            return Ok(());
        };
        self.replay_each(std::slice::from_ref(&first)).await?;
        let (tags, others): (Vec<Item>, Vec<Item>) = items.partition(|item| matches!(item.op, Op::Tag));
        for batch in tags.chunks(REPLAY_BATCH) {
            let names: Vec<String> = batch.iter().map(|item| item.name.clone()).collect();
            let replayed = self.backend.invalidate_tags(&names).await;
            self.settle(batch, replayed)?;
        }
        for batch in others.chunks(REPLAY_BATCH) {
            self.replay_each(batch).await?;
        }
        Ok(())
    }

    /// Replays each of `items` on its own, all at once.
    async fn replay_each(&self, items: &[Item]) -> Result<(), BackendError> {
        let window = self.settings.invalidation_window;
        let each = items.iter().map(|item| async move {
            let replayed = match &item.op {
                Op::Key(keys) => self.backend.invalidate(keys, window).await.map(drop),
                Op::Tag => {
                    self.backend
                        .invalidate_tags(std::slice::from_ref(&item.name))
                        .await
                }
                Op::Clear => self.backend.clear(&self.settings.namespace).await,
            };
            self.settle(std::slice::from_ref(item), replayed)
        });
        let results = futures_util::future::join_all(each).await;
        results.into_iter().collect()
    }

    /// What a replay of `items` came to: each landed, or is dropped if the
    /// backend refuses it for good; the breaker hears of it either way.
    fn settle(&self, items: &[Item], replayed: Result<(), BackendError>) -> Result<(), BackendError> {
        self.record(&replayed);
        match replayed {
            Ok(()) => {
                for item in items {
                    if self.recovery.landed(item) {
                        let replayed = self.recovery.replayed.load(SeqCst);
                        tracing::info!(
                            replayed,
                            "aside: the backend answers again; every pending invalidation is replayed"
                        );
                    }
                }
                self.report_pending();
                Ok(())
            }
            Err(error) if error.is_transient() => Err(error),
            Err(error) => {
                Counters::incr(&self.counters.errors);
                tracing::error!(%error, names = ?items.iter().map(|i| &i.name).collect::<Vec<_>>(),
                    "aside: the backend refused a replayed invalidation; entries it covers may be stale until their TTL");
                for item in items {
                    self.recovery.dropped(item);
                }
                self.report_pending();
                Ok(())
            }
        }
    }

    /// The pending count, to the metrics.
    pub(super) fn report_pending(&self) {
        #[cfg(feature = "metrics")]
        self.metrics
            .pending(self.recovery.pending(), self.recovery.replayed.load(SeqCst));
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let pending = self.recovery.pending();
        if pending > 0 {
            tracing::error!(
                pending,
                "aside: a cache was dropped with invalidations not yet replayed; other processes may serve what they cover until its TTL"
            );
        }
    }
}

/// The replay task: runs while anything is pending, then ends.
struct Replay {
    /// Not a strong reference: a cache that is dropped stops its replay.
    inner: Weak<Inner>,
    recovery: Arc<Recovery>,
    /// Whether the task ended by itself (rather than with its runtime).
    done: bool,
}

impl Replay {
    async fn run(mut self) {
        let mut pause = RETRY_FIRST;
        loop {
            let items = self.recovery.items();
            if items.is_empty() {
                // An item queued after the look above, by a caller that saw
                // this task running, is this task's to replay.
                self.recovery.replaying.store(false, SeqCst);
                if self.recovery.pending() == 0 || self.recovery.replaying.swap(true, SeqCst) {
                    self.done = true;
                    return;
                }
                continue;
            }
            let Some(inner) = self.inner.upgrade() else {
                self.done = true;
                return;
            };
            let replayed = inner.replay(items).await;
            drop(inner);
            if replayed.is_ok() {
                pause = RETRY_FIRST;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.recovery.answered.notified() => {}
            }
            pause = (pause * 2).min(RETRY_MAX);
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Dropped with its runtime: the next invalidation or covered read
        // starts another on the runtime it runs on.
        self.recovery.replaying.store(false, SeqCst);
        let pending = self.recovery.pending();
        if pending > 0 && self.inner.strong_count() > 0 {
            tracing::error!(
                pending,
                "aside: the runtime stopped with invalidations not yet replayed; they are replayed if the cache is used again"
            );
        }
    }
}
