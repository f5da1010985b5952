//! Living inside real applications (SPEC §6): tokio runtimes of both
//! flavours that panic in a task or exit from one, axum servers, ordered
//! shutdown phases, per-hook time limits, and exit guards held by the
//! application's own code. Each test's child scenario is beside it.

use std::future::pending;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use exit_hook::{Builder, HookBuilder, Phase};
use libtest_mimic::Trial;

use crate::child::{install, ready, wait_forever};
use crate::harness::{Child, build_example, terminate};
use crate::http::{client, get, runtime};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        panic_in_a_task_wakes_the_app_on_a_multi_thread_runtime,
        panic_in_a_task_wakes_the_app_on_a_current_thread_runtime,
        panicking_request_handler_drains_the_server_and_exits_101,
        start_exit_from_a_task_does_not_block_a_current_thread_runtime,
        exit_from_a_task_wakes_the_app_on_another_worker,
        panic_holding_a_lock_the_hooks_need_does_not_wait_for_the_deadline,
        phases_run_in_order_whatever_the_registration_order,
        time_limits_move_the_run_on_and_name_the_hook,
        guard_in_tokio_main_holds_the_exit_for_its_own_cleanup,
        guard_example_cleans_up_in_main_and_exits_130,
        guard_lets_axum_in_main_answer_every_request_in_flight,
        second_signal_ends_the_process_while_a_guard_is_held,
        panic_run_waits_for_a_guard_and_keeps_101,
        guard_taken_during_the_run_holds_it,
        guard_taken_after_the_run_holds_nothing,
        guard_held_by_a_thread_holds_the_run_main_returning_starts,
        deadline_report_names_unreleased_guards_and_hooks_never_started,
    ]
}

/// Runs the scenario `role` if it is one of this file's; `false` if not.
pub fn run_role(role: &str) -> bool {
    match role {
        "panic_in_task_multi_thread" => panic_in_task(false),
        "panic_in_task_current_thread" => panic_in_task(true),
        "panicking_handler" => panicking_handler(),
        "start_exit_from_task" => start_exit_from_task(),
        "exit_from_task" => exit_from_task(),
        "panic_holding_locks" => panic_holding_locks(),
        "phases" => phases(),
        "time_limits" => time_limits(),
        "guard_in_main" => guard_in_main(),
        "guard_axum_in_main" => guard_axum_in_main(),
        "guard_second_signal" => guard_second_signal(),
        "guard_panic" => guard_panic(),
        "guard_late" => guard_late(),
        "guard_after_run" => guard_after_run(),
        "guard_thread_main_returns" => guard_thread_main_returns(),
        "guard_leaked" => guard_leaked(),
        _ => return false,
    }
    true
}

/// Far below the 10 s default deadline: the run did not wait it out.
const PROMPT: Duration = Duration::from_secs(5);

#[track_caller]
fn assert_prompt(elapsed: Duration) {
    assert!(
        elapsed < PROMPT,
        "took {elapsed:?}: waited for the deadline?"
    );
}

// ---- A trigger on an application thread does not freeze its runtime ----

fn assert_panic_in_task(role: &str) {
    let outcome = Child::spawn(role).finish();
    outcome.assert_code(101);
    let lines = outcome.after_ready();
    assert_eq!(lines.len(), 2, "{outcome:#?}");
    assert_eq!(lines[0], "app: exiting observed");
    assert!(
        lines[1].starts_with("hook: ")
            && lines[1].contains("task boom")
            && lines[1].ends_with("exit status 101; task panicked; waiter finished"),
        "{}",
        lines[1]
    );
    assert_prompt(outcome.elapsed);
}

fn panic_in_a_task_wakes_the_app_on_a_multi_thread_runtime() {
    assert_panic_in_task("panic_in_task_multi_thread");
}

fn panic_in_a_task_wakes_the_app_on_a_current_thread_runtime() {
    assert_panic_in_task("panic_in_task_current_thread");
}

