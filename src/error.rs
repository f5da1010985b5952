//! The crate's one error type.

use std::fmt;
use std::time::Duration;

use crate::Signal;

/// Why installing or registering failed.
///
/// Every fallible call in the crate returns this; nothing is only logged.
///
/// ```
/// use exit_hook::{Builder, Error, Signal};
///
/// let err = Builder::new().signals([Signal::from_raw(9)]).install().unwrap_err();
/// assert!(matches!(err, Error::UnsupportedSignal { .. }));
/// assert_eq!(
///     err.to_string(),
///     "SIGKILL (9) cannot start a shutdown: the kernel never delivers it to a handler"
/// );
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The signal cannot be used to start a shutdown: the kernel never
    /// delivers it to a handler (`SIGKILL`, `SIGSTOP`), it reports a fault in
    /// the code that raised it (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`,
    /// `SIGTRAP`, `SIGABRT`, `SIGSYS`), or it is not a signal on this platform.
    UnsupportedSignal {
        /// The signal that was asked for.
        signal: Signal,
        /// Why it cannot be handled.
        reason: &'static str,
    },
    /// The deadline was shorter than [`Builder::MIN_TIMEOUT`](crate::Builder::MIN_TIMEOUT)
    /// (zero included), or longer than [`Builder::MAX_TIMEOUT`](crate::Builder::MAX_TIMEOUT).
    InvalidTimeout(Duration),
    /// The drain does not fit the deadline: a
    /// [drain timeout](crate::Builder::drain_timeout) of zero or past the
    /// deadline, or a [drain delay](crate::Builder::drain_delay) that leaves
    /// the drain no time.
    InvalidDrain {
        /// The drain's timeout, said or by default.
        drain_timeout: Duration,
        /// The delay before the drain's hooks.
        drain_delay: Duration,
        /// The run's deadline.
        timeout: Duration,
    },
    /// [`confirm_exit`](crate::confirm_exit) was asked for a signal that
    /// does not start a run: it is not in the installed
    /// [`signals`](crate::Builder::signals).
    SignalNotHandled(Signal),
    /// The handlers were already installed, by an earlier [`Builder::install`](crate::Builder::install)
    /// or by the first [`add`](crate::add); configuration must come before that.
    AlreadyInstalled,
    /// The process is exiting and its run of the hooks has ended, so a hook
    /// registered now would never run. (A hook registered while the run is
    /// still going joins it.)
    Exiting,
    /// Installing was tried on a thread that is panicking (from a `Drop`
    /// during unwinding): the panic hook cannot be set then.
    Panicking,
    /// The operating system refused a step of the installation (registering a
    /// signal handler, creating the wake-up pipe, spawning the signal thread).
    Io(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnsupportedSignal { signal, reason } => {
                write!(f, "{signal} cannot start a shutdown: {reason}")
            }
            Error::InvalidTimeout(timeout) => write!(
                f,
                "invalid shutdown timeout {timeout:?}: it must be at least {:?} and at most {:?}",
                crate::config::MIN_TIMEOUT,
                crate::config::MAX_TIMEOUT
            ),
            Error::InvalidDrain {
                drain_timeout,
                drain_delay,
                timeout,
            } => write!(
                f,
                "invalid drain: a delay of {drain_delay:?} in a drain of {drain_timeout:?} \
                 (of a {timeout:?} timeout); the drain must be more than zero and within the \
                 timeout, the delay shorter than the drain"
            ),
            Error::SignalNotHandled(signal) => write!(
                f,
                "{signal} does not start a shutdown here, so there is nothing to confirm: \
                 add it to Builder::signals"
            ),
            Error::AlreadyInstalled => f.write_str(
                "exit_hook is already installed: configure the Builder before the first add()",
            ),
            Error::Exiting => f.write_str(
                "the process is exiting and its hooks have run: this hook would never run",
            ),
            Error::Panicking => f.write_str(
                "cannot install exit_hook while this thread is panicking: install it at the start of main",
            ),
            // The cause is `source()`'s, not repeated here: reporters
            // print the chain.
            Error::Io(_) => f.write_str("could not install the exit handlers"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// A reporter that prints the chain (anyhow, eyre, `main` returning
    /// `Result`) shows the OS error once: in `source()`, not in `Display`.
    #[test]
    fn io_error_names_its_cause_once() {
        // Not a raw OS error: its text differs between platforms.
        let err = Error::from(std::io::Error::other("too many open files"));
        let cause = err
            .source()
            .expect("the OS error is the source")
            .to_string();
        assert_eq!(cause, "too many open files");
        assert!(!err.to_string().contains(&cause), "{err}");
        assert_eq!(err.to_string(), "could not install the exit handlers");
        assert!(Error::Panicking.source().is_none());
    }
}
