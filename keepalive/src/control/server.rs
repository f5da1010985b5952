//! An instance's end of the control socket: what it answers.
//! `connection.rs` accepts and reads the requests.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};

use super::connection::{self, Listening, Subscribers};
use crate::listen::SocketFile;
use crate::machine::{Command, Outcome};
use crate::os;
use crate::protocol::{About, Reply, Request, Status, Usage};
use crate::stop::Shared;

/// The server's end: the socket, removed when dropped, and the lock that
/// holds its name.
pub(crate) struct Server {
    path: PathBuf,
    file: SocketFile,
    _lock: std::fs::File,
    /// Its accepting thread ends when the server is dropped.
    _serving: connection::Serving,
}

impl Server {
    /// Listens as `name` (or, with `numbered`, the first of `name`,
    /// `name-2`, `name-3`, ... that no instance has), replacing a stale
    /// socket, and serves for as long as the process lives. Returns the
    /// server and the name it took; `refused` hears of a runtime
    /// directory that was somebody else's.
    pub(crate) fn start(
        name: &str,
        numbered: bool,
        about: About,
        shared: Arc<Shared>,
        subscribers: Arc<Subscribers>,
        refused: impl FnOnce(&io::Error),
    ) -> io::Result<(Server, String)> {
        let Listening {
            listener,
            name,
            path,
            lock,
        } = connection::listen(name, numbered, refused)?;
        let file = SocketFile::made(&path)?;
        let context = Context {
            name: name.clone(),
            about,
            shared,
        };
        let serving = connection::serve(
            listener,
            Arc::new(move |request| answer_request(request, &context)),
            Some(subscribers),
        )?;
        let server = Server {
            path,
            file,
            _lock: lock,
            _serving: serving,
        };
        Ok((server, name))
    }

    /// The socket file, for the stop hook to remove.
    pub(crate) fn file(&self) -> SocketFile {
        self.file.clone()
    }

    /// Where it listens, for the event that says so.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.file.remove();
    }
}

