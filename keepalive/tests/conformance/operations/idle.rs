//! An idle keepalive sleeps: no wake-ups while nothing happens. Counted in
//! context switches, which do not depend on the machine's speed; the CPU
//! it costs is measured in `benches/keepalive.rs`.

use std::time::Duration;

use libtest_mimic::Trial;

use super::keepalive_role;
use crate::cluster::{Watchdog, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![keepalive_idle_with_a_worker_does_not_wake_up]
}

/// Context switches of every thread of `pid` so far.
fn switches(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn keepalive_idle_with_a_worker_does_not_wake_up() {
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(&[], &[], "worker");
    let pid = keepalive.pid() as u32;
    watchdog.watch(next_number(&mut keepalive, "worker "));
    std::thread::sleep(Duration::from_millis(500));
    let before = switches(pid);
    std::thread::sleep(Duration::from_secs(2));
    let woke = switches(pid) - before;
    // The 5 ms loop it replaced woke 400 times in 2 s.
    assert!(woke < 20, "an idle keepalive woke {woke} times in 2 s");
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}
