//! A process's real life (the reliability issue): it forks, runs under
//! `nohup`, closes its descriptors, blocks signals, holds locks when it
//! ends, signals itself, installs its own panic hook, and can start no
//! thread when it ends. Each test's child
//! scenario is beside it.

use libtest_mimic::Trial;

mod descriptors;
mod fork;
mod locks;
mod no_threads;
mod panics;
mod signals;

pub fn tests() -> Vec<Trial> {
    [
        fork::tests(),
        locks::tests(),
        panics::tests(),
        signals::tests(),
        descriptors::tests(),
        no_threads::tests(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The child scenarios of these files.
pub fn scenarios() -> Vec<crate::Scenario> {
    [
        fork::scenarios(),
        locks::scenarios(),
        panics::scenarios(),
        signals::scenarios(),
        descriptors::scenarios(),
        no_threads::scenarios(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// How a `waitpid` status reads in the scenarios' lines.
fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    }
}

/// Waits for the process `pid` (a child of this one) and describes its end.
fn reap(pid: libc::pid_t) -> String {
    let mut status = 0;
    // SAFETY: waitpid(2) on our own child; `status` is ours.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
    describe_status(status)
}

/// fork(2). The child gets a watchdog: SIGALRM (its default action ends
/// it) after 20 s, so a child stuck by a bug never outlives its test.
fn fork() -> libc::pid_t {
    // SAFETY: the scenarios fork while no other thread of theirs holds a lock.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: alarm(2) has no preconditions.
        unsafe { libc::alarm(20) };
    }
    pid
}
