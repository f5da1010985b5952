//! The control socket's connections: who may connect, how much a request
//! may say and for how long, and the subscribers of `keepalive events`.
//!
//! One thread accepts; each connection from an allowed peer is served on
//! a thread of its own, so a client that connects and says nothing, or
//! trickles a byte now and then, delays no other. Every request is bounded:
//! one line of at most [`MAX_REQUEST`] bytes, all of it within
//! [`REQUEST_WITHIN`] (a deadline for the whole request, not per read);
//! at most [`MAX_CONNECTIONS`] are served at once and [`MAX_SUBSCRIBERS`]
//! follow the events, and one more is answered "busy". A subscriber's
//! thread waits for its hang-up, so one that leaves is closed at once.
//!
//! Out of descriptors (`EMFILE`), `accept` would fail at once again and
//! again on the connection still queued: the accepting thread lets go of
//! a descriptor it keeps in reserve, accepts, answers that it is out of
//! descriptors, and takes the reserve again (nginx's way); if even that
//! fails it waits 100 ms. It never spins.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, poll};

use super::server::Answer;
use crate::os;
use crate::protocol::{Reply, Request, event_json};
use crate::runtime;

/// The longest request: one short JSON line.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has to send its whole request.
pub(crate) const REQUEST_WITHIN: Duration = Duration::from_secs(2);
/// Connections served at once (subscribers apart).
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Subscribers of `keepalive events` at once.
pub(crate) const MAX_SUBSCRIBERS: usize = 64;

/// What answers a request (an instance's or `keepalive up`'s).
pub(crate) type Answerer = Arc<dyn Fn(Result<Request, String>) -> Answer + Send + Sync>;

/// A socket bound in the runtime directory, and the lock that holds its
/// name for as long as it is kept.
pub(crate) struct Listening {
    pub(crate) listener: UnixListener,
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) lock: std::fs::File,
}

/// The socket of `name` (numbered: the first free of `name`, `name-2`,
/// ...) in this user's private runtime directory, mode 0600.
///
/// A name is taken by an exclusive `flock` on `NAME.lock` beside its
/// socket, held for the instance's life: two instances starting at once
/// cannot both replace a stale socket and take the name, and the one that
/// holds it may stop what an earlier one of the name left (`leftovers`).
pub(crate) fn listen(
    name: &str,
    numbered: bool,
    refused: impl FnOnce(&io::Error),
) -> io::Result<Listening> {
    crate::names::check_name(name)
        .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
    let dir = runtime::own(refused)?;
    for n in 1..=1000 {
        let candidate = if n == 1 {
            name.to_owned()
        } else {
            format!("{name}-{n}")
        };
        let path = runtime::socket_in(&dir, &candidate);
        match lock(&runtime::lock_in(&dir, &candidate)).and_then(|lock| Ok((bind(&path)?, lock))) {
            Ok((listener, lock)) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                return Ok(Listening {
                    listener,
                    name: candidate,
                    path,
                    lock,
                });
            }
            Err(err) if err.kind() == io::ErrorKind::AddrInUse && numbered => {}
            Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "a keepalive named {candidate} is already running ({})",
                        path.display()
                    ),
                ));
            }
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("a thousand keepalives named {name}-N are running"),
    ))
}

/// Takes the lock file at `path` (made 0600 if missing, never through a
/// link); `AddrInUse` when another process holds it.
fn lock(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(io::ErrorKind::AddrInUse.into()),
        Err(err) => Err(err.into()),
    }
}

/// Binds `path`, the name's lock held; a socket there that nobody accepts
/// on (a killed instance's) is replaced, one somebody serves (a keepalive
/// of before the locks) is `AddrInUse`.
fn bind(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Err(err);
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        bound => bound,
    }
}

/// The peer's uid when it is neither this user nor root (Linux: its
/// credentials at connect time; elsewhere the socket's mode in its 0700
/// directory is the check, and this says `None`).
pub(crate) fn foreign_peer(stream: &UnixStream) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::process::geteuid();
        match rustix::net::sockopt::socket_peercred(stream) {
            Ok(peer) if peer.uid == me || peer.uid.is_root() => None,
            Ok(peer) => Some(peer.uid.as_raw()),
            Err(_) => Some(u32::MAX),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        None
    }
}

/// Serves `listener` for as long as the process lives: each connection
/// from an allowed peer on a thread of its own, answered by `answer`;
/// `events` requests join `subscribers` when there are any.
pub(crate) fn serve(
    listener: UnixListener,
    answer: Answerer,
    subscribers: Option<Arc<Subscribers>>,
) -> io::Result<Serving> {
    let (serving, closed) = UnixStream::pair()?;
    std::thread::Builder::new()
        .name("keepalive-control".into())
        .spawn(move || accept_loop(&listener, &closed, &answer, subscribers.as_ref()))?;
    Ok(Serving(serving))
}

