//! Starting a worker on Unix: what the child does between `fork` and `exec`.
//!
//! systemd's `LISTEN_PID` must be the worker's own pid, which exists only
//! after the fork, and `Command` builds the environment before it. So the
//! child execs by itself, from `pre_exec`, with an environment prepared in
//! the parent whose `LISTEN_PID=` entry has room for the digits: between
//! fork and exec only async-signal-safe work is allowed, and writing digits
//! into a buffer the child owns is. `Command` still does the rest (stdio,
//! the process group, reporting a failed exec to the parent).
//!
//! In the child, in order:
//! 1. On Linux, `PR_SET_PDEATHSIG` = SIGKILL: if the supervisor dies, even
//!    by SIGKILL, the worker dies with it instead of living on as an
//!    orphan. The signal comes when the *thread* that spawned the worker
//!    ends, so the supervisor spawns from the thread that runs it for its
//!    whole life. Not SIGTERM, which would let the worker run its hooks:
//!    the kernel sends the signal again each time the worker's parent
//!    *thread* exits, and a dying supervisor's threads exit one by one, so
//!    a worker would get SIGTERM several times, and an `exit_hook` program
//!    takes a second SIGTERM as "force the exit", cutting its hooks short
//!    anyway, or not, depending on the race. SIGKILL is the same every time.
//! 2. The listeners are put at descriptors 3, 4, …; every other descriptor
//!    from there up is marked close-on-exec, so nothing else the supervisor
//!    holds (or inherited) leaks into the worker; then the readiness
//!    pipe's write end (`--ready-fd N`), at N.
//! 3. `execve` with the program found on `PATH` in the parent, every spawn
//!    again, so a reload picks up a new binary.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variables of the protocols keepalive speaks: the
/// supervisor's own (it may run under systemd) never reach a worker.
const PROTOCOL_VARS: [&str; 6] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// Room for `LISTEN_PID=` and any pid's digits, and the terminating NUL.
const PID_ENTRY: usize = 32;

