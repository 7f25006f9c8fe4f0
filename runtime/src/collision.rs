//! Cached functions whose keys can be equal and whose values differ in
//! type: each reads the other's entries as corrupt. Found from the key
//! templates the attributes record in each function's [`Function`].
//!
//! ```text
//! shop::price    "product:<id>"  u32
//! shop::product  "product:<id>"  Option<Product>   → they collide
//! shop::products "product:<id>"  Product           → shares product's entries (a batch)
//! ```
//!
//! A template's placeholders are separated by text holding `:` (the macro
//! checks it), and a value never writes an unescaped `:`; so a template is
//! its `:`-separated parts, each a prefix, at most one placeholder, and a
//! suffix, and two templates can give one key exactly when they have as
//! many parts and each pair of parts can.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use crate::error::Error;
use crate::function::{registered, Function};

/// One `:`-separated part of a template: `prefix<...>suffix`, or a literal.
#[derive(Debug, PartialEq, Eq)]
struct Part<'t> {
    prefix: &'t str,
    /// `Some(suffix)` after a placeholder.
    suffix: Option<&'t str>,
}

fn parts(template: &str) -> Vec<Part<'_>> {
    template
        .split(':')
        .map(|part| match (part.find('<'), part.find('>')) {
            (Some(open), Some(close)) if open < close => Part {
                prefix: &part[..open],
                suffix: Some(&part[close + 1..]),
            },
            _ => Part {
                prefix: part,
                suffix: None,
            },
        })
        .collect()
}

/// Whether some text is produced by both parts.
fn parts_meet(a: &Part<'_>, b: &Part<'_>) -> bool {
    let either_prefix = |x: &str, y: &str| x.starts_with(y) || y.starts_with(x);
    let either_suffix = |x: &str, y: &str| x.ends_with(y) || y.ends_with(x);
    match (a.suffix, b.suffix) {
        (None, None) => a.prefix == b.prefix,
        (Some(suffix), None) => fills(a.prefix, suffix, b.prefix),
        (None, Some(suffix)) => fills(b.prefix, suffix, a.prefix),
        (Some(sa), Some(sb)) => either_prefix(a.prefix, b.prefix) && either_suffix(sa, sb),
    }
}

/// Whether `text` is `prefix`, a placeholder's value, then `suffix`.
fn fills(prefix: &str, suffix: &str, text: &str) -> bool {
    text.len() >= prefix.len() + suffix.len() && text.starts_with(prefix) && text.ends_with(suffix)
}

/// Whether two templates can give one key.
pub(crate) fn templates_meet(a: &str, b: &str) -> bool {
    let (a, b) = (parts(a), parts(b));
    a.len() == b.len() && a.iter().zip(&b).all(|(a, b)| parts_meet(a, b))
}

/// Whether `key` is one that `template` gives: each of its parts is a
/// literal the template's part meets.
pub(crate) fn template_gives(template: &str, key: &str) -> bool {
    let key = unescaped_parts(key);
    let template = parts(template);
    key.len() == template.len()
        && template
            .iter()
            .zip(key)
            .all(|(part, prefix)| parts_meet(part, &Part { prefix, suffix: None }))
}

