//! The conformance suite: every line of the contract, shown in a real child
//! process with real signals and real exit statuses.
//!
//! `cargo test --test conformance` runs it like any test target (filters
//! work: `cargo test --test conformance -- sigterm`). With `EXIT_HOOK_SCENARIO`
//! set, the binary instead runs that scenario as its `main`: each test
//! file's scenarios are beside its tests, in its `scenarios()` table.

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
    if let Ok(scenario) = std::env::var(harness::SCENARIO) {
        child::run(&scenario);
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

/// A child scenario: its name, and what the child runs as its `main`.
#[cfg(unix)]
pub type Scenario = (&'static str, fn());

/// Every test file's child scenarios, for the child to pick from.
#[cfg(unix)]
fn every_scenario() -> Vec<Scenario> {
    #[allow(unused_mut, reason = "extended on Linux")]
    let mut scenarios: Vec<Scenario> = [
        triggers::scenarios(),
        run::scenarios(),
        reentrancy::scenarios(),
        apps::scenarios(),
        real_life::scenarios(),
    ]
    .into_iter()
    .flatten()
    .collect();
    #[cfg(target_os = "linux")]
    scenarios.extend(systemd::scenarios());
    scenarios
}

/// `scenarios! { f, g => g_with(1) }`: a test file's child scenarios, each
/// named after its function, or given its body after `=>`.
/// `Child::spawn("f")` runs `f` as the child's `main`.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident $(=> $body:expr)?),* $(,)?) => {
        vec![$($crate::scenarios!(@one $name $(=> $body)?)),*]
    };
    (@one $name:ident) => {
        (stringify!($name), (|| { $name(); }) as fn())
    };
    (@one $name:ident => $body:expr) => {
        (stringify!($name), (|| { $body; }) as fn())
    };
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
