//! keepalive as a container's init, PID 1 of a new PID namespace
//! (`unshare --pid --fork --mount-proc`), with tini as the anchor: it ends
//! with the app's status, not its own. A clean stop (SIGTERM, the worker
//! exits 0) exits 0 where it exited 143; giving up on an app that exits 3
//! exits 3 where it exited 1.

use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::child::wait_forever;
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_as_pid_1_exits_with_the_apps_status_after_a_stop,
        keepalive_as_pid_1_gives_up_with_the_apps_own_code,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "term_exits_0" => {
            extern "C" fn exit_0(_: libc::c_int) {
                // SAFETY: _exit(2) is async-signal-safe.
                unsafe { libc::_exit(0) }
            }
            // SAFETY: a handler that only calls _exit, set before any thread.
            unsafe {
                libc::signal(
                    libc::SIGTERM,
                    exit_0 as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
            println!("worker {}", std::process::id());
            wait_forever()
        }
        "exit_3_at_once" => std::process::exit(3),
        _ => false,
    }
}

/// `keepalive OPTIONS -- this binary` as PID 1 of a new PID namespace.
fn as_pid_1(options: &[&str], role: &str) -> Child {
    // SAFETY: getuid(2) has no preconditions.
    assert_eq!(
        unsafe { libc::getuid() },
        0,
        "a new PID namespace takes root; CI runs as root"
    );
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_keepalive"))
        .args(options)
        .arg("--")
        .arg(std::env::current_exe().unwrap());
    super::merge_stderr(&mut command);
    Child::spawn_with(command, role)
}

/// The pid, in this namespace, of `unshare`'s child: keepalive, PID 1 in its own.
fn init_of(unshare: u32) -> u32 {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        assert!(Instant::now() < until, "unshare {unshare} started no child");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn keepalive_as_pid_1_exits_with_the_apps_status_after_a_stop() {
    let mut child = as_pid_1(&[], "term_exits_0");
    child.wait_line("worker", |l| l.starts_with("worker "));
    let init = init_of(child.pid() as u32);
    // SAFETY: kill(2) on keepalive, our grandchild, alive (unshare waits for it).
    assert_eq!(unsafe { libc::kill(init as i32, libc::SIGTERM) }, 0);
    let outcome = child.finish();
    outcome.assert_code(0);
}

fn keepalive_as_pid_1_gives_up_with_the_apps_own_code() {
    let outcome = as_pid_1(&["--min-uptime", "1s"], "exit_3_at_once").finish();
    outcome.assert_code(3);
    assert!(
        outcome.stdout.iter().any(|l| l.contains("gave up")),
        "{outcome:#?}"
    );
}
