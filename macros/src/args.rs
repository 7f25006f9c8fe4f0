//! The options of `#[cached]`, `#[cache_put]` and `#[invalidate]`, parsed
//! with their spans.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::conflicts;
use crate::entry;
use crate::template::{self, Segment};

/// Which attribute is being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    Cached,
    CachedBatch,
    CachePut,
    Invalidate,
}

impl Attr {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Attr::Cached => "#[cached]",
            Attr::CachedBatch => "#[cached_batch]",
            Attr::CachePut => "#[cache_put]",
            Attr::Invalidate => "#[invalidate]",
        }
    }

    /// The options this attribute accepts.
    fn options(self) -> &'static [&'static str] {
        match self {
            Attr::Cached => &[
                "key",
                "ttl",
                "negative_ttl",
                "tags",
                "cache",
                "stampede",
                "lock_ttl",
                "lock_wait",
                "stale",
                "beta",
                "jitter",
                "sliding",
                "codec",
                "l1",
                "unless",
                "entry",
                "hard_timeout",
                "fail_safe",
                "fail_safe_throttle",
                "soft_timeout",
                "refresh",
            ],
            Attr::CachedBatch => &[
                "key",
                "each",
                "ttl",
                "negative_ttl",
                "tags",
                "cache",
                "stampede",
                "lock_ttl",
                "lock_wait",
                "stale",
                "beta",
                "jitter",
                "codec",
                "l1",
                "fail_safe",
                "fail_safe_throttle",
            ],
            Attr::CachePut => &[
                "entry",
                "key",
                "ttl",
                "negative_ttl",
                "tags",
                "cache",
                "jitter",
                "codec",
                "unless",
            ],
            Attr::Invalidate => &["entries", "keys", "tags", "cache"],
        }
    }

    /// Options that belong to another attribute; named so that using one is
    /// a clear error rather than an "unknown option".
    fn elsewhere(self) -> &'static [&'static str] {
        match self {
            Attr::Cached | Attr::CachePut => &["keys", "entries", "each"],
            Attr::CachedBatch => &[
                "keys",
                "entries",
                "entry",
                "unless",
                "sliding",
                "hard_timeout",
                "soft_timeout",
                "refresh",
            ],
            Attr::Invalidate => &["key", "ttl", "entry"],
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

/// A duration option's value and where it was written: a literal, checked
/// here, or an expression of type `Duration` (a const, `Duration::from_secs(60)`),
/// which the compiler checks.
#[derive(Clone)]
pub(crate) struct SpannedDuration {
    /// The literal's duration; `None` for an expression.
    pub(crate) value: Option<Duration>,
    pub(crate) span: Span,
    pub(crate) expr: Option<Expr>,
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
    pub(crate) stampede: Option<(Mode, Span)>,
    pub(crate) lock_ttl: Option<SpannedDuration>,
    pub(crate) lock_wait: Option<SpannedDuration>,
    pub(crate) stale: Option<SpannedDuration>,
    /// `hard_timeout = "2s"`: the load gives up with `E::from(aside::Timeout)`.
    pub(crate) hard_timeout: Option<SpannedDuration>,
    /// `fail_safe = "1h"`: the last good value stands in for a failed load.
    pub(crate) fail_safe: Option<SpannedDuration>,
    pub(crate) fail_safe_throttle: Option<SpannedDuration>,
    /// `soft_timeout = "100ms"`: past it, a fail-safe value answers while
    /// the load finishes in the background.
    pub(crate) soft_timeout: Option<SpannedDuration>,
    /// `refresh = "background"` or `"inline"`: where swr's and early's
    /// refreshes run.
    pub(crate) refresh: Option<(Refresh, Span)>,
    pub(crate) beta: Option<(f64, Span)>,
    pub(crate) jitter: Option<(f64, Span)>,
    pub(crate) sliding: Option<(bool, Span)>,
    pub(crate) codec: Option<(Codec, Span)>,
    pub(crate) l1: Option<(L1, Span)>,
    /// `unless = |v| ...`: values not to store.
    pub(crate) unless: Option<Expr>,
    /// `#[cached]`: whether to emit the companion that writers name the
    /// entry by (`entry = false` leaves it out, as a trait impl requires).
    pub(crate) companion: bool,
    /// Whether an option was not recognised: what it was meant to say is
    /// unknown, so checks of what is missing stay quiet.
    pub(crate) unknown_option: bool,
    /// `#[cache_put(entry = f(x))]`: the companion call of the entry it writes.
    pub(crate) entry: Option<TokenStream>,
    /// `#[invalidate(entries = [f(x), self.g(y)])]`: the companion calls.
    pub(crate) entries: Option<Vec<TokenStream>>,
    /// `#[cached_batch(each = "id")]`: the name of one id in the templates.
    pub(crate) each: Option<Ident>,
}

/// An `l1 = ...`: whether the function uses the in-process tier, and for
/// how long at most.
#[derive(Clone)]
pub(crate) enum L1 {
    On,
    Off,
    Ttl(SpannedDuration),
}

/// A `codec = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Json,
    MessagePack,
}

/// A `stampede = "..."` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Lock,
    Swr,
    Early,
    None,
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
    /// The durations the policy is built from, `l1`'s included (not
    /// `hard_timeout`, which the body keeps).
    pub(crate) fn policy_durations(&self) -> impl Iterator<Item = &SpannedDuration> + '_ {
        [
            &self.ttl,
            &self.negative_ttl,
            &self.lock_ttl,
            &self.lock_wait,
            &self.stale,
            &self.fail_safe,
            &self.fail_safe_throttle,
            &self.soft_timeout,
        ]
        .into_iter()
        .flatten()
        .chain(self.l1.iter().filter_map(|(l1, _)| match l1 {
            L1::Ttl(ttl) => Some(ttl),
            L1::On | L1::Off => None,
        }))
    }

    /// Parses the attribute's tokens, recording every problem in `errors`.
    pub(crate) fn parse(attr: Attr, tokens: proc_macro2::TokenStream, errors: &mut Errors) -> Self {
        let mut args = Args {
            companion: true,
            unknown_option: false,
            ..Args::default()
        };
        let parser = Punctuated::<RawOption, Token![,]>::parse_terminated;
        let raw = match syn::parse::Parser::parse2(parser, tokens) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(e);
                return args;
            }
        };
        let mut seen: Vec<String> = Vec::new();
        let mut named: Vec<(String, Span)> = Vec::new();
        for RawOption { name, value } in raw {
            let label = name.to_string();
            if !attr.options().contains(&label.as_str()) {
                let message = if attr.elsewhere().contains(&label.as_str()) {
                    format!(
                        "`{label}` is not an option of {}; expected one of: {}",
                        attr.name(),
                        attr.options().join(", ")
                    )
                } else if let Some(meant) = closest(&label, attr.options()) {
                    format!(
                        "unknown option `{label}`; did you mean `{meant}`? (the options are: {})",
                        attr.options().join(", ")
                    )
                } else {
                    format!(
                        "unknown option `{label}`; expected one of: {}",
                        attr.options().join(", ")
                    )
                };
                errors.add(name.span(), message);
                args.unknown_option = true;
                continue;
            }
            if seen.contains(&label) {
                errors.add(name.span(), format!("duplicate option `{label}`; give it once"));
                continue;
            }
            seen.push(label.clone());
            named.push((label.clone(), name.span()));
            match label.as_str() {
                "key" => args.key = key_template("`key`", &value, errors),
                "each" => args.each = each(&value, errors),
                "ttl" => args.ttl = duration(&label, &value, false, errors),
                "negative_ttl" => args.negative_ttl = duration(&label, &value, true, errors),
                "tags" => args.tags = template_list(&label, &value, errors),
                "keys" => args.keys = template_list(&label, &value, errors),
                "cache" => args.cache = Some(value),
                "unless" => args.unless = Some(value),
                "stampede" => args.stampede = mode(&value, errors),
                "lock_ttl" => args.lock_ttl = duration(&label, &value, false, errors),
                "lock_wait" => args.lock_wait = duration(&label, &value, true, errors),
                "stale" => args.stale = duration(&label, &value, false, errors),
                "hard_timeout" => args.hard_timeout = duration(&label, &value, false, errors),
                "fail_safe" => args.fail_safe = duration(&label, &value, false, errors),
                "fail_safe_throttle" => args.fail_safe_throttle = duration(&label, &value, false, errors),
                "soft_timeout" => args.soft_timeout = duration(&label, &value, false, errors),
                "refresh" => args.refresh = refresh(&value, errors),
                "beta" => match number(&label, &value, errors) {
                    Some((beta, span)) if beta <= 0.0 => {
                        errors.add(span, "`beta` must be greater than zero (1.0 is the usual choice)")
                    }
                    beta => args.beta = beta,
                },
                "jitter" => match number(&label, &value, errors) {
                    Some((jitter, span)) if jitter >= 1.0 => errors.add(
                        span,
                        "`jitter` is a share of the TTL below 1, such as `jitter = 0.1` for ±10%",
                    ),
                    jitter => args.jitter = jitter,
                },
                "codec" => args.codec = codec(&value, errors),
                "l1" => match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }) => args.l1 = Some((if b.value { L1::On } else { L1::Off }, b.span)),
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(text), ..
                    }) if parse_duration(&text.value()).is_none() => errors.add(
                        text.span(),
                        "`l1` must be `true`, `false`, or how long the in-process tier keeps a value: seconds (`l1 = 30`) or a string such as \"500ms\", \"30s\", \"5m\"",
                    ),
                    _ => {
                        let ttl = duration(&label, &value, false, errors);
                        args.l1 = ttl.map(|d| {
                            let span = d.span;
                            (L1::Ttl(d), span)
                        });
                    }
                },
                "entry" if attr == Attr::Cached => match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }) => args.companion = b.value,
                    other => errors.add(
                        other.span(),
                        "`entry` must be `true` or `false`: `entry = false` leaves out the companion item \
                         that writers name this function's entry with, as a trait impl requires",
                    ),
                },
                "entry" => match entry::call(&value) {
                    Ok(call) => args.entry = Some(call),
                    Err(error) => errors.push(error),
                },
                "entries" => match &value {
                    Expr::Array(array) => {
                        let calls = array.elems.iter().filter_map(|call| match entry::call(call) {
                            Ok(call) => Some(call),
                            Err(error) => {
                                errors.push(error);
                                None
                            }
                        });
                        args.entries = Some(calls.collect());
                    }
                    other => errors.add(
                        other.span(),
                        format!("`entries` must be a list, such as `entries = [product(id)]`, of {}", entry::EXPECTED),
                    ),
                },
                "sliding" => match &value {
                    Expr::Lit(ExprLit {
                        lit: Lit::Bool(b), ..
                    }) => args.sliding = Some((b.value, b.span)),
                    other => errors.add(other.span(), "`sliding` must be `true` or `false`"),
                },
                _ => unreachable!("every option in Attr::options is handled"),
            }
        }
        conflicts::check(&args, &named, errors);
        args
    }

    /// Every template the attribute was given, for checking placeholders.
    pub(crate) fn templates(&self) -> impl Iterator<Item = &KeyTemplate> {
        let lists = self.tags.iter().chain(&self.keys).flatten();
        self.key.iter().chain(lists)
    }
}

