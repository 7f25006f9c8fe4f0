//! After the loader ran: its value handed to the waiters and stored under
//! the tokens read before it ran, in the backend and then the in-process
//! tier; a failed or panicked load's waiters told, and a value kept for
//! fail-safe standing in; a load that outlasts its caller's wait.
//!
//! Reads nothing: what a lookup found arrives as a `Pending`.

use std::time::Duration;

use bytes::Bytes;
use tracing::Instrument;

use super::observe::{Answered, Observed};
use super::plan::{Pending, Refresh, SoftWait, Standby};
use super::slot::Slot;
use super::stampede::HeldLock;
use super::{Cache, Call, Under};
use crate::backend::{EntryKeys, Renewal};
use crate::clock::{now_ms, Instant};
use crate::codec::Codec;
use crate::codec::CodecError;
use crate::counters::{Counters, Outcome};
use crate::entry::Entry;
use crate::entry::Meta;
use crate::error::BackendError;
use crate::flight::{Landed, Leader};
use crate::l1::{Place, Watch};
use crate::policy::Policy;
use crate::stampede::Stampede;
use crate::stampede::{jittered, MAX_JITTER, REFRESH_GRACE};
use crate::tags::Stamp;

impl Cache {
    /// The tokens a load of `keys` under `policy` runs under, read (and
    /// the missing ones created) now; `None` if the backend failed.
    pub(super) async fn tokens(&self, keys: &EntryKeys, policy: &Policy) -> Option<Stamp> {
        let window = self.inner.settings.invalidation_window;
        let keep = self.tags_kept(policy);
        let tokens = self.inner.call("tokens", |b| b.tokens(keys, window, keep)).await;
        self.inner.report(tokens)
    }

    /// How long the tag tokens a load under `policy` records must live: as
    /// long as the backend may keep its entry (the TTL, jittered up at most
    /// by [`MAX_JITTER`], and what is kept past it), plus the invalidation
    /// window, which bounds how long the load may take to store. A sliding
    /// entry, which hits keep alive, may outlive its tags' tokens: its next
    /// read is then a miss, never a stale hit.
    pub(super) fn tags_kept(&self, policy: &Policy) -> Duration {
        let ttl = policy.effective_ttl(self.inner.settings.default_ttl, false);
        let jittered = Duration::try_from_secs_f64(ttl.as_secs_f64() * (1.0 + MAX_JITTER));
        jittered
            .unwrap_or(Duration::MAX)
            .saturating_add(kept_past(policy))
            .saturating_add(self.inner.settings.invalidation_window)
    }

    /// A load failed: its waiters take turns, and its lock is released in
    /// the background.
    pub(super) fn failed(&self, under: Under) {
        if let Some(leader) = &under.leader {
            leader.land(Landed::Failed);
        }
        self.release_behind(under.lock);
    }

