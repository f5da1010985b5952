//! Exit guards held by the application's own code, and how they meet the
//! other triggers: a second signal, a panic, `main` returning, guards taken
//! during and after the run, a guard never released.

use std::thread;
use std::time::Duration;

use exit_hook::{Builder, Phase};
use libtest_mimic::Trial;

use super::{PROMPT, wait_until_exiting};
use crate::child::{install, ready, wait_forever};
use crate::harness::{Child, build_example, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        guard_in_tokio_main_holds_the_exit_for_its_own_cleanup,
        guard_example_cleans_up_in_main_and_exits_130,
        second_signal_ends_the_process_while_a_guard_is_held,
        panic_run_waits_for_a_guard_and_keeps_101,
        guard_taken_during_the_run_holds_it,
        guard_taken_after_the_run_holds_nothing,
        guard_held_by_a_thread_holds_the_run_main_returning_starts,
        guard_never_released_holds_only_the_drain,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        guard_in_main,
        guard_second_signal,
        guard_panic,
        guard_late,
        guard_after_run,
        guard_thread_main_returns,
        guard_leaked,
    }
}

fn guard_in_tokio_main_holds_the_exit_for_its_own_cleanup() {
    let outcome = terminate("guard_in_main");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        [
            "drain hook",
            "main: cleanup done",
            "flush hook: SIGTERM (15), exit status 143"
        ]
    );
    outcome.assert_elapsed(..PROMPT);
}

/// The `CancellationToken` habit: `main` awaits `exiting()`, then cleans up
/// itself; the guard keeps the process alive until `main` is done.
#[tokio::main]
async fn guard_in_main() {
    let _running = exit_hook::hold_exit();
    exit_hook::in_phase(Phase::Drain).add(|_| println!("drain hook"));
    exit_hook::in_phase(Phase::Flush).add(|exit| println!("flush hook: {exit}"));
    ready();
    exit_hook::exiting().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("main: cleanup done");
}

/// `examples/05_guard.rs`, as a user runs it: Ctrl+C (SIGINT), then main's
/// own cleanup, then the flush hook, then 130.
fn guard_example_cleans_up_in_main_and_exits_130() {
    let example = std::process::Command::new(build_example("05_guard", None));
    let mut child = Child::spawn_with(example, "");
    child.wait_line("serving", |l| l.starts_with("serving as pid"));
    child.send(libc::SIGINT);
    let outcome = child.finish();
    outcome.assert_code(130);
    let lines = &outcome.stdout[1..];
    assert_eq!(lines.len(), 3, "{outcome:#?}");
    assert!(
        lines[0].starts_with("main: stopped taking jobs after "),
        "{outcome:#?}"
    );
    assert_eq!(lines[1], "main: cleanup done");
    assert_eq!(
        lines[2],
        "flush hook: logs flushed (SIGINT (2), exit status 130)"
    );
    outcome.assert_elapsed(Duration::from_millis(250)..);
    outcome.assert_elapsed(..PROMPT);
}

fn second_signal_ends_the_process_while_a_guard_is_held() {
    let outcome = Child::spawn("guard_second_signal")
        .ready()
        .signal(libc::SIGTERM)
        .wait_for("run started")
        .signal(libc::SIGINT)
        .finish();
    outcome.assert_code(130);
    assert_eq!(
        outcome.after_ready(),
        ["run started"],
        "the held hook never ran"
    );
    assert_eq!(
        outcome.crate_lines(),
        ["exit_hook: SIGINT (2) during the shutdown run: exiting now with status 130"]
    );
    outcome.assert_elapsed(..PROMPT);
}

fn guard_second_signal() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    let _running = exit_hook::hold_exit();
    exit_hook::add(|_| println!("cleanup hook ran"));
    ready();
    wait_until_exiting();
    println!("run started");
    wait_forever();
}

