//! Signals in a process's real life: sent by the process to itself,
//! inherited as ignored (`nohup`), blocked by the installing thread,
//! numbers the C library reserves, and exit codes past 255.

use std::process::Command;
use std::time::Duration;

use exit_hook::{Builder, Signal};
use libtest_mimic::Trial;

use crate::child::{install, ready, wait_forever};
use crate::harness::{Child, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        a_hook_signalling_its_own_process_group_does_not_force_the_exit,
        under_nohup_sighup_is_left_ignored,
        take_ignored_signals_handles_sighup_under_nohup,
        background_job_keeps_sigint_ignored_and_says_so,
        a_sigterm_blocked_by_the_installing_thread_still_runs_the_hooks,
        reserved_signals_are_rejected_and_nothing_is_left_installed,
        exit_codes_past_255_are_told_as_the_parent_sees_them,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        signals_own_group,
        nohup,
        nohup_take,
        background_job,
        blocked_sigterm,
        reserved_signals,
        exit_259,
    }
}

fn nohup() {
    exit_hook::add(|exit| println!("hook: {exit}"));
    ready();
    wait_forever();
}

fn nohup_take() {
    install(Builder::new().take_ignored_signals(true));
    exit_hook::add(|exit| println!("hook: {exit}"));
    ready();
    wait_forever();
}

fn background_job() {
    // The warning goes where the application's log goes.
    tracing_subscriber::fmt()
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .init();
    exit_hook::add(|exit| println!("hook: {exit}"));
    println!("pid {}", std::process::id());
    ready();
    wait_forever();
}

fn exit_259() {
    exit_hook::add(|exit| println!("hook: {exit} code={:?}", exit.code()));
    exit_hook::exit(259);
}

/// In a process group of its own (so the test's own group is not hit), a
/// hook stops "its children" with `kill(0, SIGTERM)`, raises SIGINT and
/// kills its own pid with SIGHUP; the run was started by `exit(3)`.
fn signals_own_group() {
    // SAFETY: setpgid(2) and the kill(2)/raise(3) calls below target only
    // this process (now alone in its group).
    unsafe { libc::setpgid(0, 0) };
    exit_hook::add(|_| {
        unsafe {
            libc::kill(0, libc::SIGTERM);
            libc::raise(libc::SIGINT);
            libc::kill(libc::getpid(), libc::SIGHUP);
        }
        std::thread::sleep(Duration::from_millis(100));
        println!("a: still running");
    });
    exit_hook::add(|exit| println!("b: {exit}"));
    exit_hook::exit(3);
}

fn a_hook_signalling_its_own_process_group_does_not_force_the_exit() {
    let outcome = Child::spawn("signals_own_group").finish();
    outcome.assert_code(3);
    assert_eq!(
        outcome.stdout,
        ["a: still running", "b: exit_hook::exit, exit status 3"],
        "{outcome:#?}"
    );
    assert!(outcome.crate_lines().is_empty(), "{outcome:#?}");
}

/// `scenario` under a real `nohup`.
fn under_nohup(scenario: &str) -> Child {
    let mut command = Command::new("nohup");
    command.arg(std::env::current_exe().unwrap());
    Child::spawn_with(command, scenario).ready()
}

/// Under a real `nohup`, SIGHUP stays ignored: the process goes on, and a
/// later SIGTERM runs the hooks once, with SIGTERM's status. Without a
/// `tracing` subscriber, installing says so on stderr, once.
fn under_nohup_sighup_is_left_ignored() {
    let mut child = under_nohup("nohup");
    child.send(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200));
    let outcome = child.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["hook: SIGTERM (15), exit status 143"],
        "{outcome:#?}"
    );
    assert_eq!(
        outcome.crate_lines(),
        [
            "exit_hook: SIGHUP (1) inherited as ignored (a background job, nohup): left ignored, \
             it starts no run (Builder::take_ignored_signals takes it)"
        ],
        "{outcome:#?}"
    );
}

