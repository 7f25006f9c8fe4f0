//! What one cached function asks of the cache.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::function::Function;
use crate::stampede::{Stampede, MAX_JITTER};
use crate::Codec;

/// Per-call caching options: what `#[cached(ttl = ..., negative_ttl = ..., tags = [...])]`
/// expands to, and what [`Cache::get_or_load`](crate::Cache::get_or_load) takes.
///
/// Unset options fall back to the cache's defaults: the TTL to
/// [`CacheBuilder::default_ttl`](crate::CacheBuilder::default_ttl), the
/// negative TTL to the smaller of [`Policy::DEFAULT_NEGATIVE_TTL`] and the TTL.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use aside::Policy;
///
/// let policy = Policy::new()
///     .ttl(Duration::from_secs(3600))
///     .negative_ttl(Duration::ZERO) // never cache a `None`
///     .tag("category:7");           // invalidate_tag("category:7") drops it
/// assert_eq!(policy.tags(), ["category:7"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    tags: Vec<String>,
    stampede: Stampede,
    jitter: f64,
    sliding: bool,
    codec: Option<Codec>,
    /// Off the in-process tier (so that `Default` leaves it on).
    l1_off: bool,
    /// How long the in-process tier keeps a value at most, if less than
    /// the tier's own limit and the value's TTL.
    l1_ttl: Option<Duration>,
    /// Values not to store.
    unless: Option<Unless>,
    /// The function whose calls these are, for its statistics, spans and metrics.
    function: Option<Named>,
    /// The TTL of an swr or early refresh's lock, if not the default.
    refresh_lock_ttl: Option<Duration>,
    /// How long past its fresh time a value is kept to stand in for a
    /// failed load, if at all.
    fail_safe: Option<Duration>,
    fail_safe_throttle: Option<Duration>,
    /// How long a caller waits for a load that a kept value stands in for.
    soft_timeout: Option<Duration>,
}

