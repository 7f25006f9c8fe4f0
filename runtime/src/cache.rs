//! The [`Cache`] handle: cache-aside, write-through and invalidation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{fresh_token, Backend, BoxFuture, EntryKeys, Fetched, LockWatch, Locked};
use crate::breaker::Breaker;
use crate::clock::{now_ms, Instant};
use crate::entry::Entry;
use crate::flight::{Flights, Join, Landed, Leader, Waiter};
use crate::key::storage_key;
use crate::l1::{Local, Meta, Watch};
use crate::stampede::{jittered, recompute_early, HeldLock, DEFAULT_LOCK_TTL, REFRESH_GRACE};
use crate::stats::Counters;
use crate::tags::Stamp;
use crate::{BackendError, CacheBuilder, Codec, Error, Policy, Stampede, Stats};

/// A cache: a cheap-to-clone handle (an `Arc`) over one backend, its settings
/// and its counters. Clones share everything.
///
/// ## Behavior
///
/// - **Cache-aside.** [`get_or_load`](Self::get_or_load) looks the key up,
///   returns a hit, and otherwise runs the loader once, stores its value with
///   the policy's TTL and tags, and returns it.
/// - **Negative caching.** A value that serializes to `null` (a `None`)
///   is stored under the negative TTL; an `Err` from the loader is never stored.
/// - **Coalescing.** Concurrent misses on one key in one process run the
///   loader once; the other callers get the same value. If that loader fails
///   or panics, each waiter runs its own; if its caller is cancelled, a waiter
///   takes over.
/// - **Invalidation that cannot lose a race.** Once [`invalidate`](Self::invalidate)
///   or [`invalidate_tag`](Self::invalidate_tag) has returned, no later read
///   returns a value whose loader started before it, in this process or any
///   other sharing the backend.
/// - **Fail-open.** If the backend errors or exceeds the operation timeout,
///   the call still returns the loader's result; the failure is logged
///   through `tracing` and counted in [`Stats::errors`].
/// - **Corrupt entries** (undecodable bytes, another format version, a payload
///   that no longer fits the type) are misses: counted in [`Stats::corrupt`]
///   and overwritten by the load.
/// - **Time** is Tokio's clock. In a test on a paused clock
///   (`#[tokio::test(start_paused = true)]`), entries of the in-memory
///   backend expire as the test advances it, without waiting.
///
/// # Examples
///
/// ```
/// use aside::{Cache, Policy};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
/// let cache = Cache::memory();
/// let policy = Policy::new().ttl(std::time::Duration::from_secs(60));
/// let answer = cache
///     .get_or_load("answer", &policy, || async { Ok::<_, std::io::Error>(42) })
///     .await?;
/// assert_eq!(answer, 42);
/// // The second call is a hit: the loader does not run.
/// let again: u32 = cache
///     .get_or_load("answer", &policy, || async { Err(std::io::Error::other("not called")) })
///     .await?;
/// assert_eq!(again, 42);
/// assert_eq!(cache.stats().hits, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// The settings a [`CacheBuilder`] hands to the cache.
pub(crate) struct Settings {
    pub(crate) namespace: String,
    pub(crate) default_ttl: Duration,
    pub(crate) invalidation_window: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) codec: Codec,
}

