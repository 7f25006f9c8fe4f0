//! The stampede flows: the backend lock and its waiters, and the refresh of
//! an entry that is due (swr, early).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::Instrument;

use super::batch;
use super::observe::{Answered, LockWait};
use super::plan::{Due, Found, Pending, Plan, Refresh, Standby};
use super::slot::Slot;
use super::{Cache, Call, Under};
use crate::backend::{fresh_token, EntryKeys, LockWatch, Locked};
use crate::clock::Instant;
use crate::counters::{Counters, Outcome};
use crate::flight::{Landed, Leader, Waiter};
use crate::policy::Policy;

impl Cache {
    /// `Stampede::Lock` for the in-process leader: one load across processes.
    /// Takes the backend lock (which reads the entry again and the tokens in
    /// the same round trip) and loads, its store releasing the lock; or waits
    /// for the holder's value (told of its release where the backend can,
    /// polling with backoff as the fallback). Past `lock_wait`, or if
    /// the backend fails, loads without the lock rather than fail. With
    /// `soft` (a soft timeout, and a value in `slot` that stands by), past
    /// it, answers with that value instead: [`Plan::Standby`].
    pub(super) async fn plan_locked(
        &self,
        call: Call<'_>,
        (lock_ttl, lock_wait): (Duration, Duration),
        leader: Leader,
        started: Instant,
        soft: Option<Duration>,
        slot: &mut dyn Slot,
    ) -> Plan {
        let Call { keys, policy, .. } = call;
        // A `lock_wait` too large to add to now means: wait as long as it takes.
        let wait = soft.map_or(lock_wait, |soft| soft.min(lock_wait));
        let deadline = Instant::now().checked_add(wait);
        let mut pause = Duration::from_millis(2);
        // Started at the first wait: word of the holder's release, where the
        // backend can give it. A release before it began is found by the
        // next poll.
        let mut watch: Option<Option<LockWatch>> = None;
        // From the first wait to the end of the lookup.
        let mut waiting = tracing::Span::none();
        let mut _waited = LockWait::none();
        // In a batch, a wait for another's lock lets the batch go on.
        let mut _parked = None;
        loop {
            match self.lock(keys, lock_ttl, policy).await {
                Lock::Taken(held, Locked { entry, tokens }) => {
                    // Another process may have stored the value between our
                    // read and our lock.
                    let fetched = tokens.fetched(entry);
                    if let Some(Found::Fresh) = self.read(keys, &fetched, policy, false, slot) {
                        leader.land(Landed::Stored);
                        held.release().await;
                        return Plan::Answer;
                    }
                    let under = Under::stamped(Some(tokens)).leading(leader).locked(held);
                    return Plan::load(under, started);
                }
                Lock::Busy => {
                    let now = Instant::now();
                    if deadline.is_some_and(|deadline| now >= deadline) {
                        if soft.is_some() {
                            return Plan::Standby;
                        }
                        break;
                    }
                    if watch.is_none() {
                        waiting = tracing::debug_span!("aside.lock_wait");
                        _waited = LockWait::start(policy);
                        _parked = Some(batch::Waiting::enter());
                        Counters::incr(&self.inner.counters.lock_waits);
                        watch = Some(self.inner.backend.watch_lock(keys).await);
                    }
                    let wait = deadline.map_or(pause, |deadline| deadline - now).min(pause);
                    match watch.as_mut().and_then(Option::as_mut) {
                        Some(watch) => {
                            let released = tokio::time::timeout(wait, watch.released());
                            _ = released.instrument(waiting.clone()).await;
                        }
                        None => tokio::time::sleep(wait).instrument(waiting.clone()).await,
                    }
                    pause = (pause * 2).min(Duration::from_millis(50));
                    if self.reread(keys, policy, slot).await {
                        leader.land(Landed::Stored);
                        return Plan::Answer;
                    }
                }
                Lock::Failed => break,
            }
        }
        let under = Under::stamped(self.tokens(keys, policy).await).leading(leader);
        Plan::load(under, started)
    }

