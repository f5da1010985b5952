//! The conformance suite: every line of the contract, shown in a real child
//! process with real signals and real exit statuses.
//!
//! `cargo test --test conformance` runs it like any test target (filters
//! work: `cargo test --test conformance -- sigterm`). With `EXIT_HOOK_ROLE`
//! set, the binary instead runs that scenario as its `main` (see `child.rs`).

mod child;
mod harness;
mod http;
mod reentrancy;
mod run;
mod triggers;

use libtest_mimic::Arguments;

fn main() {
    if let Ok(role) = std::env::var(harness::ROLE) {
        child::run(&role);
        return;
    }
    let tests = [
        triggers::tests(),
        run::tests(),
        reentrancy::tests(),
        http::tests(),
    ]
    .into_iter()
    .flatten()
    .collect();
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
