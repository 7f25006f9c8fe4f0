//! What a cache did, per function and key, for a test to assert on.

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::counters::Outcome;
use crate::policy::Policy;
use crate::CachedEntry;

/// Records what the caches given it do, in order: each lookup's outcome,
/// each load, put and invalidation, by function and key. Give it to
/// [`CacheBuilder::record`](crate::CacheBuilder::record), or use the one
/// of [`isolated`](super::isolated), which records every cache of a test.
/// Clones share the record.
///
/// Name an entry by its key, or, better, by its function's companion
/// ([`entry!`](crate::entry)), so that a test never re-types a template:
/// `rec.loads(&aside::entry!(price(1)))`. What is recorded: the lookups of
/// [`get_or_load`](crate::Cache::get_or_load) and
/// [`get_or_load_detached`](crate::Cache::get_or_load_detached) (every
/// `#[cached]` call) and their loads, including those on a task of their
/// own; puts (`#[cache_put]`, [`Cache::put`](crate::Cache::put));
/// invalidations of keys and tags (`#[invalidate]` and the cache's
/// methods) and clears. A batch ([`get_or_load_batch`](crate::Cache::get_or_load_batch),
/// `#[cached_batch]`) records the ids its one read did not answer, as
/// lookups and loads; the hits of that read are not recorded.
///
/// # Examples
///
/// ```
/// use aside::testing::{Counts, Recorder};
///
/// # struct Shop { cache: aside::Cache }
/// # impl Shop {
/// #[aside::cached(cache = self.cache, key = "price:<id>")]
/// async fn price(&self, id: u64) -> u32 {
///     id as u32 * 10
/// }
/// # }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), aside::Error> {
/// let rec = Recorder::new();
/// let shop = Shop { cache: aside::Cache::builder().record(&rec).build().await? };
/// shop.price(1).await;
/// shop.price(1).await;
/// let entry = aside::entry!(shop.price(1));
/// assert_eq!(rec.loads(&entry), 1);
/// assert_eq!(
///     rec.counts(&entry),
///     Counts { misses: 1, hits: 1, loads: 1, ..Counts::default() }
/// );
/// rec.assert_hit(&entry);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

/// One thing a recorded cache did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A lookup ended as `outcome`.
    Lookup {
        /// The function that looked, if the policy names one (every `#[cached]` does).
        function: Option<&'static str>,
        /// The key, as the function gave it (before the cache's namespace).
        key: String,
        /// What the lookup found.
        outcome: Outcome,
    },
    /// The function ran for a lookup, inline or on a task of its own, and
    /// returned its value (`ok`), or an error or a panic.
    Load {
        /// As in [`Event::Lookup`].
        function: Option<&'static str>,
        /// As in [`Event::Lookup`].
        key: String,
        /// Whether it returned a value.
        ok: bool,
    },
    /// A value was written through (`#[cache_put]`, [`Cache::put`](crate::Cache::put)).
    Put {
        /// As in [`Event::Lookup`].
        function: Option<&'static str>,
        /// As in [`Event::Lookup`].
        key: String,
    },
    /// A key was invalidated.
    Invalidate {
        /// The key.
        key: String,
    },
    /// A tag was invalidated: every entry stored with it.
    InvalidateTag {
        /// The tag.
        tag: String,
    },
    /// The cache was cleared.
    Clear,
}

/// How often each thing happened to one entry (see [`Recorder::counts`]).
/// Lookups count by [`Outcome`]; every lookup is one of the first six.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Fresh values found.
    pub hits: u64,
    /// Cached `None`s found.
    pub negative: u64,
    /// Values past their fresh time served while refreshed.
    pub stale: u64,
    /// Other callers' loads waited for.
    pub coalesced: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Lookups skipped (a `bypass` or `refresh` scope, or caching off).
    pub bypassed: u64,
    /// Times the function ran for a lookup (a refresh included).
    pub loads: u64,
    /// Of those, the ones that returned an error or panicked.
    pub failed_loads: u64,
    /// Values written through.
    pub puts: u64,
    /// Invalidations that reached the entry: of its key, of one of its
    /// tags (when named by [`entry!`](crate::entry), which knows them), or
    /// a clear.
    pub invalidations: u64,
}

