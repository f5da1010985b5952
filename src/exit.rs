//! [`Exit`]: what a hook is told about why the process is ending.

use std::fmt;
use std::panic::PanicHookInfo;
use std::sync::Arc;
use std::time::Instant;

use crate::Signal;

/// Why the process is ending, and the status it will end with.
///
/// Every hook of a run receives the same `Exit` (sync hooks by reference,
/// async hooks by value; cloning is a reference-count increment).
///
/// ```
/// exit_hook::add(|exit| match exit.trigger() {
///     exit_hook::Trigger::Signal(signal) => eprintln!("stopped by {signal}"),
///     exit_hook::Trigger::Panic(panic) => eprintln!("crashed: {panic}"),
///     _ => eprintln!("exiting: {exit}"),
/// });
/// ```
#[derive(Clone)]
pub struct Exit(Arc<Inner>);

struct Inner {
    trigger: Trigger,
    code: Option<i32>,
    deadline: Instant,
    /// A [`Trigger::Requested`] run started by `start_exit`, not `exit`.
    by_start_exit: bool,
}

/// What started the run.
///
/// ```
/// use exit_hook::Trigger;
///
/// exit_hook::add(|exit| {
///     let why = match exit.trigger() {
///         Trigger::Signal(signal) => format!("stopped by {signal}"),
///         Trigger::Panic(panic) => format!("crashed at {:?}", panic.location()),
///         Trigger::Normal | Trigger::Requested => "finished".to_owned(),
///         _ => "ending".to_owned(),
///     };
///     eprintln!("{why}");
/// });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Trigger {
    /// A termination signal arrived (on Windows: a console event).
    Signal(Signal),
    /// A thread panicked and [`Builder::exit_on_panic`](crate::Builder::exit_on_panic) is on.
    Panic(Panic),
    /// The process is exiting on its own: `main` returned or
    /// [`std::process::exit`] was called.
    Normal,
    /// [`exit_hook::exit`](crate::exit) or [`exit_hook::start_exit`](crate::start_exit) was called.
    Requested,
}

impl Exit {
    pub(crate) fn new(trigger: Trigger, code: Option<i32>, deadline: Instant) -> Self {
        Exit(Arc::new(Inner {
            trigger,
            code: code.map(status_seen_by_parent),
            deadline,
            by_start_exit: false,
        }))
    }

    /// The `Exit` of a run [`start_exit`](crate::start_exit) started.
    pub(crate) fn by_start_exit(code: i32, deadline: Instant) -> Self {
        Exit(Arc::new(Inner {
            trigger: Trigger::Requested,
            code: Some(status_seen_by_parent(code)),
            deadline,
            by_start_exit: true,
        }))
    }

    /// What started the run.
    pub fn trigger(&self) -> &Trigger {
        &self.0.trigger
    }

    /// The signal that started the run, if a signal did.
    pub fn signal(&self) -> Option<Signal> {
        match self.0.trigger {
            Trigger::Signal(signal) => Some(signal),
            _ => None,
        }
    }

    /// The panic that started the run, if a panic did.
    pub fn panic(&self) -> Option<&Panic> {
        match &self.0.trigger {
            Trigger::Panic(panic) => Some(panic),
            _ => None,
        }
    }