/// Where a refresh runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refresh {
    /// On a task of its own: every caller gets the current value at once.
    Background,
    /// On the caller that wins it.
    Inline,
}

/// `"background"` or `"inline"`.
/// `each = "id"`: a name, as a placeholder would be written.
fn each(value: &Expr, errors: &mut Errors) -> Option<Ident> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Str(text), ..
    }) = value
    {
        if let Ok(name) = syn::parse_str::<Ident>(&text.value()) {
            return Some(Ident::new(&name.to_string(), text.span()));
        }
    }
    errors.add(
        value.span(),
        "`each` names one id of the batch in the templates, as a string: `each = \"id\"` for `key = \"product:<id>\"`",
    );
    None
}

fn refresh(value: &Expr, errors: &mut Errors) -> Option<(Refresh, Span)> {
    let choices = [("background", Refresh::Background), ("inline", Refresh::Inline)];
    let expected = "expected \"background\" or \"inline\"";
    one_of(("refresh", "refresh"), &choices, expected, value, errors)
}

/// `"json"` or `"msgpack"`.
fn codec(value: &Expr, errors: &mut Errors) -> Option<(Codec, Span)> {
    let choices = [("json", Codec::Json), ("msgpack", Codec::MessagePack)];
    let expected = "expected \"json\" or \"msgpack\"";
    one_of(("codec", "codec"), &choices, expected, value, errors)
}

