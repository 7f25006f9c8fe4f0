//! The envelope every backend stores: a small binary header, then the
//! payload in the entry's [`Codec`].
//!
//! ```text
//! offset  size  field
//! 0       2     magic b"as"
//! 2       1     format version (FORMAT_VERSION)
//! 3       1     codec (0 JSON, 1 MessagePack; see Codec), plus 0x80 if
//!               the payload is LZ4-compressed (a block, its size first as
//!               u32 LE; see CacheBuilder::compress_above)
//! 4       8     stored_at, ms since the Unix epoch (u64 LE)
//! 12      8     fresh_until, ms since the Unix epoch (u64 LE)
//! 20      4     load_time, µs the loader took (u32 LE, saturating)
//! 24      2     n, number of tag versions (u16 LE)
//! 26      8*n   tag versions the entry was loaded under (u64 LE each)
//! 26+8n   ...   payload: the value in that codec (its null = negative entry)
//! ```
//!
//! The header is binary so that metadata (freshness, load time, tag versions)
//! can be read without parsing the payload, and so that a reader can tell an
//! entry written by another format version from a corrupt one. Anything that
//! does not decode is a [`DecodeError`]: the caller treats it as a miss.

use std::time::Duration;

use std::borrow::Cow;

use bytes::Bytes;

use crate::clock::duration_ms;
use crate::codec::Codec;

const MAGIC: &[u8; 2] = b"as";
/// Bumped whenever the layout above changes; entries of another version are misses.
pub(crate) const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 26;
/// Where `stored_at` and `fresh_until` sit, which a renewal rewrites.
pub(crate) const TIMES: std::ops::Range<usize> = 4..20;

/// A decoded envelope, borrowing its payload from the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub(crate) stored_at_ms: u64,
    pub(crate) fresh_until_ms: u64,
    pub(crate) load_time: Duration,
    /// The tags' tokens, 8 bytes each: read with [`tag_versions`](Self::tag_versions)
    /// (a hit compares them where they lie, collecting nothing).
    tag_bytes: &'a [u8],
    pub(crate) codec: Codec,
    /// Whether `payload` is compressed: read it with [`value`](Self::value).
    compressed: bool,
    pub(crate) payload: &'a [u8],
}

/// The codec byte's flag for an LZ4-compressed payload.
const COMPRESSED: u8 = 0x80;
/// Payloads shorter than this are never compressed: too small to gain, and
/// a negative entry (`null`) stays readable from its bytes.
pub(crate) const MIN_COMPRESSED: usize = 64;

/// Why stored bytes are not a usable entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("entry is truncated")]
    Truncated,
    #[error("entry does not start with the aside magic bytes")]
    BadMagic,
    #[error("entry has format version {0}, this build reads version {FORMAT_VERSION}")]
    Version(u8),
    #[error("entry is in codec {0}, which this build does not know")]
    Codec(u8),
    #[error("entry's value is {size} bytes uncompressed, more than the {limit} allowed")]
    TooLarge { size: usize, limit: usize },
    #[error("entry's compressed value does not decompress")]
    Compression,
}

impl<'a> Entry<'a> {
    pub(crate) fn is_negative(&self) -> bool {
        !self.compressed && self.codec.is_null(self.payload)
    }

