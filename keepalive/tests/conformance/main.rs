//! keepalive's conformance suite: the `keepalive` command supervising real
//! worker processes with real signals, exit statuses read from
//! `ExitStatus`. The workers are this binary run again with a role
//! (`child/`, and beside their tests in `operations/`).
//!
//! `cargo test -p keepalive --test conformance` runs it (filters work:
//! `-- reload`). It shares the library's child-process harness
//! (`checks/tests/conformance/harness.rs`: handshakes, watchdogs, reaping).

#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[cfg(unix)]
mod child;
#[cfg(target_os = "linux")]
mod cluster;
#[cfg(target_os = "linux")]
mod control;
#[cfg(unix)]
#[path = "../../../checks/tests/conformance/harness.rs"]
#[allow(dead_code, reason = "the library's suites use the rest of it")]
mod harness;
#[cfg(target_os = "linux")]
mod hostile;
#[cfg(target_os = "linux")]
#[path = "../../../checks/tests/conformance/http_client.rs"]
mod http;
#[cfg(target_os = "linux")]
mod migration;
#[cfg(target_os = "linux")]
mod node;
#[cfg(target_os = "linux")]
mod operations;
#[cfg(unix)]
mod supervisor;
#[cfg(target_os = "linux")]
mod up;

/// Workers, signals and process groups are Unix; keepalive on Windows only
/// restarts (and is not tested here).
#[cfg(not(unix))]
fn main() {
    println!("keepalive's conformance suite runs on Unix");
}

#[cfg(unix)]
fn main() {
    if let Ok(role) = std::env::var(harness::SCENARIO) {
        child::run(&role);
        return;
    }
    harness::default_signal_dispositions();
    #[allow(unused_mut, reason = "extended on Linux")]
    let mut tests = supervisor::tests();
    #[cfg(target_os = "linux")]
    tests.extend(
        cluster::tests()
            .into_iter()
            .chain(operations::tests())
            .chain(control::tests())
            .chain(up::tests())
            .chain(node::tests())
            .chain(migration::tests())
            .chain(hostile::tests()),
    );
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), tests).exit();
}

/// `trials![f, g]`: a trial per test function, named after it.
#[macro_export]
macro_rules! trials {
    ($($test:path),* $(,)?) => {
        vec![$(libtest_mimic::Trial::test(
            stringify!($test).rsplit("::").next().unwrap(),
            || { $test(); Ok(()) },
        )),*]
    };
}
