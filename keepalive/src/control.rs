//! Control of a running supervisor from another shell, by name (Unix).
//!
//! Each instance listens on a Unix stream socket, `NAME.sock`, in
//! `$XDG_RUNTIME_DIR/keepalive/` (else `/tmp/keepalive-UID/`): the
//! directory is 0700 and the socket 0600, and every connection's peer uid
//! is checked (`SO_PEERCRED`, Linux): only the same user, or root,
//! controls an instance. A connection carries one JSON request and gets one
//! JSON reply. A socket left by an instance that was killed (nobody
//! accepts on it) is replaced.
//!
//! The server is a thread of its own. It reads what the loop publishes in
//! the shared state (the workers it sees) and asks the loop for a reload
//! through the same state and the loop's alarm; it never starts or reaps.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use crate::listen::SocketFile;
use crate::os;
use crate::protocol::{About, Reply, Request, Status, event_json};
use crate::stop::Shared;

/// The connections that asked for events (`keepalive events NAME`).
#[derive(Default)]
pub(crate) struct Subscribers(Mutex<Vec<UnixStream>>);

impl Subscribers {
    /// Sends `event` to every subscriber, one JSON line each. A subscriber
    /// that has gone or does not keep up (its socket is full: the write
    /// would block) is dropped: the loop never waits for a reader.
    pub(crate) fn send(&self, event: &crate::Event) {
        let mut streams = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if streams.is_empty() {
            return;
        }
        let mut line = event_json(event).to_string();
        line.push('\n');
        streams.retain_mut(|stream| stream.write_all(line.as_bytes()).is_ok());
    }

    fn add(&self, stream: UnixStream) {
        if stream.set_nonblocking(true).is_ok() {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(stream);
        }
    }
}

/// The directory of the control sockets: `$XDG_RUNTIME_DIR/keepalive`, or
/// `/tmp/keepalive-UID` when that is unset.
pub fn socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("keepalive"),
        None => {
            std::env::temp_dir().join(format!("keepalive-{}", rustix::process::getuid().as_raw()))
        }
    }
}

/// The control socket of the instance `name`.
pub fn socket_path(name: &str) -> PathBuf {
    socket_dir().join(format!("{name}.sock"))
}

/// The names of the instances with a socket in [`socket_dir`].
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(socket_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.strip_suffix(".sock").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The name of the first running instance (by name) whose status `matches`.
pub fn find(matches: impl Fn(&Status) -> bool) -> Option<String> {
    names().into_iter().find(|name| {
        request(name, &Request::Status)
            .ok()
            .and_then(|reply| reply.status)
            .is_some_and(|status| matches(&status))
    })
}

/// Sends `request` to the instance `name` and returns its reply.
///
/// # Errors
///
/// [`io::ErrorKind::NotFound`] ("no keepalive named NAME") when no
/// instance of that name runs; the socket's errors otherwise.
pub fn request(name: &str, request: &Request) -> io::Result<Reply> {
    let stream = send(name, request)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    if answer.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("keepalive {name} refused the connection"),
        ));
    }
    serde_json::from_str(&answer).map_err(io::Error::other)
}

/// Subscribes to the events of the instance `name`: one JSON line each,
/// until the instance ends (the stream then ends).
///
/// # Errors
///
/// As [`request`].
pub fn subscribe(name: &str) -> io::Result<impl BufRead> {
    send(name, &Request::Events).map(BufReader::new)
}

/// Connects to the instance `name` and sends `request`, one JSON line.
fn send(name: &str, request: &Request) -> io::Result<UnixStream> {
    let path = socket_path(name);
    let mut stream = UnixStream::connect(&path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => io::Error::new(
            io::ErrorKind::NotFound,
            format!("no keepalive named {name}"),
        ),
        _ => io::Error::new(err.kind(), format!("{}: {err}", path.display())),
    })?;
    let mut line = serde_json::to_string(request).map_err(io::Error::other)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    Ok(stream)
}

/// The server's end: the socket, removed when dropped.
pub(crate) struct Server {
    path: PathBuf,
    file: SocketFile,
}

