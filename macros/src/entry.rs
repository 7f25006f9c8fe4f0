//! Entries of `#[cached]` functions, named by a call.
//!
//! ```text
//! // Each #[cached] function gets a companion beside it:
//! #[cached(key = "<self.tenant>:price:<id>")]
//! async fn price(&self, id: u64, db: &Db) -> Result<u32, E> { .. }
//! // emits also:
//! fn __aside_entry_price(&self, id: &u64) -> CachedEntry<u32> { /* key, policy, cache */ }
//!
//! // A writer names the entry as it would call the function; only the
//! // arguments the key and tags are made of are given, in order:
//! #[invalidate(entries = [self.price(id)])]   // → self.__aside_entry_price(&id)
//! #[cache_put(entry = shop::product(id))]     // → shop::__aside_entry_product(&id)
//! ```

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Ident};

/// The companion of the `#[cached]` function `name`.
pub(crate) fn companion(name: &Ident) -> Ident {
    format_ident!("__aside_entry_{}", name, span = name.span())
}

/// The function the `#[cached]` function `name` and its companion build
/// its key and policy with.
pub(crate) fn parts(name: &Ident) -> Ident {
    format_ident!("__aside_parts_{}", name, span = name.span())
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
    // The arguments by reference, in parentheses spanned as the call's
    // were, so that rustc's help for a wrong argument edits the call.
    let by_ref = |paren: &syn::token::Paren, args: &syn::punctuated::Punctuated<Expr, syn::Token![,]>| {
        let args = args.iter().map(|arg| quote_spanned!(arg.span()=> &(#arg)));
        let mut group = Group::new(Delimiter::Parenthesis, quote!(#(#args),*));
        group.set_span(paren.span.join());
        group
    };
    match call {
        Expr::Call(syn::ExprCall {
            func,
            args,
            paren_token,
            ..
        }) => {
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
            let args = by_ref(paren_token, args);
            Ok(quote_spanned!(call.span()=> #path #args))
        }
        Expr::MethodCall(syn::ExprMethodCall {
            receiver,
            method,
            turbofish,
            args,
            paren_token,
            ..
        }) => {
            let method = companion(method);
            let args = by_ref(paren_token, args);
            Ok(quote_spanned!(call.span()=> #receiver.#method #turbofish #args))
        }
        other => Err(syn::Error::new(other.span(), format!("expected {EXPECTED}"))),
    }
}
