//! Entries of `#[cached]` functions, named by a call.
//!
//! ```text
//! // Each #[cached] function gets a companion beside it:
//! #[cached(key = "<self.tenant>:price:<id>")]
//! async fn price(&self, id: u64, db: &Db) -> Result<u32, E> { .. }
//! // emits also:
//! fn __aside_entry_price(&self, id: &u64) -> CachedEntry<u32> { /* key, policy */ }
//!
//! // A writer names the entry as it would call the function; only the
//! // arguments the key and tags are made of are given, in order:
//! #[invalidate(entries = [self.price(id)])]   // → self.__aside_entry_price(&id)
//! #[cache_put(entry = shop::product(id))]     // → shop::__aside_entry_product(&id)
//! ```

use proc_macro2::TokenStream;
use quote::{format_ident, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident};

/// The companion of the `#[cached]` function `name`.
pub(crate) fn companion(name: &Ident) -> Ident {
    format_ident!("__aside_entry_{}", name, span = name.span())
}

/// What to write, in errors, for a call naming an entry.
pub(crate) const EXPECTED: &str = "a call of a #[cached] function with the arguments its key and tags \
     are made of, as you would call it: `product(id)`, `shop::product(id)`, or `self.price(id)` for a method";

/// The companion call for `call`, an expression such as `shop::product(id)`
/// or `self.price(id)`: the same path or receiver, the companion's name, and
/// every argument by reference (the body may still need them).
pub(crate) fn call(call: &Expr) -> syn::Result<TokenStream> {
    // A call passed through a `macro_rules!` comes in an invisible group.
    if let Expr::Group(syn::ExprGroup { expr, .. }) | Expr::Paren(syn::ExprParen { expr, .. }) = call {
        return self::call(expr);
    }
    let by_ref = |args: &syn::punctuated::Punctuated<Expr, syn::Token![,]>| {
        args.iter()
            .map(|arg| quote_spanned!(arg.span()=> &(#arg)))
            .collect::<Vec<_>>()
    };
    match call {
        Expr::Call(syn::ExprCall { func, args, .. }) => {
            let Expr::Path(syn::ExprPath { qself, path, .. }) = &**func else {
                return Err(syn::Error::new(func.span(), format!("expected {EXPECTED}")));
            };
            if let Some(qself) = qself {
                return Err(syn::Error::new(
                    qself.lt_token.span,
                    format!("expected {EXPECTED}"),
                ));
            }
            let mut path = path.clone();
            let last = path.segments.last_mut().expect("a path has a segment");
            last.ident = companion(&last.ident);
            let args = by_ref(args);
            Ok(quote_spanned!(call.span()=> #path(#(#args),*)))
        }
        Expr::MethodCall(syn::ExprMethodCall {
            receiver,
            method,
            turbofish,
            args,
            ..
        }) => {
            let method = companion(method);
            let args = by_ref(args);
            Ok(quote_spanned!(call.span()=> #receiver.#method #turbofish (#(#args),*)))
        }
        other => Err(syn::Error::new(other.span(), format!("expected {EXPECTED}"))),
    }
}
