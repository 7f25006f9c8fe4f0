//! `hard_timeout`: a load that takes too long gives up with the function's
//! own error type, made from a [`Timeout`].

use std::future::Future;
use std::time::Duration;

use crate::function::Function;

/// A load gave up after `hard_timeout`. A function with a `hard_timeout`
/// returns it as its own error, `E::from(Timeout)`.
///
/// # Examples
///
/// ```
/// #[derive(Debug)]
/// enum DbError {
///     TimedOut,
/// }
///
/// impl From<aside::Timeout> for DbError {
///     fn from(_: aside::Timeout) -> Self {
///         DbError::TimedOut
///     }
/// }
///
/// #[aside::cached(key = "report:<id>", ttl = "1h", hard_timeout = "2s")]
/// async fn report(id: u64) -> Result<String, DbError> {
///     Ok(format!("report {id}"))
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # assert_eq!(report(1).await.unwrap(), "report 1");
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the load timed out after {after:?}")]
pub struct Timeout {
    /// The time the load was given.
    pub after: Duration,
}

/// An error type a [`Timeout`] can become: any `E: From<Timeout>`. What
/// `hard_timeout = ...` asks of the function's error type, named so that
/// a missing impl is one error that says what to add.
#[diagnostic::on_unimplemented(
    message = "`hard_timeout` needs the function's error type `{Self}` to be made from an `aside::Timeout`",
    label = "`{Self}` has no `From<aside::Timeout>`",
    note = "add `impl From<aside::Timeout> for {Self}`, e.g. as a `TimedOut` variant"
)]
pub trait FromTimeout {
    /// The error for a load that gave up.
    fn from_timeout(timeout: Timeout) -> Self;
}

#[diagnostic::do_not_recommend]
impl<E: From<Timeout>> FromTimeout for E {
    fn from_timeout(timeout: Timeout) -> Self {
        E::from(timeout)
    }
}

/// Runs `load` for `after` at most; past that, returns `E::from(Timeout)`.
/// What `#[cached(hard_timeout = ...)]` wraps the function's body in; a
/// loader given to [`Cache::get_or_load`](crate::Cache::get_or_load) can be
/// wrapped the same way.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// #[derive(Debug)]
/// struct TimedOut;
/// impl From<aside::Timeout> for TimedOut {
///     fn from(_: aside::Timeout) -> Self { TimedOut }
/// }
///
/// let slow = async {
///     tokio::time::sleep(Duration::from_secs(60)).await;
///     Ok::<u32, TimedOut>(1)
/// };
/// assert!(aside::hard_timeout(Duration::from_secs(1), slow).await.is_err());
/// # }
/// ```
pub async fn hard_timeout<T, E, F>(after: Duration, load: F) -> Result<T, E>
where
    E: From<Timeout>,
    F: Future<Output = Result<T, E>>,
{
    hard_timeout_with(None, after, E::from, load).await
}

/// [`hard_timeout`], making the error with `make`. What the attribute
/// expands to: the bound `E: FromTimeout` is then checked once, where
/// `make` is named, and a missing impl is one error at the option.
#[doc(hidden)]
pub async fn hard_timeout_with<T, E, F>(
    function: Option<&'static Function>,
    after: Duration,
    make: fn(Timeout) -> E,
    load: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    match tokio::time::timeout(after, load).await {
        Ok(result) => result,
        Err(_elapsed) => Err(make(timed_out(function, after))),
    }
}

/// Counted and logged out of the generic function.
fn timed_out(function: Option<&'static Function>, after: Duration) -> Timeout {
    if let Some(function) = function {
        function.timed_out();
    }
    let function = function.map_or("", Function::name);
    tracing::warn!(function, ?after, "aside: load timed out (hard_timeout)");
    Timeout { after }
}