/// A [`Function`], compared by identity.
#[derive(Debug, Clone, Copy)]
struct Named(&'static Function);

impl PartialEq for Named {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

/// A predicate on loaded values: those it holds for are returned, not stored.
#[derive(Clone)]
struct Unless(Arc<Skip>);

/// Whether to skip storing a value, given as `Any` so that a `Policy`
/// needs no type parameter.
type Skip = dyn Fn(&dyn Any) -> bool + Send + Sync;

impl fmt::Debug for Unless {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Unless(..)")
    }
}

impl PartialEq for Unless {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Policy {
    /// How long a `None` is kept when the function's TTL does not say
    /// otherwise (or the TTL, if shorter): 60 s.
    pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(60);

    /// How long a value served by [fail-safe](Policy::fail_safe) stands in
    /// before the loader is tried again, when
    /// [`fail_safe_throttle`](Policy::fail_safe_throttle) does not say: 30 s.
    pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

    /// A policy that uses the cache's defaults for everything.
    pub const fn new() -> Self {
        Policy {
            ttl: None,
            negative_ttl: None,
            tags: Vec::new(),
            stampede: Stampede::Lock {
                lock_ttl: Stampede::DEFAULT_LOCK_TTL,
                lock_wait: Stampede::DEFAULT_LOCK_WAIT,
            },
            jitter: 0.0,
            sliding: false,
            codec: None,
            l1_off: false,
            l1_ttl: None,
            unless: None,
            function: None,
            refresh_lock_ttl: None,
            fail_safe: None,
            fail_safe_throttle: None,
            soft_timeout: None,
        }
    }

    /// How long a loaded value stays fresh. `Duration::ZERO` stores nothing.
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long a negative result (a value that serializes to `null`, such as
    /// `None`) is kept. `Duration::ZERO` turns negative caching off.
    pub const fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Adds a tag: [`Cache::invalidate_tag`](crate::Cache::invalidate_tag) with
    /// it turns the entry into a miss.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// The entry's tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The stampede protection (default: [`Stampede::Lock`] with the default
    /// lock TTL and wait).
    pub const fn stampede(mut self, stampede: Stampede) -> Self {
        self.stampede = stampede;
        self
    }

    /// How long the lock of an [`Swr`](Stampede::Swr) or [`Early`](Stampede::Early)
    /// refresh is held at most, if its holder dies before it stores
    /// (default [`Stampede::DEFAULT_LOCK_TTL`]). Until then, no other process refreshes
    /// the key: callers are served the current value. Shorter recovers sooner
    /// from a dead refresher; it should stay above the time a load takes,
    /// or a second process may refresh meanwhile.
    /// (`Stampede::Lock` carries its own `lock_ttl`.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aside::{Policy, Stampede};
    ///
    /// let policy = Policy::new()
    ///     .stampede(Stampede::Swr { stale: Duration::from_secs(600) })
    ///     .refresh_lock_ttl(Duration::from_secs(3));
    /// # let _ = policy;
    /// ```
    pub const fn refresh_lock_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_lock_ttl = Some(ttl);
        self
    }

    /// The refresh lock's TTL: see [`refresh_lock_ttl`](Self::refresh_lock_ttl).
    pub(crate) fn refresh_lock(&self) -> Duration {
        match self.refresh_lock_ttl {
            Some(ttl) => ttl,
            None => Stampede::DEFAULT_LOCK_TTL,
        }
    }

    /// Fail-safe: keeps each value `keep` past its fresh time, to stand in
    /// for a load that fails (`#[cached(fail_safe = "1h")]`).
    ///
    /// A lookup past the fresh time loads as usual (under the policy's
    /// stampede protection); if the loader returns an error (a
    /// `hard_timeout` is one), the caller gets the last good value instead,
    /// counted and traced as [`Outcome::Stale`](crate::Outcome::Stale). The
    /// value is then fresh again for the [throttle](Self::fail_safe_throttle)
    /// (default [`Policy::DEFAULT_FAIL_SAFE_THROTTLE`]), in every process sharing the
    /// backend: a failing database sees one attempt per key per throttle,
    /// not one per request. While the loader keeps failing, the value keeps
    /// standing in; an invalidation still drops it at once.
    ///
    /// Without a value to fall back on (never loaded, or invalidated), the
    /// error is returned. Not for sliding entries, which have no fresh time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let cache = Cache::memory();
    /// let policy = Policy::new()
    ///     .ttl(Duration::from_secs(60))
    ///     .fail_safe(Duration::from_secs(3600));
    /// let price = cache.get_or_load("price:7", &policy, || async { Ok::<u32, &str>(10) }).await;
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// // The database is down: the last good price stands in.
    /// let price = cache.get_or_load("price:7", &policy, || async { Err::<u32, _>("down") }).await;
    /// assert_eq!(price, Ok(10));
    /// assert_eq!(cache.stats().stale_hits, 1);
    /// # }
    /// ```
    pub const fn fail_safe(mut self, keep: Duration) -> Self {
        self.fail_safe = Some(keep);
        self
    }

    /// How long a value that stood in for a failed load is served as fresh
    /// before the loader is tried again (`#[cached(fail_safe_throttle = "10s")]`;
    /// default [`Policy::DEFAULT_FAIL_SAFE_THROTTLE`]). Only with
    /// [`fail_safe`](Self::fail_safe).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = aside::Policy::new()
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .fail_safe_throttle(Duration::from_secs(5));
    /// # let _ = policy;
    /// ```
    pub const fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = Some(throttle);
        self
    }

    /// Soft timeout: when a load runs while a value kept for
    /// [fail-safe](Self::fail_safe) stands by, the caller waits `after` at
    /// most, then gets that value (counted as stale); the load finishes on
    /// a task of its own and stores its value when it lands
    /// (`#[cached(soft_timeout = "100ms")]`). Callers waiting for that load,
    /// in this process or for its lock in another, get the kept value after
    /// `after` too.
    ///
    /// Only a loader that can run on a task of its own can outlast its
    /// caller: the caller that runs the load stops waiting for it only under
    /// [`Cache::get_or_load_detached`](crate::Cache::get_or_load_detached);
    /// under [`get_or_load`](crate::Cache::get_or_load) it waits for its
    /// load, and only the callers waiting for that one get the kept value
    /// after `after`. Without a kept
    /// value (the first load, or after an invalidation), the caller waits
    /// for the load; bound that with `hard_timeout`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = aside::Policy::new()
    ///     .ttl(Duration::from_secs(60))
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .soft_timeout(Duration::from_millis(100));
    /// # let _ = policy;
    /// ```
    pub const fn soft_timeout(mut self, after: Duration) -> Self {
        self.soft_timeout = Some(after);
        self
    }

    /// The soft timeout, if fail-safe keeps values for it to serve.
    pub(crate) fn soft_timeout_after(&self) -> Option<Duration> {
        self.soft_timeout.filter(|_| !self.fail_safe_for().is_zero())
    }

    /// How long past its fresh time a value is kept for fail-safe (zero
    /// without it, and for sliding entries).
    pub(crate) fn fail_safe_for(&self) -> Duration {
        match self.fail_safe {
            Some(keep) if self.touch(Duration::ZERO).is_none() => keep,
            _ => Duration::ZERO,
        }
    }

    /// The fail-safe throttle: see [`fail_safe_throttle`](Self::fail_safe_throttle).
    pub(crate) fn throttle(&self) -> Duration {
        self.fail_safe_throttle
            .unwrap_or(Policy::DEFAULT_FAIL_SAFE_THROTTLE)
    }

    /// Spreads each stored TTL uniformly by up to `± jitter` of itself
    /// (`0.1` = ±10%), so that keys written together do not expire together.
    /// At most 0.9; a NaN counts as 0.
    pub const fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, MAX_JITTER)
        };
        self
    }

    /// Sliding expiry: every hit pushes the entry's expiry out to a full TTL
    /// again. Only for [`Stampede::Lock`] and [`Stampede::None`] (the other
    /// modes work from a fixed expiry).
    pub const fn sliding(mut self, sliding: bool) -> Self {
        self.sliding = sliding;
        self
    }

    /// How values are serialized (default: the cache's codec, see
    /// [`CacheBuilder::codec`](crate::CacheBuilder::codec)).
    pub const fn codec(mut self, codec: Codec) -> Self {
        self.codec = Some(codec);
        self
    }

    /// Whether values of this policy use the in-process tier in front of
    /// Redis (see [`CacheBuilder::l1`](crate::CacheBuilder::l1)), when the
    /// cache has one: yes by default. Sliding entries never do. (The
    /// in-memory cache's tier is its only store: always used.)
    ///
    /// # Examples
    ///
    /// ```
    /// // Read on every call from Redis, never from process memory.
    /// let policy = aside::Policy::new().l1(false);
    /// # let _ = policy;
    /// ```
    pub const fn l1(mut self, on: bool) -> Self {
        self.l1_off = !on;
        self
    }

    /// Uses the cache's in-process tier, keeping a value there `ttl` at
    /// most (`#[cached(l1 = "30s")]`): for values that may be a little
    /// older in process than in the backend, even without a change pushed.
    /// (In the in-memory cache, whose tier is its only store, a shorter TTL.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let policy = aside::Policy::new().ttl(Duration::from_secs(3600)).l1_ttl(Duration::from_secs(30));
    /// # let _ = policy;
    /// ```
    pub const fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_off = false;
        self.l1_ttl = Some(ttl);
        self
    }

    /// Conditional caching: a loaded value for which `skip` holds is
    /// returned but not stored (`#[cached(unless = ...)]`). For an empty
    /// search result, a placeholder while data is being imported, a value
    /// that says "try again later".
    ///
    /// `T` is the cached type; a value of another type is stored.
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::{Cache, Policy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cache = Cache::memory();
    /// let policy = Policy::new().unless(|hits: &Vec<u64>| hits.is_empty());
    /// let search = || async { Ok::<_, ()>(Vec::<u64>::new()) };
    /// let _ = cache.get_or_load("search:lamp", &policy, search).await;
    /// let _ = cache.get_or_load("search:lamp", &policy, search).await;
    /// assert_eq!(cache.stats().loads, 2, "an empty result is not kept");
    /// # }
    /// ```
    pub fn unless<T: 'static>(mut self, skip: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        let skip = move |value: &dyn Any| value.downcast_ref::<T>().is_some_and(&skip);
        self.unless = Some(Unless(Arc::new(skip)));
        self
    }

    /// Names the function these calls are made for: they count into its
    /// [`stats`](Function::stats), and its name labels their spans and metrics.
    /// `#[cached]` sets it to the annotated function's.
    ///
    /// # Examples
    ///
    /// ```
    /// static PRICE: aside::Function = aside::Function::new("shop::price");
    /// let policy = aside::Policy::new().function(&PRICE);
    /// assert_eq!(policy.function_name(), Some("shop::price"));
    /// ```
    pub const fn function(mut self, function: &'static Function) -> Self {
        self.function = Some(Named(function));
        self
    }

    /// The name of the function set by [`function`](Self::function), if any.
    pub fn function_name(&self) -> Option<&'static str> {
        self.function.map(|named| named.0.name())
    }

    pub(crate) fn named(&self) -> Option<&'static Function> {
        self.function.map(|named| named.0)
    }

    /// Whether `value` is to be returned without being stored.
    pub(crate) fn skips<T: 'static>(&self, value: &T) -> bool {
        self.unless.as_ref().is_some_and(|unless| (unless.0)(value))
    }

    pub(crate) fn l1_on(&self) -> bool {
        !self.l1_off
    }

    /// Whether the policy asks for a time in the in-process tier of its
    /// own (`l1 = "30s"`).
    pub(crate) fn l1_ttl_set(&self) -> bool {
        self.l1_ttl.is_some()
    }

    /// The longest the in-process tier keeps a value of this policy.
    pub(crate) fn l1_cap(&self, kept: Duration) -> Duration {
        self.l1_ttl.map_or(kept, |cap| cap.min(kept))
    }

    /// The codec to write with, given the cache's.
    pub(crate) fn codec_or(&self, default: Codec) -> Codec {
        self.codec.unwrap_or(default)
    }

    pub(crate) fn stampede_mode(&self) -> Stampede {
        self.stampede
    }

    pub(crate) fn jitter_share(&self) -> f64 {
        self.jitter
    }

    /// For a hit: how far to push the expiry out, if sliding.
    pub(crate) fn touch(&self, default_ttl: Duration) -> Option<Duration> {
        let sliding = self.sliding && matches!(self.stampede, Stampede::Lock { .. } | Stampede::None);
        sliding.then(|| self.ttl.unwrap_or(default_ttl))
    }

    /// The TTL to store a value under, given the cache's default TTL.
    pub(crate) fn effective_ttl(&self, default_ttl: Duration, negative: bool) -> Duration {
        let ttl = self.ttl.unwrap_or(default_ttl);
        if negative {
            self.negative_ttl.unwrap_or(ttl.min(Policy::DEFAULT_NEGATIVE_TTL))
        } else {
            ttl
        }
    }
}

