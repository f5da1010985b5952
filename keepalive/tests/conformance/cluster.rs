//! keepalive's cluster mode (feature `supervisor`): workers sharing the
//! listeners it holds, systemd's protocols, the rolling reload on SIGHUP,
//! and stopping a whole process tree. Real processes and signals; the
//! workers are this binary's roles in `child/cluster.rs`.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::harness::Child;
use crate::supervisor::{events, keepalive_command};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_workers_start_and_each_restarts_alone,
        keepalive_passes_its_listeners_as_systemd_does,
        keepalive_reload_replaces_every_worker_without_a_refused_connection,
        keepalive_kills_a_new_worker_that_is_never_ready_and_keeps_the_old_one,
        keepalive_queues_a_sighup_that_comes_during_a_reload,
        keepalive_reload_starts_the_program_found_on_path_again,
        keepalive_kills_the_process_group_at_the_kill_timeout,
        keepalive_killed_by_sigkill_leaves_no_worker_behind,
    ]
}

/// `keepalive` with `options`, supervising this binary in `role`.
pub(crate) fn keepalive(role: &str, options: &[&str], envs: &[(&str, &str)]) -> Child {
    let mut command = keepalive_command();
    command
        .args(options)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .envs(envs.iter().copied());
    Child::spawn_with(command, role)
}

/// The number after `prefix` in a line of the child's stdout.
pub(crate) fn number_after(line: &str, prefix: &str) -> u32 {
    line.strip_prefix(prefix)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line:?} is not {prefix:?} and a number"))
}

/// Waits for the next line starting with `prefix` and returns its number.
pub(crate) fn next_number(child: &mut Child, prefix: &str) -> u32 {
    let line = child.wait_line(prefix, |line| line.starts_with(prefix));
    number_after(&line, prefix)
}

