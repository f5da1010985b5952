//! How a run goes: order, concurrency, the deadline, panicking hooks,
//! registering and unregistering (SPEC §1, §3, §5).

use std::future::pending;
use std::thread;
use std::time::Duration;

use exit_hook::{Builder, HookHandle};
use libtest_mimic::Trial;

use crate::child::{hook, install, ready, ready_then_wait_for_a_slow_hook, wait_forever};
use crate::harness::{Child, Outcome, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        hooks_start_in_registration_order,
        async_hooks_run_concurrently,
        stuck_async_hook_is_cut_at_the_deadline,
        stuck_sync_hook_is_cut_at_the_deadline,
        stuck_sync_hook_is_cut_at_the_deadline_by_the_keeper,
        hook_stuck_holding_stdout_is_cut_at_the_deadline,
        default_deadline_is_ten_seconds,
        panicking_hooks_are_reported_and_the_rest_run,
        unregistered_hook_does_not_run,
        unregistering_from_a_hooks_drop_does_not_deadlock,
        hooks_registered_during_a_run_join_it,
        registering_after_the_run_is_an_error,
        exiting_future_resolves_when_a_run_starts,
        registering_from_another_thread_during_a_run_joins_it,
        async_hooks_run_while_the_app_runtime_is_blocked,
        async_hooks_await_the_apps_channels_and_join_handles,
        tracing_events_tell_the_run,
        no_threads_before_the_first_add_named_threads_and_no_leaked_fds,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        many_async,
        stuck_async => stuck(Some(Duration::from_millis(500)), true),
        stuck_sync => stuck(Some(Duration::from_millis(500)), false),
        // The process runs a moment first: the keeper is started.
        quiet_stuck_sync => stuck_after(Some(Duration::from_millis(500)), false, Duration::from_millis(100)),
        default_deadline => stuck(None, true),
        panicking_hook,
        unregister,
        unregister_from_drop,
        order,
        register_after_run,
        register_during_run,
        exiting_future,
        register_from_thread_during_run,
        blocked_app_runtime,
        awaits_the_app,
        tracing,
        stuck_holding_stdout,
        hygiene,
    }
}

fn hooks_start_in_registration_order() {
    let outcome = terminate("order");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["1", "2", "3", "4", "5"]);
}

fn order() {
    exit_hook::add(|_| println!("1"));
    exit_hook::add_async(|_| async { println!("2") });
    exit_hook::add(|_| println!("3"));
    exit_hook::add_async(|_| async { println!("4") });
    exit_hook::add(|_| println!("5"));
    ready();
    wait_forever();
}

fn async_hooks_run_concurrently() {
    let outcome = terminate("many_async");
    outcome.assert_code(143);
    assert_eq!(outcome.lines_starting("done").len(), 1000);
    // One after another they would take 100 s; together, about 100 ms
    // (measured: 108-109 ms from SIGTERM to reaped, debug build). One second
    // leaves room for a busy machine.
    outcome.assert_elapsed(..Duration::from_secs(1));
}

fn many_async() {
    for _ in 0..1000 {
        exit_hook::add_async(|_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            println!("done");
        });
    }
    ready();
    wait_forever();
}

/// The deadline passed: the status is the trigger's, and one stderr line
/// names the stuck hook by its registration site.
fn assert_cut_at_deadline(outcome: &Outcome, deadline: Duration) {
    outcome.assert_code(143);
    let site = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("site: "))
        .expect("the child printed the site");
    assert_eq!(outcome.after_ready(), ["a: SIGTERM (15), exit status 143"]);
    outcome.assert_elapsed(deadline - Duration::from_millis(50)..deadline + Duration::from_secs(5));
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 1, "{outcome:#?}");
    assert!(
        lines[0].contains("deadline") && lines[0].contains(&format!("still running: {site}")),
        "{}",
        lines[0]
    );
}

fn stuck_async_hook_is_cut_at_the_deadline() {
    let outcome = terminate("stuck_async");
    assert_cut_at_deadline(&outcome, Duration::from_millis(500));
}

fn stuck(timeout: Option<Duration>, is_async: bool) {
    stuck_after(timeout, is_async, Duration::ZERO);
}

