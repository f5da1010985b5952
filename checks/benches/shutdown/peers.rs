//! Table P: exit_hook beside what a user would pick instead, on the two
//! figures a user choosing a crate sees.
//!
//! - **Short-lived CLI, added cost**: exec → reaped for a program that
//!   prints one line and returns, with the peer set up first; its median
//!   over the same program without any handler, in the same run.
//! - **SIGTERM → reaped**: a waiting program (READY, then idle) is sent
//!   SIGTERM 50 ms after READY; kill(2) → waitpid(2) returns.
//!
//! Every variant is this binary with a role, so the image is the same. The
//! rounds are interleaved, each in a new shuffled order, so a noisy moment
//! or a position in the round favours nobody.
//!
//! ```text
//! EXIT_HOOK_BENCH_ONLY=peers EXIT_HOOK_BENCH_PEER_ROUNDS=200 cargo bench --bench shutdown
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{measure_signal_after, median, ms, short_lived};

/// How long a waiting program runs before SIGTERM: a server is stopped
/// after it has been running, not in its first millisecond.
const SETTLE: Duration = Duration::from_millis(50);

/// (name, the short-lived program's role, the waiting program's role).
/// The first is the baseline; the peers follow, then exit_hook, then the
/// references: what the least design that keeps the contract pays (hooks
/// on a thread of their own, never the exiting one; a deadline kept while
/// they run).
const PEERS: [(&str, &str, &str); 8] = [
    (
        "nothing (default death)",
        "peer_short_none",
        "peer_wait_none",
    ),
    (
        "`ctrlc::set_handler` (termination feature)",
        "peer_short_ctrlc",
        "peer_wait_ctrlc",
    ),
    (
        "`signal-hook` iterator thread",
        "peer_short_signal_hook",
        "peer_wait_signal_hook",
    ),
    (
        "`tokio::signal` on a current-thread runtime",
        "peer_short_tokio",
        "peer_wait_tokio",
    ),
    (
        "`tokio-graceful-shutdown` `Toplevel`",
        "peer_short_tgs",
        "peer_wait_tgs",
    ),
    (
        "**exit_hook**, one no-op hook",
        "peer_short_exit_hook",
        "peer_wait_exit_hook",
    ),
    (
        "reference: one parked thread woken at exit and waited for; a signal thread that spawns a guard thread",
        "short_wake",
        "signal_hook_guard",
    ),
    (
        "reference: the same, the guard thread started beforehand and woken",
        "short_wake",
        "signal_hook_parked_guard",
    ),
];

/// exit_hook's row; the best peer is looked up among the rows before it.
const EXIT_HOOK: usize = 5;

/// The variable naming another build of this benchmark (an earlier commit's
/// `target/release/deps/shutdown-*`): its exit_hook row is measured in the
/// same rounds, as the last row.
const BASELINE: &str = "EXIT_HOOK_BENCH_BASELINE_BIN";

pub fn table(rounds: usize) {
    let baseline = std::env::var_os(BASELINE);
    // Every row runs from a fresh copy, this binary's and the baseline's
    // made the same way: the same build run from two files measured up to
    // 100 µs apart (both figures), whichever file was the fresher copy
    // winning, which made a baseline row look that much faster or slower
    // than the same code.
    let this = std::env::current_exe().unwrap();
    let copy = fresh_copy(&this, "peers");
    let baseline = baseline.map(|bin| {
        let copy = fresh_copy(Path::new(&bin), "baseline");
        (bin, copy)
    });
    let at = |bin: &OsStr, role: &str| {
        let mut command = Command::new(bin);
        command.env(super::ROLE, role);
        command
    };
    let mut rows: Vec<(String, Command, Command)> = PEERS
        .iter()
        .map(|&(name, short, wait)| {
            (
                name.to_owned(),
                at(copy.as_os_str(), short),
                at(copy.as_os_str(), wait),
            )
        })
        .collect();
    if let Some((bin, copy)) = &baseline {
        let at = |role: &str| at(copy.as_os_str(), role);
        rows.push((
            format!("exit_hook at {}", Path::new(bin).display()),
            at("peer_short_exit_hook"),
            at("peer_wait_exit_hook"),
        ));
    }
    let mut short = vec![Vec::with_capacity(rounds); rows.len()];
    let mut signal = vec![Vec::with_capacity(rounds); rows.len()];
    let mut order: Vec<usize> = (0..rows.len() * 2).collect();
    let mut random = Random::seeded();
    for _ in 0..rounds {
        random.shuffle(&mut order);
        for &slot in &order {
            let (i, kind) = (slot / 2, slot % 2);
            let (_, short_program, waiting_program) = &mut rows[i];
            if kind == 0 {
                short[i].push(short_lived::measure(short_program));
            } else {
                let (elapsed, _) = measure_signal_after(waiting_program, SETTLE);
                signal[i].push(elapsed);
            }
        }
    }
    let short: Vec<Duration> = short.iter_mut().map(|s| median(s)).collect();
    let signal: Vec<Duration> = signal.iter_mut().map(|s| median(s)).collect();
    let added = |i: usize| (short[i].as_secs_f64() - short[0].as_secs_f64()) * 1e6;
    println!("\nexit_hook beside its peers, {rounds} shuffled interleaved rounds");
    println!("| what the user picks | short-lived CLI: median | added | SIGTERM → reaped |");
    println!("|---|---|---|---|");
    for (i, (name, _, _)) in rows.iter().enumerate() {
        let added = if i == 0 {
            "—".to_owned()
        } else {
            format!("{:+.0} µs", added(i))
        };
        println!(
            "| {name} | {} | {added} | {} |",
            ms(short[i]),
            ms(signal[i])
        );
    }
    let peers = 1..EXIT_HOOK;
    let best_added = peers.clone().map(added).fold(f64::INFINITY, f64::min);
    let best_signal = peers
        .map(|i| signal[i].as_secs_f64())
        .fold(f64::INFINITY, f64::min);
    println!(
        "\ngoal (≤ 1.00 on both): exit_hook's added cost ÷ the best peer's: {:.2}; \
         its SIGTERM → reaped ÷ the best peer's: {:.2}",
        added(EXIT_HOOK) / best_added,
        signal[EXIT_HOOK].as_secs_f64() / best_signal
    );
}