/// `"lock"`, `"swr"`, `"early"` or `"none"`.
fn mode(value: &Expr, errors: &mut Errors) -> Option<(Mode, Span)> {
    let choices = [
        ("lock", Mode::Lock),
        ("swr", Mode::Swr),
        ("early", Mode::Early),
        ("none", Mode::None),
    ];
    let expected = "expected one of: \"lock\", \"swr\", \"early\", \"none\"";
    one_of(("stampede", "stampede mode"), &choices, expected, value, errors)
}

/// The option `name` (its values called `what` in errors) as one of
/// `choices`, given as a string literal.
fn one_of<T: Copy>(
    (name, what): (&str, &str),
    choices: &[(&str, T)],
    expected: &str,
    value: &Expr,
    errors: &mut Errors,
) -> Option<(T, Span)> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        errors.add(value.span(), format!("`{name}` must be a string; {expected}"));
        return None;
    };
    let given = lit.value();
    match choices.iter().find(|(choice, _)| *choice == given) {
        Some(&(_, chosen)) => Some((chosen, lit.span())),
        None => {
            let names: Vec<&str> = choices.iter().map(|(choice, _)| *choice).collect();
            let message = match closest(&given, &names) {
                Some(meant) => format!("unknown {what} {given:?}; did you mean {meant:?}? ({expected})"),
                None => format!("unknown {what} {given:?}; {expected}"),
            };
            errors.add(lit.span(), message);
            None
        }
    }
}

