//! How a run goes: order, concurrency, the deadline, panicking hooks,
//! registering and unregistering (SPEC §1, §3, §5).

use std::time::Duration;

use libtest_mimic::Trial;

use crate::harness::{Child, Outcome, terminate};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        hooks_start_in_registration_order,
        async_hooks_run_concurrently,
        stuck_async_hook_is_cut_at_the_deadline,
        stuck_sync_hook_is_cut_at_the_deadline,
        hook_stuck_holding_stdout_is_cut_at_the_deadline,
        default_deadline_is_ten_seconds,
        panicking_hooks_are_reported_and_the_rest_run,
        unregistered_hook_does_not_run,
        unregistering_from_a_hooks_drop_does_not_deadlock,
        hooks_registered_during_a_run_join_it,
        registering_after_the_run_is_an_error,
        exiting_future_resolves_when_a_run_starts,
        registering_from_another_thread_during_a_run_joins_it,
        async_hooks_run_while_the_app_runtime_is_blocked,
        async_hooks_await_the_apps_channels_and_join_handles,
        tracing_events_tell_the_run,
        no_threads_before_the_first_add_named_threads_and_no_leaked_fds,
    ]
}

fn hooks_start_in_registration_order() {
    let outcome = terminate("order");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["1", "2", "3", "4", "5"]);
}

fn async_hooks_run_concurrently() {
    let outcome = terminate("many_async");
    outcome.assert_code(143);
    assert_eq!(outcome.lines_starting("done").len(), 1000);
    // One after another they would take 100 s; together, about 100 ms
    // (measured: 108-109 ms from SIGTERM to reaped, debug build). One second
    // leaves room for a busy machine.
    outcome.assert_elapsed(..Duration::from_secs(1));
}

/// The deadline passed: the status is the trigger's, and one stderr line
/// names the stuck hook by its registration site.
fn assert_cut_at_deadline(outcome: &Outcome, deadline: Duration) {
    outcome.assert_code(143);
    let site = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("site: "))
        .expect("the child printed the site");
    assert_eq!(outcome.after_ready(), ["a: SIGTERM (15), exit status 143"]);
    outcome.assert_elapsed(deadline - Duration::from_millis(50)..deadline + Duration::from_secs(5));
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 1, "{outcome:#?}");
    assert!(
        lines[0].contains("deadline") && lines[0].contains(&format!("still running: {site}")),
        "{}",
        lines[0]
    );
}

fn stuck_async_hook_is_cut_at_the_deadline() {
    let outcome = terminate("stuck_async");
    assert_cut_at_deadline(&outcome, Duration::from_millis(500));
}

fn stuck_sync_hook_is_cut_at_the_deadline() {
    let outcome = terminate("stuck_sync");
    assert_cut_at_deadline(&outcome, Duration::from_millis(500));
}

fn hook_stuck_holding_stdout_is_cut_at_the_deadline() {
    let outcome = terminate("stuck_holding_stdout");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["holding stdout"]);
    outcome.assert_elapsed(..Duration::from_secs(5));
}

fn default_deadline_is_ten_seconds() {
    let outcome = terminate("default_deadline");
    assert_cut_at_deadline(&outcome, Duration::from_secs(10));
}

fn panicking_hooks_are_reported_and_the_rest_run() {
    let outcome = terminate("panicking_hook");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        [
            "a: SIGTERM (15), exit status 143",
            "c: SIGTERM (15), exit status 143"
        ]
    );
    let site = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("site: "))
        .unwrap();
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 2, "one line per panicking hook: {outcome:#?}");
    assert!(
        lines[0].contains(&format!("registered at {site} panicked"))
            && lines[0].ends_with(": hook boom"),
        "{}",
        lines[0]
    );
    assert!(lines[1].ends_with(": async boom"), "{}", lines[1]);
    assert_eq!(
        outcome.stderr.lines().count(),
        2,
        "nothing but the two lines: {}",
        outcome.stderr
    );
}

