//! fork() without exec, after installation and from inside a hook.
//!
//! The contract: a forked child is a process of its own. It inherits the
//! hooks as it inherits `atexit` handlers: its `exit()` and its panics run
//! them in the child. The crate's signal thread does not survive fork, so
//! until the child calls into the crate again (which starts its own), a
//! signal ends the child as the signal's plan says, without hooks. Nothing
//! the child does wakes or changes the parent. A child forked by a hook
//! that returns into the run ends there, with the run's status, and runs
//! no other hook.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use libtest_mimic::Trial;

use super::{fork, reap};
use crate::child::{ready, wait_forever};
use crate::harness::{Child, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        a_forked_child_that_calls_no_crate_function_dies_by_the_signal_alone,
        a_forked_child_that_registers_runs_its_own_run_on_a_signal,
        a_forked_child_that_exits_runs_the_inherited_hooks_in_itself,
        a_child_forked_by_a_hook_that_returns_runs_no_other_hook,
        a_child_forked_by_a_hook_that_exits_keeps_its_status,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        fork_quiet => fork_after_install(|| {}),
        fork_registers => fork_after_install(|| {
            exit_hook::add(|_| println!("the child's own hook"));
        }),
        fork_exits => fork_after_install(|| std::process::exit(6)),
        fork_in_hook_returns => fork_in_hook(|| {}),
        fork_in_hook_exits => fork_in_hook(|| std::process::exit(4)),
    }
}

static PARENT: AtomicU32 = AtomicU32::new(0);

fn who() -> &'static str {
    if std::process::id() == PARENT.load(Ordering::Relaxed) {
        "parent"
    } else {
        "child"
    }
}

/// Registers a hook, forks, and has the child do `in_child` and wait; the
/// parent waits for the child to end, says so, and waits for its signal.
fn fork_after_install(in_child: fn()) {
    PARENT.store(std::process::id(), Ordering::Relaxed);
    exit_hook::add(|exit| {
        // One write(2): inside exit() std's stdout is unbuffered, and the
        // pieces of a println! would interleave on the shared pipe with the
        // other process's lines (seen once: "hook in forked 25054").
        let line = format!("hook in {}: {exit}\n", who());
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
    });
    let pid = fork();
    if pid == 0 {
        in_child();
        println!("child ready");
        wait_forever();
    }
    println!("forked {pid}");
    ready();
    println!("child ended: {}", reap(pid));
    println!("parent exiting: {}", exit_hook::is_exiting());
    wait_forever();
}

/// Spawns `scenario`, signals its forked child with SIGTERM (unless it ends by
/// itself), and checks the parent is untouched until its own SIGTERM.
/// Returns the parent's stdout after READY and its stderr.
fn forked_child_then_parent(scenario: &str, signal_child: bool) -> (Vec<String>, String) {
    let mut parent = Child::spawn(scenario);
    // "forked PID" (the parent's) and "child ready" (the child's) come in
    // either order.
    let (mut child, mut child_ready) = (None, !signal_child);
    while child.is_none() || !child_ready {
        let line = parent.wait_line("forked or child ready", |l| {
            l.starts_with("forked ") || l == "child ready"
        });
        match line.strip_prefix("forked ") {
            Some(pid) => child = Some(pid.parse::<i32>().unwrap()),
            None => child_ready = true,
        }
    }
    if signal_child {
        // SAFETY: kill(2) to the scenario's child, which its parent has not reaped.
        assert_eq!(unsafe { libc::kill(child.unwrap(), libc::SIGTERM) }, 0);
    }
    parent.wait_line("child ended", |l| l.starts_with("child ended: "));
    parent.wait_line("parent exiting", |l| l.starts_with("parent exiting: "));
    let outcome = parent.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    // The child's lines may come before the parent's READY.
    let lines = outcome
        .stdout
        .iter()
        .filter(|l| !["READY", "child ready"].contains(&l.as_str()) && !l.starts_with("forked "))
        .cloned()
        .collect();
    (lines, outcome.stderr)
}

fn a_forked_child_that_calls_no_crate_function_dies_by_the_signal_alone() {
    let (lines, stderr) = forked_child_then_parent("fork_quiet", true);
    assert_eq!(
        lines,
        [
            "child ended: exit 143",
            "parent exiting: false",
            "hook in parent: SIGTERM (15), exit status 143",
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains("exit_hook: SIGTERM (15) in a forked child without its exit_hook thread"),
        "{stderr}"
    );
}

fn a_forked_child_that_registers_runs_its_own_run_on_a_signal() {
    let (lines, stderr) = forked_child_then_parent("fork_registers", true);
    assert_eq!(
        lines,
        [
            "hook in child: SIGTERM (15), exit status 143",
            "the child's own hook",
            "child ended: exit 143",
            "parent exiting: false",
            "hook in parent: SIGTERM (15), exit status 143",
        ],
        "{stderr}"
    );
}

fn a_forked_child_that_exits_runs_the_inherited_hooks_in_itself() {
    let (lines, stderr) = forked_child_then_parent("fork_exits", false);
    assert_eq!(
        lines,
        [
            "hook in child: process exit, exit status 6",
            "child ended: exit 6",
            "parent exiting: false",
            "hook in parent: SIGTERM (15), exit status 143",
        ],
        "{stderr}"
    );
}

/// Set once `main` has printed READY and released stdout's lock: a child
/// forked while another thread holds a lock never gets it (as with any
/// fork in a threaded process), so the hook forks only after that.
static PRINTED_READY: AtomicBool = AtomicBool::new(false);

/// A hook forks; its child does `in_child` and returns into the run.
fn fork_in_hook(in_child: fn()) {
    PARENT.store(std::process::id(), Ordering::Relaxed);
    exit_hook::add(move |_| {
        while !PRINTED_READY.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let pid = fork();
        if pid == 0 {
            println!("the hook's child returns");
            in_child();
            return;
        }
        println!("the hook's child ended: {}", reap(pid));
    });
    exit_hook::add(|_| println!("second hook in {}", who()));
    ready();
    PRINTED_READY.store(true, Ordering::Release);
    wait_forever();
}

/// SIGTERM starts the run; the first hook's child ends as `ended` says,
/// and the second hook runs once, in the parent.
fn hook_child_ends(scenario: &str, ended: &str) {
    let outcome = terminate(scenario);
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        [
            "the hook's child returns",
            &format!("the hook's child ended: {ended}"),
            "second hook in parent",
        ],
        "{outcome:#?}"
    );
    assert!(outcome.crate_lines().is_empty(), "{outcome:#?}");
}

fn a_child_forked_by_a_hook_that_returns_runs_no_other_hook() {
    hook_child_ends("fork_in_hook_returns", "exit 143");
}

fn a_child_forked_by_a_hook_that_exits_keeps_its_status() {
    hook_child_ends("fork_in_hook_exits", "exit 4");
}