/// [`stuck`], ready after `quiet`.
fn stuck_after(timeout: Option<Duration>, is_async: bool, quiet: Duration) {
    if let Some(timeout) = timeout {
        install(Builder::new().timeout(timeout));
    }
    hook("a");
    let stuck = if is_async {
        exit_hook::add_async(|_| pending())
    } else {
        exit_hook::add(|_| {
            loop {
                std::hint::spin_loop();
            }
        })
    };
    println!("site: {}", stuck.location());
    thread::sleep(quiet);
    ready();
    wait_forever();
}

fn stuck_sync_hook_is_cut_at_the_deadline() {
    let outcome = terminate("stuck_sync");
    assert_cut_at_deadline(&outcome, Duration::from_millis(500));
}

/// A signal that comes once the process has run a moment: the hooks run on
/// the signal thread and the keeper, started beforehand, keeps the
/// deadline (no thread is started on the signal's way: `hygiene`).
fn stuck_sync_hook_is_cut_at_the_deadline_by_the_keeper() {
    let outcome = terminate("quiet_stuck_sync");
    assert_cut_at_deadline(&outcome, Duration::from_millis(500));
}

fn hook_stuck_holding_stdout_is_cut_at_the_deadline() {
    let outcome = terminate("stuck_holding_stdout");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["holding stdout"]);
    outcome.assert_elapsed(..Duration::from_secs(5));
}

/// A hook stuck while it holds the stdout lock must not keep the process
/// alive past the deadline.
fn stuck_holding_stdout() {
    install(Builder::new().timeout(Duration::from_millis(500)));
    exit_hook::add(|_| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "holding stdout").unwrap();
        out.flush().unwrap();
        loop {
            std::hint::spin_loop();
        }
    });
    ready();
    wait_forever();
}

fn default_deadline_is_ten_seconds() {
    let outcome = terminate("default_deadline");
    assert_cut_at_deadline(&outcome, Duration::from_secs(10));
}

fn panicking_hooks_are_reported_and_the_rest_run() {
    let outcome = terminate("panicking_hook");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        [
            "a: SIGTERM (15), exit status 143",
            "c: SIGTERM (15), exit status 143"
        ]
    );
    let site = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("site: "))
        .unwrap();
    let lines = outcome.crate_lines();
    assert_eq!(lines.len(), 2, "one line per panicking hook: {outcome:#?}");
    assert!(
        lines[0].contains(&format!("registered at {site} panicked"))
            && lines[0].ends_with(": hook boom"),
        "{}",
        lines[0]
    );
    assert!(lines[1].ends_with(": async boom"), "{}", lines[1]);
    assert_eq!(
        outcome.stderr.lines().count(),
        2,
        "nothing but the two lines: {}",
        outcome.stderr
    );
}

fn panicking_hook() {
    hook("a");
    let site = exit_hook::add(|_| panic!("hook boom"));
    exit_hook::add_async(|_| async { panic!("async boom") });
    hook("c");
    println!("site: {}", site.location());
    ready();
    wait_forever();
}

fn unregistered_hook_does_not_run() {
    let outcome = terminate("unregister");
    outcome.assert_code(143);
    assert!(outcome.stdout.contains(&"unregistered: true".to_owned()));
    assert_eq!(
        outcome.after_ready(),
        [
            "a: SIGTERM (15), exit status 143",
            "c: SIGTERM (15), exit status 143"
        ]
    );
}

fn unregister() {
    hook("a");
    let b = hook("b");
    hook("c");
    println!("unregistered: {}", b.unregister());
    ready();
    wait_forever();
}

fn unregistering_from_a_hooks_drop_does_not_deadlock() {
    let outcome = terminate("unregister_from_drop");
    outcome.assert_code(143);
    assert_eq!(
        outcome.stdout,
        [
            "drop unregisters the other: true",
            "unregistered: true",
            "READY",
            "last: SIGTERM (15), exit status 143"
        ]
    );
    outcome.assert_elapsed(..Duration::from_secs(5));
}

/// Unregistering a hook drops its closure; the closure's capture unregisters
/// another hook when dropped (the last `Arc<Pool>` in a hook). Nothing may
/// deadlock, and a later SIGTERM still runs the rest.
fn unregister_from_drop() {
    struct UnregisterOnDrop(Option<HookHandle>);
    impl Drop for UnregisterOnDrop {
        fn drop(&mut self) {
            if let Some(other) = self.0.take() {
                println!("drop unregisters the other: {}", other.unregister());
            }
        }
    }
    install(Builder::new().timeout(Duration::from_millis(1500)));
    let captured = UnregisterOnDrop(Some(hook("other")));
    let first = exit_hook::add(move |_| {
        let _keep = &captured;
        println!("first ran");
    });
    println!("unregistered: {}", first.unregister());
    hook("last");
    ready();
    wait_forever();
}

