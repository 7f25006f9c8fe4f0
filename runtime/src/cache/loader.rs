//! The caller's loader as the read path sees it: a [`Loader`] behind a
//! pointer, so that the path ([`Cache::read_path`]) is compiled once rather
//! than once per cached function. [`TypedLoader`], its one implementation,
//! is all a cached function compiles of it: running the loader with its
//! panic caught, or on a task of its own ([`Detach`]).

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::observe::Observed;
use super::plan::{Pending, Served};
use super::scoped::{self, Mode};
use super::slot::{Slot, Typed};
use super::Cache;
use crate::cacheable::Cacheable;
use crate::policy::Policy;

/// A call's typed side, for the read path: where a value of the caller's
/// type goes, and the loader.
pub(super) trait Loader {
    /// Where the path puts a value it found, and the load leaves its own.
    fn slot(self: Pin<&mut Self>) -> &mut dyn Slot;

    /// Polls the load, made at the first poll, with `span` entered and its
    /// panic caught. Under a [`bypass`](crate::bypass) or
    /// [`refresh`](crate::refresh) scope (`mode`), it runs with plain
    /// lookups: a scope applies to the calls it makes, not to the calls
    /// their loaders make. A value goes to the slot; an error stays here
    /// for the caller.
    fn poll_load(self: Pin<&mut Self>, cx: &mut Context<'_>, mode: Mode, span: &Span) -> Poll<Loaded>;

    /// Whether [`detach`](Self::detach) may be called.
    fn detachable(&self) -> bool;

    /// Runs the load on a task of its own, landing its value as `pending`
    /// says, for a caller who observed the call as `caller`.
    fn detach(self: Pin<&mut Self>, cache: &Cache, policy: &Policy, pending: Pending, caller: &Observed);

    /// Polls for the detached load's value: `true` once it is in the slot,
    /// `false` if the load ended without one.
    fn poll_landed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool>;
}

/// How a load ended.
pub(super) enum Loaded {
    /// Its value is in the slot.
    Value,
    /// It returned an error, which its loader keeps for the caller; the
    /// read path holds the token until it returns.
    Failed(ErrorHeld),
    /// It panicked.
    Panicked(Box<dyn Any + Send>),
}

/// Held by the read path while its loader keeps an error. Not `Send`: an
/// `.await` while it is alive makes `send_when_the_loader_is` fail to
/// compile, which keeps [`SendIf`]'s promise that an error never crosses
/// one.
pub(super) struct ErrorHeld(PhantomData<*const ()>);

/// A detached load's value, when it lands.
pub(super) type Landed<T> = Option<Pin<Box<dyn Future<Output = Option<T>> + Send>>>;

pin_project_lite::pin_project! {
    /// The [`Loader`] of a function returning `Result<T, E>` through `F`.
    pub(super) struct TypedLoader<T, E, F, Fut, D: Detach<T, F>> {
        slot: Typed<T>,
        load: Option<F>,
        #[pin]
        running: Option<Fut>,
        // Nothing for a loader that runs inline only.
        landed: D::Landed,
        // Set as the load ends, and taken by the caller before anything
        // awaits again: it never crosses an `.await`, so an error need not
        // be `Send` (see `SendIf`).
        error: Option<E>,
        detach: PhantomData<D>,
    }
}

impl<T, E, F, Fut, D: Detach<T, F>> TypedLoader<T, E, F, Fut, D> {
    pub(super) fn new(load: F) -> Self {
        TypedLoader {
            slot: Typed(None),
            load: Some(load),
            running: None,
            landed: D::Landed::default(),
            error: None,
            detach: PhantomData,
        }
    }

