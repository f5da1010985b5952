//! When keepalive's own processes die or are told twice: a killed `up`, a
//! repeated stop signal, SIGQUIT, a killed instance's leftovers, and
//! `--daemon` beside a stopped instance.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use super::alive;
use crate::child::wait_forever;
use crate::cluster::{Watchdog, assert_gone_soon, next_number};
use crate::control::{RuntimeDir, status_until, text};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        what_a_killed_up_left_is_stopped_at_its_next_start,
        a_repeated_stop_signal_never_cuts_a_worker_and_sigquit_forces,
        what_a_killed_instance_left_is_stopped_at_the_next_start_of_its_name,
        daemon_waits_for_the_instance_it_started_not_a_stopped_one,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "term_ignorer" => {
            // SAFETY: SIGTERM ignored, before any thread exists.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            println!("worker {}", std::process::id());
            wait_forever()
        }
        "leaves_two" => leaves_two(),
        _ => false,
    }
}

/// Starts `sleep 300` in its process group and another after `setsid`,
/// prints `left PID` for each, then `worker PID`, and waits.
fn leaves_two() -> ! {
    let sleep = || {
        let mut command = Command::new("sleep");
        command
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let mut own_session = sleep();
    // SAFETY: setsid(2) in the forked child, async-signal-safe.
    unsafe {
        own_session.pre_exec(|| {
            (libc::setsid() >= 0)
                .then_some(())
                .ok_or_else(std::io::Error::last_os_error)
        })
    };
    #[allow(clippy::zombie_processes, reason = "what the test looks for")]
    for mut command in [sleep(), own_session] {
        println!("left {}", command.spawn().unwrap().id());
    }
    println!("worker {}", std::process::id());
    wait_forever()
}

/// `keepalive up` killed by SIGKILL: its workers go with it (their
/// parent-death signal, as under `run`: one process runs every app), and
/// what they started is left, each app's found and stopped by the next
/// `up` of the file as that app starts. (An `up` was a process per app,
/// whose parent-death SIGTERM let each worker stop gracefully; one
/// process's threads end one by one when it is killed, and a worker would
/// get SIGTERM once per thread, which an exit_hook program takes as
/// "force the exit": SIGKILL is the same every time.)
fn what_a_killed_up_left_is_stopped_at_its_next_start() {
    let dir = RuntimeDir::new("upkilled");
    let exe = std::env::current_exe().unwrap();
    let file = dir.path().join("keepalive.toml");
    let apps: String = ["a", "b"]
        .iter()
        .map(|app| format!("[apps.{app}]\ncommand = [{exe:?}]\nkill-timeout = \"2s\"\n\n"))
        .collect();
    std::fs::write(&file, format!("name = \"pair\"\n\n{apps}")).unwrap();
    let up = |role: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
        command
            .args(["up", "-f"])
            .arg(&file)
            .env("XDG_RUNTIME_DIR", dir.path());
        crate::operations::merge_stderr(&mut command);
        Child::spawn_with(command, role)
    };
    let mut watchdog = Watchdog::default();
    let mut first = up("leaves_two");
    let (mut left, mut workers) = (Vec::new(), Vec::new());
    while workers.len() < 2 {
        let line = first.wait_line("the workers and what they left", |line| {
            line.starts_with("left ") || line.starts_with("worker ")
        });
        let (kind, pid) = line.split_once(' ').unwrap();
        let pid = watchdog.watch(pid.parse().unwrap());
        match kind {
            "left" => left.push(pid),
            _ => workers.push(pid),
        }
    }
    for app in ["a", "b"] {
        status_until(&dir, app, |s| {
            s["workers"].as_array().is_some_and(|w| !w.is_empty())
        });
    }
    let first = first.signal(libc::SIGKILL);
    for pid in &workers {
        assert_gone_soon(*pid);
    }
    first.finish().assert_signal(libc::SIGKILL);
    assert_eq!(left.len(), 4, "two left by each app's worker");
    std::thread::sleep(Duration::from_millis(300));
    for &pid in &left {
        assert!(alive(pid), "{pid} is left until the next start");
    }
    let mut again = up("worker");
    for _ in 0..2 {
        watchdog.watch(next_number(&mut again, "worker "));
    }
    for &pid in &left {
        assert_gone_soon(pid);
    }
    let outcome = again.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for pid in left {
        let stopped = format!("stopping pid {pid}, left behind by an ended worker");
        assert!(
            outcome
                .stdout
                .iter()
                .any(|line| line.starts_with("keepalive[") && line.ends_with(&stopped)),
            "{outcome:#?}"
        );
    }
}

