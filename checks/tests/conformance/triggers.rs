//! What starts a run, and the status the process ends with (SPEC §2).

use std::thread;
use std::time::Duration;

use exit_hook::{Builder, Signal, SignalExit};
use libtest_mimic::Trial;

use crate::child::{describe_panic, hook, install, ready, wait_forever};
use crate::harness::{Child, build_example, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    let pid_1 = Trial::test("reraise_as_pid_1_exits_128_plus_n", || {
        reraise_as_pid_1_exits_128_plus_n();
        Ok(())
    })
    .with_ignored_flag(!can_unshare_pid());
    std::iter::once(pid_1)
        .chain(trials![
            each_signal_exits_with_128_plus_n,
            reraise_policy_dies_by_the_signal,
            custom_policy_maps_the_status,
            panic_on_main_exits_101,
            panic_on_a_spawned_thread_exits_101,
            panic_abort_still_runs_hooks_and_exits_101,
            main_returning_runs_hooks_and_keeps_0,
            process_exit_keeps_its_code,
            exit_hook_exit_runs_hooks_then_exits,
            async_hooks_run_after_tokio_main_returned,
            second_signal_forces_exit,
            second_signal_ignored_when_force_is_off,
            configuration_errors_are_returned,
        ])
        .collect()
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        signal,
        panic_main,
        panic_thread,
        main_returns,
        process_exit,
        exit_hook_exit,
        force => force(true),
        no_force => force(false),
        tokio_main,
        reraise,
        config_errors,
        custom_status,
    }
}

fn each_signal_exits_with_128_plus_n() {
    for (signal, name) in [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
    ] {
        let status = 128 + signal;
        let outcome = Child::spawn("signal").ready().signal(signal).finish();
        outcome.assert_code(status);
        let exit = format!("{name} ({signal}), exit status {status}");
        assert_eq!(
            outcome.after_ready(),
            [
                format!("a: {exit}"),
                format!("b: {exit} signal=Some({signal}) code=Some({status})")
            ],
            "{outcome:#?}"
        );
        assert_eq!(outcome.stderr, "", "nothing is printed on the happy path");
        // The hooks take 10 ms: the process must not wait out the 10 s deadline.
        outcome.assert_elapsed(..Duration::from_secs(5));
    }
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

fn reraise_policy_dies_by_the_signal() {
    let outcome = terminate("reraise");
    outcome.assert_signal(libc::SIGTERM);
    assert_eq!(
        outcome.after_ready(),
        ["a: SIGTERM (15), dying by the signal"]
    );
}

fn reraise() {
    install(Builder::new().signal_exit(SignalExit::Reraise));
    hook("a");
    ready();
    wait_forever();
}

/// Whether this machine lets us start a process as PID 1 of a new PID
/// namespace (root, or an unprivileged user namespace). The test that needs
/// it is reported as ignored where it cannot.
fn can_unshare_pid() -> bool {
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// In a container the application is usually PID 1, for which the kernel
/// ignores a signal with the default action: re-raising SIGTERM does nothing
/// there. The process must still end, with 128 + n. (It used to hang.)
fn reraise_as_pid_1_exits_128_plus_n() {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap());
    let mut unshare = Child::spawn_with(command, "reraise").ready();
    // The application is unshare's only child; unshare passes on its exit status.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.pid())).unwrap();
    let app: i32 = children
        .split_whitespace()
        .next()
        .expect("unshare's child")
        .parse()
        .unwrap();
    // SAFETY: kill(2) with the pid of a process whose parent we have not reaped.
    assert_eq!(unsafe { libc::kill(app, libc::SIGTERM) }, 0);
    unshare.send(0); // resets the clock; signal 0 only checks the pid
    let outcome = unshare.finish();
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["a: SIGTERM (15), dying by the signal"]
    );
}

fn custom_policy_maps_the_status() {
    let outcome = terminate("custom_status");
    outcome.assert_code(0);
    assert_eq!(outcome.after_ready(), ["a: SIGTERM (15), exit status 0"]);
}

fn custom_status() {
    install(Builder::new().signal_exit(SignalExit::Custom(|signal| {
        if signal == Signal::terminate() { 0 } else { 1 }
    })));
    hook("a");
    ready();
    wait_forever();
}

const PANIC_LINE: &str =
    "panic: message=boom thread=Some(\"main\") located=true error=true code=Some(101)";

fn panic_on_main_exits_101() {
    let outcome = Child::spawn("panic_main").finish();
    outcome.assert_code(101);
    assert_eq!(outcome.stdout, [PANIC_LINE]);
    assert!(
        outcome.stderr.contains("panicked at") && outcome.stderr.contains("boom"),
        "the previous hook ran: {outcome:#?}"
    );
}

fn panic_main() {
    exit_hook::add(describe_panic);
    panic!("boom");
}

