//! Checks on the function an attribute is applied to, and what the expansion
//! needs to know about it.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::args::{Args, Attr, Errors, Mode, Refresh};
use crate::template::Segment;

/// What the expansion needs from the signature.
pub(crate) struct Checked<'a> {
    /// The arguments the default key is made of, in order (not `self`, nor
    /// an argument that is the cache).
    pub(crate) key_args: Vec<&'a Ident>,
    /// Every named argument (not `self`), the cache among them.
    pub(crate) arguments: Vec<&'a Ident>,
    /// The arguments the key and tags are made of, in order, with their
    /// types: what the companion of a `#[cached]` function takes.
    pub(crate) entry_args: Vec<(&'a Ident, &'a Type)>,
    /// The return type, if the function has one.
    pub(crate) ret: Option<&'a Type>,
    /// What is cached: the return type, or `T` of `Result<T, E>`.
    pub(crate) value: Option<&'a Type>,
    /// Whether the function returns a `Result` (its `Err` is never cached,
    /// and invalidates nothing).
    pub(crate) returns_result: bool,
    /// Whether `#[async_trait]` made the function return its body as a
    /// boxed future (`ret` is then that future's output).
    pub(crate) boxed: bool,
    /// Whether the body's future is made `'static`, to run on a task of its
    /// own (a refresh in the background, a load past `soft_timeout`).
    pub(crate) detached: Detached,
}

/// Whether a `#[cached]` function's loads may run on a task of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detached {
    No,
    /// Its arguments are owned: the body's future is `'static` as it is.
    Owned,
    /// A `&self` method: `self` is cloned into the load.
    CloningSelf,
}

/// Whether a function's future can be made `'static`.
enum Detach {
    /// A free function whose arguments are all owned.
    Owned,
    /// A `&self` method whose other arguments are owned: with `self` cloned
    /// into the load.
    Receiver,
    /// No: where, and why.
    Borrowed(Span, String),
}

