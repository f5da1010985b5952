//! The newer API under hostile use (issue 21): a process ended another way
//! while a run is stuck, a sync hook beside an async one in its phase,
//! guards nobody can release, `start_exit` in a forked child, a hook left
//! behind at its time limit, thousands of limited hooks.

use std::io::Write;
use std::thread;
use std::time::Duration;

use exit_hook::{Builder, HookBuilder, Phase};
use libtest_mimic::Trial;

use super::{PROMPT, wait_until_exiting};
use crate::child::{install, ready, wait_forever};
use crate::harness::{Child, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        deadline_report_is_out_however_the_process_ends_meanwhile,
        sync_hook_blocks_on_its_apps_runtime_beside_an_async_hook,
        guard_of_the_thread_that_exits_does_not_hold_the_run,
        guards_of_the_parent_do_not_hold_a_forked_childs_run,
        start_exit_in_a_child_forked_during_the_run_ends_the_child,
        hook_left_behind_cannot_end_the_run,
        hook_left_at_its_phase_end_says_so,
        hook_left_at_its_phase_end_by_the_keeper_says_so,
        hook_left_behind_cannot_end_the_run_with_process_exit,
        thousands_of_limited_hooks_use_a_bounded_number_of_threads,
        a_row_of_limited_hooks_goes_on_past_a_stuck_one,
        thousands_of_hooks_past_their_limits_make_one_line,
        stuck_drain_leaves_time_for_close_and_flush,
        drain_delay_keeps_serving_while_is_exiting,
        panic_during_unwinding_waits_for_the_run,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        stuck_then_main_returns => stuck_then_main_ends(0),
        stuck_then_process_exit => stuck_then_main_ends(1),
        stuck_then_exit_hook_exit => stuck_then_main_ends(2),
        sync_beside_async,
        guard_then_process_exit => guard_then_exit(false),
        guard_then_exit_hook_exit => guard_then_exit(true),
        thread_guard_then_process_exit,
        guard_then_fork,
        fork_start_exit,
        left_behind_exits => left_behind_calls(|| exit_hook::exit(9)),
        left_behind_at_phase_end_exits => left_behind_at_phase_end_exits_after(Duration::ZERO),
        quiet_left_behind_at_phase_end_exits => left_behind_at_phase_end_exits_after(Duration::from_millis(100)),
        left_behind_process_exits => left_behind_calls(|| std::process::exit(9)),
        many_limited,
        limited_row,
        many_past_limits,
        stuck_drain,
        drain_delay,
        drain_delay_then_exit,
        panic_in_drop,
    }
}

fn thread_guard_then_process_exit() {
    thread::spawn(|| guard_then_exit(false)).join().unwrap();
}

fn drain_delay_then_exit() {
    install(Builder::new().drain_delay(Duration::from_secs(5)));
    exit_hook::add(|exit| say(&format!("hook: {exit}")));
    ready();
    exit_hook::exit(4);
}

/// A line on stdout, flushed: the child may end by `_exit` any moment.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn deadline_report_is_out_however_the_process_ends_meanwhile() {
    // The line was lost in 19 of 30 runs: each way, three times.
    for _ in 0..3 {
        for scenario in [
            "stuck_then_main_returns",
            "stuck_then_process_exit",
            "stuck_then_exit_hook_exit",
        ] {
            let outcome = terminate(scenario);
            outcome.assert_code(143);
            let lines = outcome.crate_lines();
            assert_eq!(lines.len(), 1, "{scenario}: {outcome:#?}");
            assert!(
                lines[0]
                    .starts_with("exit_hook: deadline of 300ms passed; 1 hook(s) still running: "),
                "{scenario}: {lines:?}"
            );
        }
    }
}