fn hooks_registered_during_a_run_join_it() {
    let outcome = terminate("register_during_run");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["a", "late sync", "late async"]);
}

fn register_during_run() {
    exit_hook::add(|_| {
        println!("a");
        exit_hook::add(|_| println!("late sync"));
        exit_hook::add_async(|_| async { println!("late async") });
    });
    ready();
    wait_forever();
}

fn registering_after_the_run_is_an_error() {
    let outcome = Child::spawn("register_after_run").finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout,
        [
            "a: process exit, exit status 0",
            "late: the process is exiting and its hooks have run: this hook would never run",
            "late add unregisters: false",
        ]
    );
}

fn register_after_run() {
    extern "C" fn late() {
        match exit_hook::HookBuilder::new().try_add(|_| println!("never")) {
            Ok(_) => println!("late: registered"),
            Err(err) => println!("late: {err}"),
        }
        println!(
            "late add unregisters: {}",
            exit_hook::add(|_| println!("never")).unregister()
        );
    }
    // Registered before the crate's handler, so the C library calls it after.
    // SAFETY: `late` is a valid exit handler for the whole process.
    assert_eq!(unsafe { libc::atexit(late) }, 0);
    hook("a");
}

fn exiting_future_resolves_when_a_run_starts() {
    let outcome = terminate("exiting_future");
    outcome.assert_code(143);
    assert_eq!(
        outcome.stdout,
        ["before: false", "READY", "observed: true", "hook done"]
    );
}

fn exiting_future() {
    exit_hook::add(|_| {
        thread::sleep(Duration::from_millis(300));
        println!("hook done");
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("before: {}", exit_hook::is_exiting());
        ready();
        exit_hook::exiting().await;
        println!("observed: {}", exit_hook::is_exiting());
        pending::<()>().await;
    });
}

fn registering_from_another_thread_during_a_run_joins_it() {
    let outcome = terminate("register_from_thread_during_run");
    outcome.assert_code(143);
    // Registering returned while the sync hook was still running: it did not wait for the run.
    assert_eq!(
        outcome.after_ready(),
        ["a started", "registered: true", "a done", "late"]
    );
}

/// While a sync hook runs, `main` registers another hook: it returns at once
/// (before the running hook ends) and the new hook joins the run.
fn register_from_thread_during_run() {
    ready_then_wait_for_a_slow_hook(|_| "a started".to_owned(), "a done");
    let registered = exit_hook::HookBuilder::new().try_add(|_| println!("late"));
    println!("registered: {}", registered.is_ok());
    wait_forever();
}

fn async_hooks_run_while_the_app_runtime_is_blocked() {
    let outcome = terminate("blocked_app_runtime");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["async: SIGTERM (15), exit status 143"]
    );
}

/// The application's only runtime thread is blocked; async hooks still run.
#[tokio::main(flavor = "current_thread")]
async fn blocked_app_runtime() {
    exit_hook::add_async(|exit| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        println!("async: {exit}");
    });
    ready();
    thread::sleep(Duration::from_secs(3600));
}

fn async_hooks_await_the_apps_channels_and_join_handles() {
    let outcome = terminate("awaits_the_app");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["channel: drained", "join: app task done"]
    );
}

/// An async hook awaits a channel and a join handle of the application's runtime.
#[tokio::main]
async fn awaits_the_app() {
    let (send, receive) = tokio::sync::oneshot::channel();
    let app = tokio::spawn(async move {
        exit_hook::exiting().await;
        send.send("drained").unwrap();
        "app task done"
    });
    exit_hook::add_async(|_| async move {
        println!("channel: {}", receive.await.unwrap());
        println!("join: {}", app.await.unwrap());
    });
    ready();
    pending::<()>().await;
}

