//! How values become bytes: [`Codec`].

use serde::de::DeserializeOwned;
use serde::Serialize;

/// How cached values are serialized. The codec is recorded in each entry, so
/// a reader decodes an entry by the codec that wrote it, whichever its own
/// is: changing the codec of a function or a cache needs no flush, and never
/// reads one format as the other.
///
/// | codec | for |
/// |---|---|
/// | [`Codec::Json`] (default) | readable in `redis-cli`; any serde type |
/// | `Codec::MessagePack` (the `msgpack` feature) | smaller entries, faster decoding (see "Codecs" in [`guide::semantics`](crate::guide::semantics) for figures); structs are written with their field names, so adding or reordering fields behaves as with JSON |
///
/// # Examples
///
/// ```
/// use aside::{Codec, Policy};
///
/// let policy = Policy::new().codec(Codec::Json);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Codec {
    /// serde_json.
    #[default]
    Json,
    /// MessagePack through rmp-serde, structs as maps. With the `msgpack`
    /// feature.
    #[cfg(feature = "msgpack")]
    MessagePack,
}

/// Why a value does not encode or decode.
pub(crate) type CodecError = Box<dyn std::error::Error + Send + Sync>;

impl Codec {
    /// The codec's number in an entry's header.
    pub(crate) fn id(self) -> u8 {
        match self {
            Codec::Json => 0,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => 1,
        }
    }

    /// The codec numbered `id` in an entry's header, if this build knows it.
    pub(crate) fn from_id(id: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::Json),
            #[cfg(feature = "msgpack")]
            1 => Some(Codec::MessagePack),
            _ => None,
        }
    }

    /// The room a value is encoded into at first when nothing says how
    /// long it will be: what `serde_json::to_vec` starts with.
    pub(crate) const FIRST_ROOM: usize = 128;

    pub(crate) fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        self.encode_sized(value, Self::FIRST_ROOM)
    }

    /// [`encode`](Self::encode) into a buffer with room for `capacity`
    /// bytes at first: a value about that long is written with one
    /// allocation, where a buffer grown from small takes several.
    pub(crate) fn encode_sized<T: Serialize + ?Sized>(
        self,
        value: &T,
        capacity: usize,
    ) -> Result<Vec<u8>, CodecError> {
        let mut buf = Vec::with_capacity(capacity);
        match self {
            Codec::Json => serde_json::to_writer(&mut buf, value)?,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => rmp_serde::encode::write_named(&mut buf, value)?,
        }
        Ok(buf)
    }

    pub(crate) fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(match self {
            Codec::Json => serde_json::from_slice(bytes)?,
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => rmp_serde::from_slice(bytes)?,
        })
    }

    /// Whether `payload` is this codec's `null`: a negative entry (a `None`).
    pub(crate) fn is_null(self, payload: &[u8]) -> bool {
        match self {
            Codec::Json => payload == b"null",
            #[cfg(feature = "msgpack")]
            Codec::MessagePack => payload == [0xc0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Product {
        id: u64,
        name: String,
        tags: Vec<String>,
        price: Option<f64>,
    }

    /// The codecs of this build.
    const CODECS: &[Codec] = &[
        Codec::Json,
        #[cfg(feature = "msgpack")]
        Codec::MessagePack,
    ];

    #[test]
    fn round_trips_and_knows_its_null() {
        let product = Product {
            id: 7,
            name: "lamp".into(),
            tags: vec!["a".into()],
            price: None,
        };
        for codec in CODECS {
            let bytes = codec.encode(&product).unwrap();
            assert_eq!(codec.decode::<Product>(&bytes).unwrap(), product, "{codec:?}");
            assert!(
                codec.is_null(&codec.encode(&None::<Product>).unwrap()),
                "{codec:?}"
            );
            assert!(!codec.is_null(&bytes));
            assert_eq!(Codec::from_id(codec.id()), Some(*codec));
        }
        assert_eq!(Codec::from_id(200), None);
    }

    #[test]
    fn a_value_encodes_the_same_whatever_room_is_made_for_it() {
        let product = Product {
            id: 7,
            name: "lamp".into(),
            tags: vec!["a".into(); 40],
            price: Some(1.5),
        };
        for codec in CODECS {
            let bytes = codec.encode(&product).unwrap();
            for capacity in [0, 1, bytes.len(), 1 << 16] {
                let sized = codec.encode_sized(&product, capacity).unwrap();
                assert_eq!(sized, bytes, "{codec:?}, {capacity}");
                // Room made for exactly its length is all it takes.
                if capacity == bytes.len() {
                    assert_eq!(sized.capacity(), bytes.len(), "{codec:?}");
                }
            }
        }
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn message_pack_keeps_field_names() {
        #[derive(serde::Deserialize)]
        struct Older {
            name: String,
        }
        let bytes = Codec::MessagePack
            .encode(&Product {
                id: 1,
                name: "lamp".into(),
                tags: vec![],
                price: Some(2.5),
            })
            .unwrap();
        // A reader whose type lost fields still finds the ones it has.
        assert_eq!(Codec::MessagePack.decode::<Older>(&bytes).unwrap().name, "lamp");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in CODECS {
            for bytes in [&b""[..], b"\xff\xff", b"{", b"\x93\x01"] {
                assert!(codec.decode::<Product>(bytes).is_err(), "{codec:?} {bytes:?}");
            }
        }
    }
}
