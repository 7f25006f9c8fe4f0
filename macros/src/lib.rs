//! Procedural macros for [`aside`](https://docs.rs/aside). Depend on `aside`,
//! which re-exports them; this crate holds no caching logic, only parsing,
//! validation and a call into `aside`'s runtime.

mod args;
mod batch;
mod conflicts;
mod entry;
mod expand;
mod template;
mod validate;

use proc_macro::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::args::{Args, Attr, Errors};

/// The attribute behind `aside::cached`, where its options are documented.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Attr::Cached, args, item)
}

/// The attribute behind `aside::cached_batch`, where its options are documented.
#[proc_macro_attribute]
pub fn cached_batch(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Attr::CachedBatch, args, item)
}

/// The attribute behind `aside::cache_put`, where its options are documented.
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Attr::CachePut, args, item)
}

/// The attribute behind `aside::invalidate`, where its options are documented.
#[proc_macro_attribute]
pub fn invalidate(args: TokenStream, item: TokenStream) -> TokenStream {
    run(Attr::Invalidate, args, item)
}

/// The function-like macro behind `aside::entry!`, where it is documented.
#[proc_macro]
pub fn entry(input: TokenStream) -> TokenStream {
    let call = syn::parse_macro_input!(input as syn::Expr);
    entry::call(&call)
        .unwrap_or_else(|error| error.to_compile_error())
        .into()
}

/// The function-like macro behind `aside::key!`, where it is documented.
#[proc_macro]
pub fn key(input: TokenStream) -> TokenStream {
    let lit = syn::parse_macro_input!(input as syn::LitStr);
    match template::parse(&lit.value()) {
        Ok(segments) => expand::key_from_template(&args::KeyTemplate { lit, segments }).into(),
        Err(message) => syn::Error::new(lit.span(), message).to_compile_error().into(),
    }
}

fn run(attr: Attr, args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let message = format!("{} applies to an `async fn` with a body: {error}", attr.name());
            let error = syn::Error::new(error.span(), message).to_compile_error();
            return quote!(#error #item).into();
        }
    };
    let mut errors = Errors::default();
    let args = Args::parse(attr, args.into(), &mut errors);
    if attr == Attr::CachedBatch {
        let checked = batch::check(&func, &args, &mut errors);
        return match (errors.finish(), checked) {
            (Ok(()), Some(checked)) => batch::expand(&args, &func, &checked).into(),
            (result, _) => unchanged(result, item),
        };
    }
    let checked = validate::check(attr, &func, &args, &mut errors);
    match (errors.finish(), checked) {
        (Ok(()), Some(checked)) => match attr {
            Attr::Cached | Attr::CachePut => expand::cached(attr, &args, &func, &checked).into(),
            Attr::CachedBatch => unreachable!("expanded above"),
            Attr::Invalidate => expand::invalidate(&args, &func, &checked).into(),
        },
        (result, _) => unchanged(result, item),
    }
}

/// The function unchanged beside the errors, so that the rest of the crate
/// (and the IDE) still sees it.
fn unchanged(result: Result<(), syn::Error>, item: proc_macro2::TokenStream) -> TokenStream {
    let errors = result.err().map(|e| e.to_compile_error());
    quote!(#errors #item).into()
}
