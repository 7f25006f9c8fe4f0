//! The read path: what a read finds (fresh, due for a refresh, or nothing),
//! in the in-process tier or the backend, and what a miss does next.

use std::future::Future;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Cache, Call, Under};
use crate::backend::{EntryKeys, Fetched};
use crate::clock::{now_ms, Instant};
use crate::entry::Entry;
use crate::flight::{Join, Landed};
use crate::l1::{Kept, Meta, Watch};
use crate::stampede::recompute_early;
use crate::stats::Counters;
use crate::tags::Stamp;
use crate::{Policy, Stampede};

impl Cache {
    /// The flow of [`Cache::get_or_load`].
    pub(super) async fn lookup<T, E, F, Fut>(&self, key: &str, policy: &Policy, load: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let touch = policy.touch(self.inner.settings.default_ttl);
        let local = self.inner.local_for(policy, touch);
        if let Some(local) = local {
            let now = now_ms();
            let found = local.get::<T>(key, now);
            // Over Redis, the backend's entry may still decode as `T`: only
            // a tier that is the only store knows this is a corrupt entry.
            if matches!(found, Kept::OtherType) && local.alone() {
                Counters::incr(&self.inner.counters.corrupt);
                tracing::warn!(key, "aside: cached value of another type, treating it as a miss");
            }
            if let Kept::Value(value, meta) = found {
                match self.decide_at(Stored { value, meta }, policy, true, now) {
                    Found::Fresh(value) => {
                        if let Some(ttl) = touch {
                            local.touch(key, ttl, now);
                        }
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
                .report(self.inner.call(|b| b.fetch(&keys, touch)).await);
            match fetched
                .as_ref()
                .and_then(|f| self.read_into(&keys, f, policy, uncounted, call.watch))
            {
                Some(Found::Fresh(value)) => return Ok(value),
                Some(Found::Due(due)) => {
                    return self.refresh(call, load, due, uncounted, started).await;
                }
                Some(Found::Gone) | None => {}
            }
            let mode = policy.stampede_mode();
            // The backend is failing: no lock to wait for, no tokens to store
            // under, and no load another caller could safely share. Call through.
            if fetched.is_none() {
                self.count_miss(&mut uncounted);
                return self.load(call, load, Under::default(), started).await;
            }
            if mode == Stampede::None {
                self.count_miss(&mut uncounted);
                let stamp = self.tokens(&keys).await;
                return self.load(call, load, Under::stamped(stamp), started).await;
            }
            match self.inner.flights.join(&keys.entry) {
                Join::Leader(leader) => {
                    self.count_miss(&mut uncounted);
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
                        self.count_miss(&mut uncounted);
                        return self.load(call, load, Under::default(), started).await;
                    };
                    match self.wait(waiter).await {
                        // Only a load that ran under the tokens this caller
                        // read: one that began before an invalidation this
                        // caller has seen is not for it.
                        Landed::Value(payload, Some(theirs)) if theirs == stamp => {
                            if let Ok(value) = self.codec(policy).decode(&payload) {
                                if std::mem::take(&mut uncounted) {
                                    Counters::incr(&self.inner.counters.coalesced);
                                }
                                return Ok(value);
                            }
                        }
                        Landed::Value(..) | Landed::Failed => {}
                        // The leader was cancelled, or found the value stored
                        // by another process: look again.
                        Landed::Abandoned | Landed::Stored => continue,
                    }
                    self.count_miss(&mut uncounted);
                    let under = Under::stamped(Some(stamp));
                    return self.load(call, load, under, started).await;
                }
            }
        }
    }

    /// Counts the lookup as a miss, unless its outcome was counted already.
    fn count_miss(&self, uncounted: &mut bool) {
        if std::mem::take(uncounted) {
            Counters::incr(&self.inner.counters.misses);
        }
    }

    /// What a fetched entry offers: a fresh value, a value due for a refresh
    /// (swr past the TTL; early by XFetch, or past the TTL while the backend
    /// keeps it for [`REFRESH_GRACE`](crate::stampede::REFRESH_GRACE)), or nothing (absent, expired,
    /// invalidated by a tag, or undecodable). With `count` (a caller's first
    /// read, not a re-read), counts the hit or the corrupt entry; the hit of
    /// a [`Due`] without a fallback is counted by [`refresh`](Self::refresh),
    /// which alone knows whether it was one.
    pub(super) fn read<T: DeserializeOwned>(
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
    pub(super) fn read_into<T>(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        policy: &Policy,
        count: bool,
        watch: Option<&Watch>,
    ) -> Option<Found<T>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let stored = self.decode(keys, fetched, count)?;
        if let Some(watch) = watch {
            let weight = fetched.entry.as_ref().map_or(0, Bytes::len);
            self.keep_in_process(watch, &stored.value, weight, stored.meta, policy);
        }
        Some(self.decide(stored, policy, count))
    }

    /// What a stored value offers this read: see [`read`](Self::read).
    pub(super) fn decide<T>(&self, stored: Stored<T>, policy: &Policy, count: bool) -> Found<T> {
        self.decide_at(stored, policy, count, now_ms())
    }

    /// [`decide`](Self::decide) at `now` (ms, aside's clock).
    pub(super) fn decide_at<T>(&self, stored: Stored<T>, policy: &Policy, count: bool, now: u64) -> Found<T> {
        let Stored { value, meta } = stored;
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

    pub(super) fn count_hit(&self, negative: bool) {
        Counters::incr(&self.inner.counters.hits);
        if negative {
            Counters::incr(&self.inner.counters.negative_hits);
        }
    }

    /// The fetched entry, decoded, if there is one and its tags' tokens still
    /// match. With `count`, an undecodable entry is counted and logged.
    pub(super) fn decode<T: DeserializeOwned>(
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
    pub(super) fn replaced<T: DeserializeOwned>(
        &self,
        keys: &EntryKeys,
        fetched: &Fetched,
        due: &Due<T>,
    ) -> Option<T> {
        let stored = self.decode(keys, fetched, false)?;
        let newer = stored.meta.stored_at_ms != due.stored_at_ms && now_ms() < stored.meta.fresh_until_ms;
        newer.then_some(stored.value)
    }

    /// Reads `keys` again, uncounted (the lookup was counted already): the
    /// value, if a fresh one is there now. For `Stampede::Lock`, whose reads
    /// draw nothing; a refresh asks [`replaced`](Self::replaced) instead.
    pub(super) async fn reread<T: DeserializeOwned>(&self, keys: &EntryKeys, policy: &Policy) -> Option<T> {
        let fetched = self
            .inner
            .report(self.inner.call(|b| b.fetch(keys, None)).await)?;
        match self.read(keys, &fetched, policy, false) {
            Some(Found::Fresh(value)) => Some(value),
            _ => None,
        }
    }
}

/// What a read found.
pub(super) enum Found<T> {
    /// A value to return.
    Fresh(T),
    /// A value to return unless this caller wins the refresh.
    Due(Due<T>),
    /// A value past its time: a miss.
    Gone,
}

/// A value due for a refresh.
pub(super) struct Due<T> {
    pub(super) value: T,
    /// When the entry was stored: a re-read that finds another time finds
    /// another caller's refresh.
    pub(super) stored_at_ms: u64,
    pub(super) negative: bool,
    /// Whether `value` may stand in for a failed refresh: yes while it is
    /// fresh (early) or stale within swr's window. An early entry past its
    /// TTL is only served while another caller refreshes it.
    pub(super) fallback: bool,
}

/// A decoded entry whose tags still hold.
pub(super) struct Stored<T> {
    pub(super) value: T,
    pub(super) meta: Meta,
}