pub(crate) fn is_gone(pid: u32) -> bool {
    // A zombie is gone too: it runs nothing, and its parent reaps it.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

/// Whether `pid` is gone within 5 s.
pub(crate) fn is_gone_soon(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_gone(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Waits (up to 5 s) for `pid` to be gone.
pub(crate) fn assert_gone_soon(pid: u32) {
    assert!(is_gone_soon(pid), "pid {pid} is still running");
}

/// The worker `pid` (a `worker` or `ready_server`) was stopped by SIGTERM,
/// and its hook ran once.
#[track_caller]
pub(crate) fn assert_stopped_once(outcome: &crate::harness::Outcome, pid: u32) {
    assert_eq!(
        outcome.lines_starting(&format!("hook {pid}: ")),
        [format!("hook {pid}: SIGTERM (15), exit status 143")],
        "{outcome:#?}"
    );
}

/// The workers (and their children) a test learned of: killed when the
/// test ends, passed or failed, if still running. keepalive's workers also
/// get SIGTERM when keepalive dies (`PR_SET_PDEATHSIG`), but a test of that,
/// or a worker that ignores SIGTERM, must not leave one behind.
#[derive(Default)]
pub(crate) struct Watchdog(Vec<u32>);

impl Watchdog {
    pub(crate) fn watch(&mut self, pid: u32) -> u32 {
        self.0.push(pid);
        pid
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if !is_gone(pid) {
                // SAFETY: kill(2); the pid was a worker of this test's keepalive.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// A client asking the workers' port over and over on a thread of its own,
/// until stopped: what a user's traffic is through a replacement.
pub(crate) struct Asking {
    done: Arc<AtomicBool>,
    client: thread::JoinHandle<(Vec<u32>, Vec<String>)>,
}

impl Asking {
    pub(crate) fn start(port: u32) -> Asking {
        let done = Arc::new(AtomicBool::new(false));
        let client = thread::spawn({
            let done = done.clone();
            move || {
                let (mut answers, mut failures) = (Vec::new(), Vec::new());
                while !done.load(Ordering::Relaxed) {
                    match ask(port) {
                        Ok(pid) => answers.push(pid),
                        Err(err) => failures.push(err),
                    }
                }
                (answers, failures)
            }
        });
        Asking { done, client }
    }

    /// Stops asking: the pids that answered, and every failure.
    pub(crate) fn stop(self) -> (Vec<u32>, Vec<String>) {
        self.done.store(true, Ordering::Relaxed);
        self.client.join().unwrap()
    }

    /// Stops asking, with every connection answered and more than 20 of
    /// them: the pids that answered.
    pub(crate) fn stop_all_answered(self) -> Vec<u32> {
        let (answers, failures) = self.stop();
        assert_eq!(
            failures,
            Vec::<String>::new(),
            "refused or unanswered connections"
        );
        assert!(
            answers.len() > 20,
            "the client got through: {}",
            answers.len()
        );
        answers
    }
}

/// Connects to the workers' port and reads the pid the worker answers with.
pub(crate) fn ask(port: u32) -> Result<u32, String> {
    let stream = TcpStream::connect(("127.0.0.1", port as u16)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    line.trim()
        .parse()
        .map_err(|_| format!("answered {line:?}"))
}

fn keepalive_workers_start_and_each_restarts_alone() {
    let mut watchdog = Watchdog::default();
    let mut child = keepalive("worker", &["--workers", "3", "--min-uptime", "0ms"], &[]);
    let first: Vec<u32> = (0..3)
        .map(|_| watchdog.watch(next_number(&mut child, "worker ")))
        .collect();
    // SAFETY: kill(2) on a worker of ours, alive.
    assert_eq!(unsafe { libc::kill(first[1] as i32, libc::SIGKILL) }, 0);
    let restarted = watchdog.watch(next_number(&mut child, "worker "));
    let outcome = child.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let events = events(&outcome);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("started pid "))
            .count(),
        4,
        "three workers, one restart: {outcome:#?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("restarting"))
            .count(),
        1,
        "{outcome:#?}"
    );
    // Every worker alive at the stop ran its hooks once; the killed one none.
    for pid in [first[0], first[2], restarted] {
        let hooks = outcome.lines_starting(&format!("hook {pid}: "));
        assert_eq!(
            hooks,
            [format!("hook {pid}: SIGTERM (15), exit status 143")],
            "{outcome:#?}"
        );
    }
    assert!(
        outcome
            .lines_starting(&format!("hook {}: ", first[1]))
            .is_empty()
    );
    for pid in [first[0], first[1], first[2], restarted] {
        assert_gone_soon(pid);
    }
}

fn keepalive_passes_its_listeners_as_systemd_does() {
    let socket =
        std::env::temp_dir().join(format!("exit_hook_keepalive_{}.sock", std::process::id()));
    let unix = format!("admin={}", socket.display());
    let mut command = keepalive_command();
    command
        .args(["--listen", "web=127.0.0.1:0", "--listen", &unix, "--"])
        .arg(std::env::current_exe().unwrap());
    // keepalive inherits a descriptor without close-on-exec, as from a
    // shell's `exec 9>file`: its workers must not.
    // SAFETY: dup2(2) in the forked child, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::dup2(2, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = Child::spawn_with(command, "report_listeners");
    let child_ready = {
        child.wait_line("READY", |l| l == "READY");
        child
    };
    let outcome = child_ready.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let lines = &outcome.stdout;
    assert_eq!(
        lines[0],
        "LISTEN_FDS=2 LISTEN_FDNAMES=web:admin LISTEN_PID is mine: true NOTIFY_SOCKET set: true",
        "{outcome:#?}"
    );
    assert_eq!(
        lines[1], "open fds: [0, 1, 2, 3, 4]",
        "nothing else leaks in: {outcome:#?}"
    );
    let port = lines[2]
        .strip_prefix("tcp 127.0.0.1:")
        .expect("fd 3 is the TCP listener");
    assert_ne!(port, "0");
    assert_eq!(lines[3], format!("unix {}", socket.display()));
    let events = events(&outcome);
    assert!(
        events.contains(&format!("listening on 127.0.0.1:{port}").as_str()),
        "{outcome:#?}"
    );
    assert!(events.contains(&format!("listening on unix:{}", socket.display()).as_str()));
    let _ = std::fs::remove_file(socket);
}

fn keepalive_reload_replaces_every_worker_without_a_refused_connection() {
    let mut child = keepalive(
        "ready_server",
        &[
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--wait-ready",
            "--kill-timeout",
            "2s",
        ],
        &[],
    );
    let mut watchdog = Watchdog::default();
    let port = next_number(&mut child, "port ");
    let old: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut child, "ready ")))
        .collect();
    // A client connects all through the reload; every connection must be answered.
    let client = Asking::start(port);
    thread::sleep(Duration::from_millis(200));
    child.send(libc::SIGHUP);
    let new: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut child, "ready ")))
        .collect();
    thread::sleep(Duration::from_millis(300));
    let (answers, failures) = client.stop();
    for pid in &old {
        assert_gone_soon(*pid);
    }
    let outcome = child.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "refused or unanswered connections"
    );
    assert!(
        answers.len() > 20,
        "the client got through: {}",
        answers.len()
    );
    assert!(
        answers.iter().any(|pid| old.contains(pid)),
        "the old workers answered first"
    );
    assert!(
        answers.iter().any(|pid| new.contains(pid)),
        "then the new ones"
    );
    let events = events(&outcome);
    assert!(
        events.contains(&"reloading: replacing 2 worker(s) one at a time"),
        "{outcome:#?}"
    );
    assert!(
        events.contains(&"reload done: every worker replaced"),
        "{outcome:#?}"
    );
    // Each worker, old and new, ran its hooks once: the old ones when
    // replaced, the new ones at the stop.
    for pid in old.iter().chain(&new) {
        assert_stopped_once(&outcome, *pid);
    }
}