/// Checks `func` and the templates of `args` against it.
pub(crate) fn check<'a>(
    attr: Attr,
    func: &'a ItemFn,
    args: &Args,
    errors: &mut Errors,
) -> Option<Checked<'a>> {
    let sig = &func.sig;
    let name = attr.name();
    // `#[async_trait]` on the impl has already made the `async fn` a plain
    // one returning its body as a boxed future.
    let boxed = match &sig.output {
        ReturnType::Type(_, ret) if sig.asyncness.is_none() => boxed_future_output(ret),
        _ => None,
    };
    if sig.asyncness.is_none() && boxed.is_none() {
        errors.add(
            sig.fn_token.span,
            format!(
                "{name} applies to an `async fn`; make the function `async` (the cache is asynchronous). \
                 Under `#[async_trait]`, put `#[async_trait]` on the impl and {name} on its `async fn`"
            ),
        );
    }
    let Inputs {
        has_self,
        mut named,
        mut arg_types,
        unnamed,
        ..
    } = inputs(attr, sig, errors);
    for template in args.templates() {
        check_placeholders(template.lit.span(), &template.segments, &named, has_self, errors);
    }
    match attr {
        // A misspelt option may be the one missing: its error says enough.
        _ if args.unknown_option => {}
        Attr::Cached if args.key.is_none() => {
            // A default key has no part of `self`: instances that differ
            // (two tenants' repositories) would read each other's entries.
            if let Some(receiver) = sig.receiver() {
                // The template the default key would have been, for the hint.
                let mut shared = sig.ident.to_string();
                for arg in &named {
                    shared.push_str(&format!(":<{arg}>"));
                }
                errors.add(
                    receiver.self_token.span,
                    format!(
                        "a method needs `key = \"...\"`: a default key leaves `self` out, so every instance \
                         would share one entry per argument; name what tells instances apart, \
                         e.g. `key = \"<self.tenant>:{shared}\"`, or share on purpose with `key = \"{shared}\"`"
                    ),
                );
            }
            for span in unnamed {
                errors.add(
                    span,
                    "the default key is made of every argument, and this one has no name; \
                     bind it to a name or give a `key = \"...\"` template",
                );
            }
        }
        Attr::CachePut if args.key.is_none() && args.entry.is_none() => errors.add(
            Span::call_site(),
            "#[cache_put] needs `entry = ...`: the #[cached] function whose value it writes, named by a call \
             with the arguments of its key, such as `entry = product(id)` or `entry = self.price(id)`",
        ),
        Attr::Invalidate if args.keys.is_none() && args.tags.is_none() && args.entries.is_none() => errors.add(
            Span::call_site(),
            "#[invalidate] needs `entries = [...]`, `keys = [...]`, `tags = [...]` or several: what to invalidate \
             after the body, such as `entries = [product(id)]`",
        ),
        _ => {}
    }
    let ret = match &sig.output {
        ReturnType::Type(..) if boxed.is_some() => boxed,
        ReturnType::Type(_, ret) => Some(&**ret),
        ReturnType::Default if attr == Attr::Invalidate => None,
        ReturnType::Default => {
            errors.add(
                sig.ident.span(),
                format!("{name} needs a function that returns a value to cache; add a return type"),
            );
            return None;
        }
    };
    let (value, returns_result) = match ret.map(|ret| (ret, result_ok_type(ret))) {
        Some((_, Some(ok))) => (Some(ok), true),
        Some((ret, None)) => (Some(ret), false),
        None => (None, false),
    };
    if let (Some(timeout), Some(_), false) = (&args.hard_timeout, ret, returns_result) {
        errors.add(
            timeout.span,
            "`hard_timeout` needs a function that returns `Result`: a load that times out \
             returns `Err(E::from(aside::Timeout))`",
        );
    }
    if let Some(value) = value {
        check_owned(name, value, errors);
    }
    // An argument that *is* the cache (`cache = cache`) is not part of the default key.
    let cache_arg = match &args.cache {
        Some(syn::Expr::Path(path)) => path.path.get_ident(),
        _ => None,
    };
    let arguments = named.clone();
    named.retain(|arg| Some(*arg) != cache_arg);
    // The companion takes what the key and tags are made of.
    let mut used: Vec<&str> = args
        .templates()
        .flat_map(|t| &t.segments)
        .filter_map(|segment| match segment {
            Segment::Placeholder(path) => Some(path[0].as_str()),
            Segment::Lit(_) => None,
        })
        .collect();
    let default_key: Vec<String> = match (&args.key, attr) {
        (None, Attr::Cached) => named.iter().map(|arg| arg.to_string()).collect(),
        _ => Vec::new(),
    };
    used.extend(default_key.iter().map(String::as_str));
    arg_types.retain(|(arg, _)| used.iter().any(|used| *arg == used));
    let detached = match attr {
        Attr::Cached => detached(args, detach(sig, boxed.is_some()), errors),
        Attr::CachedBatch | Attr::CachePut | Attr::Invalidate => Detached::No,
    };
    Some(Checked {
        key_args: named,
        arguments,
        entry_args: arg_types,
        ret,
        value,
        returns_result,
        boxed: boxed.is_some(),
        detached,
    })
}

/// A borrowed value cannot come back out of the cache: say so here, not as
/// serde's "Deserialize is not general enough".
pub(crate) fn check_owned(name: &str, value: &Type, errors: &mut Errors) {
    if let Type::Reference(reference) = value {
        errors.add(
            reference.and_token.span,
            format!(
                "{name} returns a value decoded from the cache, which cannot borrow; return an owned type \
                 (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`)"
            ),
        );
    }
}

