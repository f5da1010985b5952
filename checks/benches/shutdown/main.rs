//! Process-level benchmark: how long from the signal (or the exit call) to the
//! process being reaped, against the floor, a hand-rolled handler and Node's
//! `async-exit-hook`; and what the crate costs an idle process.
//!
//! ```text
//! cargo bench --bench shutdown                 # all tables, 25 interleaved rounds
//! EXIT_HOOK_BENCH_ROUNDS=50 cargo bench --bench shutdown
//! EXIT_HOOK_BENCH_ONLY=short_lived cargo bench --bench shutdown   # table 0 only
//! EXIT_HOOK_BENCH_ONLY=signal_path EXIT_HOOK_BENCH_ROUNDS=200 cargo bench --bench shutdown
//!                                              # table 1's one-hook rows only
//! EXIT_HOOK_BENCH_ONLY=limited EXIT_HOOK_BENCH_ROUNDS=50 cargo bench --bench shutdown
//!                                              # 10 000 sync hooks, with and without limits
//! ```
//!
//! Table 0 (`short_lived.rs`, 300 rounds, `EXIT_HOOK_BENCH_SHORT_ROUNDS`)
//! times short-lived programs from exec to reaped.
//!
//! Each measurement spawns a child (this binary again, with
//! `EXIT_HOOK_BENCH_ROLE` naming the variant), waits for its `READY` line,
//! sends SIGTERM with kill(2) and times until waitpid(2) returns. Variants
//! are interleaved round by round, so a noisy moment of the machine hits all
//! of them alike. The Node variants run when `node` and `npm` are on the PATH
//! (`async-exit-hook` is installed into `target/bench-node` with npm);
//! otherwise they are skipped with a message.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "EXIT_HOOK_BENCH_ROLE";

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        if !short_lived::run(&role) && !peers::run(&role) {
            child::run(&role);
        }
        return;
    }
    if std::env::args().any(|arg| arg == "--list") {
        return; // `cargo bench -- --list`: no libtest-style benchmarks here
    }
    let rounds = std::env::var("EXIT_HOOK_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(25);
    machine();
    let short_rounds = std::env::var("EXIT_HOOK_BENCH_SHORT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(300);
    let only = std::env::var("EXIT_HOOK_BENCH_ONLY").unwrap_or_default();
    let peer_rounds = std::env::var("EXIT_HOOK_BENCH_PEER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    if only == "peers" {
        peers::table(peer_rounds);
        return;
    }
    if only == "signal_path" {
        signal_to_reaped(rounds, SignalRows::OneHook);
        return;
    }
    if only == "limited" {
        signal_to_reaped(rounds, SignalRows::Limited);
        return;
    }
    short_lived::exec_to_reaped(short_rounds);
    if only == "short_lived" {
        return;
    }
    peers::table(peer_rounds);
    signal_to_reaped(rounds, SignalRows::All);
    exit_to_reaped(rounds);
    idle();
    registry_memory();
}

fn machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cpu}, {cores} cores; release build");
}

/// A variant: how to start the child, and what its signal-to-reaped time
/// is compared with.
struct Variant {
    name: &'static str,
    command: Command,
}

fn this(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(ROLE, role);
    command
}

/// Which rows of table 1 to measure.
#[derive(PartialEq)]
enum SignalRows {
    /// The floor, the hand-rolled designs and one no-op hook.
    OneHook,
    /// The floor, and 10 000 no-op sync hooks with and without a time limit.
    Limited,
    All,
}

/// Table 1: SIGTERM → reaped.
fn signal_to_reaped(rounds: usize, rows: SignalRows) {
    let mut variants = if rows == SignalRows::Limited {
        let mut variants = vec![floor()];
        variants.extend(limited_rows());
        variants
    } else {
        one_hook_rows()
    };
    if rows == SignalRows::All {
        variants.extend(all_signal_rows());
    }
    let mut samples = vec![Vec::with_capacity(rounds); variants.len()];
    let mut statuses = vec![None; variants.len()];
    for _ in 0..rounds {
        for (i, variant) in variants.iter_mut().enumerate() {
            let (elapsed, status) = measure_signal(&mut variant.command);
            samples[i].push(elapsed);
            statuses[i] = Some(status);
        }
    }
    println!("\nSIGTERM → reaped, {rounds} interleaved rounds");
    let floor = median(&mut samples[0].clone());
    table(
        variants.iter().map(|v| v.name),
        &mut samples,
        &statuses,
        floor,
    );
    if rows == SignalRows::Limited {
        let ratio = median(&mut samples[2].clone())
            .saturating_sub(floor)
            .as_secs_f64()
            / median(&mut samples[1].clone())
                .saturating_sub(floor)
                .as_secs_f64();
        println!("goal (≤ 2.00): with limits ÷ without, over the floor: {ratio:.2}");
    }
}

