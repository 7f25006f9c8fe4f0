//! The typed in-process tier: decoded values, served by clone, dropped when a
//! key they depend on changes.
//!
//! An entry depends on storage names: its entry key and its tags' token keys.
//! Each name has one [`Dep`], shared by every entry that depends on it and
//! flagged, for good, when the name changes: by this process's own writes,
//! or, over Redis, by a client-tracking push. A read checks its entry's
//! flags, so one flag drops every entry of a tag at once.
//!
//! A fill takes its [`Watch`] (the deps) *before* the backend read or the load
//! whose value it keeps. A change that lands between that read and the fill
//! flags the fill's own deps, so such a fill is never served.
//!
//! When coherence is lost (the tracking connection dropped), every dep is
//! flagged and the tier is bypassed, no hits and no fills, until tracking is
//! back.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use quick_cache::sync::{Cache as Map, EntryAction};
use quick_cache::Weighter;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::clock;
use crate::codec::{Codec, CodecError};
use crate::entry::Meta;

/// The in-process tier's bound and, optionally, how long it keeps an entry at
/// most; for [`CacheBuilder::l1`](crate::CacheBuilder::l1).
///
/// The tier holds decoded values and returns clones of them: a hit parses
/// nothing and crosses no network. An entry never outlives its value's TTL.
/// In front of Redis, it is kept coherent by Redis itself (see the guide's page
/// [`guide::tiers`](crate::guide::tiers)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aside::L1;
///
/// let by_count = L1::entries(50_000);
/// let by_size = L1::bytes(64 << 20).ttl(Duration::from_secs(30));
/// # let _ = (by_count, by_size);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1 {
    bound: Bound,
    ttl: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Entries(u64),
    Bytes(u64),
}

impl L1 {
    /// At most `n` entries. What is evicted first is what was read least
    /// (a scan-resistant policy: keys read once do not push out hot ones).
    pub const fn entries(n: u64) -> Self {
        L1 {
            bound: Bound::Entries(n),
            ttl: None,
        }
    }

    /// At most `bytes`, each entry weighed by its encoded size plus its key.
    ///
    /// The tier is split into shards (up to four per core, fewer for a small
    /// bound), each with its share of the bound: a value heavier than a
    /// shard's share is not kept in the tier (it is still served from the
    /// backend). A value of 1/256 of the bound is always kept.
    pub const fn bytes(bytes: u64) -> Self {
        L1 {
            bound: Bound::Bytes(bytes),
            ttl: None,
        }
    }

    /// Keeps an entry at most `ttl`, however long its value lives.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

impl Default for L1 {
    /// 10,000 entries.
    fn default() -> Self {
        L1::entries(10_000)
    }
}

/// One storage name that entries depend on: set once the name changed.
#[derive(Debug, Default)]
pub(crate) struct Dep(AtomicBool);

impl Dep {
    fn changed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// An entry: the value as its own type, and what it depends on.
struct Held {
    value: Arc<dyn Any + Send + Sync>,
    meta: Meta,
    /// Until when (aside's clock, ms) it may be served; a sliding hit moves
    /// it. An entry past it is dropped when read, or evicted.
    until_ms: AtomicU64,
    deps: Arc<[Arc<Dep>]>,
    weight: u32,
    /// The codec the value was stored with, and how to encode it again for
    /// a reader that asks for bytes ([`Local::encoded`]).
    codec: Codec,
    encode: Encode,
}

/// What the tier's bound counts: entries, or bytes (each entry's key and
/// encoded value).
#[derive(Clone, Copy)]
enum Weigh {
    Count,
    Bytes,
}

impl Weighter<String, Arc<Held>> for Weigh {
    fn weight(&self, key: &String, held: &Arc<Held>) -> u64 {
        match self {
            Weigh::Count => 1,
            // Never 0: the map never evicts an entry that weighs nothing.
            Weigh::Bytes => (key.len() as u64).saturating_add(u64::from(held.weight)).max(1),
        }
    }
}

/// Encodes a held value (of the type it was filled with) in a codec.
pub(crate) type Encode = fn(&(dyn Any + Send + Sync), Codec) -> Option<Vec<u8>>;

fn encode_as<T: Serialize + 'static>(value: &(dyn Any + Send + Sync), codec: Codec) -> Option<Vec<u8>> {
    codec.encode(value.downcast_ref::<T>()?).ok()
}

/// A value held as its encoded bytes, not yet decoded: one written by
/// `Cache::set`, whose type is only known to its readers.
struct Encoded(Bytes);

fn encoded_bytes(value: &(dyn Any + Send + Sync), _: Codec) -> Option<Vec<u8>> {
    Some(value.downcast_ref::<Encoded>()?.0.to_vec())
}

/// Where [`Local::take`] puts a hit: a place for a value of one type.
pub(crate) trait Place {
    /// Clones `value` in, if it is of the place's type; whether it was.
    fn clone_in(&mut self, value: &(dyn Any + Send + Sync)) -> bool;

