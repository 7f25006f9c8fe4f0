//! Code generation for `#[cached]`, `#[cache_put]` and `#[invalidate]`.
//!
//! ```text
//! // Input:
//! #[cached(key = "product:<id>", ttl = 3600)]
//! async fn get_product(id: u64) -> Result<Option<Product>, DbError> { body }
//!
//! // Output (roughly):
//! fn __aside_parts_get_product(id: &u64) -> (Key, Policy) {
//!     let mut key = Key::default();
//!     key.lit("product:").int(*id);
//!     (key, Policy::new().ttl(..))
//! }
//! fn __aside_entry_get_product(id: &u64) -> CachedEntry<Option<Product>> {
//!     let (key, policy) = __aside_parts_get_product(id);
//!     CachedEntry::new(key.into(), policy) // with the function's cache, if it has one
//! }
//! async fn get_product(id: u64) -> Result<Option<Product>, DbError> {
//!     let (key, policy) = __aside_parts_get_product(&id);
//!     let current = current(); // the global cache, or that of an enclosing `with_global`
//!     let cache: &Cache = &*current;
//!     cache.get_or_load(&key, &policy, move || async move { body }).await
//! }
//! ```
//!
//! The companion (`__aside_entry_...`, see `entry.rs`) is what writers name;
//! it and the function build the key and policy with one parts function, so
//! a template or option is compiled, and a mistake in it reported, once.
//! Except where the options are all constants, as here (no tags, no
//! `unless`, literal durations): the function then writes its key itself
//! and takes its policy from a `static` built at compile time, and rustc
//! reports a mistake in the template once for both places.
//! A function that does not return `Result` is wrapped in
//! `Ok::<_, Infallible>` on the way in and unwrapped on the way out.
//! `#[cache_put]` is the same with `cache.put(...)`; `#[invalidate]` runs the
//! body and then, unless it returned an `Err`, invalidates its keys and tags.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn};

use crate::args::{Args, Attr, Codec, KeyTemplate, Mode, SpannedDuration, L1};
use crate::entry;
use crate::template::Segment;
use crate::validate::{Checked, Detached};