/// A background job of a script (`app &` in `sh -c`) starts with SIGINT
/// ignored: it stays so, and installing says it with a `tracing` warning.
fn background_job_keeps_sigint_ignored_and_says_so() {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("\"$0\" & wait")
        .arg(std::env::current_exe().unwrap());
    let mut child = Child::spawn_with(command, "background_job");
    let line = child.wait_line("pid", |l| l.starts_with("pid "));
    let pid: i32 = line["pid ".len()..].parse().unwrap();
    // The job is sh's child, not ours: killed if the test fails before sh
    // (which waits for it) is reaped.
    struct KillOnDrop(Option<i32>);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if let Some(pid) = self.0 {
                // SAFETY: kill(2) on the job's pid, while sh still waits for it.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let mut job = KillOnDrop(Some(pid));
    let child = child.ready();
    // SAFETY: kill(2) on the job, our grandchild, alive (it said READY).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above; SIGINT left it running.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let outcome = child.finish();
    job.0 = None; // sh waited for it: gone
    outcome.assert_code(0); // `wait` without a job named returns 0
    // SIGINT ran nothing; SIGTERM ran the hook once.
    assert_eq!(
        outcome.lines_starting("hook: "),
        ["hook: SIGTERM (15), exit status 143"],
        "{outcome:#?}"
    );
    assert!(
        outcome.stdout.iter().any(|l| l.contains("WARN")
            && l.contains("signals inherited as ignored are left ignored")
            && l.contains("SIGINT")),
        "{outcome:#?}"
    );
    // Said through the subscriber, not again on stderr.
    assert!(outcome.crate_lines().is_empty(), "{outcome:#?}");
}

fn take_ignored_signals_handles_sighup_under_nohup() {
    let outcome = under_nohup("nohup_take").signal(libc::SIGHUP).finish();
    outcome.assert_code(129);
    assert_eq!(
        outcome.after_ready(),
        ["hook: SIGHUP (1), exit status 129"],
        "{outcome:#?}"
    );
}

/// The main thread blocks SIGTERM before the first `add`, so every thread
/// it starts (the crate's included) inherits the mask.
fn blocked_sigterm() {
    // SAFETY: a local signal set, then pthread_sigmask(3) for this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    exit_hook::add(|exit| println!("hook: {exit}"));
    ready();
    wait_forever();
}

fn a_sigterm_blocked_by_the_installing_thread_still_runs_the_hooks() {
    let outcome = terminate("blocked_sigterm");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["hook: SIGTERM (15), exit status 143"]
    );
}

/// 32 and 33 are glibc's; the error leaves SIGHUP as it was (default).
fn reserved_signals() {
    for reserved in [32, 33] {
        let err = Builder::new()
            .signals([Signal::hangup(), Signal::from_raw(reserved)])
            .install()
            .unwrap_err();
        println!("{reserved}: {err}");
    }
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one.
    unsafe { libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current) };
    println!(
        "SIGHUP is default: {}",
        current.sa_sigaction == libc::SIG_DFL
    );
    install(Builder::new().signals([Signal::hangup()]));
    exit_hook::add(|exit| println!("hook: {exit}"));
    ready();
    wait_forever();
}

fn reserved_signals_are_rejected_and_nothing_is_left_installed() {
    let outcome = Child::spawn("reserved_signals")
        .ready()
        .signal(libc::SIGHUP)
        .finish();
    outcome.assert_code(129);
    let reserved = "cannot start a shutdown: the C library reserves it for its threads";
    assert_eq!(
        outcome.stdout,
        [
            format!("32: signal 32 {reserved}"),
            format!("33: signal 33 {reserved}"),
            "SIGHUP is default: true".into(),
            "READY".into(),
            "hook: SIGHUP (1), exit status 129".into(),
        ],
        "{outcome:#?}"
    );
}

fn exit_codes_past_255_are_told_as_the_parent_sees_them() {
    let outcome = Child::spawn("exit_259").finish();
    outcome.assert_code(3);
    assert_eq!(
        outcome.stdout,
        ["hook: exit_hook::exit, exit status 3 code=Some(3)"]
    );
}