    /// The value's bytes in its codec: the payload, decompressed if it was
    /// compressed, and then only if it is at most `limit` bytes (a corrupt
    /// or hostile entry cannot make a reader allocate more).
    pub(crate) fn value(&self, limit: usize) -> Result<Cow<'a, [u8]>, DecodeError> {
        if !self.compressed {
            return Ok(Cow::Borrowed(self.payload));
        }
        let (size, block) = self
            .payload
            .split_first_chunk::<4>()
            .ok_or(DecodeError::Truncated)?;
        let size = u32::from_le_bytes(*size) as usize;
        if size > limit {
            return Err(DecodeError::TooLarge { size, limit });
        }
        let value = lz4_flex::block::decompress(block, size).map_err(|_| DecodeError::Compression)?;
        Ok(Cow::Owned(value))
    }

    /// What the in-process tier keeps beside the decoded value.
    pub(crate) fn meta(&self) -> Meta {
        Meta {
            stored_at_ms: self.stored_at_ms,
            fresh_until_ms: self.fresh_until_ms,
            load_time: self.load_time,
            negative: self.is_negative(),
        }
    }

    /// The token of each tag when the entry was stored, in the order of its tags.
    pub(crate) fn tag_versions(&self) -> impl ExactSizeIterator<Item = u64> + Clone + 'a {
        self.tag_bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
    }

    /// Whether the entry is still fresh at `now_ms`.
    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }

    /// Encodes an entry that is fresh for `ttl` from `now_ms`, its payload in
    /// `codec`; `None` if it carries more tags than the format can hold (65,535).
    pub(crate) fn encode(
        now_ms: u64,
        ttl: Duration,
        load_time: Duration,
        tag_versions: &[u64],
        (codec, payload): (Codec, &[u8]),
        compress_above: Option<usize>,
    ) -> Option<Bytes> {
        let tags = u16::try_from(tag_versions.len()).ok()?;
        // Compressed above the threshold, if that makes it smaller.
        let compressed = compress_above
            .filter(|&above| payload.len() > above.max(MIN_COMPRESSED - 1))
            .map(|_| lz4_flex::block::compress_prepend_size(payload))
            .filter(|compressed| compressed.len() < payload.len());
        let (flag, payload) = match &compressed {
            Some(compressed) => (COMPRESSED, &compressed[..]),
            None => (0, payload),
        };
        let mut buf = Vec::with_capacity(HEADER_LEN + 8 * tag_versions.len() + payload.len());
        buf.extend_from_slice(MAGIC);
        buf.push(FORMAT_VERSION);
        buf.push(codec.id() | flag);
        buf.extend_from_slice(&now_ms.to_le_bytes());
        buf.extend_from_slice(&now_ms.saturating_add(duration_ms(ttl)).to_le_bytes());
        let load_us = u32::try_from(load_time.as_micros()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&load_us.to_le_bytes());
        buf.extend_from_slice(&tags.to_le_bytes());
        for v in tag_versions {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(payload);
        Some(Bytes::from(buf))
    }

    /// `stored_at` and `fresh_until` as the header holds them, for a
    /// renewal that compares and rewrites them in place.
    pub(crate) fn times(stored_at_ms: u64, fresh_until_ms: u64) -> [u8; 16] {
        let mut times = [0; 16];
        times[..8].copy_from_slice(&stored_at_ms.to_le_bytes());
        times[8..].copy_from_slice(&fresh_until_ms.to_le_bytes());
        times
    }

    /// Decodes stored bytes. Never panics, whatever the input.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let header = bytes.get(..HEADER_LEN).ok_or(DecodeError::Truncated)?;
        if &header[..2] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if header[2] != FORMAT_VERSION {
            return Err(DecodeError::Version(header[2]));
        }
        let compressed = header[3] & COMPRESSED != 0;
        let id = header[3] & !COMPRESSED;
        let codec = Codec::from_id(id).ok_or(DecodeError::Codec(id))?;
        let u64_at = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let load_us = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
        let tags = usize::from(u16::from_le_bytes(header[24..26].try_into().expect("2 bytes")));
        let payload_at = HEADER_LEN + 8 * tags;
        let tag_bytes = bytes.get(HEADER_LEN..payload_at).ok_or(DecodeError::Truncated)?;
        Ok(Entry {
            stored_at_ms: u64_at(4),
            fresh_until_ms: u64_at(12),
            load_time: Duration::from_micros(u64::from(load_us)),
            tag_bytes,
            codec,
            compressed,
            payload: &bytes[payload_at..],
        })
    }
}