struct Inner {
    backend: Arc<dyn Backend>,
    /// The typed in-process tier, if this cache has one.
    local: Option<Arc<Local>>,
    settings: Settings,
    flights: Flights,
    counters: Counters,
    breaker: Breaker,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.inner.settings;
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend)
            .field("namespace", &settings.namespace)
            .field("default_ttl", &settings.default_ttl)
            .field("invalidation_window", &settings.invalidation_window)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(backend: Arc<dyn Backend>, local: Option<Arc<Local>>, settings: Settings) -> Cache {
        let breaker = Breaker::new(settings.breaker_threshold, settings.breaker_cooldown);
        let (flights, counters) = (Flights::default(), Counters::default());
        Cache {
            inner: Arc::new(Inner {
                backend,
                local,
                settings,
                flights,
                counters,
                breaker,
            }),
        }
    }

    /// An in-process cache with the default settings (see [`CacheBuilder`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = aside::Cache::memory();
    /// # let _ = cache;
    /// ```
    pub fn memory() -> Cache {
        CacheBuilder::new().build_memory()
    }

    /// A cache over a backend of your own, with the default settings.
    ///
    /// See [`Backend`] for what a backend must do.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Cache {
        CacheBuilder::new().build_with(backend)
    }

    /// A builder to configure the backend, namespace, default TTL and timeouts.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = aside::Cache::builder()
    ///     .redis("redis://127.0.0.1:6379")
    ///     .namespace("shop")
    ///     .default_ttl(Duration::from_secs(600))
    ///     .build()
    ///     .await?;
    /// # let _ = cache; Ok(()) }
    /// ```
    pub fn builder() -> CacheBuilder {
        CacheBuilder::new()
    }

    /// Counters of what this cache (and its clones) did so far, and the
    /// circuit breaker's state.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.counters.snapshot();
        stats.breaker = self.inner.breaker.state();
        stats
    }

    /// The runtime entry point behind `#[cached]`: returns the value cached at
    /// `key`, or runs `load` once, caches its `Ok` value under `policy`, and
    /// returns its result.
    ///
    /// `key` is namespaced by the cache. The loader's `Err` is returned as it
    /// is and never cached. Backend failures never surface here (see the
    /// type-level docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = Cache::memory();
    /// let found: Result<Option<String>, std::io::Error> = cache
    ///     .get_or_load("user:7", &Policy::new(), || async { Ok(None) })
    ///     .await;
    /// assert_eq!(found.unwrap(), None);
    /// // A `None` is cached too (under the negative TTL).
    /// let again: Result<Option<String>, std::io::Error> =
    ///     cache.get_or_load("user:7", &Policy::new(), || async { unreachable!() }).await;
    /// assert_eq!(again.unwrap(), None);
    /// assert_eq!(cache.stats().negative_hits, 1);
    /// # }
    /// ```
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, policy: &Policy, load: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let touch = policy.touch(self.inner.settings.default_ttl);
        // Sliding entries stay out of the tier: its hits would not push the
        // backend's expiry out.
        let local = self
            .inner
            .local
            .as_deref()
            .filter(|_| policy.l1_on() && touch.is_none());
        if let Some(local) = local {
            if let Some((value, meta)) = local.get::<T>(key) {
                match self.decide(Stored { value, meta }, policy, true) {
                    Found::Fresh(value) => {
                        Counters::incr(&self.inner.counters.l1_hits);
                        return Ok(value);
                    }
                    Found::Due(due) => {
                        let keys = self.inner.keys(key, policy.tags());
                        let watch = local.watch(key, keys.names());
                        let started = Instant::now();
                        let call = Call::new(&keys, policy, watch.as_ref());
                        return self.refresh(call, load, due, true, started).await;
                    }
                    Found::Gone => {}
                }
            }
        }
        let keys = self.inner.keys(key, policy.tags());
        // Taken before the fetch: a change from here on voids what it fills.
        let watch = local.and_then(|local| local.watch(key, keys.names()));
        let call = Call::new(&keys, policy, watch.as_ref());
        // A lookup is counted once, however many times it looks again.
        let mut first = true;
        loop {
            // What a load costs, for XFetch, runs from here: this fetch stands
            // in for the store's round trip, then come the lock, the tokens
            // and the loader.
            let started = Instant::now();
            let fetched = self
                .inner
                .report(self.inner.call(|b| b.fetch(&keys, touch)).await);
            let counted = std::mem::replace(&mut first, false);
            match fetched
                .as_ref()
                .and_then(|f| self.read_into(&keys, f, policy, counted, call.watch))
            {
                Some(Found::Fresh(value)) => return Ok(value),
                Some(Found::Due(due)) => {
                    return self.refresh(call, load, due, counted, started).await;
                }
                Some(Found::Gone) | None => {}
            }
            if counted {
                Counters::incr(&self.inner.counters.misses);
            }
            let mode = policy.stampede_mode();
            // The backend is failing: no lock to wait for, no tokens to store
            // under, and no load another caller could safely share. Call through.
            if fetched.is_none() {
                return self.load(call, load, Under::default(), started).await;
            }
            if mode == Stampede::None {
                let stamp = self.tokens(&keys).await;
                return self.load(call, load, Under::stamped(stamp), started).await;
            }
            match self.inner.flights.join(&keys.entry) {
                Join::Leader(leader) => {
                    return match mode {
                        // Its tokens come with the lock.
                        Stampede::Lock { lock_ttl, lock_wait } => {
                            let lock = (lock_ttl, lock_wait);
                            self.load_locked(call, lock, load, leader, started).await
                        }
                        _ => {
                            let under = Under::stamped(self.tokens(&keys).await).leading(leader);
                            self.load(call, load, under, started).await
                        }
                    };
                }
                Join::Waiter(waiter) => {
                    // The tokens this caller would load under (the leader's
                    // load takes longer than reading them). Without them the
                    // backend is failing: call through rather than wait.
                    let Some(stamp) = self.tokens(&keys).await else {
                        return self.load(call, load, Under::default(), started).await;
                    };
                    match self.wait(waiter).await {
                        // Only a load that ran under the tokens this caller
                        // read: one that began before an invalidation this
                        // caller has seen is not for it.
                        Landed::Value(payload, Some(theirs)) if theirs == stamp => {
                            if let Ok(value) = self.codec(policy).decode(&payload) {
                                Counters::incr(&self.inner.counters.coalesced);
                                return Ok(value);
                            }
                        }
                        Landed::Value(..) | Landed::Failed => {}
                        // The leader was cancelled, or found the value stored
                        // by another process: look again.
                        Landed::Abandoned | Landed::Stored => continue,
                    }
                    let under = Under::stamped(Some(stamp));
                    return self.load(call, load, under, started).await;
                }
            }
        }
    }

    /// `Stampede::Lock` for the in-process leader: one load across processes.
    /// Takes the backend lock (which reads the entry again and the tokens in
    /// the same round trip) and loads, its store releasing the lock; or waits
    /// for the holder's value (told of its release where the backend can,
    /// polling with backoff as the fallback). Past `lock_wait`, or if
    /// the backend fails, loads without the lock rather than fail.
    async fn load_locked<T, E, F, Fut>(
        &self,
        call: Call<'_>,
        (lock_ttl, lock_wait): (Duration, Duration),
        load: F,
        leader: Leader<'_>,
        started: Instant,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Call { keys, policy, .. } = call;
        // A `lock_wait` too large to add to now means: wait as long as it takes.
        let deadline = Instant::now().checked_add(lock_wait);
        let mut pause = Duration::from_millis(2);
        // Started at the first wait: word of the holder's release, where the
        // backend can give it. A release before it began is found by the
        // next poll.
        let mut watch: Option<Option<LockWatch>> = None;
        loop {
            match self.lock(keys, lock_ttl).await {
                Lock::Taken(held, Locked { entry, tokens }) => {
                    // Another process may have stored the value between our
                    // read and our lock.
                    let fetched = tokens.fetched(entry);
                    if let Some(Found::Fresh(value)) = self.read(keys, &fetched, policy, false) {
                        leader.land(Landed::Stored);
                        held.release().await;
                        return Ok(value);
                    }
                    let under = Under::stamped(Some(tokens)).leading(leader).locked(held);
                    return self.load(call, load, under, started).await;
                }
                Lock::Busy => {
                    let now = Instant::now();
                    if deadline.is_some_and(|deadline| now >= deadline) {
                        break;
                    }
                    if watch.is_none() {
                        Counters::incr(&self.inner.counters.lock_waits);
                        watch = Some(self.inner.backend.watch_lock(keys).await);
                    }
                    let wait = deadline.map_or(pause, |deadline| deadline - now).min(pause);
                    match watch.as_mut().and_then(Option::as_mut) {
                        Some(watch) => _ = tokio::time::timeout(wait, watch.released()).await,
                        None => tokio::time::sleep(wait).await,
                    }
                    pause = (pause * 2).min(Duration::from_millis(50));
                    if let Some(value) = self.reread(keys, policy).await {
                        leader.land(Landed::Stored);
                        return Ok(value);
                    }
                }
                Lock::Failed => break,
            }
        }
        let under = Under::stamped(self.tokens(keys).await).leading(leader);
        self.load(call, load, under, started).await
    }

    /// A refresh (`Swr` past the TTL, `Early` when XFetch says so or past
    /// the TTL): the one caller that wins it, in this process and across
    /// processes, reloads and returns the new value; everyone else gets the
    /// current value at once. If the reload fails, the current value is
    /// returned where [`Due::fallback`] allows it, and the error otherwise.
    async fn refresh<T, E, F, Fut>(
        &self,
        call: Call<'_>,
        load: F,
        due: Due<T>,
        count: bool,
        started: Instant,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let keys = call.keys;
        // A load of the key is in flight in this process: serve what we have.
        let Some(leader) = self.inner.flights.try_lead(&keys.entry) else {
            return Ok(self.serve(due, count));
        };
        let under = match self.lock(keys, DEFAULT_LOCK_TTL).await {
            Lock::Taken(held, Locked { entry, tokens }) => {
                // Another caller may have finished a refresh between our read
                // and our lock. The decision to refresh was taken once, by the
                // read: this re-read only asks whether the entry was replaced.
                if let Some(value) = self.replaced(keys, &tokens.fetched(entry), &due) {
                    leader.land(Landed::Stored);
                    held.release().await;
                    return Ok(self.serve(Due { value, ..due }, count));
                }
                Under::stamped(Some(tokens)).locked(held)
            }
            // Another process is refreshing it.
            Lock::Busy => return Ok(self.serve(due, count)),
            Lock::Failed if due.fallback => return Ok(self.serve(due, count)),
            // Past its fresh time and the backend failing: call through.
            Lock::Failed => Under::default(),
        };
        if count && !due.fallback {
            Counters::incr(&self.inner.counters.misses);
        }
        Counters::incr(&self.inner.counters.refreshes);
        let result = self.load(call, load, under.leading(leader), started).await;
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                Counters::incr(&self.inner.counters.refresh_errors);
                if !due.fallback {
                    return Err(error);
                }
                let key = &keys.entry;
                tracing::warn!(key, "aside: refresh failed, keeping the current value");
                Ok(due.value)
            }
        }
    }

    /// Returns the value of a [`Due`] entry to a caller who does not refresh
    /// it, counting the hit that [`read`](Self::read) left to this point.
    fn serve<T>(&self, due: Due<T>, count: bool) -> T {
        if count && !due.fallback {
            self.count_hit(due.negative);
        }
        due.value
    }

    /// Write-through: runs `load` (the function that changed the data and
    /// returns its new value), stores its `Ok` value at `key` under `policy`
    /// so that the next read is a hit, and returns its result.
    ///
    /// The write also invalidates `key` first, so that a slower load of the
    /// old value, running concurrently, cannot overwrite the new one. An `Err`
    /// stores nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
    /// let cache = Cache::memory();
    /// let saved = cache.put("user:1", &Policy::new(), || async { Ok::<_, std::io::Error>("ada") }).await?;
    /// let read: String = cache
    ///     .get_or_load("user:1", &Policy::new(), || async { Err(std::io::Error::other("not called")) })
    ///     .await?;
    /// assert_eq!((saved, read.as_str()), ("ada", "ada"));
    /// # Ok(()) }
    /// ```
    pub async fn put<T, E, F, Fut>(&self, key: &str, policy: &Policy, load: F) -> Result<T, E>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let keys = self.inner.keys(key, policy.tags());
        // The tag tokens are read before the new value is computed, as for a load.
        let tokens = self.tokens(&keys).await;
        let started = Instant::now();
        let result = load().await;
        if result.is_ok() {
            let payload = result
                .as_ref()
                .ok()
                .and_then(|value| self.encode_value(&keys, policy, value));
            let load_time = started.elapsed();
            let (cache, policy) = (self.clone(), policy.clone());
            // Detached, so that the write's invalidation happens even if the
            // caller is cancelled now: the data has already changed.
            detached(async move {
                let Some(guard) = cache.inner.report(cache.invalidate_keys(&keys).await) else {
                    return;
                };
                if let (Some(payload), Some(tokens)) = (payload, tokens) {
                    let stamp = Stamp {
                        guard,
                        tags: tokens.tags,
                    };
                    cache
                        .store(&keys, &policy, &payload, &stamp, load_time, None)
                        .await;
                }
            })
            .await;
        }
        result
    }

    async fn wait(&self, waiter: Waiter) -> Landed {
        let _waiting = Counters::enter(&self.inner.counters.waiting);
        waiter.wait().await
    }

    /// What a fetched entry offers: a fresh value, a value due for a refresh
    /// (swr past the TTL; early by XFetch, or past the TTL while the backend
    /// keeps it for [`REFRESH_GRACE`]), or nothing (absent, expired,
    /// invalidated by a tag, or undecodable). With `count` (a caller's first
    /// read, not a re-read), counts the hit or the corrupt entry; the hit of
    /// a [`Due`] without a fallback is counted by [`refresh`](Self::refresh),
    /// which alone knows whether it was one.
    fn read<T: DeserializeOwned>(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        policy: &Policy,
        count: bool,
    ) -> Option<Found<T>> {
        let stored = self.decode(keys, fetched, count)?;
        Some(self.decide(stored, policy, count))
    }

    /// [`read`](Self::read), keeping a fresh value in the in-process tier
    /// under `watch` (taken before the fetch).
    fn read_into<T>(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        policy: &Policy,
        count: bool,
        watch: Option<&Watch>,
    ) -> Option<Found<T>>
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let stored = self.decode(keys, fetched, count)?;
        if let (Some(local), Some(watch)) = (&self.inner.local, watch) {
            let weight = fetched.entry.as_ref().map_or(0, Bytes::len);
            let kept = kept_for(policy, stored.meta.fresh_until_ms, now_ms());
            local.fill(watch, &stored.value, stored.meta, kept, weight);
        }
        Some(self.decide(stored, policy, count))
    }

    /// What a stored value offers this read: see [`read`](Self::read).
    fn decide<T>(&self, stored: Stored<T>, policy: &Policy, count: bool) -> Found<T> {
        let Stored { value, meta } = stored;
        let now = now_ms();
        let fresh = now < meta.fresh_until_ms;
        let (due, fallback) = match policy.stampede_mode() {
            // The backend keeps an swr entry for its stale window past the TTL.
            Stampede::Swr { .. } => (!fresh, true),
            Stampede::Early { .. } if !fresh => (true, false),
            Stampede::Early { beta } => {
                let draw = rand::random();
                let due = recompute_early(now, meta.fresh_until_ms, meta.load_time, beta, draw);
                (due, true)
            }
            _ if !fresh => return Found::Gone,
            _ => (false, true),
        };
        if count && fallback {
            self.count_hit(meta.negative);
        }
        if due {
            Found::Due(Due {
                value,
                stored_at_ms: meta.stored_at_ms,
                negative: meta.negative,
                fallback,
            })
        } else {
            Found::Fresh(value)
        }
    }

    fn count_hit(&self, negative: bool) {
        Counters::incr(&self.inner.counters.hits);
        if negative {
            Counters::incr(&self.inner.counters.negative_hits);
        }
    }

    /// The fetched entry, decoded, if there is one and its tags' tokens still
    /// match. With `count`, an undecodable entry is counted and logged.
    fn decode<T: DeserializeOwned>(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        count: bool,
    ) -> Option<Stored<T>> {
        let bytes = fetched.entry.as_ref()?;
        let decoded = Entry::decode(bytes).map_err(|e| e.to_string()).and_then(|entry| {
            if !Stamp::tags_match(&entry.tag_versions, &fetched.tags) {
                return Ok(None);
            }
            let value = entry.codec.decode(entry.payload).map_err(|e| e.to_string())?;
            Ok(Some(Stored {
                value,
                meta: entry.meta(),
            }))
        });
        match decoded {
            Ok(stored) => stored,
            Err(reason) => {
                if count {
                    Counters::incr(&self.inner.counters.corrupt);
                    let key = &keys.entry;
                    tracing::warn!(key, %reason, "aside: unreadable cache entry, treating it as a miss");
                }
                None
            }
        }
    }

    /// The value of a fresh entry that replaced the one `due` came from (a
    /// refresh that another caller finished), if `fetched` holds one.
    fn replaced<T: DeserializeOwned>(&self, keys: &EntryKeys, fetched: &Fetched, due: &Due<T>) -> Option<T> {
        let stored = self.decode(keys, fetched, false)?;
        let newer = stored.meta.stored_at_ms != due.stored_at_ms && now_ms() < stored.meta.fresh_until_ms;
        newer.then_some(stored.value)
    }

    /// Reads `keys` again, uncounted (the lookup was counted already): the
    /// value, if a fresh one is there now. For `Stampede::Lock`, whose reads
    /// draw nothing; a refresh asks [`replaced`](Self::replaced) instead.
    async fn reread<T: DeserializeOwned>(&self, keys: &EntryKeys, policy: &Policy) -> Option<T> {
        let fetched = self
            .inner
            .report(self.inner.call(|b| b.fetch(keys, None)).await)?;
        match self.read(keys, &fetched, policy, false) {
            Some(Found::Fresh(value)) => Some(value),
            _ => None,
        }
    }

    /// The tokens a load of `keys` runs under, read (and the missing ones
    /// created) now; `None` if the backend failed.
    async fn tokens(&self, keys: &EntryKeys) -> Option<Stamp> {
        let window = self.inner.settings.invalidation_window;
        let tokens = self.inner.call(|b| b.tokens(keys, window)).await;
        self.inner.report(tokens)
    }

    /// Runs the loader and stores its value under `under`'s tokens, landing
    /// its flight and releasing its lock. The entry records the time since
    /// `started` as what the load cost (XFetch's δ).
    async fn load<T, E, F, Fut>(
        &self,
        call: Call<'_>,
        load: F,
        under: Under<'_>,
        started: Instant,
    ) -> Result<T, E>
    where
        T: Serialize + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Call { keys, policy, watch } = call;
        let Under { stamp, leader, lock } = under;
        Counters::incr(&self.inner.counters.loads);
        let result = match catch_unwind(load()).await {
            Ok(result) => result,
            Err(panic) => {
                // Waiters run their own loads rather than wait for this one;
                // the lock, dropped while unwinding, is released in the background.
                if let Some(leader) = &leader {
                    leader.land(Landed::Failed);
                }
                std::panic::resume_unwind(panic);
            }
        };
        let load_time = started.elapsed();
        let payload = result
            .as_ref()
            .ok()
            .and_then(|value| self.encode_value(keys, policy, value));
        let Some(payload) = payload else {
            if let Some(leader) = &leader {
                leader.land(Landed::Failed);
            }
            release(lock).await;
            return result;
        };
        if let Some(leader) = &leader {
            leader.land(Landed::Value(payload.clone(), stamp.clone()));
        }
        // Waiters already have the value; the flight stays open until the
        // write lands so that callers arriving meanwhile still join it.
        let stored = match &stamp {
            Some(stamp) => self.store(keys, policy, &payload, stamp, load_time, lock).await,
            None => release(lock).await,
        };
        // Kept in process only once the backend has it: a store refused
        // because of an invalidation is not served from here either.
        if let (Some(meta), Some(watch), Some(local), Ok(value)) = (stored, watch, &self.inner.local, &result)
        {
            let kept = kept_for(policy, meta.fresh_until_ms, now_ms());
            local.fill(watch, value, meta, kept, payload.len());
        }
        drop(leader);
        result
    }

    /// Stores a loaded payload, unless the key was invalidated since `stamp`
    /// was read (the backend checks the guard atomically; a load that
    /// outlived its guard finds it gone and is not stored either). Releases
    /// `lock` in the same round trip. Returns what was stored, if it was.
    async fn store(
        &self,
        keys: &EntryKeys,
        policy: &Policy,
        payload: &[u8],
        stamp: &Stamp,
        load_time: Duration,
        lock: Option<HeldLock>,
    ) -> Option<Meta> {
        let codec = self.codec(policy);
        let ttl = policy.effective_ttl(self.inner.settings.default_ttl, codec.is_null(payload));
        if ttl.is_zero() {
            return release(lock).await;
        }
        let ttl = jittered(ttl, policy.jitter_share(), rand::random());
        // How long the value is fresh (in the envelope) and how long the
        // backend keeps it: longer for swr, which serves it stale meanwhile,
        // and for early, which serves it while a late refresh runs.
        let (fresh, ttl) = match policy.stampede_mode() {
            Stampede::Swr { stale } => (ttl, ttl.saturating_add(stale)),
            Stampede::Early { .. } => (ttl, ttl.saturating_add(REFRESH_GRACE)),
            // A sliding entry's freshness is its backend TTL, which hits extend.
            _ if policy.touch(ttl).is_some() => (Duration::MAX, ttl),
            _ => (ttl, ttl),
        };
        let key = &keys.entry;
        let Some(entry) = Entry::encode(now_ms(), fresh, load_time, &stamp.tags, (codec, payload)) else {
            tracing::warn!(
                key,
                tags = stamp.tags.len(),
                "aside: too many tags to store, not caching it"
            );
            return release(lock).await;
        };
        let meta = Entry::decode(&entry).ok().map(|entry| entry.meta());
        let unlock = lock.as_ref().map(HeldLock::token);
        let stored = self
            .inner
            .call(|b| b.store(keys, entry, ttl, stamp.guard, unlock))
            .await;
        // Released with the store; if that failed, dropping `lock` releases
        // it in the background.
        if let (Ok(_), Some(held)) = (&stored, lock) {
            held.disarm();
        }
        match self.inner.report(stored) {
            Some(true) => meta,
            Some(false) => {
                tracing::debug!(
                    key,
                    "aside: key invalidated during the load, not caching the loaded value"
                );
                None
            }
            None => None,
        }
    }

    /// The codec `policy` writes with.
    fn codec(&self, policy: &Policy) -> Codec {
        policy.codec_or(self.inner.settings.codec)
    }

    fn encode_value<T: Serialize>(&self, keys: &EntryKeys, policy: &Policy, value: &T) -> Option<Bytes> {
        match self.codec(policy).encode(value) {
            Ok(payload) => Some(Bytes::from(payload)),
            Err(error) => {
                let key = &keys.entry;
                tracing::warn!(key, %error, "aside: value does not serialize, not caching it");
                None
            }
        }
    }

    /// Reads the value at `key`, if a fresh one is stored, carries no tags,
    /// and decodes as `T`. (A tagged entry can only be checked by a read that
    /// names its tags, such as its `#[cached]` function.)
    ///
    /// # Errors
    ///
    /// A backend failure. A corrupt entry is not an error: it reads as `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::memory();
    /// cache.set("greeting", &"hello", None).await?;
    /// assert_eq!(cache.get::<String>("greeting").await?.as_deref(), Some("hello"));
    /// assert_eq!(cache.get::<String>("missing").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        let keys = self.inner.keys(key, &[]);
        let fetched = self.inner.call(|b| b.fetch(&keys, None)).await?;
        let Some(bytes) = fetched.entry else {
            return Ok(None);
        };
        match Entry::decode(&bytes) {
            Ok(entry) if entry.is_fresh(now_ms()) && entry.tag_versions.is_empty() => {
                Ok(entry.codec.decode(entry.payload).ok())
            }
            _ => Ok(None),
        }
    }

    /// Stores `value` at `key` for `ttl` (the cache's default TTL if `None`),
    /// replacing what is there. Like [`put`](Self::put), it invalidates the
    /// key first, so a concurrent load of an older value cannot overwrite it;
    /// an invalidation or write of the key that lands between the two wins,
    /// and the value is then not stored.
    ///
    /// # Errors
    ///
    /// The value does not serialize, or the backend failed.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// use std::time::Duration;
    ///
    /// let cache = aside::Cache::memory();
    /// cache.set("config:theme", &"dark", Some(Duration::from_secs(30))).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let ttl = ttl.unwrap_or(self.inner.settings.default_ttl);
        let codec = self.inner.settings.codec;
        let payload = codec.encode(value).map_err(Error::Encode)?;
        let keys = self.inner.keys(key, &[]);
        let guard = self.invalidate_keys(&keys).await?;
        if !ttl.is_zero() {
            let Some(entry) = Entry::encode(now_ms(), ttl, Duration::ZERO, &[], (codec, &payload)) else {
                unreachable!("an entry without tags always encodes")
            };
            // Refused only if another invalidation or write came in between,
            // which then wins: nothing to report.
            self.inner
                .call(|b| b.store(&keys, entry, ttl, guard, None))
                .await?;
        }
        Ok(())
    }

    /// Invalidates `key`: the entry is deleted, and no later read returns a
    /// value whose load started before this call returned, even one that is
    /// still running now.
    ///
    /// # Errors
    ///
    /// The backend failed: the entry may still be there.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::memory();
    /// cache.set("product:1", &"lamp", None).await?;
    /// cache.invalidate("product:1").await?;
    /// assert_eq!(cache.get::<String>("product:1").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn invalidate(&self, key: &str) -> Result<(), Error> {
        self.invalidate_keys(&self.inner.keys(key, &[])).await?;
        self.inner.forget(key);
        Ok(())
    }

    /// Deletes the entry and gives the key a new guard token, returned.
    async fn invalidate_keys(&self, keys: &EntryKeys) -> Result<u64, BackendError> {
        let guard = self
            .inner
            .call(|b| b.invalidate(keys, self.inner.settings.invalidation_window))
            .await;
        // After the backend: a read that starts from here on finds the
        // backend invalidated, and one that started before is voided.
        self.inner.changed([keys.entry.as_str()]);
        guard
    }

    /// Invalidates every entry that carries `tag`, in O(1): each becomes a
    /// miss, and no later read returns a value whose load started before
    /// this call returned.
    ///
    /// # Errors
    ///
    /// The backend failed: the entries may still be valid.
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = Cache::memory();
    /// let policy = Policy::new().tag("category:7");
    /// let load = |name: &str| {
    ///     let name = name.to_owned();
    ///     || async move { Ok::<String, ()>(name) }
    /// };
    /// let _ = cache.get_or_load("product:1", &policy, load("lamp")).await;
    /// cache.invalidate_tag("category:7").await?;
    /// let reloaded = cache.get_or_load("product:1", &policy, load("new lamp")).await;
    /// assert_eq!(reloaded.as_deref(), Ok("new lamp"));
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> Result<(), Error> {
        self.invalidate_tags(&[tag]).await
    }

    /// Invalidates every entry that carries any of `tags`, in one round trip.
    ///
    /// # Errors
    ///
    /// The backend failed: the entries may still be valid.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::memory();
    /// cache.invalidate_tags(&["product:1", "category:7"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<(), Error> {
        let names: Vec<String> = tags.iter().map(|t| self.inner.tag_key(t.as_ref())).collect();
        let done = self.inner.call(|b| b.invalidate_tags(&names)).await;
        self.inner.changed(names.iter().map(String::as_str));
        Ok(done?)
    }
}

