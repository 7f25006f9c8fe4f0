//! Faults injected into a backend's operations by a seeded schedule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::{Backend, BoxFuture, Bytes, EntryKeys, Fetched, LockWatch, Locked, Renewal, Tokens};
use crate::clock;
use crate::error::BackendError;

/// Faults for a cache's backend: latency, errors and hangs drawn by a
/// seeded random schedule, a backend that is down until told otherwise,
/// or one that flaps. Give it to [`CacheBuilder::chaos`](crate::CacheBuilder::chaos);
/// keep a clone to switch it or read what it injected.
///
/// Every backend operation draws once from the schedule, in the order the
/// cache makes them: the same seed and the same calls give the same
/// faults, so a failing test replays. A hang answers only when the cache's
/// operation timeout runs out, with a timeout, as a hung Redis does. Hits in the
/// in-process tier do not reach the backend, and see no fault.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aside::testing::Chaos;
/// use aside::{Cache, Policy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), aside::Error> {
/// let chaos = Chaos::seeded(7).errors(0.5).latency(0.2, Duration::from_millis(30));
/// let cache = Cache::builder().chaos(chaos.clone()).build().await?;
/// // Whatever the backend does, the call returns its loader's result.
/// for id in 0..20 {
///     let loaded = cache.get_or_load(&format!("p:{id}"), &Policy::new(), || async move { Ok::<_, ()>(id) }).await;
///     assert_eq!(loaded, Ok(id));
/// }
/// assert!(cache.stats().errors > 0);
/// chaos.go_down();
/// assert_eq!(cache.get_or_load("p:99", &Policy::new(), || async { Ok::<_, ()>(99) }).await, Ok(99));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Chaos {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    schedule: Schedule,
    rng: Mutex<StdRng>,
    down: AtomicBool,
    injected: Mutex<Vec<(&'static str, Fault)>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Schedule {
    errors: f64,
    hangs: f64,
    latency: f64,
    delay: Duration,
    /// Up for `.0`, then down for `.1`, from the first operation on, by
    /// Tokio's clock.
    flapping: Option<(Duration, Duration)>,
    started: Option<clock::Instant>,
}

/// A fault [`Chaos`] injected into one backend operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The operation answered after this delay.
    Latency(Duration),
    /// The operation failed at once.
    Error,
    /// The operation did not answer within the operation timeout.
    Hang,
}

impl Chaos {
    /// No fault yet, drawn from a schedule seeded with `seed`.
    ///
    /// # Examples
    ///
    /// ```
    /// let chaos = aside::testing::Chaos::seeded(42).errors(0.1);
    /// assert!(chaos.injected().is_empty());
    /// ```
    pub fn seeded(seed: u64) -> Chaos {
        Chaos {
            shared: Arc::new(Shared {
                schedule: Schedule::default(),
                rng: Mutex::new(StdRng::seed_from_u64(seed)),
                down: AtomicBool::new(false),
                injected: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Fails an operation with this probability.
    ///
    /// # Examples
    ///
    /// ```
    /// let always = aside::testing::Chaos::seeded(1).errors(1.0);
    /// # let _ = always;
    /// ```
    pub fn errors(self, probability: f64) -> Chaos {
        self.with(|s| s.errors = probability)
    }

    /// Leaves an operation unanswered with this probability.
    ///
    /// # Examples
    ///
    /// ```
    /// let sometimes = aside::testing::Chaos::seeded(1).hangs(0.05);
    /// # let _ = sometimes;
    /// ```
    pub fn hangs(self, probability: f64) -> Chaos {
        self.with(|s| s.hangs = probability)
    }

    /// Delays an operation by `delay` with this probability.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let slow = aside::testing::Chaos::seeded(1).latency(0.5, Duration::from_millis(40));
    /// # let _ = slow;
    /// ```
    pub fn latency(self, probability: f64, delay: Duration) -> Chaos {
        self.with(|s| {
            s.latency = probability;
            s.delay = delay;
        })
    }

    /// Up for `up`, then down (every operation fails) for `down`, and so
    /// on, from the first operation, by Tokio's clock (so a test on a
    /// paused clock flaps as it advances).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let flapping = aside::testing::Chaos::seeded(1).flapping(Duration::from_secs(2), Duration::from_secs(1));
    /// # let _ = flapping;
    /// ```
    pub fn flapping(self, up: Duration, down: Duration) -> Chaos {
        self.with(|s| s.flapping = Some((up, down)))
    }

    /// From now on, every operation fails, until [`come_back`](Self::come_back).
    ///
    /// # Examples
    ///
    /// ```
    /// let chaos = aside::testing::Chaos::seeded(1);
    /// chaos.go_down();
    /// chaos.come_back();
    /// ```
    pub fn go_down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
    }

    /// Ends [`go_down`](Self::go_down): operations follow the schedule again.
    ///
    /// # Examples
    ///
    /// See [`go_down`](Self::go_down).
    pub fn come_back(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// What was injected so far, in order: each operation's name (`fetch`,
    /// `tokens`, `store`, `lock`, ...) and its fault.
    ///
    /// # Examples
    ///
    /// ```
    /// let chaos = aside::testing::Chaos::seeded(1);
    /// assert_eq!(chaos.injected(), vec![]);
    /// ```
    pub fn injected(&self) -> Vec<(&'static str, Fault)> {
        self.shared
            .injected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A change of the schedule, before the chaos is shared.
    fn with(mut self, change: impl FnOnce(&mut Schedule)) -> Chaos {
        let shared = Arc::get_mut(&mut self.shared).expect("a schedule is set before the chaos is cloned");
        change(&mut shared.schedule);
        self
    }

    /// `backend`, with this chaos in front of it; a hang lasts `op_timeout`.
    pub(crate) fn wrap(mut self, backend: Arc<dyn Backend>, op_timeout: Duration) -> Arc<dyn Backend> {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.schedule.started = Some(clock::Instant::now());
        }
        Arc::new(ChaosBackend {
            inner: backend,
            chaos: self,
            op_timeout,
        })
    }

    /// The fault for the next operation, `op`, if any: one draw.
    fn draw(&self, op: &'static str) -> Option<Fault> {
        let s = &self.shared.schedule;
        let draw: f64 = self
            .shared
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random();
        // One draw per operation, down or not: the schedule stays the same.
        let down = self.shared.down.load(Ordering::SeqCst) || self.flapped_down();
        let fault = if down || draw < s.errors {
            Some(Fault::Error)
        } else if draw < s.errors + s.hangs {
            Some(Fault::Hang)
        } else if draw < s.errors + s.hangs + s.latency {
            Some(Fault::Latency(s.delay))
        } else {
            None
        };
        if let Some(fault) = fault {
            let mut injected = self
                .shared
                .injected
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            injected.push((op, fault));
        }
        fault
    }

    fn flapped_down(&self) -> bool {
        let s = &self.shared.schedule;
        let (Some((up, down)), Some(started)) = (s.flapping, s.started) else {
            return false;
        };
        let period = (up + down).as_nanos().max(1);
        let into = clock::Instant::now()
            .saturating_duration_since(started)
            .as_nanos()
            % period;
        into >= up.as_nanos()
    }
}

/// A backend with [`Chaos`] in front of it.
#[derive(Debug)]
struct ChaosBackend {
    inner: Arc<dyn Backend>,
    chaos: Chaos,
    /// How long a hang lasts: a backend bounds its own operations.
    op_timeout: Duration,
}

impl ChaosBackend {
    /// `op` (`answer`), with the schedule's fault for it.
    fn faulty<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        answer: impl FnOnce() -> BoxFuture<'a, Result<T, BackendError>>,
    ) -> BoxFuture<'a, Result<T, BackendError>> {
        match self.chaos.draw(op) {
            None => answer(),
            Some(Fault::Error) => Box::pin(std::future::ready(Err(BackendError::Injected(op)))),
            Some(Fault::Hang) => {
                let after = self.op_timeout;
                Box::pin(async move {
                    tokio::time::sleep(after).await;
                    Err(BackendError::Timeout(after))
                })
            }
            Some(Fault::Latency(delay)) => {
                let answer = answer();
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    answer.await
                })
            }
        }
    }
}

