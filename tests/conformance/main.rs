//! The conformance suite: every line of the contract, shown in a real child
//! process with real signals and real exit statuses.
//!
//! `cargo test --test conformance` runs it like any test target (filters
//! work: `cargo test --test conformance -- sigterm`). With `EXIT_HOOK_ROLE`
//! set, the binary instead runs that scenario as its `main` (see `child.rs`).

#![cfg_attr(not(unix), allow(unused))]

#[cfg(unix)]
mod apps;
#[cfg(unix)]
mod child;
#[cfg(unix)]
mod harness;
#[cfg(unix)]
mod http;
#[cfg(unix)]
mod http_client;
#[cfg(unix)]
mod real_life;
#[cfg(unix)]
mod reentrancy;
#[cfg(unix)]
mod run;
#[cfg(target_os = "linux")]
mod systemd;
#[cfg(unix)]
mod triggers;

#[cfg(unix)]
use libtest_mimic::Arguments;

/// kill(2), death by signal and `unshare` are Unix; Windows has its own
/// suite (`tests/windows_smoke.rs`, run under wine).
#[cfg(not(unix))]
fn main() {
    println!("the conformance suite runs on Unix; see tests/windows_smoke.rs");
}

#[cfg(unix)]
fn main() {
    if let Ok(role) = std::env::var(harness::ROLE) {
        child::run(&role);
        return;
    }
    harness::default_signal_dispositions();
    #[allow(unused_mut, reason = "extended on Linux")]
    let mut tests: Vec<libtest_mimic::Trial> = [
        triggers::tests(),
        run::tests(),
        reentrancy::tests(),
        http::tests(),
        apps::tests(),
        real_life::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
    #[cfg(target_os = "linux")]
    tests.extend(systemd::tests());
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
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
