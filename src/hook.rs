//! Registering hooks: [`add`], [`add_async`], their `try_` forms, the
//! [`HookBuilder`] that places a hook in a [`Phase`] or gives it a time
//! limit, and the [`HookHandle`] that unregisters.

use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use crate::registry::{BoxFuture, Hook, Key, TimeLimit, Work, registry};
use crate::{Error, Exit, Phase};

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
/// [`HookBuilder::try_add`] reports that case as [`Error::Exiting`].
///
/// ```
/// exit_hook::add(|exit| eprintln!("bye: {exit}"));
/// ```
///
/// # Panics
///
/// If installing the handlers fails; [`HookBuilder::try_add`] returns the error instead.
#[track_caller]
pub fn add<F>(hook: F) -> HookHandle
where
    F: FnOnce(&Exit) + Send + 'static,
{
    HookBuilder::new().add(hook)
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
/// If installing the handlers fails; [`HookBuilder::try_add_async`] returns the error instead.
#[track_caller]
pub fn add_async<F, Fut>(hook: F) -> HookHandle
where
    F: FnOnce(Exit) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    HookBuilder::new().add_async(hook)
}

/// Registers a hook in a [`Phase`] of the run: `exit_hook::in_phase(Phase::Drain).add_async(..)`.
///
/// Shorthand for [`HookBuilder::new().phase(phase)`](HookBuilder::phase).
///
/// ```
/// use exit_hook::Phase;
///
/// exit_hook::in_phase(Phase::Close).add_async(|_| async { /* pool.close().await */ });
/// ```
pub fn in_phase(phase: Phase) -> HookBuilder {
    HookBuilder::new().phase(phase)
}

/// Options for one hook: the [`Phase`] it runs in and a time limit, then
/// [`add`](HookBuilder::add) or [`add_async`](HookBuilder::add_async) as
/// with the free functions. Usually made with [`in_phase`].
///
/// ```
/// use std::time::Duration;
/// use exit_hook::{HookBuilder, Phase};
///
/// // Wait at most 5 s for the server to drain, then go on to close the pool.
/// exit_hook::in_phase(Phase::Drain)
///     .time_limit(Duration::from_secs(5))
///     .add_async(|_| async { /* server.await */ });
/// // A sync hook that may hang on a network file system: give up after 1 s.
/// HookBuilder::new()
///     .time_limit(Duration::from_secs(1))
///     .add(|_| { /* std::fs::remove_file(..) */ });
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[must_use = "a HookBuilder registers nothing until `add` or `add_async` is called"]
pub struct HookBuilder {
    phase: Phase,
    time_limit: Option<Duration>,
}

impl HookBuilder {
    /// A hook in [`Phase::Cleanup`] with no time limit of its own, as [`add`] registers.
    pub fn new() -> Self {
        HookBuilder::default()
    }

    /// The phase the hook runs in (default [`Phase::Cleanup`]).
    pub fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }

    /// How long the run waits for this hook, from its start. When the limit
    /// passes, the run moves on as if the hook had returned, and one line
    /// (a `tracing` warning, or stderr without a subscriber) names the
    /// hook's registration site. An async hook's future is dropped then; a
    /// sync hook with a time limit runs on a thread of its own, which is
    /// left running. The run's deadline still bounds everything.
    ///
    /// A zero limit, or one above [`Builder::MAX_TIMEOUT`](crate::Builder::MAX_TIMEOUT), is
    /// [`Error::InvalidTimeout`] when the hook is registered.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    /// Registers a sync hook with these options; otherwise as [`add`](crate::add).
    ///
    /// # Panics
    ///
    /// If installing the handlers fails, or the time limit is invalid;
    /// [`try_add`](Self::try_add) returns the error instead.
    #[track_caller]
    #[allow(
        clippy::should_implement_trait,
        reason = "named after `exit_hook::add`, which it mirrors; nothing is summed"
    )]
    pub fn add<F>(self, hook: F) -> HookHandle
    where
        F: FnOnce(&Exit) + Send + 'static,
    {
        or_detached(self.try_add(hook), Location::caller())
    }

    /// Registers an async hook with these options; otherwise as [`add_async`](crate::add_async).
    ///
    /// # Panics
    ///
    /// As [`add`](Self::add).
    #[track_caller]
    pub fn add_async<F, Fut>(self, hook: F) -> HookHandle
    where
        F: FnOnce(Exit) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        or_detached(self.try_add_async(hook), Location::caller())
    }

    /// [`add`](Self::add), returning the errors: for an application that
    /// must know its hook will run.
    ///
    /// ```
    /// let hook = exit_hook::HookBuilder::new().try_add(|_| eprintln!("bye"))?;
    /// println!("registered at {}", hook.location());
    /// # Ok::<(), exit_hook::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`Builder::install`](crate::Builder::install) on the first
    /// registration, [`Error::Exiting`] once the run is over, and
    /// [`Error::InvalidTimeout`] for a zero or absurd [time limit](Self::time_limit).
    #[track_caller]
    pub fn try_add<F>(self, hook: F) -> Result<HookHandle, Error>
    where
        F: FnOnce(&Exit) + Send + 'static,
    {
        self.register(Location::caller(), Work::Sync(Box::new(hook)))
    }

    /// [`add_async`](Self::add_async), returning the errors.
    ///
    /// # Errors
    ///
    /// As [`try_add`](Self::try_add).
    #[track_caller]
    pub fn try_add_async<F, Fut>(self, hook: F) -> Result<HookHandle, Error>
    where
        F: FnOnce(Exit) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let work = Work::Async(Box::new(move |exit| Box::pin(hook(exit)) as BoxFuture));
        self.register(Location::caller(), work)
    }

    /// Installs the handlers if needed, then registers.
    fn register(
        self,
        location: &'static Location<'static>,
        work: Work,
    ) -> Result<HookHandle, Error> {
        let time_limit = match self.time_limit {
            None => None,
            Some(limit) => Some(TimeLimit::new(limit).ok_or(Error::InvalidTimeout(limit))?),
        };
        crate::install::ensure_installed()?;
        let hook = Hook {
            location,
            phase: self.phase,
            time_limit,
            work,
        };
        let inserted = registry().insert(hook);
        // A refused hook is dropped here, unlocked: its captures may run any code.
        let key = inserted.map_err(|_| Error::Exiting)?;
        // A run may be waiting for guards; it takes this hook now.
        crate::registry::changed();
        Ok(HookHandle { key, location })
    }
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
        let removed = registry().remove(self.key);
        // Dropped here, unlocked: its captures' `Drop` may unregister too.
        removed.is_some()
    }

    /// Where the hook was registered; logs and timeout reports name it.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}