fn unregistered_hook_does_not_run() {
    let outcome = terminate("unregister");
    outcome.assert_code(143);
    assert!(outcome.stdout.contains(&"unregistered: true".to_owned()));
    assert_eq!(
        outcome.after_ready(),
        [
            "a: SIGTERM (15), exit status 143",
            "c: SIGTERM (15), exit status 143"
        ]
    );
}

fn unregistering_from_a_hooks_drop_does_not_deadlock() {
    let outcome = terminate("unregister_from_drop");
    outcome.assert_code(143);
    assert_eq!(
        outcome.stdout,
        [
            "drop unregisters the other: true",
            "unregistered: true",
            "READY",
            "last: SIGTERM (15), exit status 143"
        ]
    );
    outcome.assert_elapsed(..Duration::from_secs(5));
}

fn hooks_registered_during_a_run_join_it() {
    let outcome = terminate("register_during_run");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["a", "late sync", "late async"]);
}

fn registering_after_the_run_is_an_error() {
    let outcome = Child::spawn("register_after_run").finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout,
        [
            "a: process exit, exit status 0",
            "late: the process is exiting and its hooks have run: this hook would never run",
            "late add unregisters: false",
        ]
    );
}

fn exiting_future_resolves_when_a_run_starts() {
    let outcome = terminate("exiting_future");
    outcome.assert_code(143);
    assert_eq!(
        outcome.stdout,
        ["before: false", "READY", "observed: true", "hook done"]
    );
}

fn registering_from_another_thread_during_a_run_joins_it() {
    let outcome = terminate("register_from_thread_during_run");
    outcome.assert_code(143);
    // Registering returned while the sync hook was still running: it did not wait for the run.
    assert_eq!(
        outcome.after_ready(),
        ["a started", "registered: true", "a done", "late"]
    );
}

fn async_hooks_run_while_the_app_runtime_is_blocked() {
    let outcome = terminate("blocked_app_runtime");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["async: SIGTERM (15), exit status 143"]
    );
}

fn async_hooks_await_the_apps_channels_and_join_handles() {
    let outcome = terminate("awaits_the_app");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["channel: drained", "join: app task done"]
    );
}

fn tracing_events_tell_the_run() {
    let outcome = terminate("tracing");
    outcome.assert_code(143);
    let sites = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("sites: "))
        .unwrap();
    let (quick, stuck) = sites.split_once(' ').unwrap();
    let events: Vec<&str> = outcome.stderr.lines().collect();
    let has = |words: &[&str]| events.iter().any(|e| words.iter().all(|w| e.contains(w)));
    assert!(
        has(&["INFO", "run started", "SIGTERM (15), exit status 143"]),
        "{events:#?}"
    );
    assert!(has(&["DEBUG", "exit hook started", quick]), "{events:#?}");
    assert!(
        has(&["DEBUG", "exit hook finished", quick, "elapsed"]),
        "{events:#?}"
    );
    assert!(has(&["DEBUG", "exit hook started", stuck]), "{events:#?}");
    assert!(
        has(&[
            "ERROR",
            "deadline passed",
            &format!("still_running=[\"{stuck}\"]")
        ]),
        "{events:#?}"
    );
    assert!(
        outcome.crate_lines().is_empty(),
        "the subscriber shows it; no plain line: {events:#?}"
    );
}

fn no_threads_before_the_first_add_named_threads_and_no_leaked_fds() {
    let outcome = terminate("hygiene");
    outcome.assert_code(143);
    assert_eq!(
        outcome.stdout,
        [
            "threads at start: []",
            "threads after is_exiting and Builder::new: []",
            "threads after add: [\"exit-hook\"]",
            "fds inherited: same after install: true",
            "READY",
            "a: SIGTERM (15), exit status 143",
            "threads during the run: [\"exit-hook\", \"exit-hook-guard\"]",
            "fds inherited: same during the run: true",
        ]
    );
}
