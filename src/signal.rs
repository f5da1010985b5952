//! The signals that start a run, and the status a signal run exits with.

use std::fmt;

/// A signal that starts a shutdown run.
///
/// A `Copy` wrapper around the platform's signal number, with named
/// constructors for the signals services receive. On Windows the console
/// events are mapped to these numbers as Node does (see the crate docs).
///
/// ```
/// use exit_hook::Signal;
///
/// assert_eq!(Signal::terminate().as_raw(), 15);
/// assert_eq!(Signal::terminate().name(), Some("SIGTERM"));
/// assert_eq!(Signal::interrupt().to_string(), "SIGINT (2)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

impl Signal {
    /// `SIGHUP`: the terminal closed, or systemd/a supervisor asks to stop.
    pub const fn hangup() -> Self {
        Signal(platform::SIGHUP)
    }

    /// `SIGINT`: Ctrl+C in a terminal.
    pub const fn interrupt() -> Self {
        Signal(platform::SIGINT)
    }

    /// `SIGTERM`: the polite stop of `kill`, Kubernetes, systemd and `docker stop`.
    pub const fn terminate() -> Self {
        Signal(platform::SIGTERM)
    }

    /// `SIGQUIT`: Ctrl+\ in a terminal (Unix only).
    pub const fn quit() -> Self {
        Signal(platform::SIGQUIT)
    }

    /// `SIGBREAK`: Ctrl+Break in a Windows console (number 21, status 149).
    ///
    /// Windows only: elsewhere there is no such signal, and
    /// [`Builder::install`](crate::Builder::install) rejects it with
    /// [`Error::UnsupportedSignal`](crate::Error::UnsupportedSignal).
    pub const fn ctrl_break() -> Self {
        Signal(platform::SIGBREAK)
    }

    /// A signal by its platform number, such as `libc::SIGUSR1`.
    ///
    /// Any number is accepted here; [`Builder::install`](crate::Builder::install)
    /// rejects the ones that cannot start a shutdown.
    pub const fn from_raw(number: i32) -> Self {
        Signal(number)
    }

    /// The platform's number for the signal.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The status a shell reports for a process ended by this signal,
    /// 128 + n (SIGTERM → 143): the crate's default exit status after a
    /// signal's run, the one place it is computed.
    pub(crate) const fn shell_status(self) -> i32 {
        128 + self.0
    }

    /// The conventional name, such as `"SIGTERM"`, if the platform knows one.
    pub fn name(self) -> Option<&'static str> {
        platform::name(self.0)
    }
}

/// The platform's numbers and names, and the signals installed by default.
#[cfg(unix)]
mod platform {
    use super::Signal;

    pub(super) const SIGHUP: i32 = libc::SIGHUP;
    pub(super) const SIGINT: i32 = libc::SIGINT;
    pub(super) const SIGTERM: i32 = libc::SIGTERM;
    pub(super) const SIGQUIT: i32 = libc::SIGQUIT;
    /// Windows' Ctrl+Break has no Unix signal: 0 is no signal, which install rejects.
    pub(super) const SIGBREAK: i32 = 0;

    /// The signals a service is asked to stop with.
    pub(super) const DEFAULTS: &[Signal] =
        &[Signal::hangup(), Signal::interrupt(), Signal::terminate()];

    pub(super) fn name(signal: i32) -> Option<&'static str> {
        signal_hook::low_level::signal_name(signal)
    }
}

/// The numbers of the C runtime and Node, which the console events stand
/// for (SIGHUP is Node's for console close); see `sys::windows`.
#[cfg(windows)]
mod platform {
    use super::Signal;

    pub(super) const SIGHUP: i32 = 1;
    pub(super) const SIGINT: i32 = 2;
    pub(super) const SIGQUIT: i32 = 3;
    pub(super) const SIGTERM: i32 = 15;
    pub(super) const SIGBREAK: i32 = 21;

    /// Ctrl+C, Ctrl+Break, and console close, logoff and shutdown.
    pub(super) const DEFAULTS: &[Signal] =
        &[Signal::hangup(), Signal::interrupt(), Signal::ctrl_break()];

    pub(super) fn name(signal: i32) -> Option<&'static str> {
        match signal {
            SIGHUP => Some("SIGHUP"),
            SIGINT => Some("SIGINT"),
            SIGQUIT => Some("SIGQUIT"),
            SIGTERM => Some("SIGTERM"),
            SIGBREAK => Some("SIGBREAK"),
            _ => None,
        }
    }
}

impl Signal {
    /// The signals installed unless the builder names others.
    pub(crate) const DEFAULTS: &[Signal] = platform::DEFAULTS;
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How a run started by a signal ends the process.
///
/// ```
/// use exit_hook::{Signal, SignalExit};
///
/// assert_eq!(SignalExit::Code.status(Signal::terminate()), Some(143));
/// assert_eq!(SignalExit::Reraise.status(Signal::terminate()), None);
/// assert_eq!(SignalExit::Custom(|_| 0).status(Signal::terminate()), Some(0));
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub enum SignalExit {
    /// Exit with status 128 + the signal number (SIGTERM → 143), as shells,
    /// Node's `async-exit-hook` and most supervisors expect. The default.
    #[default]
    Code,
    /// Restore the signal's default action and raise it again, so the parent
    /// sees the process *killed by* the signal (`ExitStatus::signal()`), as
    /// if no handler had been installed. systemd counts death by SIGTERM,
    /// SIGINT, SIGHUP or SIGPIPE as a clean stop without `SuccessExitStatus=`.
    Reraise,
    /// Exit with the status this function returns for the signal.
    Custom(fn(Signal) -> i32),
}

impl SignalExit {
    /// The exit code the process ends with after a run started by `signal`,
    /// or `None` when it dies by the signal itself ([`SignalExit::Reraise`]).
    pub fn status(self, signal: Signal) -> Option<i32> {
        match self {
            SignalExit::Code => Some(signal.shell_status()),
            SignalExit::Reraise => None,
            SignalExit::Custom(map) => Some(map(signal)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_128_plus_n_by_default() {
        let cases = [
            (Signal::hangup(), 129),
            (Signal::interrupt(), 130),
            (Signal::terminate(), 143),
        ];
        for (signal, status) in cases {
            assert_eq!(
                SignalExit::default().status(signal),
                Some(status),
                "{signal}"
            );
        }
    }

    #[test]
    fn custom_mapping_sees_the_signal() {
        let policy = SignalExit::Custom(|s| if s == Signal::terminate() { 0 } else { 1 });
        assert_eq!(policy.status(Signal::terminate()), Some(0));
        assert_eq!(policy.status(Signal::interrupt()), Some(1));
    }

    #[test]
    fn unknown_numbers_still_display() {
        assert_eq!(Signal::from_raw(1000).to_string(), "signal 1000");
    }
}
