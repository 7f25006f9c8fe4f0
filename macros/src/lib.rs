//! Procedural macros for [`aside`](https://docs.rs/aside). Depend on `aside`,
//! which re-exports them; this crate holds no caching logic, only parsing,
//! validation and a call into `aside`'s runtime.

mod args;
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
    let checked = validate::check(attr, &func, &args, &mut errors);
    match (errors.finish(), checked) {
        (Ok(()), Some(checked)) => match attr {
            Attr::Cached | Attr::CachePut => expand::cached(attr, &args, &func, &checked).into(),
            Attr::Invalidate => expand::invalidate(&args, &func, &checked).into(),
        },
        (result, _) => {
            // Give the function back unchanged beside the errors, so that the
            // rest of the crate (and the IDE) still sees it.
            let errors = result.err().map(|e| e.to_compile_error());
            quote!(#errors #item).into()
        }
    }
}