fn panic_on_a_spawned_thread_exits_101() {
    let outcome = Child::spawn("panic_thread").finish();
    outcome.assert_code(101);
    assert_eq!(
        outcome.stdout,
        [
            "panic: message=worker boom thread=Some(\"worker\") located=true error=true code=Some(101)"
        ]
    );
    assert!(
        outcome.stderr.contains("thread 'worker'") && outcome.stderr.contains("worker boom"),
        "{outcome:#?}"
    );
}

fn panic_thread() {
    exit_hook::add(describe_panic);
    thread::Builder::new()
        .name("worker".into())
        .spawn(|| panic!("worker boom"))
        .unwrap();
    wait_forever();
}

/// Builds `examples/04_panic_abort.rs` with `panic = "abort"` (the test
/// harness itself cannot be built that way) and runs it.
fn panic_abort_still_runs_hooks_and_exits_101() {
    let outcome = Child::spawn_with(
        std::process::Command::new(build_example("04_panic_abort", Some("panic-abort"))),
        "",
    )
    .finish();
    outcome.assert_code(101);
    let [line] = &outcome.stdout[..] else {
        panic!("one hook line: {outcome:#?}")
    };
    assert!(
        line.starts_with("flushing the log: thread 'main' panicked at examples/04_panic_abort.rs:"),
        "{line}"
    );
    assert!(line.ends_with(": disk full, exit status 101"), "{line}");
}

fn main_returning_runs_hooks_and_keeps_0() {
    let outcome = Child::spawn("main_returns").finish();
    outcome.assert_code(0);
    assert_eq!(outcome.stdout, ["a: process exit, exit status 0"]);
}

fn main_returns() {
    hook("a");
}

fn process_exit_keeps_its_code() {
    let outcome = Child::spawn("process_exit").finish();
    outcome.assert_code(7);
    assert_eq!(outcome.stdout, ["a: process exit, exit status 7"]);
}

fn process_exit() {
    hook("a");
    std::process::exit(7);
}

fn exit_hook_exit_runs_hooks_then_exits() {
    let outcome = Child::spawn("exit_hook_exit").finish();
    outcome.assert_code(3);
    assert_eq!(outcome.stdout, ["a: exit_hook::exit, exit status 3"]);
}

fn exit_hook_exit() {
    hook("a");
    exit_hook::exit(3);
}

fn async_hooks_run_after_tokio_main_returned() {
    let outcome = Child::spawn("tokio_main").finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout,
        ["app: from the app", "async: process exit, exit status 0"]
    );
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

fn second_signal_forces_exit() {
    let outcome = Child::spawn("force")
        .ready()
        .signal(libc::SIGTERM)
        .wait_for("started")
        .signal(libc::SIGINT)
        .finish();
    outcome.assert_code(130);
    outcome.assert_elapsed(..Duration::from_secs(5));
    assert_eq!(outcome.after_ready(), ["started"]);
    assert_eq!(
        outcome.crate_lines(),
        ["exit_hook: SIGINT (2) during the shutdown run: exiting now with status 130"],
        "one line says why the hooks were cut: {outcome:#?}"
    );
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

fn second_signal_ignored_when_force_is_off() {
    let outcome = Child::spawn("no_force")
        .ready()
        .signal(libc::SIGTERM)
        .wait_for("started")
        .signal(libc::SIGINT)
        .finish();
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["started"]);
    assert_eq!(
        outcome.crate_lines().len(),
        1,
        "the 1 s deadline ended it: {outcome:#?}"
    );
}

fn configuration_errors_are_returned() {
    let outcome = Child::spawn("config_errors").finish();
    outcome.assert_code(0);
    assert_eq!(
        outcome.stdout,
        [
            "error: invalid shutdown timeout 0ns: it must be at least 1ms and at most 3600s",
            "error: invalid shutdown timeout 1ns: it must be at least 1ms and at most 3600s",
            &format!(
                "error: invalid shutdown timeout {:?}: it must be at least 1ms and at most 3600s",
                Duration::MAX
            ),
            "error: SIGKILL (9) cannot start a shutdown: the kernel never delivers it to a handler",
            "error: SIGSEGV (11) cannot start a shutdown: it reports a fault in the code that raised it, which cannot go on running",
            "error: signal 1000 cannot start a shutdown: it is not a signal on this platform",
            "ok",
            "error: exit_hook is already installed: configure the Builder before the first add()",
            "ok",
        ]
    );
}

fn config_errors() {
    let show = |result: Result<(), exit_hook::Error>| match result {
        Ok(()) => println!("ok"),
        Err(err) => println!("error: {err}"),
    };
    show(Builder::new().timeout(Duration::ZERO).install());
    // Not "the drain does not fit": the deadline itself is the mistake.
    show(Builder::new().timeout(Duration::from_nanos(1)).install());
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
    show(exit_hook::HookBuilder::new().try_add(|_| {}).map(drop));
}