/// A copy of `bin` beside this benchmark's binary, named with `suffix`.
fn fresh_copy(bin: &Path, suffix: &str) -> PathBuf {
    let copy = std::env::current_exe().unwrap().with_extension(suffix);
    std::fs::copy(bin, &copy).expect("copying a benchmark binary");
    copy
}

/// The child's side: `peer_short_*` sets up, prints `hello` and returns;
/// `peer_wait_*` sets up, prints `READY` and waits for SIGTERM.
pub fn run(role: &str) -> bool {
    let (peer, short) = match (
        role.strip_prefix("peer_short_"),
        role.strip_prefix("peer_wait_"),
    ) {
        (Some(peer), _) => (peer, true),
        (_, Some(peer)) => (peer, false),
        _ => return false,
    };
    let say = if short { "hello" } else { "READY" };
    match peer {
        // The async peers wait on their runtime.
        "tokio" => tokio_signal(say, short),
        "tgs" => graceful_shutdown(say, short),
        _ => {
            set_up(peer);
            println!("{say}");
            if !short {
                idle();
            }
        }
    }
    true
}

/// Sets up a peer whose handling runs on a thread of its own.
fn set_up(peer: &str) {
    match peer {
        "none" => {}
        "ctrlc" => ctrlc::set_handler(|| std::process::exit(143)).unwrap(),
        "signal_hook" => {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let mut signals =
                signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).unwrap();
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    std::process::exit(128 + signal);
                }
            });
        }
        "exit_hook" => {
            exit_hook::add(|_| {});
        }
        _ => panic!("unknown peer {peer}"),
    }
}

fn idle() -> ! {
    loop {
        std::thread::park();
    }
}

/// The tokio habit: a current-thread runtime, a task that waits for the
/// signals and exits with 128 + n.
#[tokio::main(flavor = "current_thread")]
async fn tokio_signal(say: &str, short: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).unwrap();
    let mut interrupt = signal(SignalKind::interrupt()).unwrap();
    let mut hangup = signal(SignalKind::hangup()).unwrap();
    let waiting = tokio::spawn(async move {
        let code = tokio::select! {
            _ = terminate.recv() => 143,
            _ = interrupt.recv() => 130,
            _ = hangup.recv() => 129,
        };
        std::process::exit(code);
    });
    println!("{say}");
    if !short {
        let _ = waiting.await;
    }
}

/// tokio-graceful-shutdown: the program is one subsystem of a `Toplevel`
/// that catches the signals.
#[tokio::main(flavor = "current_thread")]
async fn graceful_shutdown(say: &'static str, short: bool) {
    use tokio_graceful_shutdown::{SubsystemBuilder, SubsystemHandle, Toplevel};
    let result = Toplevel::new(async move |s: &mut SubsystemHandle| {
        s.start(SubsystemBuilder::new(
            "program",
            async move |handle: &mut SubsystemHandle| -> Result<(), std::io::Error> {
                println!("{say}");
                if !short {
                    handle.on_shutdown_requested().await;
                }
                Ok(())
            },
        ));
    })
    .catch_signals()
    .handle_shutdown_requests(Duration::from_secs(10))
    .await;
    result.unwrap();
}

/// A small xorshift generator for the order of each round.
struct Random(u64);

impl Random {
    fn seeded() -> Self {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Random(time | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher–Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
