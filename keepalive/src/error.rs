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
    /// handler, the child subreaper. The message says which;
    /// [`source()`](std::error::Error::source) gives the operating
    /// system's reason, and `{:#}` prints both.
    Setup(io::Error),
    /// The stop hook could not be registered with `exit_hook` (an
    /// installation error, or the process is already exiting).
    StopHook(exit_hook::Error),
}

/// What failed; with `{:#}`, its causes too, each after `: `
/// (`cannot listen on 127.0.0.1:80: Permission denied (os error 13)`).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Setup(err) => write!(f, "{err}"),
            Error::StopHook(_) => f.write_str("cannot register the supervisor's stop hook"),
        }?;
        if f.alternate() {
            let mut cause = std::error::Error::source(self);
            while let Some(err) = cause {
                write!(f, ": {err}")?;
                cause = err.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Its message is the I/O error's own: the cause is the one it
            // was given with what was being done (`context`), if it was.
            Error::Setup(err) => err.source(),
            Error::StopHook(err) => Some(err),
        }
    }
}

impl From<exit_hook::Error> for Error {
    fn from(err: exit_hook::Error) -> Self {
        Error::StopHook(err)
    }
}

/// `err`, saying what was being done: its message is `doing`, its
/// `source()` is `err` (and its kind is `err`'s). The one way keepalive
/// adds what it was doing to an error.
pub(crate) fn context(err: io::Error, doing: impl Into<String>) -> io::Error {
    io::Error::new(
        err.kind(),
        Doing {
            doing: doing.into(),
            cause: err,
        },
    )
}

/// `err` and its causes, each after `: `, as one line (for an event).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        line.push_str(": ");
        line.push_str(&err.to_string());
        cause = err.source();
    }
    line
}

/// What was being done when an I/O error came.
#[derive(Debug)]
struct Doing {
    doing: String,
    cause: io::Error,
}

impl fmt::Display for Doing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.doing)
    }
}

impl std::error::Error for Doing {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message once: what failed, then why, by `source()`.
    #[test]
    fn an_error_says_what_failed_and_chains_its_cause_once() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let cause = denied.to_string();
        let err = Error::Setup(context(denied, "cannot listen on 127.0.0.1:80"));
        assert_eq!(err.to_string(), "cannot listen on 127.0.0.1:80");
        let source = std::error::Error::source(&err).expect("a cause");
        assert_eq!(source.to_string(), cause);
        assert!(source.source().is_none());
        assert_eq!(
            format!("{err:#}"),
            format!("cannot listen on 127.0.0.1:80: {cause}")
        );
        assert_eq!(
            chain(&err),
            format!("cannot listen on 127.0.0.1:80: {cause}")
        );
        let Error::Setup(io) = &err else { panic!() };
        assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);
        // Twice: each layer said once.
        let twice = context(
            context(io::Error::other("full"), "cannot write"),
            "cannot log",
        );
        assert_eq!(chain(&twice), "cannot log: cannot write: full");
    }
}
