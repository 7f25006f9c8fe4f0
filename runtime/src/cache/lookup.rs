//! The read path: what a read finds (fresh, due for a refresh, or nothing),
//! in the in-process tier or the backend, and what a miss does next. Its
//! generic shell, which runs the loader, is [`Cache::get_or_load`].

use std::time::Duration;

use bytes::Bytes;

use super::observe::Observed;
use super::slot::Slot;
use super::{Cache, Call, Under};
use crate::backend::{EntryKeys, Fetched};
use crate::clock::{now_ms, Instant};
use crate::entry::Entry;
use crate::flight::{Join, Landed};
use crate::l1::{Kept, Local, Meta, Watch};
use crate::scope::Mode;
use crate::stampede::recompute_early;
use crate::stats::{Counters, Outcome};
use crate::tags::Stamp;
use crate::{Policy, Stampede};
use tracing::{Instrument, Span};

impl Cache {
    /// A lookup in the in-process tier, before any other: a fresh value or
    /// one due for a refresh is left in `slot`.
    pub(super) fn in_process(
        &self,
        key: &str,
        policy: &Policy,
        mode: Mode,
        slot: &mut dyn Slot,
        span: &Span,
    ) -> InProcess {
        let _entered = span.enter();
        if !self.inner.settings.enabled || mode != Mode::Lookup {
            return InProcess::Miss;
        }
        let touch = policy.touch(self.inner.settings.default_ttl);
        let Some(local) = self.inner.local_for(policy, touch) else {
            return InProcess::Miss;
        };
        let now = now_ms();
        let meta = match slot.take_local(local, key, now) {
            Kept::Value((), meta) => meta,
            // Over Redis, the backend's entry may still decode as `T`: only
            // a tier that is the only store knows this is a corrupt entry.
            Kept::OtherType if local.alone() => {
                self.other_type_in_process(key, policy);
                return InProcess::Miss;
            }
            _ => return InProcess::Miss,
        };
        match self.decide_at(meta, policy, true, now, true) {
            Found::Fresh => {
                if let Some(ttl) = touch {
                    local.touch(key, ttl, now);
                }
                Counters::incr(&self.inner.counters.l1_hits);
                InProcess::Hit
            }
            Found::Due(due) => InProcess::Due(due),
            Found::Gone => InProcess::Miss,
        }
    }