    /// Decodes `bytes`, written in `codec`, in; whether they decoded.
    fn decode_in(&mut self, codec: Codec, bytes: &[u8]) -> Result<(), CodecError>;

    /// The value in the place, shared, with its encoder: for the tier to
    /// hold it decoded.
    fn shared(&self) -> Option<(Arc<dyn Any + Send + Sync>, Encode)>;
}

impl<T> Place for Option<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn clone_in(&mut self, value: &(dyn Any + Send + Sync)) -> bool {
        let Some(value) = value.downcast_ref::<T>() else {
            return false;
        };
        *self = Some(value.clone());
        true
    }

    fn decode_in(&mut self, codec: Codec, bytes: &[u8]) -> Result<(), CodecError> {
        *self = Some(codec.decode(bytes)?);
        Ok(())
    }

    fn shared(&self) -> Option<(Arc<dyn Any + Send + Sync>, Encode)> {
        let value = self.as_ref()?;
        Some((Arc::new(value.clone()), encode_as::<T>))
    }
}

/// What [`Local::take`] finds.
pub(crate) enum Kept<T> {
    /// A value of the type asked for.
    Value(T, Meta),
    /// A value of another type (another function's at the same key, or
    /// bytes written by `set` that do not decode as it): a corrupt entry.
    OtherType,
    Nothing,
}

#[cfg(test)]
impl<T> Kept<T> {
    fn value(self) -> Option<T> {
        match self {
            Kept::Value(value, _) => Some(value),
            _ => None,
        }
    }
}

/// The deps of one key, taken before the read or the load that may fill it.
pub(crate) struct Watch {
    key: String,
    deps: Arc<[Arc<Dep>]>,
}

impl Watch {
    fn changed(&self) -> bool {
        self.deps.iter().any(|dep| dep.changed())
    }
}

