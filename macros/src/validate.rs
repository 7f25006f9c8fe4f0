//! Checks on the function `#[cached]` is applied to, and what the expansion
//! needs to know about it.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::args::{CachedArgs, Errors};
use crate::template::Segment;

/// What the expansion needs from the signature.
pub(crate) struct Checked<'a> {
    /// The arguments the default key is made of, in order (not `self`, nor
    /// an argument that is the cache).
    pub(crate) key_args: Vec<&'a Ident>,
    /// The full return type.
    pub(crate) ret: &'a Type,
    /// What is cached: the return type, or `T` of `Result<T, E>`.
    pub(crate) value: &'a Type,
    /// Whether the function returns a `Result` (its `Err` is never cached).
    pub(crate) returns_result: bool,
}

/// Checks `func` and the placeholders of `args` against it.
pub(crate) fn check<'a>(func: &'a ItemFn, args: &CachedArgs, errors: &mut Errors) -> Option<Checked<'a>> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.add(
            sig.fn_token.span,
            "#[cached] applies to an `async fn`; make the function `async` (the cache is asynchronous)",
        );
    }
    let mut has_self = false;
    let mut named = Vec::new();
    let mut unnamed = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                has_self = true;
                let problem = match (&receiver.reference, &receiver.mutability, &receiver.colon_token) {
                    (Some(_), None, None) => None,
                    (Some(_), Some(mutability), None) => Some((mutability.span, "`&mut self`")),
                    (None, _, None) => Some((receiver.self_token.span, "`self` by value")),
                    (_, _, Some(_)) => Some((receiver.self_token.span, "a typed `self`")),
                };
                if let Some((span, what)) = problem {
                    errors.add(
                        span,
                        format!(
                            "#[cached] methods must take `&self`, not {what}: a cached call may skip the body, \
                             so the body must not consume or mutate `self`"
                        ),
                    );
                }
            }
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => named.push(&pat.ident),
                other => unnamed.push(other.span()),
            },
        }
    }
    match &args.key {
        Some(key) => check_placeholders(key.lit.span(), &key.segments, &named, has_self, errors),
        None => {
            for span in unnamed {
                errors.add(
                    span,
                    "the default key is made of every argument, and this one has no name; \
                     bind it to a name or give a `key = \"...\"` template",
                );
            }
        }
    }
    let ReturnType::Type(_, ret) = &sig.output else {
        errors.add(
            sig.ident.span(),
            "#[cached] needs a function that returns a value to cache; add a return type",
        );
        return None;
    };
    let (value, returns_result) = match result_ok_type(ret) {
        Some(ok) => (ok, true),
        None => (&**ret, false),
    };
    // An argument that *is* the cache (`cache = cache`) is not part of the default key.
    let cache_arg = match &args.cache {
        Some(syn::Expr::Path(path)) => path.path.get_ident(),
        _ => None,
    };
    named.retain(|arg| Some(*arg) != cache_arg);
    Some(Checked {
        key_args: named,
        ret,
        value,
        returns_result,
    })
}

fn check_placeholders(
    span: Span,
    segments: &[Segment],
    named: &[&Ident],
    has_self: bool,
    errors: &mut Errors,
) {
    for segment in segments {
        let Segment::Placeholder(path) = segment else {
            continue;
        };
        let root = &path[0];
        let known = if root == "self" {
            has_self
        } else {
            named.iter().any(|arg| *arg == root)
        };
        if !known {
            let mut available: Vec<String> = named.iter().map(|arg| arg.to_string()).collect();
            if has_self {
                available.insert(0, "self".into());
            }
            let available = if available.is_empty() {
                "it has none".to_owned()
            } else {
                format!("they are: {}", available.join(", "))
            };
            errors.add(
                span,
                format!(
                    "unknown placeholder `<{}>`: `{root}` is not an argument of this function; {available}",
                    path.join(".")
                ),
            );
        }
    }
}

/// `T` if `ty` is written `Result<T, E>` or `Result<T>` (any path ending in `Result`).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    match generics.args.first()? {
        GenericArgument::Type(ok) => Some(ok),
        _ => None,
    }
}