    /// The rest of a lookup, short of running the loader: a value (left in
    /// `slot`), or the load to run. Counts the lookup.
    pub(super) async fn begin<'a>(
        &'a self,
        key: &str,
        policy: &Policy,
        mode: Mode,
        due_in_process: Option<Due>,
        slot: &mut dyn Slot,
        span: &Span,
    ) -> Begin<'a> {
        let enabled = self.inner.settings.enabled;
        if !enabled || mode == Mode::Bypass {
            let _entered = span.enter();
            // Past the cache on purpose (a bypass scope); with caching off,
            // each call is a miss.
            self.count(policy, if enabled { Outcome::Bypass } else { Outcome::Miss });
            Counters::incr(&self.inner.counters.loads);
            return Begin::Load(None);
        }
        let touch = policy.touch(self.inner.settings.default_ttl);
        let local = self.inner.local_for(policy, touch);
        let (keys, watch, plan) = self
            .plan_lookup(key, policy, local, mode, due_in_process, touch, slot)
            .instrument(span.clone())
            .await;
        match plan {
            Plan::Answer => Begin::Answer,
            Plan::Load {
                under,
                started,
                refresh,
            } => {
                Counters::incr(&self.inner.counters.loads);
                Begin::Load(Some(Pending {
                    keys,
                    watch,
                    under,
                    started,
                    refresh,
                }))
            }
        }
    }

    /// A load failed (`pending`, if the lookup planned it): whether the
    /// slot's value stands in for it.
    pub(super) fn load_failed(&self, pending: Option<Pending<'_>>, policy: &Policy) -> bool {
        let Some(Pending {
            keys, under, refresh, ..
        }) = pending
        else {
            return false;
        };
        self.failed(under);
        match refresh {
            Some(Refresh { fallback }) => self.refresh_failed(&keys, policy, fallback),
            None => false,
        }
    }

    /// A load panicked (`pending`, if the lookup planned it): its waiters
    /// run their own loads rather than wait for it; its lock, dropped here,
    /// is released in the background.
    pub(super) fn load_panicked(&self, pending: Option<Pending<'_>>) {
        if let Some(pending) = pending {
            self.panicked(&pending.under);
        }
    }

    /// A planned load's value (in `slot`, encoded as `payload`) lands: its
    /// waiters get it, the backend and then the in-process tier store it.
    pub(super) async fn finish(
        &self,
        pending: Pending<'_>,
        policy: &Policy,
        payload: Option<Bytes>,
        skip: bool,
        slot: &mut dyn Slot,
        observed: Observed,
    ) {
        let Pending {
            keys,
            watch,
            under,
            started,
            ..
        } = pending;
        let call = Call::new(&keys, policy, watch.as_ref());
        // Waiters still get a value too large to store.
        let skip = skip
            || payload
                .as_ref()
                .is_some_and(|payload| !self.fits(&keys, policy, payload));
        let land = self.land(call, under, payload, skip, started.elapsed());
        let (kept, flight) = land.instrument(observed.call.clone()).await;
        if let (Some((meta, weight)), Some(watch)) = (kept, call.watch) {
            slot.keep(self, watch, weight, meta, policy);
        }
        // Closed only now: a caller arriving before the tier had the value
        // joins this flight rather than loading again.
        drop(flight);
    }

    // Logging, out of the generic flow: a `tracing` event is a good deal of
    // code, which would be compiled again for every cached function.

    /// The in-process tier, the only store, holds a value of another type.
    fn other_type_in_process(&self, key: &str, policy: &Policy) {
        self.count_corrupt(policy);
        tracing::warn!(key, "aside: cached value of another type, treating it as a miss");
    }

    /// A refresh failed: whether the current value stands in (`fallback`).
    pub(super) fn refresh_failed(&self, keys: &EntryKeys, policy: &Policy, fallback: bool) -> bool {
        Counters::incr(&self.inner.counters.refresh_errors);
        if let Some(function) = policy.named() {
            function.refresh_failed();
        }
        if fallback {
            let key = &keys.entry;
            tracing::warn!(key, "aside: refresh failed, keeping the current value");
        }
        fallback
    }

    /// The rest of a lookup, short of running the loader: the storage
    /// names, the in-process tier's watch, and the plan.
    #[allow(clippy::too_many_arguments)]
    async fn plan_lookup<'a>(
        &'a self,
        key: &str,
        policy: &Policy,
        local: Option<&Local>,
        mode: Mode,
        due_in_process: Option<Due>,
        touch: Option<Duration>,
        slot: &mut dyn Slot,
    ) -> (EntryKeys, Option<Watch>, Plan<'a>) {
        let keys = self.inner.keys(key, policy.tags());
        if mode == Mode::Refresh {
            // Voids loads in flight (their values are older), before the
            // watch is taken and the tokens read.
            self.start_forced(&keys, policy).await;
        }
        // Taken before the fetch: a change from here on voids what it fills.
        let watch = local.and_then(|local| local.watch(key, keys.names()));
        let call = Call::new(&keys, policy, watch.as_ref());
        let plan = match (mode, due_in_process) {
            (Mode::Refresh, _) => self.plan_forced(call).await,
            (_, Some(due)) => self.plan_refresh(call, due, true, Instant::now(), slot).await,
            (_, None) => self.plan(call, touch, slot).await,
        };
        (keys, watch, plan)
    }

    /// A forced refresh ([`Mode::Refresh`]) begins: the key is invalidated,
    /// so that no load that started before can store after it.
    async fn start_forced(&self, keys: &EntryKeys, policy: &Policy) {
        self.count(policy, Outcome::Bypass);
        self.count_refresh(policy);
        self.inner.report(self.invalidate_keys(keys).await);
    }

    /// A forced refresh's load, under the tokens read now. Its failure is
    /// a refresh error, with nothing to fall back on.
    async fn plan_forced<'a>(&'a self, call: Call<'_>) -> Plan<'a> {
        let started = Instant::now();
        let stamp = self.tokens(call.keys).await;
        Plan::Load {
            under: Under::stamped(stamp),
            started,
            refresh: Some(Refresh { fallback: false }),
        }
    }

    /// What a lookup of `call` comes to, short of the in-process tier: a
    /// value (left in `slot`), or a load to run and under what.
    async fn plan<'a>(&'a self, call: Call<'_>, touch: Option<Duration>, slot: &mut dyn Slot) -> Plan<'a> {
        let Call { keys, policy, .. } = call;
        // A lookup is counted once, however many times it looks again: as a
        // hit by the read that finds it, as coalesced by a wait that gets
        // another caller's value, or as a miss when it goes on to load.
        let mut uncounted = true;
        loop {
            // What a load costs, for XFetch, runs from here: this fetch stands
            // in for the store's round trip, then come the lock, the tokens
            // and the loader.
            let started = Instant::now();
            let fetched = self
                .inner
                .report(self.inner.call("fetch", |b| b.fetch(keys, touch)).await);
            match fetched
                .as_ref()
                .and_then(|f| self.read_into(keys, f, policy, uncounted, call.watch, slot))
            {
                Some(Found::Fresh) => return Plan::Answer,
                Some(Found::Due(due)) => {
                    return self.plan_refresh(call, due, uncounted, started, slot).await;
                }
                Some(Found::Gone) | None => {}
            }
            let mode = policy.stampede_mode();
            // The backend is failing: no lock to wait for, no tokens to store
            // under, and no load another caller could safely share. Call through.
            if fetched.is_none() {
                self.count_miss(policy, &mut uncounted);
                return Plan::load(Under::default(), started);
            }
            if mode == Stampede::None {
                self.count_miss(policy, &mut uncounted);
                let stamp = self.tokens(keys).await;
                return Plan::load(Under::stamped(stamp), started);
            }
            match self.inner.flights.join(&keys.entry) {
                Join::Leader(leader) => {
                    self.count_miss(policy, &mut uncounted);
                    return match mode {
                        // Its tokens come with the lock.
                        Stampede::Lock { lock_ttl, lock_wait } => {
                            let lock = (lock_ttl, lock_wait);
                            self.plan_locked(call, lock, leader, started, slot).await
                        }
                        _ => {
                            let under = Under::stamped(self.tokens(keys).await).leading(leader);
                            Plan::load(under, started)
                        }
                    };
                }
                Join::Waiter(waiter) => {
                    // The tokens this caller would load under (the leader's
                    // load takes longer than reading them). Without them the
                    // backend is failing: call through rather than wait.
                    let Some(stamp) = self.tokens(keys).await else {
                        self.count_miss(policy, &mut uncounted);
                        return Plan::load(Under::default(), started);
                    };
                    match self.wait(waiter).await {
                        // Only a load that ran under the tokens this caller
                        // read: one that began before an invalidation this
                        // caller has seen is not for it.
                        Landed::Value(payload, Some(theirs)) if theirs == stamp => {
                            if slot.decode(self.codec(policy), &payload).is_ok() {
                                if std::mem::take(&mut uncounted) {
                                    self.count(policy, Outcome::Coalesced);
                                }
                                return Plan::Answer;
                            }
                        }
                        Landed::Value(..) | Landed::Failed => {}
                        // The leader was cancelled, or found the value stored
                        // by another process: look again.
                        Landed::Abandoned | Landed::Stored => continue,
                    }
                    self.count_miss(policy, &mut uncounted);
                    return Plan::load(Under::stamped(Some(stamp)), started);
                }
            }
        }
    }

    /// Counts the lookup as a miss, unless its outcome was counted already.
    fn count_miss(&self, policy: &Policy, uncounted: &mut bool) {
        if std::mem::take(uncounted) {
            self.count(policy, Outcome::Miss);
        }
    }

    /// What a fetched entry offers: a fresh value, a value due for a refresh
    /// (swr past the TTL; early by XFetch, or past the TTL while the backend
    /// keeps it for [`REFRESH_GRACE`](crate::stampede::REFRESH_GRACE)), or nothing (absent, expired,
    /// invalidated by a tag, or undecodable); the value is left in `slot`.
    /// With `count` (a caller's first read, not a re-read), counts the hit or
    /// the corrupt entry; the hit of a [`Due`] without a fallback is counted
    /// by [`plan_refresh`](Self::plan_refresh), which alone knows whether it was one.
    pub(super) fn read(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        policy: &Policy,
        count: bool,
        slot: &mut dyn Slot,
    ) -> Option<Found> {
        self.read_into(keys, fetched, policy, count, None, slot)
    }

    /// [`read`](Self::read), keeping a fresh value in the in-process tier
    /// under `watch` (taken before the fetch).
    pub(super) fn read_into(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        policy: &Policy,
        count: bool,
        watch: Option<&Watch>,
        slot: &mut dyn Slot,
    ) -> Option<Found> {
        let meta = self.decode(keys, fetched, policy, count, slot)?;
        if let Some(watch) = watch {
            let weight = fetched.entry.as_ref().map_or(0, Bytes::len);
            slot.keep(self, watch, weight, meta, policy);
        }
        Some(self.decide_at(meta, policy, count, now_ms(), false))
    }

    /// What a stored value offers this read at `now` (ms, aside's clock):
    /// see [`read`](Self::read). `in_process`: the in-process tier holds it.
    pub(super) fn decide_at(
        &self,
        meta: Meta,
        policy: &Policy,
        count: bool,
        now: u64,
        in_process: bool,
    ) -> Found {
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
            self.count_hit(policy, meta.negative, !fresh, in_process);
        }
        if due {
            Found::Due(Due {
                stored_at_ms: meta.stored_at_ms,
                negative: meta.negative,
                fallback,
            })
        } else {
            Found::Fresh
        }
    }

    /// Counts a hit: of a cached `None` (`negative`), past its fresh time
    /// (`stale`), answered by the in-process tier or not.
    pub(super) fn count_hit(&self, policy: &Policy, negative: bool, stale: bool, in_process: bool) {
        let outcome = match (stale, negative) {
            (true, negative) => {
                if negative {
                    Counters::incr(&self.inner.counters.outcomes.negative_hits);
                }
                Outcome::Stale
            }
            (false, true) => Outcome::Negative,
            (false, false) => Outcome::Hit,
        };
        self.count(policy, outcome);
        if self.inner.two_tiers() {
            let tier = if in_process { "in_process" } else { "backend" };
            tracing::Span::current().record("tier", tier);
        }
    }

    /// The fetched entry, decoded into `slot`, if there is one and its tags'
    /// tokens still match. With `count`, an undecodable entry is counted and logged.
    pub(super) fn decode(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        policy: &Policy,
        count: bool,
        slot: &mut dyn Slot,
    ) -> Option<Meta> {
        let bytes = fetched.entry.as_ref()?;
        let decoded = Entry::decode(bytes).map_err(|e| e.to_string()).and_then(|entry| {
            if !Stamp::tags_match(&entry.tag_versions, &fetched.tags) {
                return Ok(None);
            }
            slot.decode(entry.codec, entry.payload)?;
            Ok(Some(entry.meta()))
        });
        match decoded {
            Ok(meta) => meta,
            Err(reason) => {
                if count {
                    self.count_corrupt(policy);
                    let key = &keys.entry;
                    tracing::warn!(key, %reason, "aside: unreadable cache entry, treating it as a miss");
                }
                None
            }
        }
    }

    /// Whether `fetched` holds a fresh entry that replaced the one `due`
    /// came from (a refresh that another caller finished); its value is
    /// then in `slot`.
    pub(super) fn replaced(&self, fetched: &Fetched, due: &Due, slot: &mut dyn Slot) -> bool {
        let Some(entry) = fetched.entry.as_ref().and_then(|bytes| Entry::decode(bytes).ok()) else {
            return false;
        };
        let meta = entry.meta();
        let newer = Stamp::tags_match(&entry.tag_versions, &fetched.tags)
            && meta.stored_at_ms != due.stored_at_ms
            && now_ms() < meta.fresh_until_ms;
        // A payload that does not decode leaves the slot's due value, which
        // then stands in as before.
        newer && slot.decode(entry.codec, entry.payload).is_ok()
    }

    /// Reads `keys` again, uncounted (the lookup was counted already):
    /// whether a fresh value is there now, left in `slot`. For
    /// `Stampede::Lock`, whose reads draw nothing; a refresh asks
    /// [`replaced`](Self::replaced) instead.
    pub(super) async fn reread(&self, keys: &EntryKeys, policy: &Policy, slot: &mut dyn Slot) -> bool {
        let fetched = self.inner.call("fetch", |b| b.fetch(keys, None)).await;
        let Some(fetched) = self.inner.report(fetched) else {
            return false;
        };
        matches!(self.read(keys, &fetched, policy, false, slot), Some(Found::Fresh))
    }
}

