//! Unhealthy workers replaced ready-first: one that stops saying
//! `WATCHDOG=1` (systemd's watchdog protocol, `--watchdog`), one whose
//! memory grows past `--max-memory`, one that fails `--health-url`. The replacement is up before the old
//! worker is stopped, and the old one is stopped gracefully.

use std::time::Duration;

use libtest_mimic::Trial;

use super::{TempDir, event, keepalive_role, seen_or_wait};
use crate::child::{starts_before, wait_forever};
use crate::cluster::{Watchdog, assert_gone_soon, assert_stopped_once, is_gone, next_number};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_replaces_a_worker_that_stops_its_watchdog,
        keepalive_replaces_a_worker_past_max_memory,
        keepalive_replaces_a_worker_that_fails_its_health_url,
        keepalive_replaces_every_worker_when_the_health_url_fails,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "watchdog_worker" => watchdog_worker(),
        "memory_hog" => memory_hog(),
        "http_health" => http_health(),
        _ => false,
    }
}

fn hooked() -> u32 {
    let pid = std::process::id();
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    pid
}

/// Says `WATCHDOG=1` every 50 ms: the first start 6 times, then no more
/// (it hangs, as far as anyone can tell); later starts for ever.
fn watchdog_worker() -> ! {
    let first = starts_before() == 0;
    let pid = hooked();
    println!(
        "watchdog_usec {}",
        std::env::var("WATCHDOG_USEC").unwrap_or_default()
    );
    println!("worker {pid}");
    for ping in 0.. {
        if first && ping == 6 {
            wait_forever();
        }
        sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    unreachable!()
}

/// The first start takes 64 MiB of memory (and touches it); later ones do not.
fn memory_hog() -> ! {
    let first = starts_before() == 0;
    let pid = hooked();
    println!("worker {pid}");
    if first {
        let hog = vec![1u8; 64 << 20];
        std::hint::black_box(&hog);
        println!("grown {}", hog.len());
        std::mem::forget(hog);
    }
    wait_forever()
}

/// Serves HTTP on keepalive's listener and says `READY=1`: `/healthz`
/// answers `200` — except from a worker of the first generation (the first
/// EXIT_HOOK_SICK_STARTS starts) once it answered 3 times: then `503`.
fn http_health() -> ! {
    use std::io::{BufRead, BufReader, Write};
    let sick_starts: u32 = std::env::var("EXIT_HOOK_SICK_STARTS")
        .unwrap()
        .parse()
        .unwrap();
    let sick = starts_before() < sick_starts;
    let pid = hooked();
    let listener: std::net::TcpListener = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .unwrap()
        .expect("a listener from keepalive");
    std::thread::spawn(move || {
        let mut answered = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            // The whole request, up to its blank line, before the answer.
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            answered += 1;
            let status = if sick && answered > 3 {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    sd_notify::notify(false, &[sd_notify::NotifyState::Ready]).unwrap();
    println!("worker {pid}");
    wait_forever()
}

/// A port free a moment ago, for keepalive to bind (and the check to ask).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// keepalive with `workers` `http_health` workers on a port it holds,
/// checked every 100 ms, unhealthy after 2 failures; the first `workers`
/// starts turn sick.
fn health_checked(dir: &TempDir, workers: &str) -> (crate::harness::Child, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let listen = format!("127.0.0.1:{port}");
    let state = dir.join("starts");
    let keepalive = keepalive_role(
        &[
            "--workers",
            workers,
            "--listen",
            &listen,
            "--wait-ready",
            "--health-url",
            &url,
            "--health-interval",
            "100ms",
            "--health-fails",
            "2",
        ],
        &[
            ("EXIT_HOOK_STATE", state.to_str().unwrap()),
            ("EXIT_HOOK_SICK_STARTS", workers),
        ],
        "http_health",
    );
    (keepalive, url)
}

fn keepalive_replaces_a_worker_that_fails_its_health_url() {
    let dir = TempDir::new("health_url");
    let mut watchdog = Watchdog::default();
    let (mut keepalive, url) = health_checked(&dir, "1");
    let sick = watchdog.watch(next_number(&mut keepalive, "worker "));
    event(
        &mut keepalive,
        &format!(
            "replacing pid {sick}: health check: {url} failed 2 time(s) in a row (last: HTTP 503)"
        ),
    );
    let new = watchdog.watch(next_number(&mut keepalive, "worker "));
    // Stopped once the new one was ready, gracefully: its hooks ran.
    seen_or_wait(
        &mut keepalive,
        &format!("hook {sick}: SIGTERM (15), exit status 143"),
    );
    assert_gone_soon(sick);
    // The new one answers 200: a dozen checks, and it stays.
    std::thread::sleep(Duration::from_millis(1200));
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, new);
    assert!(
        !outcome
            .stdout
            .iter()
            .any(|l| l.contains("replacing pid") && !l.contains(&format!("replacing pid {sick}"))),
        "{outcome:#?}"
    );
}

fn keepalive_replaces_every_worker_when_the_health_url_fails() {
    let dir = TempDir::new("health_url_2");
    let mut watchdog = Watchdog::default();
    let (mut keepalive, url) = health_checked(&dir, "2");
    let sick: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "worker ")))
        .collect();
    // Which worker answered the check, the kernel chose: every one goes.
    let failed = event(&mut keepalive, "health check: ");
    assert!(
        failed.starts_with(&format!("health check: {url} failed 2 time(s) in a row")),
        "{failed}"
    );
    let new: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "worker ")))
        .collect();
    seen_or_wait(
        &mut keepalive,
        "keepalive: reload done: every worker replaced",
    );
    for pid in &sick {
        assert_gone_soon(*pid);
    }
    std::thread::sleep(Duration::from_millis(1200));
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for pid in sick.iter().chain(&new) {
        assert_stopped_once(&outcome, *pid);
    }
    assert_eq!(
        outcome
            .stdout
            .iter()
            .filter(|l| l.contains("health check: "))
            .count(),
        1,
        "{outcome:#?}"
    );
}