fn floor() -> Variant {
    Variant {
        name: "floor: no handler, killed by SIGTERM",
        command: this("floor"),
    }
}

/// The floor, the hand-rolled designs and one no-op hook.
fn one_hook_rows() -> Vec<Variant> {
    let mut variants = vec![
        floor(),
        Variant {
            name: "signal-hook thread + process::exit(143)",
            command: this("signal_hook"),
        },
        Variant {
            name: "signal-hook thread + _exit(143), no deadline kept",
            command: this("signal_hook_exit_now"),
        },
        Variant {
            name: "signal-hook thread + guard thread + _exit(143)",
            command: this("signal_hook_guard"),
        },
        Variant {
            name: "exit_hook: 1 no-op hook",
            command: this("noop"),
        },
    ];
    if cfg!(target_os = "linux") {
        variants.insert(
            3,
            Variant {
                name: "signal-hook thread + POSIX timer armed + _exit(143)",
                command: this("signal_hook_timer"),
            },
        );
    }
    variants
}

/// 10 000 no-op sync hooks without and with a time limit: what the limits
/// cost (issue 22: at most twice).
fn limited_rows() -> [Variant; 2] {
    [
        Variant {
            name: "exit_hook: 10 000 sync no-op hooks",
            command: this("sync_10000"),
        },
        Variant {
            name: "exit_hook: 10 000 sync no-op hooks, each with a time limit",
            command: this("limited_10000"),
        },
    ]
}

/// Table 1's rows past one hook: the big runs, and Node's.
fn all_signal_rows() -> Vec<Variant> {
    let mut variants = vec![Variant {
        name: "exit_hook: 1000 sync no-op hooks",
        command: this("sync_1000"),
    }];
    variants.extend(limited_rows());
    variants.extend([
        Variant {
            name: "exit_hook: 100 000 sync no-op hooks, each with a time limit",
            command: this("limited_100000"),
        },
        Variant {
            name: "exit_hook: 1 async hook × 100 ms",
            command: this("async_1"),
        },
        Variant {
            name: "exit_hook: 1000 async hooks × 100 ms",
            command: this("async_1000"),
        },
        Variant {
            name: "exit_hook: 100 000 async hooks × 100 ms",
            command: this("async_100000"),
        },
    ]);
    match node::script() {
        Ok(script) => {
            let node = |kind: &str, n: &str| {
                let mut command = Command::new("node");
                command.arg(&script).args([kind, n]);
                command
            };
            variants.extend([
                Variant {
                    name: "node async-exit-hook: 1 no-op hook",
                    command: node("sync", "1"),
                },
                Variant {
                    name: "node async-exit-hook: 1000 sync no-op hooks",
                    command: node("sync", "1000"),
                },
                Variant {
                    name: "node async-exit-hook: 1 async hook × 100 ms",
                    command: node("async", "1"),
                },
                Variant {
                    name: "node async-exit-hook: 1000 async hooks × 100 ms",
                    command: node("async", "1000"),
                },
                Variant {
                    name: "node async-exit-hook: 100 000 async hooks × 100 ms",
                    command: node("async", "100000"),
                },
            ]);
        }
        Err(why) => println!("node variants skipped: {why}"),
    }
    variants
}

/// Table 2: the exit call → reaped, with N hooks registered (the cost of a
/// run that has nothing to wait for).
fn exit_to_reaped(rounds: usize) {
    let variants = [
        ("std::process::exit(0), no exit_hook", "std_exit"),
        ("exit_hook::exit(0), 0 hooks", "exit_0"),
        ("exit_hook::exit(0), 1 hook", "exit_1"),
        ("exit_hook::exit(0), 1000 hooks", "exit_1000"),
        ("exit_hook::exit(0), 100 000 hooks", "exit_100000"),
    ];
    let mut samples = vec![Vec::with_capacity(rounds); variants.len()];
    let mut statuses = vec![None; variants.len()];
    for _ in 0..rounds {
        for (i, (_, role)) in variants.iter().enumerate() {
            let (elapsed, status) = measure_exit(role);
            samples[i].push(elapsed);
            statuses[i] = Some(status);
        }
    }
    println!("\nexit call → reaped (no-op sync hooks), {rounds} interleaved rounds");
    let floor = median(&mut samples[0].clone());
    table(
        variants.iter().map(|(name, _)| *name),
        &mut samples,
        &statuses,
        floor,
    );
}

