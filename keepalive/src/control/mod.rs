//! Control of a running supervisor from another shell, by name (Unix).
//!
//! Each instance listens on a Unix stream socket, `NAME.sock`, in this
//! user's private runtime directory (see [`runtime_dir`]: checked
//! on its descriptor, never a link, never another user's). The socket is
//! 0600, and every connection's peer uid is checked both ways
//! (`SO_PEERCRED`, Linux): an instance answers only its user or root, and
//! a client trusts only an answer from its user or root. A connection
//! carries one JSON request (a line of at most 64 KiB, within 2 s) and
//! gets one JSON reply. A socket left by an instance that was killed
//! (nobody accepts on it) is replaced.
//!
//! `server.rs` is the instance's end: a thread that accepts, and a thread
//! for each connection, so a client that says nothing delays no other.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::protocol::{PROTOCOL, Reply, Request, Status};
use crate::runtime;

mod connection;
mod server;

pub use crate::names::check_name;
pub use crate::runtime::check;
pub(crate) use connection::Subscribers;
pub(crate) use server::Server;
pub use server::{Answer, Endpoint};

/// How long a client waits for a reply ([`request`], `keepalive status`).
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The longest reply a client reads (a status of thousands of workers fits).
const MAX_REPLY: u64 = 64 << 20;

/// This user's private runtime directory (made if there is none), where
/// the control sockets are.
///
/// # Errors
///
/// It cannot be made, or it is refused ([`check`]).
pub fn runtime_dir() -> io::Result<PathBuf> {
    runtime::own(|_| {})
}

/// The socket files of the running instances of this user (and of those
/// killed before they could remove theirs), in its trusted directories.
///
/// # Errors
///
/// The runtime directory was found but refused ([`check`]'s reason).
pub fn instances() -> io::Result<Vec<PathBuf>> {
    let dirs = match runtime::trusted() {
        Ok(dirs) => dirs,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut sockets: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sock"))
        .collect();
    sockets.sort();
    Ok(sockets)
}

/// The control socket of the instance `name`.
///
/// # Errors
///
/// [`io::ErrorKind::NotFound`] ("no keepalive named NAME") when no
/// trusted directory has it; the directory's refusal ([`check`]).
pub fn socket_path(name: &str) -> io::Result<PathBuf> {
    let missing = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no keepalive named {name}"),
        )
    };
    check_name(name).map_err(|_| missing())?;
    let dirs = match runtime::trusted() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(missing()),
        dirs => dirs?,
    };
    dirs.iter()
        .map(|dir| runtime::socket_in(dir, name))
        .find(|path| path.exists())
        .ok_or_else(missing)
}

/// The name of the first running instance whose status `matches`, asking
/// each for at most `within`.
pub fn find(within: Duration, matches: impl Fn(&Status) -> bool) -> Option<String> {
    instances().ok()?.into_iter().find_map(|socket| {
        let status = status_at(&socket, within).ok()?;
        matches(&status).then_some(status.name)
    })
}

/// Sends `request` to the instance `name` and returns its reply.
///
/// # Errors
///
/// [`io::ErrorKind::NotFound`] ("no keepalive named NAME") when no
/// instance of that name runs; [`io::ErrorKind::TimedOut`] when it does
/// not answer within 10 s; the socket's errors otherwise, said.
pub fn request(name: &str, request: &Request) -> io::Result<Reply> {
    request_within(name, request, ANSWER_WITHIN)
}

/// [`request`], waiting at most `within` for the reply.
///
/// # Errors
///
/// As [`request`].
pub fn request_within(name: &str, request: &Request, within: Duration) -> io::Result<Reply> {
    ask_at(&socket_path(name)?, name, request, within)
}

/// The status of the instance listening on `socket` (one of
/// [`instances`]), waiting at most `within` for it.
///
/// # Errors
///
/// As [`request`].
pub fn status_at(socket: &std::path::Path, within: Duration) -> io::Result<Status> {
    ask_at(socket, "", &Request::Status, within)?
        .status
        .ok_or_else(|| io::Error::other(format!("{}: no status in the reply", socket.display())))
}

fn ask_at(
    socket: &std::path::Path,
    name: &str,
    request: &Request,
    within: Duration,
) -> io::Result<Reply> {
    let shown = if name.is_empty() {
        socket.display().to_string()
    } else {
        name.to_owned()
    };
    let stream = send(socket, &shown, request)?;
    stream.set_read_timeout(Some(within))?;
    let mut answer = Vec::new();
    BufReader::new(stream)
        .take(MAX_REPLY)
        .read_until(b'\n', &mut answer)
        .map_err(|err| match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "keepalive {shown} did not answer within {} s (stopped, or stuck?)",
                    within.as_secs_f32()
                ),
            ),
            _ => io::Error::new(err.kind(), format!("keepalive {shown}: {err}")),
        })?;
    if answer.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("keepalive {shown} closed the connection without an answer"),
        ));
    }
    let reply: Reply = serde_json::from_slice(&answer)
        .map_err(|err| io::Error::other(format!("keepalive {shown}: not a reply: {err}")))?;
    match reply.version {
        Some(PROTOCOL) => Ok(reply),
        Some(theirs) => Err(io::Error::other(format!(
            "keepalive {shown} speaks control protocol {theirs}, this client {PROTOCOL}: \
             ask it with the keepalive binary it runs{}",
            reply
                .error
                .map(|error| format!(" (it said: {error})"))
                .unwrap_or_default()
        ))),
        // A keepalive before versions: the same requests, but not the
        // ones added since, which it calls "not a request".
        None => match reply.error {
            Some(error) if error.starts_with("not a request: unknown variant") => {
                Err(io::Error::other(format!(
                    "keepalive {shown} runs a keepalive older than this client (before \
                     control protocol {PROTOCOL}), which does not know this request: ask it \
                     with the keepalive binary it runs ({error})"
                )))
            }
            _ => Ok(reply),
        },
    }
}

/// Subscribes to the events of the instance `name`: one JSON line each,
/// until the instance ends (the stream then ends).
///
/// # Errors
///
/// As [`request`].
pub fn subscribe(name: &str) -> io::Result<impl BufRead> {
    send(&socket_path(name)?, name, &Request::Events).map(BufReader::new)
}

/// Connects to `socket`, checks who serves it, and sends `request`, one
/// JSON line.
fn send(socket: &std::path::Path, name: &str, request: &Request) -> io::Result<UnixStream> {
    let mut stream = UnixStream::connect(socket).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => io::Error::new(
            io::ErrorKind::NotFound,
            format!("no keepalive named {name}"),
        ),
        _ => io::Error::new(err.kind(), format!("{}: {err}", socket.display())),
    })?;
    if let Some(uid) = connection::foreign_peer(&stream) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is served by uid {uid}, not by you: not trusted",
                socket.display()
            ),
        ));
    }
    let mut line = crate::protocol::request_line(request).map_err(io::Error::other)?;
    line.push('\n');
    match stream.write_all(line.as_bytes()) {
        // Refused before the request was read ("busy", "out of file
        // descriptors"): its answer is there to be read all the same.
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(stream)
        }
        written => written.map(|()| stream),
    }
}