/// A task panics; another awaits `exiting()`; an async hook awaits both.
/// The panic must unwind into the task's `JoinError`, and the waiter must
/// be woken where the application's runtime can run it.
fn panic_in_task(current_thread: bool) {
    let mut builder = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    };
    let runtime = builder.enable_all().build().unwrap();
    runtime.block_on(async {
        let waiter = tokio::spawn(async {
            exit_hook::exiting().await;
            println!("app: exiting observed");
        });
        let doomed = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            panic!("task boom");
        });
        exit_hook::add_async(move |exit| async move {
            let task = match doomed.await {
                Err(err) if err.is_panic() => "panicked",
                _ => "did not panic",
            };
            let waiter = if waiter.await.is_ok() {
                "finished"
            } else {
                "failed"
            };
            println!("hook: {exit}; task {task}; waiter {waiter}");
        });
        ready();
        pending::<()>().await;
    });
}

/// The README's server pattern: a handler panics while another request is
/// in flight. The server must drain (the request in flight is answered) and
/// the process exit 101 promptly.
fn panicking_request_handler_drains_the_server_and_exits_101() {
    let mut child = Child::spawn("panicking_handler");
    let base = listening_address(&mut child);
    let (client, rt) = (client(), runtime());
    let in_flight = rt.spawn(get(&client, format!("{base}/slow?ms=1000")));
    child.wait_line("slow started", |l| l == "slow started");
    let started = Instant::now();
    let panicked = rt.block_on(get(&client, format!("{base}/panic")));
    assert!(
        panicked.is_err(),
        "the panicking request gets no answer: {panicked:?}"
    );
    let answer = rt.block_on(in_flight).unwrap();
    assert_eq!(answer.unwrap(), (200, "slept 1000 ms".to_owned()));
    let outcome = child.finish();
    outcome.assert_code(101);
    assert!(
        outcome.stdout.iter().any(|l| l == "hook: server drained"),
        "{outcome:#?}"
    );
    assert_prompt(started.elapsed());
}

async fn bind() -> tokio::net::TcpListener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    listener
}

/// Reads the child's "listening on" line; returns its base URL.
fn listening_address(child: &mut Child) -> String {
    let line = child.wait_line("listening on", |l| l.starts_with("listening on "));
    line["listening on ".len()..].to_owned()
}

fn router() -> axum::Router {
    use axum::extract::Query;
    use axum::routing::get;

    #[derive(serde::Deserialize)]
    struct Slow {
        ms: u64,
    }
    axum::Router::new()
        .route(
            "/slow",
            get(|Query(Slow { ms }): Query<Slow>| async move {
                println!("slow started");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms")
            }),
        )
        .route("/panic", get(panicking))
}

async fn panicking() -> &'static str {
    panic!("handler boom")
}

#[tokio::main]
async fn panicking_handler() {
    let listener = bind().await;
    let server = tokio::spawn(
        axum::serve(listener, router())
            .with_graceful_shutdown(exit_hook::exiting())
            .into_future(),
    );
    exit_hook::add_async(|_| async move {
        if let Ok(Ok(())) = server.await {
            println!("hook: server drained");
        }
    });
    pending::<()>().await;
}

fn start_exit_from_a_task_does_not_block_a_current_thread_runtime() {
    let outcome = Child::spawn("start_exit_from_task").finish();
    outcome.assert_code(2);
    assert_eq!(
        outcome.after_ready(),
        [
            "started: true",
            "again: false",
            "hook: exit_hook::exit, exit status 2; app: app task done",
        ]
    );
    assert_prompt(outcome.elapsed);
}

/// A task starts the exit while an async hook awaits another task of the
/// same (single-threaded) runtime: that task must still run.
#[tokio::main(flavor = "current_thread")]
async fn start_exit_from_task() {
    let app = tokio::spawn(async {
        exit_hook::exiting().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        "app task done"
    });
    exit_hook::add_async(|exit| async move {
        println!("hook: {exit}; app: {}", app.await.unwrap());
    });
    ready();
    tokio::spawn(async {
        println!("started: {}", exit_hook::start_exit(2));
        println!("again: {}", exit_hook::start_exit(5));
    });
    pending::<()>().await;
}

fn exit_from_a_task_wakes_the_app_on_another_worker() {
    let outcome = Child::spawn("exit_from_task").finish();
    outcome.assert_code(3);
    assert_eq!(
        outcome.after_ready(),
        ["hook: exit_hook::exit, exit status 3; app: app task done"]
    );
    assert_prompt(outcome.elapsed);
}

/// `exit_hook::exit` blocks the worker that calls it; the task waiting on
/// `exiting()` must be woken where the other worker can run it (a task woken
/// on a tokio worker goes to that worker's own slot, which no one steals).
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn exit_from_task() {
    let app = tokio::spawn(async {
        exit_hook::exiting().await;
        "app task done"
    });
    exit_hook::add_async(|exit| async move {
        println!("hook: {exit}; app: {}", app.await.unwrap());
    });
    ready();
    tokio::spawn(async { exit_hook::exit(3) });
    pending::<()>().await;
}

