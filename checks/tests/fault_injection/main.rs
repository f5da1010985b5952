//! Fault injection: the contract under randomized storms, faults and timing.
//!
//! ```text
//! cargo test --test fault_injection                          # 100 runs
//! EXIT_HOOK_FAULT_RUNS=1000 cargo test --test fault_injection
//! EXIT_HOOK_FAULT_SEED=42 cargo test --test fault_injection  # replay a seed
//! ```
//!
//! Each run draws a scenario from a seeded generator: a mix of hooks (ok,
//! slow, panicking, hanging, registering more hooks, calling
//! `exit_hook::exit` or `std::process::exit`, forking a child that returns
//! into the run, signalling their own process, unregistering another hook
//! from their closure's `Drop`), a trigger (a signal, a storm of mixed
//! signals, a signal while hooks register, panics on one or many threads, a
//! panic holding a lock the hooks need, a panic under the application's own
//! panic hook, `main` returning, `std::process::exit`, `exit_hook::exit`, a
//! panic during a signal run, a signal during a panic run, `main` returning
//! or another thread calling `std::process::exit` during a signal run), a
//! deadline and force on or off. The child (this binary again, with the
//! scenario in `EXIT_HOOK_FAULT`) sets it up; the driver sends the signals.
//!
//! Every run is checked: no hook line twice; the hooks the contract says must
//! run did; the status is one the contract allows; no abort and no death by
//! a signal; no run longer than its deadline plus a margin. The totals, the
//! distribution of (exit − deadline) for runs cut at the deadline, and every
//! failure with its scenario are printed.

#[cfg(unix)]
#[allow(
    dead_code,
    reason = "the conformance suite's harness; this suite uses part of it"
)]
#[path = "../conformance/harness.rs"]
mod harness;

#[cfg(unix)]
fn main() {
    if let Ok(spec) = std::env::var("EXIT_HOOK_FAULT") {
        child::run(&scenario::Scenario::parse(&spec));
    } else {
        driver::main();
    }
}

#[cfg(not(unix))]
fn main() {
    println!("the fault-injection suite runs on Unix");
}

#[cfg(unix)]
mod scenario;

#[cfg(unix)]
mod child;

#[cfg(unix)]
mod driver;