    /// A load failed, and the value kept with `meta` (in the caller's slot)
    /// stands in for it. Its waiters are told, to fall back on theirs. With
    /// fail-safe, the value is fresh again for the throttle: in the backend,
    /// if it still holds that entry, in the same step as the lock's
    /// release, in the background; then in the in-process tier.
    pub(super) fn fall_back(
        &self,
        keys: EntryKeys,
        watch: Option<Watch>,
        under: Under,
        meta: Meta,
        policy: &Policy,
    ) {
        let Under { stamp, leader, lock } = under;
        if let Some(leader) = leader {
            leader.land(Landed::Failed);
        }
        let runtime = tokio::runtime::Handle::try_current();
        let now = now_ms();
        let fail_safe = policy.fail_safe_of();
        let (Some(fail_safe), Ok(runtime)) = (fail_safe, runtime) else {
            return self.release_behind(lock);
        };
        let Some(renewed) = fail_safe.stand_in(meta, now) else {
            return self.release_behind(lock);
        };
        let throttle = fail_safe.throttled();
        let local = self.inner.local.clone();
        let kept = self.kept_for(renewed, policy);
        let renew_local = move || {
            if let (Some(local), Some(watch)) = (local, watch) {
                local.renew(&watch, meta.stored_at_ms, renewed, kept);
            }
        };
        // The tier is the only store, or the backend could not be read
        // (nothing to renew there).
        if self.inner.local.as_ref().is_some_and(|local| local.alone()) || stamp.is_none() {
            renew_local();
            return self.release_behind(lock);
        }
        let times = (meta.stored_at_ms, meta.fresh_until_ms);
        let renewal = Renewal::new(times, now, throttle, throttle.saturating_add(kept_past(policy)));
        let cache = self.clone();
        let spawned = runtime.spawn(async move {
            let unlock = lock.as_ref().map(HeldLock::token);
            let result = cache
                .inner
                .call("renew", |b| b.renew(&keys, renewal, unlock))
                .await;
            // Released with the renewal; if that failed, dropping `lock`
            // releases it in the background.
            if let (Ok(_), Some(held)) = (&result, lock) {
                held.disarm();
            }
            if let Ok(true) = result {
                renew_local();
            }
            // Unsupported by the backend: no throttle, and no error.
            if !matches!(result, Err(BackendError::Unsupported(_))) {
                cache.inner.report(result);
            }
        });
        drop(spawned);
    }

    /// A load panicked: its waiters take their turns (its lock, dropped while
    /// unwinding, is released in the background).
    pub(super) fn panicked(&self, under: &Under) {
        if let Some(leader) = &under.leader {
            leader.land(Landed::Failed);
        }
    }

    /// Hands a loaded `payload` (`None`: it did not encode) to the flight's
    /// waiters and stores it, unless `skip`. Returns what the in-process
    /// tier may keep (the stored entry's meta and weight), and the flight,
    /// to be closed once the tier has it.
    pub(super) async fn land(
        &self,
        call: Call<'_>,
        under: Under,
        payload: Option<Bytes>,
        skip: bool,
        load_time: Duration,
    ) -> (Option<(Meta, usize)>, Option<Leader>) {
        let Call { keys, policy, .. } = call;
        let Under { stamp, leader, lock } = under;
        let Some(payload) = payload else {
            if let Some(leader) = &leader {
                leader.land(Landed::Unshared);
            }
            return (release(lock).await, leader);
        };
        if let Some(leader) = &leader {
            leader.land(Landed::Value(payload.clone(), stamp.clone()));
        }
        // Waiters already have the value; the flight stays open until the
        // write lands (and the tier has it) so that callers arriving
        // meanwhile still join it.
        let stored = match &stamp {
            Some(_) if skip => release(lock).await,
            Some(stamp) => self.store(keys, policy, &payload, stamp, load_time, lock).await,
            None => release(lock).await,
        };
        // Kept in process only once the backend has it: a store refused
        // because of an invalidation is not served from here either.
        (stored.map(|meta| (meta, payload.len())), leader)
    }