fn panic_holding_a_lock_the_hooks_need_does_not_wait_for_the_deadline() {
    let outcome = Child::spawn("panic_holding_locks").finish();
    outcome.assert_code(101);
    assert_eq!(
        outcome.stdout,
        ["hook: got the lock, poisoned=true, code Some(101)"]
    );
    assert_prompt(outcome.elapsed);
}

/// A thread panics while it holds a mutex the hook needs and stdout's lock.
/// Unwinding releases both, so the hook gets them at once.
fn panic_holding_locks() {
    static SHARED: Mutex<u32> = Mutex::new(0);
    exit_hook::add(|exit| {
        let poisoned = SHARED.lock().is_err();
        println!(
            "hook: got the lock, poisoned={poisoned}, code {:?}",
            exit.code()
        );
    });
    thread::spawn(|| {
        let _shared = SHARED.lock().unwrap();
        let _stdout = std::io::stdout().lock();
        panic!("holding locks");
    });
    wait_forever();
}

// ---- Phases and time limits ----

fn phases_run_in_order_whatever_the_registration_order() {
    let outcome = terminate("phases");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        [
            "drain sync",
            "drain async",
            "late drain",
            "cleanup",
            "close",
            "flush"
        ]
    );
}

/// Registered in the reverse of their phases' order; one drain hook
/// registers another drain hook while the drain runs.
fn phases() {
    exit_hook::in_phase(Phase::Flush).add(|_| println!("flush"));
    exit_hook::in_phase(Phase::Close).add_async(|_| async { println!("close") });
    exit_hook::add(|_| println!("cleanup"));
    exit_hook::in_phase(Phase::Drain).add_async(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        exit_hook::in_phase(Phase::Drain).add(|_| println!("late drain"));
        println!("drain async");
    });
    exit_hook::in_phase(Phase::Drain).add(|_| println!("drain sync"));
    ready();
    wait_forever();
}

fn time_limits_move_the_run_on_and_name_the_hook() {
    let outcome = terminate("time_limits");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["close ran", "flush ran"]);
    let errors = outcome.lines_starting("error: ");
    assert_eq!(errors.len(), 2, "{outcome:#?}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("invalid shutdown timeout")),
        "{errors:?}"
    );
    let sites = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("sites: "))
        .unwrap();
    let (stuck_async, stuck_sync) = sites.split_once(' ').unwrap();
    let lines = outcome.crate_lines();
    assert_eq!(
        lines,
        [
            format!(
                "exit_hook: the hook registered at {stuck_async} passed its time limit of 300ms; the run moves on"
            ),
            format!(
                "exit_hook: the hook registered at {stuck_sync} passed its time limit of 300ms; the run moves on"
            ),
        ],
        "{outcome:#?}"
    );
    // Two limits of 300 ms one after the other, far from the 30 s deadline.
    assert!(
        outcome.elapsed >= Duration::from_millis(550),
        "{:?}",
        outcome.elapsed
    );
    assert_prompt(outcome.elapsed);
}

fn time_limits() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    let limit = Duration::from_millis(300);
    let stuck_async = exit_hook::in_phase(Phase::Drain)
        .time_limit(limit)
        .add_async(|_| pending());
    let stuck_sync = HookBuilder::new()
        .time_limit(limit)
        .add(|_| thread::sleep(Duration::from_secs(3600)));
    exit_hook::in_phase(Phase::Close).add(|_| println!("close ran"));
    exit_hook::in_phase(Phase::Flush).add(|_| println!("flush ran"));
    println!(
        "sites: {} {}",
        stuck_async.location(),
        stuck_sync.location()
    );
    for bad in [Duration::ZERO, Builder::MAX_TIMEOUT * 2] {
        match HookBuilder::new().time_limit(bad).try_add(|_| {}) {
            Ok(_) => println!("registered with {bad:?}"),
            Err(err) => println!("error: {err}"),
        }
    }
    ready();
    wait_forever();
}