/// What a worker is started with.
pub(crate) struct Plan<'a> {
    pub(crate) program: &'a OsStr,
    pub(crate) args: &'a [OsString],
    /// Set or overridden for the worker.
    pub(crate) envs: &'a [(OsString, OsString)],
    /// The listeners and their `LISTEN_FDNAMES`, if any.
    pub(crate) listeners: Option<(Vec<RawFd>, &'a str)>,
    /// The worker's `NOTIFY_SOCKET`.
    pub(crate) notify_socket: Option<&'a Path>,
    /// `WATCHDOG_USEC`: how often the worker must say `WATCHDOG=1`.
    pub(crate) watchdog: Option<std::time::Duration>,
    /// The slot's index, as `KEEPALIVE_WORKER` and under the name given
    /// (pm2's `NODE_APP_INSTANCE`).
    pub(crate) worker: (usize, Option<&'a OsStr>),
    /// The readiness pipe's write end, and the descriptor the worker gets
    /// it at (s6's notification-fd; `KEEPALIVE_READY_FD`).
    pub(crate) ready: Option<(RawFd, RawFd)>,
}

impl Plan<'_> {
    /// Prepares `command` (made with [`Command::new`] of anything: the
    /// program is found here) to exec the worker this plan describes.
    pub(crate) fn prepare(&self, command: &mut Command) -> io::Result<()> {
        let path = find_program(self.program, self.envs)?;
        let mut argv = vec![cstring(self.program.as_bytes())?];
        for arg in self.args {
            argv.push(cstring(arg.as_bytes())?);
        }
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(key, _)| !PROTOCOL_VARS.iter().any(|var| key == var))
            .filter(|(key, _)| !self.envs.iter().any(|(k, _)| k == key))
            .collect();
        env.extend(self.envs.iter().cloned());
        if let Some((fds, names)) = &self.listeners {
            env.push(("LISTEN_FDS".into(), fds.len().to_string().into()));
            env.push(("LISTEN_FDNAMES".into(), names.into()));
        }
        if let Some(socket) = self.notify_socket {
            env.push(("NOTIFY_SOCKET".into(), socket.into()));
        }
        if let Some(every) = self.watchdog {
            env.push(("WATCHDOG_USEC".into(), every.as_micros().to_string().into()));
        }
        let (slot, also) = self.worker;
        for name in std::iter::once(OsStr::new("KEEPALIVE_WORKER")).chain(also) {
            env.retain(|(key, _)| key != name);
            env.push((name.into(), slot.to_string().into()));
        }
        if let Some((_, at)) = self.ready {
            env.push(("KEEPALIVE_READY_FD".into(), at.to_string().into()));
        }
        let mut envp = env
            .into_iter()
            .map(|(key, value)| {
                let mut entry = key.into_vec();
                entry.push(b'=');
                entry.extend(value.into_vec());
                cstring(&entry)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut child = Child {
            path: cstring(path.as_os_str().as_bytes())?,
            argv_ptrs: Vec::new(),
            envp_ptrs: Vec::new(),
            pid_entry: self.listeners.as_ref().map(|_| Box::new([0u8; PID_ENTRY])),
            fds: self
                .listeners
                .as_ref()
                .map_or_else(Vec::new, |(fds, _)| fds.clone()),
            parent: std::process::id(),
            ready: self.ready,
            argv: Vec::new(),
            envp: Vec::new(),
        };
        child.argv_ptrs = argv
            .iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        child.envp_ptrs = envp.iter().map(|s| s.as_ptr()).collect();
        if let Some(entry) = &mut child.pid_entry {
            entry[..11].copy_from_slice(b"LISTEN_PID=");
            child.envp_ptrs.push(entry.as_ptr().cast());
        }
        child.envp_ptrs.push(std::ptr::null());
        child.argv = std::mem::take(&mut argv);
        child.envp = std::mem::take(&mut envp);
        // SAFETY: `Child::exec` does only async-signal-safe work (see there).
        unsafe { command.pre_exec(move || child.exec()) };
        Ok(())
    }
}

/// What the child needs, made in the parent: nothing is allocated after the fork.
struct Child {
    path: CString,
    /// Own the strings the pointers point into (moving a `CString` does not move its bytes).
    argv: Vec<CString>,
    envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` and room for the digits, written in the child.
    pid_entry: Option<Box<[u8; PID_ENTRY]>>,
    fds: Vec<RawFd>,
    /// The readiness pipe's write end and where the worker gets it.
    ready: Option<(RawFd, RawFd)>,
    /// The supervisor's pid, to see it died before `PR_SET_PDEATHSIG` was set.
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    parent: u32,
}

// SAFETY: the raw pointers point into `argv`, `envp` and `pid_entry`, which
// the struct owns and never changes after `prepare`, except `pid_entry`'s
// digits, written only in the forked child.
unsafe impl Send for Child {}
// SAFETY: as for `Send`; `exec` takes `&mut self`.
unsafe impl Sync for Child {}

impl Child {
    /// In the forked child: async-signal-safe calls and writes into memory
    /// it owns only. Returns only if something failed.
    fn exec(&mut self) -> io::Result<()> {
        // `argv` and `envp` are only kept alive for the pointers into them.
        let _ = (&self.argv, &self.envp);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: prctl(2) and getppid(2) are async-signal-safe.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The supervisor died before the line above: nobody to tell us.
            if libc::getppid() as u32 != self.parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        if let Some(entry) = &mut self.pid_entry {
            // SAFETY: getpid(2) is async-signal-safe.
            write_decimal(&mut entry[11..], unsafe { libc::getpid() } as u32);
        }
        for (i, &fd) in self.fds.iter().enumerate() {
            // SAFETY: dup2(2) is async-signal-safe; the new descriptor is
            // not close-on-exec, which is what the worker needs.
            if unsafe { libc::dup2(fd, 3 + i as RawFd) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        keep_only_below(3 + self.fds.len() as RawFd);
        if let Some((pipe, at)) = self.ready {
            // The pipe's end is above any listener's place (it was moved
            // to 512 or above), so the listeners did not clobber it.
            // SAFETY: dup2(2) is async-signal-safe; the new descriptor is
            // not close-on-exec.
            if unsafe { libc::dup2(pipe, at) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: the path and both arrays are NUL-terminated, pointing
        // into strings this struct owns.
        unsafe {
            libc::execve(
                self.path.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            )
        };
        Err(io::Error::last_os_error())
    }
}

/// Marks every descriptor from `first` up close-on-exec. Async-signal-safe.
fn keep_only_below(first: RawFd) {
    #[cfg(target_os = "linux")]
    {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC closes nothing.
        let done = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            )
        } == 0;
        if done {
            return;
        }
    }
    // Before Linux 5.11, and elsewhere: one by one, up to the limit.
    // SAFETY: sysconf(3) with _SC_OPEN_MAX is async-signal-safe in practice
    // (it reads the resource limit).
    let limit = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) }.clamp(0, 65_536) as RawFd;
    for fd in first..limit {
        // SAFETY: fcntl(2) on a descriptor that may not be open: EBADF then.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Writes `n` in decimal and a NUL into `buf`. Async-signal-safe.
fn write_decimal(buf: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    buf[len] = 0;
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a NUL byte in an argument or variable",
        )
    })
}

/// The program as `execvp` would find it: a path if it has a `/`, else the
/// first executable file of that name in the worker's `PATH`.
fn find_program(program: &OsStr, envs: &[(OsString, OsString)]) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(program.into());
    }
    let path = envs
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found on PATH", Path::new(program).display()),
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_written_with_a_nul() {
        let mut buf = [0xFFu8; 12];
        write_decimal(&mut buf, 4_194_303);
        assert_eq!(&buf[..8], b"4194303\0");
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }

    #[test]
    fn programs_are_found_on_the_path() {
        assert!(find_program(OsStr::new("sh"), &[]).unwrap().ends_with("sh"));
        let err = find_program(OsStr::new("no-such-program-here"), &[]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(
            err.to_string()
                .contains("no-such-program-here not found on PATH")
        );
        let env = [("PATH".into(), "/nonexistent".into())];
        assert!(find_program(OsStr::new("sh"), &env).is_err());
    }
}
