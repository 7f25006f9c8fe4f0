//! Loads on a task of their own: a refresh nobody waits for, or one that
//! outlasts `soft_timeout`, chosen per call by [`Detach`]; and
//! [`CatchUnwind`], which runs a loader with its panic caught.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::observe::Observed;
use super::plan::{Pending, SoftWait};
use super::scoped::{self, Mode};
use super::slot::Typed;
use super::Cache;
use crate::backend::BoxFuture;
use crate::cacheable::Cacheable;
use crate::policy::Policy;

/// Runs a loader's `fut`, returning a panic from it as an `Err` instead of
/// unwinding. Under a [`bypass`](crate::bypass) or [`refresh`](crate::refresh)
/// scope (`mode`), it runs with plain lookups: a scope applies to the calls
/// it makes, not to the calls their loaders make.
///
/// A future by hand rather than an `async fn`, which would be one more
/// state machine compiled for every cached function.
pub(super) struct CatchUnwind<'a, F> {
    pub(super) fut: Pin<&'a mut F>,
    pub(super) mode: Mode,
    /// Entered on each poll: the load's.
    pub(super) span: &'a Span,
}

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        // Put back below: a panic is caught before it could skip that.
        let outer = (this.mode != Mode::Lookup).then(scoped::lookups_only);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| this.fut.as_mut().poll(cx)));
        if let Some(outer) = outer {
            scoped::restore(outer);
        }
        match polled {
            Ok(poll) => poll.map(Ok),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Whether a lookup's loader `F` may also run on a task of its own. (A
/// type parameter of [`Cache::run`] rather than a trait of the loader: the
/// lookup's future then holds no associated type, which would keep rustc
/// from proving it `Send`.)
pub(super) trait Detach<T, F> {
    /// Whether [`detach`](Self::detach) may be called.
    const DETACHABLE: bool;

    /// Runs `load` on a task of its own, landing its value as `pending`
    /// says; answers its caller (who observed the call) with the standby
    /// in its slot at once, or after waiting at most its soft wait for the
    /// loaded value. Only if `DETACHABLE`. (A boxed future: the lookup's
    /// own holds none of its state, and an inline loader compiles none.)
    fn detach<'a>(
        load: F,
        cache: &'a Cache,
        policy: &'a Policy,
        pending: Pending,
        caller: Caller<'_, T>,
    ) -> BoxFuture<'a, T>;
}

/// The caller of a detached load: what it observed, how long it waits for
/// the load, and its standby.
pub(super) type Caller<'c, T> = (&'c Observed, Option<SoftWait>, Typed<T>);

/// Loaders run where their caller does.
pub(super) enum Inline {}

impl<T, F> Detach<T, F> for Inline {
    const DETACHABLE: bool = false;

    fn detach<'a>(_: F, _: &'a Cache, _: &'a Policy, _: Pending, _: Caller<'_, T>) -> BoxFuture<'a, T> {
        unreachable!("an inline loader is never detached")
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

    fn detach<'a>(
        load: F,
        cache: &'a Cache,
        policy: &'a Policy,
        pending: Pending,
        (caller, wait, slot): Caller<'_, T>,
    ) -> BoxFuture<'a, T> {
        let (sent, landed) = oneshot::channel();
        let answer = async move {
            match wait {
                None => slot.take(),
                Some(wait) => cache.await_detached(policy, wait, landed, slot).await,
            }
        };
        let (cache, policy) = (cache.clone(), policy.clone());
        let mut observed = Observed::detached(caller);
        let span = observed.call.clone();
        let job = async move {
            let mut pending = pending;
            if !cache
                .lock_refresh(&mut pending, &policy, &mut Typed::<T>(None))
                .await
            {
                return;
            }
            let fut = std::pin::pin!(load());
            // In a block: the error need not be `Send`.
            let value = {
                let span = observed.start_load();
                let mode = Mode::Lookup;
                let loaded = CatchUnwind { fut, mode, span }.await;
                cache.loaded(&policy, &observed, matches!(loaded, Ok(Ok(_))));
                match loaded {
                    Ok(Ok(value)) => value,
                    Ok(Err(_)) => return cache.detached_failed(pending, &policy, false),
                    Err(_) => return cache.detached_failed(pending, &policy, true),
                }
            };
            let mut slot = Typed(Some(value));
            cache.complete(Some(pending), &policy, &mut slot, observed).await;
            let _ = sent.send(slot.take());
        };
        // Nested cached calls in the load see the caller's `with_global` cache.
        tokio::spawn(scoped::carried(job).instrument(span));
        Box::pin(answer)
    }
}
