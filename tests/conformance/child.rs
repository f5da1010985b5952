//! The scenarios, run as the real `main` of a child process.
//!
//! Each prints what its hooks see on stdout, one line per event, and `READY`
//! once it is set up and waiting for the parent's signal.

use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use exit_hook::{Builder, HookHandle, Signal, SignalExit};

/// Runs the scenario `role`. Returning returns from `main`.
pub fn run(role: &str) {
    match role {
        "signal" => signal(),
        "panic_main" => panic_main(),
        "panic_thread" => panic_thread(),
        "return" => {
            hook("a");
        }
        "process_exit" => {
            hook("a");
            std::process::exit(7);
        }
        "exit_hook_exit" => {
            hook("a");
            exit_hook::exit(3);
        }
        "many_async" => many_async(),
        "stuck_async" => stuck(Some(Duration::from_millis(500)), true),
        "stuck_sync" => stuck(Some(Duration::from_millis(500)), false),
        "default_deadline" => stuck(None, true),
        "panicking_hook" => panicking_hook(),
        "force" => force(true),
        "no_force" => force(false),
        "unregister" => unregister(),
        "unregister_from_drop" => unregister_from_drop(),
        "order" => order(),
        "tokio_main" => tokio_main(),
        "reraise" => reraise(),
        "config_errors" => config_errors(),
        "register_after_run" => register_after_run(),
        "register_during_run" => register_during_run(),
        "hook_exit" => hook_exits(|| exit_hook::exit(9)),
        "hook_process_exit" => hook_exits(|| std::process::exit(9)),
        "hook_process_exit_on_return" => hook_process_exit_on_return(),
        "exiting_future" => exiting_future(),
        "storm" => storm(),
        "panic_storm" => panic_storm(),
        "signal_during_panic" => signal_during_panic(),
        "return_during_signal_run" => during_signal_run(|| {}),
        "exit_during_signal_run" => during_signal_run(|| std::process::exit(5)),
        "register_from_thread_during_run" => register_from_thread_during_run(),
        "blocked_app_runtime" => blocked_app_runtime(),
        "awaits_the_app" => awaits_the_app(),
        "custom_status" => custom_status(),
        "tracing" => tracing(),
        "stuck_holding_stdout" => stuck_holding_stdout(),
        "hygiene" => hygiene(),
        "crash_twice" => crash_twice(),
        "spin" => {
            println!("start {}", monotonic_ms());
            std::process::exit(1);
        }
        "crash_after_60ms" => {
            println!("start {}", monotonic_ms());
            thread::sleep(Duration::from_millis(60));
            std::process::exit(1);
        }
        "ignore_term" => {
            // SAFETY: setting SIGTERM's disposition to ignore, before any thread exists.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            ready();
            wait_forever();
        }
        "exit_3" => std::process::exit(3),
        other => {
            if !crate::apps::run_role(other) && !crate::real_life::run_role(other) {
                panic!("unknown role {other}")
            }
        }
    }
}

/// A sync hook that prints `name: <exit>`.
#[track_caller]
fn hook(name: &'static str) -> HookHandle {
    exit_hook::add(move |exit| println!("{name}: {exit}"))
}

pub fn ready() {
    println!("READY");
}

pub fn wait_forever() -> ! {
    loop {
        thread::park();
    }
}

pub fn install(builder: Builder) {
    builder.install().expect("install");
}

fn signal() {
    hook("a");
    exit_hook::add_async(|exit| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        println!(
            "b: {exit} signal={:?} code={:?}",
            exit.signal().map(Signal::as_raw),
            exit.code()
        );
    });
    ready();
    wait_forever();
}

fn describe_panic(exit: &exit_hook::Exit) {
    let panic = exit.panic().expect("a panic run");
    println!(
        "panic: message={} thread={:?} located={} error={} code={:?}",
        panic.message(),
        panic.thread(),
        panic.location().is_some_and(|l| l.contains("child.rs")),
        exit.error().is_some(),
        exit.code()
    );
}

fn panic_main() {
    exit_hook::add(describe_panic);
    panic!("boom");
}