fn keepalive_kills_a_new_worker_that_is_never_ready_and_keeps_the_old_one() {
    let state = std::env::temp_dir().join(format!("exit_hook_ready_once_{}", std::process::id()));
    let _ = std::fs::remove_file(&state);
    let mut child = keepalive(
        "ready_then_never",
        &[
            "--listen",
            "127.0.0.1:0",
            "--wait-ready",
            "--listen-timeout",
            "500ms",
        ],
        &[
            ("EXIT_HOOK_STATE", state.to_str().unwrap()),
            ("EXIT_HOOK_READY_STARTS", "1"),
        ],
    );
    let mut watchdog = Watchdog::default();
    let port = next_number(&mut child, "port ");
    let old = watchdog.watch(next_number(&mut child, "ready "));
    assert_eq!(ask(port), Ok(old));
    child.send(libc::SIGHUP);
    let never = watchdog.watch(next_number(&mut child, "never_ready "));
    // Past the listen timeout, the new worker is killed; the old one answered throughout.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(ask(port), Ok(old), "the old worker answers");
        thread::sleep(Duration::from_millis(20));
    }
    assert_gone_soon(never);
    assert!(!is_gone(old), "the old worker still runs");
    let outcome = child.signal(libc::SIGTERM).finish();
    let _ = std::fs::remove_file(&state);
    outcome.assert_code(143);
    let failed = format!(
        "reload failed: the new worker (pid {never}) was not ready within 500 ms; the old workers keep serving"
    );
    assert!(events(&outcome).contains(&failed.as_str()), "{outcome:#?}");
    assert_stopped_once(&outcome, old);
    assert_gone_soon(old);
}

