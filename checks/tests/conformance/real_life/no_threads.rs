//! No thread can be created any more (a pids cgroup or RLIMIT_NPROC
//! exhausted) when the process ends: every trigger still runs every hook,
//! on the crate's signal thread, which exists since install (issue 30
//! §4.1). An `LD_PRELOAD` shim (`no_threads.c`, built with `cc`) makes
//! `pthread_create` fail with EAGAIN once the scenario, set up, says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use exit_hook::{Builder, Phase};
use libtest_mimic::Trial;

use crate::child::{hook, install, ready, wait_forever};
use crate::harness::{Child, Outcome};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        no_thread_signal_runs_every_hook,
        no_thread_start_exit_runs_every_hook,
        no_thread_panic_runs_every_hook,
        no_thread_exit_runs_every_hook,
        no_thread_main_returning_runs_every_hook,
        no_thread_signal_still_keeps_the_deadline,
    ]
}

pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        no_threads_signal,
        no_threads_start_exit,
        no_threads_panic,
        no_threads_exit,
        no_threads_returns,
        no_threads_stuck_hook,
    }
}

fn no_thread_signal_runs_every_hook() {
    let mut child = spawn("no_threads_signal");
    child.wait_line("READY", |l| l == "READY");
    child.send(libc::SIGTERM);
    every_hook_ran(child.finish(), 143);
}

fn no_thread_start_exit_runs_every_hook() {
    every_hook_ran(spawn("no_threads_start_exit").finish(), 3);
}

fn no_thread_panic_runs_every_hook() {
    every_hook_ran(spawn("no_threads_panic").finish(), 101);
}

fn no_thread_exit_runs_every_hook() {
    every_hook_ran(spawn("no_threads_exit").finish(), 4);
}

fn no_thread_main_returning_runs_every_hook() {
    every_hook_ran(spawn("no_threads_returns").finish(), 0);
}

/// The signal thread runs the hooks itself, so no thread keeps the
/// deadline beside it: an alarm does, and a stuck hook is cut at it.
fn no_thread_signal_still_keeps_the_deadline() {
    let mut child = spawn("no_threads_stuck_hook");
    child.wait_line("READY", |l| l == "READY");
    child.send(libc::SIGTERM);
    let outcome = child.finish();
    assert_eq!(outcome.after_ready(), ["stuck hook"]);
    outcome.assert_code(143);
    outcome.assert_elapsed(Duration::from_millis(500)..Duration::from_secs(8));
    assert!(
        outcome.stderr.contains("deadline"),
        "the deadline is reported: {}",
        outcome.stderr
    );
}

/// The sync, async and Flush hooks each ran once, in order, and the
/// process exited with `code`.
fn every_hook_ran(outcome: Outcome, code: i32) {
    assert!(
        !outcome.stderr.contains("could not run"),
        "{}",
        outcome.stderr
    );
    outcome.assert_code(code);
    let lines = outcome.after_ready();
    let names: Vec<&str> = lines
        .iter()
        .map(|line| line.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sync hook", "async hook", "flush hook"],
        "{lines:?}\n{}",
        outcome.stderr
    );
}

/// Spawns `scenario` with the shim preloaded.
fn spawn(scenario: &str) -> Child {
    let flag = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("no_threads_{scenario}"));
    let _ = std::fs::remove_file(&flag);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env("LD_PRELOAD", shim())
        .env("EXIT_HOOK_NO_THREADS", &flag);
    Child::spawn_with(command, scenario)
}

/// The shim, built once per suite run.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let shim = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no_threads.so");
        let source = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/real_life/no_threads.c"
        );
        let built = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&shim)
            .args([source, "-ldl"])
            .status()
            .expect("cc builds the pthread_create shim (Debian: apt-get install gcc)");
        assert!(built.success(), "cc {source}: {built}");
        shim
    })
}

// The scenarios: a sync hook, an async hook and a Flush hook, then no
// thread can start, then the trigger.

fn no_threads_signal() {
    hooks_then_no_threads();
    ready();
    wait_forever()
}

fn no_threads_start_exit() {
    hooks_then_no_threads();
    ready();
    exit_hook::start_exit(3);
    wait_forever()
}

fn no_threads_panic() {
    hooks_then_no_threads();
    ready();
    panic!("boom");
}

fn no_threads_exit() {
    hooks_then_no_threads();
    ready();
    exit_hook::exit(4)
}

fn no_threads_returns() {
    hooks_then_no_threads();
    ready();
}

fn no_threads_stuck_hook() {
    install(Builder::new().timeout(Duration::from_secs(1)));
    exit_hook::add(|_| {
        println!("stuck hook");
        wait_forever()
    });
    no_more_threads();
    ready();
    wait_forever()
}

fn hooks_then_no_threads() {
    install(Builder::new().timeout(Duration::from_secs(5)));
    hook("sync hook");
    exit_hook::add_async(|exit| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        println!("async hook: {exit}");
    });
    exit_hook::in_phase(Phase::Flush).add(|exit| println!("flush hook: {exit}"));
    no_more_threads();
}

/// From now on `pthread_create` fails in this process.
fn no_more_threads() {
    let flag = std::env::var_os("EXIT_HOOK_NO_THREADS").expect("spawned with the shim");
    std::fs::write(&flag, b"").unwrap();
    let spawned = std::thread::Builder::new().spawn(|| {});
    assert!(spawned.is_err(), "the shim makes pthread_create fail");
}