pub(crate) fn cached(attr: Attr, args: &Args, func: &ItemFn, checked: &Checked<'_>) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let (Some(ret), Some(value)) = (checked.ret, checked.value) else {
        unreachable!("validate rejects a #[cached] or #[cache_put] fn without a return type")
    };
    let rt = quote!(::aside::__private);

    // Where the key is built (the parts function, or the function itself),
    // each argument is a reference to its declared type: one declared as
    // an integer is written without `Display` (`KeyBuilder::int`).
    let integers: Vec<&Ident> = checked
        .entry_args
        .iter()
        .filter(|(_, ty)| is_integer(ty))
        .map(|(arg, _)| *arg)
        .collect();
    // A call's key, written in place into a `Key`, which a short key
    // fills without an allocation.
    let key = || {
        // Mixed-site: no argument of the user's, whatever its name, is shadowed.
        let key = Ident::new("__aside_key", Span::mixed_site());
        let written = match &args.key {
            Some(template) => template_writes(template, &integers, quote!(#key)),
            None => default_key(sig, &checked.key_args, &integers, quote!(#key)),
        };
        // An empty template (`key = ""`) writes nothing.
        let empty = matches!(&args.key, Some(template) if template.segments.is_empty());
        let written = (!empty).then(|| quote!(#written;));
        quote!({
            let mut #key = ::aside::__private::Key::default();
            #written
            #key
        })
    };
    let tags: Vec<TokenStream> = args
        .tags
        .iter()
        .flatten()
        .map(|tag| tag_into_policy(tag, &integers))
        .collect();
    let (cache_owner, cache) = cache_ref(args);
    // The call is spanned at the cached type, so that a type serde cannot
    // round-trip is reported on the return type rather than on the attribute.
    let span = value.span();
    let method = match (attr, checked.detached) {
        (Attr::CachePut, _) => Ident::new("put", span),
        (Attr::Cached | Attr::Invalidate, Detached::No) => Ident::new("get_or_load", span),
        (Attr::Cached | Attr::Invalidate, _) => Ident::new("get_or_load_detached", span),
        (Attr::CachedBatch, _) => unreachable!("#[cached_batch] expands in batch.rs"),
    };
    let body = match checked.detached {
        // The load owns a clone of `self`; the body sees `&` it, under
        // another name (`self` cannot be rebound).
        Detached::CloningSelf => {
            let stmts = &block.stmts;
            let stmts = rename_self(quote!(#(#stmts)*));
            // At the receiver's span, as its uses are: they resolve in the
            // context the function's tokens come from.
            let at = receiver_span(sig);
            let (this, owned) = (
                Ident::new("__aside_self", at),
                Ident::new("__aside_owned_self", at),
            );
            let body = body_tokens(checked.ret, quote!(let #this = &#owned; #stmts));
            quote!(async move #body)
        }
        Detached::No | Detached::Owned => user_future(checked, block),
    };
    // Spanned at the option, where a missing `From<aside::Timeout>` is reported.
    let body = match &args.hard_timeout {
        Some(after) => {
            let duration = duration(after);
            let make = quote_spanned!(after.span=> <_ as ::aside::__private::FromTimeout>::from_timeout);
            quote!(#rt::hard_timeout_with(::core::option::Option::Some(&__ASIDE_FUNCTION), #duration, #make, #body))
        }
        None => body,
    };
    let body = match checked.detached {
        Detached::CloningSelf => {
            // Spanned at the option that chose the background (`refresh`,
            // else `stampede` or `soft_timeout`), where a receiver that
            // cannot be cloned into it is reported.
            let at = args
                .refresh
                .map(|(_, span)| span)
                .or(args.stampede.map(|(_, span)| span))
                .or(args.soft_timeout.as_ref().map(|soft| soft.span))
                .unwrap_or_else(Span::call_site);
            let clone = quote_spanned!(at=> <() as ::aside::__private::OwnedReceiver<Self>>::cloner());
            let receiver = sig.receiver().map(|receiver| receiver.self_token);
            let owned = Ident::new("__aside_owned_self", receiver_span(sig));
            quote! {{
                let #owned = #clone(#receiver);
                move || #body
            }}
        }
        Detached::No | Detached::Owned => quote!(move || #body),
    };
    // The locals carry that same span where they are bound and where they
    // are used, so they resolve whatever hygiene context the return type's
    // tokens come from (a `macro_rules!` passing `$ret:ty` has its own).
    let [cache_var, key_var, policy_var, body_var] =
        ["__aside_cache", "__aside_key", "__aside_policy", "__aside_body"].map(|n| Ident::new(n, span));
    let call = if checked.returns_result {
        quote_spanned!(span=> #cache_var.#method(&#key_var, &#policy_var, #body).await)
    } else {
        quote_spanned! {span=>
            let #body_var = #body;
            match #cache_var
                .#method(&#key_var, &#policy_var, move || async move {
                    ::core::result::Result::Ok::<#ret, #rt::Infallible>(#body_var().await)
                })
                .await
            {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(never) => match never {},
            }
        }
    };

    // An `#[async_trait]` impl is a trait impl: no room for a companion.
    // Nor can one be built when an option is computed from an argument
    // (`ttl = ttl_of(kind)`): it only has the key's arguments.
    let written = args
        .policy_durations()
        .filter_map(|duration| duration.expr.as_ref())
        .chain(&args.unless)
        .map(|expr| quote!(#expr))
        .collect();
    let options_use_arguments = mentions_any(&written, &checked.key_args);
    let has_companion = attr == Attr::Cached && args.companion && !checked.boxed && !options_use_arguments;
    let parts_name = entry::parts(&sig.ident);
    // A call of the parts function (see below) with `args`.
    let call_parts = |args: Vec<TokenStream>| {
        let turbofish = turbofish(sig);
        match sig.receiver() {
            Some(_) => quote!(self.#parts_name #turbofish (#(#args),*)),
            None => quote!(#parts_name #turbofish (#(#args),*)),
        }
    };
    // The options, without the tags: evaluated where the arguments are
    // still themselves (the key and tags see them by reference).
    let options = policy_options(args, value, Negative::IfOption);
    let key_and_policy = match &args.entry {
        // The #[cached] function's key, policy and cache (see `entry_target`);
        // a value of another type is a mismatch at the return type.
        Some(call) => {
            let value_type = quote_spanned!(span=> ::core::marker::PhantomData<#value>);
            let fallback = args
                .cache
                .as_ref()
                .map(|expr| quote_spanned!(expr.span()=> &(#expr)));
            // Spanned at the entry, where a mismatch is reported.
            let entry = quote_spanned!(call.span()=> __aside_entry);
            let target = entry_target(fallback, entry.clone());
            let entry_value = quote_spanned!(call.span()=> __aside_entry.value_type());
            quote! {
                let __aside_entry = #call;
                let _: #value_type = #entry_value;
                let (#key_var, mut #policy_var, __aside_entry_cache) = #target;
            }
        }
        // The parts function's, shared with the companion: the template
        // and options are compiled (and any mistake in them reported) once.
        None if has_companion => {
            let by_ref = checked.entry_args.iter().map(|(arg, _)| quote!(&#arg)).collect();
            let parts = call_parts(by_ref);
            quote! {
                let (#key_var, mut #policy_var): (#rt::Key, #rt::Policy) = #parts;
            }
        }
        None => {
            // Built from references to the arguments, as in a companion.
            let key = key();
            let by_ref = checked
                .entry_args
                .iter()
                .map(|(arg, _)| quote!(let #arg = &#arg;));
            let policy = with_tags(quote!(__aside_options), &tags);
            quote! {
                let (#key_var, mut #policy_var): (#rt::Key, #rt::Policy) = {
                    let __aside_options: #rt::Policy = #options;
                    #(#by_ref)*
                    (#key, #policy)
                };
            }
        }
    };
    // The companion, which writers name the entry by, and the parts
    // function that it and the function build the key and policy with.
    let companion = has_companion.then(|| {
        let name = entry::companion(&sig.ident);
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let receiver = sig.receiver().map(|_| quote!(&self,));
        let params: Vec<_> = checked.entry_args.iter().map(|(arg, ty)| quote!(#arg: &#ty)).collect();
        let key = key();
        let parts = call_parts(checked.entry_args.iter().map(|(arg, _)| quote!(#arg)).collect());
        let parts_policy = with_tags(options.clone(), &tags);
        // The entry knows the function's cache unless an argument gives it:
        // the same `cache =` tokens as the function's, so that a wrong type
        // is one error (counted twice by rustc), not two.
        let (knows, new) = match &args.cache {
            Some(expr) if mentions_any(&quote!(#expr), &checked.arguments) => (
                quote!(false),
                quote!(#rt::CachedEntry::without_cache(__aside_key, __aside_policy)),
            ),
            Some(_) => (
                quote!(true),
                quote! {{
                    let #cache_var: &#rt::Cache = #cache;
                    #rt::CachedEntry::new_in(__aside_key, __aside_policy, #rt::Cache::clone(#cache_var))
                }},
            ),
            None => (quote!(true), quote!(#rt::CachedEntry::new(__aside_key, __aside_policy))),
        };
        quote! {
            #[doc(hidden)]
            #[allow(dead_code, clippy::all)]
            #vis fn #name #generics (#receiver #(#params),*) -> #rt::CachedEntry<#value, #knows> #where_clause {
                let (__aside_key, __aside_policy) = #parts;
                let __aside_key = ::std::string::String::from(__aside_key);
                #new
            }

            #[doc(hidden)]
            #[allow(dead_code, clippy::all)]
            #vis fn #parts_name #generics (#receiver #(#params),*) -> (#rt::Key, #rt::Policy) #where_clause {
                (#key, #parts_policy)
            }
        }
    });

    let function = function_static(sig, key_template(args, sig, &checked.key_args));
    let cache = match &args.entry {
        Some(_) => quote!(let #cache_var: &#rt::Cache = &__aside_entry_cache;),
        None => quote!(#cache_owner let #cache_var: &#rt::Cache = #cache;),
    };
    // A policy that is the same on every call is built once, at compile
    // time: a call then only builds its key.
    let policy = match constant_policy(args, value) {
        Some(policy) => {
            // Built here, not by the parts function: its policy would be
            // built and dropped for nothing (unless inlined away).
            let key = key();
            let by_ref = checked
                .entry_args
                .iter()
                .map(|(arg, _)| quote!(let #arg = &#arg;));
            // Checked here, where the value's type may name the function's
            // type parameters or `Self` (a `static` cannot).
            let check = args.negative_ttl.as_ref().map(|d| {
                let check = quote_spanned!(d.span=> <#value as #rt::CanBeNegative>::negative_ttl);
                quote!(let _ = #check;)
            });
            quote! {
                let #key_var: #rt::Key = { #(#by_ref)* #key };
                #check
                #function
                static __ASIDE_POLICY: #rt::Policy = #policy.function(&__ASIDE_FUNCTION);
                let #policy_var: &#rt::Policy = &__ASIDE_POLICY;
            }
        }
        None => quote! {
            #key_and_policy
            #function
            // In place: a policy is a few hundred bytes.
            #policy_var.set_function(&__ASIDE_FUNCTION);
        },
    };
    let run = boxed_if_needed(
        checked,
        quote! {
            #policy
            #cache
            #call
        },
    );
    quote! {
        #companion
        #(#attrs)*
        #vis #sig {
            #run
        }
    }
}

/// Whose values `negative_ttl` applies to: a function's value, which must
/// be able to be `None`; or a batch's, whose absent ids are negative.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negative {
    IfOption,
    Always,
}

/// [`policy_options`] as a constant expression, if the function's policy
/// is one: no tags, no `unless`, no `entry =`, every duration a literal.
/// Its `negative_ttl` is left unchecked: the caller checks it against the
/// value's type (a trait's function is no constant).
fn constant_policy(args: &Args, value: &syn::Type) -> Option<TokenStream> {
    let literal = args.policy_durations().all(|d| d.value.is_some());
    let constant = literal && args.tags.is_none() && args.unless.is_none() && args.entry.is_none();
    constant.then(|| policy_options(args, value, Negative::Always))
}

/// `Policy::new()` with the options of `args`, without the key and tags.
/// `unless` is typed by `value`, the cached value, so that its closure's
/// argument needs no annotation.
pub(crate) fn policy_options(args: &Args, value: &syn::Type, negative: Negative) -> TokenStream {
    let rt = quote!(::aside::__private);
    let ttl = args.ttl.as_ref().map(|d| {
        let d = duration(d);
        quote!(.ttl(#d))
    });
    let negative_ttl = args.negative_ttl.as_ref().map(|d| {
        let ttl = duration(d);
        match negative {
            // A value that is never `None` is reported at its type.
            Negative::IfOption => {
                let check = quote_spanned!(d.span=> <#value as #rt::CanBeNegative>::negative_ttl);
                quote!(.negative_ttl(#check(#ttl)))
            }
            Negative::Always => quote!(.negative_ttl(#ttl)),
        }
    });
    let stampede = stampede(args);
    // `fail_safe_throttle` and `soft_timeout` are checked to come with it.
    let fail_safe = args.fail_safe.as_ref().map(|keep| {
        let keep_for = duration(keep);
        let keep = quote_spanned!(keep.span=> #rt::FailSafe::keep(#keep_for));
        let more = [
            ("throttle", &args.fail_safe_throttle),
            ("soft_timeout", &args.soft_timeout),
        ]
        .into_iter()
        .filter_map(|(name, d)| {
            let d = d.as_ref()?;
            let method = Ident::new(name, d.span);
            let d = duration(d);
            Some(quote!(.#method(#d)))
        });
        quote!(.fail_safe(#keep #(#more)*))
    });
    let jitter = args
        .jitter
        .map(|(jitter, span)| quote_spanned!(span=> .jitter(#jitter)));
    let sliding = args
        .sliding
        .map(|(sliding, span)| quote_spanned!(span=> .sliding(#sliding)));
    let codec = args.codec.map(|(codec, span)| match codec {
        Codec::Json => quote_spanned!(span=> .codec(#rt::Codec::Json)),
        // A const that is a `Codec` only with aside's `msgpack` feature.
        Codec::MessagePack => quote_spanned!(span=> .codec(#rt::MSGPACK)),
    });
    let l1 = args.l1.as_ref().map(|&(ref l1, span)| match l1 {
        L1::On => quote_spanned!(span=> .l1(true)),
        L1::Off => quote_spanned!(span=> .l1(false)),
        L1::Ttl(ttl) => {
            let ttl = duration(ttl);
            quote_spanned!(span=> .l1_ttl(#ttl))
        }
    });
    let unless = args
        .unless
        .as_ref()
        .map(|skip| quote_spanned!(skip.span()=> .unless::<#value>(#skip)));
    quote!(#rt::Policy::new() #ttl #negative_ttl #stampede #fail_safe #jitter #sliding #codec #l1 #unless)
}

/// `#[invalidate]`: the cache handle, keys and tags are taken from the
/// arguments first (the body may consume or mutate them), the body runs, then,
/// on success, they are invalidated.
pub(crate) fn invalidate(args: &Args, func: &ItemFn, checked: &Checked<'_>) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let rt = quote!(::aside::__private);
    let keys = args.keys.iter().flatten().map(key_from_template);
    let entries = args.entries.iter().flatten().map(|call| {
        let fallback = args.cache.as_ref().map(|_| quote!(&__aside_cache));
        let target = entry_target(fallback, call.clone());
        quote!({
            let (__aside_key, _, __aside_entry_cache) = #target;
            (__aside_key, __aside_entry_cache)
        })
    });
    let tags = args.tags.iter().flatten().map(key_from_template);
    let (cache_owner, cache) = cache_ref(args);
    let body = user_future(checked, block);
    let function = function_static(sig, None);
    let invalidate = quote! {
        #rt::invalidate_after_write(__aside_cache, __aside_keys, __aside_tags, __aside_entries, &__ASIDE_FUNCTION).await
    };
    // An `Err` is returned before any `.await`: it need not be `Send`.
    let run = if checked.returns_result {
        quote! {
            let __aside_value = match #body.await {
                ::core::result::Result::Ok(__aside_value) => __aside_value,
                ::core::result::Result::Err(__aside_error) => {
                    return ::core::result::Result::Err(__aside_error);
                }
            };
            #invalidate;
            ::core::result::Result::Ok(__aside_value)
        }
    } else {
        quote! {
            let __aside_result = #body.await;
            #invalidate;
            __aside_result
        }
    };
    let run = boxed_if_needed(
        checked,
        quote! {
            #function
            #cache_owner
            let __aside_cache: #rt::Cache = #rt::Cache::clone(#cache);
            let __aside_keys: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#keys),*];
            let __aside_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#tags),*];
            let __aside_entries: ::std::vec::Vec<(::std::string::String, #rt::Cache)> = ::std::vec![#(#entries),*];
            #run
        },
    );
    quote! {
        #(#attrs)*
        #vis #sig {
            #run
        }
    }
}

/// The `static` that the function's calls count into, named
/// `module::path::function` (its statistics, spans and metrics).
pub(crate) fn function_static(sig: &syn::Signature, template: Option<TokenStream>) -> TokenStream {
    let name = sig.ident.to_string();
    let template = template.map(|template| quote!(.key_template_is(#template)));
    quote! {
        static __ASIDE_FUNCTION: ::aside::__private::Function = ::aside::__private::Function::new(
            ::core::concat!(::core::module_path!(), "::", #name),
        ) #template;
    }
}

/// The key template of a function that writes its own keys, as a string
/// (for `aside::check_keys`): its `key = "..."`, or its default key's
/// shape; none for a generic function's default key, which names types.
pub(crate) fn key_template(args: &Args, sig: &syn::Signature, key_args: &[&Ident]) -> Option<TokenStream> {
    match &args.key {
        Some(template) => {
            let lit = &template.lit;
            Some(quote!(#lit))
        }
        None if args.entry.is_some() || sig.generics.type_params().next().is_some() => None,
        None => {
            let mut rest = format!("::{}", sig.ident);
            for arg in key_args {
                rest.push_str(&format!(":<{arg}>"));
            }
            Some(quote!(::core::concat!(::core::module_path!(), #rest)))
        }
    }
}

/// The function's body as a future: an `async` block of it, or, under
/// `#[async_trait]`, the body itself, which already is one.
fn user_future(checked: &Checked<'_>, block: &syn::Block) -> TokenStream {
    if checked.boxed {
        quote!(#block)
    } else {
        let body = body_block(checked.ret, block);
        quote!(async move #body)
    }
}

/// `run`, the statements of an `async fn`'s body; under `#[async_trait]`,
/// boxed as the future the function returns.
fn boxed_if_needed(checked: &Checked<'_>, run: TokenStream) -> TokenStream {
    if checked.boxed {
        quote!(::std::boxed::Box::pin(async move { #run }))
    } else {
        run
    }
}

/// The function's body as a block whose type is fixed to the return type,
/// ready to become an `async` block. The never-taken `return` fixes the
/// block's output type, so that `?` and `return` in the body type-check
/// exactly as they did before. The body's statements are spliced in, not
/// its block: a block `{ n }` as the tail of ours would draw the
/// `unused_braces` lint on the user's function.
fn body_block(ret: Option<&syn::Type>, block: &syn::Block) -> TokenStream {
    let stmts = &block.stmts;
    body_tokens(ret, quote!(#(#stmts)*))
}

/// [`body_block`] of statements given as tokens.
pub(crate) fn body_tokens(ret: Option<&syn::Type>, stmts: TokenStream) -> TokenStream {
    let ret = ret.map_or_else(|| quote!(()), |ret| quote!(#ret));
    quote! {
        {
            #[allow(
                unknown_lints, unreachable_code, clippy::diverging_sub_expression,
                clippy::let_unit_value, clippy::unreachable, clippy::empty_loop,
                clippy::needless_return
            )]
            if false {
                let __aside_fake_return: #ret = loop {};
                return __aside_fake_return;
            }
            #stmts
        }
    }
}

/// Where the method's `self` was written.
fn receiver_span(sig: &syn::Signature) -> Span {
    sig.receiver()
        .map_or_else(Span::call_site, |receiver| receiver.self_token.span)
}

/// `tokens` with each `self` (the receiver, not a `self::` path) renamed
/// `__aside_self`, at the same span.
fn rename_self(tokens: TokenStream) -> TokenStream {
    use proc_macro2::{Group, TokenTree};
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let path_follows =
        |at: usize| matches!(tokens.get(at + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':');
    tokens
        .iter()
        .enumerate()
        .map(|(at, token)| match token {
            TokenTree::Ident(ident) if ident == "self" && !path_follows(at) => {
                TokenTree::Ident(Ident::new("__aside_self", ident.span()))
            }
            TokenTree::Group(group) => {
                let mut renamed = Group::new(group.delimiter(), rename_self(group.stream()));
                renamed.set_span(group.span());
                TokenTree::Group(renamed)
            }
            other => other.clone(),
        })
        .collect()
}

/// `Duration::from_millis(n)` for a literal; the expression itself, typed
/// `Duration` where it was written, otherwise.
fn duration(d: &SpannedDuration) -> TokenStream {
    match (&d.value, &d.expr) {
        (Some(value), _) => {
            let ms = u64::try_from(value.as_millis()).unwrap_or(u64::MAX);
            quote!(::aside::__private::Duration::from_millis(#ms))
        }
        (None, expr) => quote_spanned! {d.span=>
            {
                let __aside_duration: ::aside::__private::Duration = #expr;
                __aside_duration
            }
        },
    }
}

/// `.stampede(...)`, if the attribute chose a mode or its options.
fn stampede(args: &Args) -> Option<TokenStream> {
    let rt = quote!(::aside::__private);
    let mode = args.stampede.map(|(mode, _)| mode);
    let chosen = match mode {
        None if args.lock_ttl.is_none() && args.lock_wait.is_none() => return None,
        None | Some(Mode::Lock) => {
            let lock_ttl = args
                .lock_ttl
                .as_ref()
                .map_or_else(|| quote!(#rt::Stampede::DEFAULT_LOCK_TTL), duration);
            let lock_wait = args
                .lock_wait
                .as_ref()
                .map_or_else(|| quote!(#rt::Stampede::DEFAULT_LOCK_WAIT), duration);
            quote!(#rt::Stampede::Lock { lock_ttl: #lock_ttl, lock_wait: #lock_wait })
        }
        Some(Mode::Swr) => {
            let stale = args
                .stale
                .as_ref()
                .map_or_else(|| quote!(#rt::Stampede::DEFAULT_STALE), duration);
            quote!(#rt::Stampede::Swr { stale: #stale })
        }
        Some(Mode::Early) => {
            let beta = args
                .beta
                .map_or_else(|| quote!(#rt::Stampede::DEFAULT_BETA), |(beta, _)| quote!(#beta));
            quote!(#rt::Stampede::Early { beta: #beta })
        }
        Some(Mode::None) => quote!(#rt::Stampede::None),
    };
    // With swr and early, `lock_ttl` is the refresh lock's.
    let refresh_lock = match mode {
        Some(Mode::Swr | Mode::Early) => args.lock_ttl.as_ref().map(|ttl| {
            let ttl = duration(ttl);
            quote!(.refresh_lock_ttl(#ttl))
        }),
        _ => None,
    };
    Some(quote!(.stampede(#chosen) #refresh_lock))
}

/// `&(expr)` for `cache = expr`; else the current global cache (that of an
/// enclosing `aside::with_global`, or the process's), with the statement
/// that holds it.
pub(crate) fn cache_ref(args: &Args) -> (Option<TokenStream>, TokenStream) {
    match &args.cache {
        Some(expr) => (None, quote_spanned!(expr.span()=> &(#expr))),
        None => (
            Some(quote!(let __aside_current = ::aside::__private::current();)),
            quote!(&*__aside_current),
        ),
    }
}

/// The key, policy and cache a writer writes the entry `entry` (an
/// expression) to: the entry's own cache; an entry that does not know it
/// (its function takes the cache as an argument) goes to `fallback`, the
/// writer's `cache =`, and without one it is a compile error at the entry.
fn entry_target(fallback: Option<TokenStream>, entry: TokenStream) -> TokenStream {
    match fallback {
        Some(cache) => quote!(#entry.into_target(#cache)),
        None => quote!(::aside::__private::KnowsItsCache::in_its_cache(#entry)),
    }
}

/// `::<T, N>` for a call of another function with the signature's type
/// and const parameters; nothing if it has none, or takes an `impl Trait`
/// (which rules explicit arguments out).
fn turbofish(sig: &syn::Signature) -> Option<TokenStream> {
    let params: Vec<&Ident> = sig
        .generics
        .params
        .iter()
        .filter_map(|param| match param {
            syn::GenericParam::Type(param) => Some(&param.ident),
            syn::GenericParam::Const(param) => Some(&param.ident),
            syn::GenericParam::Lifetime(_) => None,
        })
        .collect();
    let impl_trait = sig.inputs.iter().any(|input| {
        quote!(#input)
            .into_iter()
            .any(|tree| matches!(tree, proc_macro2::TokenTree::Ident(ident) if ident == "impl"))
    });
    (!params.is_empty() && !impl_trait).then(|| quote!(::<#(#params),*>))
}

/// `KeyBuilder::new("lit").arg(&a.b).lit(":")...finish()`, with every
/// argument spanned at the template so a non-`Display` value is reported there.
pub(crate) fn key_from_template(template: &KeyTemplate) -> TokenStream {
    let key = template_writes(template, &[], quote!(::aside::__private::KeyBuilder::new("")));
    quote!(#key.finish())
}

/// `policy` (an expression) with `tags`, each a [`tag_into_policy`],
/// written into it in place.
pub(crate) fn with_tags(policy: TokenStream, tags: &[TokenStream]) -> TokenStream {
    if tags.is_empty() {
        return policy;
    }
    // Mixed-site: no argument of the user's, whatever its name, is shadowed.
    let tagged = Ident::new("__aside_tagged", Span::mixed_site());
    quote!({
        let mut #tagged: ::aside::__private::Policy = #policy;
        #tagged #(#tags)*;
        #tagged
    })
}

/// `.tag_built(..)` on a policy: the tag `template` written straight into
/// the policy's buffer for its tags (no string of its own on every call).
/// `integers` as in [`template_writes`].
pub(crate) fn tag_into_policy(template: &KeyTemplate, integers: &[&Ident]) -> TokenStream {
    // Mixed-site: no argument of the user's, whatever its name, is shadowed.
    let tag = Ident::new("__aside_tag", Span::mixed_site());
    let written = template_writes(template, integers, quote!(#tag));
    quote!(.tag_built(|#tag: &mut ::aside::__private::Key| { #written; }))
}

/// `builder`, a `KeyBuilder` (or a `Key`, written in place), with the
/// segments of `template` written to it; each of `integers`, a reference
/// to an integer, is written with `int(*arg)`.
fn template_writes(template: &KeyTemplate, integers: &[&Ident], builder: TokenStream) -> TokenStream {
    let span = template.lit.span();
    let mut key = builder;
    for segment in &template.segments {
        key = match segment {
            Segment::Lit(text) => quote!(#key.lit(#text)),
            Segment::Placeholder(path) if path.len() == 1 && integers.iter().any(|arg| *arg == &path[0]) => {
                let value = field_path(path, span);
                quote_spanned!(span=> #key.int(*#value))
            }
            Segment::Placeholder(path) => {
                let value = field_path(path, span);
                quote_spanned!(span=> #key.arg(&#value))
            }
        };
    }
    key
}

/// Whether `ty` is a primitive integer type, written as such.
fn is_integer(ty: &syn::Type) -> bool {
    const INTEGERS: [&str; 12] = [
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
    ];
    matches!(ty, syn::Type::Path(path) if path.qself.is_none()
        && path.path.get_ident().is_some_and(|ident| INTEGERS.iter().any(|int| ident == int)))
}

/// `a.b.0` as an expression; `self` stays the receiver.
fn field_path(path: &[String], span: Span) -> TokenStream {
    let mut parts = path.iter();
    let root = parts.next().expect("a placeholder has a root");
    let mut expr = if root == "self" {
        quote_spanned!(span=> self)
    } else {
        let ident = Ident::new(root, span);
        quote!(#ident)
    };
    for part in parts {
        expr = match part.parse::<u32>() {
            Ok(index) => {
                let index = syn::Index { index, span };
                quote!(#expr.#index)
            }
            Err(_) => {
                // Located at the template, but marked as the macro's: a
                // misspelt field gets no suggestion to rewrite the whole
                // literal (`key = id`), which is all rustc could offer.
                let field = Ident::new(part, Span::call_site().located_at(span));
                quote!(#expr.#field)
            }
        };
    }
    expr
}

/// `module::path::fn_name:arg1:arg2...` written to `key` (a `Key`). A
/// method's prefix is its `Self` type instead (two impls in one module may
/// have methods of one name), and
/// a generic function's prefix names its type arguments (`f::<A>` and `f::<B>`
/// must not share entries).
fn default_key(sig: &syn::Signature, args: &[&Ident], integers: &[&Ident], key: TokenStream) -> TokenStream {
    let name = format!("::{}", sig.ident);
    // Only free functions have one: a method must give its key (validate).
    let owner = quote!(::core::module_path!());
    let type_args = sig.generics.type_params().enumerate().map(|(i, param)| {
        let open = if i == 0 { "<" } else { "," };
        let ident = &param.ident;
        quote!(.lit(#open).lit(::core::any::type_name::<#ident>()))
    });
    let close = sig.generics.type_params().next().map(|_| quote!(.lit(">")));
    let args = args.iter().map(|arg| match integers.contains(arg) {
        true => quote_spanned!(arg.span()=> .lit(":").int(*#arg)),
        false => quote_spanned!(arg.span()=> .lit(":").arg(&#arg)),
    });
    quote!(#key.lit(#owner).lit(#name) #(#type_args)* #close #(#args)*)
}

/// Whether `tokens` name any of `names` (an argument used in an option).
fn mentions_any(tokens: &TokenStream, names: &[&Ident]) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        proc_macro2::TokenTree::Ident(ident) => names.iter().any(|name| ident == **name),
        proc_macro2::TokenTree::Group(group) => mentions_any(&group.stream(), names),
        _ => false,
    })
}
