//! A signal the application may decline ("Ctrl+C: really stop?",
//! `confirm_exit`): `examples/06_confirm.rs` as a user runs it, answering
//! on its stdin, and scenarios for what the example does not show.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use exit_hook::{Builder, Signal};
use libtest_mimic::Trial;

use super::PROMPT;
use crate::child::{hook, install, ready, wait_forever};
use crate::harness::{Child, Outcome, build_example};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        confirm_example_carries_on_after_n_and_exits_130_after_y,
        confirm_example_exits_130_when_stdin_is_closed,
        confirm_ctrl_c_again_while_asked_forces_130_without_hooks,
        confirm_sigterm_while_ctrl_c_is_asked_exits_143_with_hooks_once,
        confirm_decision_that_panics_exits_as_the_signal,
        confirm_registered_after_install_asks_each_time_until_yes,
        confirm_without_force_ignores_the_signal_again_while_asked,
        confirm_replaced_decision_may_register_one_as_it_drops,
        confirm_child_forked_while_asked_is_asked_again,
        confirm_decision_that_panics_under_panic_abort_exits_as_the_signal,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        confirm_panics,
        confirm_after_install,
        confirm_no_force,
        confirm_replaced_in_drop,
        confirm_fork_while_asked,
    }
}

/// What the example asks, on stderr.
const QUESTION: &str = "the task is not finished, are you sure you want to exit? ";

/// The example, started and working (it prints its first step).
fn example() -> Child {
    let mut child = Child::spawn_answering(
        Command::new(build_example("06_confirm", None)),
        "06_confirm",
    );
    child.wait_line("a step", |l| l.starts_with("step "));
    child
}

/// Sends Ctrl+C's signal and waits for the example's `nth` question.
fn interrupt_and_wait_for_question(child: &mut Child, nth: usize) {
    child.send(libc::SIGINT);
    child.wait_stderr(&format!("question {nth}"), |text| {
        text.matches(QUESTION).count() == nth
    });
}

/// What the example's hook printed. (From a pipe, the answer is not
/// echoed: the hook's line follows the question on the same line.)
fn saved(outcome: &Outcome) -> Vec<String> {
    outcome
        .stderr
        .split("saving the progress")
        .skip(1)
        .map(|rest| format!("saving the progress{}", rest.lines().next().unwrap_or("")))
        .collect()
}

fn confirm_example_carries_on_after_n_and_exits_130_after_y() {
    let mut child = example();
    interrupt_and_wait_for_question(&mut child, 1);
    child.answer("n");
    // It carries on: more steps, and the next Ctrl+C asks again.
    let step = child.wait_line("a step after the answer", |l| l.starts_with("step "));
    child.wait_line("the step after it", |l| l.starts_with("step ") && l != step);
    interrupt_and_wait_for_question(&mut child, 2);
    child.answer("y");
    let outcome = child.finish();
    outcome.assert_code(130);
    assert_eq!(
        saved(&outcome),
        ["saving the progress (SIGINT (2), exit status 130)"],
        "{outcome:#?}"
    );
    outcome.assert_elapsed(..PROMPT);
}

fn confirm_example_exits_130_when_stdin_is_closed() {
    let mut child = example();
    interrupt_and_wait_for_question(&mut child, 1);
    child.close_stdin();
    let outcome = child.finish();
    outcome.assert_code(130);
    assert_eq!(
        saved(&outcome),
        ["saving the progress (SIGINT (2), exit status 130)"]
    );
}

fn confirm_ctrl_c_again_while_asked_forces_130_without_hooks() {
    let mut child = example();
    interrupt_and_wait_for_question(&mut child, 1);
    child.send(libc::SIGINT);
    let outcome = child.finish();
    outcome.assert_code(130);
    assert!(saved(&outcome).is_empty(), "no hook ran: {outcome:#?}");
    assert_eq!(
        outcome.crate_lines(),
        ["exit_hook: SIGINT (2) while its question is pending: exiting now with status 130"],
        "{outcome:#?}"
    );
    outcome.assert_elapsed(..PROMPT);
}

fn confirm_sigterm_while_ctrl_c_is_asked_exits_143_with_hooks_once() {
    let mut child = example();
    interrupt_and_wait_for_question(&mut child, 1);
    child.send(libc::SIGTERM);
    let outcome = child.finish();
    outcome.assert_code(143);
    assert_eq!(
        saved(&outcome),
        ["saving the progress (SIGTERM (15), exit status 143)"],
        "{outcome:#?}"
    );
    outcome.assert_elapsed(..PROMPT);
}