/// A sync hook stuck for ever, a 300 ms deadline; once the run started,
/// `main` returns (0), calls `std::process::exit` (1) or `exit_hook::exit` (2).
fn stuck_then_main_ends(how: u8) {
    install(Builder::new().timeout(Duration::from_millis(300)));
    exit_hook::add(|_| thread::sleep(Duration::from_secs(3600)));
    ready();
    wait_until_exiting();
    thread::sleep(Duration::from_millis(50));
    match how {
        0 => {}
        1 => std::process::exit(3),
        _ => exit_hook::exit(3),
    }
}

fn sync_hook_blocks_on_its_apps_runtime_beside_an_async_hook() {
    let outcome = terminate("sync_beside_async");
    outcome.assert_code(143);
    let mut lines = outcome.after_ready();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["async hook ran", "sync hook: 42 from the app's runtime"],
        "{outcome:#?}"
    );
    assert!(outcome.crate_lines().is_empty(), "{outcome:#?}");
}

/// The application's own runtime, and a sync hook that blocks on it, in the
/// phase of an async hook.
fn sync_beside_async() {
    let app = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = app.handle().clone();
    exit_hook::add_async(|_| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        say("async hook ran");
    });
    exit_hook::add(move |_| {
        let n = handle.block_on(async { 42 });
        say(&format!("sync hook: {n} from the app's runtime"));
    });
    ready();
    wait_forever();
}

fn guard_of_the_thread_that_exits_does_not_hold_the_run() {
    for (scenario, trigger, prompt) in [
        // exit_hook::exit: its thread's guard holds nothing, at once.
        ("guard_then_exit_hook_exit", "exit_hook::exit", true),
        // std::process::exit from a thread other than main's: the same.
        ("thread_guard_then_process_exit", "process exit", true),
        // std::process::exit on main's thread (which `main` returning is
        // too): the guard holds until the drain's time is up (0.6 s of
        // 1 s), then the rest runs.
        ("guard_then_process_exit", "process exit", false),
    ] {
        let outcome = Child::spawn(scenario).ready().finish();
        outcome.assert_code(6);
        assert_eq!(
            outcome.after_ready(),
            [
                &format!("cleanup: {trigger}, exit status 6"),
                "close",
                "flush"
            ],
            "{outcome:#?}"
        );
        let lines = outcome.crate_lines();
        if prompt {
            outcome.assert_elapsed(Duration::ZERO..Duration::from_millis(500));
            assert!(lines.is_empty(), "{outcome:#?}");
        } else {
            outcome.assert_elapsed(Duration::from_millis(550)..Duration::from_millis(1000));
            assert_eq!(lines.len(), 1, "{outcome:#?}");
            assert!(
                lines[0].starts_with(
                    "exit_hook: the drain phase's time is up with 1 exit guard(s) held, taken at: "
                ),
                "{lines:?}"
            );
        }
    }
}

/// `main` takes a guard, then ends the process with 6 holding it; a 1 s
/// deadline.
fn guard_then_exit(exit_hook_exit: bool) {
    install(Builder::new().timeout(Duration::from_secs(1)));
    exit_hook::add(|exit| say(&format!("cleanup: {exit}")));
    exit_hook::in_phase(Phase::Close).add(|_| say("close"));
    exit_hook::in_phase(Phase::Flush).add(|_| say("flush"));
    let _running = exit_hook::hold_exit();
    ready();
    if exit_hook_exit {
        exit_hook::exit(6);
    }
    std::process::exit(6);
}

fn guards_of_the_parent_do_not_hold_a_forked_childs_run() {
    let outcome = Child::spawn("guard_then_fork").ready().finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.after_ready(),
        [
            "child hook: exit_hook::start_exit, exit status 4",
            "child exited with 4"
        ],
        "{outcome:#?}"
    );
    outcome.assert_elapsed(..PROMPT);
}

