//! What the command line and the config file can do to keepalive:
//! durations past what the clock holds, signals that are none, limits
//! that would stall or loop it, files that are not files, and the lines
//! its errors name.

use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::cluster::{Watchdog, next_number};
use crate::control::{RuntimeDir, text};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        values_past_their_bounds_are_usage_errors,
        the_longest_durations_accepted_run_without_a_panic,
        validate_reads_only_a_regular_file_and_names_each_line,
    ]
}

fn keepalive(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .args(args)
        .output()
        .unwrap()
}

fn values_past_their_bounds_are_usage_errors() {
    let huge = "300000000000y";
    for option in [
        "--listen-timeout",
        "--spin-sleep",
        "--min-uptime",
        "--watchdog",
        "--backoff",
        "--health-interval",
        "--watch-debounce",
        "--kill-timeout",
    ] {
        let output = keepalive(&["run", option, huge, "--", "true"]);
        assert_eq!(output.status.code(), Some(2), "{option}: {output:?}");
        assert!(
            text(&output.stderr).contains("longer than"),
            "{option}: {output:?}"
        );
    }
    for (option, value, says) in [
        ("--kill-signal", "0", "signals are 1 to 31"),
        ("--kill-signal", "99", "signals are 1 to 31"),
        ("--kill-signal", "STOP", "does not stop a program"),
        ("--log-keep", "4294967295", "1000"),
        ("--max-memory", "0", "less than 1MB"),
        ("--log-max-size", "10", "less than 4KiB"),
    ] {
        let output = keepalive(&["run", option, value, "--", "true"]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{option} {value}: {output:?}"
        );
        assert!(
            text(&output.stderr).contains(says),
            "{option} {value}: {output:?}"
        );
    }
    let output = keepalive(&["signal", "app", "0"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

/// A year, the longest a duration may be, as every duration option at
/// once: keepalive runs, restarts after its backoff, answers, and stops.
fn the_longest_durations_accepted_run_without_a_panic() {
    let dir = RuntimeDir::new("longest");
    let mut watchdog = Watchdog::default();
    let year = "365days";
    let mut keepalive = dir.keepalive(
        "slow",
        &[
            "--listen-timeout",
            year,
            "--min-uptime",
            year,
            "--spin-sleep",
            year,
            "--watchdog",
            year,
            "--backoff",
            year,
            "--watch-debounce",
            year,
            "--health-interval",
            year,
            "--health-url",
            "http://127.0.0.1:9/",
        ],
        "worker",
    );
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("slow");
    // SAFETY: kill(2) on a worker of ours: its restart waits a year.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGKILL) }, 0);
    keepalive.wait_line("the restart's delay", |l| {
        l.starts_with("keepalive: restarting in ")
    });
    dir.status("slow");
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(!outcome.stderr.contains("panicked"), "{outcome:#?}");
}

fn validate_reads_only_a_regular_file_and_names_each_line() {
    let dir = RuntimeDir::new("validate");
    let fifo = dir.path().join("fifo.toml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for file in ["/dev/zero", "/dev/urandom", fifo.to_str().unwrap(), "/"] {
        for command in ["validate", "up"] {
            let started = Instant::now();
            let output = keepalive(&[command, "-f", file]);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{command} {file}: {output:?}"
            );
            assert!(
                text(&output.stderr).contains("not a regular file"),
                "{command} {file}: {output:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{file}");
        }
    }
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
    let output = keepalive(&["validate", "-f", big.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        text(&output.stderr).contains("larger than 1024 KiB"),
        "{output:?}"
    );
    // Lines from the parser: an app whose name is a prefix of an earlier
    // one's, a key after the same text in a comment, names that are paths.
    let file = dir.path().join("keepalive.toml");
    std::fs::write(
        &file,
        r#"[apps.webapp]
command = "./a"
# workers = 0
workers = 2

[apps.web]
command = "./b"
workers = 0

[apps."../evil"]
command = "./c"
"#,
    )
    .unwrap();
    let output = keepalive(&["validate", "-f", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = text(&output.stderr);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(
        lines[0].contains(".toml:8: apps.web.workers: invalid value '0'"),
        "{said}"
    );
    assert!(lines[1].contains(".toml:10: apps.../evil: "), "{said}");
}