/// The tier itself.
pub(crate) struct Local {
    /// quick_cache, chosen over moka by `benches/maps.rs`: the same hit
    /// ratios, a sixth of the time per hit. It has no expiry of its own;
    /// the tier needs none (see `Held::until_ms`).
    entries: Map<String, Arc<Held>, Weigh>,
    deps: Mutex<Deps>,
    ttl: Option<Duration>,
    /// Whether this tier is the cache's only store of values (the in-memory
    /// cache), rather than a copy of what Redis holds.
    alone: bool,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L1")
            .field("entries", &self.entries.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

struct Deps {
    /// Whether this tier can vouch for what it holds; false while coherence
    /// is lost, when no watch is handed out.
    healthy: bool,
    by_name: HashMap<String, Weak<Dep>>,
    /// Names registered since dead ones were last swept out, and how many
    /// were left then: the next sweep comes after as many more (at least
    /// 1,024), so that sweeping costs O(1) per registration.
    since_sweep: usize,
    left_by_sweep: usize,
}

impl Local {
    /// An empty tier: `alone`, the only store of an in-memory cache (always
    /// coherent); otherwise a copy of Redis, trusted once tracking is on.
    pub(crate) fn new(config: L1, alone: bool) -> Self {
        let entries = match config.bound {
            Bound::Entries(n) => {
                Map::with_weighter(usize::try_from(n).unwrap_or(usize::MAX), n, Weigh::Count)
            }
            // The map sizes its table by how many items it expects: about
            // one per KiB, a small JSON value.
            Bound::Bytes(bytes) => Map::with_weighter(
                usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(64),
                bytes,
                Weigh::Bytes,
            ),
        };
        Local {
            entries,
            deps: Mutex::new(Deps {
                healthy: alone,
                by_name: HashMap::new(),
                since_sweep: 0,
                left_by_sweep: 0,
            }),
            ttl: config.ttl,
            alone,
        }
    }

    /// Whether this tier is the cache's only store of values.
    pub(crate) fn alone(&self) -> bool {
        self.alone
    }

    fn deps(&self) -> MutexGuard<'_, Deps> {
        self.deps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the value at `key` into `place`, if one is held, live, and
    /// nothing it depends on has changed: a hit if it is of the place's
    /// type. A value held encoded (written by `set`) is decoded as that
    /// type, and from then on held as it. Not generic: a cached function
    /// compiles only its [`Place`].
    pub(crate) fn take(&self, key: &str, now_ms: u64, place: &mut dyn Place) -> Kept<()> {
        let Some(held) = self.live(key, now_ms) else {
            return Kept::Nothing;
        };
        if place.clone_in(&*held.value) {
            return Kept::Value((), held.meta);
        }
        let Some(Encoded(bytes)) = held.value.downcast_ref::<Encoded>() else {
            return Kept::OtherType;
        };
        if place.decode_in(held.codec, bytes).is_err() {
            return Kept::OtherType;
        }
        if let Some(typed) = place.shared() {
            self.now_typed(key, &held, typed);
        }
        Kept::Value((), held.meta)
    }

    /// [`take`](Self::take) as a `T`.
    #[cfg(test)]
    fn get<T>(&self, key: &str, now_ms: u64) -> Kept<T>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let mut place = None::<T>;
        match self.take(key, now_ms, &mut place) {
            Kept::Value((), meta) => Kept::Value(place.expect("a value taken"), meta),
            Kept::OtherType => Kept::OtherType,
            Kept::Nothing => Kept::Nothing,
        }
    }

    /// Replaces `held`, an entry kept encoded, by its value decoded.
    fn now_typed(&self, key: &str, held: &Held, (value, encode): (Arc<dyn Any + Send + Sync>, Encode)) {
        let typed = Held {
            value,
            encode,
            deps: held.deps.clone(),
            until_ms: AtomicU64::new(held.until_ms.load(Ordering::Relaxed)),
            ..*held
        };
        // Same deps, same expiry: a change since still drops it.
        self.entries.insert(key.to_owned(), Arc::new(typed));
    }

    /// The entry at `key` if it is live and nothing it depends on changed.
    fn live(&self, key: &str, now_ms: u64) -> Option<Arc<Held>> {
        let held = self.entries.get(key)?;
        let usable =
            now_ms < held.until_ms.load(Ordering::Relaxed) && !held.deps.iter().any(|dep| dep.changed());
        if !usable {
            self.drop_if_same(key, &held);
            return None;
        }
        Some(held)
    }

    /// Drops `key`'s entry if it is still `held` (not a newer fill).
    fn drop_if_same(&self, key: &str, held: &Arc<Held>) {
        self.entries.remove_if(key, |entry| Arc::ptr_eq(entry, held));
    }

    /// The value at `key` encoded, for a reader of any type (`Cache::get`):
    /// its bytes and codec, what it was stored with, and whether it carries
    /// no tags (it depends on its entry's name alone).
    pub(crate) fn encoded(&self, key: &str) -> Option<(Vec<u8>, Codec, Meta, bool)> {
        let held = self.live(key, clock::now_ms())?;
        let bytes = (held.encode)(&*held.value, held.codec)?;
        Some((bytes, held.codec, held.meta, held.deps.len() == 1))
    }

    /// Restarts the expiry of `key`'s entry at `ttl` (a sliding entry's hit,
    /// when this tier is the only store).
    pub(crate) fn touch(&self, key: &str, ttl: Duration, now_ms: u64) {
        if let Some(held) = self.live(key, now_ms) {
            let until = now_ms.saturating_add(clock::duration_ms(ttl));
            held.until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// Registers `key`'s dependency on `names` (storage names), before the
    /// read or load that may fill it. `None` while coherence is lost.
    pub(crate) fn watch<'a>(&self, key: &str, names: impl Iterator<Item = &'a str>) -> Option<Watch> {
        let mut deps = self.deps();
        if !deps.healthy {
            return None;
        }
        let registered: Vec<Arc<Dep>> = names.map(|name| deps.dep(name)).collect();
        Some(Watch {
            key: key.to_owned(),
            deps: registered.into(),
        })
    }

    /// Keeps `value` (stored in the backend with `codec`, `weight` bytes) for
    /// `ttl` at most, unless a dep of `watch` changed since it was taken.
    #[cfg(test)]
    fn fill<T>(&self, watch: &Watch, value: &T, (codec, weight): (Codec, usize), meta: Meta, ttl: Duration)
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let shared = Some(value.clone()).shared().expect("a value");
        self.fill_shared(watch, shared, (codec, weight), meta, ttl);
    }

    /// [`fill`](Self::fill) with a value as [`Place::shared`] gives it:
    /// the same for every type.
    pub(crate) fn fill_shared(
        &self,
        watch: &Watch,
        (value, encode): (Arc<dyn Any + Send + Sync>, Encode),
        (codec, weight): (Codec, usize),
        meta: Meta,
        ttl: Duration,
    ) {
        let held = Held {
            value,
            meta,
            until_ms: AtomicU64::new(0),
            deps: watch.deps.clone(),
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
            codec,
            encode,
        };
        self.keep(watch, held, ttl);
    }

    /// Keeps a value as its encoded `bytes`, for readers of any type.
    pub(crate) fn fill_encoded(
        &self,
        watch: &Watch,
        (codec, bytes): (Codec, Bytes),
        meta: Meta,
        ttl: Duration,
    ) {
        let held = Held {
            weight: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            value: Arc::new(Encoded(bytes)),
            meta,
            until_ms: AtomicU64::new(0),
            deps: watch.deps.clone(),
            codec,
            encode: encoded_bytes,
        };
        self.keep(watch, held, ttl);
    }

    fn keep(&self, watch: &Watch, held: Held, ttl: Duration) {
        let ttl = self.ttl.map_or(ttl, |cap| cap.min(ttl));
        if ttl.is_zero() || watch.changed() {
            return;
        }
        let until = clock::now_ms().saturating_add(clock::duration_ms(ttl));
        held.until_ms.store(until, Ordering::Relaxed);
        self.entries.insert(watch.key.clone(), Arc::new(held));
    }

    /// Keeps the entry at `watch`'s key, stored at `was_stored_at_ms`, for
    /// `ttl` more with `meta` (fail-safe's throttle: a value that stood in for
    /// a failed load is fresh again), unless it was replaced or a dep of
    /// `watch` changed since it was taken.
    pub(crate) fn renew(&self, watch: &Watch, was_stored_at_ms: u64, meta: Meta, ttl: Duration) {
        let ttl = self.ttl.map_or(ttl, |cap| cap.min(ttl));
        let Some(held) = self.live(&watch.key, clock::now_ms()) else {
            return;
        };
        if ttl.is_zero() || watch.changed() || held.meta.stored_at_ms != was_stored_at_ms {
            return;
        }
        let until = clock::now_ms().saturating_add(clock::duration_ms(ttl));
        let renewed = Arc::new(Held {
            value: held.value.clone(),
            meta,
            until_ms: AtomicU64::new(until),
            deps: watch.deps.clone(),
            ..*held
        });
        let found = self.entries.entry(watch.key.as_str(), None, |_, entry| {
            if Arc::ptr_eq(entry, &held) {
                *entry = renewed;
            }
            EntryAction::Retain(())
        });
        // Nothing there (the guard of a slot now reserved, dropped: the
        // slot is freed): nothing to renew.
        drop(found);
    }

    /// `names` changed: every entry that depends on one is dropped.
    pub(crate) fn changed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut deps = self.deps();
        for name in names {
            if let Some(dep) = deps.by_name.remove(name).and_then(|dep| dep.upgrade()) {
                dep.0.store(true, Ordering::Release);
            }
        }
    }