    /// A refresh (`Swr` past the TTL, `Early` when XFetch says so or past
    /// the TTL) of the value in `slot`: the one caller that wins it, in this
    /// process and across processes, reloads and returns the new value;
    /// everyone else gets the current value at once. If the reload fails,
    /// the current value is returned where [`Due::fallback`] allows it, and
    /// the error otherwise (see [`Refresh`]).
    pub(super) async fn plan_refresh(
        &self,
        call: Call<'_>,
        due: Due,
        count: bool,
        started: Instant,
        slot: &mut dyn Slot,
    ) -> Plan {
        let keys = call.keys;
        // A load of the key is in flight in this process: serve what we have.
        let Some(leader) = self.inner.flights.try_lead(keys.entry()) else {
            return self.serve(call.policy, &due, count);
        };
        // Refreshed on a task of its own, which takes the lock: this caller
        // is served now, after one round trip, as a hit is.
        if call.detach {
            if count && !due.fallback {
                self.count_hit(call.policy, due.meta.negative, true, Answered::Backend);
            }
            return Plan::Load {
                under: Under::default().leading(leader),
                started,
                refresh: Refresh::Unlocked(due),
                standby: due.fallback.then(|| Standby::new(due.meta)),
            };
        }
        let under = match self.lock(keys, call.policy.refresh_lock(), call.policy).await {
            Lock::Taken(held, Locked { entry, tokens }) => {
                // Another caller may have finished a refresh between our read
                // and our lock. The decision to refresh was taken once, by the
                // read: this re-read only asks whether the entry was replaced.
                if self.replaced(&tokens.fetched(entry), &due, slot) {
                    leader.land(Landed::Stored);
                    held.release().await;
                    return self.serve(call.policy, &due, count);
                }
                Under::stamped(Some(tokens)).locked(held)
            }
            // Another process is refreshing it.
            Lock::Busy => return self.serve(call.policy, &due, count),
            Lock::Failed if due.fallback => return self.serve(call.policy, &due, count),
            // Past its fresh time and the backend failing: call through.
            Lock::Failed => Under::default(),
        };
        // Past its fresh time, and this caller waits for the load: a miss.
        if count && !due.fallback {
            self.count(call.policy, Outcome::Miss);
        }
        self.count_refresh(call.policy);
        Plan::Load {
            under: under.leading(leader),
            started,
            refresh: Refresh::Due,
            standby: due.fallback.then(|| Standby::new(due.meta)),
        }
    }

    /// A refresh planned without its lock ([`Refresh::Unlocked`]), on the
    /// task that runs it: takes the lock, as [`plan_refresh`](Self::plan_refresh)
    /// does. Whether to load: not if another process holds the lock or has
    /// replaced the value (its decoding is left in `slot`), nor if the
    /// backend fails.
    pub(super) async fn lock_refresh(
        &self,
        pending: &mut Pending,
        policy: &Policy,
        slot: &mut dyn Slot,
    ) -> bool {
        let Refresh::Unlocked(due) = pending.refresh else {
            return true;
        };
        let Lock::Taken(held, Locked { entry, tokens }) =
            self.lock(&pending.keys, policy.refresh_lock(), policy).await
        else {
            return false;
        };
        if self.replaced(&tokens.fetched(entry), &due, slot) {
            if let Some(leader) = &pending.under.leader {
                leader.land(Landed::Stored);
            }
            held.release().await;
            return false;
        }
        pending.under.stamp = Some(tokens);
        pending.under.lock = Some(held);
        pending.refresh = Refresh::Due;
        Counters::incr(&self.inner.counters.loads);
        self.count_refresh(policy);
        true
    }

    /// Answers a caller who does not refresh a [`Due`] entry with its value
    /// (in the slot), counting the hit that [`read`](Self::read) left to this point.
    pub(super) fn serve(&self, policy: &Policy, due: &Due, count: bool) -> Plan {
        if count && !due.fallback {
            // Past its fresh time: served while another caller refreshes it.
            self.count_hit(policy, due.meta.negative, true, Answered::Backend);
        }
        Plan::Answer
    }

