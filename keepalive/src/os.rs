//! The supervisor's operating-system calls, through `rustix` (no `unsafe`):
//! the loop's sleep and what wakes it, reaping, and what Linux tells of
//! other processes.
//!
//! The loop sleeps in `poll(2)` on a socket pair (the *alarm*) and the
//! workers' notification sockets, until the next timer is due. A byte on
//! the alarm wakes it: signal-hook writes one from the handler of SIGCHLD
//! (a child exited) and SIGHUP (a reload), and the stop hook writes one.
//! The handler only writes to a socket, which is async-signal-safe.
//!
//! On Linux the supervisor is its processes' *child subreaper*
//! (`PR_SET_CHILD_SUBREAPER`): whatever a worker started and left behind —
//! even after `setsid` or a double fork — becomes the supervisor's child,
//! so it can be found (`/proc/self/task/*/children`), stopped and reaped.
//!
//! Windows has no SIGCHLD to wake on: the loop there looks every 5 ms.

use std::time::Instant;

#[cfg(unix)]
pub(crate) use unix::*;
#[cfg(not(unix))]
pub(crate) use windows::*;

/// SIGKILL: 9 on every Unix (POSIX fixes it).
pub(crate) const KILL: exit_hook::Signal = exit_hook::Signal::from_raw(9);

/// Starts the child in a process group of its own, so a Ctrl+C in the
/// terminal reaches only the supervisor, which forwards it once, and a
/// worker's tree can be stopped as one group. (Windows: nothing to set.)
pub(crate) fn separate_process_group(command: &mut std::process::Command) {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
    #[cfg(not(unix))]
    let _ = command;
}

/// A process's resident memory in bytes, from `/proc/PID/statm` (Linux;
/// `None` elsewhere, or when the process is gone).
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Whether `err` says the system ran short of something that comes back
/// (descriptors, processes, memory, buffers, disk), not that the request
/// was wrong: worth trying again later.
pub(crate) fn is_shortage(err: &std::io::Error) -> bool {
    #[cfg(unix)]
    return matches!(
        err.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::EAGAIN
                | libc::ENOMEM
                | libc::ENOBUFS
                | libc::ENOSPC
                | libc::ETXTBSY
        )
    );
    #[cfg(not(unix))]
    return {
        let _ = err;
        false
    };
}

/// `by` after `at`, or, past what an `Instant` holds, a century after it
/// (never a panic): the library takes any `Duration`.
pub(crate) fn later(at: Instant, by: std::time::Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(std::time::Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}

/// How a shell says `status`: its exit code, or 128 + the signal that
/// killed it.
pub(crate) fn shell_status(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(1)
    }
    #[cfg(not(unix))]
    status.code().unwrap_or(1)
}

/// Ends the process with `code` at once, its stdout and stderr flushed:
/// from the supervisor's last hook, which nothing may follow (not
/// `std::process::exit`, which `exit_hook` takes, from a hook, as the end
/// of its run, with the run's status).
#[allow(unsafe_code, reason = "_exit(2): no safe wrapper in std")]
pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(unix)]
    // SAFETY: _exit(2) ends the process; nothing after it runs.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}

/// How long to sleep to wake at `until` (at once if it passed).
fn timeout(until: Option<Instant>) -> Option<std::time::Duration> {
    until.map(|at| at.saturating_duration_since(Instant::now()))
}

