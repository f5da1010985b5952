//! The keep-alive supervisor (feature `supervisor`): the `keepalive`
//! command supervising this binary's own roles, with real signals.

use std::process::Command;
use std::time::Duration;

use libtest_mimic::Trial;

use crate::harness::{Child, Outcome};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        supervisor_restarts_a_crashing_child_exactly_twice,
        supervisor_gives_up_on_a_spinning_child,
        supervisor_restarts_a_spinning_child_after_spin_sleep,
        supervisor_backoff_delays_grow,
        supervisor_forwards_sigterm_and_leaves_no_orphan,
        supervisor_kills_a_child_that_ignores_sigterm,
        supervisor_gives_a_stopping_worker_the_time_it_asks_for,
        supervisor_stops_on_a_do_not_restart_exit_code,
        keepalive_prints_help_and_rejects_bad_arguments,
    ]
}

/// The `keepalive` command, built.
pub(crate) fn keepalive_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keepalive"))
}

/// Spawns `keepalive` with `options`, supervising this binary in `role`.
fn keepalive(role: &str, options: &[&str]) -> Child {
    let mut command = keepalive_command();
    command
        .args(options)
        .arg("--")
        .arg(std::env::current_exe().unwrap());
    Child::spawn_with(command, role)
}

/// The supervisor's event lines (`keepalive: …`), without the prefix.
pub(crate) fn events(outcome: &Outcome) -> Vec<&str> {
    outcome
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("keepalive: "))
        .collect()
}

/// The supervisor's "restarting in …" events.
fn restarts(outcome: &Outcome) -> Vec<&str> {
    events(outcome)
        .into_iter()
        .filter(|e| e.starts_with("restarting"))
        .collect()
}

fn started_pids(outcome: &Outcome) -> Vec<i32> {
    events(outcome)
        .iter()
        .filter_map(|e| e.strip_prefix("started pid ")?.parse().ok())
        .collect()
}

/// The CLOCK_MONOTONIC milliseconds each run of the child printed at its start.
fn starts(outcome: &Outcome) -> Vec<u64> {
    outcome
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("start ")?.parse().ok())
        .collect()
}

fn assert_gone(pid: i32) {
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} is still there"
    );
}

fn supervisor_restarts_a_crashing_child_exactly_twice() {
    let state = std::env::temp_dir().join(format!("exit_hook_crash_twice_{}", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let mut command = keepalive_command();
    command
        .args(["--min-uptime", "50ms", "--"])
        .arg(std::env::current_exe().unwrap())
        .env("EXIT_HOOK_STATE", &state);
    let outcome = Child::spawn_with(command, "crash_twice")
        .ready()
        .signal(libc::SIGTERM)
        .finish();
    let _ = std::fs::remove_file(&state);
    outcome.assert_code(143);
    assert_eq!(started_pids(&outcome).len(), 3, "{outcome:#?}");
    assert_eq!(
        restarts(&outcome),
        [
            "restarting in 0 ms (restart 1)",
            "restarting in 0 ms (restart 2)"
        ]
    );
    assert_eq!(
        outcome.lines_starting("child: "),
        ["child: SIGTERM (15), exit status 143"]
    );
}

fn supervisor_gives_up_on_a_spinning_child() {
    let outcome = keepalive("spin", &["--min-uptime", "1s"]).finish();
    outcome.assert_code(1);
    assert_eq!(starts(&outcome).len(), 1);
    assert!(
        events(&outcome)
            .last()
            .unwrap()
            .starts_with("gave up: the child is spinning"),
        "{outcome:#?}"
    );
}

fn supervisor_restarts_a_spinning_child_after_spin_sleep() {
    let outcome = keepalive(
        "spin",
        &[
            "--min-uptime",
            "1s",
            "--spin-sleep",
            "300ms",
            "--max-restarts",
            "2",
        ],
    )
    .finish();
    outcome.assert_code(1);
    let starts = starts(&outcome);
    assert_eq!(starts.len(), 3, "{outcome:#?}");
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (300..2000).contains(&gap),
            "{gap} ms between starts, spin sleep 300 ms: {outcome:#?}"
        );
    }
    assert_eq!(events(&outcome).last(), Some(&"gave up: 2 restarts"));
}

fn supervisor_backoff_delays_grow() {
    // A run of 60 ms, after min-uptime (a crash) or within it (an unstable
    // restart: a database down at boot; pm2's min_uptime with max_restarts
    // and a backoff). Within it, the slot was given up at the first exit.
    for min_uptime in ["10ms", "5s"] {
        backoff_delays_grow(min_uptime);
    }
}

fn backoff_delays_grow(min_uptime: &str) {
    let options = [
        "--min-uptime",
        min_uptime,
        "--backoff",
        "100ms",
        "--max-restarts",
        "3",
    ];
    let outcome = keepalive("crash_after_60ms", &options).finish();
    outcome.assert_code(1);
    assert_eq!(
        restarts(&outcome),
        [
            "restarting in 100 ms (restart 1)",
            "restarting in 150 ms (restart 2)",
            "restarting in 225 ms (restart 3)"
        ],
        "--min-uptime {min_uptime}"
    );
    assert_eq!(events(&outcome).last(), Some(&"gave up: 3 restarts"));
    let starts = starts(&outcome);
    assert_eq!(starts.len(), 4, "{outcome:#?}");
    // Each gap is the child's 60 ms plus the delay, so they grow: measured, not assumed.
    let gaps: Vec<u64> = starts.windows(2).map(|p| p[1] - p[0]).collect();
    for (gap, delay) in gaps.iter().zip([100, 150, 225]) {
        assert!(
            *gap >= 60 + delay && *gap < 60 + delay + 1000,
            "gaps {gaps:?}"
        );
    }
    assert!(gaps[0] < gaps[1] && gaps[1] < gaps[2], "gaps {gaps:?}");
}

