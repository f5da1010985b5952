//! What keepalive's checks and its workers can do to it: a health URL that
//! trickles or never ends its line, a worker that reads the terminal or
//! is stopped, a worker that says `STATUS=` in a loop, and an instance
//! that does not answer its client.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use super::peak_rss_kib;
use crate::child::wait_forever;
use crate::cluster::{Watchdog, next_number};
use crate::control::{RuntimeDir, status_until, text};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        a_health_check_that_trickles_or_never_ends_fails,
        workers_read_dev_null_and_a_stopped_worker_shows_as_stopped,
        a_worker_that_says_status_in_a_loop_is_heard_in_moderation,
        a_client_says_when_an_instance_does_not_answer,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "bad_health" => bad_health(),
        "reads_stdin" => {
            let mut all = Vec::new();
            let read = std::io::stdin().read_to_end(&mut all);
            println!("stdin: {:?} bytes", read.ok());
            println!("worker {}", std::process::id());
            wait_forever()
        }
        "status_flood" => {
            for n in 0..20_000 {
                let status = format!("STATUS=request {n}");
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Custom(&status)]);
            }
            for _ in 0..1000 {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Custom("STATUS=idle")]);
            }
            println!("worker {}", std::process::id());
            wait_forever()
        }
        _ => false,
    }
}

/// A server on keepalive's socket (fd 3) that reads each request, then
/// answers as `HEALTH` says: `trickle`, a byte of a good answer every
/// 300 ms; `endless`, a status line that never ends (64 MiB of it).
fn bad_health() -> ! {
    // SAFETY: fd 3 is the listener keepalive passed (LISTEN_FDS=1).
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    let endless = std::env::var("HEALTH").as_deref() == Ok("endless");
    println!("worker {}", std::process::id());
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            if endless {
                let chunk = [b'x'; 64 * 1024];
                for _ in 0..1024 {
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                }
            } else {
                for byte in b"HTTP/1.1 200 OK\r\n\r\n" {
                    if stream.write_all(&[*byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        });
    }
    wait_forever()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn a_health_check_that_trickles_or_never_ends_fails() {
    for (mode, says) in [
        ("trickle", "no answer within 500 ms"),
        ("endless", "no status line in its first 1024 bytes"),
    ] {
        let dir = RuntimeDir::new(&format!("health_{mode}"));
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let url = format!("http://127.0.0.1:{port}/healthz");
        let mut watchdog = Watchdog::default();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keepalive"));
        command
            .args([
                "run",
                "--name",
                "checked",
                "--listen",
                &listen,
                "--health-url",
                &url,
            ])
            .args([
                "--health-interval",
                "500ms",
                "--health-fails",
                "2",
                "--min-uptime",
                "100ms",
            ])
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("HEALTH", mode);
        crate::operations::merge_stderr(&mut command);
        let mut keepalive = Child::spawn_with(command, "bad_health");
        let first = watchdog.watch(next_number(&mut keepalive, "worker "));
        let replacing = keepalive.wait_line("the replacement", |l| {
            l.starts_with(&format!("keepalive: replacing pid {first}: health check"))
        });
        assert!(replacing.contains(says), "{mode}: {replacing}");
        let rss = peak_rss_kib(keepalive.pid() as u32);
        assert!(
            rss < 32 * 1024,
            "{mode}: keepalive's RSS was up to {rss} KiB"
        );
        watchdog.watch(next_number(&mut keepalive, "worker "));
        keepalive.signal(libc::SIGTERM).finish().assert_code(143);
    }
}

fn workers_read_dev_null_and_a_stopped_worker_shows_as_stopped() {
    let dir = RuntimeDir::new("stdin");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["run", "--name", "reader", "--min-uptime", "100ms", "--"])
        .arg(std::env::current_exe().unwrap())
        .env("XDG_RUNTIME_DIR", dir.path());
    crate::operations::merge_stderr(&mut command);
    // keepalive's own stdin stays open and silent, as a terminal would.
    let mut keepalive = Child::spawn_answering(command, "reads_stdin");
    let mut watchdog = Watchdog::default();
    keepalive.wait_line("stdin read", |l| l == "stdin: Some(0) bytes");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    status_until(&dir, "reader", |s| s["workers"][0]["state"] == "ready");
    // SAFETY: kill(2) on a worker of ours.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGSTOP) }, 0);
    status_until(&dir, "reader", |s| s["workers"][0]["state"] == "stopped");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGCONT) }, 0);
    status_until(&dir, "reader", |s| s["workers"][0]["state"] == "ready");
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}

fn a_worker_that_says_status_in_a_loop_is_heard_in_moderation() {
    let dir = RuntimeDir::new("flood");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("talker", &[], "status_flood");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    status_until(&dir, "talker", |s| s["workers"][0]["status"] == "idle");
    // The count of what was not reported comes when its second is over.
    keepalive.wait_line("the count", |l| {
        l.contains("more thing(s) on its notification socket")
    });
    let pid = keepalive.pid() as u32;
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let status_lines = outcome
        .stdout
        .iter()
        .filter(|l| l.starts_with(&format!("keepalive: pid {worker} status: ")))
        .count();
    let quieted = outcome
        .stdout
        .iter()
        .filter(|l| l.contains("more thing(s) on its notification socket"))
        .count();
    eprintln!("21 000 STATUS= said: {status_lines} reported, {quieted} counts of the rest");
    assert!(
        (1..=200).contains(&status_lines),
        "{status_lines} lines: {pid}"
    );
    assert!(quieted >= 1, "{outcome:#?}");
}

fn a_client_says_when_an_instance_does_not_answer() {
    let dir = RuntimeDir::new("noanswer");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("frozen", &[], "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("frozen");
    keepalive.send(libc::SIGSTOP);
    let started = Instant::now();
    let output = dir.client(&["status", "frozen"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        text(&output.stderr),
        "keepalive: keepalive frozen did not answer within 10 s (stopped, or stuck?)\n"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    keepalive.send(libc::SIGCONT);
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}
