//! The operating system: signal handlers, the exit handler, threads,
//! stderr, ending the process.
//!
//! This is the bottom of the crate's machinery: it imports the plain types
//! ([`Signal`], [`Exit`]) and the run's once-only [`STATE`](crate::state::STATE),
//! nothing above them. It calls nothing above it, except where the OS calls
//! back (the C library's exit handler, Windows' console handler): those
//! calls it is handed at installation as [`Calls`]. The signal thread is
//! the trigger's: it sleeps in [`SignalWaiter::wait`], which says what woke it.
//!
//! Both back-ends offer the same crate-private items, so no other file needs
//! a `cfg` for the platform:
//!
//! - `check_signal`, which says which signals can start a shutdown;
//! - `install_exit_handler`, which makes `exit()` call [`Calls::process_exit`];
//! - `install_signals`, whose handlers race for the run through
//!   [`STATE`](crate::state::STATE) and wake the signal thread it has
//!   started ([`StartThread`]) with its [`SignalWaiter`];
//! - `run_on_signal_thread`, which hands a run to that thread ([`Wake::Handed`]);
//! - `start_signal_run`, a signal's run started off its handler (a "yes");
//! - `forked` and `restart_after_fork`, for a child forked without exec;
//! - `read_notify_socket` and `notify_stopping`: `STOPPING=1` to systemd's
//!   `NOTIFY_SOCKET` (or keepalive's) when a run starts;
//! - `exit_now` and `die_by_signal`, which end the process without running
//!   anything else, and `end_after`, which does so at a deadline when no
//!   thread can be started to keep it (Unix: an alarm; Windows: unsupported).

use std::io::{self, Write};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use crate::state::STATE;
use crate::{Exit, Signal};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub(crate) use imp::{
    SignalWaiter, check_signal, die_by_signal, end_after, exit_now, forked, forks,
    install_exit_handler, install_signals, mask_crate_thread, notify_stopping, read_notify_socket,
    restart_after_fork, run_on_signal_thread, start_signal_run,
};

/// Whether the calling thread is the process's main thread, where the OS
/// tells it cheaply (Linux: its thread id is the process id); `None`
/// elsewhere.
pub(crate) fn is_main_thread() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid(2) and getpid(2) have no preconditions.
        Some(unsafe { libc::gettid() == libc::getpid() })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// What the OS itself calls back into the layers above: the C library's
/// exit handler, and on Windows the console handler (a thread of Windows'),
/// handed over by installation before any handler is in place. The signal
/// thread of Unix is not among them: it is the trigger's, and asks `sys`
/// what woke it ([`SignalWaiter::wait`]).
#[derive(Clone, Copy)]
pub(crate) struct Calls {
    /// From the C library's exit handler (`main` returned or
    /// `std::process::exit`), with the status when the C library tells it.
    pub(crate) process_exit: fn(Option<i32>),
    /// The console handler won the run with this signal (and its plan's
    /// status): run the hooks and end the process (Windows).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) console_run: fn(Signal, Option<i32>) -> !,
    /// A console event that lost the race and must not return: wait for the
    /// run and end the process as it decided (Windows).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) console_join: fn() -> !,
    /// A console event's question is pending: have it asked (Windows).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) console_ask: fn(Signal),
}

static CALLS: OnceLock<Calls> = OnceLock::new();

/// Hands the back-ends what the OS calls back. The first call counts.
pub(crate) fn hand_over(calls: Calls) {
    let _ = CALLS.set(calls);
}

/// What installation handed over; it did before installing any handler.
fn calls() -> &'static Calls {
    CALLS
        .get()
        .expect("exit_hook: installation hands its calls over before installing handlers")
}

/// What woke the signal thread ([`SignalWaiter::wait`]).
#[cfg_attr(windows, allow(dead_code))]
pub(crate) enum Wake {
    /// The signal's question is pending ([`confirm_exit`](crate::confirm_exit)): have it asked.
    Question(Signal),
    /// A handler won the run with this signal; the status its plan was given
    /// at install (`None`: die by the signal).
    Run(Signal, Option<i32>),
    /// Another trigger published this run and handed it to the signal
    /// thread ([`run_on_signal_thread`]) to run its hooks.
    Handed(Exit),
    /// Installation failed after the thread started: it ends.
    Uninstalled,
    /// Said once, when the thread has had nothing to do for a moment after
    /// its start: the process is not a short-lived one ending at once, and
    /// what a signal's run would otherwise pay for on its way to the exit
    /// can be done now (Unix).
    #[cfg_attr(windows, allow(dead_code, reason = "no signal thread"))]
    Quiet,
}

/// Starts the signal thread that sleeps on a [`SignalWaiter`]: the trigger's.
pub(crate) type StartThread = fn(SignalWaiter) -> io::Result<()>;