fn keepalive_kills_the_process_group_at_the_kill_timeout() {
    let mut child = keepalive("term_ignoring_parent", &["--kill-timeout", "300ms"], &[]);
    let mut watchdog = Watchdog::default();
    let grandchild = watchdog.watch(next_number(&mut child, "grandchild "));
    let worker = watchdog.watch(next_number(&mut child, "worker "));
    let outcome = child.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(
        events(&outcome).contains(&format!("killed pid {worker} after the kill timeout").as_str()),
        "{outcome:#?}"
    );
    assert_gone_soon(worker);
    assert_gone_soon(grandchild);
}

fn keepalive_killed_by_sigkill_leaves_no_worker_behind() {
    let mut watchdog = Watchdog::default();
    let mut child = keepalive("worker", &[], &[]);
    let worker = watchdog.watch(next_number(&mut child, "worker "));
    child.send(libc::SIGKILL);
    // PR_SET_PDEATHSIG: the worker dies with keepalive, as a SIGKILL means.
    assert_gone_soon(worker);
    let outcome = child.finish();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&outcome.status),
        Some(libc::SIGKILL)
    );
    assert!(
        outcome
            .lines_starting(&format!("hook {worker}: "))
            .is_empty(),
        "killed, not stopped: {outcome:#?}"
    );
}

fn keepalive_queues_a_sighup_that_comes_during_a_reload() {
    let mut watchdog = Watchdog::default();
    // Each worker takes 300 ms to say READY=1: the reload is still going
    // when the second SIGHUP comes.
    let mut child = keepalive(
        "ready_server",
        &["--listen", "127.0.0.1:0", "--wait-ready"],
        &[("EXIT_HOOK_READY_DELAY_MS", "300")],
    );
    let first = watchdog.watch(next_number(&mut child, "ready "));
    child.send(libc::SIGHUP);
    next_number(&mut child, "port "); // the replacement has started
    child.send(libc::SIGHUP);
    let second = watchdog.watch(next_number(&mut child, "ready "));
    let third = watchdog.watch(next_number(&mut child, "ready "));
    assert_gone_soon(first);
    assert_gone_soon(second);
    let outcome = child.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let events = events(&outcome);
    let count = |what: &str| events.iter().filter(|e| e.starts_with(what)).count();
    assert_eq!(
        count("reloading: "),
        2,
        "two reloads, one after the other: {outcome:#?}"
    );
    assert_eq!(count("reload done"), 2, "{outcome:#?}");
    assert_stopped_once(&outcome, third);
}

fn keepalive_reload_starts_the_program_found_on_path_again() {
    use std::os::unix::fs::PermissionsExt;
    // A program on PATH, replaced between two starts as a deploy would:
    // each version says which it is, then execs this binary (same pid).
    let dir = std::env::temp_dir().join(format!("exit_hook_path_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let install = |version: u32| {
        let script = format!("#!/bin/sh\necho version {version}\nexec \"$EXIT_HOOK_TEST_BIN\"\n");
        let path = dir.join("exit-hook-worker");
        let staged = dir.join("exit-hook-worker.new");
        std::fs::write(&staged, script).unwrap();
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(staged, path).unwrap(); // atomic, as an install is
    };
    install(1);
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = keepalive_command();
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--wait-ready",
            "--",
            "exit-hook-worker",
        ])
        .env("PATH", path)
        .env("EXIT_HOOK_TEST_BIN", std::env::current_exe().unwrap());
    let mut child = Child::spawn_with(command, "ready_server");
    let mut watchdog = Watchdog::default();
    child.wait_line("version 1", |line| line == "version 1");
    let port = next_number(&mut child, "port ");
    let old = watchdog.watch(next_number(&mut child, "ready "));
    install(2);
    child.send(libc::SIGHUP);
    child.wait_line("version 2", |line| line == "version 2");
    let new = watchdog.watch(next_number(&mut child, "ready "));
    assert_gone_soon(old);
    assert_eq!(ask(port), Ok(new), "the new version answers");
    let outcome = child.signal(libc::SIGTERM).finish();
    std::fs::remove_dir_all(&dir).unwrap();
    outcome.assert_code(143);
}