fn a_repeated_stop_signal_never_cuts_a_worker_and_sigquit_forces() {
    let dir = RuntimeDir::new("twice");
    let mut watchdog = Watchdog::default();
    // SIGTERM, SIGTERM again 100 ms later, then SIGINT (systemd's stop
    // while someone presses Ctrl+C): one SIGTERM reaches the worker, and
    // its 1.5 s hook runs to the end.
    let mut keepalive = dir.keepalive("twice", &["--min-uptime", "100ms"], "slow_stop");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    status_until(&dir, "twice", |s| s["workers"][0]["state"] == "ready");
    keepalive.send(libc::SIGTERM);
    keepalive.wait_line("the hook", |l| l == format!("stopping {worker}"));
    std::thread::sleep(Duration::from_millis(100));
    keepalive.send(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    keepalive.send(libc::SIGINT);
    let outcome = keepalive.finish();
    outcome.assert_code(143);
    crate::cluster::assert_stopped_once(&outcome, worker);
    // SIGQUIT forces: a worker that ignores SIGTERM is killed at once, not
    // at its 30 s kill timeout; the stop's status stands.
    let mut keepalive = dir.keepalive("forced", &["--kill-timeout", "30s"], "term_ignorer");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("forced");
    keepalive.send(libc::SIGTERM);
    keepalive.wait_line("the stop", |l| l.starts_with("keepalive: stopping: sent"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(worker), "SIGTERM is ignored");
    let forced = Instant::now();
    let outcome = keepalive.signal(libc::SIGQUIT).finish();
    outcome.assert_code(143);
    assert!(
        forced.elapsed() < Duration::from_secs(10),
        "{:?}",
        forced.elapsed()
    );
    assert_gone_soon(worker);
    assert!(
        outcome
            .stdout
            .iter()
            .any(|l| l == "keepalive: forced: killing every worker now"),
        "{outcome:#?}"
    );
    // SIGQUIT without a stop: everything killed, exit 128 + 3.
    let mut keepalive = dir.keepalive("quit", &[], "worker");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("quit");
    let outcome = keepalive.signal(libc::SIGQUIT).finish();
    outcome.assert_code(131);
    assert_gone_soon(worker);
    assert!(
        outcome.lines_starting(&format!("hook {worker}")).is_empty(),
        "{outcome:#?}"
    );
}

fn what_a_killed_instance_left_is_stopped_at_the_next_start_of_its_name() {
    let dir = RuntimeDir::new("leftovers");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("left", &["--kill-timeout", "2s"], "leaves_two");
    let left = [(); 2].map(|()| watchdog.watch(next_number(&mut keepalive, "left ")));
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    keepalive
        .signal(libc::SIGKILL)
        .finish()
        .assert_signal(libc::SIGKILL);
    // The worker went with it (its parent-death signal); what it started
    // did not: that is what a SIGKILL leaves, until the name starts again.
    assert_gone_soon(worker);
    std::thread::sleep(Duration::from_millis(300));
    for pid in left {
        assert!(alive(pid), "{pid} is left until the next start");
    }
    let mut again = dir.keepalive("left", &["--kill-timeout", "2s"], "worker");
    watchdog.watch(next_number(&mut again, "worker "));
    for pid in left {
        assert_gone_soon(pid);
        crate::operations::seen_or_wait(
            &mut again,
            &format!("keepalive: stopping pid {pid}, left behind by an ended worker"),
        );
    }
    // The dead instance's notification directory is gone; ours is the one.
    let dirs: Vec<String> = std::fs::read_dir(dir.path().join("keepalive"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("left.workers."))
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    again.signal(libc::SIGTERM).finish().assert_code(143);
}

/// `--daemon` asks only the instance it started: another one, stopped
/// (SIGSTOP) and first by name, does not hold it up.
fn daemon_waits_for_the_instance_it_started_not_a_stopped_one() {
    let dir = RuntimeDir::new("daemonmatch");
    let mut watchdog = Watchdog::default();
    let mut stopped = dir.keepalive("aaa-stopped", &[], "worker");
    watchdog.watch(next_number(&mut stopped, "worker "));
    dir.status("aaa-stopped");
    stopped.send(libc::SIGSTOP);
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .args(["run", "--daemon", "--name", "zzz-fresh", "--"])
        .arg(std::env::current_exe().unwrap())
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("XDG_STATE_HOME", dir.path())
        .env(crate::harness::SCENARIO, "worker")
        .output()
        .unwrap();
    let took = started.elapsed();
    let said = text(&output.stderr);
    let daemon = said
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse::<u32>().ok());
    if let Some(pid) = daemon {
        watchdog.watch(pid);
    }
    assert!(output.status.success(), "{output:?}");
    assert!(said.contains("zzz-fresh runs in the background"), "{said}");
    assert!(
        took < Duration::from_secs(8),
        "{took:?}: it waited on the stopped one"
    );
    let output = dir.client(&["stop", "zzz-fresh"]);
    assert!(output.status.success(), "{output:?}");
    assert_gone_soon(daemon.unwrap());
    stopped.send(libc::SIGCONT);
    stopped.signal(libc::SIGTERM).finish().assert_code(143);
}