/// What a signal handler does, decided at install time so that the handler
/// itself only reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignalPlan {
    /// The signal number.
    pub(crate) signal: i32,
    /// Its name ("SIGTERM"), for the line a forced exit writes.
    pub(crate) name: &'static str,
    /// The exit code after a run it started; `None` to die by the signal.
    pub(crate) status: Option<i32>,
    /// Whether it ends the process at once when a run is already going.
    pub(crate) force: bool,
}

impl SignalPlan {
    /// Writes the line a forced exit leaves on stderr, such as
    /// `exit_hook: SIGINT (2) during the shutdown run: exiting now with status 130`
    /// (`context` is the part between the signal and "exiting"), into
    /// `line`, and returns its length. Allocation-free and lock-free, so
    /// that a signal handler can use it.
    pub(crate) fn forced_line(&self, context: &[u8], line: &mut [u8; 160]) -> usize {
        let mut out = LineWriter { line, len: 0 };
        out.push(b"exit_hook: ");
        out.push(self.name.as_bytes());
        out.push(b" (");
        out.push_number(self.signal);
        out.push(b")");
        out.push(context);
        match self.status {
            Some(code) => {
                out.push(b"exiting now with status ");
                out.push_number(code);
            }
            None => out.push(b"dying by the signal now"),
        }
        out.push(b"\n");
        out.len
    }
}

/// Appends to a fixed buffer, dropping what does not fit.
struct LineWriter<'a> {
    line: &'a mut [u8; 160],
    len: usize,
}

impl LineWriter<'_> {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.line.len() - self.len);
        self.line[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, number: i32) {
        if number < 0 {
            self.push(b"-");
        }
        let mut digits = [0u8; 10];
        let mut rest = number.unsigned_abs();
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }
}

/// Starts a crate thread named `name`, with the crate threads' signal mask
/// (see `mask_crate_thread`).
pub(crate) fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new().name(name.into()).spawn(move || {
        mask_crate_thread();
        work();
    })?;
    Ok(())
}

/// How long ending the process waits for stdout to flush, and for the
/// deadline's report.
const FLUSH_WAIT: Duration = Duration::from_millis(100);

/// Flushes what the standard library buffers for stdout, so the hooks' last
/// lines are not lost when the process ends without `exit()`.
///
/// A run whose hooks all returned has flushed already
/// ([`Ended::Completed`](crate::state::Ended::Completed)). Otherwise the flush takes stdout's lock,
/// which a hook stuck at the deadline may hold for ever (as may a thread
/// blocked writing to a full pipe), so it happens on a helper thread and
/// the process waits for it at most [`FLUSH_WAIT`].
fn flush_stdout() {
    if STATE.completed() {
        return;
    }
    within_a_moment("exit-hook-flush", || {
        let _ = io::stdout().flush();
    });
}

/// Does `work` on a helper thread and waits for it at most [`FLUSH_WAIT`]:
/// for work that may need a lock an application thread holds for ever
/// (stdout's, or whatever a `tracing` subscriber writes through), on the
/// way to ending the process, which must not wait on it.
pub(crate) fn within_a_moment(name: &str, work: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let helper = spawn(name, move || {
        work();
        let _ = done.send(());
    });
    if helper.is_ok() {
        let _ = finished.recv_timeout(FLUSH_WAIT);
    }
}

/// Writes `bytes` to stderr without std's stderr lock, which an application
/// thread may hold for ever (one that called `std::process::exit` while
/// holding it): the crate's own lines get out whatever the hooks are stuck on.
#[cfg(unix)]
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: write(2) from a live buffer of that length.
        let written =
            unsafe { libc::write(libc::STDERR_FILENO, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(written) {
            Ok(n) if n > 0 => bytes = &bytes[n..],
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}

/// Writes `bytes` to stderr. (On Windows through std, whose lock a thread
/// may hold: see the crate docs' Caveats.)
#[cfg(windows)]
pub(crate) fn write_stderr(bytes: &[u8]) {
    let _ = io::stderr().write_all(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forced_line_names_the_signal_and_the_status() {
        let plan = |status| SignalPlan {
            signal: 2,
            name: "SIGINT",
            status,
            force: true,
        };
        let mut line = [0u8; 160];
        let during = b" during the shutdown run: ";
        let len = plan(Some(130)).forced_line(during, &mut line);
        assert_eq!(
            std::str::from_utf8(&line[..len]).unwrap(),
            "exit_hook: SIGINT (2) during the shutdown run: exiting now with status 130\n"
        );
        let len = plan(None).forced_line(during, &mut line);
        assert!(
            std::str::from_utf8(&line[..len])
                .unwrap()
                .ends_with("dying by the signal now\n")
        );
        let len = plan(Some(-7)).forced_line(during, &mut line);
        assert!(
            std::str::from_utf8(&line[..len])
                .unwrap()
                .ends_with("status -7\n")
        );
    }
}
