//! Batch loads: many keys, one round trip for the lookup, one call of the
//! loader for what is missing.
//!
//! A batch runs the single-key flow for each of its keys, concurrently, in
//! the caller's task: every guarantee of that flow holds per element
//! (coalescing with other callers, stampede modes, tags and their races,
//! negative caching, fail-safe). What the elements share goes through the
//! batch: their reads become one [`Backend::fetch_many`](crate::backend::Backend::fetch_many),
//! and their loads one call of the loader. Each happens once every element
//! still running is *parked*: at a read, at a load, or waiting for another
//! caller's load of its key (in this process, or another's lock). So two
//! overlapping batches never wait for each other: each loads what it leads
//! and waits for the rest, and an element whose wait ends without a value
//! (the other load failed, or `lock_wait` ran out) joins a later round of
//! loads.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tracing::Instrument;

use super::observe::Answered;
use super::plan::{Found, InProcess};
use super::scoped::{self, Mode};
use super::slot::{Slot, Typed};
use super::Cache;
use crate::backend::{EntryKeys, Fetched};
use crate::cacheable::Cacheable;
use crate::counters::Counters;
use crate::l1::Watch;
use crate::policy::Policy;
use crate::stampede::Stampede;

tokio::task_local! {
    /// The batch an element's flow belongs to, while it runs.
    static MEMBER: Arc<Member>;
}

/// One element of a batch.
struct Member {
    shared: Arc<Shared>,
    /// The answer to its first read, if the batch has read it already (and
    /// no in-process tier fills from it, which needs its own watch first).
    first: Mutex<Option<Option<Fetched>>>,
}

/// What the elements of one batch share, whatever their value type.
pub(super) struct Shared {
    state: Mutex<State>,
    /// Wakes the batch's driver after any change.
    changed: Notify,
}

/// A read an element parked for: its storage names, and where the answer
/// goes (`None`: the backend failed, and said so once, for the batch).
pub(super) struct Read {
    keys: EntryKeys,
    touch: Option<Duration>,
    answer: oneshot::Sender<Option<Fetched>>,
}

#[derive(Default)]
struct State {
    /// Elements whose flow has not ended.
    running: usize,
    /// Of those, how many are parked (reading, loading or waiting).
    parked: usize,
    reads: Vec<Read>,
    loads: usize,
}

/// What the driver does next.
pub(super) enum Next {
    /// Every element has ended.
    Done,
    /// Read these, in one round trip.
    Read(Vec<Read>),
    /// Call the loader with the ids parked at their loads.
    Load,
}

impl Shared {
    pub(super) fn new(elements: usize) -> Arc<Self> {
        Arc::new(Shared {
            state: Mutex::new(State {
                running: elements,
                ..State::default()
            }),
            changed: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state());
        self.changed.notify_one();
    }

    /// Runs one element's flow as a member of this batch; counts it ended
    /// when it ends (or is dropped).
    /// `first`: the answer to its first read, if the batch has it.
    pub(super) async fn run<F: Future>(
        self: &Arc<Self>,
        first: Option<Option<Fetched>>,
        flow: F,
    ) -> F::Output {
        struct Ended<'a>(&'a Shared);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                self.0.update(|state| state.running -= 1);
            }
        }
        let _ended = Ended(self);
        let member = Member {
            shared: self.clone(),
            first: Mutex::new(first),
        };
        MEMBER.scope(Arc::new(member), flow).await
    }

    /// An element parks at its load; the driver calls the loader once all
    /// are parked.
    fn park_load(&self) {
        self.update(|state| {
            state.loads += 1;
            state.parked += 1;
        });
    }

    /// Waits until every running element is parked, and says what to do:
    /// reads first (their answers may make loads unnecessary), then loads.
    pub(super) async fn next(&self) -> Next {
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.state();
                if state.running == 0 {
                    return Next::Done;
                }
                if state.parked == state.running {
                    if !state.reads.is_empty() {
                        let reads = std::mem::take(&mut state.reads);
                        state.parked -= reads.len();
                        return Next::Read(reads);
                    }
                    if state.loads > 0 {
                        state.parked -= state.loads;
                        state.loads = 0;
                        return Next::Load;
                    }
                }
            }
            notified.await;
        }
    }
}

