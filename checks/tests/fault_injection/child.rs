//! The child's side: set up the scenario, then do what its trigger needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use exit_hook::HookHandle;
use std::thread;
use std::time::Duration;

use crate::scenario::{Hook, Scenario, Trigger};

static MID_RUN: AtomicBool = AtomicBool::new(false);
static LOCK: Mutex<()> = Mutex::new(());

fn register(index: usize, hook: Hook) {
    match hook {
        Hook::Sync => drop(exit_hook::add(move |_| say(index, true))),
        Hook::Async(ms) => drop(exit_hook::add_async(move |_| async move {
            println!("start {index}");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            println!("end {index}");
        })),
        Hook::SyncPanic => drop(exit_hook::add(move |_| {
            println!("start {index}");
            panic!("hook {index}");
        })),
        Hook::AsyncPanic => drop(exit_hook::add_async(move |_| async move {
            println!("start {index}");
            panic!("hook {index}");
        })),
        Hook::Limited => drop(limited().add(move |_| say(index, true))),
        Hook::LimitedHang => drop(limited().add(move |_| hang(index))),
        Hook::SyncHang => drop(exit_hook::add(move |_| hang(index))),
        Hook::AsyncHang => drop(exit_hook::add_async(move |_| async move {
            println!("start {index}");
            std::future::pending::<()>().await;
        })),
        Hook::Registers => drop(exit_hook::add(move |_| {
            say(index, false);
            exit_hook::add(move |_| println!("late {index}"));
            println!("end {index}");
        })),
        Hook::CallsExit => drop(exit_hook::add(move |_| {
            println!("start {index}");
            exit_hook::exit(77);
        })),
        Hook::CallsProcessExit => drop(exit_hook::add(move |_| {
            println!("start {index}");
            std::process::exit(78);
        })),
        Hook::Forks => drop(exit_hook::add(move |_| {
            println!("start {index}");
            // SAFETY: fork(2); the child only returns into the run, which
            // ends it. alarm(2) is its watchdog.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe { libc::alarm(10) };
                return;
            }
            let mut status = 0;
            // SAFETY: waitpid(2) on the child just forked.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            println!("end {index}");
        })),
        Hook::SignalsSelf => drop(exit_hook::add(move |_| {
            println!("start {index}");
            // SAFETY: signals to this very process.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGTERM);
                libc::raise(libc::SIGINT);
            }
            thread::sleep(Duration::from_millis(5));
            println!("end {index}");
        })),
        Hook::DropUnregisters => {
            /// Unregisters the hook it holds when dropped (with its closure).
            struct Unregisters(Arc<Mutex<Option<HookHandle>>>);
            impl Drop for Unregisters {
                fn drop(&mut self) {
                    if let Some(handle) = self.0.lock().unwrap().take() {
                        handle.unregister();
                    }
                }
            }
            let victim = Arc::new(Mutex::new(None));
            let holder = Unregisters(victim.clone());
            let _ = exit_hook::add(move |_| {
                let _holder = &holder;
                say(index, true);
            });
            *victim.lock().unwrap() = Some(exit_hook::add(move |_| println!("victim {index}")));
        }
    }
}

/// Says the hook started, and never returns.
fn hang(index: usize) -> ! {
    println!("start {index}");
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

/// A hook with a 100 ms time limit, below every scenario's deadline.
fn limited() -> exit_hook::HookBuilder {
    exit_hook::HookBuilder::new().time_limit(Duration::from_millis(100))
}

fn say(index: usize, end: bool) {
    println!("start {index}");
    if end {
        println!("end {index}");
    }
}

pub fn run(scenario: &Scenario) {
    exit_hook::Builder::new()
        .timeout(scenario.timeout)
        .force_on_second_signal(scenario.force)
        .install()
        .unwrap();
    let mid_run_trigger = matches!(
        scenario.trigger,
        Trigger::PanicDuringSignalRun(_)
            | Trigger::ReturnDuringSignalRun(_)
            | Trigger::ProcessExitFromThreadDuringSignalRun(_)
    );
    if mid_run_trigger {
        // The first hook lets the trigger happen while the run is going.
        exit_hook::add(|_| {
            MID_RUN.store(true, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(50));
        });
    }
    if let Trigger::PanicHoldingLock = scenario.trigger {
        // The first hook needs the lock the panicking thread holds.
        exit_hook::add(|_| drop(LOCK.lock().unwrap_or_else(PoisonError::into_inner)));
    }
    if let Trigger::SignalWhileRegistering(_) = scenario.trigger {
        println!("REGISTERING");
        for (index, hook) in scenario.hooks.iter().enumerate() {
            register(index, *hook);
            thread::sleep(Duration::from_millis(1));
        }
        wait_forever();
    }
    for (index, hook) in scenario.hooks.iter().enumerate() {
        register(index, *hook);
    }
    match scenario.trigger {
        Trigger::PanicMain => panic!("main"),
        Trigger::PanicThreads(n) => {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
            for i in 0..n {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    panic!("thread {i}");
                });
            }
            wait_forever();
        }
        Trigger::Return => {}
        Trigger::PanicHoldingLock => {
            thread::spawn(|| {
                let _held = LOCK.lock().unwrap();
                panic!("holding the lock");
            });
            wait_forever();
        }
        Trigger::ForeignPanicHook => {
            std::panic::set_hook(Box::new(exit_hook::handle_panic));
            thread::spawn(|| panic!("under the app's panic hook"));
            wait_forever();
        }
        Trigger::ProcessExit(n) => std::process::exit(n),
        Trigger::ExitHookExit(n) => exit_hook::exit(n),
        Trigger::SignalDuringPanicRun(_) => panic!("main"),
        Trigger::PanicDuringSignalRun(_) => {
            println!("READY");
            wait_mid_run();
            panic!("main, mid-run");
        }
        Trigger::ReturnDuringSignalRun(_) => {
            println!("READY");
            wait_mid_run();
        }
        Trigger::ProcessExitFromThreadDuringSignalRun(_) => {
            println!("READY");
            wait_mid_run();
            thread::spawn(|| std::process::exit(5)).join().unwrap();
        }
        Trigger::Signal(_) | Trigger::Storm(_) | Trigger::SignalWhileRegistering(_) => {
            println!("READY");
            wait_forever();
        }
    }
}

fn wait_mid_run() {
    while !MID_RUN.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
}

fn wait_forever() -> ! {
    loop {
        thread::park();
    }
}
