//! Replaying the invalidations that met a failing backend (the queue is
//! [`crate::recovery`]): one task per cache while anything is pending,
//! straight on the backend, past the breaker, so that the replay is what
//! finds the backend back.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Cache, Inner};
use crate::backend::EntryKeys;
use crate::counters::Counters;
use crate::error::BackendError;
use crate::recovery::{Item, Op, Queued, Recovery};

/// The first pause between two attempts while the backend fails; it doubles
/// up to [`RETRY_MAX`]. Any answer from the backend (another call's) cuts
/// a pause short.
const RETRY_FIRST: Duration = Duration::from_millis(25);
/// The longest pause between two attempts: what a recovery may wait, at
/// most, before the replay starts.
const RETRY_MAX: Duration = Duration::from_millis(200);
/// How many items are replayed at once.
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
    /// in [`Stats::pending`](crate::stats::Stats::pending).
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
        let this = self.target();
        let recovery = &this.inner.recovery;
        loop {
            let drained = recovery.drained.notified();
            let mut drained = std::pin::pin!(drained);
            drained.as_mut().enable();
            if recovery.pending() == 0 {
                return;
            }
            this.inner.spawn_replay();
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
    /// down, an attempt costs one operation), then the rest, a batch at a
    /// time. Stops at the first failure that may pass, but for a cluster
    /// node's open breaker, which says nothing of the other nodes: their
    /// items go on. Drops, and logs, an item the backend refuses for good.
    async fn replay(&self, items: Vec<Item>) -> Result<(), BackendError> {
        let mut failed = None;
        let (first, rest) = items.split_first().map_or((&[][..], &[][..]), |(first, rest)| {
            (std::slice::from_ref(first), rest)
        });
        for batch in std::iter::once(first).chain(rest.chunks(REPLAY_BATCH)) {
            match self.replay_each(batch).await {
                Ok(()) => {}
                Err(BackendError::CircuitOpen) => failed = Some(BackendError::CircuitOpen),
                Err(error) => return Err(error),
            }
        }
        failed.map_or(Ok(()), Err)
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
            self.settle(item, replayed)
        });
        let results = futures_util::future::join_all(each).await;
        results.into_iter().collect()
    }

    /// What the replay of `item` came to: it landed, or is dropped if the
    /// backend refuses it for good; the breaker hears of it either way.
    fn settle(&self, item: &Item, replayed: Result<(), BackendError>) -> Result<(), BackendError> {
        self.record(&replayed);
        match replayed {
            Ok(()) => {
                if self.recovery.landed(item) {
                    let replayed = self.recovery.replayed.load(SeqCst);
                    tracing::info!(
                        replayed,
                        "aside: the backend answers again; every pending invalidation is replayed"
                    );
                }
            }
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                Counters::incr(&self.counters.errors);
                let name = &item.name;
                tracing::error!(%error, name,
                    "aside: the backend refused a replayed invalidation; entries it covers may be stale until their TTL");
                self.recovery.dropped(item);
            }
        }
        // Reported before `replay_pending` hears of it: whoever waited for
        // the queue to drain then reads the metrics as they now are.
        self.report_pending();
        if self.recovery.pending() == 0 {
            self.recovery.drained.notify_waiters();
        }
        Ok(())
    }

    /// The pending count, to the metrics.
    pub(super) fn report_pending(&self) {
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
            let Err(error) = replayed else {
                pause = RETRY_FIRST;
                continue;
            };
            tracing::debug!(%error, pending = self.recovery.pending(), "aside: replay failed, retrying");
            // Another call's answer cuts the pause short, but not below
            // RETRY_FIRST: on a cluster whose other nodes answer all the
            // time, a replay waiting for one node would spin otherwise.
            let failed_at = tokio::time::Instant::now();
            let answered = async {
                self.recovery.answered.notified().await;
                tokio::time::sleep_until(failed_at + RETRY_FIRST).await;
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = answered => {}
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::backend::memory::MemoryBackend;
    use crate::backend::{Backend, BoxFuture, EntryKeys, Fetched, Locked, Tokens};
    use crate::{BackendError, Cache, CacheBuilder, Policy};

    const UP: u8 = 0;
    /// Every operation times out: its outcome is unknown.
    const DOWN: u8 = 1;
    /// Invalidations are refused for good.
    const REFUSING: u8 = 2;

    /// A shared in-memory store (two caches on it are two processes) that
    /// fails on demand.
    #[derive(Debug)]
    struct Flaky {
        store: MemoryBackend,
        state: AtomicU8,
    }

    impl Flaky {
        fn new() -> Arc<Flaky> {
            Arc::new(Flaky {
                store: MemoryBackend::new(1 << 20, true),
                state: AtomicU8::new(UP),
            })
        }

        fn set(&self, state: u8) {
            self.state.store(state, SeqCst);
        }

        /// `op` on the store, unless the backend is failing. (The store
        /// acts when called, not when polled: not called then.)
        fn or_fail<'a, T: Send + 'a>(
            &'a self,
            invalidation: bool,
            op: impl FnOnce(&'a MemoryBackend) -> BoxFuture<'a, Result<T, BackendError>>,
        ) -> BoxFuture<'a, Result<T, BackendError>> {
            match self.state.load(SeqCst) {
                DOWN => Box::pin(async { Err(BackendError::Timeout(Duration::from_millis(250))) }),
                REFUSING if invalidation => Box::pin(async { Err(BackendError::Unsupported("invalidate")) }),
                _ => op(&self.store),
            }
        }
    }

    impl Backend for Flaky {
        fn fetch<'a>(
            &'a self,
            keys: &'a EntryKeys,
            touch: Option<Duration>,
        ) -> BoxFuture<'a, Result<Fetched, BackendError>> {
            self.or_fail(false, |s| s.fetch(keys, touch))
        }
        fn tokens<'a>(
            &'a self,
            keys: &'a EntryKeys,
            window: Duration,
            keep: Duration,
        ) -> BoxFuture<'a, Result<Tokens, BackendError>> {
            self.or_fail(false, |s| s.tokens(keys, window, keep))
        }
        fn store<'a>(
            &'a self,
            keys: &'a EntryKeys,
            entry: Bytes,
            ttl: Duration,
            guard: u64,
            unlock: Option<u64>,
        ) -> BoxFuture<'a, Result<bool, BackendError>> {
            self.or_fail(false, |s| s.store(keys, entry, ttl, guard, unlock))
        }
        fn invalidate<'a>(
            &'a self,
            keys: &'a EntryKeys,
            window: Duration,
        ) -> BoxFuture<'a, Result<u64, BackendError>> {
            self.or_fail(true, |s| s.invalidate(keys, window))
        }
        fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<(), BackendError>> {
            self.or_fail(true, |s| s.invalidate_tags(tags))
        }
        fn lock<'a>(
            &'a self,
            keys: &'a EntryKeys,
            token: u64,
            ttl: Duration,
            window: Duration,
            keep: Duration,
        ) -> BoxFuture<'a, Result<Option<Locked>, BackendError>> {
            self.or_fail(false, |s| s.lock(keys, token, ttl, window, keep))
        }
        fn unlock<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<(), BackendError>> {
            self.or_fail(false, |s| s.unlock(key, token))
        }
        fn clear<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
            self.or_fail(true, |s| s.clear(namespace))
        }
    }

    fn cache_on(backend: &Arc<Flaky>, max_pending: usize) -> Cache {
        // No breaker: each call here reaches the backend.
        CacheBuilder::new()
            .breaker(0, Duration::ZERO)
            .max_pending(max_pending)
            .build_with(backend.clone())
    }

    async fn read(cache: &Cache, key: &str, value: u32) -> u32 {
        let policy = Policy::new().ttl(Duration::from_secs(3600)).tag("t");
        cache
            .get_or_load(key, &policy, || async move { Ok::<_, ()>(value) })
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_invalidation_is_kept_and_replayed_when_the_backend_answers() {
        let backend = Flaky::new();
        let (writer, other) = (cache_on(&backend, 10), cache_on(&backend, 10));
        assert_eq!(read(&writer, "k", 1).await, 1);
        assert_eq!(read(&other, "k", 0).await, 1, "cached");

        backend.set(DOWN);
        assert!(writer.invalidate("k").await.is_ok(), "kept for replay");
        assert!(writer.invalidate_tag("t").await.is_ok(), "kept for replay");
        assert_eq!(writer.stats().pending, 2);
        backend.set(UP);
        // Before the replay: the writer does not read what it invalidated.
        assert_eq!(read(&writer, "k", 2).await, 2);
        tokio::time::timeout(Duration::from_secs(1), writer.replay_pending())
            .await
            .expect("replayed within a second of the backend answering");
        let stats = writer.stats();
        assert_eq!((stats.pending, stats.replayed), (0, 2), "{stats:?}");
        // Another process reads the new value too.
        assert_eq!(read(&other, "k", 3).await, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_through_that_meets_a_failing_backend_is_replayed_as_an_invalidation() {
        let backend = Flaky::new();
        let (writer, other) = (cache_on(&backend, 10), cache_on(&backend, 10));
        assert_eq!(read(&other, "k", 1).await, 1);
        backend.set(DOWN);
        let policy = Policy::new().ttl(Duration::from_secs(3600)).tag("t");
        let put = writer.put("k", &policy, || async { Ok::<_, ()>(2u32) }).await;
        assert_eq!(put, Ok(2), "the write's own result");
        assert_eq!(writer.stats().pending, 1);
        backend.set(UP);
        writer.replay_pending().await;
        assert_eq!(
            read(&other, "k", 3).await,
            3,
            "the old value is gone, and nothing older came back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_becomes_one_clear_of_the_namespace() {
        let backend = Flaky::new();
        let (writer, other) = (cache_on(&backend, 2), cache_on(&backend, 2));
        for key in ["a", "b", "c", "d"] {
            assert_eq!(read(&other, key, 1).await, 1);
        }
        backend.set(DOWN);
        for key in ["a", "b", "c"] {
            assert!(writer.invalidate(key).await.is_ok());
        }
        let stats = writer.stats();
        assert_eq!((stats.pending, stats.overflows), (1, 1), "{stats:?}");
        backend.set(UP);
        writer.replay_pending().await;
        for key in ["a", "b", "c", "d"] {
            assert_eq!(read(&other, key, 2).await, 2, "{key} cleared with the rest");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalidation_refused_for_good_or_without_replay_returns_its_error() {
        let backend = Flaky::new();
        backend.set(REFUSING);
        let cache = cache_on(&backend, 10);
        assert!(cache.invalidate("k").await.is_err());
        assert_eq!(cache.stats().pending, 0);

        backend.set(DOWN);
        let without = cache_on(&backend, 0);
        assert!(without.invalidate("k").await.is_err());
        assert!(without.clear().await.is_err());
        assert_eq!(without.stats().pending, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clear_that_fails_is_replayed_and_covers_every_read() {
        let backend = Flaky::new();
        let (writer, other) = (cache_on(&backend, 10), cache_on(&backend, 10));
        assert_eq!(read(&other, "k", 1).await, 1);
        backend.set(DOWN);
        assert!(writer.clear().await.is_ok());
        backend.set(UP);
        writer.replay_pending().await;
        assert_eq!(read(&other, "k", 2).await, 2);
        assert_eq!(writer.stats().replayed, 1);
    }
}