/// If the current flow is an element of a batch: its read of `keys`,
/// answered with the batch's other reads in one round trip.
pub(super) fn read(
    keys: &EntryKeys,
    touch: Option<Duration>,
) -> Option<impl Future<Output = Option<Fetched>> + use<>> {
    let (shared, first) = MEMBER
        .try_with(|member| {
            let first = member.first.lock().unwrap_or_else(PoisonError::into_inner).take();
            (member.shared.clone(), first)
        })
        .ok()?;
    let (answer, answered) = oneshot::channel();
    match first {
        Some(first) => {
            let _ = answer.send(first);
        }
        None => shared.update(|state| {
            state.reads.push(Read {
                keys: keys.clone(),
                touch,
                answer,
            });
            state.parked += 1;
        }),
    }
    Some(async move { answered.await.ok().flatten() })
}

/// Marks the current flow, if an element of a batch, as waiting for another
/// caller's load until dropped: the batch's own reads and loads go on
/// without it.
pub(super) struct Waiting(Option<Arc<Shared>>);

impl Waiting {
    pub(super) fn enter() -> Self {
        let shared = MEMBER.try_with(|member| member.shared.clone()).ok();
        if let Some(shared) = &shared {
            shared.update(|state| state.parked += 1);
        }
        Waiting(shared)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(shared) = &self.0 {
            shared.update(|state| state.parked -= 1);
        }
    }
}

/// An element's load, failed with the batch's loader (whose error the batch
/// returns).
#[derive(Debug)]
pub(super) struct Failed;

