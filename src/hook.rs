//! Registering hooks: [`add`], [`add_async`], their `try_` forms, and the
//! [`HookHandle`] that unregisters.

use std::future::Future;
use std::panic::Location;

use crate::registry::{BoxFuture, Hook, Key, Work, registry};
use crate::{Error, Exit};

/// Registers a hook that runs once when the process ends, and returns a
/// handle that can [`unregister`](HookHandle::unregister) it.
///
/// The first registration installs the handlers with the defaults unless a
/// [`Builder`](crate::Builder) installed them already. Sync hooks run one
/// after another, in registration order, on the crate's runner thread.
///
/// Registering while a run is going is allowed: the hook joins the run. Once
/// the run is over nothing would ever run it, so the returned handle is
/// detached (its [`unregister`](HookHandle::unregister) returns `false`);
/// [`try_add`] reports that case as [`Error::Exiting`].
///
/// ```
/// exit_hook::add(|exit| eprintln!("bye: {exit}"));
/// ```
///
/// # Panics
///
/// If installing the handlers fails; [`try_add`] returns the error instead.
#[track_caller]
pub fn add<F>(hook: F) -> HookHandle
where
    F: FnOnce(&Exit) + Send + 'static,
{
    or_detached(try_add(hook), Location::caller())
}

/// Registers an async hook: `hook` is called with the [`Exit`] and the
/// future it returns runs on the crate's own runtime, concurrently with the
/// other async hooks, until it completes or the deadline passes.
///
/// Otherwise as [`add`].
///
/// ```
/// exit_hook::add_async(|exit| async move {
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
///     eprintln!("flushed: {exit}");
/// });
/// ```
///
/// # Panics
///
/// If installing the handlers fails; [`try_add_async`] returns the error instead.
#[track_caller]
pub fn add_async<F, Fut>(hook: F) -> HookHandle
where
    F: FnOnce(Exit) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    or_detached(try_add_async(hook), Location::caller())
}

/// [`add`], returning installation errors and [`Error::Exiting`].
///
/// ```
/// let hook = exit_hook::try_add(|_| eprintln!("bye"))?;
/// println!("registered at {}", hook.location());
/// # Ok::<(), exit_hook::Error>(())
/// ```
///
/// # Errors
///
/// Those of [`Builder::install`](crate::Builder::install) on the first
/// registration, and [`Error::Exiting`] once the run is over.
#[track_caller]
pub fn try_add<F>(hook: F) -> Result<HookHandle, Error>
where
    F: FnOnce(&Exit) + Send + 'static,
{
    register(Location::caller(), Work::Sync(Box::new(hook)))
}

/// [`add_async`], returning installation errors and [`Error::Exiting`].
///
/// ```
/// exit_hook::try_add_async(|_| async { /* close the pool */ })?;
/// # Ok::<(), exit_hook::Error>(())
/// ```
///
/// # Errors
///
/// As [`try_add`].
#[track_caller]
pub fn try_add_async<F, Fut>(hook: F) -> Result<HookHandle, Error>
where
    F: FnOnce(Exit) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let work = Work::Async(Box::new(move |exit| Box::pin(hook(exit)) as BoxFuture));
    register(Location::caller(), work)
}

fn or_detached(
    result: Result<HookHandle, Error>,
    location: &'static Location<'static>,
) -> HookHandle {
    match result {
        Ok(handle) => handle,
        Err(Error::Exiting) => {
            tracing::debug!(hook = %location, "exit hook registered after the run: it will not run");
            HookHandle::detached(location)
        }
        Err(err) => panic!("exit_hook: {err}"),
    }
}

/// Installs the handlers if needed, then registers.
pub(crate) fn register(
    location: &'static Location<'static>,
    work: Work,
) -> Result<HookHandle, Error> {
    crate::install::ensure_installed()?;
    let key = registry().insert(Hook { location, work })?;
    Ok(HookHandle { key, location })
}

/// A registered hook, which [`unregister`](HookHandle::unregister) removes.
///
/// Dropping the handle keeps the hook registered, so `exit_hook::add(...)`
/// needs no variable.
///
/// ```
/// let hook = exit_hook::add(|_| println!("removing the temp file"));
/// // ... the temp file was removed by the program itself:
/// assert!(hook.unregister());
/// ```
#[derive(Debug)]
pub struct HookHandle {
    key: Key,
    location: &'static Location<'static>,
}

impl HookHandle {
    /// A handle for a hook that was never registered (see [`add`](crate::add)).
    pub(crate) fn detached(location: &'static Location<'static>) -> Self {
        HookHandle {
            key: Key::NONE,
            location,
        }
    }

    /// Removes the hook, so no run will start it. Returns `true` if it was
    /// removed, `false` if a run has already taken it (it is running or ran).
    pub fn unregister(self) -> bool {
        registry().remove(self.key)
    }

    /// Where the hook was registered; logs and timeout reports name it.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}