fn confirm_decision_that_panics_exits_as_the_signal() {
    let outcome = Child::spawn("confirm_panics")
        .ready()
        .signal(libc::SIGINT)
        .finish();
    outcome.assert_code(130);
    assert_eq!(
        outcome.after_ready(),
        ["asked", "hook: SIGINT (2), exit status 130"]
    );
    assert!(
        outcome.stderr.contains("the question cannot be answered"),
        "the panic's own message: {outcome:#?}"
    );
    assert_eq!(
        outcome.crate_lines(),
        ["exit_hook: the decision for SIGINT (2) panicked: exiting as SIGINT (2) does"],
        "{outcome:#?}"
    );
}

/// Replacing a decision drops the old one outside the crate's lock: one
/// whose captured value registers a decision in its `Drop` does not
/// deadlock, and the decision it registers is the one asked.
fn confirm_replaced_decision_may_register_one_as_it_drops() {
    let outcome = Child::spawn("confirm_replaced_in_drop")
        .ready()
        .signal(libc::SIGINT)
        .finish();
    outcome.assert_code(130);
    assert_eq!(
        outcome.after_ready(),
        [
            "asked the one from Drop",
            "hook: SIGINT (2), exit status 130"
        ],
        "{outcome:#?}"
    );
}

/// A decision whose captured value registers another in its `Drop`, then
/// replaced.
fn confirm_replaced_in_drop() {
    struct RegistersOnDrop;
    impl Drop for RegistersOnDrop {
        fn drop(&mut self) {
            exit_hook::confirm_exit(Signal::interrupt(), |_| {
                println!("asked the one from Drop");
                true
            })
            .unwrap();
        }
    }
    hook("hook");
    let held = RegistersOnDrop;
    exit_hook::confirm_exit(Signal::interrupt(), move |_| {
        let _ = &held;
        println!("asked the first");
        false
    })
    .unwrap();
    // Replacing it drops it, and with it `held`.
    exit_hook::confirm_exit(Signal::interrupt(), |_| {
        println!("asked the replacement");
        false
    })
    .unwrap();
    ready();
    wait_forever()
}

/// A child forked while its parent asks a Ctrl+C question does not
/// inherit the question as pending (which made its SIGINT force the exit
/// without hooks): its own SIGINT runs its hooks. Its copy of the
/// decision is held by the parent's asking thread, which is not in the
/// child, so the signal does what it would without a question, and says so.
fn confirm_child_forked_while_asked_is_asked_again() {
    let mut parent = Child::spawn("confirm_fork_while_asked").ready();
    parent.send(libc::SIGINT);
    parent.wait_line("asked", |l| l.starts_with("asked in "));
    let pid_of = |line: &str| line.strip_prefix("child ")?.parse::<u32>().ok();
    let child = pid_of(&parent.wait_line("the child", |l| pid_of(l).is_some())).unwrap();
    // SAFETY: kill(2) on the child the scenario forked, waited for by it.
    assert_eq!(unsafe { libc::kill(child as i32, libc::SIGINT) }, 0);
    parent.wait_line("the child's end", |l| l.starts_with("child exited with "));
    let outcome = parent.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(
        outcome
            .stdout
            .iter()
            .any(|l| l == &format!("child hook {child}: SIGINT (2), exit status 130")),
        "the child's hooks ran: {outcome:#?}"
    );
    assert!(
        outcome.stdout.iter().any(|l| l == "child exited with 130"),
        "{outcome:#?}"
    );
    assert!(
        outcome
            .stderr
            .contains("was being asked when this process was forked"),
        "{outcome:#?}"
    );
}

/// A Ctrl+C question whose decision takes 3 s (and says no); while it is
/// asked, the main thread forks a child that registers a hook and waits.
fn confirm_fork_while_asked() {
    use std::sync::atomic::AtomicBool;
    static ASKED: AtomicBool = AtomicBool::new(false);
    exit_hook::confirm_exit(Signal::interrupt(), |_| {
        println!("asked in {}", std::process::id());
        ASKED.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_secs(3));
        false
    })
    .unwrap();
    ready();
    while !ASKED.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: fork(2); the child calls into the crate and waits for its signal.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let me = std::process::id();
        exit_hook::add(move |exit| println!("child hook {me}: {exit}"));
        println!("child {me}");
        wait_forever();
    }
    let mut status = 0;
    // SAFETY: waitpid(2) on our child, with a live status.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    println!("child exited with {}", libc::WEXITSTATUS(status));
    wait_forever()
}

