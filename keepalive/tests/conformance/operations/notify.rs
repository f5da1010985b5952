//! Who may speak for a worker on its `NOTIFY_SOCKET`: the worker, and its
//! process tree for `READY=1` and `STATUS=`; `STOPPING=1` only the worker
//! itself (a forked child running its own exit hooks is not the worker
//! draining); nobody else, whatever socket name they guess.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use libtest_mimic::Trial;

use super::{events, keepalive_role};
use crate::child::wait_forever;
use crate::cluster::{Watchdog, assert_stopped_once, next_number};
use crate::harness::{Child, SCENARIO};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_takes_readiness_from_the_worker_tree_and_stopping_from_the_worker,
        keepalive_refuses_a_ready_from_another_process_during_a_reload,
        keepalive_takes_ready_from_systemd_notify_gone_at_once,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "delegates_readiness" => delegates_readiness(),
        "notify_sender" => {
            let message = std::env::var("EXIT_HOOK_MESSAGE").unwrap();
            send(&std::env::var("NOTIFY_SOCKET").unwrap(), &message);
            // Alive while keepalive looks at who sent it.
            std::thread::sleep(Duration::from_secs(1));
            true
        }
        _ => false,
    }
}

fn send(socket: &str, message: &str) {
    UnixDatagram::unbound()
        .unwrap()
        .send_to(message.as_bytes(), socket)
        .unwrap();
}

/// Never says anything itself: a child says `STOPPING=1`, another `READY=1`.
fn delegates_readiness() -> ! {
    let pid = std::process::id();
    println!("socket {}", std::env::var("NOTIFY_SOCKET").unwrap());
    for message in ["STOPPING=1", "READY=1"] {
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .env(SCENARIO, "notify_sender")
            .env("EXIT_HOOK_MESSAGE", message)
            .spawn()
            .unwrap();
        println!("helper {}", helper.id());
        helper.wait().unwrap();
    }
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    println!("worker {pid}");
    wait_forever()
}

fn keepalive_takes_readiness_from_the_worker_tree_and_stopping_from_the_worker() {
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(&["--wait-ready"], &[], "delegates_readiness");
    // The worker's lines and keepalive's events come in either order.
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    let seen = keepalive.seen().to_vec();
    let socket = seen
        .iter()
        .find_map(|l| l.strip_prefix("socket "))
        .unwrap()
        .to_owned();
    let helpers: Vec<u32> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("helper ")?.parse().ok())
        .collect();
    let stopping_helper = helpers[0]; // the second one's READY=1 is heard
    let ready = format!("keepalive: pid {worker} is ready");
    if !seen.contains(&ready) {
        keepalive.wait_line("ready", |l| l == ready);
    }
    // Any process of the same user can find the socket; it is not heard.
    send(&socket, "STATUS=forged");
    let me = std::process::id();
    keepalive.wait_line("refused", |l| {
        l == format!(
            "keepalive: ignored STATUS=forged on pid {worker}'s socket from pid {me}, which may not say it"
        )
    });
    // Before keepalive stops it (the worker then says STOPPING=1 itself):
    // the child's STOPPING=1 was refused, the worker never counted as draining.
    let refused = format!(
        "keepalive: ignored STOPPING=1 on pid {worker}'s socket from pid {stopping_helper}, which may not say it"
    );
    assert!(
        keepalive.seen().contains(&refused),
        "{:#?}",
        keepalive.seen()
    );
    let draining = format!("keepalive: pid {worker} is stopping");
    assert!(
        !keepalive.seen().contains(&draining),
        "a child's STOPPING=1 is not the worker draining: {:#?}",
        keepalive.seen()
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let events = events(&outcome.stdout);
    assert!(
        !events.contains(&format!("pid {worker} status: forged").as_str()),
        "{outcome:#?}"
    );
}

fn keepalive_refuses_a_ready_from_another_process_during_a_reload() {
    let dir = super::TempDir::new("forged_ready");
    let state = dir.join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive: Child = keepalive_role(
        &[
            "--listen",
            "127.0.0.1:0",
            "--wait-ready",
            "--listen-timeout",
            "800ms",
        ],
        &[
            ("EXIT_HOOK_STATE", state.to_str().unwrap()),
            ("EXIT_HOOK_READY_STARTS", "1"),
        ],
        "ready_then_never",
    );
    let old = watchdog.watch(next_number(&mut keepalive, "ready "));
    keepalive.send(libc::SIGHUP);
    let socket = keepalive.wait_line("notify_socket", |l| l.starts_with("notify_socket "))
        ["notify_socket ".len()..]
        .to_owned();
    let never = watchdog.watch(next_number(&mut keepalive, "never_ready "));
    // A process that guessed the new worker's socket says it is ready.
    send(&socket, "READY=1");
    keepalive.wait_line("reload failed", |l| {
        l.starts_with("keepalive: reload failed")
    });
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let events = events(&outcome.stdout);
    let me = std::process::id();
    assert!(
        events.contains(
            &format!("ignored READY=1 on pid {never}'s socket from pid {me}, which may not say it")
                .as_str()
        ),
        "{outcome:#?}"
    );
    assert!(
        events.contains(
            &format!(
                "reload failed: the new worker (pid {never}) was not ready within 800 ms; the old workers keep serving"
            )
            .as_str()
        ),
        "{outcome:#?}"
    );
    assert_stopped_once(&outcome, old);
}

/// `systemd-notify --ready` (what a shell script, or a Node server, has
/// without a library) sends and exits at once: its ancestry is gone before
/// keepalive reads the datagram. Every worker is still taken as ready, and
/// nothing it says refused (11 of 40 were).
fn keepalive_takes_ready_from_systemd_notify_gone_at_once() {
    let mut command = crate::supervisor::keepalive_command();
    command.args([
        "--workers",
        "40",
        "--wait-ready",
        "--",
        "sh",
        "-c",
        "systemd-notify --ready && exec sleep 600",
    ]);
    super::merge_stderr(&mut command);
    let mut keepalive = Child::spawn_with(command, "none");
    for _ in 0..40 {
        keepalive.wait_line("is ready", |l| l.ends_with(" is ready"));
    }
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(
        !outcome
            .stdout
            .iter()
            .any(|l| l.contains("which may not say it")),
        "{outcome:#?}"
    );
}