impl Cache {
    /// What `#[invalidate]` runs after its body succeeded. Detached, so that
    /// it completes even if the caller is cancelled now (the data has already
    /// changed). A failure is logged and counted but not returned: the write
    /// itself succeeded.
    pub(crate) async fn invalidate_after_write(self, keys: Vec<String>, tags: Vec<String>) {
        detached(async move {
            let mut failed = Vec::new();
            for key in &keys {
                if let Err(error) = self.invalidate_keys(&self.inner.keys(key, &[])).await {
                    failed.push(error);
                }
                self.inner.forget(key);
            }
            if !tags.is_empty() {
                if let Err(Error::Backend(error)) = self.invalidate_tags(&tags).await {
                    failed.push(error);
                }
            }
            for error in failed {
                Counters::incr(&self.inner.counters.errors);
                tracing::error!(%error, ?keys, ?tags, "aside: invalidation after a write failed; entries may be stale until their TTL");
            }
        })
        .await;
    }
}

impl Cache {
    /// Tries to take the stampede lock of `keys`. The guard is armed before
    /// asking, so that an attempt cancelled or timed out after the backend
    /// took the lock is still undone.
    async fn lock(&self, keys: &EntryKeys, ttl: Duration) -> Lock {
        let token = fresh_token();
        let held = HeldLock::new(self.clone(), keys.lock().to_owned(), token);
        let window = self.inner.settings.invalidation_window;
        let locked = self.inner.call(|b| b.lock(keys, token, ttl, window)).await;
        match self.inner.report(locked) {
            Some(Some(locked)) => Lock::Taken(held, locked),
            Some(None) => {
                held.disarm();
                Lock::Busy
            }
            None => Lock::Failed,
        }
    }