    /// Waits for the flight `waiter` joined: for `at_most`, if given.
    pub(super) async fn wait_at_most(&self, waiter: Waiter, at_most: Option<Duration>) -> Option<Landed> {
        let _waiting = Counters::enter(&self.inner.counters.waiting);
        let _parked = batch::Waiting::enter();
        let landed = waiter.wait().instrument(tracing::debug_span!("aside.wait"));
        match at_most {
            Some(limit) => tokio::time::timeout(limit, landed).await.ok(),
            None => Some(landed.await),
        }
    }

    /// Tries to take the stampede lock of `keys`. The guard is armed before
    /// asking, so that an attempt cancelled or timed out after the backend
    /// took the lock is still undone.
    pub(super) async fn lock(&self, keys: &EntryKeys, ttl: Duration, policy: &Policy) -> Lock {
        self.released(keys.lock()).await;
        let token = fresh_token();
        let held = HeldLock::new(self.clone(), keys.lock().to_owned(), token);
        let window = self.inner.settings.invalidation_window;
        let keep = self.tags_kept(policy);
        let locked = self
            .inner
            .call("lock", |b| b.lock(keys, token, ttl, window, keep))
            .await;
        match self.inner.report(locked) {
            Some(Some(locked)) => Lock::Taken(held, locked),
            Some(None) => {
                held.disarm();
                Lock::Busy
            }
            None => Lock::Failed,
        }
    }

    /// Releases `held` in the background, so that the caller returns at once:
    /// a failed load's error, which need not be `Send`, is then never held
    /// across an `.await`. This cache's next attempt at the lock waits for
    /// the release (see [`released`](Self::released)), so that it finds the
    /// lock free as if the release had been awaited.
    pub(super) fn release_behind(&self, held: Option<HeldLock>) {
        let Some(held) = held else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // dropped: its TTL releases it
        };
        let (name, done) = (held.key().to_owned(), Arc::new(Notify::new()));
        self.inner.releasing().insert(name.clone(), done.clone());
        let cache = self.clone();
        runtime.spawn(async move {
            held.release().await;
            cache.inner.releasing().remove(&name);
            done.notify_waiters();
        });
    }

    /// Waits (a second at most: the release is one bounded backend call)
    /// until a release of the lock `name` started by
    /// [`release_behind`](Self::release_behind) is done.
    async fn released(&self, name: &str) {
        let Some(done) = self.inner.releasing().get(name).cloned() else {
            return;
        };
        // Registered before the check, so that a release finishing in
        // between still wakes it.
        let notified = done.notified();
        if self.inner.releasing().contains_key(name) {
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Releases a lock taken by this cache; a failure only leaves the lock
    /// to its TTL.
    pub(crate) async fn unlock(&self, key: &str, token: u64) {
        self.inner
            .report(self.inner.call("unlock", |b| b.unlock(key, token)).await);
    }
}

/// The outcome of asking for a lock.
pub(super) enum Lock {
    /// Taken, with what was read under it.
    Taken(HeldLock, Locked),
    /// Someone else holds it.
    Busy,
    /// The backend failed (the guard still undoes a lock it may have taken).
    Failed,
}

/// A lock held (or possibly held) in the backend. Released explicitly; if
/// dropped unreleased (the holder was cancelled or panicked, or the attempt to
/// take it timed out), released by a spawned task, or by its TTL when there
/// is no runtime to spawn on. Release is compare-and-delete on the token, so
/// releasing a lock that was never taken is harmless.
pub(crate) struct HeldLock {
    cache: Cache,
    key: String,
    token: u64,
    released: bool,
}

impl HeldLock {
    pub(crate) fn new(cache: Cache, key: String, token: u64) -> Self {
        HeldLock {
            cache,
            key,
            token,
            released: false,
        }
    }

    /// Releases the lock; if cancelled meanwhile, the drop releases it.
    pub(crate) async fn release(mut self) {
        self.cache.unlock(&self.key, self.token).await;
        self.released = true;
    }

    /// Forgets a lock that was not taken, or was released with a store.
    pub(crate) fn disarm(mut self) {
        self.released = true;
    }

    /// The owner's token.
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// The lock's name.
    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (cache, key, token) = (self.cache.clone(), std::mem::take(&mut self.key), self.token);
            runtime.spawn(async move { cache.unlock(&key, token).await });
        }
    }
}
