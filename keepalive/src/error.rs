//! Why a supervisor could not run.

use std::fmt;
use std::io;

/// Why [`Supervisor::run`](crate::Supervisor::run) could not run: it did not
/// get as far as its loop. (A worker that cannot start is not one of these:
/// that is its slot's failure, reported as an [`Event`](crate::Event).)
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Setting up failed: no worker asked for, a listening socket that
    /// cannot be bound, the notification sockets' directory, SIGCHLD's
    /// handler, the child subreaper. The message says which, with the
    /// operating system's reason.
    Setup(io::Error),
    /// The stop hook could not be registered with `exit_hook` (an
    /// installation error, or the process is already exiting).
    StopHook(exit_hook::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Setup(err) => write!(f, "{err}"),
            Error::StopHook(_) => f.write_str("cannot register the supervisor's stop hook"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Its message is the I/O error's own, with what it was doing.
            Error::Setup(_) => None,
            Error::StopHook(err) => Some(err),
        }
    }
}

impl From<exit_hook::Error> for Error {
    fn from(err: exit_hook::Error) -> Self {
        Error::StopHook(err)
    }
}
