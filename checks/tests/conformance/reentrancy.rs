//! Each hook at most once, whatever arrives while a run is going (SPEC §3).

use std::thread;
use std::time::Duration;

use exit_hook::Builder;
use libtest_mimic::Trial;

use crate::child::{
    describe_panic, hook, install, ready, ready_then_wait_for_a_slow_hook, wait_forever,
};
use crate::harness::{Child, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        hook_calling_exit_hook_exit_ends_the_run,
        hook_calling_process_exit_ends_the_run,
        hook_calling_process_exit_during_normal_exit_waits_for_the_deadline,
        signal_storm_during_a_run_runs_hooks_once,
        signal_storm_at_once_runs_hooks_once,
        panics_on_many_threads_run_hooks_once,
        signal_during_a_panic_run_forces_exit,
        main_returning_during_a_signal_run_keeps_the_signal_status,
        process_exit_during_a_signal_run_keeps_the_signal_status,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        hook_exit => hook_exits(|| exit_hook::exit(9)),
        hook_process_exit => hook_exits(|| std::process::exit(9)),
        hook_process_exit_on_return,
        storm,
        panic_storm,
        signal_during_panic,
        return_during_signal_run => signal_run_then(|| {}),
        exit_during_signal_run => signal_run_then(|| std::process::exit(5)),
    }
}

fn hook_calling_exit_ends(scenario: &str, what: &str) {
    let outcome = terminate(scenario);
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["a: SIGTERM (15), exit status 143", "b"]
    );
    outcome.assert_elapsed(..Duration::from_secs(5));
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 1, "{outcome:#?}");
    assert!(lines[0].contains(what), "{}", lines[0]);
}

fn hook_calling_exit_hook_exit_ends_the_run() {
    hook_calling_exit_ends("hook_exit", "called exit_hook::exit");
}

fn hook_exits(end: fn()) {
    install(Builder::new().timeout(Duration::from_secs(30)));
    hook("a");
    exit_hook::add(move |_| {
        println!("b");
        end();
        println!("b returned");
    });
    hook("c");
    ready();
    wait_forever();
}

fn hook_calling_process_exit_ends_the_run() {
    hook_calling_exit_ends("hook_process_exit", "called std::process::exit");
}

/// `main` returned, so the standard library's exit guard is taken: a hook's
/// `std::process::exit` waits forever in it. The deadline (1 s) ends the run
/// and the process exits with main's status.
fn hook_calling_process_exit_during_normal_exit_waits_for_the_deadline() {
    let outcome = Child::spawn("hook_process_exit_on_return").finish();
    outcome.assert_code(0);
    assert_eq!(outcome.stdout, ["a: process exit, exit status 0", "b"]);
    outcome.assert_elapsed(Duration::from_millis(950)..Duration::from_secs(6));
    let lines = outcome.crate_lines();
    assert!(
        lines.len() == 1 && lines[0].contains("deadline of 1s passed"),
        "{outcome:#?}"
    );
}

fn hook_process_exit_on_return() {
    install(Builder::new().timeout(Duration::from_secs(1)));
    hook("a");
    exit_hook::add(|_| {
        println!("b");
        std::process::exit(9);
    });
    hook("c");
}

const STORM: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn signal_storm_during_a_run_runs_hooks_once() {
    let mut child = Child::spawn("storm")
        .ready()
        .signal(libc::SIGTERM)
        .wait_for("a: SIGTERM (15), exit status 143");
    for i in 0..300 {
        child = child.signal(STORM[i % 3]);
    }
    let outcome = child.finish();
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["a: SIGTERM (15), exit status 143"]);
}

fn storm() {
    install(
        Builder::new()
            .force_on_second_signal(false)
            .timeout(Duration::from_secs(10)),
    );
    exit_hook::add(|exit| {
        println!("a: {exit}");
        thread::sleep(Duration::from_millis(300));
    });
    ready();
    wait_forever();
}

fn signal_storm_at_once_runs_hooks_once() {
    let mut child = Child::spawn("storm").ready();
    for i in 0..300 {
        child = child.signal(STORM[i % 3]);
    }
    let outcome = child.finish();
    let hooks = outcome.after_ready();
    assert_eq!(hooks.len(), 1, "{outcome:#?}");
    // Whichever signal was delivered first decided the status.
    let code = outcome.status.code().expect("an exit status");
    assert!([129, 130, 143].contains(&code), "{outcome:#?}");
    assert!(
        hooks[0].ends_with(&format!("exit status {code}")),
        "{outcome:#?}"
    );
}

fn panics_on_many_threads_run_hooks_once() {
    let outcome = Child::spawn("panic_storm").finish();
    outcome.assert_code(101);
    let hooks = outcome.lines_starting("panic:");
    assert_eq!(hooks.len(), 1, "{outcome:#?}");
    assert!(
        hooks[0].starts_with("panic: message=storm ") && hooks[0].contains("thread=Some(\"worker-"),
        "{}",
        hooks[0]
    );
}

fn panic_storm() {
    exit_hook::add(describe_panic);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    for i in 0..8 {
        let barrier = barrier.clone();
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                barrier.wait();
                panic!("storm {i}");
            })
            .unwrap();
    }
    wait_forever();
}

fn signal_during_a_panic_run_forces_exit() {
    let outcome = Child::spawn("signal_during_panic")
        .wait_for("started: 101")
        .signal(libc::SIGTERM)
        .finish();
    outcome.assert_code(143);
    outcome.assert_elapsed(..Duration::from_secs(5));
}

fn signal_during_panic() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    exit_hook::add(|exit| {
        println!("started: {}", exit.code().unwrap());
        thread::sleep(Duration::from_secs(60));
    });
    panic!("first");
}

fn during_signal_run(scenario: &str) {
    let outcome = terminate(scenario);
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["started: SIGTERM (15), exit status 143", "hook done"]
    );
}

fn main_returning_during_a_signal_run_keeps_the_signal_status() {
    during_signal_run("return_during_signal_run");
}

/// A signal starts the run; while its hook runs, `main` does `then` and returns.
fn signal_run_then(then: fn()) {
    ready_then_wait_for_a_slow_hook(|exit| format!("started: {exit}"), "hook done");
    then();
}

fn process_exit_during_a_signal_run_keeps_the_signal_status() {
    during_signal_run("exit_during_signal_run");
}
