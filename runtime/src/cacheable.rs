//! What a cached value must be, as one trait, so that a type that is not
//! gets one error that says what to derive.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A value the cache can keep: `Serialize` and `Deserialize` (stored
/// serialized in the backend), `Clone + Send + Sync + 'static` (kept decoded
/// in the in-process tier, which hands out clones).
///
/// Every such type implements it; there is nothing to implement by hand.
/// It names the bound once, in [`Cache::get_or_load`](crate::Cache::get_or_load)
/// and in a generic function's where-clause.
///
/// # Examples
///
/// ```
/// use aside::{Cache, Cacheable, Policy};
///
/// // A generic loader: `T: Cacheable` is the whole bound.
/// async fn load<T: Cacheable + Default>(cache: &Cache, key: &str) -> T {
///     let loaded = cache.get_or_load(key, &Policy::new(), || async { Ok::<_, ()>(T::default()) }).await;
///     loaded.unwrap_or_default()
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// assert_eq!(load::<u32>(&Cache::memory(), "n").await, 0);
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be cached: a cached value must be `Serialize`, `Deserialize`, `Clone`, `Send`, `Sync` and `'static`",
    label = "not a value the cache can keep",
    note = "derive what is missing: `#[derive(Clone, serde::Serialize, serde::Deserialize)]`; the cache stores the value serialized and hands out clones",
    note = "a generic type needs the bound `aside::Cacheable`"
)]
pub trait Cacheable: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

// Not recommended: an unmet bound is reported as `Cacheable` (one error
// with the message above), not as each of serde's traits in turn.
#[diagnostic::do_not_recommend]
impl<T> Cacheable for T where T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}

/// A receiver `S` that a refresh in the background clones into a task of
/// its own. What the attribute checks `Self` against, through
/// `<() as OwnedReceiver<Self>>::cloner()`: a call of no argument on a type
/// that is not a reference, so that an unmet bound is reported as this
/// message, with no "consider borrowing" help.
#[diagnostic::on_unimplemented(
    message = "a refresh in the background (the default of `swr`, `early` and `soft_timeout`) clones `self` into a task of its own, so `{S}` must be `Clone + Send + Sync + 'static`",
    label = "`{S}` is not `Clone + Send + Sync + 'static`",
    note = "an `Arc`-backed handle is (`#[derive(Clone)]` on a struct of `Arc`s and pools); or, for `swr` and `early`, write `refresh = \"inline\"`, and the caller that wins a refresh waits for it"
)]
#[doc(hidden)]
pub trait OwnedReceiver<S> {
    /// What clones the receiver for the refresh to own.
    fn cloner() -> fn(&S) -> S;
}

#[diagnostic::do_not_recommend]
impl<S: Clone + Send + Sync + 'static> OwnedReceiver<S> for () {
    fn cloner() -> fn(&S) -> S {
        S::clone
    }
}
