//! keepalive against a hostile local user and a hostile world (Linux, as
//! root, which CI is: the attackers run as `nobody` or as root against a
//! `nobody` keepalive). Who can reach an instance (`reach.rs`), what a
//! client can do to it (`clients.rs`), what its command line and config
//! can (`options.rs`), its own processes dying (`deaths.rs`), its output
//! and the disk (`output.rs`), and its checks and workers (`workers.rs`).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use libtest_mimic::Trial;

mod clients;
mod deaths;
mod options;
mod output;
mod reach;
mod workers;

pub fn tests() -> Vec<Trial> {
    [
        reach::tests(),
        clients::tests(),
        options::tests(),
        deaths::tests(),
        output::tests(),
        workers::tests(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Runs the scenario `role` if it is one of these files'; `false` if not.
pub fn run_role(role: &str) -> bool {
    deaths::run_role(role) || output::run_role(role) || workers::run_role(role)
}

/// `nobody`'s uid and gid: the other local user.
pub(crate) const NOBODY: u32 = 65534;

/// The tests of another user need root to become one; CI runs as root.
pub(crate) fn assert_root() {
    // SAFETY: getuid(2) has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    assert!(
        root,
        "this test runs processes as another user (nobody), which takes root; CI runs as root"
    );
}

/// `command` run as `nobody`.
pub(crate) fn as_nobody(command: &mut Command) -> &mut Command {
    command.uid(NOBODY).gid(NOBODY)
}

/// `keepalive ARGS` as a client with `envs`, as `uid` (this user if `None`).
pub(crate) fn client(args: &[&str], envs: &[(&str, &Path)], nobody: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command.args(args).env_remove("XDG_RUNTIME_DIR");
    for (key, value) in envs {
        command.env(key, value);
    }
    if nobody {
        as_nobody(&mut command);
    }
    command.output().unwrap()
}

/// The number of descriptors `pid` has open.
pub(crate) fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// `pid`'s resident memory, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory `pid` ever had, in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `pid`'s CPU time so far (user and system), in clock ticks (1/100 s).
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |at: usize| {
        fields
            .get(at)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Whether `pid` is alive (not gone, not a zombie).
pub(crate) fn alive(pid: u32) -> bool {
    !crate::cluster::is_gone(pid)
}
