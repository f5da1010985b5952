//! keepalive's own costs (Linux, feature `supervisor`): what an idle
//! supervisor costs, and whether it leaks or drops a request over a long
//! soak of restarts and reloads.
//!
//! ```text
//! cargo bench -p keepalive --bench keepalive                  # both
//! KEEPALIVE_BENCH_ONLY=idle KEEPALIVE_BENCH_IDLE_SECS=30 cargo bench -p keepalive --bench keepalive
//! KEEPALIVE_BENCH_ONLY=soak KEEPALIVE_BENCH_RESTARTS=10000 KEEPALIVE_BENCH_RELOADS=200 \
//!     cargo bench -p keepalive --bench keepalive
//! ```
//!
//! **Idle**: `keepalive -- sleep 3600`, left alone for 30 s. The CPU time
//! of every keepalive thread (`/proc/PID/task/*/schedstat`, nanoseconds)
//! and its context switches over that time, beside the same figures for
//! the `sleep` worker itself (the floor: a process that does nothing).
//!
//! **Soak**: `keepalive --workers 2 --listen 127.0.0.1:0 --wait-ready
//! --min-uptime 0ms` over this binary's worker, which answers each
//! connection with its pid, says `READY=1`, stops gracefully (a request
//! it accepted is answered), and exits after 3 answers, so the load
//! itself drives the restarts. A bounded client load (4 threads, a new
//! connection per request) runs while SIGHUPs are sent, spread over the
//! restarts (one every 50, each after the last reload ended), until 10 000
//! restarts and 200 reloads are done. Reported: the
//! requests and how many failed, the restarts, the reloads done and
//! failed, and keepalive's descriptors, threads and RSS before and after.
//!
//! `KEEPALIVE_BENCH_BIN=path/to/keepalive` measures another build (an
//! older commit's, to compare) instead of this tree's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const ROLE: &str = "KEEPALIVE_BENCH_ROLE";

/// The keepalive measured: this tree's, or `KEEPALIVE_BENCH_BIN` (another
/// build, to compare).
fn keepalive_bin() -> String {
    std::env::var("KEEPALIVE_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keepalive").into())
}