/// A thread holds a guard for ever; `main` forks, and the child (which has
/// only the forking thread) starts its own run.
fn guard_then_fork() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    let (taken, guard_taken) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _held = exit_hook::hold_exit();
        taken.send(()).unwrap();
        thread::sleep(Duration::from_secs(3600));
    });
    guard_taken.recv().unwrap();
    exit_hook::add(|exit| say(&format!("child hook: {exit}")));
    ready();
    // SAFETY: fork(2); the child only calls into the crate, which supports
    // a child forked without exec, and ends.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        exit_hook::start_exit(4);
        wait_forever();
    }
    let mut status = 0;
    // SAFETY: waitpid(2) on our child, with a live status.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    say(&format!("child exited with {}", libc::WEXITSTATUS(status)));
    // SAFETY: _exit(2): the parent ends without a run of its own.
    unsafe { libc::_exit(0) };
}

fn start_exit_in_a_child_forked_during_the_run_ends_the_child() {
    let outcome = terminate("fork_start_exit");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["child exited with 5"],
        "{outcome:#?}"
    );
    outcome.assert_elapsed(..PROMPT);
}

/// A hook forks; the child calls `start_exit(5)`, and would say so if it
/// lived on.
fn fork_start_exit() {
    exit_hook::add(|_| {
        // SAFETY: fork(2) from a hook; the child calls into the crate, then
        // `_exit`s if it is still there.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            exit_hook::start_exit(5);
            thread::sleep(Duration::from_secs(2));
            say("the child lived on");
            // SAFETY: _exit(2).
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waitpid(2) on our child, with a live status.
        unsafe { libc::waitpid(pid, &raw mut status, 0) };
        say(&format!("child exited with {}", libc::WEXITSTATUS(status)));
    });
    ready();
    wait_forever();
}

/// `scenario`, stopped by SIGTERM: its flush hook ran whole and the run
/// ended with 143, whatever the hook left behind tried; the crate's lines.
fn flush_ran_whole(scenario: &str) -> Vec<String> {
    let outcome = terminate(scenario);
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["flush started", "flush done"],
        "{outcome:#?}"
    );
    outcome
        .crate_lines()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn hook_left_behind_cannot_end_the_run() {
    let lines = flush_ran_whole("left_behind_exits");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("passed its time limit of 200ms"),
        "{lines:?}"
    );
    assert!(
        lines[1].ends_with(
            ", left behind at its time limit, called exit_hook::exit; the run goes on without it"
        ),
        "{lines:?}"
    );
}

/// `std::process::exit` from a hook left behind at its time limit: glibc's
/// `exit` destroys the calling thread's thread-locals before the crate's
/// exit handler asks whether the hook was left behind; the answer must
/// not be lost with them (it cut the flush hook, 143 at 0.4 s, 10/10).
fn hook_left_behind_cannot_end_the_run_with_process_exit() {
    let lines = flush_ran_whole("left_behind_process_exits");
    assert!(
        lines.iter().any(|l| l.ends_with(
            ", left behind at its time limit, called std::process::exit; the run goes on without it"
        )),
        "{lines:?}"
    );
}

/// A limited hook that ends the process with `end` 300 ms after its limit,
/// while the flush hook runs.
fn left_behind_calls(end: fn()) {
    install(Builder::new().timeout(Duration::from_secs(10)));
    HookBuilder::new()
        .time_limit(Duration::from_millis(200))
        .add(move |_| {
            thread::sleep(Duration::from_millis(500));
            end();
        });
    exit_hook::in_phase(Phase::Flush).add(|_| {
        say("flush started");
        thread::sleep(Duration::from_millis(700));
        say("flush done");
    });
    ready();
    wait_forever();
}

fn hook_left_at_its_phase_end_says_so() {
    left_at_its_phase_end_says_so("left_behind_at_phase_end_exits");
}

/// The same, the signal coming once the process has run a moment: the
/// keeper, started beforehand, moves the run on at the drain's end.
fn hook_left_at_its_phase_end_by_the_keeper_says_so() {
    left_at_its_phase_end_says_so("quiet_left_behind_at_phase_end_exits");
}

fn left_at_its_phase_end_says_so(scenario: &str) {
    let lines = flush_ran_whole(scenario);
    assert!(
        lines.iter().any(|l| l.ends_with(
            ", left behind at its phase's end, called exit_hook::exit; the run goes on without it"
        )),
        "a hook without a time limit is left at its phase's end: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("at its time limit")),
        "{lines:?}"
    );
}

