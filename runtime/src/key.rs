//! Building cache keys from templates such as `"product:<id>"`.

use std::fmt::{self, Display, Write};

/// Builds a cache key from literal text and argument values, so that distinct
/// argument values never produce the same key.
///
/// Each value is formatted with [`Display`] and escaped: `\` becomes `\\` and
/// `:` becomes `\:`. Literal text is written as it is. As long as consecutive
/// values are separated by literal text containing `:` (which `#[cached]`
/// enforces for its templates), a key can be split back into its values in
/// only one way, so two different argument tuples can never share a key.
///
/// This is what `#[cached(key = "...")]` expands to; use it to build the same
/// key by hand, for example to [`invalidate`](crate::Cache::invalidate) it.
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
    buf: String,
}

impl KeyBuilder {
    /// Starts a key with literal text.
    pub fn new(prefix: &str) -> Self {
        let mut buf = String::with_capacity(prefix.len() + 24);
        buf.push_str(prefix);
        KeyBuilder { buf }
    }

    /// Appends literal text, unescaped.
    pub fn lit(mut self, text: &str) -> Self {
        self.buf.push_str(text);
        self
    }

    /// Appends a value's [`Display`] output, escaped.
    pub fn arg<T: Display + ?Sized>(mut self, value: &T) -> Self {
        // Writing into a String cannot fail unless Display itself errors, in
        // which case the partial output is still a distinct, valid key.
        let _ = write!(Escaped(&mut self.buf), "{value}");
        self
    }

    /// The finished key.
    pub fn finish(self) -> String {
        self.buf
    }
}

/// A `fmt::Write` adapter that escapes the separator and the escape character.
struct Escaped<'a>(&'a mut String);

impl Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if matches!(c, ':' | '\\') {
                self.0.push('\\');
            }
            self.0.push(c);
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
}