/// The accepting thread's life: it ends, closing the listening socket,
/// when this is dropped (its connections in flight are answered).
#[derive(Debug)]
pub(crate) struct Serving(#[allow(dead_code, reason = "held for its drop")] UnixStream);

fn accept_loop(
    listener: &UnixListener,
    closed: &UnixStream,
    answer: &Answerer,
    subscribers: Option<&Arc<Subscribers>>,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    let mut reserve = std::fs::File::open("/dev/null").ok();
    // Non-blocking, behind a poll: out of descriptors, `accept` fails
    // before it looks for a connection, so only a poll says one waits.
    let _ = listener.set_nonblocking(true);
    loop {
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(closed, PollFlags::IN),
        ];
        if let Err(err) = poll(&mut fds, None) {
            if err != rustix::io::Errno::INTR {
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        if !fds[1].revents().is_empty() {
            return; // its `Serving` was dropped: the instance has ended
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) if os::is_shortage(&err) => {
                // The reserve lets the waiting one in, to be told and closed.
                if reserve.take().is_some() {
                    if let Ok((stream, _)) = listener.accept() {
                        if foreign_peer(&stream).is_none() {
                            refuse(&stream, "keepalive is out of file descriptors");
                        }
                    }
                }
                // Taken again; if another thread got the descriptor first,
                // wait a little rather than try again at once.
                reserve = std::fs::File::open("/dev/null").ok();
                if reserve.is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Blocking, with its own deadlines (the BSDs pass the listener's
        // O_NONBLOCK on to what it accepts).
        if foreign_peer(&stream).is_some() || stream.set_nonblocking(false).is_err() {
            continue; // closed unanswered: not one of ours
        }
        if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::AcqRel);
            refuse(&stream, "busy: too many control connections at once");
            continue;
        }
        let (answer, subscribers, done) = (answer.clone(), subscribers.cloned(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("keepalive-client".into())
            .spawn(move || {
                connection(stream, &answer, subscribers.as_deref(), &done);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Says `why` and closes, without waiting on the client.
fn refuse(stream: &UnixStream, why: &str) {
    let _ = stream.set_nonblocking(true);
    let _ = write_reply(stream, &Reply::error(why));
}

/// One connection: its request, then its answer; or, for `events`, the
/// wait for its hang-up. `busy` counts it until it is a subscriber or done.
fn connection(
    stream: UnixStream,
    answer: &Answerer,
    subscribers: Option<&Subscribers>,
    busy: &AtomicUsize,
) {
    let request = read_request(&stream);
    if let (Ok(Request::Events), Some(subscribers)) = (&request, subscribers) {
        busy.fetch_sub(1, Ordering::AcqRel);
        subscribers.follow(stream);
        return;
    }
    let answered = answer(request);
    let _ = stream.set_write_timeout(Some(REQUEST_WITHIN));
    let written = write_reply(&stream, &answered.reply);
    drop(stream);
    busy.fetch_sub(1, Ordering::AcqRel);
    if answered.then_stop && written.is_ok() {
        // The stop a SIGTERM makes: exit_hook's run, the stop hook, 143.
        let _ = os::signal_process(std::process::id(), exit_hook::Signal::terminate());
    }
}

/// Reads one request line: at most [`MAX_REQUEST`] bytes, all within
/// [`REQUEST_WITHIN`]; what is wrong with it, said, otherwise.
fn read_request(mut stream: &UnixStream) -> Result<Request, String> {
    let deadline = Instant::now() + REQUEST_WITHIN;
    let mut line = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no whole request within {} s",
                REQUEST_WITHIN.as_secs()
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|err| err.to_string())?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(err) => return Err(err.to_string()),
        };
        let newline = buf[..n].iter().position(|&b| b == b'\n');
        line.extend_from_slice(&buf[..newline.unwrap_or(n)]);
        if line.len() > MAX_REQUEST {
            return Err(format!(
                "a request is one JSON line of at most {} KiB",
                MAX_REQUEST / 1024
            ));
        }
        if newline.is_some() || n == 0 {
            break;
        }
    }
    let text = std::str::from_utf8(&line).map_err(|_| "not a request: not UTF-8".to_owned())?;
    crate::protocol::parse_request(text)
}

fn write_reply(mut stream: &UnixStream, reply: &Reply) -> io::Result<()> {
    let reply = Reply {
        version: Some(crate::protocol::PROTOCOL),
        ..reply.clone()
    };
    let mut text = serde_json::to_string(&reply).map_err(io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes())
}

/// The connections that asked for events (`keepalive events NAME`), each
/// shared with the thread that waits for its hang-up.
#[derive(Default)]
pub(crate) struct Subscribers(Mutex<Vec<(u64, Arc<UnixStream>)>>, AtomicUsize);

impl Subscribers {
    /// Sends `event` to every subscriber, one JSON line each. A subscriber
    /// that has gone or does not keep up (its socket is full: the write
    /// would block) is dropped: the loop never waits for a reader.
    pub(crate) fn send(&self, event: &crate::Event) {
        let mut streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if streams.is_empty() {
            return;
        }
        let mut line = event_json(event).to_string();
        line.push('\n');
        streams.retain(|(_, stream)| {
            let kept = (&**stream).write_all(line.as_bytes()).is_ok();
            if !kept {
                // Its thread, waiting for the hang-up, wakes and ends.
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            kept
        });
    }

    /// Ends every subscriber's stream: its instance has ended (one app of
    /// a group, which the process outlives).
    pub(crate) fn close(&self) {
        let mut streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, stream) in streams.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Keeps `stream` as a subscriber until it hangs up (or is dropped for
    /// not keeping up); on the calling thread.
    fn follow(&self, stream: UnixStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let stream = Arc::new(stream);
        let id = self.1.fetch_add(1, Ordering::Relaxed) as u64;
        {
            let mut streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if streams.len() >= MAX_SUBSCRIBERS {
                drop(streams);
                let _ = write_reply(&stream, &Reply::error("busy: too many subscribers"));
                return;
            }
            streams.push((id, stream.clone()));
        }
        wait_for_hang_up(&stream);
        let mut streams = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|(other, _)| *other != id);
    }
}

/// Blocks until the peer of `stream` (non-blocking) hangs up or the
/// stream is shut down; what a subscriber sends is read and ignored.
fn wait_for_hang_up(mut stream: &UnixStream) {
    let mut buf = [0u8; 512];
    loop {
        let mut fds = [PollFd::new(stream, PollFlags::IN)];
        match poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR) {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
