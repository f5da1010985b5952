//! What a client can do to an instance: say nothing, say too much, leave,
//! and use up its descriptors.

use std::io::{Read, Write};

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use super::{cpu_ticks, descriptors, peak_rss_kib, rss_kib};
use crate::cluster::{Watchdog, next_number};
use crate::control::{RuntimeDir, text};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        silent_and_trickling_clients_delay_no_other,
        an_oversized_or_garbled_request_gets_an_error_and_costs_nothing,
        subscribers_that_leave_are_closed_and_no_descriptor_limit_makes_it_spin,
        a_start_that_failed_for_want_of_descriptors_is_tried_again,
    ]
}

fn connect(dir: &RuntimeDir, name: &str) -> UnixStream {
    UnixStream::connect(dir.path().join(format!("keepalive/{name}.sock"))).unwrap()
}

/// A status request on a connection of its own, answered, and how long
/// the answer took (in this process: no client to start).
fn timed_status(dir: &RuntimeDir, name: &str) -> Duration {
    let started = Instant::now();
    let mut stream = connect(dir, name);
    stream.write_all(b"{\"command\":\"status\"}\n").unwrap();
    let answer = reply(&mut stream);
    assert_eq!(answer["status"]["name"], name, "{answer}");
    started.elapsed()
}

/// The one reply line on `stream`, read within 10 s (as keepalive's
/// client reads it: to the newline; the server may reset the connection
/// after it, under what it did not read).
fn reply(stream: &mut UnixStream) -> serde_json::Value {
    use std::io::BufRead;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut text)
        .unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|err| panic!("{err}: {text:?}"))
}

fn silent_and_trickling_clients_delay_no_other() {
    let dir = RuntimeDir::new("silent");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("web", &[], "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("web");
    let mut silent: Vec<UnixStream> = (0..10).map(|_| connect(&dir, "web")).collect();
    let trickler = {
        let mut stream = connect(&dir, "web");
        std::thread::spawn(move || {
            for byte in br#"{"command":"status"}"# {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            let mut rest = String::new();
            let _ = stream.read_to_string(&mut rest);
            rest
        })
    };
    // Each connection is served on its own: nobody waits for the silent
    // ones (a request has 2 s: waiting on even one would take that long).
    for _ in 0..5 {
        let took = timed_status(&dir, "web");
        assert!(took < Duration::from_millis(1500), "status took {took:?}");
    }
    // The silent and the trickling ones are cut at 2 s for the whole request.
    for stream in &mut silent {
        let answer = reply(stream);
        assert_eq!(answer["error"], "no whole request within 2 s", "{answer}");
    }
    let rest = trickler.join().unwrap();
    assert!(rest.contains("no whole request within 2 s"), "{rest:?}");
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}

fn an_oversized_or_garbled_request_gets_an_error_and_costs_nothing() {
    let dir = RuntimeDir::new("oversized");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("api", &[], "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("api");
    let pid = keepalive.pid() as u32;
    let before = rss_kib(pid);
    // 512 MiB without a newline, from a thread: the server stops reading.
    let mut stream = connect(&dir, "api");
    let mut writer = stream.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0u64;
        for _ in 0..512 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    let answer = reply(&mut stream);
    assert_eq!(
        answer["error"], "a request is one JSON line of at most 64 KiB",
        "{answer}"
    );
    let sent = flood.join().unwrap();
    assert!(sent < 16 << 20, "the server read on: {sent} bytes");
    let peak = peak_rss_kib(pid);
    eprintln!("keepalive's RSS: {before} KiB before, at most {peak} KiB after {sent} bytes sent");
    assert!(
        peak < before + 8 * 1024,
        "{before} KiB -> {peak} KiB at most"
    );
    // Not UTF-8: said, not closed unanswered.
    let mut stream = connect(&dir, "api");
    stream.write_all(b"{\"command\":\"st\xffatus\"}\n").unwrap();
    assert_eq!(reply(&mut stream)["error"], "not a request: not UTF-8");
    let took = timed_status(&dir, "api");
    assert!(took < Duration::from_secs(2), "{took:?}");
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}

/// Sets `pid`'s soft descriptor limit to `soft`; returns the old limits.
fn set_descriptor_limit(pid: u32, soft: u64) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) reading the old limits first, into our struct.
    assert_eq!(
        unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) },
        0
    );
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: prlimit(2) on a child of ours, as root.
    assert_eq!(
        unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) },
        0,
        "{}",
        std::io::Error::last_os_error()
    );
    old
}

