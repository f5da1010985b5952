//! Table 0: what a short-lived program pays, exec → reaped.
//!
//! Every variant is this binary run with a role (so the image, its size and
//! its dynamic linking are the same); the plain program prints `hello` and
//! returns from `main`. The floors are what any design with a thread that
//! could keep a deadline pays: one parked thread spawned at start, woken at
//! exit and waited for. The crate's variants register one hook and return
//! (or call `exit_hook::exit(0)`). Interleaved rounds, medians; "added" is
//! over the plain program in the same run, and the ratio is the crate's
//! added time over the "wake one parked thread" floor's.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{median, ms, this};

/// (name, role): the plain program, the floors, then the crate's variants.
const VARIANTS: [(&str, &str); 7] = [
    ("prints `hello`, returns", "short_plain"),
    ("same, after spawning one parked thread", "short_parked"),
    (
        "same, then at exit waking that thread and waiting for its answer (the floor)",
        "short_wake",
    ),
    (
        "same, then at exit spawning and joining a second thread",
        "short_spawn",
    ),
    ("with `exit_hook::add(|_| {})`", "short_sync_hook"),
    ("with one `exit_hook::add_async` hook", "short_async_hook"),
    ("with one hook, then `exit_hook::exit(0)`", "short_exit"),
];

const FLOOR: usize = 2;

pub fn exec_to_reaped(rounds: usize) {
    let mut samples = vec![Vec::with_capacity(rounds); VARIANTS.len()];
    for _ in 0..rounds {
        for (i, (_, role)) in VARIANTS.iter().enumerate() {
            samples[i].push(measure(&mut this(role)));
        }
    }
    let medians: Vec<Duration> = samples.iter_mut().map(|s| median(s)).collect();
    let plain = medians[0];
    let added = |i: usize| medians[i].as_secs_f64() - plain.as_secs_f64();
    println!("\nexec → reaped, short-lived programs, {rounds} interleaved rounds");
    println!("| program | median | added | added ÷ floor's added |");
    println!("|---|---|---|---|");
    for (i, (name, _)) in VARIANTS.iter().enumerate() {
        let ratio = if i == 0 {
            "—".to_owned()
        } else {
            format!("{:.2}", added(i) / added(FLOOR))
        };
        println!(
            "| {name} | {} | {:+.0} µs | {ratio} |",
            ms(medians[i]),
            added(i) * 1e6
        );
    }
}

/// From spawn to reaped; the program must exit 0.
pub(super) fn measure(command: &mut Command) -> Duration {
    let started = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("the short-lived child");
    let elapsed = started.elapsed();
    assert!(status.success(), "{command:?}: {status}");
    elapsed
}

/// The child's side of each role.
pub fn run(role: &str) -> bool {
    use std::sync::mpsc;
    use std::thread;

    match role {
        "short_plain" => {}
        "short_parked" => {
            thread::spawn(thread::park);
        }
        "short_wake" | "short_spawn" => {
            let (ask, asked) = mpsc::channel::<()>();
            let (answer, answered) = mpsc::channel::<()>();
            thread::spawn(move || {
                if asked.recv().is_ok() {
                    let _ = answer.send(());
                }
            });
            println!("hello");
            if role == "short_wake" {
                ask.send(()).unwrap();
                answered.recv().unwrap();
            } else {
                thread::spawn(|| {}).join().unwrap();
            }
            return true;
        }
        "short_sync_hook" => {
            exit_hook::add(|_| {});
        }
        "short_async_hook" => {
            exit_hook::add_async(|_| async {});
        }
        "short_exit" => {
            exit_hook::add(|_| {});
            println!("hello");
            exit_hook::exit(0);
        }
        _ => return false,
    }
    println!("hello");
    true
}