    /// The call's answer, once the read path `served` it.
    pub(super) fn answer(self: Pin<&mut Self>, served: Served) -> Result<T, E> {
        let this = self.project();
        match served {
            Served::Value => Ok(this
                .slot
                .0
                .take()
                .expect("a call served with a value leaves it in the slot")),
            Served::Error => Err(this.error.take().expect("a failed load leaves its error")),
        }
    }
}

impl<T, E, F, Fut, D> Loader for TypedLoader<T, E, F, Fut, D>
where
    T: Cacheable,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    D: Detach<T, F>,
{
    fn slot(self: Pin<&mut Self>) -> &mut dyn Slot {
        self.project().slot
    }

    fn poll_load(self: Pin<&mut Self>, cx: &mut Context<'_>, mode: Mode, span: &Span) -> Poll<Loaded> {
        let mut this = self.project();
        poll_caught(mode, span, &mut || {
            if let Some(load) = this.load.take() {
                this.running.set(Some(load()));
            }
            let running = this.running.as_mut().as_pin_mut();
            let result = std::task::ready!(running.expect("a load is running").poll(cx));
            this.running.set(None);
            Poll::Ready(match result {
                Ok(value) => {
                    this.slot.0 = Some(value);
                    Loaded::Value
                }
                Err(error) => {
                    *this.error = Some(error);
                    Loaded::Failed(ErrorHeld(PhantomData))
                }
            })
        })
    }

    fn detachable(&self) -> bool {
        D::DETACHABLE
    }

    fn detach(self: Pin<&mut Self>, cache: &Cache, policy: &Policy, pending: Pending, caller: &Observed) {
        let this = self.project();
        D::detach(this.load, this.landed, (cache, policy, pending, caller));
    }

    fn poll_landed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.project();
        D::poll_landed(this.landed, this.slot, cx)
    }
}

/// Polls a load (`poll`) with `span` entered, under plain lookups if a
/// scope (`mode`) asked otherwise, and its panic caught. Not generic: a
/// cached function compiles only `poll`.
fn poll_caught(mode: Mode, span: &Span, poll: &mut dyn FnMut() -> Poll<Loaded>) -> Poll<Loaded> {
    let _entered = span.enter();
    // Put back below: a panic is caught before it could skip that.
    let outer = (mode != Mode::Lookup).then(scoped::lookups_only);
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(poll));
    if let Some(outer) = outer {
        scoped::restore(outer);
    }
    polled.unwrap_or_else(|panic| Poll::Ready(Loaded::Panicked(panic)))
}

pin_project_lite::pin_project! {
    /// A call's future, `Send` when its typed side is (`M`: the value, the
    /// loader and its future). rustc cannot see that through the
    /// `&mut dyn Loader` that [`Cache::read_path`] holds; the rest of its
    /// future is proven `Send` below, and a loader's error never crosses
    /// an `.await` (see [`TypedLoader`]).
    pub(super) struct SendIf<M, Fut> {
        #[pin]
        fut: Fut,
        marker: PhantomData<M>,
    }
}

impl<M, Fut> SendIf<M, Fut> {
    pub(super) fn new(fut: Fut) -> Self {
        SendIf {
            fut,
            marker: PhantomData,
        }
    }
}

// SAFETY: what `fut` holds across an `.await` is `Send`, but for the
// caller's `TypedLoader<T, E, F, Fut, D>`: its `T`, `F` and `Fut`, which `M`
// names, and its `E`, which is never held across one. (With the `testing`
// feature it also holds the cache it runs on, a `Cow<Cache>`, and a
// recorded `Call`: both `Send + Sync`, asserted beside them.)
unsafe impl<M: Send, Fut> Send for SendIf<M, Fut> {}

impl<M, Fut: Future> Future for SendIf<M, Fut> {
    type Output = Fut::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().fut.poll(cx)
    }
}

/// `read_path`'s and `load_detached`'s futures are `Send` when their loader
/// is: the proof behind [`SendIf`] (a compile error here otherwise).
#[allow(dead_code)]
fn send_when_the_loader_is<'a>(
    cache: &'a Cache,
    (key, policy): (&'a str, &'a Policy),
    (pending, observed): (Pending, Observed),
    loaders: [Pin<&'a mut (dyn Loader + Send)>; 2],
) -> (impl Future + Send + 'a, impl Future + Send + 'a) {
    let [serving, detached] = loaders;
    let serve = cache.read_path(key, policy, serving);
    (serve, cache.load_detached(pending, policy, observed, detached))
}

/// Whether a lookup's loader `F` may also run on a task of its own.
pub(super) trait Detach<T, F> {
    /// Whether [`detach`](Self::detach) may be called.
    const DETACHABLE: bool;

    /// Where a detached load's value lands.
    type Landed: Default;