    /// Releases a lock taken by this cache; a failure only leaves the lock
    /// to its TTL.
    pub(crate) async fn unlock(&self, key: &str, token: u64) {
        self.inner.report(self.inner.call(|b| b.unlock(key, token)).await);
    }
}

/// The outcome of asking for a lock.
enum Lock {
    /// Taken, with what was read under it.
    Taken(HeldLock, Locked),
    /// Someone else holds it.
    Busy,
    /// The backend failed (the guard still undoes a lock it may have taken).
    Failed,
}

/// What a load runs under: the tokens its store is checked against (none:
/// the backend failed, nothing is stored), the in-process flight it lands,
/// and the backend lock its store releases.
#[derive(Default)]
struct Under<'a> {
    stamp: Option<Stamp>,
    leader: Option<Leader<'a>>,
    lock: Option<HeldLock>,
}

impl<'a> Under<'a> {
    fn stamped(stamp: Option<Stamp>) -> Self {
        Under {
            stamp,
            ..Under::default()
        }
    }

    fn leading(self, leader: Leader<'a>) -> Self {
        Under {
            leader: Some(leader),
            ..self
        }
    }

    fn locked(self, lock: HeldLock) -> Self {
        Under {
            lock: Some(lock),
            ..self
        }
    }
}

/// Releases a lock the caller may hold. (Returns nothing stored, for
/// [`Cache::store`]'s early returns.)
async fn release(lock: Option<HeldLock>) -> Option<Meta> {
    if let Some(held) = lock {
        held.release().await;
    }
    None
}