/// Where `server` listens, for the event that says so.
pub(crate) fn socket_path_display(server: &Server) -> String {
    server.path.display().to_string()
}

impl Server {
    /// The socket file, for the stop hook to remove.
    pub(crate) fn file(&self) -> SocketFile {
        self.file.clone()
    }
}

impl Server {
    /// Listens as `name` (or, with `numbered`, the first of `name`,
    /// `name-2`, `name-3`, ... that no instance has), replacing a stale
    /// socket, and serves on a thread of its own for as long as the process
    /// lives. Returns the server and the name it took.
    pub(crate) fn start(
        name: &str,
        numbered: bool,
        about: About,
        shared: Arc<Shared>,
        subscribers: Arc<Subscribers>,
    ) -> io::Result<(Server, String)> {
        let (listener, name, path) = listen(name, numbered)?;
        let file = SocketFile::made(&path)?;
        let context = Context {
            name: name.clone(),
            about,
            shared,
            subscribers,
        };
        spawn_server(listener, move |request, stream| match request {
            Ok(Request::Events) => {
                context.subscribers.add(stream);
                None
            }
            request => Some((stream, answer_request(request, &context))),
        })?;
        let server = Server { path, file };
        Ok((server, name))
    }
}

/// A control socket of one's own: `keepalive up` answers for the apps of
/// its config file on one, with the same directory, modes and peer check
/// as an instance's.
#[derive(Debug)]
pub struct Endpoint {
    name: String,
    file: SocketFile,
}

/// What an [`Endpoint`]'s owner answers a request with.
#[derive(Debug, Default)]
pub struct Answer {
    /// The reply.
    pub reply: Reply,
    /// Stop this process once the reply is out (SIGTERM to itself, so
    /// `exit_hook` runs its hooks as for any SIGTERM).
    pub then_stop: bool,
}

impl Endpoint {
    /// Listens as `name` (an instance of that name already running is
    /// [`io::ErrorKind::AddrInUse`]; a stale socket is replaced) and answers
    /// each request with `answer`, on a thread of its own.
    ///
    /// # Errors
    ///
    /// The socket's, and `AddrInUse` when the name is taken.
    pub fn serve(
        name: &str,
        answer: impl Fn(Request) -> Answer + Send + 'static,
    ) -> io::Result<Endpoint> {
        let (listener, name, path) = listen(name, false)?;
        let file = SocketFile::made(&path)?;
        spawn_server(listener, move |request, stream| {
            Some((
                stream,
                match request {
                    Ok(request) => answer(request),
                    Err(err) => Answer {
                        reply: Reply::error(err),
                        then_stop: false,
                    },
                },
            ))
        })?;
        Ok(Endpoint { name, file })
    }

    /// The name it listens as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the socket: no request reaches this process any more (also
    /// when dropped).
    pub fn close(&self) {
        self.file.remove();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.close();
    }
}

/// The socket of `name` (numbered: the first free of `name`, `name-2`, ...)
/// in its private directory, mode 0600.
fn listen(name: &str, numbered: bool) -> io::Result<(UnixListener, String, PathBuf)> {
    let dir = socket_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let mut n = 1;
    let (listener, name, path) = loop {
        let candidate = if n == 1 {
            name.to_owned()
        } else {
            format!("{name}-{n}")
        };
        let path = socket_path(&candidate);
        match bind(&path) {
            Ok(listener) => break (listener, candidate, path),
            Err(err) if err.kind() == io::ErrorKind::AddrInUse && numbered && n < 1000 => {
                n += 1;
            }
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
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, name, path))
}

/// Serves `listener` on a thread of its own: each connection from an
/// allowed peer carries one request; `handle` keeps the stream (for
/// events) or gives it back with the answer to write.
fn spawn_server(
    listener: UnixListener,
    handle: impl Fn(Result<Request, String>, UnixStream) -> Option<(UnixStream, Answer)>
    + Send
    + 'static,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("keepalive-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &handle);
            }
        })?;
    Ok(())
}

/// Binds `path`; a socket there that nobody accepts on (a killed
/// instance's) is replaced, one somebody serves is `AddrInUse`.
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

impl Drop for Server {
    fn drop(&mut self) {
        self.file.remove();
    }
}

