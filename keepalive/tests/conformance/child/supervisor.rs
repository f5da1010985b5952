//! The programs `supervisor.rs` supervises: they crash, spin, ignore
//! SIGTERM or exit with a status.

use std::thread;
use std::time::Duration;

use super::{hook, ready, wait_forever};

/// Runs the scenario `role` if it is one of this file's; `false` if not.
pub fn run_role(role: &str) -> bool {
    match role {
        "crash_twice" => crash_twice(),
        "spin" => {
            println!("start {}", monotonic_ms());
            std::process::exit(1);
        }
        "crash_after_60ms" => {
            println!("start {}", monotonic_ms());
            thread::sleep(Duration::from_millis(60));
            std::process::exit(1);
        }
        "ignore_term" => {
            // SAFETY: setting SIGTERM's disposition to ignore, before any thread exists.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            ready();
            wait_forever();
        }
        "exit_3" => std::process::exit(3),
        "hooks" => {
            // A sync hook and an async one: the forwarded signal reaches both.
            hook("a");
            exit_hook::add_async(|exit| async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                println!(
                    "b: {exit} signal={:?} code={:?}",
                    exit.signal().map(exit_hook::Signal::as_raw),
                    exit.code()
                );
            });
            ready();
            wait_forever();
        }
        "slow_hook" => {
            // exit_hook's deadline (4 s) is longer than keepalive's kill
            // timeout: with STOPPING=1 it says EXTEND_TIMEOUT_USEC=.
            exit_hook::Builder::new()
                .timeout(Duration::from_secs(4))
                .install()
                .unwrap();
            exit_hook::add(|exit| {
                thread::sleep(Duration::from_millis(1500));
                println!("slow hook done: {exit}");
            });
            ready();
            wait_forever();
        }
        _ => return false,
    }
    true
}

/// CLOCK_MONOTONIC in milliseconds, comparable across processes.
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// How many times this scenario started before, counted in the file
/// `EXIT_HOOK_STATE` (this start included in the file from now on).
pub(crate) fn starts_before() -> u32 {
    let state = std::env::var("EXIT_HOOK_STATE").expect("EXIT_HOOK_STATE");
    let starts: u32 = std::fs::read_to_string(&state)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    std::fs::write(&state, (starts + 1).to_string()).unwrap();
    starts
}

/// Exits with 1 after 100 ms the first two times (counted in the file
/// `EXIT_HOOK_STATE`), then registers a hook and waits.
fn crash_twice() {
    let runs = starts_before();
    if runs < 2 {
        thread::sleep(Duration::from_millis(100));
        println!("crash {runs}");
        std::process::exit(1);
    }
    hook("child");
    ready();
    wait_forever();
}