/// What an entry says besides its value: what a read of either tier
/// learns, and what the in-process tier keeps beside a value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Meta {
    pub(crate) stored_at_ms: u64,
    pub(crate) fresh_until_ms: u64,
    pub(crate) load_time: Duration,
    pub(crate) negative: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let bytes = Entry::encode(
            1_000,
            Duration::from_secs(2),
            Duration::from_micros(1500),
            &[7, 9],
            (Codec::Json, b"{\"a\":1}"),
            None,
        )
        .unwrap();
        let entry = Entry::decode(&bytes).unwrap();
        assert_eq!(entry.stored_at_ms, 1_000);
        assert_eq!(entry.fresh_until_ms, 3_000);
        assert_eq!(entry.load_time, Duration::from_micros(1500));
        assert_eq!(entry.tag_versions().collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!(entry.payload, b"{\"a\":1}");
        assert_eq!(entry.codec, Codec::Json);
        assert!(entry.is_fresh(2_999));
        assert!(!entry.is_fresh(3_000));
        assert!(!entry.is_negative());
    }

    #[test]
    fn payloads_above_the_threshold_are_compressed_and_read_back() {
        let large =
            br#"{"name":"lamp","tags":["a","a","a","a","a","a","a","a","a","a","a","a","a","a"]}"#.repeat(20);
        for (threshold, compressed) in [(None, false), (Some(100), true), (Some(large.len()), false)] {
            let bytes = Entry::encode(
                0,
                Duration::from_secs(1),
                Duration::ZERO,
                &[],
                (Codec::Json, &large),
                threshold,
            )
            .unwrap();
            let entry = Entry::decode(&bytes).unwrap();
            assert_eq!(entry.compressed, compressed, "{threshold:?}");
            assert_eq!(bytes.len() < large.len(), compressed);
            assert_eq!(&*entry.value(large.len()).unwrap(), &large[..]);
            assert!(!entry.is_negative());
        }
        // A reader with a lower limit refuses to inflate it (a hostile
        // entry may claim any size).
        let bytes = Entry::encode(
            0,
            Duration::from_secs(1),
            Duration::ZERO,
            &[],
            (Codec::Json, &large),
            Some(0),
        )
        .unwrap();
        let entry = Entry::decode(&bytes).unwrap();
        assert!(matches!(entry.value(100), Err(DecodeError::TooLarge { .. })));
        // A small payload, `null` among them, is never compressed.
        let bytes = Entry::encode(
            0,
            Duration::from_secs(1),
            Duration::ZERO,
            &[],
            (Codec::Json, b"null"),
            Some(0),
        )
        .unwrap();
        assert!(Entry::decode(&bytes).unwrap().is_negative());
    }

    #[test]
    fn null_payload_is_negative() {
        let bytes = Entry::encode(
            0,
            Duration::from_secs(1),
            Duration::ZERO,
            &[],
            (Codec::Json, b"null"),
            None,
        )
        .unwrap();
        assert!(Entry::decode(&bytes).unwrap().is_negative());
    }

    #[test]
    fn too_many_tags_is_not_encodable() {
        let tags = vec![1u64; usize::from(u16::MAX) + 1];
        assert!(Entry::encode(
            0,
            Duration::from_secs(1),
            Duration::ZERO,
            &tags,
            (Codec::Json, b"1"),
            None,
        )
        .is_none());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(Entry::decode(b""), Err(DecodeError::Truncated));
        assert_eq!(Entry::decode(&[0u8; 40]), Err(DecodeError::BadMagic));
        let with_byte = |at: usize, byte: u8| {
            let mut bytes = Entry::encode(
                0,
                Duration::from_secs(1),
                Duration::ZERO,
                &[],
                (Codec::Json, b"1"),
                None,
            )
            .unwrap()
            .to_vec();
            bytes[at] = byte;
            bytes
        };
        assert_eq!(Entry::decode(&with_byte(2, 0)), Err(DecodeError::Version(0)));
        assert_eq!(Entry::decode(&with_byte(3, 9)), Err(DecodeError::Codec(9)));
        // A header that claims more tag versions than the bytes hold.
        assert_eq!(Entry::decode(&with_byte(24, 200)), Err(DecodeError::Truncated));
        // Every prefix of a valid entry either decodes or is an error.
        let full = Entry::encode(
            5,
            Duration::from_secs(1),
            Duration::ZERO,
            &[1, 2, 3],
            (Codec::Json, b"[1,2]"),
            None,
        )
        .unwrap();
        for end in 0..full.len() {
            let _ = Entry::decode(&full[..end]);
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn valid() -> impl Strategy<Value = Vec<u8>> {
            (
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                proptest::collection::vec(any::<u64>(), 0..8),
                proptest::collection::vec(any::<u8>(), 0..64),
            )
                .prop_map(|(now, ttl, load, tags, payload)| {
                    Entry::encode(
                        now,
                        Duration::from_millis(ttl),
                        Duration::from_micros(load.into()),
                        &tags,
                        (Codec::Json, &payload),
                        None,
                    )
                    .unwrap()
                    .to_vec()
                })
        }

        proptest! {
            /// Bytes that pass the magic and version checks (random bytes
            /// almost never do), with a small tag count and anything after.
            #[test]
            fn any_bytes_after_a_header_decode_or_fail_without_panicking(
                times in proptest::collection::vec(any::<u8>(), 20),
                tags in 0u16..4,
                // The codecs of this build: JSON, and MessagePack with its feature.
                codec in 0u8..(if cfg!(feature = "msgpack") { 2 } else { 1 }),
                rest in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let mut bytes = [&MAGIC[..], &[FORMAT_VERSION, codec]].concat();
                bytes.extend_from_slice(&times);
                bytes.extend_from_slice(&tags.to_le_bytes());
                bytes.extend_from_slice(&rest);
                match Entry::decode(&bytes) {
                    Ok(entry) => {
                        prop_assert_eq!(entry.tag_versions().len(), usize::from(tags));
                        prop_assert_eq!(HEADER_LEN + 8 * entry.tag_versions().len() + entry.payload.len(), bytes.len());
                    }
                    Err(error) => prop_assert_eq!(error, DecodeError::Truncated),
                }
            }

            #[test]
            fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                if let Ok(entry) = Entry::decode(&bytes) {
                    let _ = entry.value(1 << 20);
                }
            }

            #[test]
            fn damaged_compressed_values_fail_without_panicking(
                value in proptest::collection::vec(any::<u8>(), 64..512),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let bytes = Entry::encode(0, Duration::from_secs(1), Duration::ZERO, &[], (Codec::Json, &value), Some(0)).unwrap();
                let mut damaged = bytes.to_vec();
                let at = at.index(damaged.len());
                damaged[at] = byte;
                if let Ok(entry) = Entry::decode(&damaged) {
                    let _ = entry.value(1 << 20);
                }
            }

            #[test]
            fn damaged_entries_decode_or_fail_without_panicking(
                entry in valid(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
                keep in any::<prop::sample::Index>(),
            ) {
                let mut damaged = entry.clone();
                damaged[at.index(entry.len())] = byte;
                damaged.truncate(keep.index(entry.len() + 1));
                if let Ok(decoded) = Entry::decode(&damaged) {
                    // Whatever decodes, its payload is still read in its
                    // codec into the caller's type, which fails rather than panics.
                    let _ = decoded.codec.decode::<Vec<u32>>(decoded.payload);
                }
            }

            #[test]
            fn encoded_entries_round_trip(
                now in 0u64..1 << 50,
                ttl_ms in 0u64..1 << 40,
                tags in proptest::collection::vec(any::<u64>(), 0..8),
                payload in proptest::collection::vec(any::<u8>(), 0..64),
            ) {
                let bytes = Entry::encode(now, Duration::from_millis(ttl_ms), Duration::ZERO, &tags, (Codec::Json, &payload), None).unwrap();
                let entry = Entry::decode(&bytes).unwrap();
                prop_assert_eq!(entry.stored_at_ms, now);
                prop_assert_eq!(entry.fresh_until_ms, now + ttl_ms);
                prop_assert_eq!(entry.tag_versions().collect::<Vec<_>>(), tags);
                prop_assert_eq!(entry.payload, &payload[..]);
            }
        }
    }
}
