//! The read path: what a read finds (fresh, due for a refresh, or nothing),
//! in the in-process tier or the backend, and what a miss does next (the
//! plan a load runs under). Runs no loader and stores nothing: `Cache::run`
//! runs the loader, `load` stores its value.

use std::time::Duration;

use bytes::Bytes;

use super::batch;
use super::observe::Answered;
use super::plan::{Begin, Due, Found, InProcess, Pending, Plan, Refresh, Standby};
use super::scoped::Mode;
use super::slot::Slot;
use super::{Cache, Call, Under};
use crate::backend::{EntryKeys, Fetched};
use crate::clock::duration_ms;
use crate::clock::{now_ms, Instant};
use crate::counters::{Counters, Outcome};
use crate::entry::Entry;
use crate::entry::Meta;
use crate::flight::{Join, Landed};
use crate::l1::{Kept, Local, Watch};
use crate::policy::Policy;
use crate::stampede::Stampede;
use crate::stampede::{recompute_early, REFRESH_GRACE};
use crate::tags::Stamp;
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
        self.look_in_process(key, policy, mode, slot, true)
    }

    /// [`in_process`](Self::in_process); with `final_say`, a value of
    /// another type in a tier that is the only store is counted as corrupt
    /// (a look that a full lookup follows leaves that to it).
    pub(super) fn look_in_process(
        &self,
        key: &str,
        policy: &Policy,
        mode: Mode,
        slot: &mut dyn Slot,
        final_say: bool,
    ) -> InProcess {
        if !self.inner.settings.enabled || mode != Mode::Lookup {
            return InProcess::Miss;
        }
        let touch = policy.touch(self.inner.settings.default_ttl);
        let Some(local) = self.inner.local_for(policy, touch) else {
            if self.inner.local.is_none() && policy.l1_ttl_set() {
                self.l1_without_tier(policy);
            }
            return InProcess::Miss;
        };
        let now = now_ms();
        let meta = match slot.take_local(local, key, now) {
            Kept::Value((), meta) => meta,
            // Over Redis, the backend's entry may still decode as `T`: only
            // a tier that is the only store knows this is a corrupt entry.
            Kept::OtherType if local.alone() && final_say => {
                self.other_type_in_process(key, policy, slot.type_name());
                return InProcess::Miss;
            }
            _ => return InProcess::Miss,
        };
        match self.decide_at(meta, policy, true, now, true) {
            Found::Fresh => {
                if let Some(ttl) = touch {
                    local.touch(key, ttl, now);
                }
                InProcess::Hit
            }
            Found::Due(due) => InProcess::Due(due),
            Found::Expired(meta) => InProcess::Expired(meta),
            Found::Gone => InProcess::Miss,
        }
    }

    /// The rest of a lookup, short of running the loader: a value (left in
    /// `slot`), or the load to run. Counts the lookup.
    pub(super) async fn begin(
        &self,
        key: &str,
        policy: &Policy,
        (mode, detach): (Mode, bool),
        in_process: InProcess,
        slot: &mut dyn Slot,
        span: &Span,
    ) -> Begin {
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
            .plan_lookup(key, policy, local, (mode, detach), in_process, touch, slot)
            .instrument(span.clone())
            .await;
        match plan {
            // `plan` turns a standby's answer into `Answer`, counted.
            Plan::Answer | Plan::Standby => Begin::Answer,
            Plan::Load {
                under,
                started,
                refresh,
                standby,
            } => {
                // A refresh yet to take its lock counts its load once it has.
                if !matches!(refresh, Refresh::Unlocked(_)) {
                    Counters::incr(&self.inner.counters.loads);
                }
                Begin::Load(Some(Pending {
                    keys,
                    watch,
                    under,
                    started,
                    refresh,
                    standby,
                }))
            }
        }
    }

    // Logging, out of the generic flow: a `tracing` event is a good deal of
    // code, which would be compiled again for every cached function.

    /// The rest of a lookup, short of running the loader: the storage
    /// names, the in-process tier's watch, and the plan.
    #[allow(clippy::too_many_arguments)]
    async fn plan_lookup(
        &self,
        key: &str,
        policy: &Policy,
        local: Option<&Local>,
        (mode, detach): (Mode, bool),
        in_process: InProcess,
        touch: Option<Duration>,
        slot: &mut dyn Slot,
    ) -> (EntryKeys, Option<Watch>, Plan) {
        let keys = self.inner.keys(key, policy.tags());
        if self.covered(&keys) {
            // This process invalidated it, and the backend has not heard
            // yet: call through, as if the backend failed, until it has.
            let plan = self.miss(policy, &mut true, None, Under::default(), Instant::now());
            return (keys, None, plan);
        }
        // Past the plain lookup, boxed as in `plan`.
        if mode == Mode::Refresh {
            // Voids loads in flight (their values are older), before the
            // watch is taken and the tokens read.
            Box::pin(self.start_forced(&keys, policy)).await;
        }
        // Taken before the fetch: a change from here on voids what it fills.
        let watch = local.and_then(|local| local.watch(key, keys.names()));
        let call = Call {
            detach,
            ..Call::new(&keys, policy, watch.as_ref())
        };
        let plan = match (mode, in_process) {
            (Mode::Refresh, _) => Box::pin(self.plan_forced(call)).await,
            (_, InProcess::Due(due)) => {
                Box::pin(self.plan_refresh(call, due, true, Instant::now(), slot)).await
            }
            (_, InProcess::Expired(meta)) => self.plan(call, touch, Some(meta), slot).await,
            (_, InProcess::Miss | InProcess::Hit) => self.plan(call, touch, None, slot).await,
        };
        (keys, watch, plan)
    }

    /// A forced refresh ([`Mode::Refresh`]) begins: the key is invalidated,
    /// so that no load that started before can store after it.
    async fn start_forced(&self, keys: &EntryKeys, policy: &Policy) {
        self.count(policy, Outcome::Bypass);
        self.count_refresh(policy);
        if let Err(missed) = self.invalidate_keys(keys).await {
            missed.report(self);
        }
    }

    /// A forced refresh's load, under the tokens read now. Its failure is
    /// a refresh error, with nothing to fall back on.
    async fn plan_forced(&self, call: Call<'_>) -> Plan {
        let started = Instant::now();
        let stamp = self.tokens(call.keys, call.policy).await;
        Plan::Load {
            under: Under::stamped(stamp),
            started,
            refresh: Refresh::Forced,
            standby: None,
        }
    }

    /// What a lookup of `call` comes to, short of the in-process tier: a
    /// value (left in `slot`), or a load to run and under what. `expired`:
    /// the in-process tier holds a value past its fresh time, kept for
    /// fail-safe, which is in `slot`.
    ///
    /// Every step past the read is boxed (`Box::pin`), allocated only when
    /// taken: a hit's future holds the read alone, and every call in flight
    /// holds a hit's future (see the test `a_call_future_holds_what_a_hit_needs`).
    async fn plan(
        &self,
        call: Call<'_>,
        touch: Option<Duration>,
        expired: Option<Meta>,
        slot: &mut dyn Slot,
    ) -> Plan {
        let Call { keys, policy, .. } = call;
        // A lookup is counted once, however many times it looks again: as a
        // hit by the read that finds it, as coalesced by a wait that gets
        // another caller's value, or as a miss when it goes on to load. A
        // lookup with a standby is counted when its load ends: as a miss,
        // or as stale if the standby answers it.
        let mut uncounted = true;
        let mut standby = expired.map(Standby::new);
        // Once a load this lookup waited for failed: until when it waits
        // for its turn behind another caller's retry rather than load.
        let mut turns_until: Option<Option<Instant>> = None;
        // With a soft timeout and a value standing by: until when this
        // lookup waits for a load, however many it waits for.
        let mut soft_until: Option<Instant> = None;
        let mut soft = |standby: &mut Option<Standby>| {
            let after = policy.soft_timeout_after()?;
            let standby = standby.as_mut()?;
            let now = Instant::now();
            let until = *soft_until.get_or_insert(now.checked_add(after)?);
            standby.soft_until = Some(until);
            Some(until.saturating_duration_since(now))
        };
        loop {
            // What a load costs, for XFetch, runs from here: this fetch stands
            // in for the store's round trip, then come the lock, the tokens
            // and the loader.
            let started = Instant::now();
            // In a batch, read with the batch's other elements.
            let fetched = match batch::read(keys, touch) {
                Some(read) => read.await,
                None => self
                    .inner
                    .report(self.inner.call("fetch", |b| b.fetch(keys, touch)).await),
            };
            match fetched
                .as_ref()
                .and_then(|f| self.read_into(keys, f, policy, uncounted, call.watch, slot))
            {
                Some(Found::Fresh) => return Plan::Answer,
                Some(Found::Due(due)) => {
                    return Box::pin(self.plan_refresh(call, due, uncounted, started, slot)).await;
                }
                Some(Found::Expired(meta)) => standby = Some(Standby::new(meta)),
                // The backend, where it holds the values, has no usable
                // entry: nothing stands in (not even what the in-process
                // tier still holds before word of an invalidation reaches it).
                Some(Found::Gone) | None => {
                    if fetched.is_some() && !self.inner.local.as_ref().is_some_and(|local| local.alone()) {
                        standby = None;
                    }
                }
            }
            let mode = policy.stampede_mode();
            // The backend is failing: no lock to wait for, no tokens to store
            // under, and no load another caller could safely share. Call through.
            if fetched.is_none() {
                return self.miss(policy, &mut uncounted, standby, Under::default(), started);
            }
            if mode == Stampede::None {
                let under = Under::stamped(Box::pin(self.tokens(keys, policy)).await);
                return self.miss(policy, &mut uncounted, standby, under, started);
            }
            match self.inner.flights.join(keys.entry()) {
                Join::Leader(leader) => {
                    // One load across processes, under the lock: always with
                    // `Lock`; with the other modes, for a value kept for
                    // fail-safe, so that a failing database sees one attempt.
                    let lock = match mode {
                        Stampede::Lock { lock_ttl, lock_wait } => Some((lock_ttl, lock_wait)),
                        _ if standby.is_some() => Some((policy.refresh_lock(), Stampede::DEFAULT_LOCK_WAIT)),
                        _ => None,
                    };
                    let Some(lock) = lock else {
                        let under = Under::stamped(Box::pin(self.tokens(keys, policy)).await).leading(leader);
                        return self.miss(policy, &mut uncounted, standby, under, started);
                    };
                    // Its tokens come with the lock.
                    let soft = soft(&mut standby);
                    return match Box::pin(self.plan_locked(call, lock, leader, started, soft, slot)).await {
                        Plan::Load { under, .. } => {
                            self.miss(policy, &mut uncounted, standby, under, started)
                        }
                        Plan::Standby => self.serve_standby(policy, &mut uncounted, standby),
                        // Another caller's load landed between this
                        // lookup's read and its lock, or while it waited
                        // for the lock: its value, waited for.
                        Plan::Answer => {
                            self.count_once(policy, Outcome::Coalesced, &mut uncounted);
                            Plan::Answer
                        }
                    };
                }
                Join::Waiter(waiter) => {
                    // The tokens this caller would load under (the leader's
                    // load takes longer than reading them). Without them the
                    // backend is failing: call through rather than wait.
                    let Some(stamp) = Box::pin(self.tokens(keys, policy)).await else {
                        return self.miss(policy, &mut uncounted, standby, Under::default(), started);
                    };
                    // With a soft timeout and a value standing by, not
                    // longer than the timeout.
                    let Some(landed) = Box::pin(self.wait_at_most(waiter, soft(&mut standby))).await else {
                        return self.serve_standby(policy, &mut uncounted, standby);
                    };
                    match landed {
                        // Only a load that ran under the tokens this caller
                        // read: one that began before an invalidation this
                        // caller has seen is not for it.
                        Landed::Value(payload, Some(theirs)) if theirs == stamp => {
                            if slot.decode(self.codec(policy), &payload).is_ok() {
                                self.count_once(policy, Outcome::Coalesced, &mut uncounted);
                                return Plan::Answer;
                            }
                        }
                        // The load failed: fail-safe's value stands in, or
                        // this caller waits for its turn behind one retry
                        // (for `lock_wait` at most), rather than every
                        // waiter loading from a failing database at once.
                        Landed::Failed => {
                            if standby.is_some() {
                                return self.serve_standby(policy, &mut uncounted, standby);
                            }
                            // A wait too long to add to now: as long as it takes.
                            let now = Instant::now();
                            let until = *turns_until.get_or_insert_with(|| now.checked_add(turns(mode)));
                            if until.is_none_or(|until| now < until) {
                                continue;
                            }
                        }
                        Landed::Value(..) | Landed::Unshared => {}
                        // The leader was cancelled, or found the value stored
                        // by another process: look again.
                        Landed::Abandoned | Landed::Stored => continue,
                    }
                    let under = Under::stamped(Some(stamp));
                    return self.miss(policy, &mut uncounted, standby, under, started);
                }
            }
        }
    }

    /// A lookup answered by its `standby` (in the slot), counted as stale
    /// unless it was counted already.
    fn serve_standby(&self, policy: &Policy, uncounted: &mut bool, standby: Option<Standby>) -> Plan {
        if let Some(mut standby) = standby {
            standby.uncounted = std::mem::take(uncounted);
            self.stood_in(policy, &standby);
        }
        Plan::Answer
    }

    /// A lookup that loads under `under`: counted as a miss now, or, with a
    /// `standby`, when the load ends.
    fn miss(
        &self,
        policy: &Policy,
        uncounted: &mut bool,
        standby: Option<Standby>,
        under: Under,
        started: Instant,
    ) -> Plan {
        let standby = match standby {
            Some(mut standby) => {
                standby.uncounted = std::mem::take(uncounted);
                Some(standby)
            }
            None => {
                self.count_once(policy, Outcome::Miss, uncounted);
                None
            }
        };
        Plan::Load {
            under,
            started,
            refresh: Refresh::No,
            standby,
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
        // How far past its fresh time: an entry may be kept past it for
        // swr's stale window, early's grace, and fail-safe.
        let past = now.saturating_sub(meta.fresh_until_ms);
        let within = |window: Duration| past < duration_ms(window);
        let fail_safe = policy.fail_safe_for();
        let (due, fallback) = match policy.stampede_mode() {
            Stampede::Early { beta } if fresh => {
                let draw = rand::random();
                let due = recompute_early(now, meta.fresh_until_ms, meta.load_time, beta, draw);
                (due, true)
            }
            _ if fresh => (false, true),
            Stampede::Swr { stale } if within(stale) => (true, true),
            // Served only while another caller refreshes it, unless it is
            // kept for fail-safe.
            Stampede::Early { .. } if within(REFRESH_GRACE) => (true, !fail_safe.is_zero()),
            // Past any window but fail-safe's: a miss, whose load this value
            // stands in for if it fails.
            _ if within(fail_safe) => return Found::Expired(meta),
            _ => return Found::Gone,
        };
        if count && fallback {
            let answered = match (in_process, due) {
                (false, _) => Answered::Backend,
                (true, true) => Answered::InProcess,
                (true, false) => Answered::InProcessAlone,
            };
            self.count_hit(policy, meta.negative, !fresh, answered);
        }
        if due {
            Found::Due(Due { meta, fallback })
        } else {
            Found::Fresh
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
            if !Stamp::tags_match(entry.tag_versions(), &fetched.tags) {
                return Ok(None);
            }
            let value = entry.value(self.inner.settings.max_entry_size);
            slot.decode(entry.codec, &value.map_err(|e| e.to_string())?)?;
            Ok(Some(entry.meta()))
        });
        match decoded {
            Ok(meta) => meta,
            Err(reason) => {
                if count {
                    self.count_corrupt(policy);
                    if !Self::explain_corrupt(policy, slot.type_name(), keys.key()) {
                        let key = keys.entry();
                        tracing::warn!(key, %reason, "aside: unreadable cache entry, treating it as a miss");
                    }
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
        let newer = Stamp::tags_match(entry.tag_versions(), &fetched.tags)
            && meta.stored_at_ms != due.meta.stored_at_ms
            && now_ms() < meta.fresh_until_ms;
        // A payload that does not decode leaves the slot's due value, which
        // then stands in as before.
        let limit = self.inner.settings.max_entry_size;
        newer
            && entry
                .value(limit)
                .is_ok_and(|value| slot.decode(entry.codec, &value).is_ok())
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

/// How long a caller waits for its turn behind other callers' retries of a
/// failed load before it loads itself: as long as it would wait for a lock.
fn turns(mode: Stampede) -> Duration {
    match mode {
        Stampede::Lock { lock_wait, .. } => lock_wait,
        _ => Stampede::DEFAULT_LOCK_WAIT,
    }
}
