//! `--cron-reload` (pm2's `cron_restart`): at the times its pattern names,
//! every worker is replaced the way a reload does, each new one ready
//! before the old one stops, with not one connection refused.

use libtest_mimic::Trial;

use super::{event, keepalive_role, reload_completes_without_a_failure};
use crate::cluster::{Watchdog, assert_stopped_once, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![keepalive_reloads_ready_first_on_its_schedule]
}

fn keepalive_reloads_ready_first_on_its_schedule() {
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &[
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--wait-ready",
            // pm2's name for it; every two seconds, seconds first.
            "--cron-restart",
            "*/2 * * * * *",
        ],
        &[],
        "ready_server",
    );
    let port = next_number(&mut keepalive, "port ");
    let old: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "ready ")))
        .collect();
    let client = crate::cluster::Asking::start(port);
    event(&mut keepalive, "scheduled reload");
    let new = reload_completes_without_a_failure(&mut keepalive, &mut watchdog, &old, client);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for pid in &old {
        assert_stopped_once(&outcome, *pid);
    }
    // The workers of later scheduled reloads, if any came, stopped too.
    for pid in &new {
        assert!(crate::cluster::is_gone(*pid));
    }
}