    /// Stores a loaded payload, unless the key was invalidated since `stamp`
    /// was read (the backend checks the guard atomically; a load that
    /// outlived its guard finds it gone and is not stored either). Releases
    /// `lock` in the same round trip. Returns what was stored, if it was.
    pub(super) async fn store(
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
        let (fresh, ttl) = match policy.touch(ttl) {
            // A sliding entry's freshness is its backend TTL, which hits extend.
            Some(_) => (Duration::MAX, ttl),
            None => (ttl, ttl.saturating_add(kept_past(policy))),
        };
        let key = keys.entry();
        let compress = self.inner.settings.compress_above;
        let Some(entry) = Entry::encode(
            now_ms(),
            fresh,
            load_time,
            &stamp.tags,
            (codec, payload),
            compress,
        ) else {
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
            .call("store", |b| b.store(keys, entry, ttl, stamp.guard, unlock))
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

    /// Keeps `value` (stored with `meta`, `weight` bytes encoded) in the
    /// in-process tier under `watch`, as long as the backend keeps it under
    /// `policy`: past its freshness for swr's stale window and early's
    /// grace; a sliding entry (only ever in a tier that is the only store)
    /// for its TTL, which each hit restarts.
    pub(super) fn keep_in_process(
        &self,
        watch: &Watch,
        value: &dyn Place,
        weight: usize,
        meta: Meta,
        policy: &Policy,
    ) {
        let Some(local) = &self.inner.local else { return };
        let Some(shared) = value.shared() else { return };
        local.fill_shared(
            watch,
            shared,
            (self.codec(policy), weight),
            meta,
            self.kept_for(meta, policy),
        );
    }

    /// How long the in-process tier keeps a value stored with `meta` under
    /// `policy`: see [`keep_in_process`](Self::keep_in_process).
    fn kept_for(&self, meta: Meta, policy: &Policy) -> Duration {
        let kept = match policy.touch(self.inner.settings.default_ttl) {
            Some(ttl) => ttl,
            None => {
                let fresh = meta.fresh_until_ms.saturating_sub(now_ms());
                Duration::from_millis(fresh).saturating_add(kept_past(policy))
            }
        };
        policy.l1_cap(kept)
    }

    /// The codec `policy` writes with.
    pub(super) fn codec(&self, policy: &Policy) -> Codec {
        policy.codec_or(self.inner.settings.codec)
    }

    /// The slot's value, encoded as `policy` says; `None` if it does not
    /// encode (logged) or the slot is empty.
    pub(super) fn encode_slot(&self, keys: &EntryKeys, policy: &Policy, slot: &dyn Slot) -> Option<Bytes> {
        let function = policy.named();
        if let Some(function) = function {
            function.stores(slot.type_name());
        }
        // Room for as much as the function's last value took.
        let capacity = function.map_or(Codec::FIRST_ROOM, crate::Function::encoded_size);
        let payload = slot.encode(self.codec(policy), capacity)?;
        if let (Some(function), Ok(payload)) = (function, &payload) {
            function.encoded(payload.len());
        }
        encoded(keys, payload)
    }
}

impl Cache {
    /// Whether a value encoded as `payload` is small enough to store at
    /// `keys`; one that is not is counted and logged.
    pub(super) fn fits(&self, keys: &EntryKeys, policy: &Policy, payload: &[u8]) -> bool {
        let limit = self.inner.settings.max_entry_size;
        if payload.len() <= limit {
            return true;
        }
        Counters::incr(&self.inner.counters.oversized);
        if let Some(function) = policy.named() {
            function.oversized();
        }
        let (key, size) = (keys.entry(), payload.len());
        if !self
            .inner
            .warned_oversized
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(key, size, limit, "aside: value larger than max_entry_size, returned but not cached (logged once; then at debug level)");
        } else {
            tracing::debug!(
                key,
                size,
                limit,
                "aside: value larger than max_entry_size, not cached"
            );
        }
        false
    }
}

/// How long the backend keeps an entry of `policy` past its fresh time: for
/// swr's stale window, early's grace (a refresh that started just before
/// expiry can still finish), and fail-safe, whichever is longest.
fn kept_past(policy: &Policy) -> Duration {
    let window = match policy.stampede_mode() {
        Stampede::Swr { stale } => stale,
        Stampede::Early { .. } => REFRESH_GRACE,
        _ => Duration::ZERO,
    };
    window.max(policy.fail_safe_for())
}

/// An encoded value, or its encoder's failure logged: the same for every type.
fn encoded(keys: &EntryKeys, encoded: Result<Vec<u8>, CodecError>) -> Option<Bytes> {
    match encoded {
        Ok(payload) => Some(Bytes::from(payload)),
        Err(error) => {
            let key = keys.entry();
            tracing::warn!(key, %error, "aside: value does not serialize, not caching it");
            None
        }
    }
}

/// Releases a lock the caller may hold. (Returns nothing stored, for
/// [`Cache::store`]'s early returns.)
pub(super) async fn release<M>(lock: Option<HeldLock>) -> Option<M> {
    if let Some(held) = lock {
        held.release().await;
    }
    None
}

impl Cache {
    /// A load failed (`pending`, if the lookup planned it): whether the
    /// slot's value stands in for it (the lookup is then answered, and
    /// counted as stale if it was not yet).
    pub(super) fn load_failed(&self, pending: Option<Pending>, policy: &Policy) -> bool {
        let Some(Pending {
            keys,
            watch,
            under,
            refresh,
            standby,
            ..
        }) = pending
        else {
            return false;
        };
        if !matches!(refresh, Refresh::No) {
            self.refresh_failed(&keys, policy, standby.is_some());
        }
        match standby {
            Some(standby) => {
                self.stood_in(policy, &standby);
                self.fall_back(keys, watch, under, standby.meta, policy);
                true
            }
            None => {
                self.failed(under);
                false
            }
        }
    }