    /// Drops `key`'s entry now (its deps, flagged by [`changed`](Self::changed),
    /// already keep it from being served): frees the memory.
    pub(crate) fn forget(&self, key: &str) {
        self.entries.remove(key);
    }

    /// Everything may have changed (Redis was flushed): drops every entry.
    pub(crate) fn changed_all(&self) {
        let mut deps = self.deps();
        deps.flag_all();
        drop(deps);
        self.entries.clear();
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// Coherence is lost: drops every entry and bypasses the tier until
    /// [`restored`](Self::restored).
    pub(crate) fn lost(&self) {
        let mut deps = self.deps();
        deps.healthy = false;
        deps.flag_all();
        drop(deps);
        self.entries.clear();
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// Coherence holds again. The caller (the tracking coordinator) orders
    /// this after every loss it follows.
    pub(crate) fn restored(&self) {
        self.deps().healthy = true;
    }

    /// Whether the tier is in use (coherence holds).
    #[cfg(test)]
    fn healthy(&self) -> bool {
        self.deps().healthy
    }
}

impl Deps {
    /// The live dep of `name`, registered if there is none.
    fn dep(&mut self, name: &str) -> Arc<Dep> {
        if let Some(dep) = self.by_name.get(name).and_then(Weak::upgrade) {
            return dep;
        }
        self.since_sweep += 1;
        if self.since_sweep > self.left_by_sweep.max(1024) {
            // Out with the names whose entries are all gone.
            self.by_name.retain(|_, dep| dep.strong_count() > 0);
            (self.since_sweep, self.left_by_sweep) = (0, self.by_name.len());
        }
        let dep = Arc::new(Dep::default());
        self.by_name.insert(name.to_owned(), Arc::downgrade(&dep));
        dep
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn flag_all(&mut self) {
        for (_, dep) in self.by_name.drain() {
            if let Some(dep) = dep.upgrade() {
                dep.0.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn meta() -> Meta {
        Meta {
            stored_at_ms: 0,
            fresh_until_ms: u64::MAX,
            load_time: Duration::ZERO,
            negative: false,
        }
    }

    fn filled(local: &Local, key: &str, names: &[&str], value: u32) {
        let watch = local.watch(key, names.iter().copied()).unwrap();
        local.fill(&watch, &value, (Codec::Json, 4), meta(), MINUTE);
    }

    #[test]
    fn a_value_comes_back_only_as_its_own_type() {
        let local = Local::new(L1::default(), true);
        filled(&local, "k", &["ns:k"], 7);
        assert_eq!(local.get::<u32>("k", clock::now_ms()).value(), Some(7));
        assert!(matches!(local.get::<u64>("k", clock::now_ms()), Kept::OtherType));
        assert!(matches!(
            local.get::<String>("k", clock::now_ms()),
            Kept::OtherType
        ));
    }

    #[test]
    fn a_change_to_any_name_drops_the_entries_that_depend_on_it() {
        let local = Local::new(L1::default(), true);
        filled(&local, "a", &["ns:a", "ns#tag:t"], 1);
        filled(&local, "b", &["ns:b", "ns#tag:t"], 2);
        filled(&local, "c", &["ns:c"], 3);
        local.changed(["ns#tag:t"]);
        assert!(local.get::<u32>("a", clock::now_ms()).value().is_none());
        assert!(local.get::<u32>("b", clock::now_ms()).value().is_none());
        assert_eq!(local.get::<u32>("c", clock::now_ms()).value(), Some(3));
        // A new fill after the change is served.
        filled(&local, "a", &["ns:a", "ns#tag:t"], 4);
        assert_eq!(local.get::<u32>("a", clock::now_ms()).value(), Some(4));
    }

    #[test]
    fn a_change_between_watch_and_fill_voids_the_fill() {
        let local = Local::new(L1::default(), true);
        let watch = local.watch("k", ["ns:k"].into_iter()).unwrap();
        local.changed(["ns:k"]);
        local.fill(&watch, &1u32, (Codec::Json, 4), meta(), MINUTE);
        assert!(local.get::<u32>("k", clock::now_ms()).value().is_none());
        // Also when the change comes after the fill.
        let watch = local.watch("k", ["ns:k"].into_iter()).unwrap();
        local.fill(&watch, &2u32, (Codec::Json, 4), meta(), MINUTE);
        local.changed(["ns:k"]);
        assert!(local.get::<u32>("k", clock::now_ms()).value().is_none());
    }

    #[test]
    fn lost_coherence_drops_everything_and_bypasses_until_restored() {
        let local = Local::new(L1::default(), true);
        filled(&local, "k", &["ns:k"], 1);
        let in_flight = local.watch("j", ["ns:j"].into_iter()).unwrap();
        local.lost();
        assert!(!local.healthy());
        assert!(local.get::<u32>("k", clock::now_ms()).value().is_none());
        assert!(local.watch("k", ["ns:k"].into_iter()).is_none());
        // A fill whose read began before the loss is void.
        local.fill(&in_flight, &2u32, (Codec::Json, 4), meta(), MINUTE);
        assert!(local.get::<u32>("j", clock::now_ms()).value().is_none());
        local.restored();
        assert!(local.healthy());
        filled(&local, "k", &["ns:k"], 3);
        assert_eq!(local.get::<u32>("k", clock::now_ms()).value(), Some(3));
    }

    #[test]
    fn a_weighted_bound_holds_for_values_of_very_different_sizes() {
        let capacity = 64 * 1024;
        let local = Local::new(L1::bytes(capacity), true);
        for i in 0..2_000u32 {
            // From a few bytes to 32 KB: half the capacity in one value.
            let size = [8, 100, 1_000, 32 * 1024][i as usize % 4];
            let key = format!("k{i}");
            let watch = local.watch(&key, [key.as_str()].into_iter()).unwrap();
            local.fill(&watch, &vec![0u8; size], (Codec::Json, size), meta(), MINUTE);
            assert!(
                local.entries.weight() <= capacity,
                "{} bytes held, bound {capacity}",
                local.entries.weight()
            );
        }
        assert!(!local.entries.is_empty());
    }

    #[test]
    fn a_value_of_a_256th_of_a_weighted_bound_is_kept_and_one_of_all_of_it_is_not() {
        let capacity = 1 << 20;
        let local = Local::new(L1::bytes(capacity), true);
        let size = (capacity / 256) as usize - 16;
        let watch = local.watch("big", ["big"].into_iter()).unwrap();
        local.fill(&watch, &vec![1u8; size], (Codec::Json, size), meta(), MINUTE);
        let kept = local.get::<Vec<u8>>("big", clock::now_ms()).value();
        assert_eq!(kept.map(|v| v.len()), Some(size));
        // One as heavy as the whole bound is not kept.
        let size = capacity as usize;
        let watch = local.watch("huge", ["huge"].into_iter()).unwrap();
        local.fill(&watch, &vec![1u8; size], (Codec::Json, size), meta(), MINUTE);
        assert!(local.get::<Vec<u8>>("huge", clock::now_ms()).value().is_none());
    }

    #[test]
    fn the_registry_forgets_names_no_entry_depends_on() {
        let local = Local::new(L1::entries(10), true);
        for i in 0..5_000 {
            let name = format!("ns:{i}");
            drop(local.watch("k", [name.as_str()].into_iter()));
        }
        let len = local.deps().by_name.len();
        assert!(len <= 1025, "{len} names kept");
    }
}
