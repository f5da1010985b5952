//! The supervisor's side of systemd's notification protocol: each worker
//! gets a datagram socket of its own (`NOTIFY_SOCKET`) in a private
//! directory. The supervisor understands `READY=1`, `STOPPING=1`,
//! `EXTEND_TIMEOUT_USEC=…` (while stopping), `WATCHDOG=1` and `STATUS=…`,
//! and ignores other lines, as systemd does with what it does not know.
//!
//! On Linux each datagram carries its sender's pid (`SO_PASSCRED`, which
//! the kernel fills in and only a privileged sender can forge), so the
//! cluster can check who speaks, as systemd's `NotifyAccess` does: the
//! socket's name alone is guessable by any process of the same user.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

pub(crate) use crate::machine::Message;

/// The messages in one datagram, one per line, in order.
pub(crate) fn parse(datagram: &[u8]) -> Vec<Message> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(message)
        .collect()
}

/// What one line says, if anything.
fn message(line: &str) -> Option<Message> {
    match line {
        "READY=1" => return Some(Message::Ready),
        "STOPPING=1" => return Some(Message::Stopping),
        "WATCHDOG=1" => return Some(Message::Watchdog),
        _ => {}
    }
    if let Some(status) = line.strip_prefix("STATUS=") {
        return Some(Message::Status(status.to_owned()));
    }
    if let Some(usec) = line.strip_prefix("EXTEND_TIMEOUT_USEC=") {
        return usec
            .parse()
            .ok()
            .map(|usec| Message::Extend(std::time::Duration::from_micros(usec)));
    }
    // systemd's own lines with another value (READY=0) mean nothing.
    let (key, _) = line.split_once('=')?;
    (!key.is_empty() && !["READY", "STOPPING", "WATCHDOG"].contains(&key))
        .then(|| Message::Other(line.to_owned()))
}

/// A private directory for the sockets (mode 0700), removed with them.
pub(crate) struct NotifyDir {
    path: PathBuf,
}

impl NotifyDir {
    /// `NAME.workers.XXXXXX` in the private runtime directory
    /// ([`runtime`](crate::runtime), checked): an unpredictable name, made
    /// with `O_EXCL`, so nobody can make it first. `NAME` is the instance's
    /// name (cut to fit a socket address), so what its workers left can be
    /// found by it later; a supervisor without one (no control socket, so
    /// no name it holds) gets `.workers.XXXXXX`, which no name matches.
    pub(crate) fn create(name: Option<&str>) -> io::Result<NotifyDir> {
        let dir = crate::runtime::own(|_| {})?;
        let prefix = name.map_or_else(
            || ".workers.".to_owned(),
            |name| crate::runtime::notify_prefix(&dir, name),
        );
        let path = tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(6)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(dir)?
            .keep();
        Ok(NotifyDir { path })
    }

    /// The directory.
    #[cfg_attr(
        not(target_os = "linux"),
        allow(dead_code, reason = "leftovers are Linux's")
    )]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A new socket for the worker numbered `id`.
    pub(crate) fn socket(&self, id: u64) -> io::Result<NotifySocket> {
        let path = self.path.join(format!("w{id}.sock"));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        socket.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        rustix::net::sockopt::set_socket_passcred(&socket, true)?;
        Ok(NotifySocket { socket, path })
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One worker's socket; its file goes with it.
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

/// How many datagrams of one worker are read in one turn of the loop.
pub(crate) const DATAGRAMS_AT_ONCE: usize = 64;

/// A message and who sent it: `None` where the system does not say.
pub(crate) type Said = (Option<u32>, Message);

impl NotifySocket {
    /// The value of the worker's `NOTIFY_SOCKET`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The socket, for `poll`.
    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.socket)
    }

    /// The messages waiting, without blocking, with their senders: at
    /// most [`DATAGRAMS_AT_ONCE`] datagrams, so a worker that sends
    /// without pause cannot keep the loop reading (the rest wait for its
    /// next turn).
    pub(crate) fn messages(&self) -> Vec<Said> {
        let mut messages = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..DATAGRAMS_AT_ONCE {
            let Some((n, sender)) = self.receive(&mut buf) else {
                break;
            };
            messages.extend(parse(&buf[..n]).into_iter().map(|m| (sender, m)));
        }
        messages
    }

    #[cfg(target_os = "linux")]
    fn receive(&self, buf: &mut [u8]) -> Option<(usize, Option<u32>)> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        use std::mem::MaybeUninit;
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &self.socket,
            &mut [io::IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::DONTWAIT,
        )
        .ok()?;
        let sender = control.drain().find_map(|message| match message {
            RecvAncillaryMessage::ScmCredentials(cred) => {
                Some(cred.pid.as_raw_nonzero().get() as u32)
            }
            _ => None,
        });
        Some((received.bytes.min(buf.len()), sender))
    }

    #[cfg(not(target_os = "linux"))]
    fn receive(&self, buf: &mut [u8]) -> Option<(usize, Option<u32>)> {
        self.socket.recv(buf).ok().map(|n| (n, None))
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_lines_are_understood_and_others_ignored() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=serving 3 requests\nMAINPID=7\nSTOPPING=1\nnot a line\nEXTEND_TIMEOUT_USEC=2500000\n"),
            [
                Message::Ready,
                Message::Status("serving 3 requests".into()),
                Message::Other("MAINPID=7".into()),
                Message::Stopping,
                Message::Extend(std::time::Duration::from_millis(2500)),
            ]
        );
        assert_eq!(parse(b"READY=0\nWATCHDOG=1"), [Message::Watchdog]);
    }

    #[test]
    fn a_socket_receives_what_a_worker_sends_and_removes_its_file() {
        let dir = NotifyDir::create(None).unwrap();
        let socket = dir.socket(1).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        sender.send_to(b"READY=1", socket.path()).unwrap();
        sender.send_to(b"STATUS=up", socket.path()).unwrap();
        // Linux says who sent it: this process.
        let me = cfg!(target_os = "linux").then(std::process::id);
        assert_eq!(
            socket.messages(),
            [(me, Message::Ready), (me, Message::Status("up".into()))]
        );
        assert_eq!(socket.messages(), []);
        let path = socket.path().to_owned();
        drop(socket);
        assert!(!path.exists());
    }
}
