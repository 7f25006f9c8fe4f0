//! Checks among an attribute's options: options that apply only with
//! another, or only in some stampede modes, or not beside `entry`. `args.rs`
//! parses each option; `validate.rs` checks them against the function.

use proc_macro2::Span;

use crate::args::{Args, Errors, Mode, Refresh, SpannedDuration};

/// Every check among `args`, whose options were given as `named` (label and span).
pub(crate) fn check(args: &Args, named: &[(String, Span)], errors: &mut Errors) {
    check_mode(args, errors);
    check_negative_ttl(args, errors);
    check_fail_safe(args, errors);
    if args.entry.is_some() {
        // The entry's policy is its #[cached] function's.
        for (label, span) in named {
            if ["key", "ttl", "negative_ttl", "tags", "jitter", "codec", "unless"].contains(&label.as_str()) {
                errors.add(
                    *span,
                    format!(
                        "`{label}` comes from the #[cached] function that `entry` names; remove it here, \
                         so that the two cannot differ"
                    ),
                );
            }
        }
    }
}

/// A cached `None` must not outlive a cached value of the same key.
fn check_negative_ttl(args: &Args, errors: &mut Errors) {
    let literal = |d: &Option<SpannedDuration>| d.as_ref().and_then(|d| Some((d.value?, d.span)));
    if let (Some((ttl, _)), Some((negative, span))) = (literal(&args.ttl), literal(&args.negative_ttl)) {
        if negative > ttl {
            errors.add(
                span,
                format!(
                    "`negative_ttl` ({negative:?}) is longer than `ttl` ({ttl:?}): a cached `None` would be kept longer than a value; make it at most `ttl`"
                ),
            );
        }
    }
}

/// A throttle or soft timeout without fail-safe does nothing; nor does
/// fail-safe on a sliding entry, which has no fresh time to outlive.
fn check_fail_safe(args: &Args, errors: &mut Errors) {
    if let (Some(soft), None) = (&args.soft_timeout, &args.fail_safe) {
        errors.add(
            soft.span,
            "`soft_timeout` returns a value kept by `fail_safe` when a load is slow; add `fail_safe = \"1h\"` (or how long to keep values)",
        );
    }
    if let (Some((Refresh::Inline, _)), Some(soft)) = (args.refresh, &args.soft_timeout) {
        errors.add(
            soft.span,
            "`soft_timeout` lets a slow load finish on a task of its own after its caller returned, which `refresh = \"inline\"` rules out; drop one of them",
        );
    }
    if let (Some(throttle), None) = (&args.fail_safe_throttle, &args.fail_safe) {
        errors.add(
            throttle.span,
            "`fail_safe_throttle` only applies with `fail_safe`, which keeps values to stand in for a failed load; add `fail_safe = \"1h\"` (or how long to keep them)",
        );
    }
    if let (Some(fail_safe), Some((true, _))) = (&args.fail_safe, args.sliding) {
        errors.add(
            fail_safe.span,
            "`fail_safe` does not apply to a sliding entry, which has no fresh time to outlive; drop `sliding` or `fail_safe`",
        );
    }
}

/// The options that only some stampede modes take.
fn check_mode(args: &Args, errors: &mut Errors) {
    let mode = args.stampede.map_or(Mode::Lock, |(mode, _)| mode);
    let only = |given: Option<Span>, option: &str, modes: &[Mode], errors: &mut Errors| {
        if let Some(span) = given.filter(|_| !modes.contains(&mode)) {
            let names: Vec<_> = modes
                .iter()
                .map(|m| format!("stampede = \"{}\"", m.name()))
                .collect();
            errors.add(
                span,
                format!(
                    "`{option}` only applies to {}; this function uses stampede = \"{}\"",
                    names.join(" or "),
                    mode.name()
                ),
            );
        }
    };
    only(
        args.lock_ttl.as_ref().map(|d| d.span),
        "lock_ttl",
        &[Mode::Lock, Mode::Swr, Mode::Early],
        errors,
    );
    only(
        args.lock_wait.as_ref().map(|d| d.span),
        "lock_wait",
        &[Mode::Lock],
        errors,
    );
    only(args.stale.as_ref().map(|d| d.span), "stale", &[Mode::Swr], errors);
    only(args.beta.map(|(_, s)| s), "beta", &[Mode::Early], errors);
    if args.soft_timeout.is_none() {
        only(
            args.refresh.map(|(_, s)| s),
            "refresh",
            &[Mode::Swr, Mode::Early],
            errors,
        );
    }
    only(
        args.sliding.filter(|(on, _)| *on).map(|(_, s)| s),
        "sliding",
        &[Mode::Lock, Mode::None],
        errors,
    );
}
