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

/// Stops what earlier instances named `tag` left, on a thread of its own
/// (the kill comes `kill_timeout` after the stop signal), and removes
/// their notification directories. `own` is this instance's directory.
pub(crate) fn stop(
    own: &Path,
    tag: &str,
    signal: i32,
    kill_timeout: Duration,
    listener: Option<&Listener>,
) {
    let Some(dir) = own.parent() else { return };
    let old: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path != own && is_notify_dir_of(path, &crate::runtime::short_name(tag)))
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
                let _ = os::signal_process(process.pid, os::SIGKILL);
                emit(listener.as_ref(), Event::Killed { pid: process.pid });
            }
        });
}

/// Whether `path` is a notification directory of an instance named `tag`:
/// `TAG.workers.` and the six random characters, nothing else.
fn is_notify_dir_of(path: &Path, tag: &str) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix(tag))
        .and_then(|rest| rest.strip_prefix(".workers."))
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

/// When `pid` started (field 22 of `/proc/PID/stat`), while it runs (not
/// a zombie).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directories_of_that_name_are_its_own() {
        let dir = Path::new("/run/user/1/keepalive");
        assert!(is_notify_dir_of(&dir.join("app.workers.Ab3x9Z"), "app"));
        for other in [
            "app-2.workers.Ab3x9Z",
            "app.workers.x.workers.Ab3x9Z",
            "app.workers.Ab3x9",
            "app.workers.Ab3x9Z.d",
            "app.sock",
        ] {
            assert!(!is_notify_dir_of(&dir.join(other), "app"), "{other}");
        }
        assert!(is_notify_dir_of(
            &dir.join("app.workers.x.workers.Ab3x9Z"),
            "app.workers.x"
        ));
    }

    #[test]
    fn a_running_process_has_a_start_time() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