/// An entry, as a test names it: a key (`"price:1"`), or a companion
/// ([`entry!`](crate::entry)`(price(1))`), which also knows its tags.
/// Events count by key, whichever function made them (a `#[cache_put]`
/// writer puts its reader's entry).
pub trait Named {
    /// The key.
    fn key(&self) -> &str;
    /// Whether the entry is stored with `tag` (`false` where its tags are not known).
    fn has_tag(&self, tag: &str) -> bool {
        let _ = tag;
        false
    }
}

impl Named for str {
    fn key(&self) -> &str {
        self
    }
}

impl Named for String {
    fn key(&self) -> &str {
        self
    }
}

impl<T, const KNOWS_CACHE: bool> Named for CachedEntry<T, KNOWS_CACHE> {
    fn key(&self) -> &str {
        CachedEntry::key(self)
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.policy().tags().any(|t| t == tag)
    }
}

impl Recorder {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// Forgets every event so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The events about `entry`, in order.
    pub fn events_of(&self, entry: &(impl Named + ?Sized)) -> Vec<Event> {
        self.lock()
            .iter()
            .filter(|event| concerns(event, entry))
            .cloned()
            .collect()
    }

    /// How often each thing happened to `entry`.
    pub fn counts(&self, entry: &(impl Named + ?Sized)) -> Counts {
        let mut counts = Counts::default();
        for event in self.lock().iter().filter(|event| concerns(event, entry)) {
            counts.add(event);
        }
        counts
    }

    /// How often each thing happened to every entry of the function
    /// `name`: its name (`price`) or its path (`shop::price`: the module
    /// path, then the name, for a method too). A put counts as the
    /// writer's (`#[cache_put]`'s function); invalidations are not counted
    /// here: they name keys and tags.
    pub fn function(&self, name: &str) -> Counts {
        let mut counts = Counts::default();
        let of = |function: &Option<&'static str>| function.is_some_and(|f| path_ends_with(f, name));
        for event in self.lock().iter() {
            match event {
                Event::Lookup { function, .. }
                | Event::Load { function, .. }
                | Event::Put { function, .. }
                    if of(function) =>
                {
                    counts.add(event)
                }
                _ => {}
            }
        }
        counts
    }

    /// How many times the function ran for `entry`.
    pub fn loads(&self, entry: &(impl Named + ?Sized)) -> u64 {
        self.counts(entry).loads
    }

    /// How many lookups of `entry` found a fresh value.
    pub fn hits(&self, entry: &(impl Named + ?Sized)) -> u64 {
        self.counts(entry).hits
    }

    /// How many invalidations reached `entry` (see [`Counts::invalidations`]).
    pub fn invalidations(&self, entry: &(impl Named + ?Sized)) -> u64 {
        self.counts(entry).invalidations
    }

    /// How the last lookup of `entry` ended, if it was looked up.
    pub fn last_outcome(&self, entry: &(impl Named + ?Sized)) -> Option<Outcome> {
        self.lock().iter().rev().find_map(|event| match event {
            Event::Lookup { outcome, .. } if concerns(event, entry) => Some(*outcome),
            _ => None,
        })
    }

    /// Panics, listing what happened to `entry`, unless its last lookup
    /// found a fresh value.
    #[track_caller]
    pub fn assert_hit(&self, entry: &(impl Named + ?Sized)) {
        self.assert_last(entry, Outcome::Hit);
    }

    /// Panics, listing what happened to `entry`, unless its last lookup
    /// found nothing usable (and so ran the function).
    #[track_caller]
    pub fn assert_miss(&self, entry: &(impl Named + ?Sized)) {
        self.assert_last(entry, Outcome::Miss);
    }

    #[track_caller]
    fn assert_last(&self, entry: &(impl Named + ?Sized), expected: Outcome) {
        let last = self.last_outcome(entry);
        if last != Some(expected) {
            panic!(
                "expected the last lookup of `{}` to be a {}, but it was {}; what happened to it: {:?}",
                entry.key(),
                expected.as_str(),
                last.map_or("never looked up", Outcome::as_str),
                self.events_of(entry),
            );
        }
    }

