//! Unhealthy workers replaced ready-first: one that stops saying
//! `WATCHDOG=1` (systemd's watchdog protocol, `--watchdog`), one whose
//! memory grows past `--max-memory`. The replacement is up before the old
//! worker is stopped, and the old one is stopped gracefully.

use std::time::Duration;

use libtest_mimic::Trial;

use super::{TempDir, event, keepalive_role, seen_or_wait};
use crate::child::{starts_before, wait_forever};
use crate::cluster::{Watchdog, assert_gone_soon, assert_stopped_once, is_gone, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_replaces_a_worker_that_stops_its_watchdog,
        keepalive_replaces_a_worker_past_max_memory,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "watchdog_worker" => watchdog_worker(),
        "memory_hog" => memory_hog(),
        _ => false,
    }
}

fn hooked() -> u32 {
    let pid = std::process::id();
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    pid
}

/// Says `WATCHDOG=1` every 50 ms: the first start 6 times, then no more
/// (it hangs, as far as anyone can tell); later starts for ever.
fn watchdog_worker() -> ! {
    let first = starts_before() == 0;
    let pid = hooked();
    println!(
        "watchdog_usec {}",
        std::env::var("WATCHDOG_USEC").unwrap_or_default()
    );
    println!("worker {pid}");
    for ping in 0.. {
        if first && ping == 6 {
            wait_forever();
        }
        sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    unreachable!()
}

/// The first start takes 64 MiB of memory (and touches it); later ones do not.
fn memory_hog() -> ! {
    let first = starts_before() == 0;
    let pid = hooked();
    println!("worker {pid}");
    if first {
        let hog = vec![1u8; 64 << 20];
        std::hint::black_box(&hog);
        println!("grown {}", hog.len());
        std::mem::forget(hog);
    }
    wait_forever()
}

fn keepalive_replaces_a_worker_that_stops_its_watchdog() {
    let dir = TempDir::new("watchdog");
    let state = dir.join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--watchdog", "300ms", "--min-uptime", "100ms"],
        &[("EXIT_HOOK_STATE", state.to_str().unwrap())],
        "watchdog_worker",
    );
    let usec = keepalive.wait_line("watchdog_usec", |l| l.starts_with("watchdog_usec "));
    assert_eq!(usec, "watchdog_usec 300000", "systemd's variable, in µs");
    let hung = watchdog.watch(next_number(&mut keepalive, "worker "));
    event(
        &mut keepalive,
        &format!("replacing pid {hung}: no WATCHDOG=1 for 300 ms"),
    );
    let new = watchdog.watch(next_number(&mut keepalive, "worker "));
    // Stopped once the new one was ready, gracefully: its hooks ran.
    seen_or_wait(
        &mut keepalive,
        &format!("hook {hung}: SIGTERM (15), exit status 143"),
    );
    assert_gone_soon(hung);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !is_gone(new),
        "the new worker keeps its watchdog and serves"
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, new);
}

fn keepalive_replaces_a_worker_past_max_memory() {
    let dir = TempDir::new("max_memory");
    let state = dir.join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--max-memory", "40MB", "--min-uptime", "100ms"],
        &[("EXIT_HOOK_STATE", state.to_str().unwrap())],
        "memory_hog",
    );
    let hog = watchdog.watch(next_number(&mut keepalive, "worker "));
    keepalive.wait_line("grown", |l| l.starts_with("grown "));
    let replacing = event(
        &mut keepalive,
        &format!("replacing pid {hog}: its memory ("),
    );
    assert!(
        replacing.ends_with(" MB) passed --max-memory (40.0 MB)"),
        "{replacing}"
    );
    let new = watchdog.watch(next_number(&mut keepalive, "worker "));
    seen_or_wait(
        &mut keepalive,
        &format!("hook {hog}: SIGTERM (15), exit status 143"),
    );
    assert_gone_soon(hog);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(
        !outcome
            .stdout
            .iter()
            .any(|l| l.contains(&format!("replacing pid {new}"))),
        "{outcome:#?}"
    );
}
