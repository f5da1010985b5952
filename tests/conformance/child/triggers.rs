//! The scenarios of `triggers.rs`: each trigger starts the run and ends the
//! process with its status.

use std::thread;
use std::time::Duration;

use exit_hook::{Builder, Signal, SignalExit};

use super::{describe_panic, hook, install, ready, wait_forever};

/// Runs the scenario `role` if it is one of this file's; `false` if not.
pub fn run_role(role: &str) -> bool {
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
        "force" => force(true),
        "no_force" => force(false),
        "tokio_main" => tokio_main(),
        "reraise" => reraise(),
        "config_errors" => config_errors(),
        "custom_status" => custom_status(),
        _ => return false,
    }
    true
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

fn custom_status() {
    install(Builder::new().signal_exit(SignalExit::Custom(|signal| {
        if signal == Signal::terminate() { 0 } else { 1 }
    })));
    hook("a");
    ready();
    wait_forever();
}
