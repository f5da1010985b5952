//! The child side of the suite: a test file's scenarios are beside its
//! tests (each file's `scenarios()`, gathered in `main.rs`); here are the
//! one that picks a scenario by name and the helpers they share.
//!
//! Each scenario prints what its hooks see on stdout, one line per event,
//! and `READY` once it is set up and waiting for the parent's signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use exit_hook::{Builder, HookHandle};

/// Runs the scenario named `name` as this process's `main`. Returning
/// returns from `main`.
pub fn run(name: &str) {
    let scenarios = crate::every_scenario();
    let Some((_, scenario)) = scenarios.iter().find(|(known, _)| *known == name) else {
        let known: Vec<_> = scenarios.iter().map(|(known, _)| *known).collect();
        panic!("no scenario {name:?}; the scenarios are {known:?}");
    };
    scenario();
}

/// Installs a 30 s deadline and a sync hook that prints `started(exit)`,
/// runs 500 ms and prints `done`; says `READY`, and returns once a run has
/// started that hook (so the caller acts while it runs).
pub fn ready_then_wait_for_a_slow_hook(
    started: fn(&exit_hook::Exit) -> String,
    done: &'static str,
) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    install(Builder::new().timeout(Duration::from_secs(30)));
    exit_hook::add(move |exit| {
        println!("{}", started(exit));
        STARTED.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(500));
        println!("{done}");
    });
    ready();
    while !STARTED.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
}

/// A sync hook that prints `name: <exit>`.
#[track_caller]
pub fn hook(name: &'static str) -> HookHandle {
    exit_hook::add(move |exit| println!("{name}: {exit}"))
}

pub fn ready() {
    println!("READY");
}

pub fn wait_forever() -> ! {
    loop {
        thread::park();
    }
}

pub fn install(builder: Builder) {
    builder.install().expect("install");
}

/// A hook for panic runs: prints what the run was told about the panic.
pub fn describe_panic(exit: &exit_hook::Exit) {
    let panic = exit.panic().expect("a panic run");
    println!(
        "panic: message={} thread={:?} located={} error={} code={:?}",
        panic.message(),
        panic.thread(),
        panic
            .location()
            .is_some_and(|l| l.contains("tests/conformance/")),
        exit.error().is_some(),
        exit.code()
    );
}
