//! The scenarios of `reentrancy.rs`: hooks that end the process, triggers
//! that race, storms.

use std::thread;
use std::time::Duration;

use exit_hook::Builder;

use super::{describe_panic, hook, install, ready, ready_then_wait_for_a_slow_hook, wait_forever};

/// Runs the scenario `role` if it is one of this file's; `false` if not.
pub fn run_role(role: &str) -> bool {
    match role {
        "hook_exit" => hook_exits(|| exit_hook::exit(9)),
        "hook_process_exit" => hook_exits(|| std::process::exit(9)),
        "hook_process_exit_on_return" => hook_process_exit_on_return(),
        "storm" => storm(),
        "panic_storm" => panic_storm(),
        "signal_during_panic" => signal_during_panic(),
        "return_during_signal_run" => during_signal_run(|| {}),
        "exit_during_signal_run" => during_signal_run(|| std::process::exit(5)),
        _ => return false,
    }
    true
}

fn hook_exits(end: fn()) {
    install(Builder::new().timeout(Duration::from_secs(30)));
    hook("a");
    exit_hook::add(move |_| {
        println!("b");
        end();
        println!("b returned");
    });
    hook("c");
    ready();
    wait_forever();
}

fn hook_process_exit_on_return() {
    install(Builder::new().timeout(Duration::from_secs(1)));
    hook("a");
    exit_hook::add(|_| {
        println!("b");
        std::process::exit(9);
    });
    hook("c");
}

fn storm() {
    install(
        Builder::new()
            .force_on_second_signal(false)
            .timeout(Duration::from_secs(10)),
    );
    exit_hook::add(|exit| {
        println!("a: {exit}");
        thread::sleep(Duration::from_millis(300));
    });
    ready();
    wait_forever();
}

fn panic_storm() {
    exit_hook::add(describe_panic);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    for i in 0..8 {
        let barrier = barrier.clone();
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                barrier.wait();
                panic!("storm {i}");
            })
            .unwrap();
    }
    wait_forever();
}

fn signal_during_panic() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    exit_hook::add(|exit| {
        println!("started: {}", exit.code().unwrap());
        thread::sleep(Duration::from_secs(60));
    });
    panic!("first");
}

/// A signal starts the run; while its hook runs, `main` does `then` and returns.
fn during_signal_run(then: fn()) {
    ready_then_wait_for_a_slow_hook(|exit| format!("started: {exit}"), "hook done");
    then();
}
