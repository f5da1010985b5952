//! Nothing a worker started survives the worker: not a child in its
//! process group, not one that called `setsid`, not a double-forked one
//! in a session of its own. keepalive is their subreaper on Linux.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use libtest_mimic::Trial;

use super::{TempDir, events, keepalive_role};
use crate::child::wait_forever;
use crate::cluster::{
    Watchdog, assert_gone_soon, assert_stopped_once, is_gone, is_gone_soon, next_number,
};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![keepalive_leaves_nothing_a_worker_started]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "spawner" => spawner(),
        _ => false,
    }
}

/// Starts three `sleep 300`: one in its process group, one after `setsid`,
/// one double-forked by a shell in a session of its own (the shell exits
/// at once, so it is orphaned while the worker lives). Prints their pids
/// and its own; the first start then exits with 1, later ones wait with a
/// hook.
fn spawner() -> ! {
    let quiet = |command: &mut Command| {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut in_group = Command::new("sleep");
    in_group.arg("300");
    quiet(&mut in_group);
    let mut own_session = Command::new("sleep");
    own_session.arg("300");
    quiet(&mut own_session);
    // SAFETY: setsid(2) in the forked child, async-signal-safe.
    unsafe {
        own_session.pre_exec(|| {
            (libc::setsid() >= 0)
                .then_some(())
                .ok_or_else(std::io::Error::last_os_error)
        })
    };
    let mut double_fork = Command::new("sh");
    double_fork
        .args(["-c", "sleep 300 </dev/null >/dev/null 2>&1 & echo $!"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: as above.
    unsafe {
        double_fork.pre_exec(|| {
            (libc::setsid() >= 0)
                .then_some(())
                .ok_or_else(std::io::Error::last_os_error)
        })
    };
    #[allow(clippy::zombie_processes, reason = "they are what the test looks for")]
    let pids = [
        in_group.spawn().unwrap().id(),
        own_session.spawn().unwrap().id(),
        {
            let mut shell = double_fork.spawn().unwrap();
            let mut pid = String::new();
            shell
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut pid)
                .unwrap();
            shell.wait().unwrap();
            pid.trim().parse().unwrap()
        },
    ];
    for pid in pids {
        println!("left {pid}");
    }
    let pid = std::process::id();
    println!("worker {pid}");
    if crate::child::starts_before() == 0 {
        std::thread::sleep(Duration::from_millis(200));
        std::process::exit(1);
    }
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    wait_forever()
}

fn children_of(child: &mut Child, watchdog: &mut Watchdog) -> ([u32; 3], u32) {
    let left = [(); 3].map(|()| watchdog.watch(next_number(child, "left ")));
    (left, watchdog.watch(next_number(child, "worker ")))
}

/// Fails with what keepalive said if `pid` is not gone within 5 s.
fn assert_gone_soon_or(pid: u32, keepalive: &mut Child) {
    if !is_gone_soon(pid) {
        keepalive.try_wait_line(Duration::from_millis(200), |_| false);
        panic!(
            "pid {pid} outlived its worker ({}); keepalive said {:#?}",
            ps(pid),
            keepalive.seen()
        );
    }
}

fn ps(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
}

fn keepalive_leaves_nothing_a_worker_started() {
    let dir = TempDir::new("orphans");
    let state = dir.join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--min-uptime", "0ms", "--kill-timeout", "2s"],
        &[("EXIT_HOOK_STATE", state.to_str().unwrap())],
        "spawner",
    );
    let (first_left, first) = children_of(&mut keepalive, &mut watchdog);
    // The first worker exits; the restart is the second.
    let (second_left, second) = children_of(&mut keepalive, &mut watchdog);
    assert_gone_soon(first);
    for pid in first_left {
        assert_gone_soon_or(pid, &mut keepalive);
    }
    // What the live worker started is its own, even what left its group.
    std::thread::sleep(Duration::from_millis(300));
    for pid in second_left {
        assert!(!is_gone(pid), "pid {pid} of the live worker was stopped");
    }
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, second);
    // The worker stopped before the kill timeout; what it left went too.
    for pid in second_left {
        assert!(
            is_gone_soon(pid),
            "pid {pid} outlived its worker: {outcome:#?}"
        );
    }
    let events = events(&outcome.stdout);
    assert!(
        !events.iter().any(|e| e.starts_with("killed ")),
        "SIGTERM was enough, no kill timeout: {outcome:#?}"
    );
}