/// How long the in-process tier may keep a value fresh until
/// `fresh_until_ms`: as long as the backend keeps it under `policy` (past
/// its freshness for swr's stale window and early's grace).
fn kept_for(policy: &Policy, fresh_until_ms: u64, now_ms: u64) -> Duration {
    let past = match policy.stampede_mode() {
        Stampede::Swr { stale } => stale,
        Stampede::Early { .. } => REFRESH_GRACE,
        _ => Duration::ZERO,
    };
    let kept = Duration::from_millis(fresh_until_ms.saturating_sub(now_ms)).saturating_add(past);
    policy.l1_cap(kept)
}

/// One lookup: its storage names, its policy, and the in-process tier's
/// watch that its fills need (none without the tier).
#[derive(Clone, Copy)]
struct Call<'a> {
    keys: &'a EntryKeys,
    policy: &'a Policy,
    watch: Option<&'a Watch>,
}

impl<'a> Call<'a> {
    fn new(keys: &'a EntryKeys, policy: &'a Policy, watch: Option<&'a Watch>) -> Self {
        Call { keys, policy, watch }
    }
}

/// What a read found.
enum Found<T> {
    /// A value to return.
    Fresh(T),
    /// A value to return unless this caller wins the refresh.
    Due(Due<T>),
    /// A value past its time: a miss.
    Gone,
}