    pub(crate) fn push(&self, event: Event) {
        self.lock().push(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("events", &self.lock().len())
            .finish()
    }
}

impl Counts {
    fn add(&mut self, event: &Event) {
        match event {
            Event::Lookup { outcome, .. } => {
                *match outcome {
                    Outcome::Hit => &mut self.hits,
                    Outcome::Negative => &mut self.negative,
                    Outcome::Stale => &mut self.stale,
                    Outcome::Coalesced => &mut self.coalesced,
                    Outcome::Miss => &mut self.misses,
                    Outcome::Bypass => &mut self.bypassed,
                } += 1;
            }
            Event::Load { ok, .. } => {
                self.loads += 1;
                self.failed_loads += u64::from(!ok);
            }
            Event::Put { .. } => self.puts += 1,
            Event::Invalidate { .. } | Event::InvalidateTag { .. } | Event::Clear => self.invalidations += 1,
        }
    }
}

/// Whether `event` is about `entry`.
fn concerns(event: &Event, entry: &(impl Named + ?Sized)) -> bool {
    match event {
        Event::Lookup { key, .. }
        | Event::Load { key, .. }
        | Event::Put { key, .. }
        | Event::Invalidate { key } => key == entry.key(),
        Event::InvalidateTag { tag } => entry.has_tag(tag),
        Event::Clear => true,
    }
}

/// Whether the path `full` (`app::shop::price`) ends with the segments
/// `name` (`price`, `shop::price`).
fn path_ends_with(full: &str, name: &str) -> bool {
    full == name || full.strip_suffix(name).is_some_and(|head| head.ends_with("::"))
}

/// A lookup being recorded: where its outcome and load go.
pub(crate) struct Call {
    recorder: Recorder,
    function: Option<&'static str>,
    key: String,
}

// The read path holds a `Call` across its `.await`s (see `SendIf`).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Call>();
    send_sync::<std::borrow::Cow<'static, crate::Cache>>();
};

impl Call {
    pub(crate) fn new(recorder: &Recorder, key: &str, policy: &Policy) -> Arc<Call> {
        Arc::new(Call {
            recorder: recorder.clone(),
            function: policy.function_name(),
            key: key.to_owned(),
        })
    }

    pub(crate) fn loaded(&self, ok: bool) {
        self.recorder.push(Event::Load {
            function: self.function,
            key: self.key.clone(),
            ok,
        });
    }
}

thread_local! {
    /// The recorded lookup whose future is being polled on this thread:
    /// where the outcomes counted during the poll go.
    static POLLED: RefCell<Option<Arc<Call>>> = const { RefCell::new(None) };
}

/// `fut`, each poll run as by [`polling`]. Generic, but the read path
/// instantiates it once.
pub(crate) fn polled_as<F: std::future::Future>(call: Option<&Arc<Call>>, fut: F) -> PolledAs<'_, F> {
    PolledAs { call, fut }
}

pin_project_lite::pin_project! {
    /// [`polled_as`]'s future: `fut` in place (an `async fn` would hold it
    /// twice, as passed and as pinned).
    pub(crate) struct PolledAs<'a, F> {
        call: Option<&'a Arc<Call>>,
        #[pin]
        fut: F,
    }
}

impl<F: std::future::Future> std::future::Future for PolledAs<'_, F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = self.project();
        let fut = this.fut;
        polling(*this.call, || fut.poll(cx))
    }
}

/// Runs `poll` with `call` as the lookup polled (none: no lookup is
/// recorded, not even an enclosing one, whose loader this poll may be in).
pub(crate) fn polling<R>(call: Option<&Arc<Call>>, poll: impl FnOnce() -> R) -> R {
    let outer = POLLED.with(|polled| polled.replace(call.cloned()));
    // Put back even if the poll panics (a loader's panic is caught above).
    struct Restore(Option<Arc<Call>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = POLLED.try_with(|polled| polled.replace(self.0.take()));
        }
    }
    let _restore = Restore(outer);
    poll()
}

/// The lookup polled on this thread, if it is recorded.
pub(crate) fn polled() -> Option<Arc<Call>> {
    POLLED.with(|polled| polled.borrow().clone())
}

/// Records `outcome` for the lookup polled on this thread, if it is recorded.
pub(crate) fn outcome(outcome: Outcome) {
    POLLED.with(|polled| {
        if let Some(call) = &*polled.borrow() {
            call.recorder.push(Event::Lookup {
                function: call.function,
                key: call.key.clone(),
                outcome,
            });
        }
    });
}
