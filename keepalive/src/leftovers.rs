//! What an earlier instance of the same name left running (Linux).
//!
//! A keepalive killed by SIGKILL cannot stop anything: its workers die
//! with it (their parent-death signal), but what a worker started lives
//! on, reparented to init, in the worker's process group or in a session
//! of its own. Those processes still carry the worker's `NOTIFY_SOCKET`,
//! a path in the dead instance's notification directory,
//! `NAME.workers.XXXXXX` in the runtime directory. So the next start of
//! the same name (which holds the name: no instance of it runs) finds
//! every process of this user whose `NOTIFY_SOCKET` is in such a
//! directory other than its own, sends each the stop signal, and kills
//! what is left at the kill timeout; then it removes the old directories.
//!
//! What is not found: a process that cleared its environment (or was
//! started with another `NOTIFY_SOCKET`) after leaving the worker's group.
//! Processes are told apart by their start time, so a pid reused in the
//! meantime is never signalled.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::{Event, Listener, emit};
use crate::os;

/// A process found, and when it started (clock ticks after boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    pid: u32,
    started: u64,
}

/// Stops what earlier instances of this one's name left, on a thread of
/// its own (the kill comes `kill_timeout` after the stop signal), and
/// removes their notification directories. `own` is this instance's
/// directory, `NAME.workers.XXXXXX`: theirs are the others of that name.
/// Call it holding the name (its lock): no other instance of it runs.
pub(crate) fn stop(
    own: &Path,
    signal: exit_hook::Signal,
    kill_timeout: Duration,
    listener: Option<&Listener>,
) {
    let (Some(dir), Some(prefix)) = (own.parent(), prefix_of(own)) else {
        return;
    };
    let old: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path != own && is_notify_dir_of(path, &prefix))
        .collect();
    if old.is_empty() {
        return;
    }
    let found = processes_in(&old);
    for dir in &old {
        let _ = std::fs::remove_dir_all(dir);
    }
    if found.is_empty() {
        return;
    }
    for process in &found {
        emit(
            listener,
            Event::LeftBehind {
                pid: process.pid,
                group: false,
            },
        );
        let _ = os::signal_process(process.pid, signal);
    }
    let listener = listener.cloned();
    let _ = std::thread::Builder::new()
        .name("keepalive-leftovers".into())
        .spawn(move || {
            let deadline = os::later(Instant::now(), kill_timeout);
            let mut left = found;
            loop {
                left.retain(|process| start_time(process.pid) == Some(process.started));
                if left.is_empty() || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            for process in left {
                let _ = os::signal_process(process.pid, os::KILL);
                emit(listener.as_ref(), Event::Killed { pid: process.pid });
            }
        });
}

/// `NAME.workers.` of a notification directory `NAME.workers.XXXXXX`
/// (none for an unnamed supervisor's `.workers.XXXXXX`).
fn prefix_of(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let prefix = name.get(..name.len().checked_sub(6)?)?;
    (prefix.ends_with(".workers.") && !prefix.starts_with('.')).then(|| prefix.to_owned())
}

/// Whether `path` is a notification directory with `prefix`
/// (`NAME.workers.`) and six random characters, nothing else.
fn is_notify_dir_of(path: &Path, prefix: &str) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix(prefix))
        .is_some_and(|random| {
            random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// This user's live processes whose `NOTIFY_SOCKET` is in one of `dirs`.
fn processes_in(dirs: &[PathBuf]) -> Vec<Found> {
    let me = rustix::process::geteuid().as_raw();
    let own = std::process::id();
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == own || entry.metadata().ok()?.uid() != me {
                return None;
            }
            let socket = os::notify_socket_of(pid)?;
            let in_old = dirs
                .iter()
                .any(|dir| socket.parent() == Some(dir.as_path()));
            let started = start_time(pid)?;
            in_old.then_some(Found { pid, started })
        })
        .collect()
}

/// When `pid` started, while it runs (not a zombie).
fn start_time(pid: u32) -> Option<u64> {
    os::stat(pid)
        .filter(|stat| !stat.zombie)
        .map(|stat| stat.started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directories_of_that_name_are_its_own() {
        let dir = Path::new("/run/user/1/keepalive");
        let prefix = prefix_of(&dir.join("app.workers.Qq1w2E")).unwrap();
        assert_eq!(prefix, "app.workers.");
        assert!(is_notify_dir_of(&dir.join("app.workers.Ab3x9Z"), &prefix));
        for other in [
            "app-2.workers.Ab3x9Z",
            "app.workers.x.workers.Ab3x9Z",
            "app.workers.Ab3x9",
            "app.workers.Ab3x9Z.d",
            "app.sock",
        ] {
            assert!(!is_notify_dir_of(&dir.join(other), &prefix), "{other}");
        }
        // A supervisor without a name has none to match.
        assert_eq!(prefix_of(&dir.join(".workers.Ab3x9Z")), None);
        assert_eq!(prefix_of(&dir.join("app.sock")), None);
    }

    #[test]
    fn a_running_process_has_a_start_time() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