/// A control socket of one's own: `keepalive up` answers for the apps of
/// its config file on one, with the same directory, modes, bounds and
/// peer check as an instance's.
#[derive(Debug)]
pub struct Endpoint {
    name: String,
    file: SocketFile,
    _lock: std::fs::File,
    _serving: connection::Serving,
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
    /// each request with `answer`, on a thread of each connection's own.
    ///
    /// # Errors
    ///
    /// The socket's, the runtime directory's, and `AddrInUse` when the
    /// name is taken.
    pub fn serve(
        name: &str,
        answer: impl Fn(Request) -> Answer + Send + Sync + 'static,
    ) -> io::Result<Endpoint> {
        let Listening {
            listener,
            name,
            path,
            lock,
        } = connection::listen(
            name,
            false,
            |err| tracing::warn!(%err, "a runtime directory refused"),
        )?;
        let file = SocketFile::made(&path)?;
        let serving = connection::serve(
            listener,
            Arc::new(move |request: Result<Request, String>| match request {
                Ok(request) => answer(request),
                Err(err) => Answer::from(Reply::error(err)),
            }),
            None,
        )?;
        Ok(Endpoint {
            name,
            file,
            _lock: lock,
            _serving: serving,
        })
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

struct Context {
    name: String,
    about: About,
    shared: Arc<Shared>,
}

fn answer_request(request: Result<Request, String>, context: &Context) -> Answer {
    let request = match request {
        Ok(request) => request,
        Err(err) => return Answer::from(Reply::error(err)),
    };
    if let Request::Stop = request {
        if context.shared.in_group {
            // One app of a group: stopped alone, answered once it is.
            context.shared.stop_alone();
            return Answer::from(Reply {
                note: Some(crate::protocol::STOPPED_ALONE.to_owned()),
                ..Reply::default()
            });
        }
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
        Request::Status => {
            // The loop's lock is not held while `/proc` is read.
            let view = state.view.clone();
            drop(state);
            Reply {
                status: Some(Status {
                    name: context.name.clone(),
                    pid: std::process::id(),
                    program: context.about.program.clone(),
                    stdout_log: context.about.stdout_log.clone(),
                    stderr_log: context.about.stderr_log.clone(),
                    argv: context.about.argv.clone().unwrap_or_else(own_command_line),
                    cwd: std::env::current_dir()
                        .map(|dir| dir.display().to_string())
                        .unwrap_or_default(),
                    workers: view
                        .iter()
                        .map(|seen| seen.status(usage(seen.pid)))
                        .collect(),
                    apps: Vec::new(),
                }),
                ..Reply::default()
            }
        }
        Request::Reload => {
            state.reload_asked = true;
            drop(state);
            context.shared.bell.ring();
            Reply::default()
        }
        Request::ReloadAndWait => {
            match ask_the_loop(state, context, Command::Reload).map(|outcome| outcome.result) {
                Ok(Ok(())) => Reply::default(),
                Ok(Err(reason)) => Reply::error(format!("the reload failed: {reason}")),
                Err(_) => Reply::error("the instance stopped before the reload was over"),
            }
        }
        Request::Scale { workers } => match ask_the_loop(state, context, Command::Scale(workers))
            .map(|outcome| outcome.result)
        {
            Ok(Ok(())) => Reply::default(),
            Ok(Err(reason)) => Reply::error(format!("the scale failed: {reason}")),
            Err(_) => Reply::error("the instance stopped before the scale was over"),
        },
        Request::RestartAndWait => match ask_the_loop(state, context, Command::Restart) {
            Ok(Outcome { result, note }) => Reply {
                note,
                ..match result {
                    Ok(()) => Reply::default(),
                    Err(reason) => Reply::error(format!("the restart failed: {reason}")),
                }
            },
            Err(_) => Reply::error("the instance stopped before the restart was over"),
        },
        Request::Restart => {
            let note = abandons_a_reload(&state);
            state.restart_asked = true;
            drop(state);
            context.shared.bell.ring();
            Reply {
                note,
                ..Reply::default()
            }
        }
        // Answered before: the stream joined the subscribers; the stop.
        Request::Events | Request::Stop => Reply::default(),
        Request::Start { .. } => Reply::error(format!(
            "{} is an instance, not a `keepalive up`: it starts nothing by name",
            context.name
        )),
        Request::Apply { .. } => Reply::error(format!(
            "{} is an instance, not a `keepalive up`: it has no file to apply",
            context.name
        )),
        Request::Signal { signal } => {
            let mut signalled = Vec::new();
            for started in &state.children {
                let pid = started.child.id();
                if let Err(err) = os::signal_process(pid, exit_hook::Signal::from_raw(signal)) {
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

/// Asks the loop for `command` and waits for its outcome; an error if the
/// loop ended first.
fn ask_the_loop(
    mut state: std::sync::MutexGuard<'_, crate::stop::State>,
    context: &Context,
    command: Command,
) -> Result<Outcome, mpsc::RecvError> {
    if state.ended {
        return Err(mpsc::RecvError); // nothing takes it any more
    }
    let (reply, outcome) = mpsc::channel();
    state.commands.push((command, reply));
    drop(state);
    context.shared.bell.ring();
    outcome.recv()
}

/// What a restart asked now does besides: abandon a reload going on.
fn abandons_a_reload(state: &crate::stop::State) -> Option<String> {
    state
        .replacing
        .then(|| crate::machine::ABANDONS_A_RELOAD.to_owned())
}

/// This process's command line, its program as an absolute path, without
/// what keepalive adds for itself (`--detached`, a daemon's second start):
/// what a user would type.
fn own_command_line() -> Vec<String> {
    let mut program = false;
    let mut argv: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .filter(|arg| {
            program |= arg == "--";
            program || arg != "--detached"
        })
        .collect();
    if let (Some(first), Ok(exe)) = (argv.first_mut(), std::env::current_exe()) {
        *first = exe.display().to_string();
    }
    argv
}

/// Resident bytes, CPU milliseconds and whether `pid` is stopped (Linux;
/// 0 elsewhere).
fn usage(pid: u32) -> Usage {
    #[cfg(target_os = "linux")]
    let (cpu_ms, stopped) = os::stat(pid).map_or((0, false), |stat| (stat.cpu_ms, stat.stopped));
    #[cfg(not(target_os = "linux"))]
    let (cpu_ms, stopped) = (0, false);
    Usage {
        rss_bytes: os::resident_bytes(pid).unwrap_or(0),
        cpu_ms,
        stopped,
    }
}