fn tracing_events_tell_the_run() {
    let outcome = terminate("tracing");
    outcome.assert_code(143);
    let sites = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("sites: "))
        .unwrap();
    let (quick, stuck) = sites.split_once(' ').unwrap();
    let events: Vec<&str> = outcome.stderr.lines().collect();
    let has = |words: &[&str]| events.iter().any(|e| words.iter().all(|w| e.contains(w)));
    assert!(
        has(&["INFO", "run started", "SIGTERM (15), exit status 143"]),
        "{events:#?}"
    );
    assert!(has(&["DEBUG", "exit hook started", quick]), "{events:#?}");
    assert!(
        has(&["DEBUG", "exit hook finished", quick, "elapsed"]),
        "{events:#?}"
    );
    assert!(has(&["DEBUG", "exit hook started", stuck]), "{events:#?}");
    assert!(
        has(&[
            "ERROR",
            "deadline passed",
            &format!("still_running=[\"{stuck}\"]")
        ]),
        "{events:#?}"
    );
    assert!(
        outcome.crate_lines().is_empty(),
        "the subscriber shows it; no plain line: {events:#?}"
    );
}

/// With a subscriber, the run is told through `tracing` (on stderr here).
fn tracing() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    install(Builder::new().timeout(Duration::from_millis(300)));
    let quick = hook("a");
    let stuck = exit_hook::add_async(|_| pending());
    println!("sites: {} {}", quick.location(), stuck.location());
    ready();
    wait_forever();
}

fn no_threads_before_the_first_add_named_threads_and_no_leaked_fds() {
    let outcome = terminate("hygiene");
    outcome.assert_code(143);
    assert_eq!(
        outcome.stdout,
        [
            "threads at start: []",
            "threads after is_exiting and Builder::new: []",
            "threads after add: [\"exit-hook\"]",
            "fds inherited: same after install: true",
            "threads after a quiet moment: [\"exit-hook\", \"exit-hook-guard\"]",
            "READY",
            "a: SIGTERM (15), exit status 143",
            "threads during the run: [\"exit-hook\", \"exit-hook-guard\"]",
            "fds inherited: same during the run: true",
        ]
    );
}

/// Threads and descriptors: none before the first registration, only named
/// threads after it (the signal thread; the guard once the process has
/// run a moment, so that a signal's run starts none), and no descriptor of
/// the crate's leaks into children.
fn hygiene() {
    let fds_before = inherited_fds();
    println!("threads at start: {:?}", thread_names());
    let _ = exit_hook::is_exiting();
    let _ = Builder::new();
    println!(
        "threads after is_exiting and Builder::new: {:?}",
        thread_names()
    );
    hook("a");
    println!(
        "threads after add: {:?}",
        settled_thread_names(&["exit-hook"])
    );
    println!(
        "fds inherited: same after install: {}",
        inherited_fds() == fds_before
    );
    println!(
        "threads after a quiet moment: {:?}",
        settled_thread_names(&["exit-hook", "exit-hook-guard"])
    );
    exit_hook::add_async(move |_| async move {
        println!(
            "threads during the run: {:?}",
            settled_thread_names(&["exit-hook", "exit-hook-guard"])
        );
        println!(
            "fds inherited: same during the run: {}",
            inherited_fds() == fds_before
        );
    });
    ready();
    wait_forever();
}

/// The thread names once they have settled: a new thread names itself
/// after it starts, so right after a spawn it still shows its parent's name.
/// Waits (at most 2 s) for `expected`, and returns what it saw last.
fn settled_thread_names(expected: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let names = thread_names();
        if names == expected || std::time::Instant::now() > deadline {
            return names;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// The names of this process's threads, the main thread's first.
fn thread_names() -> Vec<String> {
    let mut tasks: Vec<(u64, String)> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .map(|task| {
            let id = task.file_name().to_string_lossy().parse().unwrap();
            (
                id,
                std::fs::read_to_string(task.path().join("comm"))
                    .unwrap()
                    .trim()
                    .to_owned(),
            )
        })
        .collect();
    tasks.sort();
    tasks.into_iter().skip(1).map(|(_, name)| name).collect()
}

/// The descriptors a process spawned now inherits (as its shell lists them).
fn inherited_fds() -> String {
    let output = std::process::Command::new("/bin/sh")
        .args([
            "-c",
            "for fd in /proc/$$/fd/*; do printf '%s ' \"${fd##*/}\"; done",
        ])
        .output()
        .expect("/bin/sh");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
