//! Building cache keys from templates such as `"product:<id>"`.

use std::borrow::Cow;
use std::fmt::{self, Display, Write};
use std::ops::Deref;

use sha2::{Digest, Sha256};

/// The longest key (or tag) stored as it is, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 250;
/// Marks a shortened key. A key that contains it is shortened whatever its
/// length, so a key stored as it is never equals a shortened one.
const DIGEST_MARK: &str = "#sha256=";
/// How much of a long key is kept in front of its digest, for people reading
/// the keys in `redis-cli`.
const KEPT_PREFIX: usize = 64;

/// Builds a cache key from literal text and argument values, so that distinct
/// argument values never produce the same key.
///
/// Each value is formatted with [`Display`] and escaped: `\` becomes `\\` and
/// `:` becomes `\:`. Literal text is written as it is, and should not contain
/// `\` (templates may not). As long as consecutive
/// values are separated by literal text containing `:` (which `#[cached]`
/// enforces for its templates), a key can be split back into its values in
/// only one way, so two different argument tuples can never share a key.
///
/// `#[cached(key = "...")]` writes the same text (into a buffer of the
/// call's own, without an allocation for a key of up to 64 bytes); use it to
/// build the same key by hand, for example to
/// [`invalidate`](crate::Cache::invalidate) it.
///
/// # Examples
///
/// ```
/// use aside::KeyBuilder;
///
/// let key = KeyBuilder::new("user:").arg(&"a:b").lit(":").arg(&42).finish();
/// assert_eq!(key, r"user:a\:b:42");
/// ```
#[derive(Debug, Clone, Default)]
pub struct KeyBuilder {
    buf: Key,
}

impl KeyBuilder {
    /// Starts a key with literal text.
    #[inline]
    pub fn new(prefix: &str) -> Self {
        let mut buf = Key::default();
        buf.lit(prefix);
        KeyBuilder { buf }
    }

    /// Appends literal text, unescaped.
    #[inline]
    pub fn lit(mut self, text: &str) -> Self {
        self.buf.lit(text);
        self
    }

    /// Appends a value's [`Display`] output, escaped.
    pub fn arg<T: Display + ?Sized>(mut self, value: &T) -> Self {
        self.buf.arg(value);
        self
    }

    /// Appends an integer: the text [`arg`](Self::arg) writes for it (an
    /// integer has nothing to escape), without going through [`Display`].
    /// `#[cached]` calls it for arguments declared as integers.
    ///
    /// # Examples
    ///
    /// ```
    /// use aside::KeyBuilder;
    ///
    /// let fast = KeyBuilder::new("product:").int(-42i64).finish();
    /// assert_eq!(fast, KeyBuilder::new("product:").arg(&-42i64).finish());
    /// ```
    pub fn int<T: itoa::Integer>(mut self, value: T) -> Self {
        self.buf.int(value);
        self
    }

    /// The finished key.
    pub fn finish(self) -> String {
        self.buf.into()
    }
}

/// A key as `#[cached]` builds it for one call (`key.lit(..).int(..)`,
/// as a [`KeyBuilder`] would): kept inline, without an
/// allocation, up to [`Key::INLINE`] bytes (most keys are shorter); a longer
/// one is kept on the heap. A call only lends its key (`&str`) to the
/// cache, which copies what it stores. Also the text of a policy's tags
/// (which `#[cached(tags = [...])]` writes into with
/// [`Policy::tag_built`](crate::Policy::tag_built)) and of an entry's
/// storage names. It can only be appended to.
#[doc(hidden)]
#[derive(Clone)]
pub struct Key(Repr);

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes of `bytes`.
    Inline {
        len: u8,
        bytes: [u8; Key::INLINE],
    },
    Heap(String),
}

impl Key {
    /// The longest key kept without an allocation, in bytes.
    pub const INLINE: usize = 64;

    /// An empty key.
    pub(crate) const fn new() -> Self {
        Key(Repr::Inline {
            len: 0,
            bytes: [0; Self::INLINE],
        })
    }

    /// An empty key with room for `bytes` of text.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        match bytes <= Self::INLINE {
            true => Key::new(),
            false => Key(Repr::Heap(String::with_capacity(bytes))),
        }
    }

    /// As [`KeyBuilder::lit`], written in place: how `#[cached]` builds a
    /// call's key (a `KeyBuilder` moves it at every step).
    #[inline]
    pub fn lit(&mut self, text: &str) -> &mut Self {
        self.push(text);
        self
    }

    /// As [`KeyBuilder::arg`].
    pub fn arg<T: Display + ?Sized>(&mut self, value: &T) -> &mut Self {
        // Writing into memory cannot fail unless Display itself errors, in
        // which case the partial output is still a distinct, valid key.
        let _ = write!(Escaped(self), "{value}");
        self
    }

    /// As [`KeyBuilder::int`].
    pub fn int<T: itoa::Integer>(&mut self, value: T) -> &mut Self {
        self.push(itoa::Buffer::new().format(value));
        self
    }

    /// Appends `text`. The only way bytes get in: they are always UTF-8.
    #[inline]
    fn push(&mut self, text: &str) {
        match &mut self.0 {
            Repr::Inline { len, bytes } if usize::from(*len) + text.len() <= Self::INLINE => {
                let start = usize::from(*len);
                bytes[start..start + text.len()].copy_from_slice(text.as_bytes());
                // At most INLINE (64), which fits.
                *len = (start + text.len()) as u8;
            }
            Repr::Inline { .. } => self.spill(text),
            Repr::Heap(heap) => heap.push_str(text),
        }
    }

    /// Moves the key to the heap, with `text` after it.
    #[cold]
    fn spill(&mut self, text: &str) {
        let mut heap = String::with_capacity(self.len() + text.len() + 24);
        heap.push_str(self);
        heap.push_str(text);
        self.0 = Repr::Heap(heap);
    }
}

