//! [`keepalive::Group`]: three apps in one process (its role, beside the
//! test), each with its own name and control socket: the apps' workers
//! are that process's children, an app that gives up leaves the others
//! running, and one SIGTERM stops them all at once.

use std::process::Command;
use std::time::Duration;

use libtest_mimic::Trial;

use crate::cluster::{Watchdog, assert_stopped_once};
use crate::control::{RuntimeDir, pids};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_group_runs_three_apps_in_one_process,
        keepalive_group_leaves_an_apps_orphan_to_that_app,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "group_of_three" => group_of_three(),
        "group_with_an_orphan" => group_with_an_orphan(),
        _ => false,
    }
}

/// As the `keepalive` command installs exit_hook: SIGTERM and SIGINT stop
/// the group, a second one does not cut the workers' stop short.
fn install_exit_hook() {
    exit_hook::Builder::new()
        .signals([
            exit_hook::Signal::terminate(),
            exit_hook::Signal::interrupt(),
        ])
        .force_on_second_signal(false)
        .install()
        .unwrap();
}

/// An app of the group: `program` under `name`, its events printed as
/// `keepalive[NAME]: …`.
fn app(name: &'static str, program: impl AsRef<std::ffi::OsStr>) -> keepalive::Supervisor {
    keepalive::Supervisor::new(program)
        .control(name)
        .on_event(move |event| println!("keepalive[{name}]: {event}"))
}

/// Runs `group` until exit_hook ends the process (143).
fn run(group: keepalive::Group) -> ! {
    let reasons = group.run().unwrap();
    println!("ended: {reasons:?}");
    crate::child::wait_forever()
}

/// `db` (a worker), `web` (two) and `broken` (exits at once, every time:
/// given up, spinning, alone).
fn group_of_three() -> ! {
    install_exit_hook();
    let exe = std::env::current_exe().unwrap();
    run(keepalive::Group::new()
        .app(app("db", &exe).env("EXIT_HOOK_SCENARIO", "worker"))
        .app(
            app("web", &exe)
                .env("EXIT_HOOK_SCENARIO", "worker")
                .workers(2),
        )
        .app(app("broken", "false")))
}

/// Two apps in one process: `a`'s worker leaves a process of its own
/// behind (a double fork: reparented to the group, `NOTIFY_SOCKET` still
/// `a`'s), and `b`'s worker exits every half second (each exit makes `b`
/// look for what its worker left).
fn group_with_an_orphan() -> ! {
    install_exit_hook();
    let shell = |name: &'static str, script: &str| {
        app(name, "sh")
            .args(["-c", script])
            .min_uptime(Duration::ZERO)
    };
    run(keepalive::Group::new()
        .app(shell(
            "a",
            "(setsid sh -c 'echo orphan $$; exec sleep 600' &); echo worker $$; exec sleep 600",
        ))
        .app(shell("b", "sleep 0.5; exit 3")))
}

/// What one app's worker left (an orphan tied to it by its
/// `NOTIFY_SOCKET`) is that app's: another app's workers exiting around it
/// do not make that app stop it (before, `b` adopted and stopped it at its
/// first worker's exit). It goes with `a`'s stop.
fn keepalive_group_leaves_an_apps_orphan_to_that_app() {
    let dir = RuntimeDir::new("orphan");
    let mut watchdog = Watchdog::default();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("XDG_RUNTIME_DIR", dir.path());
    super::merge_stderr(&mut command);
    let mut group = Child::spawn_with(command, "group_with_an_orphan");
    let (mut orphan, mut worker) = (None, None);
    while orphan.is_none() || worker.is_none() {
        let line = group.wait_line("a's worker and its orphan", |line| {
            line.starts_with("orphan ") || line.starts_with("worker ")
        });
        let (what, pid) = line.split_once(' ').unwrap();
        let pid = watchdog.watch(pid.parse().unwrap());
        match what {
            "orphan" => orphan = Some(pid),
            _ => worker = Some(pid),
        }
    }
    let (orphan, worker) = (orphan.unwrap(), worker.unwrap());
    // b's worker exits at 0.5 s, 1 s, 1.5 s …
    for _ in 0..3 {
        group.wait_line("b's worker exits", |line| {
            line.starts_with("keepalive[b]: pid ") && line.contains(" exited ")
        });
    }
    assert!(!crate::cluster::is_gone(orphan), "a's orphan left alone");
    assert_eq!(
        parent_of(orphan),
        group.pid() as u32,
        "reparented to the group"
    );
    let outcome = group.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(
        !outcome
            .stdout
            .iter()
            .any(|line| line.starts_with("keepalive[b]: ")
                && line.contains(&format!("pid {orphan}"))),
        "b never touched a's orphan: {outcome:#?}"
    );
    crate::cluster::assert_gone_soon(orphan);
    assert_stopped_once_by_keepalive(&outcome, worker);
}

/// `pid` was asked to stop once, by its app.
fn assert_stopped_once_by_keepalive(outcome: &crate::harness::Outcome, pid: u32) {
    let asked = outcome
        .stdout
        .iter()
        .filter(|line| line.contains(&format!("sent SIGTERM (15) to pid {pid}")))
        .count();
    assert_eq!(asked, 1, "{outcome:#?}");
}

/// The parent of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[1].parse().unwrap()
}

/// Three apps, one process: `db` (a worker), `web` (two) and `broken`
/// (gives up). Each answers by its name with that process's pid; every
/// worker is its child; `broken` giving up leaves the others running; one
/// SIGTERM stops every worker once, and the process exits 143.
fn keepalive_group_runs_three_apps_in_one_process() {
    let dir = RuntimeDir::new("group");
    let mut watchdog = Watchdog::default();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("XDG_RUNTIME_DIR", dir.path());
    super::merge_stderr(&mut command);
    let mut group = Child::spawn_with(command, "group_of_three");
    let me = group.pid() as u32;
    // The three workers' lines and broken's giving up, in any order.
    let (mut workers, mut gave_up) = (Vec::new(), false);
    while workers.len() < 3 || !gave_up {
        let line = group.wait_line("the workers and broken's give-up", |line| {
            line.starts_with("worker ") || line.starts_with("keepalive[broken]: gave up")
        });
        match line.strip_prefix("worker ") {
            Some(pid) => workers.push(watchdog.watch(pid.parse().unwrap())),
            None => gave_up = true,
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for &pid in &workers {
        assert_eq!(parent_of(pid), me, "worker {pid} is the group's child");
    }
    let (db, web) = (dir.status("db"), dir.status("web"));
    assert_eq!(db["pid"], me, "{db:#}");
    assert_eq!(web["pid"], me, "{web:#}");
    let mut seen: Vec<u64> = pids(&db).into_iter().chain(pids(&web)).collect();
    seen.sort_unstable();
    let mut started: Vec<u64> = workers.iter().map(|&pid| u64::from(pid)).collect();
    started.sort_unstable();
    assert_eq!(seen, started, "db's one and web's two, still running");
    let outcome = group.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for &pid in &workers {
        assert_stopped_once(&outcome, pid);
    }
}
