//! `--watch`: a change under a watched directory replaces every worker the
//! way a reload does, each new one ready before the old one stops, with not
//! one connection refused; an ignored path changes nothing.

use std::time::Duration;

use libtest_mimic::Trial;

use super::{TempDir, event, keepalive_role, seen_or_wait};
use crate::cluster::{Watchdog, assert_gone_soon, assert_stopped_once, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![keepalive_replaces_every_worker_when_a_watched_file_changes]
}

fn keepalive_replaces_every_worker_when_a_watched_file_changes() {
    let dir = TempDir::new("watch");
    let watched = dir.join("config");
    std::fs::create_dir_all(&watched).unwrap();
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
        &[],
        "ready_server",
    );
    let port = next_number(&mut keepalive, "port ");
    let old: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "ready ")))
        .collect();
    // An ignored file: nothing happens.
    std::fs::write(watched.join("app.log"), "noise").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !keepalive
            .seen()
            .iter()
            .any(|l| l.contains("changed: reloading")),
        "{:#?}",
        keepalive.seen()
    );
    // A client connects all through the replacement.
    let client = crate::cluster::Asking::start(port);
    let changed = watched.join("app.toml");
    std::fs::write(&changed, "workers = 3").unwrap();
    event(
        &mut keepalive,
        &format!("{} changed: reloading", changed.display()),
    );
    let new: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "ready ")))
        .collect();
    seen_or_wait(
        &mut keepalive,
        "keepalive: reload done: every worker replaced",
    );
    let (answers, failures) = client.stop();
    for pid in &old {
        assert_gone_soon(*pid);
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "refused or unanswered connections"
    );
    assert!(
        answers.len() > 10,
        "the client got through: {}",
        answers.len()
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for pid in old.iter().chain(&new) {
        assert_stopped_once(&outcome, *pid);
    }
}