/// A value due for a refresh.
struct Due<T> {
    value: T,
    /// When the entry was stored: a re-read that finds another time finds
    /// another caller's refresh.
    stored_at_ms: u64,
    negative: bool,
    /// Whether `value` may stand in for a failed refresh: yes while it is
    /// fresh (early) or stale within swr's window. An early entry past its
    /// TTL is only served while another caller refreshes it.
    fallback: bool,
}

/// A decoded entry whose tags still hold.
struct Stored<T> {
    value: T,
    meta: Meta,
}

/// Runs `fut` as its own task when inside a Tokio runtime, so that it runs to
/// completion even if the caller is dropped; inline otherwise.
async fn detached(fut: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            if let Err(error) = runtime.spawn(fut).await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
        Err(_) => fut.await,
    }
}

/// Runs `fut`, returning a panic from it as an `Err` instead of unwinding.
async fn catch_unwind<F: Future>(fut: F) -> std::thread::Result<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    })
    .await
}

impl Inner {
    /// Runs one backend operation through the circuit breaker: while it is
    /// open, fails at once with [`BackendError::CircuitOpen`] instead.
    async fn call<'a, T>(
        &'a self,
        op: impl FnOnce(&'a dyn Backend) -> BoxFuture<'a, Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        if !self.breaker.allow() {
            Counters::incr(&self.counters.short_circuited);
            return Err(BackendError::CircuitOpen);
        }
        let result = op(&*self.backend).await;
        match &result {
            Ok(_) => self.breaker.success(),
            Err(_) => self.breaker.failure(),
        }
        result
    }

