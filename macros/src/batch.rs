//! `#[cached_batch]`: checks and code generation.
//!
//! ```text
//! // Input:
//! #[cached_batch(key = "product:<id>", ttl = "1h", tags = ["product:<id>"])]
//! async fn products(db: &Db, ids: &[u64]) -> Result<HashMap<u64, Product>, DbError> { body }
//!
//! // Output (roughly):
//! async fn products(db: &Db, ids: &[u64]) -> Result<HashMap<u64, Product>, DbError> {
//!     let options = Policy::new().ttl(..).function(&FUNCTION);
//!     let cache: &Cache = &*current();
//!     let entry = |id: &u64| (KeyBuilder::new("product:").arg(&id).finish(), { let mut p = options.clone(); p.tag_built(|tag| ..); p });
//!     let load = |missing: Vec<u64>| {
//!         let db = db.clone();
//!         async move { let ids: &[u64] = &missing; body }
//!     };
//!     cache.get_or_load_batch(ids.iter().cloned(), entry, load).await
//! }
//! ```
//!
//! The body may run more than once per call (ids whose wait for another
//! caller's load ended without a value are loaded in a second round), so
//! each run gets its own clone of the other arguments (references clone as
//! themselves).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, ReturnType, Type};

use crate::args::{Args, Attr, Errors};
use crate::expand::{
    body_tokens, cache_ref, function_static, key_from_template, key_template, policy_options,
    tag_into_policy, with_tags, Negative,
};
use crate::template::Segment;
use crate::validate::{check_owned, check_placeholders, inputs, only_type_argument, Inputs};

/// What the expansion needs from the signature.
pub(crate) struct Checked<'a> {
    /// The argument that is the batch of ids, and its type.
    batch: (&'a Ident, &'a Type),
    /// One id's type: `T` of `&[T]` or `Vec<T>`.
    id: &'a Type,
    /// Whether the batch is a `Vec<T>` (else `&[T]`).
    owned: bool,
    /// The name of one id in the templates.
    each: Ident,
    /// The other arguments: each run of the body gets a clone.
    others: Vec<&'a Ident>,
    /// The arguments written `mut`, which the body may mutate.
    mutable: Vec<&'a Ident>,
    ret: &'a Type,
    /// `V` of the returned `HashMap<Id, V>`: what is cached per id.
    value: &'a Type,
    returns_result: bool,
}

pub(crate) fn check<'a>(func: &'a ItemFn, args: &Args, errors: &mut Errors) -> Option<Checked<'a>> {
    let attr = Attr::CachedBatch;
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.add(
            sig.fn_token.span,
            "#[cached_batch] applies to an `async fn`; make the function `async` (the cache is asynchronous)",
        );
    }
    let Inputs {
        has_self,
        arg_types,
        unnamed,
        mutable,
        ..
    } = inputs(attr, sig, errors);
    for span in unnamed {
        errors.add(span, "#[cached_batch] needs every argument bound to a name");
    }
    let batches: Vec<_> = arg_types
        .iter()
        .filter_map(|&(name, ty)| Some((name, ty, batch_item(ty)?)))
        .collect();
    let (batch, id, owned) = match batches.as_slice() {
        [(name, ty, (id, owned))] => ((*name, *ty), *id, *owned),
        [] => {
            errors.add(
                sig.paren_token.span.join(),
                "#[cached_batch] needs one argument that is the batch of ids, `&[T]` or `Vec<T>`: \
                 `ids: &[u64]`",
            );
            return None;
        }
        [_, (name, ..), ..] => {
            errors.add(
                name.span(),
                "#[cached_batch] takes one batch of ids (`&[T]` or `Vec<T>`); pass the others as one type \
                 that is not a slice or a `Vec`",
            );
            return None;
        }
    };
    // `<id>` for `ids`, unless `each` names it.
    let each = match &args.each {
        Some(each) => each.clone(),
        None => match batch.0.to_string().strip_suffix('s') {
            // A name, not a keyword (`types` would give `type`).
            Some(singular) if syn::parse_str::<Ident>(singular).is_ok() => {
                Ident::new(singular, batch.0.span())
            }
            _ => {
                errors.add(
                    batch.0.span(),
                    format!(
                        "name one id of `{}` for the templates with `each = \"...\"`, as in \
                         `each = \"id\", key = \"product:<id>\"`",
                        batch.0
                    ),
                );
                return None;
            }
        },
    };
    let others: Vec<&Ident> = arg_types
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != batch.0)
        .collect();
    if others.iter().chain([&batch.0]).any(|name| **name == each) {
        errors.add(
            args.each.as_ref().map_or(batch.0.span(), Ident::span),
            format!(
                "`{each}` already names an argument; name one id of `{}` otherwise with `each = \"...\"`",
                batch.0
            ),
        );
        return None;
    }
    let Some(key) = &args.key else {
        errors.add(
            Span::call_site(),
            format!(
                "#[cached_batch] needs `key = \"...\"`: the key of one id, `<{each}>`, as the single-item \
                 #[cached] function writes it, so that both share entries"
            ),
        );
        return None;
    };
    let mut names = others.clone();
    names.push(&each);
    for template in args.templates() {
        let whole = template
            .segments
            .iter()
            .any(|segment| matches!(segment, Segment::Placeholder(path) if *batch.0 == path[0]));
        if whole {
            errors.add(
                template.lit.span(),
                format!("`<{}>` is the whole batch; one id of it is `<{each}>`", batch.0),
            );
        } else {
            check_placeholders(template.lit.span(), &template.segments, &names, has_self, errors);
        }
    }
    let per_id = key
        .segments
        .iter()
        .any(|segment| matches!(segment, Segment::Placeholder(path) if each == path[0]));
    if !per_id {
        errors.add(
            key.lit.span(),
            format!("the key must contain `<{each}>`: each id has an entry of its own"),
        );
    }
    let ReturnType::Type(_, ret) = &sig.output else {
        errors.add(
            sig.ident.span(),
            "#[cached_batch] returns `HashMap<Id, V>` or `Result<HashMap<Id, V>, E>`; add a return type",
        );
        return None;
    };
    let (map, returns_result) = match only_type_argument(ret, "Result") {
        Some(ok) => (ok, true),
        None => (&**ret, false),
    };
    let Some(value) = map_value(map) else {
        errors.add(
            map.span(),
            "#[cached_batch] returns `HashMap<Id, V>` or `Result<HashMap<Id, V>, E>`: a value for each id \
             found; an id left out is cached as absent",
        );
        return None;
    };
    check_owned(attr.name(), value, errors);
    Some(Checked {
        batch,
        id,
        owned,
        each,
        others,
        mutable,
        ret,
        value,
        returns_result,
    })
}