    /// The error that ends the process, like the `err` argument of Node's
    /// exit hooks: the panic, if a panic started the run.
    pub fn error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.panic().map(|panic| panic as _)
    }

    /// The exit code the parent will read with [`ExitStatus::code`](std::process::ExitStatus::code).
    ///
    /// On Unix a parent sees only the low eight bits of the code a process
    /// exits with, so this is that: `exit_hook::exit(259)` tells hooks 3, as
    /// the parent will see it (the process still exits with 259, as
    /// `std::process::exit(259)` would). Windows keeps all 32 bits.
    ///
    /// `None` when the process will instead die by the signal
    /// ([`SignalExit::Reraise`](crate::SignalExit::Reraise)), or when it exits
    /// through `exit()` on a platform whose C library does not tell exit
    /// handlers the status (anything but Linux with glibc).
    pub fn code(&self) -> Option<i32> {
        self.0.code
    }

    /// When the run will be cut short: its start plus the configured timeout.
    ///
    /// That is the end of the last phase, [`Flush`](crate::Phase::Flush).
    /// A hook of an earlier phase is left behind at its *phase's* end,
    /// which comes before: the drain's at
    /// [`Builder::drain_timeout`](crate::Builder::drain_timeout) (6 s of
    /// the default 10 s), cleanup's and close's at a third and two thirds
    /// of the time after it (7.3 s and 8.7 s). So the deadline is what a
    /// flush hook can plan with: one that waits for something slow (a
    /// remote exporter) can stop waiting a little before it and still
    /// write its own last line:
    ///
    /// ```
    /// use std::time::Duration;
    /// use exit_hook::Phase;
    ///
    /// exit_hook::in_phase(Phase::Flush).add_async(|exit| async move {
    ///     let give_up = exit.deadline() - Duration::from_millis(500);
    ///     let flushed = tokio::time::timeout_at(give_up.into(), async { /* exporter.flush().await */ }).await;
    ///     if flushed.is_err() {
    ///         eprintln!("gave up on the exporter");
    ///     }
    ///     // the log's last line: there are still 500 ms left for it
    /// });
    /// ```
    pub fn deadline(&self) -> Instant {
        self.0.deadline
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.trigger() {
            Trigger::Signal(signal) => write!(f, "{signal}")?,
            Trigger::Panic(panic) => write!(f, "{panic}")?,
            Trigger::Normal => f.write_str("process exit")?,
            Trigger::Requested if self.0.by_start_exit => f.write_str("exit_hook::start_exit")?,
            Trigger::Requested => f.write_str("exit_hook::exit")?,
        }
        match (self.code(), self.signal()) {
            (Some(code), _) => write!(f, ", exit status {code}"),
            (None, Some(_)) => f.write_str(", dying by the signal"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exit")
            .field("trigger", self.trigger())
            .field("code", &self.code())
            .field("deadline", &self.deadline())
            .finish()
    }
}

/// The panic that started a run: message, location and thread.
///
/// Its `Display` reads like the standard library's panic message.
///
/// ```
/// exit_hook::add(|exit| {
///     if let Some(panic) = exit.panic() {
///         eprintln!("report: {} in thread {:?}", panic.message(), panic.thread());
///     }
/// });
/// ```
#[derive(Debug, Clone)]
pub struct Panic {
    message: String,
    location: Option<String>,
    thread: Option<String>,
}

impl Panic {
    pub(crate) fn from_hook_info(info: &PanicHookInfo<'_>) -> Self {
        Panic {
            message: panic_message(info),
            location: info
                .location()
                .map(|at| format!("{}:{}:{}", at.file(), at.line(), at.column())),
            thread: std::thread::current().name().map(str::to_owned),
        }
    }

    /// The panic message (`"Box<dyn Any>"` when the payload was not a string).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where the panic happened, as `file:line:column`.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The name of the thread that panicked, if it had one.
    pub fn thread(&self) -> Option<&str> {
        self.thread.as_deref()
    }
}

/// The message of a panic, as the standard library's hook prints it.
pub(crate) fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "thread '{}' panicked",
            self.thread.as_deref().unwrap_or("<unnamed>")
        )?;
        if let Some(location) = &self.location {
            write!(f, " at {location}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Panic {}

/// The exit code a parent reads when this process exits with `code`: the
/// low eight bits on Unix (`exit(259)` reads as 3), all of it on Windows.
fn status_seen_by_parent(code: i32) -> i32 {
    if cfg!(unix) { code & 0xFF } else { code }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_why_and_the_status() {
        let signal = Exit::new(
            Trigger::Signal(Signal::terminate()),
            Some(143),
            Instant::now(),
        );
        assert_eq!(signal.to_string(), "SIGTERM (15), exit status 143");
        let reraise = Exit::new(Trigger::Signal(Signal::terminate()), None, Instant::now());
        assert_eq!(reraise.to_string(), "SIGTERM (15), dying by the signal");
        assert_eq!(
            Exit::new(Trigger::Normal, Some(0), Instant::now()).to_string(),
            "process exit, exit status 0"
        );
        assert_eq!(
            Exit::new(Trigger::Normal, None, Instant::now()).to_string(),
            "process exit"
        );
        assert_eq!(
            Exit::new(Trigger::Requested, Some(3), Instant::now()).to_string(),
            "exit_hook::exit, exit status 3"
        );
        assert_eq!(
            Exit::by_start_exit(3, Instant::now()).to_string(),
            "exit_hook::start_exit, exit status 3"
        );
    }

    #[test]
    fn panic_is_the_error() {
        let panic = Panic {
            message: "boom".into(),
            location: Some("src/main.rs:4:5".into()),
            thread: Some("main".into()),
        };
        let exit = Exit::new(Trigger::Panic(panic), Some(101), Instant::now());
        let err = exit.error().expect("a panic run has an error");
        assert_eq!(
            err.to_string(),
            "thread 'main' panicked at src/main.rs:4:5: boom"
        );
        assert_eq!(exit.signal(), None);
        assert!(
            Exit::new(Trigger::Requested, Some(3), Instant::now())
                .error()
                .is_none()
        );
    }
}
