//! What the macros expand to, and nothing else: names the expansion uses by
//! path (`::aside::__private::...`), and the helpers only it calls. Not
//! public API: it may change in any release.

pub use crate::scope::{current, Current};

/// What `codec = "msgpack"` expands to.
#[cfg(feature = "msgpack")]
pub const MSGPACK: Codec = Codec::MessagePack;
/// What `codec = "msgpack"` expands to without aside's `msgpack`
/// feature: not a `Codec`, so that the error names the feature.
#[cfg(not(feature = "msgpack"))]
pub const MSGPACK: MessagePackNeedsTheMsgpackFeatureOfAside = MessagePackNeedsTheMsgpackFeatureOfAside;
/// See [`MSGPACK`].
#[cfg(not(feature = "msgpack"))]
pub struct MessagePackNeedsTheMsgpackFeatureOfAside;
pub use crate::key::Key;
pub use crate::timeout::hard_timeout_with;
pub use crate::{
    global, Cache, CachedEntry, Codec, FailSafe, FromTimeout, Function, KeyBuilder, Policy, Stampede,
};
pub use crate::{CanBeNegative, KnowsItsCache};
pub use core::convert::Infallible;
pub use core::time::Duration;

/// What a refresh in the background of a `&self` method clones `self` with.
pub use crate::OwnedReceiver;

/// What `#[invalidate]` runs after its body succeeded: `keys` and
/// `tags` in `cache`, each of `entries` (key, cache) in its own cache.
pub async fn invalidate_after_write(
    cache: Cache,
    mut keys: Vec<String>,
    tags: Vec<String>,
    entries: Vec<(String, Cache)>,
    function: &'static Function,
) {
    let mut elsewhere: Vec<(Cache, Vec<String>)> = Vec::new();
    for (key, its) in entries {
        if its.is(&cache) {
            keys.push(key);
        } else if let Some((_, keys)) = elsewhere.iter_mut().find(|(other, _)| other.is(&its)) {
            keys.push(key);
        } else {
            elsewhere.push((its, vec![key]));
        }
    }
    for (other, keys) in elsewhere {
        other.invalidate_after_write(keys, Vec::new(), function).await;
    }
    cache.invalidate_after_write(keys, tags, function).await;
}