fn panic_thread() {
    exit_hook::add(describe_panic);
    thread::Builder::new()
        .name("worker".into())
        .spawn(|| panic!("worker boom"))
        .unwrap();
    wait_forever();
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

fn force(on: bool) {
    install(
        Builder::new()
            .timeout(Duration::from_secs(if on { 30 } else { 1 }))
            .force_on_second_signal(on),
    );
    exit_hook::add(|_| {
        println!("started");
        thread::sleep(Duration::from_secs(60));
    });
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

/// The application's runtime is dropped when `main` returns; the async hook
/// still runs, on the crate's runtime.
#[tokio::main]
async fn tokio_main() {
    let app_task = tokio::spawn(async { "from the app" });
    exit_hook::add_async(|exit| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        println!("async: {exit}");
    });
    println!("app: {}", app_task.await.unwrap());
}

fn reraise() {
    install(Builder::new().signal_exit(SignalExit::Reraise));
    hook("a");
    ready();
    wait_forever();
}

fn config_errors() {
    let show = |result: Result<(), exit_hook::Error>| match result {
        Ok(()) => println!("ok"),
        Err(err) => println!("error: {err}"),
    };
    show(Builder::new().timeout(Duration::ZERO).install());
    show(Builder::new().timeout(Duration::MAX).install());
    show(
        Builder::new()
            .signals([Signal::from_raw(libc::SIGKILL)])
            .install(),
    );
    show(
        Builder::new()
            .signals([Signal::from_raw(libc::SIGSEGV)])
            .install(),
    );
    show(Builder::new().signals([Signal::from_raw(1000)]).install());
    show(Builder::new().install());
    show(Builder::new().install());
    show(exit_hook::try_add(|_| {}).map(drop));
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

fn hook_exits(end: fn()) {
    install(Builder::new().timeout(Duration::from_secs(30)));
    hook("a");
    exit_hook::add(move |_| {
        println!("b");
        end();
        println!("b returned");
    });
    hook("c");
    ready();
    wait_forever();
}

fn hook_process_exit_on_return() {
    install(Builder::new().timeout(Duration::from_secs(1)));
    hook("a");
    exit_hook::add(|_| {
        println!("b");
        std::process::exit(9);
    });
    hook("c");
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

fn storm() {
    install(
        Builder::new()
            .force_on_second_signal(false)
            .timeout(Duration::from_secs(10)),
    );
    exit_hook::add(|exit| {
        println!("a: {exit}");
        thread::sleep(Duration::from_millis(300));
    });
    ready();
    wait_forever();
}

fn panic_storm() {
    exit_hook::add(describe_panic);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    for i in 0..8 {
        let barrier = barrier.clone();
        thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                barrier.wait();
                panic!("storm {i}");
            })
            .unwrap();
    }
    wait_forever();
}

fn signal_during_panic() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    exit_hook::add(|exit| {
        println!("started: {}", exit.code().unwrap());
        thread::sleep(Duration::from_secs(60));
    });
    panic!("first");
}

/// A signal starts the run; while its hook runs, `main` does `then` and returns.
fn during_signal_run(then: fn()) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    install(Builder::new().timeout(Duration::from_secs(30)));
    exit_hook::add(|exit| {
        println!("started: {exit}");
        STARTED.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(500));
        println!("hook done");
    });
    ready();
    while !STARTED.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    then();
}

/// While a sync hook runs, `main` registers another hook: it returns at once
/// (before the running hook ends) and the new hook joins the run.
fn register_from_thread_during_run() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    install(Builder::new().timeout(Duration::from_secs(30)));
    exit_hook::add(|_| {
        println!("a started");
        STARTED.store(true, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(500));
        println!("a done");
    });
    ready();
    while !STARTED.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
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

fn custom_status() {
    install(Builder::new().signal_exit(SignalExit::Custom(|signal| {
        if signal == Signal::terminate() { 0 } else { 1 }
    })));
    hook("a");
    ready();
    wait_forever();
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

/// CLOCK_MONOTONIC in milliseconds, comparable across processes.
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
}

/// Exits with 1 after 100 ms the first two times (counted in the file
/// `EXIT_HOOK_STATE`), then registers a hook and waits.
fn crash_twice() {
    let state = std::env::var("EXIT_HOOK_STATE").expect("EXIT_HOOK_STATE");
    let runs: u32 = std::fs::read_to_string(&state)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    std::fs::write(&state, (runs + 1).to_string()).unwrap();
    if runs < 2 {
        thread::sleep(Duration::from_millis(100));
        println!("crash {runs}");
        std::process::exit(1);
    }
    hook("child");
    ready();
    wait_forever();
}