/// A function's arguments, as the attributes see them.
pub(crate) struct Inputs<'a> {
    /// Whether it is a method; a receiver other than `&self` (`&mut self`
    /// for `#[invalidate]`) is an error.
    pub(crate) has_self: bool,
    pub(crate) named: Vec<&'a Ident>,
    pub(crate) arg_types: Vec<(&'a Ident, &'a Type)>,
    /// Where arguments without a plain name (patterns) are.
    pub(crate) unnamed: Vec<Span>,
    /// The named arguments written `mut`.
    pub(crate) mutable: Vec<&'a Ident>,
}

pub(crate) fn inputs<'a>(attr: Attr, sig: &'a syn::Signature, errors: &mut Errors) -> Inputs<'a> {
    let name = attr.name();
    let mut has_self = false;
    let mut named = Vec::new();
    let mut arg_types = Vec::new();
    let mut unnamed = Vec::new();
    let mut mutable = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                has_self = true;
                let problem = match (&receiver.reference, &receiver.mutability, &receiver.colon_token) {
                    (Some(_), None, None) => None,
                    // `#[invalidate]` always runs the body, so it may mutate.
                    (Some(_), Some(_), None) if attr == Attr::Invalidate => None,
                    (Some(_), Some(mutability), None) => Some((mutability.span, "`&mut self`")),
                    (None, _, None) => Some((receiver.self_token.span, "`self` by value")),
                    (_, _, Some(_)) => Some((receiver.self_token.span, "a typed `self`")),
                };
                if let Some((span, what)) = problem {
                    let reason = match attr {
                        Attr::Cached | Attr::CachedBatch => {
                            "a cached call may skip the body, so the body must not consume or mutate `self`"
                        }
                        Attr::CachePut | Attr::Invalidate => {
                            "the cache is reached through `self` after the body ran"
                        }
                    };
                    let allowed = if attr == Attr::Invalidate {
                        "`&self` or `&mut self`"
                    } else {
                        "`&self`"
                    };
                    errors.add(
                        span,
                        format!("{name} methods must take {allowed}, not {what}: {reason}"),
                    );
                }
            }
            FnArg::Typed(typed) => match &*typed.pat {
                // A hit skips the body, and what it would have changed.
                Pat::Ident(pat)
                    if matches!(attr, Attr::Cached | Attr::CachedBatch)
                        && matches!(&*typed.ty, Type::Reference(r) if r.mutability.is_some()) =>
                {
                    let Type::Reference(reference) = &*typed.ty else {
                        unreachable!("matched above")
                    };
                    errors.add(
                        reference.mutability.span(),
                        format!(
                            "{name} functions may not take `&mut` arguments: a hit skips the body, and its changes to `{}` with it; take `&` and return what changes",
                            pat.ident
                        ),
                    );
                    named.push(&pat.ident);
                    arg_types.push((&pat.ident, &*typed.ty));
                }
                Pat::Ident(pat) if pat.subpat.is_none() => {
                    named.push(&pat.ident);
                    arg_types.push((&pat.ident, &*typed.ty));
                    if pat.mutability.is_some() {
                        mutable.push(&pat.ident);
                    }
                }
                other => unnamed.push(other.span()),
            },
        }
    }
    Inputs {
        has_self,
        named,
        arg_types,
        unnamed,
        mutable,
    }
}