impl Default for Key {
    #[inline]
    fn default() -> Self {
        Key::new()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        **self == **other
    }
}

impl Eq for Key {}

impl Deref for Key {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        match &self.0 {
            // SAFETY: `push` is the only writer, and it appends whole `str`s.
            Repr::Inline { len, bytes } => unsafe {
                std::str::from_utf8_unchecked(&bytes[..usize::from(*len)])
            },
            Repr::Heap(heap) => heap,
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl From<Key> for String {
    fn from(key: Key) -> String {
        match key.0 {
            Repr::Inline { .. } => String::from(&*key),
            Repr::Heap(heap) => heap,
        }
    }
}

/// The name a key is stored under: the key itself, or, past
/// [`MAX_KEY_LEN`] bytes, its first 64 bytes, `#sha256=` and the SHA-256 of
/// the whole key in hex (at most 136 bytes).
///
/// Distinct keys keep distinct names: a shortened name ends in the digest of
/// its whole key, and a name kept as it is never contains the mark.
///
/// A name is never empty and never starts with `}`, so that `{name}` is a
/// Redis Cluster hash tag of the name (see [`EntryKeys`](crate::backend::EntryKeys)):
/// an empty key, or one that starts with `}`, is stored as its digest alone.
pub(crate) fn storage_key(key: &str) -> Cow<'_, str> {
    shorten(key, MAX_KEY_LEN, KEPT_PREFIX)
}

fn shorten(key: &str, max: usize, kept: usize) -> Cow<'_, str> {
    let tag_breaking = key.is_empty() || key.starts_with('}');
    if key.len() <= max && !key.contains(DIGEST_MARK) && !tag_breaking {
        return Cow::Borrowed(key);
    }
    let kept = if tag_breaking { 0 } else { kept };
    let mut cut = kept.min(key.len());
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut name = String::with_capacity(cut + DIGEST_MARK.len() + 64);
    name.push_str(&key[..cut]);
    name.push_str(DIGEST_MARK);
    for byte in Sha256::digest(key.as_bytes()) {
        let _ = write!(name, "{byte:02x}");
    }
    Cow::Owned(name)
}

