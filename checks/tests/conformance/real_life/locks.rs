//! Locks held when the process ends, and panics that misbehave.
//!
//! A thread that calls `std::process::exit` while holding stdout's and
//! stderr's locks keeps them for ever: hooks that print wait, the deadline
//! ends the run, and the crate's own line still gets out (it is written
//! without std's stderr lock). Where the report goes through a `tracing`
//! subscriber stuck on that lock, the process still ends at the deadline.

use std::time::Duration;

use exit_hook::Builder;
use libtest_mimic::Trial;

use crate::child::{install, ready, wait_forever};
use crate::harness::Child;
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        exit_while_holding_stdout_and_stderr_still_reports_the_deadline,
        a_tracing_subscriber_stuck_on_stderr_does_not_hold_the_deadline,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        exit_holding_std_locks,
        exit_holding_std_locks_traced,
    }
}

fn exit_holding_std_locks_traced() {
    // Its events go to stderr, through std's lock.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    exit_holding_std_locks();
}

/// Another thread takes stdout's and stderr's locks and keeps them; main
/// calls `std::process::exit`.
fn exit_holding_std_locks() {
    install(Builder::new().timeout(Duration::from_secs(1)));
    exit_hook::add(|_| {
        println!("to stdout");
        eprintln!("to stderr");
    });
    ready();
    let (taken, locked) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _out = std::io::stdout().lock();
        let _err = std::io::stderr().lock();
        taken.send(()).unwrap();
        wait_forever();
    });
    locked.recv().unwrap();
    std::process::exit(4);
}

fn exit_while_holding_stdout_and_stderr_still_reports_the_deadline() {
    let outcome = Child::spawn("exit_holding_std_locks").finish();
    outcome.assert_code(4);
    assert_eq!(outcome.stdout, ["READY"], "{outcome:#?}");
    outcome.assert_elapsed(Duration::from_millis(950)..Duration::from_secs(10));
    let lines = outcome.crate_lines();
    assert!(
        lines.len() == 1
            && lines[0].starts_with("exit_hook: deadline of 1s passed; 1 hook(s) still running:")
            && lines[0].contains("locks.rs"),
        "{outcome:#?}"
    );
}

/// The deadline's report goes to a `tracing` subscriber that writes through
/// the stderr lock another thread holds for ever: the report cannot get
/// out, and the process still ends at the deadline.
fn a_tracing_subscriber_stuck_on_stderr_does_not_hold_the_deadline() {
    let outcome = Child::spawn("exit_holding_std_locks_traced").finish();
    outcome.assert_code(4);
    outcome.assert_elapsed(Duration::from_millis(950)..Duration::from_secs(10));
}
