//! The installed configuration, which every layer reads and only
//! [`install`](crate::install) writes, once.

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

/// The deadline of a run unless the builder says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest deadline (and hook time limit) accepted.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The shortest deadline: 1 ms. A shorter one has no room for its phases
/// (3/5 of a nanosecond is no drain) and is a unit mistake.
pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// What installation decided, for the run.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) timeout: Duration,
    pub(crate) exit_on_panic: bool,
    /// How long into the run the drain phase (its hooks, the guards, the
    /// drain delay) may last.
    pub(crate) drain_timeout: Duration,
    /// How long the run waits, `is_exiting()` already true, before the
    /// drain's hooks start.
    pub(crate) drain_delay: Duration,
    /// The numbers of the signals that start a run (those left ignored included).
    pub(crate) signals: Vec<i32>,
}

/// The drain's share of a deadline unless the builder says otherwise: 3/5.
pub(crate) fn default_drain_timeout(timeout: Duration) -> Duration {
    timeout * 3 / 5
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static INSTALLING: Mutex<()> = Mutex::new(());

/// The installed configuration, if any.
pub(crate) fn get() -> Option<&'static Config> {
    CONFIG.get()
}

/// The deadline of a run, installed or not.
pub(crate) fn timeout() -> Duration {
    get().map_or(DEFAULT_TIMEOUT, |config| config.timeout)
}

/// The drain delay, installed or not.
pub(crate) fn drain_delay() -> Duration {
    get().map_or(Duration::ZERO, |config| config.drain_delay)
}

/// The drain's timeout, installed or not.
pub(crate) fn drain_timeout() -> Duration {
    get().map_or_else(|| default_drain_timeout(timeout()), |c| c.drain_timeout)
}

/// Held by the one installation going on; [`Installing::set`] ends it.
pub(crate) struct Installing(#[allow(dead_code)] MutexGuard<'static, ()>);

/// Starts installing: waits for an installation in progress to end.
pub(crate) fn installing() -> Installing {
    Installing(INSTALLING.lock().unwrap_or_else(PoisonError::into_inner))
}

impl Installing {
    /// Publishes the configuration. Installations are serialised, so this
    /// is the first.
    pub(crate) fn set(&self, config: Config) {
        CONFIG
            .set(config)
            .expect("installation is serialised by INSTALLING");
    }
}

/// Waits until an installation in progress has ended. A signal can arrive
/// between registering its handler and the end of installing; its run waits
/// here so that it uses the configuration being installed.
pub(crate) fn wait_for_install() {
    drop(installing());
}