/// `(T, false)` for `&[T]`, `(T, true)` for `Vec<T>`.
fn batch_item(ty: &Type) -> Option<(&Type, bool)> {
    match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Slice(slice) => Some((&slice.elem, false)),
            _ => None,
        },
        ty => Some((only_type_argument(ty, "Vec")?, true)),
    }
}

/// `V` of `HashMap<K, V>` (any path ending in `HashMap`).
fn map_value(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [syn::GenericArgument::Type(_), syn::GenericArgument::Type(value), ..] if last.ident == "HashMap" => {
            Some(value)
        }
        _ => None,
    }
}

pub(crate) fn expand(args: &Args, func: &ItemFn, checked: &Checked<'_>) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let rt = quote!(::aside::__private);
    let Checked {
        batch: (batch, _),
        id,
        owned,
        each,
        others,
        mutable,
        ret,
        value,
        returns_result,
    } = checked;
    let mutability = |name: &Ident| mutable.contains(&name).then(|| quote!(mut));
    // The arguments are only read outside the body: its runs get their own
    // bindings, `mut` where the signature says so.
    let mut sig = sig.clone();
    for input in &mut sig.inputs {
        if let syn::FnArg::Typed(typed) = input {
            if let syn::Pat::Ident(pat) = &mut *typed.pat {
                pat.mutability = None;
            }
        }
    }
    let sig = &sig;
    let key = key_from_template(args.key.as_ref().expect("checked"));
    let tags: Vec<TokenStream> = args
        .tags
        .iter()
        .flatten()
        .map(|tag| tag_into_policy(tag, &[]))
        .collect();
    let policy = with_tags(quote!(::core::clone::Clone::clone(&__aside_options)), &tags);
    let options = policy_options(args, value, Negative::Always);
    let function = function_static(sig, key_template(args, sig, &[]));
    let (cache_owner, cache) = cache_ref(args);
    let missing = Ident::new("__aside_missing", Span::call_site());
    // The batch's own type, but for its lifetime: the ids are the run's own.
    let batch_mut = mutability(batch);
    let batch_value = if *owned {
        quote!(let #batch_mut #batch: ::std::vec::Vec<#id> = #missing;)
    } else {
        quote!(let #batch_mut #batch: &[#id] = &#missing;)
    };
    let stmts = &block.stmts;
    let body = body_tokens(Some(ret), quote!(#batch_value #(#stmts)*));
    // Spanned at the argument, where one that cannot be cloned is reported.
    let clones = others.iter().map(|other| {
        let other_mut = mutability(other);
        quote_spanned! {other.span()=>
            // Whether or not the body uses it.
            #[allow(unused_variables, unused_mut)]
            let #other_mut #other = ::core::clone::Clone::clone(&#other);
        }
    });
    // Spanned at the cached type, where one serde cannot round-trip is
    // reported; the locals carry that span where they are bound and where
    // they are used, so they resolve whatever hygiene context the return
    // type's tokens come from (as in `expand.rs`).
    let span = value.span();
    let [cache_var, entry_var, load_var] =
        ["__aside_cache", "__aside_entry", "__aside_load"].map(|n| Ident::new(n, span));
    let call = quote_spanned! {span=>
        #cache_var.get_or_load_batch(#batch.iter().cloned(), #entry_var, #load_var).await
    };
    let (load, call) = if *returns_result {
        (quote!(async move #body), call)
    } else {
        (
            quote!(async move { ::core::result::Result::Ok::<#ret, #rt::Infallible>(async move #body.await) }),
            quote! {
                match #call {
                    ::core::result::Result::Ok(found) => found,
                    ::core::result::Result::Err(never) => match never {},
                }
            },
        )
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #function
            let __aside_options: #rt::Policy = #options.function(&__ASIDE_FUNCTION);
            #cache_owner
            let #cache_var: &#rt::Cache = #cache;
            let #entry_var = |#each: &#id| -> (::std::string::String, #rt::Policy) {
                (#key, #policy)
            };
            #[allow(unused_mut)]
            let mut #load_var = |#missing: ::std::vec::Vec<#id>| {
                #(#clones)*
                #load
            };
            #call
        }
    }
}