// ---- Exit guards ----

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
    assert_prompt(outcome.elapsed);
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
    assert!(lines[0].starts_with("main: stopped taking jobs after "), "{outcome:#?}");
    assert_eq!(lines[1], "main: cleanup done");
    assert_eq!(
        lines[2],
        "flush hook: logs flushed (SIGINT (2), exit status 130)"
    );
    assert!(outcome.elapsed >= Duration::from_millis(250), "{:?}", outcome.elapsed);
    assert_prompt(outcome.elapsed);
}

fn guard_lets_axum_in_main_answer_every_request_in_flight() {
    let mut child = Child::spawn("guard_axum_in_main");
    let base = listening_address(&mut child);
    let (client, rt) = (client(), runtime());
    let requests: Vec<_> = (0..5)
        .map(|_| rt.spawn(get(&client, format!("{base}/slow?ms=500"))))
        .collect();
    for _ in 0..5 {
        child.wait_line("slow started", |l| l == "slow started");
    }
    child.send(libc::SIGTERM);
    for request in requests {
        let answer = rt.block_on(request).unwrap();
        assert_eq!(answer.expect("answered"), (200, "slept 500 ms".to_owned()));
    }
    let outcome = child.finish();
    outcome.assert_code(143);
    assert_eq!(outcome.stdout.last().unwrap(), "main: server returned");
    assert_prompt(outcome.elapsed);
}

#[tokio::main]
async fn guard_axum_in_main() {
    let _running = exit_hook::hold_exit();
    let listener = bind().await;
    axum::serve(listener, router())
        .with_graceful_shutdown(exit_hook::exiting())
        .await
        .unwrap();
    println!("main: server returned");
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
    assert_prompt(outcome.elapsed);
}

fn guard_second_signal() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    let _running = exit_hook::hold_exit();
    exit_hook::add(|_| println!("cleanup hook ran"));
    ready();
    while !exit_hook::is_exiting() {
        thread::sleep(Duration::from_millis(1));
    }
    println!("run started");
    wait_forever();
}

fn panic_run_waits_for_a_guard_and_keeps_101() {
    let outcome = Child::spawn("guard_panic").finish();
    outcome.assert_code(101);
    assert_eq!(outcome.stdout, ["main: releasing", "flush: code Some(101)"]);
    assert_prompt(outcome.elapsed);
}

fn guard_panic() {
    let guard = exit_hook::hold_exit();
    exit_hook::in_phase(Phase::Flush).add(|exit| println!("flush: code {:?}", exit.code()));
    thread::spawn(|| {
        thread::sleep(Duration::from_millis(50));
        panic!("worker boom");
    });
    while !exit_hook::is_exiting() {
        thread::sleep(Duration::from_millis(1));
    }
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
    while !exit_hook::is_exiting() {
        thread::sleep(Duration::from_millis(1));
    }
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
    assert_prompt(outcome.elapsed);
}

/// `main` returns at once; a worker thread holds a guard and finishes its
/// work once the run (started by the return) is under way.
fn guard_thread_main_returns() {
    let guard = exit_hook::hold_exit();
    exit_hook::in_phase(Phase::Flush).add(|exit| println!("flush: {exit}"));
    thread::spawn(move || {
        while !exit_hook::is_exiting() {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(200));
        println!("worker: done");
        drop(guard);
    });
}

fn deadline_report_names_unreleased_guards_and_hooks_never_started() {
    let outcome = terminate("guard_leaked");
    outcome.assert_code(143);
    let site = |prefix: &str| {
        outcome
            .stdout
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .to_owned()
    };
    let (guard, never) = (site("guard: "), site("never started: "));
    assert_eq!(
        outcome.after_ready(),
        Vec::<&str>::new(),
        "the close hook never ran"
    );
    assert_eq!(
        outcome.crate_lines(),
        [format!(
            "exit_hook: deadline of 500ms passed; 1 hook(s) never started: {never}; \
             1 exit guard(s) still held, taken at: {guard}"
        )]
    );
    assert!(
        outcome.elapsed >= Duration::from_millis(450),
        "{:?}",
        outcome.elapsed
    );
    assert_prompt(outcome.elapsed);
}

fn guard_leaked() {
    install(Builder::new().timeout(Duration::from_millis(500)));
    let guard = exit_hook::hold_exit();
    println!("guard: {}", guard.location());
    std::mem::forget(guard);
    let close = exit_hook::in_phase(Phase::Close).add(|_| println!("close hook ran"));
    println!("never started: {}", close.location());
    ready();
    wait_forever();
}