/// A value `negative_ttl` applies to: one that can be stored as `null`
/// (see [`Policy::negative_ttl`]). What the attribute checks the option
/// against.
#[diagnostic::on_unimplemented(
    message = "`negative_ttl` applies to a function whose value can be `None`, and `{Self}` never is",
    label = "a `{Self}` is never a negative result",
    note = "a negative result is a value stored as `null`, such as `None` of an `Option`; remove `negative_ttl`, or return an `Option`"
)]
#[doc(hidden)]
pub trait CanBeNegative {
    /// `ttl`, as the function's negative TTL.
    fn negative_ttl(ttl: Duration) -> Duration {
        ttl
    }
}

#[diagnostic::do_not_recommend]
impl<T> CanBeNegative for Option<T> {}
#[diagnostic::do_not_recommend]
impl CanBeNegative for () {}
#[diagnostic::do_not_recommend]
impl CanBeNegative for serde_json::Value {}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn negative_ttl_defaults_to_smaller_of_minute_and_ttl() {
        assert_eq!(
            Policy::new().ttl(HOUR).effective_ttl(HOUR, true),
            Policy::DEFAULT_NEGATIVE_TTL
        );
        let short = Duration::from_secs(5);
        assert_eq!(Policy::new().ttl(short).effective_ttl(HOUR, true), short);
        assert_eq!(Policy::new().effective_ttl(short, true), short);
    }

    #[test]
    fn explicit_values_win() {
        let p = Policy::new().ttl(HOUR).negative_ttl(Duration::ZERO);
        assert_eq!(p.effective_ttl(Duration::from_secs(1), false), HOUR);
        assert_eq!(p.effective_ttl(Duration::from_secs(1), true), Duration::ZERO);
    }
}
