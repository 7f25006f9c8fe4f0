//! Testing code that uses aside (the `testing` feature).
//!
//! - [`caching_off`]: every cached call on the test's thread runs its
//!   function, whichever cache it names (the global one, `cache =
//!   self.cache`, one given as an argument), including calls in tasks the
//!   test spawns on its runtime.
//! - [`isolated`]: every cache the test's thread names is stood in for by
//!   a fresh in-memory cache of the test's own, and what they do is
//!   recorded ([`Recorder`]) for the test to assert on.
//! - [`Recorder`]: what a cache did, per function and key
//!   ([`CacheBuilder::record`](crate::CacheBuilder::record)).
//! - [`Chaos`]: faults injected into a cache's backend, the in-memory one
//!   or Redis, by a seeded schedule, so that a test can see how a service
//!   behaves when its cache is slow, failing, hung or flapping without
//!   killing a process, and replay a failure with the same seed.

mod chaos;
mod isolate;
mod record;

use std::cell::Cell;
use std::marker::PhantomData;

pub use chaos::{Chaos, Fault};
pub(crate) use isolate::stand_in;
pub use isolate::{isolated, Isolated};
pub(crate) use record::{outcome, polled, polled_as, polling, Call};
pub use record::{Counts, Event, Named, Recorder};

thread_local! {
    /// How many [`CachingOff`] guards live on this thread.
    static OFF: Cell<u32> = const { Cell::new(0) };
}

/// Turns caching off on this thread while the guard lives: every cached
/// call runs its function and reads and writes nothing, whatever cache it
/// names. A `#[tokio::test]` runs on one thread (Tokio's current-thread
/// runtime), so the switch reaches the tasks the test spawns too, and
/// tests running in parallel, each on its own thread, do not see each
/// other's switch. On a multi-thread runtime
/// (`#[tokio::test(flavor = "multi_thread")]`), the runtime's worker
/// threads do not see it: build the code under test with
/// [`Cache::disabled`](crate::Cache::disabled) there.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
///
/// static QUERIES: AtomicU32 = AtomicU32::new(0);
///
/// #[aside::cached(key = "price:<id>")]
/// async fn price(id: u64) -> u32 {
///     QUERIES.fetch_add(1, SeqCst);
///     100
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let off = aside::testing::caching_off();
/// price(1).await;
/// tokio::spawn(price(1)).await.unwrap();
/// assert_eq!(QUERIES.load(SeqCst), 2, "every call ran its function");
/// drop(off);
/// price(1).await;
/// price(1).await;
/// assert_eq!(QUERIES.load(SeqCst), 3, "cached again");
/// # }
/// ```
pub fn caching_off() -> CachingOff {
    OFF.with(|off| off.set(off.get() + 1));
    CachingOff { thread: PhantomData }
}

/// The guard of [`caching_off`]: caching is back on this thread when the
/// last one is dropped. Not `Send`: it belongs to its thread.
#[derive(Debug)]
#[must_use = "caching is off only while the guard lives"]
pub struct CachingOff {
    thread: PhantomData<*const ()>,
}

impl Drop for CachingOff {
    fn drop(&mut self) {
        OFF.with(|off| off.set(off.get().saturating_sub(1)));
    }
}

/// Whether a [`caching_off`] guard lives on this thread.
pub(crate) fn switched_off() -> bool {
    OFF.with(|off| off.get() > 0)
}