fn supervisor_forwards_sigterm_and_leaves_no_orphan() {
    let outcome = keepalive("hooks", &["--kill-timeout", "5s"])
        .ready()
        .signal(libc::SIGTERM)
        .finish();
    outcome.assert_code(143);
    // The child's own hooks ran, once: it got the SIGTERM.
    assert_eq!(
        outcome.after_ready(),
        [
            "a: SIGTERM (15), exit status 143",
            "b: SIGTERM (15), exit status 143 signal=Some(15) code=Some(143)"
        ]
    );
    let pids = started_pids(&outcome);
    assert_eq!(
        pids.len(),
        1,
        "never restarted while stopping: {outcome:#?}"
    );
    assert!(
        events(&outcome)
            .contains(&format!("stopping: sent SIGTERM (15) to pid {}", pids[0]).as_str())
    );
    assert_gone(pids[0]);
}

/// A worker whose exit_hook deadline (4 s) is longer than the kill
/// timeout (500 ms) says EXTEND_TIMEOUT_USEC= with STOPPING=1: keepalive
/// waits for it, as systemd does, within its own deadline (twice the kill
/// timeout and 2 s: 3 s), and its 1.5 s hook runs to the end.
fn supervisor_gives_a_stopping_worker_the_time_it_asks_for() {
    let outcome = keepalive("slow_hook", &["--kill-timeout", "500ms"])
        .ready()
        .signal(libc::SIGTERM)
        .finish();
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["slow hook done: SIGTERM (15), exit status 143"],
        "{outcome:#?}"
    );
    let pid = started_pids(&outcome)[0];
    let events = events(&outcome);
    assert!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("pid {pid} asks ")) && e.ends_with(" ms more to stop")),
        "{outcome:#?}"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("killed")),
        "{outcome:#?}"
    );
    outcome.assert_elapsed(Duration::from_millis(1400)..Duration::from_secs(3));
    assert_gone(pid);
}

fn supervisor_kills_a_child_that_ignores_sigterm() {
    let outcome = keepalive("ignore_term", &["--kill-timeout", "500ms"])
        .ready()
        .signal(libc::SIGTERM)
        .finish();
    outcome.assert_code(143);
    let pid = started_pids(&outcome)[0];
    assert!(
        events(&outcome).contains(&format!("killed pid {pid} after the kill timeout").as_str()),
        "{outcome:#?}"
    );
    outcome.assert_elapsed(Duration::from_millis(500)..Duration::from_secs(5));
    assert_gone(pid);
}

fn supervisor_stops_on_a_do_not_restart_exit_code() {
    let outcome = keepalive("exit_3", &["--min-uptime", "0ms", "--stop-exit-code", "3"]).finish();
    outcome.assert_code(3);
    assert_eq!(started_pids(&outcome).len(), 1);
    assert_eq!(
        events(&outcome).last(),
        Some(&"done: exit code 3 means do not restart")
    );
}

fn keepalive_prints_help_and_rejects_bad_arguments() {
    let run = |args: &[&str]| {
        let output = keepalive_command().args(args).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr),
        )
    };
    for help in [&["--help"][..], &["run", "--help"]] {
        let (code, stdout, _) = run(help);
        assert_eq!(code, Some(0));
        assert!(stdout.contains("Usage: keepalive"), "{stdout}");
        assert!(stdout.contains("--kill-timeout <D>"), "{stdout}");
        // clap wraps the help to the terminal (100 columns without one).
        let words = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("at most 3598s"),
            "the limit is in --help: {stdout}"
        );
    }
    for (args, says) in [
        (
            &[][..],
            "error: the following required arguments were not provided",
        ),
        (
            &["--bogus", "1", "--", "true"][..],
            "error: unexpected argument '--bogus' found",
        ),
        (
            &["--min-uptime"][..],
            "error: a value is required for '--min-uptime <D>'",
        ),
        (
            &["--min-uptime", "soon", "--", "true"][..],
            "error: invalid value 'soon' for '--min-uptime <D>'",
        ),
        (
            &["--max-restarts", "-1", "--", "true"][..],
            "error: unexpected argument '-1' found",
        ),
        (
            &["--"][..],
            "error: the following required arguments were not provided",
        ),
        (
            &["--kill-timeout", "3599s", "--", "true"][..],
            "error: invalid value '3599s' for '--kill-timeout <D>': longer than 3598s",
        ),
        (
            &["--listen", "not-an-address", "--", "true"][..],
            "error: invalid value 'not-an-address' for '--listen <[NAME=]ADDR>': not an address to listen on",
        ),
        (
            &["run", "--workers", "0", "--", "true"][..],
            "error: invalid value '0' for '--workers <N>'",
        ),
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(says), "{args:?}: {stderr}");
        assert!(stderr.contains("try '--help'"), "{args:?}: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
    }
    // A program that is not there: keepalive says so and gives up (1).
    let (code, _, stderr) = run(&["--", "no-such-program-here"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "keepalive: worker 0 could not start: no-such-program-here not found on PATH"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("keepalive: gave up: the program could not be started"),
        "{stderr}"
    );
}