fn main() {
    if std::env::var(ROLE).is_ok_and(|role| role == "worker") {
        worker();
    }
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo bench -- --list`: no libtest-style benchmarks here
    }
    let only = std::env::var("KEEPALIVE_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "idle" {
        idle(env_or("KEEPALIVE_BENCH_IDLE_SECS", 30));
    }
    if only.is_empty() || only == "soak" {
        soak(
            env_or("KEEPALIVE_BENCH_RESTARTS", 10_000),
            env_or("KEEPALIVE_BENCH_RELOADS", 200),
        );
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (ns) and context switches of every thread of `pid` so far.
fn cpu_and_switches(pid: u32) -> (u64, u64) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("a live process");
    let (mut cpu, mut switches) = (0, 0);
    for task in tasks.flatten() {
        let path = task.path();
        if let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) {
            cpu += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(path.join("status")) {
            switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    (cpu, switches)
}

/// Descriptors, threads and RSS (KiB) of `pid`.
fn footprint(pid: u32) -> (usize, usize, u64) {
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
        rss,
    )
}

/// keepalive with `args`, its stderr (the events) read line by line.
fn keepalive(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(keepalive_bin())
        .args(args)
        .env(ROLE, "worker")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keepalive");
    let stderr = child.stderr.take().unwrap();
    let (send, events) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(event) = line.strip_prefix("keepalive: ") {
                if send.send(event.to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    (child, events)
}

/// Waits (up to 30 s) for an event for which `matches` holds.
fn wait_event(events: &mpsc::Receiver<String>, matches: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = events.recv_timeout(left).expect("keepalive went quiet");
        if matches(&event) {
            return event;
        }
    }
}

fn stop(mut child: Child) -> Option<i32> {
    // SAFETY: kill(2) on our child, not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().ok()?.code()
}

fn idle(secs: u64) {
    println!("\n## idle: keepalive -- sleep 3600, {secs} s untouched\n");
    let (child, events) = keepalive(&["--", "sleep", "3600"]);
    let worker: u32 = wait_event(&events, |e| e.starts_with("started pid "))
        ["started pid ".len()..]
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (k0, ks0) = cpu_and_switches(child.id());
    let (w0, ws0) = cpu_and_switches(worker);
    std::thread::sleep(Duration::from_secs(secs));
    let (k1, ks1) = cpu_and_switches(child.id());
    let (w1, ws1) = cpu_and_switches(worker);
    let (fds, threads, rss) = footprint(child.id());
    println!("| process | CPU in {secs} s | context switches | fds | threads | RSS |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| keepalive | {:.3} ms | {} | {fds} | {threads} | {:.1} MB |",
        (k1 - k0) as f64 / 1e6,
        ks1 - ks0,
        rss as f64 / 1024.0
    );
    println!(
        "| its `sleep` worker (the floor) | {:.3} ms | {} | | | |",
        (w1 - w0) as f64 / 1e6,
        ws1 - ws0
    );
    println!(
        "\nper 30 s: keepalive {:.3} ms CPU (goal ≤ 5 ms)",
        (k1 - k0) as f64 / 1e6 * 30.0 / secs as f64
    );
    let code = stop(child);
    println!("exit status {code:?}");
}

fn soak(restarts: u64, reloads: u64) {
    println!("\n## soak: {restarts} restarts and {reloads} reloads under load\n");
    let (child, events) = keepalive(&[
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--wait-ready",
        "--min-uptime",
        "0ms",
        "--kill-timeout",
        "5s",
        "--",
        std::env::current_exe().unwrap().to_str().unwrap(),
    ]);
    let port: u16 = wait_event(&events, |e| e.starts_with("listening on "))
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for _ in 0..2 {
        wait_event(&events, |e| e.ends_with(" is ready"));
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = footprint(child.id());
    let done = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (done, answered, failed, errors) = (
                done.clone(),
                answered.clone(),
                failed.clone(),
                errors.clone(),
            );
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    match ask(port) {
                        Ok(()) => answered.fetch_add(1, Ordering::Relaxed),
                        Err(err) => {
                            errors.lock().unwrap().push(err);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (mut restarted, mut reloaded, mut reload_failed, mut asked) = (0u64, 0u64, 0u64, 0u64);
    let mut reloading = None;
    let mut recent = std::collections::VecDeque::new();
    while restarted < restarts || reloaded + reload_failed < reloads {
        // The reloads spread over the restarts.
        let due = restarted >= asked * (restarts / reloads.max(1));
        if reloading.is_none() && asked < reloads && due {
            // SAFETY: kill(2) on our child, not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
            asked += 1;
            reloading = Some(Instant::now());
        }
        if reloading.is_some_and(|since| since.elapsed() > Duration::from_secs(20)) {
            panic!("a reload did not end in 20 s; the last events: {recent:#?}");
        }
        let event = events
            .recv_timeout(Duration::from_secs(30))
            .expect("keepalive went quiet");
        recent.push_back(event.clone());
        if recent.len() > 40 {
            recent.pop_front();
        }
        if event.starts_with("restarting in ") {
            restarted += 1;
        } else if event.starts_with("reload done") {
            reloaded += 1;
            reloading = None;
        } else if event.starts_with("reload failed") {
            reload_failed += 1;
            reloading = None;
            println!("  {event}");
        }
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    // Let the last restarts settle before looking at keepalive again.
    std::thread::sleep(Duration::from_millis(500));
    let after = footprint(child.id());
    let pid = child.id();
    let code = stop(child);
    let errors = errors.lock().unwrap();
    println!(
        "| requests answered | failed | restarts | reloads done / failed | keepalive fds | threads | RSS | took |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {restarted} | {reloaded} / {reload_failed} | {} → {} | {} → {} | {:.1} → {:.1} MB | {:.1} s |",
        answered.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2 as f64 / 1024.0,
        after.2 as f64 / 1024.0,
        took.as_secs_f64()
    );
    println!("\nkeepalive (pid {pid}) exit status {code:?}");
    for err in errors.iter().take(5) {
        println!("  failed: {err}");
    }
}

/// One request: connect, read the answer (a pid), until the server closes.
fn ask(port: u16) -> Result<(), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer.trim().parse::<u32>().is_err() {
        return Err(format!("answered {answer:?}"));
    }
    Ok(())
}

/// The soak's worker: answers each connection on `LISTEN_FDS`'s first
/// socket with its pid, says `READY=1`, exits 0 after 3 answers; on
/// SIGTERM it answers the connection it accepted, then exits 143.
fn worker() -> ! {
    let listener = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .expect("LISTEN_FDS")
        .expect("a TCP listener at fd 3");
    listener.set_nonblocking(true).unwrap();
    // Held while a connection is accepted and answered; the exit hook
    // takes it, so the process ends between two answers, never in one.
    let serving: &'static Mutex<()> = Box::leak(Box::new(Mutex::new(())));
    exit_hook::add(move |_| drop(serving.lock()));
    sd_notify::notify(false, &[sd_notify::NotifyState::Ready]).unwrap();
    let pid = std::process::id();
    let mut answers = 0;
    let mut poll = [libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&listener),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        // SAFETY: poll(2) on one descriptor we own.
        unsafe { libc::poll(poll.as_mut_ptr(), 1, 100) };
        let guard = serving.lock().unwrap();
        if exit_hook::is_exiting() {
            drop(guard);
            loop {
                std::thread::park();
            }
        }
        let Ok((mut stream, _)) = listener.accept() else {
            continue;
        };
        let _ = stream.set_nonblocking(false);
        let _ = writeln!(stream, "{pid}");
        drop(stream);
        drop(guard);
        answers += 1;
        if answers == 3 {
            std::process::exit(0);
        }
    }
}
