//! The [`Cache`] handle: its public API (cache-aside, write-through,
//! invalidation, statistics) and the read path (`read_path`, then `lookup_or_load`) behind
//! `get_or_load` and `get_or_load_detached` (through `run`, its generic
//! shell).
//!
//! Each flow has its own file, and `lookup_or_load` is the only place they
//! meet: `lookup` (what a read finds, in the in-process tier or the backend, and
//! what a miss does next), `load` (what follows the loader: storing its
//! value, or standing in for its failure), `stampede` (locks, waits and
//! refreshes), `loader` (the caller's loader, inline or on a task of its
//! own), `write`
//! (write-through and invalidation), `batch`, `replay` (invalidations that
//! met a failing backend), `observe` (counts and spans). `inner` holds what
//! the clones share, and the one door to the backend; `plan` the values
//! the flows pass between them; `slot` a value of the caller's type for the
//! flows, which are not generic; `scoped` what a scope set for a future.
//! The tiers live below: the in-process one in `crate::l1`, the backends in
//! `crate::backend`. Nothing here knows the builder, the global cache or
//! the macros.

mod batch;
mod inner;
mod load;
mod loader;
mod lookup;
mod observe;
mod plan;
mod replay;
pub(crate) mod scoped;
mod slot;
mod stampede;
mod write;

use inner::Inner;
#[cfg(feature = "redis")]
pub(crate) use inner::Log;
#[cfg(feature = "redis")]
use inner::NamedLog;
pub(crate) use inner::Settings;
use loader::{Detach, Detachable, Inline, Loaded, Loader, SendIf, TypedLoader};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Backend, EntryKeys};
use crate::flight::Leader;
use crate::l1::{Local, Watch};
use observe::{CallKind, Observed};
use plan::{Begin, First, InProcess, Pending, Served};
use scoped::Mode;
use slot::Slot;

use crate::cacheable::Cacheable;
use crate::counters::Stats;
use crate::error::Error;
use crate::policy::Policy;
use crate::tags::Stamp;
use stampede::HeldLock;

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
///   or panics, the waiters take turns: one retries while the others wait for
///   it (for `lock_wait` at most), so a failing database never sees them all
///   at once; if its caller is cancelled, a waiter takes over.
/// - **Fail-safe** ([`Policy::fail_safe`]). A value kept past its fresh time
///   stands in for a load that returns an error, and is then fresh again for
///   a throttle, in every process.
/// - **Invalidation that cannot lose a race.** Once [`invalidate`](Self::invalidate)
///   or [`invalidate_tag`](Self::invalidate_tag) has returned, no later read
///   returns a value whose loader started before it, in this process or any
///   other sharing the backend.
/// - **Outages lose no invalidation.** An invalidation that meets a failing
///   backend is kept and replayed as soon as it answers again; meanwhile
///   this process reads nothing it covers from the backend (see
///   [`replay_pending`](Self::replay_pending)).
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
///     .get_or_load("answer", &policy, || async { Ok::<u32, std::io::Error>(42) })
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

/// A cache or its stand-in (see [`Cache::target`]).
#[cfg(feature = "testing")]
type Target<'a> = std::borrow::Cow<'a, Cache>;
#[cfg(not(feature = "testing"))]
type Target<'a> = &'a Cache;

/// A cache, known without keeping it: its allocation stays, so no other
/// cache takes its address.
#[cfg(feature = "testing")]
pub(crate) struct WeakCache(std::sync::Weak<Inner>);

