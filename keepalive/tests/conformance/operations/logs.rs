//! The workers' log files: size-based rotation under a worker flooding
//! lines loses or splits none; SIGUSR1 reopens the file after logrotate
//! moved it, with no line lost between the two; `--log-dir` and
//! timestamps.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use super::{TempDir, keepalive_role, say_err};
use crate::child::wait_forever;
use crate::cluster::{Watchdog, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_rotates_a_flooded_log_without_losing_or_splitting_a_line,
        keepalive_reopens_its_log_files_on_sigusr1,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "flood" => flood(),
        "ticker" => ticker(),
        _ => false,
    }
}

/// How many lines `flood` writes.
const FLOOD: u32 = 100_000;

/// Writes FLOOD numbered lines to stdout as fast as it can, then says
/// `flooded` on stderr and waits.
fn flood() -> ! {
    let pid = std::process::id();
    exit_hook::add(move |exit| say_err(&format!("hook {pid}: {exit}")));
    let mut out = std::io::stdout().lock();
    for n in 1..=FLOOD {
        writeln!(out, "line {n:06} of the flood, padded to about fifty bytes").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    say_err(&format!("flooded {pid}"));
    wait_forever()
}

/// `tick N` on stdout every 10 ms, and `worker PID` on stderr first.
fn ticker() -> ! {
    say_err(&format!("worker {}", std::process::id()));
    for n in 1.. {
        println!("tick {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
    unreachable!()
}

/// `base`, `base.1`, `base.2`, … that exist, oldest first.
fn rotated(base: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..1000)
        .map(|n| PathBuf::from(format!("{}.{n}", base.display())))
        .take_while(|path| path.exists())
        .collect();
    files.reverse();
    files.push(base.to_owned());
    files
}

fn keepalive_rotates_a_flooded_log_without_losing_or_splitting_a_line() {
    let dir = TempDir::new("log_rotation");
    let mut watchdog = Watchdog::default();
    let keepalive = keepalive_role(
        &[
            "--name",
            "flood",
            "--log-dir",
            dir.0.to_str().unwrap(),
            "--log-max-size",
            "200KB",
            "--log-keep",
            "100",
        ],
        &[],
        "flood",
    );
    // stderr has a file of its own too (--log-dir): read the flood's end there.
    let err_log = dir.join("flood-err.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker = loop {
        let text = std::fs::read_to_string(&err_log).unwrap_or_default();
        if let Some(pid) = text.lines().find_map(|l| l.strip_prefix("flooded ")) {
            break watchdog.watch(pid.parse().unwrap());
        }
        assert!(Instant::now() < deadline, "the flood did not end: {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // keepalive copies out what its workers wrote before it exits.
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let files = rotated(&dir.join("flood-out.log"));
    assert!(files.len() > 10, "rotated: {files:?}");
    let mut expected = 1;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() as u64 <= 200_000,
            "{} has {} bytes",
            file.display(),
            text.len()
        );
        for line in text.lines() {
            assert_eq!(
                line,
                format!("line {expected:06} of the flood, padded to about fifty bytes"),
                "in {}",
                file.display()
            );
            expected += 1;
        }
    }
    assert_eq!(expected, FLOOD + 1, "every line, once, in order");
    let err = std::fs::read_to_string(&err_log).unwrap();
    assert!(
        err.contains(&format!("hook {worker}: SIGTERM (15), exit status 143")),
        "the worker's last line, written before keepalive exited: {err}"
    );
}

fn keepalive_reopens_its_log_files_on_sigusr1() {
    let dir = TempDir::new("log_reopen");
    let log = dir.join("app.log");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--stdout", log.to_str().unwrap(), "--log-timestamps"],
        &[],
        "ticker",
    );
    watchdog.watch(next_number(&mut keepalive, "worker "));
    let lines = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let wait_for = |path: &Path, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while lines(path).len() < count {
            assert!(
                Instant::now() < deadline,
                "{} has {:?}",
                path.display(),
                lines(path)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(&log, 5);
    // logrotate: move the file, then `postrotate kill -USR1`.
    let moved = dir.join("app.log.1");
    std::fs::rename(&log, &moved).unwrap();
    keepalive.send(libc::SIGUSR1);
    wait_for(&log, 5);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let ticks: Vec<u32> = lines(&moved)
        .iter()
        .chain(&lines(&log))
        .map(|line| {
            let (stamp, tick) = line.split_once(' ').unwrap();
            assert!(stamp.starts_with("20") && stamp.ends_with('Z'), "{line}");
            tick.strip_prefix("tick ").unwrap().parse().unwrap()
        })
        .collect();
    let first = ticks[0];
    let expected: Vec<u32> = (first..first + ticks.len() as u32).collect();
    assert_eq!(
        ticks, expected,
        "no tick lost or repeated across the reopen"
    );
    assert!(!lines(&moved).is_empty() && !lines(&log).is_empty());
}