/// Under `panic = "abort"` a decision that panics cannot be caught: it
/// still counts as "yes" (the run starts from the panic hook, and the
/// thread waits for it instead of aborting), where it aborted (SIGABRT, no
/// hooks, 10/10).
fn confirm_decision_that_panics_under_panic_abort_exits_as_the_signal() {
    let exe = crate::harness::cargo_build(
        "panic_abort_decision",
        &["--bin", "panic_abort_decision", "--profile", "panic-abort"],
    )
    .unwrap();
    let outcome = Child::spawn_with(Command::new(exe), "panic_abort_decision")
        .ready()
        .signal(libc::SIGINT)
        .finish();
    outcome.assert_code(130);
    assert_eq!(
        outcome.after_ready(),
        ["asked", "hook: SIGINT (2), exit status 130"],
        "{outcome:#?}"
    );
    assert!(
        outcome.crate_lines().contains(
            &"exit_hook: the decision for SIGINT (2) panicked: exiting as SIGINT (2) does"
        ),
        "{outcome:#?}"
    );
}

/// Panics in its decision.
fn confirm_panics() {
    hook("hook");
    exit_hook::confirm_exit(Signal::interrupt(), |_| {
        println!("asked");
        panic!("the question cannot be answered");
    })
    .unwrap();
    ready();
    wait_forever()
}

fn confirm_registered_after_install_asks_each_time_until_yes() {
    let mut child = Child::spawn("confirm_after_install").ready();
    child.send(libc::SIGINT);
    child.wait_line("asked 1, exiting: false", |l| {
        l == "asked 1, exiting: false"
    });
    child.wait_line("main: still working, exiting: false", |l| {
        l == "main: still working, exiting: false"
    });
    child.send(libc::SIGINT);
    child.wait_line("asked 2, exiting: false", |l| {
        l == "asked 2, exiting: false"
    });
    let outcome = child.finish();
    outcome.assert_code(130);
    assert_eq!(
        outcome
            .stdout
            .iter()
            .filter(|l| l.starts_with("hook: "))
            .collect::<Vec<_>>(),
        ["hook: SIGINT (2), exit status 130"]
    );
}

/// Installs, then registers a decision that says no once, then yes.
fn confirm_after_install() {
    static ANSWERED: AtomicUsize = AtomicUsize::new(0);
    install(Builder::new());
    hook("hook");
    exit_hook::confirm_exit(Signal::interrupt(), |_| {
        let asked = ANSWERED.load(Ordering::SeqCst) + 1;
        println!("asked {asked}, exiting: {}", exit_hook::is_exiting());
        ANSWERED.store(asked, Ordering::SeqCst);
        asked == 2
    })
    .unwrap();
    // A signal that does not start a run has no question.
    let err = exit_hook::confirm_exit(Signal::from_raw(libc::SIGUSR1), |_| true).unwrap_err();
    assert!(
        matches!(err, exit_hook::Error::SignalNotHandled(_)),
        "{err}"
    );
    ready();
    // The first answer, no, changed nothing: main works on.
    while ANSWERED.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(50));
    println!("main: still working, exiting: {}", exit_hook::is_exiting());
    wait_forever()
}

fn confirm_without_force_ignores_the_signal_again_while_asked() {
    let mut child = Child::spawn_answering(
        Command::new(std::env::current_exe().unwrap()),
        "confirm_no_force",
    )
    .ready();
    child.send(libc::SIGINT);
    child.wait_line("asked", |l| l == "asked");
    child.send(libc::SIGINT);
    child.send(libc::SIGINT);
    // A signal reaches a running process within microseconds: both are
    // handled (and ignored) before the answer.
    thread::sleep(Duration::from_millis(100));
    child.answer("y");
    let outcome = child.finish();
    outcome.assert_code(130);
    assert_eq!(
        outcome.after_ready(),
        ["asked", "answered: y", "hook: SIGINT (2), exit status 130"],
        "the signals again while asked were ignored: {outcome:#?}"
    );
}

/// Forcing off; the decision reads its answer from stdin.
fn confirm_no_force() {
    install(Builder::new().force_on_second_signal(false));
    hook("hook");
    exit_hook::confirm_exit(Signal::interrupt(), |_| {
        println!("asked");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).unwrap();
        println!("answered: {}", answer.trim());
        answer.trim() == "y"
    })
    .unwrap();
    ready();
    wait_forever()
}
