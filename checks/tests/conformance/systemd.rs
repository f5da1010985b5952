//! systemd's notification protocol, the service's side: a run tells the
//! socket `NOTIFY_SOCKET` names `STOPPING=1` when it starts, with
//! `EXTEND_TIMEOUT_USEC=` its budget, so the manager waits that long.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use libtest_mimic::Trial;

use crate::harness::Child;
use crate::trials;

pub fn scenarios() -> Vec<crate::Scenario> {
    crate::scenarios! { notify_deadline_3s }
}

/// A run with a deadline of 3 s and a hook.
fn notify_deadline_3s() {
    exit_hook::Builder::new()
        .timeout(Duration::from_secs(3))
        .install()
        .unwrap();
    crate::child::hook("a");
    crate::child::ready();
    crate::child::wait_forever();
}

pub fn tests() -> Vec<Trial> {
    trials![
        a_run_tells_the_notify_socket_it_is_stopping,
        a_run_tells_the_notify_socket_its_own_deadline,
        a_run_tells_an_abstract_notify_socket_it_is_stopping,
        a_notify_socket_nobody_reads_changes_nothing,
    ]
}

/// A datagram socket at a fresh path, as a service manager would bind.
fn bound_socket(name: &str) -> (UnixDatagram, PathBuf) {
    let path = std::env::temp_dir().join(format!("exit_hook_{name}_{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (socket, path)
}

/// The datagrams received, as text, until none comes for 300 ms.
fn received(socket: &UnixDatagram) -> Vec<String> {
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    messages
}

/// The `signal` scenario (two hooks) with `NOTIFY_SOCKET` set to `address`,
/// stopped with SIGTERM.
fn terminate_with_notify_socket(address: &str) -> crate::harness::Outcome {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("NOTIFY_SOCKET", address);
    Child::spawn_with(command, "signal")
        .ready()
        .signal(libc::SIGTERM)
        .finish()
}

fn a_run_tells_the_notify_socket_it_is_stopping() {
    let (socket, path) = bound_socket("notify");
    let outcome = terminate_with_notify_socket(path.to_str().unwrap());
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready().len(), 2, "{outcome:#?}");
    let said = received(&socket);
    assert_eq!(said.len(), 1, "one datagram, once: {said:?}");
    assert_stopping_with_budget(&said[0], Duration::from_secs(10));
    std::fs::remove_file(path).unwrap();
}

/// `STOPPING=1` and `EXTEND_TIMEOUT_USEC=` what is left of a `deadline`
/// run that just started: at most all of it, and most of it (generous: the
/// machine is shared).
#[track_caller]
fn assert_stopping_with_budget(datagram: &str, deadline: Duration) {
    let usec: u64 = datagram
        .strip_prefix("STOPPING=1\nEXTEND_TIMEOUT_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not STOPPING=1 with a budget: {datagram:?}"));
    let budget = Duration::from_micros(usec);
    assert!(
        budget <= deadline && budget >= deadline / 2,
        "{budget:?} of {deadline:?}"
    );
}

/// With a deadline of 3 s, the manager is told 3 s (less what passed).
fn a_run_tells_the_notify_socket_its_own_deadline() {
    let (socket, path) = bound_socket("notify_deadline");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("NOTIFY_SOCKET", &path);
    let outcome = Child::spawn_with(command, "notify_deadline_3s")
        .ready()
        .signal(libc::SIGTERM)
        .finish();
    outcome.assert_code(143);
    let said = received(&socket);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_stopping_with_budget(&said[0], Duration::from_secs(3));
    std::fs::remove_file(path).unwrap();
}

fn a_run_tells_an_abstract_notify_socket_it_is_stopping() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("exit_hook_notify_{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let outcome = terminate_with_notify_socket(&format!("@{name}"));
    outcome.assert_code(143);
    let said = received(&socket);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_stopping_with_budget(&said[0], Duration::from_secs(10));
}

fn a_notify_socket_nobody_reads_changes_nothing() {
    let path = std::env::temp_dir().join(format!("exit_hook_nobody_{}.sock", std::process::id()));
    let outcome = terminate_with_notify_socket(path.to_str().unwrap());
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready().len(),
        2,
        "both hooks ran: {outcome:#?}"
    );
    assert_eq!(outcome.stderr, "", "nothing is printed: {outcome:#?}");
}
