//! The deadline kept without a thread. When no thread can be created (a
//! pids cgroup or `RLIMIT_NPROC` exhausted), the thread that runs the
//! hooks has no guard beside it to end the process at the deadline: an
//! alarm does (`setitimer`'s SIGALRM), from a handler that only writes a
//! line prepared in advance and ends the process, both async-signal-safe.

use std::io;
use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How the alarm ends the process: an exit status, or `-n` to die by
/// signal `n`.
static END: AtomicI32 = AtomicI32::new(0);

const LINE: &[u8] =
    b"exit_hook: the deadline passed with hooks still running (no thread could be started to name them)\n";

extern "C" fn on_alarm(_: c_int) {
    // SAFETY: write(2) from a static buffer; async-signal-safe.
    unsafe { libc::write(libc::STDERR_FILENO, LINE.as_ptr().cast(), LINE.len()) };
    match END.load(Ordering::Relaxed) {
        // SAFETY: _exit(2) is async-signal-safe.
        code @ 0.. => unsafe { libc::_exit(code) },
        signal => super::reraise(-signal),
    }
}

/// Ends the process `after` from now, as `end` says (an exit status, or
/// `-n`: die by signal `n`), unless it ended before.
#[allow(
    clippy::unnecessary_fallible_conversions,
    reason = "suseconds_t is i64 on Linux, i32 on macOS"
)]
pub(crate) fn end_after(after: Duration, end: i32) -> io::Result<()> {
    END.store(end, Ordering::Relaxed);
    let after = after.max(Duration::from_micros(1));
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::try_from(after.subsec_micros()).unwrap_or(0),
        },
    };
    // SAFETY: sigaction(2) with a zeroed action naming a handler that never
    // unwinds; sigset operations on a local set; pthread_sigmask(3) for this
    // thread; setitimer(2) from a live structure.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_alarm as extern "C" fn(c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGALRM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), std::ptr::null_mut());
        if libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