impl Backend for ChaosBackend {
    fn fetch<'a>(
        &'a self,
        keys: &'a EntryKeys,
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Fetched, BackendError>> {
        self.faulty("fetch", || self.inner.fetch(keys, touch))
    }

    fn fetch_many<'a>(
        &'a self,
        keys: &'a [EntryKeys],
        touch: Option<Duration>,
    ) -> BoxFuture<'a, Result<Vec<Option<Fetched>>, BackendError>> {
        self.faulty("fetch_many", || self.inner.fetch_many(keys, touch))
    }

    fn tokens<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
        keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Tokens, BackendError>> {
        self.faulty("tokens", || self.inner.tokens(keys, window, keep_tags))
    }

    fn store<'a>(
        &'a self,
        keys: &'a EntryKeys,
        entry: Bytes,
        ttl: Duration,
        guard: u64,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        self.faulty("store", || self.inner.store(keys, entry, ttl, guard, unlock))
    }

    fn renew<'a>(
        &'a self,
        keys: &'a EntryKeys,
        renewal: Renewal,
        unlock: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        self.faulty("renew", || self.inner.renew(keys, renewal, unlock))
    }

    fn invalidate<'a>(
        &'a self,
        keys: &'a EntryKeys,
        window: Duration,
    ) -> BoxFuture<'a, Result<u64, BackendError>> {
        self.faulty("invalidate", || self.inner.invalidate(keys, window))
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<(), BackendError>> {
        self.faulty("invalidate_tags", || self.inner.invalidate_tags(tags))
    }

    fn lock<'a>(
        &'a self,
        keys: &'a EntryKeys,
        token: u64,
        ttl: Duration,
        window: Duration,
        keep_tags: Duration,
    ) -> BoxFuture<'a, Result<Option<Locked>, BackendError>> {
        self.faulty("lock", || self.inner.lock(keys, token, ttl, window, keep_tags))
    }

    fn unlock<'a>(&'a self, key: &'a str, token: u64) -> BoxFuture<'a, Result<(), BackendError>> {
        self.faulty("unlock", || self.inner.unlock(key, token))
    }

    fn watch_lock<'a>(&'a self, keys: &'a EntryKeys) -> BoxFuture<'a, Option<LockWatch>> {
        self.inner.watch_lock(keys)
    }

    fn breaker(&self) -> Option<crate::breaker::BreakerState> {
        self.inner.breaker()
    }

    fn clear<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        self.faulty("clear", || self.inner.clear(namespace))
    }
}
