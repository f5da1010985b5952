//! The workers keepalive supervises in these tests, as the real `main` of
//! this binary run again with a role: split as the test files that drive
//! them (`operations/` keeps its workers beside their tests).

use std::thread;

use exit_hook::HookHandle;

#[cfg(target_os = "linux")]
mod cluster;
mod supervisor;

pub(crate) use supervisor::starts_before;

/// Runs the worker `role`. Returning returns from `main`.
pub fn run(role: &str) {
    let known = supervisor::run_role(role) || linux_role(role);
    assert!(known, "unknown role {role}");
}

#[cfg(target_os = "linux")]
fn linux_role(role: &str) -> bool {
    cluster::run_role(role)
        || crate::operations::run_role(role)
        || crate::control::run_role(role)
        || crate::hostile::run_role(role)
}

#[cfg(not(target_os = "linux"))]
fn linux_role(_: &str) -> bool {
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