fn restore_descriptor_limit(pid: u32, old: &libc::rlimit) {
    // SAFETY: as in set_descriptor_limit.
    unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, old, std::ptr::null_mut()) };
}

fn subscribe(dir: &RuntimeDir, name: &str) -> UnixStream {
    let mut stream = connect(dir, name);
    stream.write_all(b"{\"command\":\"events\"}\n").unwrap();
    stream
}

/// Waits up to 5 s for `pid` to hold at most `most` descriptors.
fn descriptors_fall_to(pid: u32, most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = descriptors(pid);
        if now <= most || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn subscribers_that_leave_are_closed_and_no_descriptor_limit_makes_it_spin() {
    let dir = RuntimeDir::new("subscribers");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("feed", &[], "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("feed");
    let pid = keepalive.pid() as u32;
    let baseline = descriptors(pid);
    // 2 000 subscribers that come and go while nothing happens.
    for _ in 0..40 {
        let round: Vec<UnixStream> = (0..50).map(|_| subscribe(&dir, "feed")).collect();
        std::thread::sleep(Duration::from_millis(20));
        drop(round);
    }
    let after = descriptors_fall_to(pid, baseline + 2);
    eprintln!(
        "keepalive's descriptors: {baseline} before 2000 subscribers came and went, {after} after"
    );
    assert!(after <= baseline + 2, "{baseline} -> {after}");
    // At its descriptor limit, held by subscribers that stay: no spinning,
    // and a client is told why.
    let old = set_descriptor_limit(pid, (descriptors(pid) + 6) as u64);
    let held: Vec<UnixStream> = (0..40).map(|_| subscribe(&dir, "feed")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let (ticks, started) = (cpu_ticks(pid), Instant::now());
    // Answered, or told why not (whichever the descriptor left allows),
    // at once either way.
    let output = dir.client(&["status", "feed"]);
    assert!(
        output.status.success() || text(&output.stderr).contains("out of file descriptors"),
        "{output:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - ticks;
    eprintln!(
        "keepalive's CPU at its descriptor limit: {used} ticks of {} ms",
        started.elapsed().as_millis()
    );
    assert!(used < 50, "{used} ticks in 2 s: it spins");
    drop(held);
    restore_descriptor_limit(pid, &old);
    let left = descriptors_fall_to(pid, baseline + 2);
    eprintln!("after the subscribers left: {left} descriptors (baseline {baseline})");
    dir.status("feed");
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}

fn a_start_that_failed_for_want_of_descriptors_is_tried_again() {
    let dir = RuntimeDir::new("emfile");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("jobs", &["--min-uptime", "0ms"], "worker");
    let first = watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("jobs");
    let pid = keepalive.pid() as u32;
    // Not one descriptor more: the next worker's socket or pipes fail
    // (one under the count, in case the status' connection is still open).
    std::thread::sleep(Duration::from_millis(200));
    let old = set_descriptor_limit(pid, descriptors(pid) as u64 - 1);
    // SAFETY: kill(2) on a worker of ours.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    for _ in 0..2 {
        keepalive.wait_line("a failed start", |l| {
            l.starts_with("keepalive: worker 0 could not start")
                && l.contains("Too many open files")
        });
        keepalive.wait_line("a retry", |l| {
            l.starts_with("keepalive: restarting in 1000 ms")
        });
    }
    assert!(
        !keepalive.seen().iter().any(|l| l.contains("gave up")),
        "{:#?}",
        keepalive.seen()
    );
    restore_descriptor_limit(pid, &old);
    let second = watchdog.watch(next_number(&mut keepalive, "worker "));
    assert_ne!(second, first);
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}