impl Cache {
    /// Looks up many keys at once, and loads the missing ones with one call
    /// of `load`: the batch form of [`get_or_load`](Self::get_or_load), as
    /// `#[aside::cached_batch]` uses it.
    ///
    /// - `entry` gives each id's key and policy: the key the single-item
    ///   function uses, so that both share entries. (`T` is kept as an
    ///   `Option<T>`, as `#[cached]` on a function returning `Option<T>`
    ///   keeps it: `None` for an id the loader left out.)
    /// - The ids are deduplicated; the order of `ids` does not matter.
    /// - Every entry, and every tag token they need, is read in one round
    ///   trip (split by node on a cluster, concurrently). Misses go on from
    ///   that read; with an in-process tier, whose fills need a watch taken
    ///   before their read, they read once more, together.
    /// - `load` is called with the ids that missed, once: a value in its map
    ///   is cached under its id's key; an id it leaves out is cached as
    ///   absent (under the negative TTL) and is absent from the result; an
    ///   id it returns but was not asked for is ignored.
    /// - Each id is coalesced with every other caller of its key in this
    ///   process (a single call, another batch), and with
    ///   [`Stampede::Lock`](crate::Stampede::Lock) across processes: an id
    ///   that another caller is loading is waited for, not loaded again. An
    ///   id whose wait ends without a value (that load failed, or
    ///   `lock_wait` ran out) is loaded by a second call of `load`, with the
    ///   other such ids.
    /// - If `load` fails, its error is returned and nothing from that call is
    ///   cached, unless [fail-safe](Policy::fail_safe) has a value standing
    ///   in for every id it was to load. A failing backend is called
    ///   through, as for one key; on a cluster, only for the ids of the
    ///   node that failed.
    /// - The batch's future holds `load`'s error until every id is
    ///   answered: it is `Send` if `E` is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), std::io::Error> {
    /// let cache = Cache::memory();
    /// let entry = |id: &u64| (format!("product:{id}"), Policy::new().tag(format!("product:{id}")));
    /// let load = |ids: Vec<u64>| async move {
    ///     // One query for all of them; product 3 does not exist.
    ///     Ok::<_, std::io::Error>(ids.into_iter().filter(|&id| id != 3).map(|id| (id, id * 10)).collect())
    /// };
    /// let found: HashMap<u64, u64> = cache.get_or_load_batch([1, 2, 3], entry, load).await?;
    /// assert_eq!(found, HashMap::from([(1, 10), (2, 20)]));
    /// // All three are cached now, product 3 as absent.
    /// let again: HashMap<u64, u64> = cache
    ///     .get_or_load_batch([3, 2, 1], entry, |_| async { Err(std::io::Error::other("not called")) })
    ///     .await?;
    /// assert_eq!(again, found);
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load_batch<Id, T, E, F, Fut>(
        &self,
        ids: impl IntoIterator<Item = Id>,
        entry: impl Fn(&Id) -> (String, Policy),
        mut load: F,
    ) -> Result<HashMap<Id, T>, E>
    where
        Id: Eq + Hash + Clone,
        T: Cacheable,
        F: FnMut(Vec<Id>) -> Fut,
        Fut: Future<Output = Result<HashMap<Id, T>, E>>,
    {
        let this = self.target();
        let mut seen = HashSet::new();
        let ids: Vec<Id> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
        drop(seen);
        let entries: Vec<(String, Policy)> = ids.iter().map(&entry).collect();
        // One span for the batch; the ids that take the full flow have
        // theirs (`aside.get_or_load`) inside it.
        let function = entries
            .first()
            .and_then(|(_, policy)| policy.function_name())
            .unwrap_or("");
        let span = tracing::debug_span!(
            "aside.get_or_load_batch",
            function,
            ids = ids.len(),
            hits = tracing::field::Empty,
            loaded = tracing::field::Empty,
        );
        // The plain hits are answered here, by the in-process tier and one
        // read; the flows run for the rest.
        let (mut answered, mut firsts) = this
            .plain_hits::<Option<T>>(&entries)
            .instrument(span.clone())
            .await;
        let flows: Vec<usize> = (0..ids.len()).filter(|&i| answered[i].is_none()).collect();
        span.record("hits", ids.len() - flows.len());
        let shared = Shared::new(flows.len());
        type Waiter<T> = oneshot::Sender<Result<Option<T>, Failed>>;
        let parked: Mutex<Vec<(usize, Waiter<T>)>> = Mutex::new(Vec::new());
        let elements = flows.iter().map(|&index| {
            let (key, policy) = &entries[index];
            let (shared, parked) = (&shared, &parked);
            let load = move || async move {
                let (waiter, answer) = oneshot::channel();
                parked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((index, waiter));
                shared.park_load();
                answer.await.unwrap_or(Err(Failed))
            };
            let first = firsts[index].take();
            shared.run(
                first,
                this.get_or_load::<Option<T>, Failed, _, _>(key, policy, load),
            )
        });
        let driver = async {
            let mut error = None;
            let mut loaded = 0;
            loop {
                match shared.next().await {
                    Next::Done => {
                        span.record("loaded", loaded);
                        return error;
                    }
                    Next::Read(reads) => this.read_batch(reads).await,
                    Next::Load => {
                        let waiters =
                            std::mem::take(&mut *parked.lock().unwrap_or_else(PoisonError::into_inner));
                        let asked = waiters.iter().map(|(index, _)| ids[*index].clone()).collect();
                        loaded += waiters.len();
                        let span = tracing::debug_span!("aside.load", ids = waiters.len());
                        match load(asked).instrument(span).await {
                            Ok(mut found) => {
                                for (index, waiter) in waiters {
                                    let _ = waiter.send(Ok(found.remove(&ids[index])));
                                }
                            }
                            Err(e) => {
                                error = Some(e);
                                for (_, waiter) in waiters {
                                    let _ = waiter.send(Err(Failed));
                                }
                            }
                        }
                    }
                }
            }
        };
        let both = async { tokio::join!(futures_util::future::join_all(elements), driver) };
        let (results, error) = both.instrument(span.clone()).await;
        for (&index, result) in flows.iter().zip(results) {
            answered[index] = Some(result);
        }
        let mut found = HashMap::with_capacity(ids.len());
        for (id, result) in ids.into_iter().zip(answered) {
            match result.expect("every id is answered by a hit or its flow") {
                Ok(Some(value)) => {
                    found.insert(id, value);
                }
                Ok(None) => {}
                Err(Failed) => {
                    if let Some(error) = error {
                        return Err(error);
                    }
                }
            }
        }
        Ok(found)
    }