/// A drain hook without a time limit, stuck past the drain's end (1.2 s of
/// a 2 s deadline), that then calls `exit_hook::exit(9)` while the flush
/// hook runs; ready after `quiet`.
fn left_behind_at_phase_end_exits_after(quiet: Duration) {
    install(Builder::new().timeout(Duration::from_secs(2)));
    exit_hook::in_phase(Phase::Drain).add(|_| {
        thread::sleep(Duration::from_millis(1400));
        exit_hook::exit(9);
    });
    exit_hook::in_phase(Phase::Flush).add(|_| {
        say("flush started");
        thread::sleep(Duration::from_millis(400));
        say("flush done");
    });
    thread::sleep(quiet);
    ready();
    wait_forever();
}

fn thousands_of_limited_hooks_use_a_bounded_number_of_threads() {
    let outcome = terminate("many_limited");
    outcome.assert_code(143);
    let threads: usize = outcome
        .after_ready()
        .iter()
        .find_map(|l| l.strip_prefix("threads: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{outcome:#?}"));
    // The process's own (main, signal, runner, guard) and one helper.
    assert!(threads <= 8, "{threads} threads for 5000 limited hooks");
    assert_eq!(outcome.lines_starting("ran "), ["ran 5000"], "{outcome:#?}");
    outcome.assert_elapsed(..PROMPT);
}

/// 5000 trivial hooks with a time limit; the last prints the thread count.
fn many_limited() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RAN: AtomicUsize = AtomicUsize::new(0);
    for _ in 0..5000 {
        HookBuilder::new()
            .time_limit(Duration::from_secs(1))
            .add(|_| {
                RAN.fetch_add(1, Ordering::Relaxed);
            });
    }
    exit_hook::in_phase(Phase::Flush).add(|_| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .map_or("?", str::trim)
            .to_owned();
        say(&format!("threads: {threads}"));
        say(&format!("ran {}", RAN.load(Ordering::Relaxed)));
    });
    ready();
    wait_forever();
}

/// Limited hooks in a row run on one helper; the one stuck at its limit
/// keeps that helper, and the rest of the row goes on, in order, once.
fn a_row_of_limited_hooks_goes_on_past_a_stuck_one() {
    let outcome = terminate("limited_row");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["first", "stuck", "third", "fourth", "flush"],
        "{outcome:#?}"
    );
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 1, "{outcome:#?}");
    assert!(
        lines[0].contains("passed its time limit of 300ms"),
        "{lines:?}"
    );
    // One limit waited out, far from the 10 s deadline.
    outcome
        .assert_elapsed(Duration::from_millis(250)..)
        .assert_elapsed(..PROMPT);
}

/// Four limited hooks of 300 ms in a row, the second stuck for ever.
fn limited_row() {
    install(Builder::new().timeout(Duration::from_secs(10)));
    let limited = || HookBuilder::new().time_limit(Duration::from_millis(300));
    limited().add(|_| say("first"));
    limited().add(|_| {
        say("stuck");
        wait_forever();
    });
    limited().add(|_| say("third"));
    limited().add(|_| say("fourth"));
    exit_hook::in_phase(Phase::Flush).add(|_| say("flush"));
    ready();
    wait_forever();
}

fn thousands_of_hooks_past_their_limits_make_one_line() {
    let outcome = terminate("many_past_limits");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["flush"], "{outcome:#?}");
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 1, "{outcome:#?}");
    assert!(
        lines[0].starts_with("exit_hook: 2000 hooks passed their time limits; the run moves on: "),
        "{lines:?}"
    );
    assert!(lines[0].ends_with(" and 1995 more"), "{lines:?}");
    outcome.assert_elapsed(..PROMPT);
}