fn keepalive_replaces_a_worker_that_stops_its_watchdog() {
    let dir = TempDir::new("watchdog");
    let state = dir.join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--watchdog", "300ms", "--min-uptime", "100ms"],
        &[("EXIT_HOOK_STATE", state.to_str().unwrap())],
        "watchdog_worker",
    );
    let usec = keepalive.wait_line("watchdog_usec", |l| l.starts_with("watchdog_usec "));
    assert_eq!(usec, "watchdog_usec 300000", "systemd's variable, in µs");
    let hung = watchdog.watch(next_number(&mut keepalive, "worker "));
    event(
        &mut keepalive,
        &format!("replacing pid {hung}: no WATCHDOG=1 for 300 ms"),
    );
    let new = watchdog.watch(next_number(&mut keepalive, "worker "));
    // Stopped once the new one was ready, gracefully: its hooks ran.
    seen_or_wait(
        &mut keepalive,
        &format!("hook {hung}: SIGTERM (15), exit status 143"),
    );
    assert_gone_soon(hung);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !is_gone(new),
        "the new worker keeps its watchdog and serves"
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, new);
}

fn keepalive_replaces_a_worker_past_max_memory() {
    let dir = TempDir::new("max_memory");
    let state = dir.join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive = keepalive_role(
        &["--max-memory", "40MB", "--min-uptime", "100ms"],
        &[("EXIT_HOOK_STATE", state.to_str().unwrap())],
        "memory_hog",
    );
    let hog = watchdog.watch(next_number(&mut keepalive, "worker "));
    keepalive.wait_line("grown", |l| l.starts_with("grown "));
    let replacing = event(
        &mut keepalive,
        &format!("replacing pid {hog}: its memory ("),
    );
    assert!(
        replacing.ends_with(" MB) passed --max-memory (40.0 MB)"),
        "{replacing}"
    );
    let new = watchdog.watch(next_number(&mut keepalive, "worker "));
    seen_or_wait(
        &mut keepalive,
        &format!("hook {hog}: SIGTERM (15), exit status 143"),
    );
    assert_gone_soon(hog);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(
        !outcome
            .stdout
            .iter()
            .any(|l| l.contains(&format!("replacing pid {new}"))),
        "{outcome:#?}"
    );
}
