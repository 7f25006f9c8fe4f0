//! Where the non-generic flows put a value of the caller's type.
//!
//! The flows (lookup, lock, refresh, waiting on a flight) are the same for
//! every cached type; only decoding a payload and keeping a value in the
//! in-process tier need the type. The caller lends a [`Slot`] for those,
//! so the flows are compiled once, not once per cached function.

use super::Cache;
use crate::cacheable::Cacheable;
use crate::codec::Codec;
use crate::codec::CodecError;
use crate::entry::Meta;
use crate::l1::{Kept, Local, Place, Watch};
use crate::policy::Policy;

/// A value of the caller's type, as far as the flows see it.
pub(super) trait Slot: Send {
    /// Decodes `payload` (written in `codec`) into the slot, replacing what
    /// it held; the decoder's message if it does not decode.
    fn decode(&mut self, codec: Codec, payload: &[u8]) -> Result<(), String>;

    /// Keeps the slot's value, stored with `meta` and `weight` bytes
    /// encoded, in the in-process tier under `watch`.
    fn keep(&self, cache: &Cache, watch: &Watch, weight: usize, meta: Meta, policy: &Policy);

    /// Takes the in-process tier's value at `key` into the slot, if it is
    /// live at `now_ms` and of the slot's type.
    fn take_local(&mut self, local: &Local, key: &str, now_ms: u64) -> Kept<()>;

    /// The name of the slot's type, for a message.
    fn type_name(&self) -> &'static str;

    /// The slot's value, encoded in `codec` into a buffer with room for
    /// `capacity` bytes at first; `None` if the slot is empty.
    fn encode(&self, codec: Codec, capacity: usize) -> Option<Result<Vec<u8>, CodecError>>;

    /// Whether `policy` says not to store the slot's value (`unless`).
    fn skipped_by(&self, policy: &Policy) -> bool;
}

/// [`Slot::decode`], the same for every type.
fn decode_in(place: &mut dyn Place, codec: Codec, payload: &[u8]) -> Result<(), String> {
    place.decode_in(codec, payload).map_err(|e| e.to_string())
}

/// The slot of a `T`.
pub(super) struct Typed<T>(pub(super) Option<T>);

impl<T: Cacheable> Slot for Typed<T> {
    fn decode(&mut self, codec: Codec, payload: &[u8]) -> Result<(), String> {
        decode_in(&mut self.0, codec, payload)
    }

    fn keep(&self, cache: &Cache, watch: &Watch, weight: usize, meta: Meta, policy: &Policy) {
        cache.keep_in_process(watch, &self.0, weight, meta, policy);
    }

    fn take_local(&mut self, local: &Local, key: &str, now_ms: u64) -> Kept<()> {
        local.take(key, now_ms, &mut self.0)
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn encode(&self, codec: Codec, capacity: usize) -> Option<Result<Vec<u8>, CodecError>> {
        self.0.as_ref().map(|value| codec.encode_sized(value, capacity))
    }

    fn skipped_by(&self, policy: &Policy) -> bool {
        match &self.0 {
            Some(value) => policy.skips(value),
            None => false,
        }
    }
}

impl<T> Typed<T> {
    /// The value a flow left here.
    pub(super) fn take(self) -> T {
        self.0
            .expect("a flow that answers with a value leaves it in the slot")
    }
}
