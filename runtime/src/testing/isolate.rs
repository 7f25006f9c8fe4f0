//! A test's own caches: each cache its thread names is stood in for by a
//! fresh in-memory one while the guard lives.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ops::Deref;
use std::rc::Rc;

use super::Recorder;
use crate::cache::WeakCache;
use crate::{Cache, CacheBuilder};

/// One [`isolated`] guard's caches: each stand-in, by the cache it stands in for.
struct Isolation {
    recorder: Recorder,
    stand_ins: RefCell<Vec<(WeakCache, Cache)>>,
}

thread_local! {
    /// The isolations of this thread's live guards, the innermost last.
    static ISOLATIONS: RefCell<Vec<Rc<Isolation>>> = const { RefCell::new(Vec::new()) };
}

/// Isolates a test's caches while the guard lives: every cache the code on
/// this thread names (the global one, `cache = self.cache` built elsewhere,
/// a `static`, one given as an argument) is stood in for by a fresh
/// in-memory cache of this guard's own, with the same namespace, default
/// TTL and codec, made the first time it is named. So a test starts empty
/// and leaves nothing behind, and tests running in parallel on their own
/// threads do not see each other's values, even through one shared
/// `static` cache. Every operation goes to the stand-in: lookups, writes,
/// invalidations, [`stats`](crate::Cache::stats). Write-behind logs stay
/// on their cache.
///
/// What the stand-ins do is recorded: the guard derefs to its
/// [`Recorder`], to assert on.
///
/// As with [`caching_off`](super::caching_off), the switch belongs to the
/// thread: a `#[tokio::test]` (Tokio's current-thread runtime, paused
/// clock or not) reaches the tasks it spawns; a multi-thread runtime's
/// workers do not see it.
///
/// # Examples
///
/// ```
/// use std::sync::LazyLock;
/// use aside::Cache;
///
/// // One cache shared by the whole process, as a service builds it.
/// static CACHE: LazyLock<Cache> = LazyLock::new(Cache::memory);
///
/// #[aside::cached(cache = &*CACHE, key = "price:<id>")]
/// async fn price(id: u64) -> u32 {
///     id as u32 * 10
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let test = aside::testing::isolated();
/// price(1).await;
/// price(1).await;
/// assert_eq!(test.loads(&aside::entry!(price(1))), 1);
/// test.assert_hit(&aside::entry!(price(1)));
/// assert_eq!(CACHE.stats().hits, 1, "the stand-in's, while the guard lives");
/// drop(test);
/// assert_eq!(CACHE.stats().hits, 0, "the shared cache saw nothing");
/// # }
/// ```
pub fn isolated() -> Isolated {
    let isolation = Rc::new(Isolation {
        recorder: Recorder::new(),
        stand_ins: RefCell::default(),
    });
    ISOLATIONS.with(|isolations| isolations.borrow_mut().push(isolation.clone()));
    Isolated {
        isolation,
        thread: PhantomData,
    }
}

/// The guard of [`isolated`]: its stand-ins go when it is dropped. Derefs
/// to the [`Recorder`] of what they did. Not `Send`: it belongs to its thread.
#[must_use = "the caches are isolated only while the guard lives"]
pub struct Isolated {
    isolation: Rc<Isolation>,
    thread: PhantomData<*const ()>,
}

impl Isolated {
    /// The record of what the stand-ins did (also what the guard derefs to).
    pub fn recorder(&self) -> &Recorder {
        &self.isolation.recorder
    }
}

impl Deref for Isolated {
    type Target = Recorder;

    fn deref(&self) -> &Recorder {
        self.recorder()
    }
}

impl std::fmt::Debug for Isolated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isolated")
            .field("recorder", self.recorder())
            .field("stand_ins", &self.isolation.stand_ins.borrow().len())
            .finish()
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        let _ = ISOLATIONS.try_with(|isolations| {
            isolations
                .borrow_mut()
                .retain(|isolation| !Rc::ptr_eq(isolation, &self.isolation))
        });
    }
}

/// The cache standing in for `cache` on this thread, if a guard lives
/// (none for a stand-in itself).
pub(crate) fn stand_in(cache: &Cache) -> Option<Cache> {
    ISOLATIONS
        .try_with(|isolations| {
            let isolation = isolations.borrow().last()?.clone();
            let mut stand_ins = isolation.stand_ins.borrow_mut();
            if let Some((_, found)) = stand_ins.iter().find(|(of, _)| of.is(cache)) {
                return Some(found.clone());
            }
            if stand_ins.iter().any(|(_, stand_in)| stand_in.is(cache)) {
                return None;
            }
            let made = CacheBuilder::stand_in(cache, &isolation.recorder);
            stand_ins.push((cache.downgrade(), made.clone()));
            Some(made)
        })
        .ok()
        .flatten()
}
