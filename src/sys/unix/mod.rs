//! Unix: signal handlers and their thread ([`signals`]), woken through a
//! socket pair ([`wake`]); `on_exit`/`atexit`; ending the process.

use std::io;
use std::mem::MaybeUninit;
use std::os::raw::c_int;

mod alarm;
mod notify;
mod signals;
mod wake;

pub(crate) use alarm::end_after;
pub(crate) use notify::{notify_stopping, read_notify_socket};
pub(crate) use signals::{
    SignalWaiter, forked, forks, install_signals, restart_after_fork, run_on_signal_thread,
    start_signal_run,
};

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
        _ if is_reserved(signal) => Err("the C library reserves it for its threads"),
        _ => Ok(()),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_signal_number(signal: i32) -> bool {
    (1..=libc::SIGRTMAX()).contains(&signal)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_signal_number(signal: i32) -> bool {
    signal_hook::low_level::signal_name(signal).is_some()
}

/// The numbers between the classic signals and `SIGRTMIN` (32 and 33 with
/// glibc): the C library uses them to manage its threads.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_reserved(signal: i32) -> bool {
    (32..libc::SIGRTMIN()).contains(&signal)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn is_reserved(_signal: i32) -> bool {
    false
}

/// Sets a crate thread's signal mask: the planned signals unblocked
/// (whatever mask the thread that started it had), SIGPIPE blocked, so a
/// write to a closed pipe fails with `EPIPE` instead of killing the process.
pub(crate) fn mask_crate_thread() {
    // SAFETY: sigset operations on a local set, then pthread_sigmask(3) for this thread.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        for signal in signals::planned() {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), std::ptr::null_mut());
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
    }
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
    let _ = std::panic::catch_unwind(|| (super::calls().process_exit)(status));
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
pub(super) fn reraise(signal: i32) -> ! {
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
        libc::_exit(crate::Signal::from_raw(signal).shell_status())
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
