//! A slot whose program cannot start (a deploy that swaps the binary
//! non-atomically): that slot's failure, not the cluster's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libtest_mimic::Trial;

use super::{TempDir, events, keepalive_merged};
use crate::cluster::{Watchdog, assert_stopped_once, is_gone, next_number};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_keeps_serving_when_one_slot_cannot_restart,
        keepalive_retries_a_slot_that_cannot_start_after_its_backoff,
    ]
}

pub fn run_role(_role: &str) -> bool {
    false // the workers are `worker` (child/cluster.rs) behind a script
}

/// Installs the program `dir/worker`: a script that execs this binary.
fn install(path: &Path) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, "#!/bin/sh\nexec \"$EXIT_HOOK_TEST_BIN\"\n").unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(staged, path).unwrap();
}

fn cluster_of_two(program: &Path, options: &[&str]) -> Child {
    let me = std::env::current_exe().unwrap();
    let options: Vec<&str> = ["--workers", "2", "--min-uptime", "0ms"]
        .into_iter()
        .chain(options.iter().copied())
        .collect();
    keepalive_merged(
        &options,
        &[program.to_str().unwrap()],
        &[("EXIT_HOOK_TEST_BIN", me.to_str().unwrap())],
        "worker",
    )
}

fn kill(pid: u32) {
    // SAFETY: kill(2) on a worker of this test's keepalive, alive.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

fn could_not_start(child: &mut Child) -> String {
    child.wait_line("could not start", |l| {
        l.starts_with("keepalive: worker ") && l.contains(" could not start: ")
    })
}

fn keepalive_keeps_serving_when_one_slot_cannot_restart() {
    let dir = TempDir::new("slot_cannot_restart");
    let program = dir.join("worker");
    install(&program);
    let mut watchdog = Watchdog::default();
    let mut keepalive = cluster_of_two(&program, &[]);
    let healthy = watchdog.watch(next_number(&mut keepalive, "worker "));
    let doomed = watchdog.watch(next_number(&mut keepalive, "worker "));
    std::fs::remove_file(&program).unwrap();
    kill(doomed);
    let failed = could_not_start(&mut keepalive);
    assert!(failed.contains("No such file or directory"), "{failed}");
    keepalive.wait_line("the slot gave up alone", |l| {
        l.ends_with("gave up: the program could not be started; the other workers keep serving")
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!is_gone(healthy), "the healthy worker still serves");
    assert!(!is_gone(keepalive.pid() as u32), "keepalive still runs");
    // Now no slot can run: keepalive says so and exits 1.
    kill(healthy);
    let outcome = keepalive.finish();
    outcome.assert_code(1);
    let events = events(&outcome.stdout);
    assert_eq!(
        events.last(),
        Some(&"gave up: the program could not be started"),
        "{outcome:#?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("stopping: ")),
        "keepalive stopped no worker itself: {outcome:#?}"
    );
    assert!(
        outcome
            .lines_starting(&format!("hook {healthy}: "))
            .is_empty(),
        "the healthy worker was killed by the test, not stopped: {outcome:#?}"
    );
}

fn keepalive_retries_a_slot_that_cannot_start_after_its_backoff() {
    let dir = TempDir::new("slot_retries");
    let program = dir.join("worker");
    install(&program);
    let mut watchdog = Watchdog::default();
    let mut keepalive = cluster_of_two(&program, &["--backoff", "100ms"]);
    let healthy = watchdog.watch(next_number(&mut keepalive, "worker "));
    let doomed = watchdog.watch(next_number(&mut keepalive, "worker "));
    std::fs::remove_file(&program).unwrap();
    kill(doomed);
    could_not_start(&mut keepalive);
    could_not_start(&mut keepalive);
    // The binary is back: the next try starts it.
    install(&program);
    let replaced = watchdog.watch(next_number(&mut keepalive, "worker "));
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for pid in [healthy, replaced] {
        assert_stopped_once(&outcome, pid);
    }
    let events = events(&outcome.stdout);
    assert!(
        !events.iter().any(|e| e.contains("gave up")),
        "{outcome:#?}"
    );
}
