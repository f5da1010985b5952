//! Unix: signal-hook handlers with a self-pipe, and `on_exit`/`atexit`.
//!
//! A handler only does async-signal-safe work: one compare-and-swap on the run
//! state, then either a one-byte `write(2)` to wake the signal thread (the
//! signal started the run) or `_exit(2)` (a second signal forces the exit).
//! The signal thread (named `exit-hook`) is the only thread the crate keeps
//! before a run; it sleeps in `read(2)` and costs nothing while idle. When a
//! signal starts a run, it runs the hooks itself.

use std::io::{self, Read};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::raw::c_int;
use std::os::unix::net::UnixStream;
use std::thread;

use super::SignalPlan;
use crate::Signal;
use crate::state::STATE;

pub(crate) const SIGHUP: i32 = libc::SIGHUP;
pub(crate) const SIGINT: i32 = libc::SIGINT;
pub(crate) const SIGTERM: i32 = libc::SIGTERM;
pub(crate) const SIGQUIT: i32 = libc::SIGQUIT;
/// Windows' Ctrl+Break has no Unix signal: 0 is no signal, which install rejects.
pub(crate) const SIGBREAK: i32 = 0;

/// The signals a service is asked to stop with.
pub(crate) const DEFAULT_SIGNALS: &[Signal] =
    &[Signal::hangup(), Signal::interrupt(), Signal::terminate()];

pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    signal_hook::low_level::signal_name(signal)
}

/// Whether `signal` can start a shutdown; the reason if not.
pub(crate) fn check_signal(signal: i32) -> Result<(), &'static str> {
    match signal {
        libc::SIGKILL | libc::SIGSTOP => Err("the kernel never delivers it to a handler"),
        libc::SIGSEGV
        | libc::SIGBUS
        | libc::SIGILL
        | libc::SIGFPE
        | libc::SIGTRAP
        | libc::SIGABRT
        | libc::SIGSYS => {
            Err("it reports a fault in the code that raised it, which cannot go on running")
        }
        _ if !is_signal_number(signal) => Err("it is not a signal on this platform"),
        _ => Ok(()),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_signal_number(signal: i32) -> bool {
    (1..=libc::SIGRTMAX()).contains(&signal)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_signal_number(signal: i32) -> bool {
    signal_name(signal).is_some()
}

/// Registers the handler that `exit()` calls: `main` returning or
/// `std::process::exit`. glibc's `on_exit` also tells it the status.
pub(crate) fn install_exit_handler() -> io::Result<()> {
    // SAFETY: the handler is a plain `extern "C"` function that never unwinds.
    let failed = unsafe { register_exit_handler() } != 0;
    if failed {
        Err(io::Error::other(
            "the C library refused to register an exit handler",
        ))
    } else {
        Ok(())
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn on_exit(
        function: extern "C" fn(c_int, *mut std::os::raw::c_void),
        arg: *mut std::os::raw::c_void,
    ) -> c_int;
}

/// # Safety
///
/// Registers a process-wide exit handler; call it once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe fn register_exit_handler() -> c_int {
    extern "C" fn handler(status: c_int, _: *mut std::os::raw::c_void) {
        exit_handler(Some(status));
    }
    // SAFETY: `handler` is a valid function for the whole process; the argument is unused.
    unsafe { on_exit(handler, std::ptr::null_mut()) }
}

/// # Safety
///
/// Registers a process-wide exit handler; call it once.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
unsafe fn register_exit_handler() -> c_int {
    extern "C" fn handler() {
        exit_handler(None);
    }
    // SAFETY: `handler` is a valid function for the whole process.
    unsafe { libc::atexit(handler) }
}

fn exit_handler(status: Option<i32>) {
    // Unwinding out of an `extern "C"` function aborts; a panic here must not.
    let _ = std::panic::catch_unwind(|| crate::trigger::on_process_exit(status));
}

/// Registers a handler for every planned signal and starts the signal thread.
/// All or nothing: on an error no handler stays registered.
pub(crate) fn install_signals(plans: &[SignalPlan]) -> io::Result<()> {
    if plans.is_empty() {
        return Ok(());
    }
    // Both ends are close-on-exec, so processes the application spawns do not inherit them.
    let (reader, writer) = UnixStream::pair()?;
    writer.set_nonblocking(true)?;
    thread::Builder::new().name("exit-hook".into()).spawn({
        let plans = plans.to_vec();
        move || watch(reader, &plans)
    })?;
    // The write end lives as long as the handlers, that is, the process.
    let wake = writer.into_raw_fd();
    let mut registered = Vec::with_capacity(plans.len());
    for &plan in plans {
        // SAFETY: `on_signal` is async-signal-safe: atomics, write(2), _exit(2)
        // and `reraise`, which only makes async-signal-safe calls.
        match unsafe {
            signal_hook::low_level::register(plan.signal, move || on_signal(plan, wake))
        } {
            Ok(id) => registered.push(id),
            Err(err) => {
                for id in registered {
                    signal_hook::low_level::unregister(id);
                }
                // SAFETY: `wake` came from `into_raw_fd` above and no handler uses it any more.
                // Closing it ends the signal thread's read with end-of-file.
                drop(unsafe { OwnedFd::from_raw_fd(wake) });
                return Err(err);
            }
        }
    }
    Ok(())
}

/// The signal handler's work. Async-signal-safe.
fn on_signal(plan: SignalPlan, wake: RawFd) {
    if STATE.begin_from_signal(plan.signal) {
        let byte = 1u8;
        // SAFETY: `wake` is an open, non-blocking socket for the process's
        // life; write(2) is async-signal-safe. If the socket is full, the
        // signal thread has a wake-up pending already.
        unsafe { libc::write(wake, (&raw const byte).cast(), 1) };
    } else if plan.force {
        let mut line = [0u8; 128];
        let len = plan.forced_line(&mut line);
        // SAFETY: write(2) is async-signal-safe; `line` is ours and holds `len` bytes.
        unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), len) };
        match plan.status {
            // SAFETY: _exit(2) is async-signal-safe and ends the process at once.
            Some(code) => unsafe { libc::_exit(code) },
            None => reraise(plan.signal),
        }
    }
}