/// `key` split at each `:` that no `\` escapes.
fn unescaped_parts(key: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (at, c) in key.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ':' => {
                parts.push(&key[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&key[start..]);
    parts
}

/// Whether values of these two types can share entries: the same type, or
/// a value and an `Option` of it (a batch and its single-key function).
fn compatible(a: &str, b: &str) -> bool {
    let option_of = |outer: &str, inner: &str| {
        outer
            .strip_prefix("core::option::Option<")
            .and_then(|rest| rest.strip_suffix('>'))
            == Some(inner)
    };
    a == b || option_of(a, b) || option_of(b, a)
}

/// The pairs of functions already logged, so that each is logged once.
static LOGGED: Mutex<Option<HashSet<(&'static str, &'static str)>>> = Mutex::new(None);

/// `reader`, expecting a `reader_type`, found at `key` an entry that does
/// not decode as one. If another function's template gives `key` and its
/// values are of another type (or not yet seen), logs both, once per pair,
/// counts a collision on `reader`, and returns `true`.
pub(crate) fn explain_corrupt(reader: &'static Function, reader_type: &'static str, key: &str) -> bool {
    let writers: Vec<&'static Function> = registered()
        .into_iter()
        .filter(|other| !std::ptr::eq(*other, reader))
        .filter(|other| other.key_template().is_some_and(|t| template_gives(t, key)))
        .filter(|other| other.value_type().is_none_or(|t| !compatible(t, reader_type)))
        .collect();
    if writers.is_empty() {
        return false;
    }
    reader.collided();
    let mut logged = LOGGED.lock().unwrap_or_else(PoisonError::into_inner);
    let logged = logged.get_or_insert_with(HashSet::new);
    for writer in writers {
        if logged.insert((reader.name(), writer.name())) {
            tracing::error!(
                %key,
                reader = %reader.name(),
                %reader_type,
                writer = %writer.name(),
                writer_type = %writer.value_type().unwrap_or("(not seen yet)"),
                "aside: two cached functions write the same keys with values of different types, \
                 so each reads the other's entries as corrupt misses; give one of them another key template"
            );
        }
    }
    true
}

/// Checks every cached function this process has called so far: two whose
/// key templates can give the same key must cache the same type (or a
/// value and an `Option` of it, as a `#[cached_batch]` and its single-key
/// function do).
///
/// A function is known from its first call on (its value type from its
/// first load), so call this at the end of a test suite that exercised
/// the functions, or after a warm-up. A function with generic type
/// parameters, or whose key has none of its own (`#[cache_put(entry =
/// ...)]`), is not checked.
///
/// # Errors
///
/// [`Error::KeysCollide`], naming each pair of functions.
///
/// # Examples
///
/// ```
/// #[aside::cached(key = "price:<id>")]
/// async fn price(id: u64) -> u32 {
///     id as u32
/// }
///
/// #[aside::cached(key = "price:<sku>:<currency>")]
/// async fn price_in(sku: u64, currency: String) -> f64 {
///     sku as f64
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// price(1).await;
/// price_in(1, "EUR".into()).await;
/// aside::check_keys().expect("no two functions share a key with another type");
/// # }
/// ```
pub fn check_keys() -> Result<(), Error> {
    // Each function with a template and a value type seen: the others
    // cannot be compared.
    let functions: Vec<(&'static str, &'static str, &'static str)> = registered()
        .into_iter()
        .filter_map(|f| Some((f.name(), f.key_template()?, f.value_type()?)))
        .collect();
    let mut collisions = Vec::new();
    for (i, &(a, ta, va)) in functions.iter().enumerate() {
        for &(b, tb, vb) in &functions[i + 1..] {
            if templates_meet(ta, tb) && !compatible(va, vb) {
                collisions.push(format!(
                    "`{a}` (key \"{ta}\", {va}) and `{b}` (key \"{tb}\", {vb})"
                ));
            }
        }
    }
    if collisions.is_empty() {
        Ok(())
    } else {
        Err(Error::KeysCollide(collisions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_that_can_give_one_key() {
        for (a, b) in [
            ("product:<id>", "product:<sku>"),
            ("product:<id>", "product:7"),
            ("p<id>:x", "<id>s:x"),
            ("<self.tenant>:price:<id>", "acme:price:<n>"),
            ("user-<id>", "user-<a>-b"),
        ] {
            assert!(templates_meet(a, b), "{a} / {b}");
            assert!(templates_meet(b, a), "{b} / {a}");
        }
    }

    #[test]
    fn templates_that_cannot() {
        for (a, b) in [
            ("product:<id>", "price:<id>"),
            ("product:<id>", "product:<id>:<lang>"),
            ("user-<id>", "users-<id>"),
            ("<id>-a", "<id>-b"),
            ("product:7", "product:8"),
            ("a:<x>", "a<x>"),
        ] {
            assert!(!templates_meet(a, b), "{a} / {b}");
            assert!(!templates_meet(b, a), "{b} / {a}");
        }
    }

    #[test]
    fn keys_against_templates() {
        assert!(template_gives("product:<id>", "product:7"));
        assert!(
            template_gives("product:<id>", r"product:a\:b"),
            "an escaped `:` is a value's"
        );
        assert!(template_gives("product:<id>", "product:"), "an empty value");
        assert!(!template_gives("product:<id>", "product:7:8"));
        assert!(!template_gives("product:<id>", "price:7"));
        assert!(template_gives("v<n>s:x", "v12s:x"));
        assert!(!template_gives("v<n>s:x", "vs:y"));
    }

    #[test]
    fn a_value_and_its_option_share() {
        assert!(compatible("u32", "u32"));
        assert!(compatible("core::option::Option<u32>", "u32"));
        assert!(compatible("u32", "core::option::Option<u32>"));
        assert!(!compatible("u32", "alloc::string::String"));
    }
}
