//! `--daemon`: keepalive in the background, as forever and pm2 run.
//!
//! The command starts itself again with `--detached` in place of
//! `--daemon`: stdin from /dev/null, stdout and stderr appended to a log
//! file, and (first thing it does) a session of its own, so that neither
//! the terminal's Ctrl+C nor its hangup reaches it. A re-exec rather than a
//! `fork`: a forked copy of a process that has threads may only exec, and
//! the new process sets itself up like any other keepalive. The first one
//! waits until the new one answers on its control socket, says where it
//! runs and where it logs, and exits 0; if the new one exits first, its
//! status and the end of its log are the answer.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use keepalive::control;

/// How long the detached keepalive may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Where a detached keepalive named `name` logs:
/// `$XDG_STATE_HOME/keepalive/NAME.log`, else
/// `~/.local/state/keepalive/NAME.log`, else in the private runtime
/// directory, beside the control sockets (never a predictable path in the
/// temporary directory: an error if that directory cannot be had).
pub(crate) fn log_path(name: &str) -> Result<PathBuf, String> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        });
    match state {
        Some(dir) => Ok(dir.join("keepalive").join(format!("{name}.log"))),
        None => control::runtime_dir()
            .map(|dir| dir.join(format!("{name}.log")))
            .map_err(|err| format!("no place for the background log: {err}")),
    }
}

/// Starts this command again, detached, logging to `log`; returns once it
/// answers as the instance `name` (exit 0) or has exited (its status).
/// With `numbered`, it may answer as `name-2`, `name-3`, ... (the first
/// free one): only those are asked, and only the one with its pid counts,
/// so another instance, even a stopped one, is never waited on.
pub(crate) fn detach(log: &std::path::Path, name: &str, numbered: bool) -> ExitCode {
    // keepalive's `--daemon`, not one of the program's after `--`.
    let mut program = false;
    let argv: Vec<OsString> = std::env::args_os()
        .skip(1)
        .map(|arg| {
            program |= arg == "--";
            if arg == "--daemon" && !program {
                "--detached".into()
            } else {
                arg
            }
        })
        .collect();
    let opened = log
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
        });
    let file = match opened {
        Ok(file) => file,
        Err(err) => return fail(&format!("cannot open the log {}: {err}", log.display())),
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| "keepalive".into());
    let spawned = file.try_clone().and_then(|out| {
        Command::new(exe)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
            .spawn()
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => return fail(&format!("cannot start in the background: {err}")),
    };
    let pid = child.id();
    let until = Instant::now() + ANSWER_WITHIN;
    while Instant::now() < until {
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return fail(&format!(
                "the background keepalive exited ({status}); the end of {}:\n{}",
                log.display(),
                tail.join("\n")
            ));
        }
        if let Some(name) = started_as(name, numbered, pid) {
            say!(
                "keepalive: {name} runs in the background (pid {pid}); its log: {}",
                log.display()
            );
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fail(&format!(
        "the background keepalive (pid {pid}) did not answer within {} s; its log: {}",
        ANSWER_WITHIN.as_secs(),
        log.display()
    ))
}

/// The name under which the keepalive of pid `pid` answers, if it does:
/// `name`, or with `numbered` one of `name-N`. The sockets are listed once;
/// only those of such a name are asked.
fn started_as(name: &str, numbered: bool, pid: u32) -> Option<String> {
    let ours = |stem: &str| {
        stem == name
            || numbered
                && stem
                    .strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|n| n.parse::<u16>().is_ok())
    };
    // A name too long for a socket path has a hashed file name: its own.
    let long = control::socket_path(name).ok();
    control::instances().ok()?.into_iter().find_map(|socket| {
        let stem = socket.file_stem()?.to_str()?;
        if !ours(stem) && long.as_deref() != Some(socket.as_path()) {
            return None;
        }
        // A quick question: one that does not answer at once is not the
        // one just started, which answers as soon as it listens.
        let status = control::status_at(&socket, ASK_EACH).ok()?;
        (status.pid == pid).then_some(status.name)
    })
}

/// How long one instance may take to say whether it is the one started.
const ASK_EACH: Duration = Duration::from_millis(500);

/// Called first by a `--detached` keepalive: a session of its own.
pub(crate) fn leave_the_terminal() {
    // Fails only for a process group leader, which a spawned child is not.
    let _ = rustix::process::setsid();
}

fn fail(message: &str) -> ExitCode {
    say!("keepalive: {message}");
    ExitCode::FAILURE
}
