//! The child's side: set up the scenario, then do what its trigger needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::scenario::{Hook, Scenario, Trigger};

static MID_RUN: AtomicBool = AtomicBool::new(false);

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
        Hook::SyncHang => drop(exit_hook::add(move |_| {
            println!("start {index}");
            loop {
                thread::sleep(Duration::from_secs(1));
            }
        })),
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
    }
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