    /// A load panicked (`pending`, if the lookup planned it): its waiters
    /// take their turns rather than wait for it; its lock, dropped here,
    /// is released in the background.
    pub(super) fn load_panicked(&self, pending: Option<Pending>, policy: &Policy) {
        if let Some(pending) = pending {
            self.panicked(&pending.under);
            if pending.standby.is_some_and(|standby| standby.uncounted) {
                self.count(policy, Outcome::Miss);
            }
        }
    }

    /// Whether `pending` (of a lookup that may detach its load) runs on a
    /// task of its own, and if so how long
    /// its caller waits for it: a refresh with a value to serve not at all;
    /// a load that a value kept for fail-safe stands in for, `soft_timeout`.
    /// The caller then counts its own lookup.
    pub(super) fn detachable(&self, pending: &mut Pending, policy: &Policy) -> Option<Option<SoftWait>> {
        // A value due for a refresh is served while it runs, as it is to
        // everyone else (a lookup that may detach plans it unlocked).
        if matches!(pending.refresh, Refresh::Unlocked(_)) {
            return Some(None);
        }
        let standby = pending.standby.as_mut()?;
        // What is left of it, if this lookup waited already.
        let after = match standby.soft_until {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => policy.soft_timeout_after()?,
        };
        let wait = SoftWait {
            after,
            standby: *standby,
        };
        standby.uncounted = false;
        Some(Some(wait))
    }

    /// A detached load (see [`detachable`](Self::detachable)) failed or panicked.
    pub(super) fn detached_failed(&self, pending: Pending, policy: &Policy, panicked: bool) {
        if panicked {
            let key = pending.keys.entry();
            tracing::error!(key, "aside: a load running in the background panicked");
            self.load_panicked(Some(pending), policy);
        } else {
            self.load_failed(Some(pending), policy);
        }
    }

    /// The caller of a load detached after `wait.after` got the loaded
    /// value (`fresh`) or its standby: counts its lookup.
    pub(super) fn soft_waited(&self, policy: &Policy, wait: &SoftWait, fresh: bool) {
        if !fresh {
            self.stood_in(policy, &wait.standby);
        } else if wait.standby.uncounted {
            self.count(policy, Outcome::Miss);
        }
    }

    /// A load succeeded with nothing to store it under (the backend failed):
    /// its lookup, if not counted yet, was a miss.
    pub(super) fn loaded_idle(&self, pending: Pending, policy: &Policy) {
        if pending.standby.is_some_and(|standby| standby.uncounted) {
            self.count(policy, Outcome::Miss);
        }
    }

    /// Counts a lookup whose standby answered it, unless it was counted already.
    pub(super) fn stood_in(&self, policy: &Policy, standby: &Standby) {
        if standby.uncounted {
            self.count_hit(policy, standby.meta.negative, true, Answered::Backend);
        }
    }

    /// A planned load's value (in `slot`, encoded as `payload`) lands: its
    /// waiters get it, the backend and then the in-process tier store it.
    pub(super) async fn finish(
        &self,
        pending: Pending,
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
            standby,
            ..
        } = pending;
        if standby.is_some_and(|standby| standby.uncounted) {
            self.count(policy, Outcome::Miss);
        }
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
}
