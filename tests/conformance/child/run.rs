//! The scenarios of `run.rs`: what a run does with its hooks (order,
//! concurrency, the deadline, registering and unregistering, what it tells).

use std::future::pending;
use std::thread;
use std::time::Duration;

use exit_hook::{Builder, HookHandle};

use super::{hook, install, ready, ready_then_wait_for_a_slow_hook, wait_forever};

/// Runs the scenario `role` if it is one of this file's; `false` if not.
pub fn run_role(role: &str) -> bool {
    match role {
        "many_async" => many_async(),
        "stuck_async" => stuck(Some(Duration::from_millis(500)), true),
        "stuck_sync" => stuck(Some(Duration::from_millis(500)), false),
        "default_deadline" => stuck(None, true),
        "panicking_hook" => panicking_hook(),
        "unregister" => unregister(),
        "unregister_from_drop" => unregister_from_drop(),
        "order" => order(),
        "register_after_run" => register_after_run(),
        "register_during_run" => register_during_run(),
        "exiting_future" => exiting_future(),
        "register_from_thread_during_run" => register_from_thread_during_run(),
        "blocked_app_runtime" => blocked_app_runtime(),
        "awaits_the_app" => awaits_the_app(),
        "tracing" => tracing(),
        "stuck_holding_stdout" => stuck_holding_stdout(),
        "hygiene" => hygiene(),
        _ => return false,
    }
    true
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

fn stuck(timeout: Option<Duration>, is_async: bool) {
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
    ready();
    wait_forever();
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

fn unregister() {
    hook("a");
    let b = hook("b");
    hook("c");
    println!("unregistered: {}", b.unregister());
    ready();
    wait_forever();
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

fn order() {
    exit_hook::add(|_| println!("1"));
    exit_hook::add_async(|_| async { println!("2") });
    exit_hook::add(|_| println!("3"));
    exit_hook::add_async(|_| async { println!("4") });
    exit_hook::add(|_| println!("5"));
    ready();
    wait_forever();
}

fn register_after_run() {
    extern "C" fn late() {
        match exit_hook::try_add(|_| println!("never")) {
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

fn register_during_run() {
    exit_hook::add(|_| {
        println!("a");
        exit_hook::add(|_| println!("late sync"));
        exit_hook::add_async(|_| async { println!("late async") });
    });
    ready();
    wait_forever();
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

/// While a sync hook runs, `main` registers another hook: it returns at once
/// (before the running hook ends) and the new hook joins the run.
fn register_from_thread_during_run() {
    ready_then_wait_for_a_slow_hook(|_| "a started".to_owned(), "a done");
    let registered = exit_hook::try_add(|_| println!("late"));
    println!("registered: {}", registered.is_ok());
    wait_forever();
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

/// Threads and descriptors: none before the first registration, only named
/// threads after it, and no descriptor of the crate's leaks into children.
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
