//! The scenarios, run as the real `main` of a child process, split as the
//! test files that drive them are: each test file's children are in the
//! file of the same name here (`apps/` and `real_life/` keep theirs beside
//! their tests). What is shared is here.
//!
//! Each scenario prints what its hooks see on stdout, one line per event,
//! and `READY` once it is set up and waiting for the parent's signal.

use std::thread;

use exit_hook::{Builder, HookHandle};

#[cfg(feature = "supervisor")]
mod cluster;
mod reentrancy;
mod run;
mod supervisor;
mod triggers;

/// Runs the scenario `role`. Returning returns from `main`.
pub fn run(role: &str) {
    let known = triggers::run_role(role)
        || run::run_role(role)
        || reentrancy::run_role(role)
        || supervisor::run_role(role)
        || cluster_role(role)
        || crate::apps::run_role(role)
        || crate::real_life::run_role(role);
    assert!(known, "unknown role {role}");
}

#[cfg(feature = "supervisor")]
fn cluster_role(role: &str) -> bool {
    cluster::run_role(role)
}

#[cfg(not(feature = "supervisor"))]
fn cluster_role(_: &str) -> bool {
    false
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
            .is_some_and(|l| l.contains("tests/conformance/child/")),
        exit.error().is_some(),
        exit.code()
    );
}