fn panic_run_waits_for_a_guard_and_keeps_101() {
    let outcome = Child::spawn("guard_panic").finish();
    outcome.assert_code(101);
    assert_eq!(outcome.stdout, ["main: releasing", "flush: code Some(101)"]);
    outcome.assert_elapsed(..PROMPT);
}

fn guard_panic() {
    let guard = exit_hook::hold_exit();
    exit_hook::in_phase(Phase::Flush).add(|exit| println!("flush: code {:?}", exit.code()));
    thread::spawn(|| {
        thread::sleep(Duration::from_millis(50));
        panic!("worker boom");
    });
    wait_until_exiting();
    thread::sleep(Duration::from_millis(200));
    println!("main: releasing");
    drop(guard);
    wait_forever();
}

fn guard_taken_during_the_run_holds_it() {
    let outcome = terminate("guard_late");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        [
            "late guard holds: true",
            "drain hook done",
            "late guard released",
            "cleanup hook"
        ]
    );
}

/// The guard is taken after the run started, while its drain hook (300 ms)
/// runs, and released after 600 ms: the cleanup hook waits for it.
fn guard_late() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    exit_hook::in_phase(Phase::Drain).add(|_| {
        thread::sleep(Duration::from_millis(300));
        println!("drain hook done");
    });
    exit_hook::add(|_| println!("cleanup hook"));
    ready();
    wait_until_exiting();
    let late = exit_hook::hold_exit();
    println!("late guard holds: {}", late.is_holding());
    thread::sleep(Duration::from_millis(600));
    println!("late guard released");
    drop(late);
    wait_forever();
}

fn guard_taken_after_the_run_holds_nothing() {
    let outcome = Child::spawn("guard_after_run").finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout,
        [
            "a: process exit, exit status 0",
            "guard after the run holds: false"
        ]
    );
}

fn guard_after_run() {
    extern "C" fn late() {
        let guard = exit_hook::hold_exit();
        println!("guard after the run holds: {}", guard.is_holding());
    }
    // Registered before the crate's handler, so the C library calls it after.
    // SAFETY: `late` is a valid exit handler for the whole process.
    assert_eq!(unsafe { libc::atexit(late) }, 0);
    exit_hook::add(|exit| println!("a: {exit}"));
}

fn guard_held_by_a_thread_holds_the_run_main_returning_starts() {
    let outcome = Child::spawn("guard_thread_main_returns").finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout,
        ["worker: done", "flush: process exit, exit status 0"]
    );
    outcome.assert_elapsed(..PROMPT);
}

/// `main` returns at once; a worker thread holds a guard and finishes its
/// work once the run (started by the return) is under way.
fn guard_thread_main_returns() {
    let guard = exit_hook::hold_exit();
    exit_hook::in_phase(Phase::Flush).add(|exit| println!("flush: {exit}"));
    thread::spawn(move || {
        wait_until_exiting();
        thread::sleep(Duration::from_millis(200));
        println!("worker: done");
        drop(guard);
    });
}

fn guard_never_released_holds_only_the_drain() {
    let outcome = terminate("guard_leaked");
    outcome.assert_code(143);
    let guard = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("guard: "))
        .unwrap()
        .to_owned();
    // The drain's time is 3/5 of the 500 ms deadline: then the close hook.
    assert_eq!(outcome.after_ready(), ["close hook ran"], "{outcome:#?}");
    assert_eq!(
        outcome.crate_lines(),
        [format!(
            "exit_hook: the drain phase's time is up with 1 exit guard(s) held, taken at: {guard}; \
             the run goes on"
        )]
    );
    outcome.assert_elapsed(Duration::from_millis(280)..);
    outcome.assert_elapsed(..PROMPT);
}

fn guard_leaked() {
    install(Builder::new().timeout(Duration::from_millis(500)));
    let guard = exit_hook::hold_exit();
    println!("guard: {}", guard.location());
    std::mem::forget(guard);
    exit_hook::in_phase(Phase::Close).add(|_| println!("close hook ran"));
    ready();
    wait_forever();
}