/// Idle cost: threads and resident memory before and after installing, and
/// the CPU time used over 5 s of idling afterwards.
fn idle() {
    let output = this("idle")
        .stderr(Stdio::inherit())
        .output()
        .expect("the idle child");
    println!("\nidle cost (one child process)");
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

/// Resident memory of a registry that grew to 1 000 000 hooks and emptied
/// out, with closures that capture nothing and closures capturing 32 bytes
/// (one child process each).
fn registry_memory() {
    println!("\nregistry memory");
    for capture in [false, true] {
        let mut command = this("registry_memory");
        if capture {
            command.env("EXIT_HOOK_BENCH_CAPTURE", "1");
        }
        let output = command
            .stderr(Stdio::inherit())
            .output()
            .expect("the registry_memory child");
        println!();
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

/// Spawns, waits for READY, sends SIGTERM, times until reaped.
fn measure_signal(command: &mut Command) -> (Duration, String) {
    measure_signal_after(command, Duration::ZERO)
}

/// [`measure_signal`], sending SIGTERM `settle` after READY: a process that
/// has been running a while, as a server has when it is stopped.
fn measure_signal_after(command: &mut Command, settle: Duration) -> (Duration, String) {
    let mut child = spawn(command);
    let watchdog = Watchdog::new(&child);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim_end() != "READY" {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            let _ = child.wait();
            drop(watchdog);
            panic!("the child ended before READY");
        }
    }
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    std::thread::sleep(settle);
    let sent = Instant::now();
    // SAFETY: kill(2) on the pid of our own child, not reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    let elapsed = sent.elapsed();
    drop(watchdog);
    let _ = drain.join();
    (elapsed, describe(status))
}

/// The child stamps CLOCK_MONOTONIC just before its exit call; the same
/// clock is read here when waitpid(2) returns.
fn measure_exit(role: &str) -> (Duration, String) {
    let mut child = spawn(&mut this(role));
    let watchdog = Watchdog::new(&child);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let reaped = monotonic_ns();
    drop(watchdog);
    let stamp: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("T "))
        .and_then(|t| t.parse().ok())
        .expect("the child's stamp");
    (Duration::from_nanos(reaped - stamp), describe(status))
}

fn spawn(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// Kills the child if it is still running after a minute (the longest
/// variant takes about a second). Dropping the watchdog stands it down; drop
/// it as soon as waitpid(2) returned, so it never signals a reused pid.
struct Watchdog(
    Option<std::sync::mpsc::Sender<()>>,
    Option<std::thread::JoinHandle<()>>,
);

impl Watchdog {
    fn new(child: &Child) -> Watchdog {
        let pid = child.id() as i32;
        let (stand_down, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if wait.recv_timeout(Duration::from_secs(60))
                == Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            {
                // SAFETY: kill(2) on our child, which the measuring thread has
                // not reaped: it is still blocked in waitpid(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Watchdog(Some(stand_down), Some(thread))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
        if let Some(thread) = self.1.take() {
            let _ = thread.join();
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by {signal}"),
        _ => "?".into(),
    }
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

fn table<'a>(
    names: impl Iterator<Item = &'a str>,
    samples: &mut [Vec<Duration>],
    statuses: &[Option<String>],
    floor: Duration,
) {
    println!("| variant | median | p10 – p90 | × floor | status |");
    println!("|---|---|---|---|---|");
    for ((name, samples), status) in names.zip(samples.iter_mut()).zip(statuses) {
        let median = median(samples);
        println!(
            "| {name} | {} | {} – {} | {:.2} | {} |",
            ms(median),
            ms(percentile(samples, 10)),
            ms(percentile(samples, 90)),
            median.as_secs_f64() / floor.as_secs_f64(),
            status.as_deref().unwrap_or("?"),
        );
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

mod child;
mod node;
mod peers;
mod short_lived;