/// The signal thread: sleeps until a handler wins the run, then runs it.
fn watch(mut wake: UnixStream, plans: &[SignalPlan]) {
    // This thread runs the hooks of a signal run. Its first allocation makes
    // the C library set up a malloc arena for it (mmap, munmap, mprotect):
    // do that now, at install, rather than between the signal and the exit.
    drop(std::hint::black_box(Box::new(0u64)));
    let mut buf = [0u8; 64];
    loop {
        match wake.read(&mut buf) {
            Ok(0) => return, // installation failed and closed the write end
            Ok(_) => {
                if let Some(signal) = STATE.take_signal() {
                    let plan = plans.iter().find(|plan| plan.signal == signal);
                    let status = plan.map_or(Some(128 + signal), |plan| plan.status);
                    crate::trigger::on_signal(Signal::from_raw(signal), status);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Sends `signal` to the process `pid` (the supervisor's child, not reaped yet).
#[cfg(feature = "supervisor")]
pub(crate) fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) has no memory-safety preconditions; the caller holds
    // the child unreaped, so `pid` is still that child.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts the child in a process group of its own, so a Ctrl+C in the
/// terminal reaches only the supervisor, which forwards it once.
#[cfg(feature = "supervisor")]
pub(crate) fn separate_process_group(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

/// Ends the process with `code`, running no exit handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    super::flush_stdout();
    // SAFETY: _exit(2) ends the process; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// Ends the process by `signal`'s default action, so the parent sees it
/// killed by the signal.
pub(crate) fn die_by_signal(signal: i32) -> ! {
    super::flush_stdout();
    reraise(signal)
}

/// Async-signal-safe: restores the default action and raises the signal.
///
/// If the process survives — the kernel ignores a signal with the default
/// action sent to a PID namespace's init, which is what a containerised
/// application usually is — it exits with 128 + n instead. (signal-hook's
/// `emulate_default_handler` would fall back to `abort()`, which hangs there.)
fn reraise(signal: i32) -> ! {
    // SAFETY: sigaction(2), sigemptyset/sigaddset on a local set,
    // sigprocmask(2), raise(3) and _exit(2) are all async-signal-safe; the
    // structures are zero-initialised as the C API expects.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &action, std::ptr::null_mut());
        let mut unblock: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut unblock);
        libc::sigaddset(&mut unblock, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &unblock, std::ptr::null_mut());
        libc::raise(signal);
        libc::_exit(128 + signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_catchable_asynchronous_signals_are_accepted() {
        for ok in [
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGQUIT,
            libc::SIGUSR1,
        ] {
            assert_eq!(check_signal(ok), Ok(()), "{ok}");
        }
        for bad in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGABRT,
            0,
            -1,
            1000,
        ] {
            assert!(check_signal(bad).is_err(), "{bad}");
        }
    }
}