/// 2000 async hooks that never finish, each limited to 100 ms.
fn many_past_limits() {
    for _ in 0..2000 {
        exit_hook::in_phase(Phase::Drain)
            .time_limit(Duration::from_millis(100))
            .add_async(|_| std::future::pending());
    }
    exit_hook::in_phase(Phase::Flush).add(|_| say("flush"));
    ready();
    wait_forever();
}

fn stuck_drain_leaves_time_for_close_and_flush() {
    let outcome = terminate("stuck_drain");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["close", "flush"], "{outcome:#?}");
    // The drain's end is 1.2 s into the 2 s deadline; then the rest.
    outcome.assert_elapsed(Duration::from_millis(1150)..Duration::from_millis(2000));
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 2, "{outcome:#?}");
    assert!(
        lines[0].starts_with(
            "exit_hook: the drain phase's time is up; the run goes on to the next; 2 hook(s) left running: "
        ),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("exit_hook: the drain phase's time is up with 1 exit guard(s) held"),
        "{lines:?}"
    );
}

/// A guard never released, a sync and an async drain hook that never
/// return, a close and a flush hook; a 2 s deadline.
fn stuck_drain() {
    install(Builder::new().timeout(Duration::from_secs(2)));
    std::mem::forget(exit_hook::hold_exit());
    exit_hook::in_phase(Phase::Drain).add_async(|_| std::future::pending());
    exit_hook::in_phase(Phase::Drain).add(|_| thread::sleep(Duration::from_secs(3600)));
    exit_hook::in_phase(Phase::Close).add(|_| say("close"));
    exit_hook::in_phase(Phase::Flush).add(|_| say("flush"));
    ready();
    wait_forever();
}

fn drain_delay_keeps_serving_while_is_exiting() {
    let outcome = terminate("drain_delay");
    outcome.assert_code(143);
    let lines = outcome.after_ready();
    assert_eq!(lines.len(), 2, "{outcome:#?}");
    assert_eq!(lines[0], "is_exiting", "{outcome:#?}");
    let waited: u64 = lines[1]
        .strip_prefix("drain hook after ")
        .and_then(|ms| ms.strip_suffix(" ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{outcome:#?}"));
    assert!((480..2000).contains(&waited), "{waited} ms");
    // A run the application asked for does not wait for load balancers.
    let outcome = Child::spawn("drain_delay_then_exit").ready().finish();
    outcome.assert_code(4);
    assert_eq!(
        outcome.after_ready(),
        ["hook: exit_hook::exit, exit status 4"]
    );
    outcome.assert_elapsed(Duration::ZERO..Duration::from_secs(2));
}

/// A 500 ms drain delay: a thread sees `is_exiting()` at once, the drain
/// hook starts after the delay.
fn drain_delay() {
    install(Builder::new().drain_delay(Duration::from_millis(500)));
    let (seen, exiting_seen) = std::sync::mpsc::channel();
    thread::spawn(move || {
        wait_until_exiting();
        say("is_exiting");
        seen.send(std::time::Instant::now()).unwrap();
    });
    exit_hook::in_phase(Phase::Drain).add(move |_| {
        let since = exiting_seen.recv().unwrap().elapsed();
        say(&format!("drain hook after {} ms", since.as_millis()));
    });
    ready();
    wait_forever();
}

fn panic_during_unwinding_waits_for_the_run() {
    let outcome = Child::spawn("panic_in_drop").ready().finish();
    // Rust aborts on a panic during unwinding; the run the first panic
    // started is waited for instead, and its status stands.
    outcome.assert_code(101);
    assert_eq!(
        outcome.after_ready(),
        ["hook started", "hook done"],
        "{outcome:#?}"
    );
    assert!(outcome.stderr.contains("first panic"), "{outcome:#?}");
}

/// `main` panics; while it unwinds, a destructor panics too. A hook takes
/// 300 ms.
fn panic_in_drop() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("second panic, in a destructor");
        }
    }
    exit_hook::add(|_| {
        say("hook started");
        thread::sleep(Duration::from_millis(300));
        say("hook done");
    });
    ready();
    let _drops = PanicsOnDrop;
    panic!("first panic");
}