#[cfg(feature = "testing")]
impl WeakCache {
    pub(crate) fn is(&self, cache: &Cache) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&cache.inner))
    }
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
        Cache {
            inner: Arc::new(Inner::new(backend, local, settings)),
        }
    }

    /// Whether `other` is this cache or a clone of it.
    pub(crate) fn is(&self, other: &Cache) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    #[cfg(feature = "testing")]
    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The cache this one's operations go to: itself, or in a test its
    /// stand-in ([`crate::testing::isolated`]).
    fn target(&self) -> Target<'_> {
        #[cfg(feature = "testing")]
        return crate::testing::stand_in(self)
            .map_or(std::borrow::Cow::Borrowed(self), std::borrow::Cow::Owned);
        #[cfg(not(feature = "testing"))]
        self
    }

    /// Who knows this cache without keeping it.
    #[cfg(feature = "testing")]
    pub(crate) fn downgrade(&self) -> WeakCache {
        WeakCache(Arc::downgrade(&self.inner))
    }

    /// Counters of what this cache (and its clones) did so far, and the
    /// circuit breaker's state.
    pub fn stats(&self) -> Stats {
        let this = self.target();
        let mut stats = this.inner.counters.snapshot();
        stats.breaker = this.inner.breaker_state();
        let recovery = &this.inner.recovery;
        stats.pending = recovery.pending() as u64;
        stats.replayed = recovery.replayed.load(std::sync::atomic::Ordering::Relaxed);
        stats.overflows = recovery.overflows.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(feature = "redis")]
        {
            let logs = this
                .inner
                .logs
                .logs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stats.backlog = logs.iter().map(|named| named.log.backlog()).sum();
        }
        stats
    }

    /// Opens the breaker now: the backend is known to be down.
    #[cfg(feature = "redis")]
    pub(crate) fn trip_breaker(&self) {
        self.inner.breaker.trip();
    }

    /// Gives the cache its Redis backend's streams, for write-behind.
    #[cfg(feature = "redis")]
    pub(crate) fn attach_streams(&self, streams: Arc<dyn crate::backend::streams::Streams>) {
        let _ = self.inner.logs.streams.set(streams);
    }

    /// The streams write-behind logs on, and the namespace: `None` without Redis.
    #[cfg(feature = "redis")]
    pub(crate) fn streams(&self) -> Option<(Arc<dyn crate::backend::streams::Streams>, String)> {
        let streams = self.inner.logs.streams.get()?.clone();
        Some((streams, self.inner.settings.namespace.clone()))
    }

    /// The state of the write-behind log `name`, shared by every handle on
    /// it: made by `new` the first time.
    #[cfg(feature = "redis")]
    pub(crate) fn log<L: Log + std::any::Any>(&self, name: &str, new: impl FnOnce() -> L) -> Arc<L> {
        let mut logs = self
            .inner
            .logs
            .logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = logs
            .iter()
            .find(|named| named.name == name)
            .and_then(|named| named.state.clone().downcast::<L>().ok());
        if let Some(state) = found {
            return state;
        }
        let state = Arc::new(new());
        logs.push(NamedLog {
            name: name.to_owned(),
            state: state.clone(),
            log: state.clone(),
        });
        state
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
    pub fn get_or_load<'s, 'k, 'p, T, E, F, Fut>(
        &'s self,
        key: &'k str,
        policy: &'p Policy,
        load: F,
    ) -> impl Future<Output = Result<T, E>> + use<'s, 'k, 'p, T, E, F, Fut>
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run::<T, E, F, Fut, Inline>(key, policy, load)
    }

    /// [`get_or_load`](Self::get_or_load) for a loader that can run on a
    /// task of its own (`Send + 'static`), so that nobody waits for it:
    ///
    /// - A refresh ([`Stampede::Swr`](crate::Stampede::Swr), [`Stampede::Early`](crate::Stampede::Early))
    ///   runs in the background, and the caller that wins it gets the
    ///   current value at once, as every other caller does. The refresh is
    ///   still one across processes, and still loses to an invalidation.
    /// - With [`FailSafe::soft_timeout`](crate::FailSafe::soft_timeout), a load that a value kept for
    ///   [fail-safe](Policy::fail_safe) stands in for returns that value
    ///   once the timeout passes, and finishes in the background, storing
    ///   its value when it lands.
    ///
    /// `#[cached]` calls it where the function's future can be made
    /// `'static`: see its `refresh` option. Outside a Tokio runtime, it
    /// runs inline, as `get_or_load` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aside::{Cache, Policy, Stampede};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let cache = Cache::memory();
    /// let policy = Policy::new()
    ///     .ttl(Duration::from_secs(60))
    ///     .stampede(Stampede::Swr { stale: Duration::from_secs(600) });
    /// let load = |price: u32| move || async move { Ok::<u32, ()>(price) };
    /// let _ = cache.get_or_load_detached("price:7", &policy, load(10)).await;
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// // Due for a refresh: this caller gets the current price at once...
    /// assert_eq!(cache.get_or_load_detached("price:7", &policy, load(11)).await, Ok(10));
    /// // ...while the refresh runs on a task of its own.
    /// tokio::task::yield_now().await;
    /// assert_eq!(cache.get_or_load_detached("price:7", &policy, load(12)).await, Ok(11));
    /// # }
    /// ```
    pub fn get_or_load_detached<'s, 'k, 'p, T, E, F, Fut>(
        &'s self,
        key: &'k str,
        policy: &'p Policy,
        load: F,
    ) -> impl Future<Output = Result<T, E>> + use<'s, 'k, 'p, T, E, F, Fut>
    where
        T: Cacheable,
        E: 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.run::<T, E, F, Fut, Detachable>(key, policy, load)
    }

    /// The read path's generic shell, for a loader that runs inline only
    /// or may also run on a task of its own (`D`): the call's typed side
    /// ([`TypedLoader`]) lent to the path, [`read_path`](Self::read_path), which
    /// is compiled once rather than once per cached function. All else
    /// is there, so that what each function compiles of this is small.
    fn run<'s, 'k, 'p, T, E, F, Fut, D>(
        &'s self,
        key: &'k str,
        policy: &'p Policy,
        load: F,
    ) -> impl Future<Output = Result<T, E>> + use<'s, 'k, 'p, T, E, F, Fut, D>
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        D: Detach<T, F>,
    {
        SendIf::<(T, F, Fut), _>::new(async move {
            let mut loader = std::pin::pin!(TypedLoader::<T, E, F, Fut, D>::new(load));
            let served = self.read_path::<dyn Loader>(key, policy, loader.as_mut()).await;
            loader.answer(served)
        })
    }

    /// The read path, for every cached function: the in-process tier
    /// ([`look_first`](Self::look_first)), then, unless it answered,
    /// [`lookup_or_load`](Self::lookup_or_load). Generic only so that its
    /// `Send` can be proven (see [`SendIf`]): the cached functions all use
    /// `L = dyn Loader`.
    async fn read_path<L: Loader + ?Sized>(
        &self,
        key: &str,
        policy: &Policy,
        mut loader: Pin<&mut L>,
    ) -> Served {
        let this = self.target();
        // In a test, the outcomes counted while this call is polled are
        // recorded as its own.
        #[cfg(feature = "testing")]
        let call = this
            .recorder()
            .map(|recorder| crate::testing::Call::new(recorder, key, policy));
        #[cfg(feature = "testing")]
        let first = crate::testing::polling(call.as_ref(), || {
            this.look_first(key, policy, loader.as_mut().slot())
        });
        #[cfg(not(feature = "testing"))]
        let first = this.look_first(key, policy, loader.as_mut().slot());
        // A hit in the in-process tier never makes the rest's future.
        let Some(first) = first else {
            return Served::Value;
        };
        let rest = this.lookup_or_load(key, policy, first, loader);
        #[cfg(feature = "testing")]
        let rest = crate::testing::polled_as(call.as_ref(), rest);
        rest.await
    }

    /// The read path's first step, in the in-process tier: `None` for a
    /// hit, in `slot`; else where the rest of the path starts. A scope may
    /// ask otherwise: `Mode::Bypass` runs the loader alone;
    /// `Mode::Refresh` loads and stores whatever is cached.
    fn look_first(&self, key: &str, policy: &Policy, slot: &mut dyn Slot) -> Option<First> {
        let mode = scoped::mode();
        let call = self.call_span(CallKind::Lookup, key, policy);
        match self.in_process(key, policy, mode, slot, &call) {
            // Over within this poll: never in flight for anyone to see.
            InProcess::Hit => None,
            in_process => Some(First {
                mode,
                observed: Observed::new(call, policy),
                in_process,
            }),
        }
    }

    /// The rest of the read path, after [`look_first`](Self::look_first):
    /// the backend (`begin`), then the loader, inline or on a task of its
    /// own, and its value landing (`complete`). Generic only so that its
    /// `Send` can be proven (see [`SendIf`]): the cached functions all use
    /// `L = dyn Loader`.
    async fn lookup_or_load<L: Loader + ?Sized>(
        &self,
        key: &str,
        policy: &Policy,
        first: First,
        mut loader: Pin<&mut L>,
    ) -> Served {
        let First {
            mode,
            observed,
            in_process,
        } = first;
        // Detached only inside a Tokio runtime, which runs the task.
        let detach = loader.detachable() && tokio::runtime::Handle::try_current().is_ok();
        let pending = match self
            .begin(
                key,
                policy,
                (mode, detach),
                in_process,
                loader.as_mut().slot(),
                &observed.call,
            )
            .await
        {
            Begin::Answer => return Served::Value,
            Begin::Load(pending) => pending,
        };
        // A future of its own, so that the pending load is not kept in
        // this one's state across `begin`, which a hit only needs.
        self.load_pending(policy, (mode, detach), pending, observed, loader)
            .await
    }

    /// The load [`begin`](Self::begin) planned, if any: on a task of its own,
    /// or inline, and its value landing (`complete`). An `async` block
    /// rather than an `async fn`, whose future would hold its arguments
    /// twice (as passed, and moved into the body).
    #[allow(clippy::manual_async_fn)]
    fn load_pending<'a, L: Loader + ?Sized>(
        &'a self,
        policy: &'a Policy,
        (mode, detach): (Mode, bool),
        mut pending: Option<Pending>,
        mut observed: Observed,
        mut loader: Pin<&'a mut L>,
    ) -> impl Future<Output = Served> + 'a {
        async move {
            // A load that a value stands by for may run on a task of its own:
            // a refresh nobody waits for, or one that outlasts `soft_timeout`.
            if detach && let Some(wait) = pending.as_mut().and_then(|p| self.detachable(p, policy)) {
                let pending = pending.expect("a detachable load was planned");
                loader.as_mut().detach(self, policy, pending, &observed);
                if let Some(wait) = wait {
                    let landed = std::future::poll_fn(|cx| loader.as_mut().poll_landed(cx));
                    let fresh = matches!(tokio::time::timeout(wait.after, landed).await, Ok(true));
                    self.soft_waited(policy, &wait, fresh);
                }
                return Served::Value;
            }
            // The one place the loader runs inline.
            let loaded = {
                let span = observed.start_load();
                std::future::poll_fn(|cx| loader.as_mut().poll_load(cx, mode, span)).await
            };
            self.loaded(policy, &observed, matches!(loaded, Loaded::Value));
            // Moved into the match (`identity`), so that nothing of it is held
            // across the `.await` below.
            match std::convert::identity(loaded) {
                Loaded::Value => {}
                // The loader keeps the error; nothing awaits before the caller
                // takes it (see `SendIf`).
                Loaded::Failed(_held) => {
                    return match self.load_failed(pending, policy) {
                        true => Served::Value,
                        false => Served::Error,
                    };
                }
                Loaded::Panicked(panic) => {
                    self.load_panicked(pending, policy);
                    std::panic::resume_unwind(panic);
                }
            }
            // Boxed, as a lookup's steps past the read are (see `plan`), and
            // only when there is something to land.
            if let Some(pending) = self.to_land(pending, policy) {
                Box::pin(self.complete(pending, policy, loader.as_mut().slot(), observed)).await;
            }
            Served::Value
        }
    }

    /// A detached load (see [`Detach`]): takes the refresh's lock if it
    /// needs one, runs the loader and lands its value; whether the value is
    /// in the loader's slot. Generic only for `SendIf`, as `lookup_or_load` is.
    async fn load_detached<L: Loader + ?Sized>(
        &self,
        mut pending: Pending,
        policy: &Policy,
        mut observed: Observed,
        mut loader: Pin<&mut L>,
    ) -> bool {
        if !self
            .lock_refresh(&mut pending, policy, loader.as_mut().slot())
            .await
        {
            return false;
        }
        let loaded = {
            let span = observed.start_load();
            std::future::poll_fn(|cx| loader.as_mut().poll_load(cx, Mode::Lookup, span)).await
        };
        self.loaded(policy, &observed, matches!(loaded, Loaded::Value));
        match std::convert::identity(loaded) {
            Loaded::Value => {}
            Loaded::Failed(_held) => {
                self.detached_failed(pending, policy, false);
                return false;
            }
            Loaded::Panicked(_) => {
                self.detached_failed(pending, policy, true);
                return false;
            }
        }
        if let Some(pending) = self.to_land(Some(pending), policy) {
            self.complete(pending, policy, loader.as_mut().slot(), observed)
                .await;
        }
        true
    }

    /// What a loaded value lands as: `pending`, if it has anything to do.
    /// Nothing to store (caching is off, or the backend failed), to hand
    /// to waiters, or to release: no need to encode, and nothing to await.
    fn to_land(&self, pending: Option<Pending>, policy: &Policy) -> Option<Pending> {
        match pending {
            Some(pending) if !pending.under.is_idle() => Some(pending),
            Some(idle) => {
                self.loaded_idle(idle, policy);
                None
            }
            None => None,
        }
    }

    /// A loaded value, in `slot`, lands as `pending` says: its waiters get
    /// it, and the backend and the in-process tier store it. Not generic:
    /// the slot encodes its value.
    async fn complete(&self, pending: Pending, policy: &Policy, slot: &mut dyn Slot, observed: Observed) {
        let payload = self.encode_slot(&pending.keys, policy, slot);
        let skip = slot.skipped_by(policy);
        self.finish(pending, policy, payload, skip, slot, observed).await;
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
    /// let saved = cache.put("user:1", &Policy::new(), || async { Ok::<_, std::io::Error>("ada".to_owned()) }).await?;
    /// let read: String = cache
    ///     .get_or_load("user:1", &Policy::new(), || async { Err(std::io::Error::other("not called")) })
    ///     .await?;
    /// assert_eq!((saved.as_str(), read.as_str()), ("ada", "ada"));
    /// # Ok(()) }
    /// ```
    pub async fn put<T, E, F, Fut>(&self, key: &str, policy: &Policy, load: F) -> Result<T, E>
    where
        T: Cacheable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let this = self.target();
        if !this.inner.settings.enabled {
            return load().await;
        }
        this.write_through(key, policy, load).await
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
        let this = self.target();
        if !this.inner.settings.enabled {
            return Ok(None);
        }
        this.read_plain(key).await
    }

    /// Stores `value` at `key` for `ttl` (the cache's default TTL if `None`),
    /// replacing what is there. Like [`put`](Self::put), it invalidates the
    /// key first, so a concurrent load of an older value cannot overwrite it;
    /// an invalidation or write of the key that lands between the two wins,
    /// and the value is then not stored.
    ///
    /// # Errors
    ///
    /// The value does not serialize, or the backend failed: the value was
    /// not stored (the key's old entry is still invalidated, by a replay
    /// once the backend answers, as [`invalidate`](Self::invalidate) does).
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
        let this = self.target();
        if !this.inner.settings.enabled {
            return Ok(());
        }
        this.write_plain(key, value, ttl).await
    }

    /// Invalidates `key`: the entry is deleted, and no later read returns a
    /// value whose load started before this call returned, even one that is
    /// still running now.
    ///
    /// `key` is taken as built. For a `#[cached]` function's entry, name it
    /// with [`entry!`](crate::entry) (`aside::entry!(product(7)).invalidate(&cache)`),
    /// or build a template's key with [`key!`](crate::key).
    ///
    /// # Errors
    ///
    /// The backend refused it for good, or replay is off
    /// ([`CacheBuilder::max_pending`](crate::CacheBuilder::max_pending)`(0)`): the entry may still be there.
    /// A failure that may pass is kept and replayed instead (see
    /// [`replay_pending`](Self::replay_pending)).
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
        let this = self.target();
        if !this.inner.settings.enabled {
            return Ok(());
        }
        this.invalidate_key(key).await
    }

    /// Invalidates every entry that carries `tag`, in O(1): each becomes a
    /// miss, and no later read returns a value whose load started before
    /// this call returned.
    ///
    /// `tag` is taken as built: a tag template's values are escaped (`:` as
    /// `\:`), so build one from a template with [`key!`](crate::key)
    /// (`aside::key!("category:<cat>")`), not `format!`, which matches the
    /// stored tag only while no value contains `:` or `\`.
    ///
    /// # Errors
    ///
    /// The backend refused it for good, or replay is off
    /// ([`CacheBuilder::max_pending`](crate::CacheBuilder::max_pending)`(0)`): the entries may still be valid.
    /// A failure that may pass is kept and replayed instead (see
    /// [`replay_pending`](Self::replay_pending)).
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

    /// Invalidates every entry of this cache's namespace: each becomes a
    /// miss, and no load that started before this call can store its value
    /// after it. Other namespaces on the same Redis are left alone (but a
    /// namespace `a` also clears those named `a:...`), and so are the
    /// namespace's write-behind logs, whose changes are not yet in the
    /// database.
    ///
    /// On Redis this deletes the namespace's names with `SCAN` and `UNLINK`,
    /// 1,000 at a time: it never blocks the server, and takes one round trip
    /// per batch. In memory it takes constant time.
    ///
    /// # Errors
    ///
    /// The backend refused it for good, or replay is off
    /// ([`CacheBuilder::max_pending`](crate::CacheBuilder::max_pending)`(0)`): some entries may remain.
    /// A failure that may pass is kept and replayed instead (see
    /// [`replay_pending`](Self::replay_pending)).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
    /// let cache = aside::Cache::memory();
    /// cache.set("greeting", &"hello", None).await?;
    /// cache.clear().await?;
    /// assert_eq!(cache.get::<String>("greeting").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<(), Error> {
        let this = self.target();
        if !this.inner.settings.enabled {
            return Ok(());
        }
        #[cfg(feature = "testing")]
        this.record(|| crate::testing::Event::Clear);
        let namespace = &this.inner.settings.namespace;
        let cleared = this.inner.call("clear", |b| b.clear(namespace)).await;
        if let Some(local) = &this.inner.local {
            local.changed_all();
        }
        match cleared {
            Ok(()) => Ok(()),
            Err(error) if this.keep_for_replay(&error, |queue| queue.queue_clear()) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Invalidates every entry that carries any of `tags`, in one round trip.
    ///
    /// # Errors
    ///
    /// The backend refused it for good, or replay is off
    /// ([`CacheBuilder::max_pending`](crate::CacheBuilder::max_pending)`(0)`): the entries may still be valid.
    /// A failure that may pass is kept and replayed instead (see
    /// [`replay_pending`](Self::replay_pending)).
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
        let this = self.target();
        if !this.inner.settings.enabled {
            return Ok(());
        }
        this.invalidate_tag_names(tags).await
    }
}

