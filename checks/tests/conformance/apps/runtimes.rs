//! A trigger on an application thread does not freeze the application's
//! runtime: a panic in a task (both runtime flavours, an axum handler), an
//! exit started from a task, a panic holding a lock a hook needs.

use std::future::pending;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use super::{PROMPT, assert_prompt, bind, listening_address, router};
use crate::child::{ready, wait_forever};
use crate::harness::Child;
use crate::http::{client, get, runtime};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        panic_in_a_task_wakes_the_app_on_a_multi_thread_runtime,
        panic_in_a_task_wakes_the_app_on_a_current_thread_runtime,
        panicking_request_handler_drains_the_server_and_exits_101,
        start_exit_from_a_task_does_not_block_a_current_thread_runtime,
        exit_from_a_task_wakes_the_app_on_another_worker,
        panic_holding_a_lock_the_hooks_need_does_not_wait_for_the_deadline,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        panic_in_task_multi_thread => panic_in_task(false),
        panic_in_task_current_thread => panic_in_task(true),
        panicking_handler,
        start_exit_from_task,
        exit_from_task,
        panic_holding_locks,
    }
}

fn assert_panic_in_task(scenario: &str) {
    let outcome = Child::spawn(scenario).finish();
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
    outcome.assert_elapsed(..PROMPT);
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
            "hook: exit_hook::start_exit, exit status 2; app: app task done",
        ]
    );
    outcome.assert_elapsed(..PROMPT);
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
    outcome.assert_elapsed(..PROMPT);
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
    outcome.assert_elapsed(..PROMPT);
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