    /// Runs the `load` on a task of its own, landing its value as
    /// `pending` says; the value it stores lands in `landed`. Only if
    /// `DETACHABLE`.
    fn detach(load: &mut Option<F>, landed: &mut Self::Landed, call: (&Cache, &Policy, Pending, &Observed));

    /// Polls `landed` for a detached load's value, into `slot`: `true` once
    /// it is there, `false` if the load ended without one.
    fn poll_landed(landed: &mut Self::Landed, slot: &mut Typed<T>, cx: &mut Context<'_>) -> Poll<bool>;
}

/// Loaders run where their caller does (and compile nothing to detach).
pub(super) enum Inline {}

impl<T, F> Detach<T, F> for Inline {
    const DETACHABLE: bool = false;
    type Landed = ();

    fn detach(_: &mut Option<F>, _: &mut (), _: (&Cache, &Policy, Pending, &Observed)) {}

    fn poll_landed(_: &mut (), _: &mut Typed<T>, _: &mut Context<'_>) -> Poll<bool> {
        Poll::Ready(false)
    }
}

/// Loaders that can also run on a task of their own.
pub(super) enum Detachable {}

impl<T, E, F, Fut> Detach<T, F> for Detachable
where
    T: Cacheable,
    E: 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    const DETACHABLE: bool = true;
    type Landed = Landed<T>;

    fn detach(load: &mut Option<F>, landed: &mut Landed<T>, call: (&Cache, &Policy, Pending, &Observed)) {
        let (cache, policy, pending, caller) = call;
        let load = load.take().expect("a load is detached before it starts");
        let (sent, received) = oneshot::channel();
        let (cache, policy) = (cache.clone(), policy.clone());
        let observed = Observed::detached(caller);
        let span = observed.call.clone();
        let job = SendIf::<(T, F, Fut), _>::new(async move {
            let mut loader = std::pin::pin!(TypedLoader::<T, E, F, Fut, Inline>::new(load));
            if cache
                .load_detached::<dyn Loader>(pending, &policy, observed, loader.as_mut())
                .await
            {
                let _ = sent.send(loader.answer(Served::Value).ok());
            }
        });
        // Nested cached calls in the load see the caller's `with_global` cache.
        tokio::spawn(scoped::carried(job).instrument(span));
        *landed = Some(Box::pin(async move { received.await.ok().flatten() }));
    }

    fn poll_landed(landed: &mut Landed<T>, slot: &mut Typed<T>, cx: &mut Context<'_>) -> Poll<bool> {
        let Some(landed) = landed else {
            return Poll::Ready(false);
        };
        landed.as_mut().poll(cx).map(|landed| match landed {
            Some(value) => {
                slot.0 = Some(value);
                true
            }
            None => false,
        })
    }
}

// The detached job owns a `Cache` and a `Policy` across its awaits, which
// `send_when_the_loader_is` sees only by reference.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Cache>();
    send::<Policy>();
};

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use crate::{Cache, Policy};

    /// Implemented twice for a `Send` type, so that naming it for one is
    /// ambiguous: `not_send` compiles only for a type that is not `Send`.
    trait AmbiguousIfSend<A> {}
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}
    fn not_send<F: ?Sized + AmbiguousIfSend<A>, A>(_: &F) {}
    fn send<F: Send>(_: &F) {}

    /// A loader whose future holds an `Rc` across an `.await`.
    async fn holds_an_rc() -> Result<u32, ()> {
        let rc = Rc::new(1);
        tokio::task::yield_now().await;
        Ok(*rc)
    }

    /// A loader whose error is not `Send`.
    async fn fails_with_an_rc() -> Result<u32, Rc<()>> {
        Err(Rc::new(()))
    }

    #[test]
    fn a_call_is_send_exactly_when_its_loader_is() {
        let (cache, policy) = (Cache::memory(), Policy::new());
        // An error that is not `Send` does not matter: it never crosses an `.await`.
        send(&cache.get_or_load("k", &policy, fails_with_an_rc));
        // A loader's future that holds an `Rc` across an `.await` is not
        // `Send`, nor is the call.
        not_send(&cache.get_or_load("k", &policy, holds_an_rc));
    }
}
