//! [`keepalive::Group`]: three apps in one process (its role, beside the
//! test), each with its own name and control socket: the apps' workers
//! are that process's children, an app that gives up leaves the others
//! running, and one SIGTERM stops them all at once. Through its handle,
//! apps are added and stopped alone while it runs.

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
        keepalive_group_adds_and_stops_apps_while_it_runs,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "group_of_three" => group_of_three(),
        "group_with_an_orphan" => group_with_an_orphan(),
        "group_with_a_handle" => group_with_a_handle(),
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

/// `a` alone at the start; through the group's handle: `b` added (after
/// `a`), `a` stopped alone, a second `b` refused (its name is taken),
/// the group held open while `b`, its last app, is stopped, `c` added,
/// then stopped: the group's run returns. Each step says `step: …`; after
/// `a`'s stop it waits for the test to look (a file `go-on` in the
/// runtime directory).
fn group_with_a_handle() -> ! {
    install_exit_hook();
    let exe = std::env::current_exe().unwrap();
    let worker = move |name: &'static str| app(name, &exe).env("EXIT_HOOK_SCENARIO", "worker");
    let group = keepalive::Group::new().app(worker("a"));
    let apps = group.handle();
    std::thread::spawn(move || {
        apps.add(worker("b").after(["a"])).unwrap();
        println!("step: added b");
        until_ready("b");
        println!("step: b ready");
        println!("step: stopped a: {:?}", apps.stop("a").unwrap());
        // The test looks at b, running, before it goes on.
        let go_on =
            std::path::Path::new(&std::env::var_os("XDG_RUNTIME_DIR").unwrap()).join("go-on");
        while !go_on.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        match apps.add(worker("b")) {
            Err(err) => println!("step: no second b: {err}"),
            Ok(()) => println!("step: a second b"),
        }
        let hold = apps.hold();
        println!("step: stopped b: {:?}", apps.stop("b").unwrap());
        std::thread::sleep(Duration::from_millis(300));
        apps.add(worker("c")).unwrap();
        drop(hold);
        until_ready("c");
        println!("step: stopped c: {:?}", apps.stop("c").unwrap());
    });
    run(group)
}

/// Waits until the app `name` has every worker ready.
fn until_ready(name: &str) {
    loop {
        let status = keepalive::control::request(name, &keepalive::Request::Status)
            .ok()
            .and_then(|reply| reply.status);
        if status
            .is_some_and(|s| !s.workers.is_empty() && s.workers.iter().all(|w| w.state == "ready"))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A group's apps come and go while it runs: `b`, added after `a`, starts
/// once `a` is ready; `a` stopped alone is gone (its worker stopped once,
/// its socket removed) while `b` runs on; a second app named `b` is
/// refused; held, the group outlives its last app's stop, and takes `c`;
/// once `c`, its last, is stopped, its run returns every app's reason.
fn keepalive_group_adds_and_stops_apps_while_it_runs() {
    let dir = RuntimeDir::new("handle");
    let mut watchdog = Watchdog::default();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("XDG_RUNTIME_DIR", dir.path());
    super::merge_stderr(&mut command);
    let mut group = Child::spawn_with(command, "group_with_a_handle");
    let step = |group: &mut Child, text: &str| {
        group.wait_line(text, |line| line.starts_with(&format!("step: {text}")))
    };
    // a's worker first (b waits for it to be ready), then b's; "added b"
    // anywhere before them.
    let mut workers = Vec::new();
    let mut added = false;
    loop {
        let line = group.wait_line("a's and b's workers", |line| {
            line.starts_with("worker ") || line.starts_with("step: ")
        });
        match line.strip_prefix("worker ") {
            Some(pid) => workers.push(watchdog.watch(pid.parse().unwrap())),
            None if line == "step: added b" => added = true,
            None if line == "step: b ready" => break,
            None => panic!("{line}"),
        }
    }
    assert!(added);
    let [a, b] = workers[..] else {
        panic!("{workers:?}")
    };
    let stopped = step(&mut group, "stopped a");
    assert!(
        stopped.ends_with("Stopped(Some(SIGTERM (15)))"),
        "{stopped}"
    );
    crate::cluster::assert_gone_soon(a);
    assert!(!crate::cluster::is_gone(b), "b runs on");
    assert!(!dir.path().join("keepalive/a.sock").exists());
    assert_eq!(pids(&dir.status("b")), [u64::from(b)]);
    std::fs::write(dir.path().join("go-on"), "").unwrap();
    let refused = step(&mut group, "no second b");
    assert!(
        refused.contains("cannot listen for control as b"),
        "{refused}"
    );
    step(&mut group, "stopped b");
    crate::cluster::assert_gone_soon(b);
    let c = watchdog.watch(crate::cluster::next_number(&mut group, "worker "));
    // c's stop returns, and the run ends, in either order.
    let (mut stopped_c, mut ended) = (false, String::new());
    while !stopped_c || ended.is_empty() {
        let line = group.wait_line("c's stop and the run's end", |line| {
            line.starts_with("step: stopped c") || line.starts_with("ended: ")
        });
        match line.strip_prefix("ended: ") {
            Some(_) => ended = line,
            None => stopped_c = true,
        }
    }
    assert_eq!(
        ended.matches("Stopped(Some(SIGTERM (15)))").count(),
        3,
        "{ended}"
    );
    let outcome = group.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for pid in [a, b, c] {
        assert_stopped_once(&outcome, pid);
    }
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