    /// The fresh hits among `entries`, answered without a flow: by the
    /// in-process tier, then by one read of the rest (per sliding expiry).
    /// Only for what a hit cannot change: a lookup (no scope says bypass or
    /// refresh) with `Stampede::Lock` or `None` and without fail-safe,
    /// where an entry is either fresh or missing; anything else (a miss, a
    /// refresh due, a value kept for fail-safe, an unreadable entry) is left
    /// to the flow, which looks again.
    ///
    /// Also returns, for each id left to a flow, the answer to its read
    /// when that flow can start from it (no in-process tier to fill, which
    /// needs a watch taken before the read), so that it reads only once.
    async fn plain_hits<V: Cacheable>(
        &self,
        entries: &[(String, Policy)],
    ) -> (Vec<Option<Result<V, Failed>>>, Vec<Option<Option<Fetched>>>) {
        let mut answered: Vec<Option<Result<V, Failed>>> = entries.iter().map(|_| None).collect();
        let mut firsts: Vec<Option<Option<Fetched>>> = entries.iter().map(|_| None).collect();
        let mode = scoped::mode();
        let plain = |policy: &Policy| {
            self.inner.settings.enabled
                && mode == Mode::Lookup
                && matches!(policy.stampede_mode(), Stampede::Lock { .. } | Stampede::None)
                && policy.fail_safe_for().is_zero()
        };
        let default_ttl = self.inner.settings.default_ttl;
        // What to read: per element, its storage names and the tier's watch.
        let mut reads = Vec::new();
        for (i, (key, policy)) in entries.iter().enumerate() {
            if !plain(policy) {
                continue;
            }
            let mut slot = Typed(None);
            if let InProcess::Hit = self.look_in_process(key, policy, mode, &mut slot, false) {
                answered[i] = Some(Ok(slot.take()));
                continue;
            }
            let touch = policy.touch(default_ttl);
            let keys = self.inner.keys(key, policy.tags());
            if self.covered(&keys) {
                // Left to its flow, which calls through until the replay.
                continue;
            }
            // Taken before the read: a change from here on voids what it fills.
            let watch = self
                .inner
                .local_for(policy, touch)
                .and_then(|local| local.watch(key, keys.names()));
            reads.push((touch, (keys, (i, watch))));
        }
        for (touch, group) in by_touch(reads) {
            let (keys, elements): (Vec<EntryKeys>, Vec<(usize, Option<Watch>)>) = group.into_iter().unzip();
            let fetched = self.fetch_many(&keys, touch).await;
            let now_ms = crate::clock::now_ms();
            for ((keys, fetched), (i, watch)) in keys.iter().zip(fetched).zip(elements) {
                let policy = &entries[i].1;
                let mut slot = Typed(None);
                let fresh = fetched
                    .as_ref()
                    .and_then(|fetched| self.decode(keys, fetched, policy, false, &mut slot))
                    .filter(|&meta| {
                        matches!(self.decide_at(meta, policy, false, now_ms, false), Found::Fresh)
                    });
                match (fresh, &fetched) {
                    (Some(meta), Some(read)) => {
                        if let Some(watch) = &watch {
                            let weight = read.entry.as_ref().map_or(0, bytes::Bytes::len);
                            slot.keep(self, watch, weight, meta, policy);
                        }
                        self.count_hit(policy, meta.negative, false, Answered::Backend);
                        answered[i] = Some(Ok(slot.take()));
                    }
                    // The flow goes on from this read, unless it fills the
                    // in-process tier (which needs its own watch first).
                    _ if watch.is_none() => firsts[i] = Some(fetched),
                    _ => {}
                }
            }
        }
        (answered, firsts)
    }

    /// One batch read: an answer per key, `None` where the backend failed
    /// (counted once, as one failed read).
    async fn fetch_many(&self, keys: &[EntryKeys], touch: Option<Duration>) -> Vec<Option<Fetched>> {
        let fetched = self
            .inner
            .report(self.inner.call("fetch", |b| b.fetch_many(keys, touch)).await);
        match fetched {
            Some(fetched) if fetched.len() == keys.len() => {
                if fetched.iter().any(Option::is_none) {
                    Counters::incr(&self.inner.counters.errors);
                    tracing::warn!(
                        "aside: part of a batch read failed (a node is down), calling through for its keys"
                    );
                }
                fetched
            }
            _ => keys.iter().map(|_| None).collect(),
        }
    }

    /// The batch's parked reads, in one round trip per sliding expiry (all
    /// of a batch's elements usually share one).
    async fn read_batch(&self, reads: Vec<Read>) {
        let reads = reads
            .into_iter()
            .map(|read| (read.touch, (read.keys, read.answer)));
        for (touch, group) in by_touch(reads) {
            let (keys, answers): (Vec<EntryKeys>, Vec<_>) = group.into_iter().unzip();
            for (answer, fetched) in answers.into_iter().zip(self.fetch_many(&keys, touch).await) {
                let _ = answer.send(fetched);
            }
        }
    }
}

/// `items` grouped by their sliding expiry, each group read in one round
/// trip (a batch's elements usually share one).
fn by_touch<T>(items: impl IntoIterator<Item = (Option<Duration>, T)>) -> Vec<(Option<Duration>, Vec<T>)> {
    let mut groups: Vec<(Option<Duration>, Vec<T>)> = Vec::new();
    for (touch, item) in items {
        match groups.iter_mut().find(|(group, _)| *group == touch) {
            Some((_, group)) => group.push(item),
            None => groups.push((touch, vec![item])),
        }
    }
    groups
}
