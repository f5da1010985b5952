//! `--watch`: a change under a watched directory replaces every worker the
//! way a reload does, each new one ready before the old one stops, with not
//! one connection refused; an ignored path, or a worker reading a watched
//! file, changes nothing.

use std::time::Duration;

use libtest_mimic::Trial;

use super::{TempDir, event, keepalive_role, reload_completes_without_a_failure};
use crate::cluster::{Watchdog, assert_stopped_once, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![keepalive_replaces_every_worker_when_a_watched_file_changes]
}

fn keepalive_replaces_every_worker_when_a_watched_file_changes() {
    let dir = TempDir::new("watch");
    let watched = dir.join("config");
    std::fs::create_dir_all(&watched).unwrap();
    let config = watched.join("app.toml");
    std::fs::write(&config, "workers = 2").unwrap();
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &[
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--wait-ready",
            "--watch",
            watched.to_str().unwrap(),
            "--watch-ignore",
            "*.log",
            "--watch-debounce",
            "100ms",
        ],
        // Each worker reads the watched file every 20 ms: reads change nothing.
        &[("EXIT_HOOK_READ_FILE", config.to_str().unwrap())],
        "ready_server",
    );
    let port = next_number(&mut keepalive, "port ");
    let old: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "ready ")))
        .collect();
    // An ignored file, and the workers' reads: nothing happens (notify
    // reports the reads; they reloaded 10 times in 10 s before).
    std::fs::write(watched.join("app.log"), "noise").unwrap();
    let reloaded = keepalive.try_wait_line(Duration::from_millis(1500), |l| {
        l.contains("changed: reloading")
    });
    assert_eq!(reloaded, None, "{:#?}", keepalive.seen());
    // A client connects all through the replacement.
    let client = crate::cluster::Asking::start(port);
    let changed = config;
    std::fs::write(&changed, "workers = 3").unwrap();
    event(
        &mut keepalive,
        &format!("{} changed: reloading", changed.display()),
    );
    let new = reload_completes_without_a_failure(&mut keepalive, &mut watchdog, &old, client);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for pid in old.iter().chain(&new) {
        assert_stopped_once(&outcome, *pid);
    }
}