    /// The storage names for `key` and `tags` (each shortened past
    /// [`MAX_KEY_LEN`](crate::key::MAX_KEY_LEN) bytes). Entries live at `{ns}:{key}`;
    /// aside's own tokens at `{ns}#...`, which no entry name can equal
    /// (the namespace may not contain `#`).
    fn keys(&self, key: &str, tags: &[String]) -> EntryKeys {
        let tags = tags.iter().map(|tag| self.tag_key(tag)).collect();
        EntryKeys::new(&self.settings.namespace, &storage_key(key), tags)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}#tag:{}", self.settings.namespace, storage_key(tag))
    }

    /// This process changed `names` (storage names): the in-process tier
    /// drops what depends on them before the change returns.
    fn changed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        if let Some(local) = &self.local {
            local.changed(names);
        }
    }

    /// Frees `key`'s place in the in-process tier (once
    /// [`changed`](Self::changed) has made sure it is not served).
    fn forget(&self, key: &str) {
        if let Some(local) = &self.local {
            local.forget(key);
        }
    }

    /// Fail-open: a backend error becomes `None`, logged and counted.
    fn report<T>(&self, result: Result<T, BackendError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            // Counted as short-circuited, and logged once when the breaker opened.
            Err(BackendError::CircuitOpen) => None,
            Err(error) => {
                Counters::incr(&self.counters.errors);
                let source = std::error::Error::source(&error);
                tracing::warn!(%error, ?source, "aside: cache backend failed, calling through");
                None
            }
        }
    }
}
