//! keepalive under ordinary operations (Linux, feature `supervisor`): a
//! stop during a reload, a slot that cannot restart, a dead log pipe,
//! output that is not text, what a worker leaves behind, who may speak for
//! a worker, an idle supervisor, and the small mistakes users make. Real
//! keepalive, real workers (this binary's roles, each beside its test),
//! real signals.

use std::io::Write;
use std::process::Command;

use libtest_mimic::Trial;

use crate::cluster::number_after;
use crate::harness::Child;
use crate::supervisor::keepalive_command;

mod group;
mod health;
mod idle;
mod logs;
mod notify;
mod orphans;
mod output;
mod pid1;
mod schedule;
mod slots;
mod small;
mod stop_during_reload;
mod watch;

pub fn tests() -> Vec<Trial> {
    [
        stop_during_reload::tests(),
        slots::tests(),
        output::tests(),
        orphans::tests(),
        notify::tests(),
        idle::tests(),
        health::tests(),
        watch::tests(),
        logs::tests(),
        small::tests(),
        pid1::tests(),
        schedule::tests(),
        group::tests(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Runs the scenario `role` if it is one of these files'; `false` if not.
pub fn run_role(role: &str) -> bool {
    slots::run_role(role)
        || output::run_role(role)
        || orphans::run_role(role)
        || notify::run_role(role)
        || small::run_role(role)
        || health::run_role(role)
        || logs::run_role(role)
        || pid1::run_role(role)
        || group::run_role(role)
}

/// `keepalive OPTIONS -- PROGRAM ARGS` with `envs`, its stderr merged into
/// its stdout, so the test reads keepalive's events (`keepalive: …`) as
/// they come, in order with what the workers print.
fn keepalive_merged(
    options: &[&str],
    program: &[&str],
    envs: &[(&str, &str)],
    role: &str,
) -> Child {
    let mut command = keepalive_command();
    command
        .args(options)
        .arg("--")
        .args(program)
        .envs(envs.iter().copied());
    merge_stderr(&mut command);
    Child::spawn_with(command, role)
}

/// [`keepalive_merged`] supervising this binary in `role`.
fn keepalive_role(options: &[&str], envs: &[(&str, &str)], role: &str) -> Child {
    let me = std::env::current_exe().unwrap();
    keepalive_merged(options, &[me.to_str().unwrap()], envs, role)
}

/// Makes the child's stderr its stdout (after `Command` set both up).
pub(crate) fn merge_stderr(command: &mut Command) {
    // SAFETY: dup2(2) in the forked child, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, || {
            if libc::dup2(1, 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

/// Waits for keepalive's event starting with `what`; returns the event.
fn event(child: &mut Child, what: &str) -> String {
    let prefix = format!("keepalive: {what}");
    let line = child.wait_line(&prefix, |line| line.starts_with(&prefix));
    line["keepalive: ".len()..].to_owned()
}

/// Waits for the event `what` followed by a pid (`started pid 42`).
fn event_pid(child: &mut Child, what: &str) -> u32 {
    number_after(&event(child, what), what)
}

/// A line to stderr in one write: `eprintln!` may write a line in pieces,
/// and keepalive's own lines on the same pipe would land between them.
pub(crate) fn say_err(line: &str) {
    std::io::stderr()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
}

/// Waits for a line equal to `line`, unless it was read already (lines of
/// a worker and keepalive's events come in either order).
pub(crate) fn seen_or_wait(child: &mut Child, line: &str) {
    if !child.seen().iter().any(|l| l == line) {
        child.wait_line(line, |l| l == line);
    }
}

/// The events in a merged outcome (`keepalive: …` lines on stdout).
fn events(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("keepalive: "))
        .collect()
}

/// A temporary directory for one test, removed when dropped.
struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("exit_hook_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A reload has started while `client` connects all along: the new
/// workers (as many as `old`) become ready, the reload is done, the old
/// workers are gone, and not one connection failed. The new workers.
fn reload_completes_without_a_failure(
    keepalive: &mut Child,
    watchdog: &mut crate::cluster::Watchdog,
    old: &[u32],
    client: crate::cluster::Asking,
) -> Vec<u32> {
    use crate::cluster::{assert_gone_soon, next_number};
    let new: Vec<u32> = old
        .iter()
        .map(|_| watchdog.watch(next_number(keepalive, "ready ")))
        .collect();
    seen_or_wait(keepalive, "keepalive: reload done: every worker replaced");
    let (answers, failures) = client.stop();
    for pid in old {
        assert_gone_soon(*pid);
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "refused or unanswered connections"
    );
    assert!(!answers.is_empty(), "the client got through");
    new
}
