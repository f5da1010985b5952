//! Panics that misbehave: a payload whose `Drop` panics, and an application
//! that replaces the panic hook after installing (as crash reporters do).

use libtest_mimic::Trial;

use crate::child::{ready, wait_forever};
use crate::harness::{Child, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        a_panic_payload_whose_drop_panics_does_not_skip_later_hooks,
        an_apps_own_panic_hook_that_calls_handle_panic_runs_the_hooks,
        an_apps_own_panic_hook_alone_turns_the_panic_trigger_off,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        payload_drop_panics,
        own_panic_hook => own_panic_hook(true),
        own_panic_hook_alone => own_panic_hook(false),
    }
}

/// Panics when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panicked");
    }
}

fn payload_drop_panics() {
    exit_hook::add(|_| println!("a"));
    exit_hook::add(|_| std::panic::panic_any(Bomb));
    exit_hook::add_async(|_| async { std::panic::panic_any(Bomb) });
    exit_hook::add(|_| println!("c"));
    ready();
    wait_forever();
}

fn a_panic_payload_whose_drop_panics_does_not_skip_later_hooks() {
    let outcome = terminate("payload_drop_panics");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["a", "c"], "{outcome:#?}");
}

/// Installs, then replaces the panic hook (calling `handle_panic` or not),
/// and panics on a spawned thread; `main` returns once that thread is done.
fn own_panic_hook(calls_handle_panic: bool) {
    exit_hook::add(|exit| println!("hook: {exit}"));
    std::panic::set_hook(Box::new(move |info| {
        println!("the app's panic hook");
        if calls_handle_panic {
            exit_hook::handle_panic(info);
        }
    }));
    let _ = std::thread::spawn(|| panic!("worker boom")).join();
    println!("main returns");
}

fn an_apps_own_panic_hook_that_calls_handle_panic_runs_the_hooks() {
    let outcome = Child::spawn("own_panic_hook").finish();
    outcome.assert_code(101);
    let lines: Vec<_> = outcome
        .stdout
        .iter()
        .filter(|line| *line != "main returns") // main may get there first
        .collect();
    assert!(
        lines.len() == 2
            && lines[0] == "the app's panic hook"
            && lines[1].starts_with(
                "hook: thread '<unnamed>' panicked at checks/tests/conformance/real_life/panics.rs:"
            )
            && lines[1].ends_with(": worker boom, exit status 101"),
        "{outcome:#?}"
    );
}

/// What the docs say: without `handle_panic`, a thread's panic runs
/// nothing; the hooks run later, when `main` returns.
fn an_apps_own_panic_hook_alone_turns_the_panic_trigger_off() {
    let outcome = Child::spawn("own_panic_hook_alone").finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout,
        [
            "the app's panic hook",
            "main returns",
            "hook: process exit, exit status 0"
        ],
        "{outcome:#?}"
    );
}
