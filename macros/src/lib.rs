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

use crate::args::{CachedArgs, Errors};

/// The attribute behind `aside::cached`, where its options are documented.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(error) => {
            let error = syn::Error::new(
                error.span(),
                format!("#[cached] applies to an `async fn` with a body: {error}"),
            )
            .to_compile_error();
            return quote!(#error #item).into();
        }
    };
    let mut errors = Errors::default();
    let args = CachedArgs::parse(args.into(), &mut errors);
    let checked = validate::check(&func, &args, &mut errors);
    match (errors.finish(), checked) {
        (Ok(()), Some(checked)) => expand::cached(&args, &func, &checked).into(),
        (result, _) => {
            // Give the function back unchanged beside the errors, so that the
            // rest of the crate (and the IDE) still sees it.
            let errors = result.err().map(|e| e.to_compile_error());
            quote!(#errors #item).into()
        }
    }
}