/// Whether a `#[cached]` function's loads run on a task of their own: what
/// `refresh` asks, or by default, an swr or early refresh where the future
/// can be made `'static` as it is; `soft_timeout` needs it.
fn detached(args: &Args, detach: Detach, errors: &mut Errors) -> Detached {
    let refreshes = matches!(args.stampede, Some((Mode::Swr | Mode::Early, _)));
    let soft = args.soft_timeout.as_ref().map(|soft| soft.span);
    match (args.refresh, detach) {
        (Some((Refresh::Inline, _)), _) => Detached::No,
        (Some((Refresh::Background, _)), Detach::Owned) => Detached::Owned,
        (Some((Refresh::Background, _)), Detach::Receiver) => Detached::CloningSelf,
        (Some((Refresh::Background, span)), Detach::Borrowed(at, why)) => {
            errors.add(
                span,
                "`refresh = \"background\"` runs the refresh on a task of its own, which cannot borrow from its caller",
            );
            errors.add(at, why);
            Detached::No
        }
        (None, Detach::Owned) if refreshes || soft.is_some() => Detached::Owned,
        // A `&self` method too: `self` is cloned into the refresh, and a
        // `Self` that cannot be is a compile error that says what to do.
        (None, Detach::Receiver) if refreshes || soft.is_some() => Detached::CloningSelf,
        (None, Detach::Receiver) => Detached::No,
        (None, Detach::Borrowed(at, why)) => {
            if let Some(soft) = soft {
                errors.add(
                    soft,
                    "`soft_timeout` lets a slow load finish on a task of its own, which cannot borrow from its caller",
                );
                errors.add(at, why);
            }
            Detached::No
        }
        (None, Detach::Owned) => Detached::No,
    }
}

/// Whether the future of a function with `sig` can be made `'static`: only
/// by what its signature says, as a macro sees it.
fn detach(sig: &syn::Signature, boxed: bool) -> Detach {
    if boxed {
        let why = "under `#[async_trait]` the body is a boxed future that borrows the arguments";
        return Detach::Borrowed(Span::call_site(), why.to_owned());
    }
    if let Some(param) = sig.generics.params.first() {
        let why = "a generic function's arguments may borrow";
        return Detach::Borrowed(param.span(), why.to_owned());
    }
    let mut receiver = false;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(_) => receiver = true,
            FnArg::Typed(typed) => {
                if let Some(span) = borrowed(quote::ToTokens::to_token_stream(&*typed.ty)) {
                    let arg = quote::ToTokens::to_token_stream(&*typed.pat);
                    let why = format!(
                        "`{arg}` is borrowed; take it owned (`String` for `&str`, `Vec<T>` for `&[T]`, `T` for `&T`)"
                    );
                    return Detach::Borrowed(span, why);
                }
            }
        }
    }
    if receiver {
        Detach::Receiver
    } else {
        Detach::Owned
    }
}

/// Where a type borrows: a reference or lifetime other than `'static`, or
/// an `impl Trait`.
fn borrowed(tokens: proc_macro2::TokenStream) -> Option<Span> {
    use proc_macro2::TokenTree;
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is_static = |at: usize| {
        matches!(
            (tokens.get(at), tokens.get(at + 1)),
            (Some(TokenTree::Punct(tick)), Some(TokenTree::Ident(name))) if tick.as_char() == '\'' && name == "static"
        )
    };
    for (at, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Punct(amp) if amp.as_char() == '&' && !is_static(at + 1) => return Some(amp.span()),
            TokenTree::Punct(tick) if tick.as_char() == '\'' && !is_static(at) => return Some(tick.span()),
            TokenTree::Ident(name) if name == "impl" => return Some(name.span()),
            TokenTree::Group(group) => {
                if let Some(span) = borrowed(group.stream()) {
                    return Some(span);
                }
            }
            _ => {}
        }
    }
    None
}

pub(crate) fn check_placeholders(
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
    only_type_argument(ty, "Result")
}

/// `R` if `ty` is `Pin<Box<dyn Future<Output = R> + ...>>`: what
/// `#[async_trait]` makes of an `async fn`'s return type.
fn boxed_future_output(ty: &Type) -> Option<&Type> {
    let Type::TraitObject(object) = only_type_argument(only_type_argument(ty, "Pin")?, "Box")? else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if last.ident == "Future" && assoc.ident == "Output" => {
                Some(&assoc.ty)
            }
            _ => None,
        })
    })
}

/// `A` if `ty` is written `name<A, ...>` (any path ending in `name`).
pub(crate) fn only_type_argument<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(inner) if last.ident == name => Some(inner),
        _ => None,
    }
}
