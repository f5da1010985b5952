//! The small mistakes users make, and what keepalive says: something in
//! the way of a Unix socket (and the socket it made, removed at exit), a
//! reload of a server that binds its own port, a worker that never says
//! `READY=1`, `--spin-sleep 0`.

use std::net::TcpListener;

use libtest_mimic::Trial;

use super::{TempDir, event, event_pid, events, keepalive_merged, keepalive_role};
use crate::child::wait_forever;
use crate::cluster::{Watchdog, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_names_what_is_in_the_way_of_a_unix_socket_and_removes_its_own,
        keepalive_reload_of_a_server_that_binds_its_own_port_says_why_it_failed,
        keepalive_reports_a_worker_that_never_says_ready,
        keepalive_spin_sleep_zero_still_waits_the_floor,
        keepalive_runs_the_program_in_its_cwd_with_its_env_and_kill_signal,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "binds_own_port" => binds_own_port(),
        "reports_process" => {
            let pid = std::process::id();
            exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
            println!("cwd {}", std::env::current_dir().unwrap().display());
            println!(
                "greeting {}",
                std::env::var("EXIT_HOOK_GREETING").unwrap_or_default()
            );
            println!("worker {pid}");
            wait_forever()
        }
        _ => false,
    }
}

/// Binds `EXIT_HOOK_PORT` itself, says `READY=1`, waits; exits 1 if the
/// port is taken.
fn binds_own_port() -> ! {
    let port = std::env::var("EXIT_HOOK_PORT").unwrap();
    let _listener = match TcpListener::bind(format!("127.0.0.1:{port}")) {
        Ok(listener) => listener,
        Err(err) => {
            super::say_err(&format!("cannot bind port {port}: {err}"));
            std::process::exit(1);
        }
    };
    exit_hook::add(|_| {});
    sd_notify::notify(false, &[sd_notify::NotifyState::Ready]).unwrap();
    println!("bound {}", std::process::id());
    wait_forever()
}

fn keepalive_names_what_is_in_the_way_of_a_unix_socket_and_removes_its_own() {
    let dir = TempDir::new("unix_socket");
    let path = dir.join("app.sock");
    std::fs::write(&path, "not a socket").unwrap();
    let listen = format!("unix:{}", path.display());
    let outcome = keepalive_merged(&["--listen", &listen], &["true"], &[], "none").finish();
    outcome.assert_code(1);
    assert_eq!(
        events(&outcome.stdout).last(),
        Some(&format!(
            "cannot listen on {listen}: {} is a regular file, not a socket: remove it or listen elsewhere",
            path.display()
        )
        .as_str()),
        "{outcome:#?}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "not a socket",
        "left alone"
    );
    std::fs::remove_file(&path).unwrap();
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(&["--listen", &listen], &[], "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    assert!(path.exists(), "keepalive made the socket");
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(!path.exists(), "and removed it at exit");
}

fn keepalive_reload_of_a_server_that_binds_its_own_port_says_why_it_failed() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--wait-ready"],
        &[("EXIT_HOOK_PORT", &port)],
        "binds_own_port",
    );
    let old = watchdog.watch(event_pid(&mut keepalive, "started pid "));
    event(&mut keepalive, &format!("pid {old} is ready"));
    keepalive.send(libc::SIGHUP);
    let new = event_pid(&mut keepalive, "started pid ");
    let failed = event(&mut keepalive, "reload failed: ");
    assert_eq!(
        failed,
        format!(
            "reload failed: the new worker (pid {new}) exited (exit status: 1) before it was ready; \
             a worker that binds its own port cannot start while the old one holds it: \
             let the supervisor hold the socket (--listen); the old workers keep serving"
        )
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

fn keepalive_reports_a_worker_that_never_says_ready() {
    let dir = TempDir::new("never_ready");
    let state = dir.join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--wait-ready", "--listen-timeout", "300ms"],
        &[
            ("EXIT_HOOK_STATE", state.to_str().unwrap()),
            ("EXIT_HOOK_READY_STARTS", "0"),
        ],
        "ready_then_never",
    );
    let pid = watchdog.watch(next_number(&mut keepalive, "never_ready "));
    let late = event(
        &mut keepalive,
        &format!("pid {pid} has not said READY=1 after "),
    );
    assert!(late.ends_with(" ms (the listen timeout)"), "{late}");
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let said = events(&outcome.stdout)
        .iter()
        .filter(|e| e.contains("has not said READY=1"))
        .count();
    assert_eq!(said, 1, "reported once: {outcome:#?}");
}

fn keepalive_runs_the_program_in_its_cwd_with_its_env_and_kill_signal() {
    let dir = TempDir::new("process_options");
    let pid_file = dir.join("keepalive.pid");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &[
            "--cwd",
            dir.0.to_str().unwrap(),
            "--env",
            "EXIT_HOOK_GREETING=hello there",
            "--kill-signal",
            "INT",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        &[],
        "reports_process",
    );
    let cwd = keepalive.wait_line("cwd", |l| l.starts_with("cwd "));
    assert_eq!(cwd, format!("cwd {}", dir.0.display()));
    let greeting = keepalive.wait_line("greeting", |l| l.starts_with("greeting "));
    assert_eq!(greeting, "greeting hello there");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", keepalive.pid())
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    // The worker was asked with SIGINT, as --kill-signal says.
    assert_eq!(
        outcome.lines_starting(&format!("hook {worker}: ")),
        [format!("hook {worker}: SIGINT (2), exit status 130")],
        "{outcome:#?}"
    );
    assert!(!pid_file.exists(), "the pid file is removed at exit");
}

fn keepalive_spin_sleep_zero_still_waits_the_floor() {
    let dir = TempDir::new("spin_pid");
    let pid_file = dir.join("keepalive.pid");
    let outcome = keepalive_role(
        &[
            "--min-uptime",
            "1s",
            "--spin-sleep",
            "0",
            "--max-restarts",
            "4",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        &[],
        "spin",
    )
    .finish();
    outcome.assert_code(1);
    // Given up, it removes its pid file too, as when it is stopped.
    assert!(
        !pid_file.exists(),
        "the pid file is removed when it gives up"
    );
    let starts: Vec<u64> = outcome
        .stdout
        .iter()
        .filter_map(|l| l.strip_prefix("start ")?.parse().ok())
        .collect();
    assert_eq!(starts.len(), 5, "{outcome:#?}");
    for gap in starts.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap >= 100, "restarted {gap} ms after the last start");
    }
}