/// What a read found; a value it found is in the caller's slot.
pub(super) enum Found {
    /// A value to return.
    Fresh,
    /// A value to return unless this caller wins the refresh.
    Due(Due),
    /// A value past its time: a miss.
    Gone,
}

/// What the in-process tier holds for a lookup.
pub(super) enum InProcess {
    /// A fresh value, in the slot.
    Hit,
    /// A value due for a refresh, in the slot.
    Due(Due),
    Miss,
}

/// What a lookup comes to before its loader runs. (Returned once per
/// lookup and taken apart at once: boxing `Load` would only cost.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Begin<'a> {
    /// The value is in the slot, and the lookup counted.
    Answer,
    /// Run the loader; `None`: alone, past the cache.
    Load(Option<Pending<'a>>),
}

/// A load that a lookup planned, and what its value needs afterwards.
pub(super) struct Pending<'a> {
    pub(super) keys: EntryKeys,
    /// The in-process tier's, taken before the backend was read.
    watch: Option<Watch>,
    pub(super) under: Under<'a>,
    started: Instant,
    refresh: Option<Refresh>,
}

/// A value due for a refresh.
pub(super) struct Due {
    /// When the entry was stored: a re-read that finds another time finds
    /// another caller's refresh.
    pub(super) stored_at_ms: u64,
    pub(super) negative: bool,
    /// Whether the value may stand in for a failed refresh: yes while it is
    /// fresh (early) or stale within swr's window. An early entry past its
    /// TTL is only served while another caller refreshes it.
    pub(super) fallback: bool,
}

/// What a lookup comes to, before its loader (if any) runs.
pub(super) enum Plan<'a> {
    /// The value is in the slot, and the lookup counted.
    Answer,
    /// Run the loader under `under`; its cost runs from `started`.
    Load {
        under: Under<'a>,
        started: Instant,
        /// For a refresh: whether the slot's value stands in if it fails.
        refresh: Option<Refresh>,
    },
}

/// A load that refreshes a due value.
pub(super) struct Refresh {
    pub(super) fallback: bool,
}

impl<'a> Plan<'a> {
    pub(super) fn load(under: Under<'a>, started: Instant) -> Self {
        Plan::Load {
            under,
            started,
            refresh: None,
        }
    }
}