/// The one of `names` that `given` most likely misspells, if one is close.
fn closest<'n>(given: &str, names: &[&'n str]) -> Option<&'n str> {
    names
        .iter()
        .map(|name| (strsim::damerau_levenshtein(given, name), *name))
        .filter(|&(distance, name)| distance <= (name.len() / 3).max(1))
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name)
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Lock => "lock",
            Mode::Swr => "swr",
            Mode::Early => "early",
            Mode::None => "none",
        }
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
        "`{name}` must be a whole number of seconds (`{name} = 3600`) or a string such as \"500ms\", \"90s\", \"5m\", \"1h\", \"1d\" or \"1h30m\""
    );
    let parsed = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => {
                errors.add(int.span(), format!("`{name}` is too large; {expected}"));
                return None;
            }
        },
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => parse_duration(&s.value()),
        Expr::Lit(_) => None,
        // A const or any expression: the compiler checks that it is a `Duration`.
        expr => {
            return Some(SpannedDuration {
                value: None,
                span: expr.span(),
                expr: Some(expr.clone()),
            })
        }
    };
    let Some(parsed) = parsed else {
        errors.add(value.span(), format!("invalid duration; {expected}"));
        return None;
    };
    if parsed.is_zero() && !zero_ok {
        let hint = if name == "ttl" {
            "; to not cache, remove the attribute"
        } else {
            ""
        };
        errors.add(value.span(), format!("`{name}` must be greater than zero{hint}"));
        return None;
    }
    Some(SpannedDuration {
        value: Some(parsed),
        span: value.span(),
        expr: None,
    })
}

/// `"<digits><unit>"` with unit `ms`, `s`, `m`, `h` or `d`.
fn parse_duration(text: &str) -> Option<Duration> {
    // Parts such as `1h`, `30m`, each unit smaller than the one before:
    // "1h30m", "2m30s", "1s500ms".
    let mut rest = text;
    let mut total: u64 = 0;
    let mut previous = u64::MAX;
    while !rest.is_empty() {
        let unit_at = rest.find(|c: char| !c.is_ascii_digit())?;
        let (digits, after) = rest.split_at(unit_at);
        let n: u64 = digits.parse().ok()?;
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let ms_per_unit = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        if ms_per_unit >= previous {
            return None;
        }
        previous = ms_per_unit;
        total = total.checked_add(n.checked_mul(ms_per_unit)?)?;
        rest = next;
    }
    (!text.is_empty()).then(|| Duration::from_millis(total))
}

/// `0.1`, `1.0`, `2`: a non-negative number.
fn number(name: &str, value: &Expr, errors: &mut Errors) -> Option<(f64, Span)> {
    let parsed = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Lit(ExprLit { lit: Lit::Int(i), .. }) => i.base10_parse::<u64>().ok().map(|n| n as f64),
        _ => None,
    };
    match parsed {
        Some(n) if n.is_finite() => Some((n, value.span())),
        _ => {
            errors.add(
                value.span(),
                format!("`{name}` must be a number, such as `{name} = 0.1`"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn durations() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), secs(90));
        assert_eq!(parse_duration("5m"), secs(300));
        assert_eq!(parse_duration("1h"), secs(3600));
        assert_eq!(parse_duration("1d"), secs(86_400));
        assert_eq!(parse_duration("1h30m"), secs(5_400));
        assert_eq!(parse_duration("2m30s"), secs(150));
        assert_eq!(parse_duration("1s500ms"), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_duration("1d12h"), secs(129_600));
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "1.5h",
            "-1s",
            "5 m",
            "99999999999999999999d",
            "5mss",
            "30m1h",
            "1h1h",
            "1h30",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