/// What a load runs under: the tokens its store is checked against (none:
/// the backend failed, nothing is stored), the in-process flight it lands,
/// and the backend lock its store releases.
#[derive(Default)]
struct Under {
    stamp: Option<Stamp>,
    leader: Option<Leader>,
    lock: Option<HeldLock>,
}

impl Under {
    /// Nothing to store under, land or release: a load the backend
    /// failed to prepare.
    fn is_idle(&self) -> bool {
        self.stamp.is_none() && self.leader.is_none() && self.lock.is_none()
    }

    fn stamped(stamp: Option<Stamp>) -> Self {
        Under {
            stamp,
            ..Under::default()
        }
    }

    fn leading(self, leader: Leader) -> Self {
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

/// One lookup: its storage names, its policy, the in-process tier's watch
/// that its fills need (none without the tier), and whether its load may run
/// on a task of its own (see [`Cache::get_or_load_detached`]).
#[derive(Clone, Copy)]
struct Call<'a> {
    keys: &'a EntryKeys,
    policy: &'a Policy,
    watch: Option<&'a Watch>,
    detach: bool,
}

impl<'a> Call<'a> {
    fn new(keys: &'a EntryKeys, policy: &'a Policy, watch: Option<&'a Watch>) -> Self {
        Call {
            keys,
            policy,
            watch,
            detach: false,
        }
    }
}

/// Runs `fut` as its own task when inside a Tokio runtime, so that it runs to
/// completion even if the caller is dropped; inline otherwise.
async fn detached(fut: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            if let Err(error) = runtime.spawn(fut).await
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        Err(_) => fut.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's future holds what a hit needs: the load that follows a
    /// miss, and a lookup's rarer turns (a refresh, the lock, waiting for
    /// another caller's load), are boxed when taken. It was 4,816 bytes
    /// before they were; many calls in flight at once each hold one.
    #[test]
    fn a_call_future_holds_what_a_hit_needs() {
        let (cache, policy) = (Cache::memory(), Policy::new());
        let call = cache.get_or_load("k", &policy, || async { Ok::<String, ()>(String::new()) });
        let size = std::mem::size_of_val(&call);
        eprintln!("a get_or_load future: {size} bytes");
        assert!(size <= 2304, "a get_or_load future of {size} bytes");
    }
}
