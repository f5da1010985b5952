//! The wake-up socket between the signal handlers and the signal thread.
//!
//! A handler sends one byte; the signal thread sleeps in `recv(2)` on the
//! other end. The socket must survive what applications do to their
//! descriptors:
//!
//! - both ends are moved to high numbers (`F_DUPFD_CLOEXEC`), so an
//!   application that closed stdout before its first `add` does not have
//!   its `println!` land in the crate's socket, and one that opens files
//!   after closing everything does not get the crate's numbers;
//! - before using an end, the crate checks it is still the same socket (its
//!   inode), so a byte is never sent into (or read from) a descriptor the
//!   application closed and reused; `send(2)` with `MSG_NOSIGNAL` never
//!   raises SIGPIPE;
//! - when the application closes the crate's descriptors (a daemon closing
//!   every descriptor from 3 up), the signal thread sees its end vanish and
//!   makes a new pair; a signal that won the run meanwhile is not lost, as
//!   the thread checks for one after every wake-up and every new pair.

use std::io;
use std::os::fd::RawFd;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// Descriptors below this are left to the application.
const LOWEST: c_int = 512;

/// The handlers' end, and its socket's inode (0 while there is none).
static SENDER: AtomicI32 = AtomicI32::new(-1);
static SENDER_INODE: AtomicU64 = AtomicU64::new(0);
/// The signal thread's end, kept here so a forked child can close its copy.
static RECEIVER: AtomicI32 = AtomicI32::new(-1);

/// The signal thread's end of a pair.
pub(super) struct Receiver {
    fd: RawFd,
    inode: u64,
}

/// What [`Receiver::wait`] saw.
pub(super) enum Woken {
    /// A handler sent a byte (or several).
    Byte,
    /// The socket is gone: closed, reused, or its other end closed.
    Gone,
    /// Nothing came for as long as the caller said.
    Quiet,
}

/// Makes a new pair and hands its sending end to the handlers. The ends of
/// an earlier pair that are still the crate's are closed.
pub(super) fn pair() -> io::Result<Receiver> {
    let mut fds = [-1; 2];
    // Close-on-exec from the start where the platform can (Apple's cannot:
    // `move_high` makes close-on-exec copies).
    #[cfg(not(target_vendor = "apple"))]
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(target_vendor = "apple")]
    let kind = libc::SOCK_STREAM;
    // SAFETY: socketpair(2) writes two descriptors into `fds`.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (receiver, sender) = (move_high(fds[0]), move_high(fds[1]));
    let (Some(receiver_inode), Some(sender_inode)) = (inode(receiver), inode(sender)) else {
        close_fd(receiver);
        close_fd(sender);
        return Err(io::Error::other("a new socket has no inode"));
    };
    // Publish the inode before the descriptor: a handler that sees the new
    // descriptor then compares against the new inode.
    let old_inode = SENDER_INODE.swap(sender_inode, Ordering::AcqRel);
    let old = SENDER.swap(sender, Ordering::AcqRel);
    close_if_ours(old, old_inode);
    RECEIVER.store(receiver, Ordering::Release);
    Ok(Receiver {
        fd: receiver,
        inode: receiver_inode,
    })
}

/// Wakes the signal thread. Async-signal-safe: atomics, `fstat(2)`, `send(2)`.
/// Returns `false` if there is no socket to wake it through.
pub(super) fn wake() -> bool {
    // The caller set its flag: the signal thread, making a new socket,
    // either sees the flag or is seen making it (`SignalWaiter::wait`).
    std::sync::atomic::fence(Ordering::SeqCst);
    let fd = SENDER.load(Ordering::Acquire);
    if fd < 0 || inode(fd) != Some(SENDER_INODE.load(Ordering::Acquire)) {
        return false;
    }
    let byte = 1u8;
    // SAFETY: `fd` is a socket of the crate's (its inode matched); send(2) is
    // async-signal-safe. A full socket means a wake-up is pending already.
    let sent = unsafe {
        libc::send(
            fd,
            (&raw const byte).cast(),
            1,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    sent == 1 || io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Closes both ends: the signal thread sees its socket vanish. In a child
/// forked without exec, closes the copies of the parent's ends.
/// Async-signal-safe: atomics and `close(2)`.
pub(super) fn close() {
    SENDER_INODE.store(0, Ordering::Release);
    for end in [&SENDER, &RECEIVER] {
        let fd = end.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            close_fd(fd);
        }
    }
}

impl Receiver {
    /// Sleeps until a handler sends a byte or the socket is gone, or, with
    /// `quiet_after`, until that long has passed with neither.
    pub(super) fn wait(&self, mut quiet_after: Option<Duration>) -> Woken {
        let mut buf = [0u8; 64];
        loop {
            if inode(self.fd) != Some(self.inode) {
                return Woken::Gone;
            }
            if let Some(after) = quiet_after.take() {
                let mut fd = libc::pollfd {
                    fd: self.fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = c_int::try_from(after.as_millis()).unwrap_or(c_int::MAX);
                // SAFETY: poll(2) on one descriptor of ours, `fd` lives across the call.
                match unsafe { libc::poll(&raw mut fd, 1, ms) } {
                    0 => return Woken::Quiet,
                    -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {
                        quiet_after = Some(after); // (a moment longer: no matter)
                        continue;
                    }
                    _ => {} // readable, or an error recv(2) will say
                }
            }
            // SAFETY: `fd` is this pair's socket (its inode matched); `buf` is ours.
            let got = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            match got {
                1.. => return Woken::Byte,
                0 => return Woken::Gone,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                _ => return Woken::Gone,
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        close_if_ours(self.fd, self.inode);
    }
}

/// `fd` moved to [`LOWEST`] or above, close-on-exec; `fd` itself if the
/// descriptor limit leaves no room up there.
fn move_high(fd: RawFd) -> RawFd {
    // SAFETY: fcntl(2) on a descriptor we own; the copy is ours too.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, LOWEST) };
    if high < 0 {
        // SAFETY: as above; F_SETFD only sets the close-on-exec flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        return fd;
    }
    close_fd(fd);
    high
}

/// The inode of the file open at `fd`, if any. Async-signal-safe.
fn inode(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat(2) fills `stat`, a plain C structure, or fails.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        #[allow(clippy::useless_conversion, reason = "ino_t is not u64 everywhere")]
        (libc::fstat(fd, &mut stat) == 0).then(|| u64::from(stat.st_ino))
    }
}

/// Closes `fd` if it is still the socket whose inode is `inode`.
fn close_if_ours(fd: RawFd, inode_was: u64) {
    if fd >= 0 && inode(fd) == Some(inode_was) {
        close_fd(fd);
    }
}

fn close_fd(fd: RawFd) {
    // SAFETY: close(2) on a descriptor the crate owns; async-signal-safe.
    unsafe { libc::close(fd) };
}