/// A `fmt::Write` adapter that escapes the separator and the escape character.
struct Escaped<'a>(&'a mut Key);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Most values (numbers, ids) have nothing to escape: copied at once.
        if !s.contains([':', '\\']) {
            self.0.push(s);
            return Ok(());
        }
        for c in s.chars() {
            if matches!(c, ':' | '\\') {
                self.0.push("\\");
            }
            self.0.push(c.encode_utf8(&mut [0; 4]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two(a: &str, b: &str) -> String {
        KeyBuilder::new("k:").arg(a).lit(":").arg(b).finish()
    }

    #[test]
    fn an_integer_is_written_as_display_writes_it() {
        for n in [0i128, 7, -7, i128::from(u64::MAX), i128::MIN, i128::MAX] {
            assert_eq!(
                KeyBuilder::new("k:").int(n).finish(),
                KeyBuilder::new("k:").arg(&n).finish()
            );
        }
        assert_eq!(
            KeyBuilder::new("k:").int(u128::MAX).finish(),
            format!("k:{}", u128::MAX)
        );
    }

    #[test]
    fn a_call_key_is_the_builders_text_inline_or_on_the_heap() {
        // Lengths on both sides of `Key::INLINE`, with a character of two
        // bytes that a spill may fall inside.
        for n in 0..=2 * Key::INLINE {
            let value = "é".repeat(n / 2) + &"a".repeat(n % 2);
            let mut key = Key::default();
            key.lit("k:").arg(&value).lit(":").int(n);
            let built = KeyBuilder::new("k:").arg(&value).lit(":").int(n).finish();
            assert_eq!(&*key, built);
            assert_eq!(String::from(key.clone()), format!("k:{value}:{n}"));
            assert_eq!(format!("{key:?}"), format!("{:?}", format!("k:{value}:{n}")));
        }
        // Escaped text, which is written a character at a time, across the boundary.
        for n in 0..=Key::INLINE {
            let value = "é:".repeat(n / 4) + &":".repeat(n % 4);
            let mut key = Key::default();
            key.lit("k:").arg(&value);
            assert_eq!(&*key, KeyBuilder::new("k:").arg(&value).finish());
            assert_eq!(key.len(), 2 + 4 * (n / 4) + 2 * (n % 4));
        }
    }

    #[test]
    fn escapes_separator_and_escape() {
        assert_eq!(KeyBuilder::new("p:").arg(&r"a\:b").finish(), r"p:a\\\:b");
    }

    #[test]
    fn separator_in_values_cannot_collide() {
        assert_ne!(two("a:b", "c"), two("a", "b:c"));
        assert_ne!(two(r"a\", "b"), two("a", r"\b"));
        assert_ne!(two(r"a\:", "b"), two(r"a\", ":b"));
        assert_ne!(two("", ":"), two(":", ""));
    }

    #[test]
    fn long_keys_are_shortened_to_a_digest() {
        let long = "é".repeat(200); // 400 bytes, cut inside no character
        let name = storage_key(&long);
        assert!(name.len() <= 136, "{}", name.len());
        assert!(name.starts_with(&"é".repeat(32)));
        assert!(name.contains(DIGEST_MARK));
        assert_eq!(storage_key("short:key"), "short:key");
        assert_eq!(storage_key(&"a".repeat(MAX_KEY_LEN)).len(), MAX_KEY_LEN);
        assert_ne!(storage_key(&"a".repeat(MAX_KEY_LEN + 1)).len(), MAX_KEY_LEN + 1);
    }

    #[test]
    fn a_key_that_looks_shortened_is_shortened_too() {
        let long = "x".repeat(300);
        let forged = storage_key(&long).into_owned();
        assert_ne!(storage_key(&forged), forged.as_str());
    }

    mod props {
        use proptest::prelude::*;

        use super::super::*;

        /// Values from a small alphabet of the characters that matter (the
        /// separator, the escape, the mark's) so that near-collisions are common.
        fn value() -> impl Strategy<Value = String> {
            proptest::string::string_regex(r"[a:\\#s=\n é*]{0,8}").unwrap()
        }

        fn key((a, b, c): &(String, String, String)) -> String {
            KeyBuilder::new("k:")
                .arg(a)
                .lit(":")
                .arg(b)
                .lit(":x:")
                .arg(c)
                .finish()
        }

        /// Splits a key of [`key`]'s template back into its values.
        fn split(key: &str) -> Vec<String> {
            let mut parts = vec![String::new()];
            let mut chars = key.strip_prefix("k:").unwrap().chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => parts.last_mut().unwrap().extend(chars.next()),
                    ':' => parts.push(String::new()),
                    c => parts.last_mut().unwrap().push(c),
                }
            }
            parts
        }

        /// Words that matter to shortening: the mark, a multibyte character.
        fn long_or_marked() -> impl Strategy<Value = String> {
            proptest::collection::vec(prop_oneof!["a", "é", ":", "}", DIGEST_MARK], 0..12)
                .prop_map(|words| words.concat())
        }

        proptest! {
            /// A key splits back into exactly its values: the tuple is
            /// recoverable from the key, so no two tuples share one.
            #[test]
            fn a_key_gives_back_its_arguments(x in (value(), value(), value())) {
                let parts = split(&key(&x));
                prop_assert_eq!(parts, vec![x.0, x.1, "x".to_owned(), x.2]);
            }

            /// The tuples most likely to collide: the same characters, with
            /// the boundary between the first two values moved.
            #[test]
            fn moving_the_boundary_changes_the_key(a in value(), b in value(), c in value(), at in any::<prop::sample::Index>()) {
                let joined = format!("{a}{b}");
                let mut cut = at.index(joined.len() + 1);
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                let moved = (joined[..cut].to_owned(), joined[cut..].to_owned(), c.clone());
                let x = (a, b, c);
                prop_assert_eq!(key(&x) == key(&moved), x == moved);
            }

            /// Small limits, so that kept, shortened and marked keys are all drawn.
            #[test]
            fn distinct_keys_never_share_a_storage_name(a in long_or_marked(), b in long_or_marked()) {
                prop_assume!(a != b);
                prop_assert_ne!(shorten(&a, 12, 4), shorten(&b, 12, 4));
            }

            #[test]
            fn stored_names_are_bounded(key in ".{0,400}") {
                prop_assert!(storage_key(&key).len() <= MAX_KEY_LEN);
            }

            /// `{name}` is always a hash tag whose content is not empty.
            #[test]
            fn stored_names_make_hash_tags(key in "[}{a]{0,4}") {
                let name = storage_key(&key);
                prop_assert!(!name.is_empty() && !name.starts_with('}'), "{:?}", name);
            }

            #[test]
            fn tag_breaking_keys_keep_distinct_names(a in "[}{a#]{0,4}", b in "[}{a#]{0,4}") {
                prop_assume!(a != b);
                prop_assert_ne!(storage_key(&a), storage_key(&b));
            }
        }
    }
}