#[cfg(unix)]
mod unix {
    use std::io::{self, Read, Write};
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::sync::Arc;
    use std::time::Instant;

    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, Signal, WaitOptions};

    /// What wakes the loop: a socket pair whose write end signal handlers
    /// and the stop hook write a byte to.
    pub(crate) struct Alarm {
        read: UnixStream,
        bell: Bell,
        ids: Vec<signal_hook::SigId>,
    }

    /// The write end of an [`Alarm`], for the stop hook.
    #[derive(Clone)]
    pub(crate) struct Bell(Arc<UnixStream>);

    impl Bell {
        /// Wakes the loop. A full socket already will.
        pub(crate) fn ring(&self) {
            let _ = (&*self.0).write(&[1]);
        }
    }

    impl Alarm {
        /// An alarm rung by each of `signals` (raw numbers) as well.
        pub(crate) fn new(signals: &[i32]) -> io::Result<Alarm> {
            let (read, write) = UnixStream::pair()?;
            read.set_nonblocking(true)?;
            write.set_nonblocking(true)?;
            let mut alarm = Alarm {
                read,
                bell: Bell(Arc::new(write)),
                ids: Vec::new(),
            };
            for &signal in signals {
                let pipe = OwnedFd::from(alarm.bell.0.try_clone()?);
                let id = signal_hook::low_level::pipe::register_raw(signal, pipe)?;
                alarm.ids.push(id);
            }
            Ok(alarm)
        }

        pub(crate) fn bell(&self) -> Bell {
            self.bell.clone()
        }

        /// Sleeps until the alarm rings, one of `fds` can be read, or
        /// `until` (forever if `None`).
        pub(crate) fn sleep(&self, fds: &[BorrowedFd<'_>], until: Option<Instant>) {
            let timeout = super::timeout(until).map(|left| Timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            });
            let mut polled: Vec<PollFd<'_>> = std::iter::once(&self.read.as_fd())
                .chain(fds)
                .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
                .collect();
            // EINTR (a signal came) wakes us as the alarm does.
            let _ = poll(&mut polled, timeout.as_ref());
            let mut drained = [0u8; 64];
            while matches!((&self.read).read(&mut drained), Ok(n) if n > 0) {}
        }
    }

    impl Drop for Alarm {
        fn drop(&mut self) {
            for id in self.ids.drain(..) {
                signal_hook::low_level::unregister(id);
            }
        }
    }

    /// Reaps every child that exited, the workers and whatever was left to
    /// the supervisor alike: `(pid, status)`. The supervisor is the only
    /// reaper of its process: `children`, its workers, are reaped here too.
    pub(crate) fn reap<'a>(
        children: impl IntoIterator<Item = &'a mut std::process::Child>,
    ) -> Vec<(u32, ExitStatus)> {
        drop(children.into_iter());
        let mut reaped = Vec::new();
        while let Ok(Some((pid, status))) = rustix::process::wait(WaitOptions::NOHANG) {
            reaped.push((
                pid.as_raw_nonzero().get() as u32,
                ExitStatus::from_raw(status.as_raw()),
            ));
        }
        reaped
    }

    fn pid(pid: u32) -> io::Result<Pid> {
        i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
    }

    fn signal(signal: exit_hook::Signal) -> io::Result<Signal> {
        Signal::from_named_raw(signal.as_raw())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
    }

    /// Sends `signal` to the process `to`.
    pub(crate) fn signal_process(to: u32, signal: exit_hook::Signal) -> io::Result<()> {
        Ok(rustix::process::kill_process(
            pid(to)?,
            self::signal(signal)?,
        )?)
    }

    /// Sends `signal` to every process of the group `pgid`.
    pub(crate) fn signal_group(pgid: u32, signal: exit_hook::Signal) -> io::Result<()> {
        Ok(rustix::process::kill_process_group(
            pid(pgid)?,
            self::signal(signal)?,
        )?)
    }

    /// Whether the group `pgid` still has a process.
    pub(crate) fn group_exists(pgid: u32) -> bool {
        pid(pgid).is_ok_and(|pgid| rustix::process::test_kill_process_group(pgid).is_ok())
    }

    /// The supervisor's own process group; 0 when it is outside this PID
    /// namespace (keepalive as a container's init, started by a process of
    /// the parent namespace).
    #[allow(
        unsafe_code,
        reason = "rustix's getpgrp asserts a group id above 0, which a PID namespace's init need not have"
    )]
    pub(crate) fn own_group() -> u32 {
        // SAFETY: getpgrp(2) has no preconditions and cannot fail.
        let group = unsafe { libc::getpgrp() };
        u32::try_from(group).unwrap_or(0)
    }

    #[cfg(target_os = "linux")]
    pub(crate) use linux::*;

    #[cfg(target_os = "linux")]
    mod linux {
        use std::io;
        use std::path::PathBuf;

        /// Makes this process the child subreaper of its descendants;
        /// returns whether it was one before (to restore it after).
        pub(crate) fn become_subreaper() -> io::Result<bool> {
            let was = rustix::process::child_subreaper()?.is_some();
            rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
            Ok(was)
        }

        pub(crate) fn stop_being_subreaper() {
            let _ = rustix::process::set_child_subreaper(None);
        }

        /// This process's children (every thread's), from `/proc`.
        pub(crate) fn children() -> Vec<u32> {
            let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
                return Vec::new();
            };
            let mut children: Vec<u32> = tasks
                .flatten()
                .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
                .flat_map(|list| {
                    list.split_whitespace()
                        .filter_map(|pid| pid.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect();
            children.sort_unstable();
            children.dedup();
            children
        }

        /// What `/proc/PID/stat` says of a process.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) struct Stat {
            pub(crate) parent: u32,
            pub(crate) group: u32,
            /// User and system CPU time, in milliseconds.
            pub(crate) cpu_ms: u64,
            /// Stopped by a signal (state `T`) or by a tracer (`t`).
            pub(crate) stopped: bool,
            /// Exited, not reaped yet (state `Z`).
            pub(crate) zombie: bool,
            /// When it started, in clock ticks after boot: with the pid,
            /// what tells it from a later process given the same pid.
            pub(crate) started: u64,
        }

        pub(crate) fn stat(pid: u32) -> Option<Stat> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ... utime stime ...`; comm may
            // hold spaces and ')'.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let number = |at: usize| fields.get(at)?.parse::<u64>().ok();
            Some(Stat {
                parent: fields.get(1)?.parse().ok()?,
                group: fields.get(2)?.parse().ok()?,
                // utime and stime, in clock ticks of 1/100 s (USER_HZ).
                cpu_ms: (number(11)? + number(12)?) * 10,
                stopped: matches!(fields.first(), Some(&"T" | &"t")),
                zombie: fields.first() == Some(&"Z"),
                started: number(19)?,
            })
        }

        /// The `NOTIFY_SOCKET` the process `pid` was started with.
        pub(crate) fn notify_socket_of(pid: u32) -> Option<PathBuf> {
            use std::os::unix::ffi::OsStrExt;
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ
                .split(|&b| b == 0)
                .find_map(|entry| entry.strip_prefix(b"NOTIFY_SOCKET="))
                .map(|path| std::ffi::OsStr::from_bytes(path).into())
        }

        /// Whether the process `pid` is gone (no `/proc` entry): a helper
        /// that sent a notification and exited at once.
        pub(crate) fn is_gone(pid: u32) -> bool {
            stat(pid).is_none()
        }

        /// Whether `pid` is `ancestor` or one of its descendants.
        pub(crate) fn descends_from(mut pid: u32, ancestor: u32) -> bool {
            // A chain of parents is at most as long as the pid space is wide;
            // a loop guard all the same.
            for _ in 0..4096 {
                if pid == ancestor {
                    return true;
                }
                match stat(pid) {
                    Some(Stat { parent, .. }) if parent > 1 => pid = parent,
                    _ => return false,
                }
            }
            false
        }
    }
}

#[cfg(not(unix))]
mod windows {
    use std::io;
    use std::process::{Child, ExitStatus};
    use std::time::{Duration, Instant};

    /// Each of `children` that exited: `(pid, status)`.
    pub(crate) fn reap<'a>(
        children: impl IntoIterator<Item = &'a mut Child>,
    ) -> Vec<(u32, ExitStatus)> {
        children
            .into_iter()
            .filter_map(|child| match child.try_wait() {
                Ok(None) => None,
                Ok(Some(status)) => Some((child.id(), status)),
                // It cannot be waited for: count it as gone.
                Err(_) => Some((child.id(), ExitStatus::default())),
            })
            .collect()
    }

    fn unsupported() -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn signal_process(_to: u32, _signal: exit_hook::Signal) -> io::Result<()> {
        unsupported()
    }

    pub(crate) fn signal_group(_pgid: u32, _signal: exit_hook::Signal) -> io::Result<()> {
        unsupported()
    }

    /// No process groups here: nothing to stop after a worker.
    pub(crate) fn group_exists(_pgid: u32) -> bool {
        false
    }

    pub(crate) fn own_group() -> u32 {
        0
    }

    /// Windows has no SIGCHLD: the loop looks every 5 ms.
    pub(crate) struct Alarm;

    #[derive(Clone)]
    pub(crate) struct Bell;

    impl Bell {
        pub(crate) fn ring(&self) {}
    }

    impl Alarm {
        pub(crate) fn new(_signals: &[i32]) -> io::Result<Alarm> {
            Ok(Alarm)
        }

        pub(crate) fn bell(&self) -> Bell {
            Bell
        }

        pub(crate) fn sleep(&self, until: Option<Instant>) {
            let poll = Duration::from_millis(5);
            std::thread::sleep(super::timeout(until).map_or(poll, |left| left.min(poll)));
        }
    }
}
