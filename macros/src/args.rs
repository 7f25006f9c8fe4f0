//! The options of `#[cached]`, `#[cache_put]` and `#[invalidate]`, parsed
//! with their spans.

use std::time::Duration;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::template::{self, Segment};

/// Which attribute is being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    Cached,
    CachePut,
    Invalidate,
}

impl Attr {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Attr::Cached => "#[cached]",
            Attr::CachePut => "#[cache_put]",
            Attr::Invalidate => "#[invalidate]",
        }
    }

    /// The options this attribute accepts.
    fn options(self) -> &'static [&'static str] {
        match self {
            Attr::Cached | Attr::CachePut => &["key", "ttl", "negative_ttl", "tags", "cache"],
            Attr::Invalidate => &["keys", "tags", "cache"],
        }
    }

    /// Options that a later release adds; named so that using one is a clear
    /// error rather than an "unknown option".
    fn not_yet(self) -> &'static [&'static str] {
        match self {
            Attr::Cached => &["stampede"],
            Attr::CachePut | Attr::Invalidate => &[],
        }
    }
}

/// `name = value`, before interpretation.
struct RawOption {
    name: Ident,
    value: Expr,
}

impl Parse for RawOption {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let name = input.call(syn::ext::IdentExt::parse_any)?;
        input.parse::<Token![=]>().map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("expected `=` after `{name}`; options are written `{name} = value`"),
            )
        })?;
        Ok(RawOption {
            name,
            value: input.parse()?,
        })
    }
}

/// A duration option's value and where it was written.
#[derive(Clone, Copy)]
pub(crate) struct SpannedDuration {
    pub(crate) value: Duration,
    pub(crate) span: Span,
}

/// A parsed key template.
pub(crate) struct KeyTemplate {
    pub(crate) lit: LitStr,
    pub(crate) segments: Vec<Segment>,
}

/// The interpreted options of one attribute.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) key: Option<KeyTemplate>,
    pub(crate) ttl: Option<SpannedDuration>,
    pub(crate) negative_ttl: Option<SpannedDuration>,
    pub(crate) tags: Option<Vec<KeyTemplate>>,
    pub(crate) keys: Option<Vec<KeyTemplate>>,
    pub(crate) cache: Option<Expr>,
}

/// Collects errors so that all of them are reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn add(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Args {
    /// Parses the attribute's tokens, recording every problem in `errors`.
    pub(crate) fn parse(attr: Attr, tokens: proc_macro2::TokenStream, errors: &mut Errors) -> Self {
        let mut args = Args::default();
        let parser = Punctuated::<RawOption, Token![,]>::parse_terminated;
        let raw = match syn::parse::Parser::parse2(parser, tokens) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(e);
                return args;
            }
        };
        let mut seen: Vec<String> = Vec::new();
        for RawOption { name, value } in raw {
            let label = name.to_string();
            if !attr.options().contains(&label.as_str()) {
                let message = if attr.not_yet().contains(&label.as_str()) {
                    format!("`{label}` is not supported yet by this version of aside; remove it")
                } else {
                    format!(
                        "unknown option `{label}`; expected one of: {}",
                        attr.options().join(", ")
                    )
                };
                errors.add(name.span(), message);
                continue;
            }
            if seen.contains(&label) {
                errors.add(name.span(), format!("duplicate option `{label}`; give it once"));
                continue;
            }
            seen.push(label.clone());
            match label.as_str() {
                "key" => args.key = key_template("`key`", &value, errors),
                "ttl" => args.ttl = duration(&label, &value, false, errors),
                "negative_ttl" => args.negative_ttl = duration(&label, &value, true, errors),
                "tags" => args.tags = template_list(&label, &value, errors),
                "keys" => args.keys = template_list(&label, &value, errors),
                "cache" => args.cache = Some(value),
                _ => unreachable!("every option in Attr::options is handled"),
            }
        }
        args
    }

    /// Every template the attribute was given, for checking placeholders.
    pub(crate) fn templates(&self) -> impl Iterator<Item = &KeyTemplate> {
        let lists = self.tags.iter().chain(&self.keys).flatten();
        self.key.iter().chain(lists)
    }
}

/// `["a:<x>", "b"]`: a list of templates. A bad list or element is reported
/// and left out; the option still counts as given.
fn template_list(name: &str, value: &Expr, errors: &mut Errors) -> Option<Vec<KeyTemplate>> {
    let Expr::Array(array) = value else {
        errors.add(
            value.span(),
            format!("`{name}` must be a list of string templates, such as `{name} = [\"product:<id>\"]`"),
        );
        return Some(Vec::new());
    };
    let what = format!("each of `{name}`");
    Some(
        array
            .elems
            .iter()
            .filter_map(|elem| key_template(&what, elem, errors))
            .collect(),
    )
}

/// One template; `what` names it in the error, such as "`key`".
fn key_template(what: &str, value: &Expr, errors: &mut Errors) -> Option<KeyTemplate> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        errors.add(
            value.span(),
            format!("{what} must be a string literal, such as `\"product:<id>\"`"),
        );
        return None;
    };
    match template::parse(&lit.value()) {
        Ok(segments) => Some(KeyTemplate {
            lit: lit.clone(),
            segments,
        }),
        Err(message) => {
            errors.add(lit.span(), message);
            None
        }
    }
}

/// `3600` (seconds) or `"90s"`, `"5m"`, `"1h"`, `"1d"`.
fn duration(name: &str, value: &Expr, zero_ok: bool, errors: &mut Errors) -> Option<SpannedDuration> {
    let expected = format!(
        "`{name}` must be a whole number of seconds (`{name} = 3600`) or a string such as \"90s\", \"5m\", \"1h\" or \"1d\""
    );
    let seconds = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(secs) => Some(secs),
            Err(_) => {
                errors.add(int.span(), format!("`{name}` is too large; {expected}"));
                return None;
            }
        },
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => parse_duration(&s.value()),
        _ => None,
    };
    let Some(seconds) = seconds else {
        errors.add(value.span(), format!("invalid duration; {expected}"));
        return None;
    };
    if seconds == 0 && !zero_ok {
        errors.add(
            value.span(),
            format!("`{name}` must be at least 1 second; to not cache, remove #[cached]"),
        );
        return None;
    }
    Some(SpannedDuration {
        value: Duration::from_secs(seconds),
        span: value.span(),
    })
}

/// `"<digits><unit>"` with unit `s`, `m`, `h` or `d`, in seconds.
fn parse_duration(text: &str) -> Option<u64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(unit_at);
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("1h"), Some(3600));
        assert_eq!(parse_duration("1d"), Some(86_400));
        for bad in ["", "5", "m", "5x", "1.5h", "-1s", "5 m", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