struct Context {
    name: String,
    about: About,
    shared: Arc<Shared>,
    subscribers: Arc<Subscribers>,
}

/// Whether the peer may control this instance: the same user, or root.
fn allowed(stream: &UnixStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::process::getuid();
        rustix::net::sockopt::socket_peercred(stream)
            .is_ok_and(|peer| peer.uid == me || peer.uid.is_root())
    }
    // Elsewhere the socket's mode (0600) in its 0700 directory is the check.
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        true
    }
}

fn serve(
    stream: UnixStream,
    handle: &impl Fn(Result<Request, String>, UnixStream) -> Option<(UnixStream, Answer)>,
) -> io::Result<()> {
    if !allowed(&stream) {
        return Ok(()); // closed unanswered
    }
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let request =
        serde_json::from_str::<Request>(&line).map_err(|err| format!("not a request: {err}"));
    let Some((stream, answer)) = handle(request, stream) else {
        return Ok(());
    };
    let mut text = serde_json::to_string(&answer.reply).map_err(io::Error::other)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    drop(stream);
    if answer.then_stop {
        // The stop a SIGTERM makes: exit_hook's run, the stop hook, 143.
        let _ = os::signal_process(std::process::id(), rustix::process::Signal::TERM.as_raw());
    }
    Ok(())
}

fn answer_request(request: Result<Request, String>, context: &Context) -> Answer {
    let request = match request {
        Ok(request) => request,
        Err(err) => return Answer::from(Reply::error(err)),
    };
    if request == Request::Stop {
        return Answer {
            reply: Reply::default(),
            then_stop: true,
        };
    }
    Answer::from(answer(request, context))
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer {
            reply,
            then_stop: false,
        }
    }
}

fn answer(request: Request, context: &Context) -> Reply {
    let mut state = context.shared.lock();
    match request {
        Request::Status => Reply {
            status: Some(Status {
                name: context.name.clone(),
                pid: std::process::id(),
                program: context.about.program.clone(),
                stdout_log: context.about.stdout_log.clone(),
                stderr_log: context.about.stderr_log.clone(),
                argv: own_command_line(),
                cwd: std::env::current_dir()
                    .map(|dir| dir.display().to_string())
                    .unwrap_or_default(),
                workers: state
                    .view
                    .iter()
                    .map(|seen| seen.status(usage(seen.pid)))
                    .collect(),
                apps: Vec::new(),
            }),
            ..Reply::default()
        },
        Request::Reload | Request::Restart => {
            if request == Request::Reload {
                state.reload_asked = true;
            } else {
                state.restart_asked = true;
            }
            drop(state);
            context.shared.bell.ring();
            Reply::default()
        }
        // Answered before: the stream joined the subscribers; the stop.
        Request::Events | Request::Stop => Reply::default(),
        Request::Start { .. } => Reply::error(format!(
            "{} is an instance, not a `keepalive up`: it starts nothing by name",
            context.name
        )),
        Request::Signal { signal } => {
            let mut signalled = Vec::new();
            for started in &state.children {
                let pid = started.child.id();
                if let Err(err) = os::signal_process(pid, signal) {
                    return Reply {
                        error: Some(format!("cannot send signal {signal} to pid {pid}: {err}")),
                        ..Reply::default()
                    };
                }
                signalled.push(pid);
            }
            Reply {
                signalled: Some(signalled),
                ..Reply::default()
            }
        }
    }
}

/// This process's command line, its program as an absolute path.
fn own_command_line() -> Vec<String> {
    let mut argv: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    if let (Some(first), Ok(exe)) = (argv.first_mut(), std::env::current_exe()) {
        *first = exe.display().to_string();
    }
    argv
}

/// Resident bytes and CPU milliseconds of `pid` (Linux; 0 elsewhere).
fn usage(pid: u32) -> (u64, u64) {
    #[cfg(target_os = "linux")]
    let cpu = os::stat(pid).map_or(0, |stat| stat.cpu_ms);
    #[cfg(not(target_os = "linux"))]
    let cpu = 0;
    (os::resident_bytes(pid).unwrap_or(0), cpu)
}
