//! What one cached function asks of the cache.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::Codec;
use crate::fail_safe::FailSafe;
use crate::function::Function;
use crate::key::Key;
use crate::names::Names;
use crate::stampede::{Stampede, MAX_JITTER};

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
/// assert!(policy.tags().eq(["category:7"]));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    tags: Names,
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
    /// Values kept to stand in for a failed load, if at all.
    fail_safe: Option<FailSafe>,
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

    /// A policy that uses the cache's defaults for everything.
    pub const fn new() -> Self {
        Policy {
            ttl: None,
            negative_ttl: None,
            tags: Names::new(),
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
    pub fn tag(mut self, tag: impl AsRef<str>) -> Self {
        self.tags.push(tag.as_ref());
        self
    }

    /// Adds the tag that `write` writes: how `#[cached(tags = [...])]` adds
    /// its tags, each written into the policy's one buffer for them, the
    /// policy in place (not moved at each tag).
    #[doc(hidden)]
    #[inline]
    pub fn tag_built(&mut self, write: impl FnOnce(&mut Key)) -> &mut Self {
        self.tags.push_with(write);
        self
    }

    /// The entry's tags, in the order they were added.
    ///
    /// ```
    /// let policy = aside::Policy::new().tag("product:1").tag("brand:7");
    /// assert_eq!(policy.tags().collect::<Vec<_>>(), ["product:1", "brand:7"]);
    /// ```
    pub fn tags(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        self.tags.iter()
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

    /// Fail-safe: keeps each value past its fresh time to stand in for a
    /// load that fails (`#[cached(fail_safe = "1h")]`); see [`FailSafe`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use aside::{FailSafe, Policy};
    ///
    /// let policy = Policy::new()
    ///     .ttl(Duration::from_secs(60))
    ///     .fail_safe(FailSafe::keep(Duration::from_secs(3600)).soft_timeout(Duration::from_millis(100)));
    /// # let _ = policy;
    /// ```
    pub const fn fail_safe(mut self, fail_safe: FailSafe) -> Self {
        self.fail_safe = Some(fail_safe);
        self
    }

    /// Fail-safe, unless it keeps nothing or the entry slides (it has no
    /// fresh time to outlive).
    pub(crate) fn fail_safe_of(&self) -> Option<FailSafe> {
        self.fail_safe
            .filter(|f| !f.kept().is_zero() && self.touch(Duration::ZERO).is_none())
    }

    /// How long past its fresh time a value is kept for fail-safe (zero
    /// without it, and for sliding entries).
    pub(crate) fn fail_safe_for(&self) -> Duration {
        self.fail_safe_of().map_or(Duration::ZERO, |f| f.kept())
    }

    /// The soft timeout, if fail-safe keeps values for it to serve.
    pub(crate) fn soft_timeout_after(&self) -> Option<Duration> {
        self.fail_safe_of()?.soft_timeout_after()
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

    /// [`function`](Self::function), in place: how `#[cached]` names its
    /// function on the policy it built for a call.
    #[doc(hidden)]
    #[inline]
    pub fn set_function(&mut self, function: &'static Function) {
        self.function = Some(Named(function));
    }

    /// The name of the function set by [`function`](Self::function), if any.
    pub fn function_name(&self) -> Option<&'static str> {
        self.function.map(|named| named.0.name())
    }

    pub(crate) fn named(&self) -> Option<&'static Function> {
        self.function.map(|named| named.0)
    }

    /// Whether `value` is to be returned without being stored.
    pub(crate) fn skips(&self, value: &dyn Any) -> bool {
        match &self.unless {
            Some(unless) => (unless.0)(value),
            None => false,
        }
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
