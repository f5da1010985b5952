//! `keepalive up`, `validate`, `start`, `restart` and `--daemon`: a config
//! file's apps, each under its own name, controlled from other processes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::cluster::{
    Asking, Watchdog, assert_gone_soon, assert_stopped_once, is_gone, next_number,
};
use crate::control::{RuntimeDir, pids, status_until, text};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_up_runs_each_app_of_its_file_under_the_app_name,
        keepalive_validate_names_the_line_of_each_error,
        keepalive_daemon_detaches_and_answers_by_name,
        keepalive_up_is_one_process_whose_children_are_the_workers,
        keepalive_up_passes_hup_and_usr1_to_its_apps,
        keepalive_up_starts_an_app_after_the_ones_it_names_and_stops_it_first,
        keepalive_apply_scales_removes_and_adds_apps_and_leaves_the_others,
        keepalive_apply_reloads_an_app_whose_settings_changed_ready_first,
    ]
}

/// `keepalive.toml` in the test's directory: `web` (two workers) and
/// `jobs`, both this binary as a `worker`, under the name `shop`.
fn write_config(dir: &RuntimeDir) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let file = dir.path().join("keepalive.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "shop"

[apps.web]
command = [{exe:?}]
workers = 2
min-uptime = "100ms"

[apps.jobs]
command = [{exe:?}]
min-uptime = "100ms"
"#
        ),
    )
    .unwrap();
    file
}

/// `keepalive up -f FILE`, its workers `worker`s.
fn up(dir: &RuntimeDir, file: &Path) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["up", "-f"])
        .arg(file)
        .env("XDG_RUNTIME_DIR", dir.path());
    crate::operations::merge_stderr(&mut command);
    Child::spawn_with(command, "worker")
}

/// The state of each app of `shop`, by name.
fn apps(dir: &RuntimeDir) -> Vec<(String, String)> {
    dir.status("shop")["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|app| {
            (
                app["name"].as_str().unwrap().to_owned(),
                app["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn all_ready(status: &serde_json::Value, n: usize) -> bool {
    let workers = status["workers"].as_array().unwrap();
    workers.len() == n && workers.iter().all(|w| w["state"] == "ready")
}

fn keepalive_up_runs_each_app_of_its_file_under_the_app_name() {
    let dir = RuntimeDir::new("up");
    let file = write_config(&dir);
    let mut watchdog = Watchdog::default();
    let mut up = up(&dir, &file);
    let mut first: Vec<u32> = (0..3)
        .map(|_| watchdog.watch(next_number(&mut up, "worker ")))
        .collect();
    first.sort_unstable();
    let web = status_until(&dir, "web", |s| all_ready(s, 2));
    let jobs = status_until(&dir, "jobs", |s| all_ready(s, 1));
    let mut seen: Vec<u32> = pids(&web)
        .into_iter()
        .chain(pids(&jobs))
        .map(|p| p as u32)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, first);
    assert_eq!(
        apps(&dir),
        [
            ("web".into(), "running".into()),
            ("jobs".into(), "running".into())
        ]
    );
    // Each app runs in up, from the file's directory.
    assert_eq!(web["cwd"], dir.path().display().to_string(), "{web}");
    // Its argv is what runs it alone: `keepalive run` and its options.
    assert!(
        web["argv"].to_string().contains(r#""run","--name","web""#),
        "{}",
        web["argv"]
    );
    // The unit for the up runs the up, by the file's absolute path (it
    // ran `--name shop` and no program); the unit for an app runs that app.
    let output = dir.client(&["systemd-unit", "shop"]);
    assert!(output.status.success(), "{output:?}");
    let unit = text(&output.stdout);
    assert!(
        unit.contains(&format!(
            "\nExecStart={} up -f {}\n",
            env!("CARGO_BIN_EXE_keepalive"),
            file.display()
        )),
        "{unit}"
    );
    crate::control::verify_unit(&dir, "shop", &unit);
    let output = dir.client(&["systemd-unit", "web"]);
    assert!(output.status.success(), "{output:?}");
    let unit = text(&output.stdout);
    assert!(unit.contains(" run --name web "), "{unit}");
    crate::control::verify_unit(&dir, "web", &unit);

    // stop one app: the other serves on; start brings it back.
    let jobs_worker = pids(&jobs)[0] as u32;
    let output = dir.client(&["stop", "jobs"]);
    assert!(output.status.success(), "{output:?}");
    assert_gone_soon(jobs_worker);
    let deadline = Instant::now() + Duration::from_secs(10);
    while apps(&dir)[1].1 != "stopped" {
        assert!(Instant::now() < deadline, "{:?}", apps(&dir));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        dir.status("shop")["apps"][1]["last_exit"],
        "exit status: 143"
    );
    assert_eq!(dir.client(&["status", "jobs"]).status.code(), Some(1));
    assert_eq!(pids(&dir.status("web")).len(), 2);
    let output = dir.client(&["start", "jobs"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "started jobs\n");
    let restarted = watchdog.watch(next_number(&mut up, "worker "));
    status_until(&dir, "jobs", |s| pids(s) == [u64::from(restarted)]);
    // Starting what runs, or what is no app, is an error.
    let output = dir.client(&["start", "jobs"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("jobs is running"),
        "{output:?}"
    );
    let output = dir.client(&["start", "nope"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("no keepalive up has an app named nope"),
        "{output:?}"
    );

    // restart: both web workers stopped, then two new ones.
    let old_web: Vec<u32> = pids(&web).into_iter().map(|p| p as u32).collect();
    let output = dir.client(&["restart", "web"]);
    assert!(output.status.success(), "{output:?}");
    let new_web: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut up, "worker ")))
        .collect();
    for pid in &old_web {
        assert!(
            is_gone(*pid),
            "pid {pid} was not stopped before the new ones started"
        );
    }
    status_until(&dir, "web", |s| {
        all_ready(s, 2) && pids(s).iter().all(|p| new_web.contains(&(*p as u32)))
    });
    crate::operations::seen_or_wait(
        &mut up,
        "keepalive[web]: restart: stopping 2 worker(s), then starting them again",
    );

    // On the up's own name, a reload is every app's: three new workers
    // (it was refused: "ask its apps"); `events` says to ask the apps, and
    // exits 1 (it printed the refusal and exited 0).
    let output = dir.client(&["reload", "shop"]);
    assert!(output.status.success(), "{output:?}");
    let reloaded: Vec<u32> = (0..3)
        .map(|_| watchdog.watch(next_number(&mut up, "worker ")))
        .collect();
    let output = dir.client(&["events", "shop"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(text(&output.stderr).contains("ask each app"), "{output:?}");

    // stop the up itself: every app, every worker once, then 143.
    let output = dir.client(&["stop", "shop"]);
    assert!(output.status.success(), "{output:?}");
    let outcome = up.finish();
    outcome.assert_code(143);
    for pid in old_web
        .iter()
        .chain(&new_web)
        .chain(&[jobs_worker, restarted])
        .chain(&reloaded)
    {
        assert_stopped_once(&outcome, *pid);
    }
    for name in ["shop", "web", "jobs"] {
        assert!(
            !dir.path().join(format!("keepalive/{name}.sock")).exists(),
            "{name}"
        );
    }
}

fn keepalive_validate_names_the_line_of_each_error() {
    let dir = RuntimeDir::new("validate");
    let good = write_config(&dir);
    let output = dir.client(&["validate", "-f", good.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text(&output.stdout).contains("2 app(s), web, jobs"),
        "{output:?}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"shop\"\n\n[apps.web]\ncommand = \"./server\"\nworkers = 0\nwait-raedy = true\n\n[apps.jobs]\nkill-timeout = \"soon\"\n",
    )
    .unwrap();
    let shown = bad.display();
    for command in ["validate", "up"] {
        let output = dir.client(&[command, "-f", bad.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{command}: {output:?}");
        let lines: Vec<String> = text(&output.stderr).lines().map(str::to_owned).collect();
        let starts: Vec<String> = lines
            .iter()
            .map(|line| line.split(": ").next().unwrap().to_owned())
            .collect();
        assert_eq!(
            starts,
            [5, 6, 8, 9].map(|n| format!("{shown}:{n}")),
            "{command}: {lines:#?}"
        );
        assert!(
            lines[0].contains("apps.web.workers: invalid value '0'"),
            "{lines:#?}"
        );
        assert!(
            lines[1].contains("apps.web.wait-raedy: no such key"),
            "{lines:#?}"
        );
        assert!(lines[2].contains("apps.jobs: no command"), "{lines:#?}");
        assert!(
            lines[3].contains("apps.jobs.kill-timeout: invalid value 'soon'"),
            "{lines:#?}"
        );
    }
    // `up` started nothing.
    assert!(!dir.path().join("keepalive/shop.sock").exists());
    let output = dir.client(&["validate", "-f", "/nonexistent/keepalive.toml"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        text(&output.stderr).contains("cannot read /nonexistent/keepalive.toml"),
        "{output:?}"
    );
}

/// A process that is not the test's child, killed when the test ends.
struct NotOurs(u32);

impl Drop for NotOurs {
    fn drop(&mut self) {
        if !is_gone(self.0) {
            // SAFETY: kill(2) on the pid the detached keepalive reported.
            unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
        }
    }
}

fn keepalive_daemon_detaches_and_answers_by_name() {
    let dir = RuntimeDir::new("daemon");
    let state = dir.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .args([
            "run",
            "--daemon",
            "--name",
            "bg",
            "--min-uptime",
            "100ms",
            "--",
        ])
        .arg(std::env::current_exe().unwrap())
        .env("XDG_RUNTIME_DIR", dir.path())
        .env("XDG_STATE_HOME", &state)
        .env(crate::harness::SCENARIO, "worker")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let said = text(&output.stderr);
    let log = state.join("keepalive/bg.log");
    let pid: u32 = said
        .strip_prefix("keepalive: bg runs in the background (pid ")
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    let _guard = NotOurs(pid);
    assert!(
        said.ends_with(&format!("its log: {}\n", log.display())),
        "{said}"
    );
    let status = status_until(&dir, "bg", |s| all_ready(s, 1));
    assert_eq!(status["pid"], pid);
    let mut watchdog = Watchdog::default();
    let worker = watchdog.watch(pids(&status)[0] as u32);
    // A session of its own: the terminal's signals do not reach it.
    // SAFETY: getsid(2) has no memory effects.
    assert_eq!(unsafe { libc::getsid(pid as i32) }, pid as i32);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&format!("worker {worker}"))
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its unit runs it in the foreground, as systemd wants: no --daemon,
    // and not the hidden --detached it runs with.
    let output = dir.client(&["systemd-unit", "bg"]);
    assert!(output.status.success(), "{output:?}");
    let unit = text(&output.stdout);
    assert!(
        !unit.contains("--detached") && !unit.contains("--daemon"),
        "{unit}"
    );
    crate::control::verify_unit(&dir, "bg", &unit);
    let output = dir.client(&["stop", "bg"]);
    assert!(output.status.success(), "{output:?}");
    assert_gone_soon(pid);
    assert_gone_soon(worker);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("hook {worker}: SIGTERM (15), exit status 143")),
        "{logged}"
    );
}

/// A three-app `up` is one keepalive process: each app answers by its
/// name with that process's pid, and the process's children are the
/// apps' workers, no keepalive per app (it was a child `keepalive run`
/// each). An app stopped alone takes its pid file with it. Killed by
/// SIGKILL, it takes the workers with it, as `run` does
/// (their parent-death signal): none is left running.
fn keepalive_up_is_one_process_whose_children_are_the_workers() {
    let dir = RuntimeDir::new("upone");
    let exe = std::env::current_exe().unwrap();
    let file = dir.path().join("keepalive.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"trio\"\n\n[apps.a]\ncommand = [{exe:?}]\nworkers = 2\n\n[apps.b]\ncommand = [{exe:?}]\npid-file = \"b.pid\"\n\n[apps.c]\ncommand = [{exe:?}]\n"
        ),
    )
    .unwrap();
    let mut watchdog = Watchdog::default();
    let mut up = up(&dir, &file);
    let me = up.pid() as u32;
    let mut workers: Vec<u32> = (0..4)
        .map(|_| watchdog.watch(next_number(&mut up, "worker ")))
        .collect();
    workers.sort_unstable();
    let mut seen = Vec::new();
    for (app, count) in [("a", 2), ("b", 1), ("c", 1)] {
        let status = status_until(&dir, app, |s| pids(s).len() == count);
        assert_eq!(status["pid"], me, "{status:#}");
        seen.extend(pids(&status).into_iter().map(|pid| pid as u32));
    }
    seen.sort_unstable();
    assert_eq!(seen, workers);
    assert_eq!(children_of(me), workers, "up's children are the workers");
    // An app's pid file holds the process that runs it, and goes with the
    // app's stop alone (relative: from the file's directory).
    let pid_file = dir.path().join("b.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        me.to_string()
    );
    let b = pids(&dir.status("b"))[0] as u32;
    let output = dir.client(&["stop", "b"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "stopped b\n");
    assert!(is_gone(b), "b's worker is gone when stop returns");
    assert!(!pid_file.exists(), "b's pid file went with it");
    workers.retain(|&pid| pid != b);
    assert_eq!(children_of(me), workers, "a's and c's run on");
    // Looked at before `finish`, which reads up's output to its end.
    let up = up.signal(libc::SIGKILL);
    for pid in &workers {
        assert_gone_soon(*pid);
    }
    up.finish().assert_signal(libc::SIGKILL);
}

/// The processes whose parent is `pid`, from `/proc`, in order.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    == Some(pid.to_string().as_str())
            })
        })
        .collect();
    children.sort_unstable();
    children
}

/// Waits (at most 10 s) until `file` exists and holds a `tick` line.
fn ticking(file: &Path) {
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(file).is_ok_and(|text| text.contains("tick ")) {
        assert!(Instant::now() < until, "{} gets no line", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// For `up`, SIGUSR1 (logrotate's postrotate) and `keepalive reopen-logs
/// UP` reopen every app's log files, and SIGHUP reloads every app, as
/// they do for `run` and in the unit `systemd-unit` writes (SIGUSR1
/// killed it with 138 and every app stopped; SIGHUP stopped them all).
/// Its pid file holds its pid, removed when it is stopped.
fn keepalive_up_passes_hup_and_usr1_to_its_apps() {
    let dir = RuntimeDir::new("upsig");
    let exe = std::env::current_exe().unwrap();
    let file = dir.path().join("keepalive.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"sigs\"\n\n[apps.ticks]\ncommand = [{exe:?}]\nmin-uptime = \"100ms\"\nstdout = \"logs/ticks.log\"\n"
        ),
    )
    .unwrap();
    let pid_file = dir.path().join("up.pid");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["up", "-f"])
        .arg(&file)
        .arg("--pid-file")
        .arg(&pid_file)
        .env("XDG_RUNTIME_DIR", dir.path());
    crate::operations::merge_stderr(&mut command);
    let mut up = Child::spawn_with(command, "ticker"); // operations/logs.rs
    let mut watchdog = Watchdog::default();
    let first = watchdog.watch(next_number(&mut up, "worker "));
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        up.pid().to_string()
    );
    let log = dir.path().join("logs/ticks.log");
    ticking(&log);
    // logrotate: the file moved, then SIGUSR1 to the pid in the pid file.
    std::fs::rename(&log, dir.path().join("logs/ticks.log.1")).unwrap();
    up.send(libc::SIGUSR1);
    ticking(&log);
    // The same through the control socket.
    std::fs::rename(&log, dir.path().join("logs/ticks.log.2")).unwrap();
    let output = dir.client(&["reopen-logs", "sigs"]);
    assert!(output.status.success(), "{output:?}");
    ticking(&log);
    assert!(!is_gone(first), "USR1 went to keepalive, not to the worker");
    // SIGHUP: every app reloaded, the old worker stopped once.
    up.send(libc::SIGHUP);
    let second = watchdog.watch(next_number(&mut up, "worker "));
    assert_ne!(first, second);
    assert_gone_soon(first);
    let outcome = up.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let stopped = format!("keepalive[ticks]: stopping: sent SIGTERM (15) to pid {second}");
    assert_eq!(
        outcome.stdout.iter().filter(|l| **l == stopped).count(),
        1,
        "{outcome:#?}"
    );
    assert!(!pid_file.exists(), "the pid file is removed");
}

/// `after = ["db"]`: `web` (first in the file) starts once `db` is ready
/// (up 1 s, its min-uptime: no READY=1 asked), and is stopped, and gone
/// (its worker takes 1.5 s), before `db` is asked to stop.
fn keepalive_up_starts_an_app_after_the_ones_it_names_and_stops_it_first() {
    let dir = RuntimeDir::new("after");
    let exe = std::env::current_exe().unwrap();
    let file = dir.path().join("keepalive.toml");
    std::fs::write(
        &file,
        format!(
            r#"name = "chain"

[apps.web]
command = [{exe:?}]
after = ["db"]
min-uptime = "100ms"
env = {{ EXIT_HOOK_SCENARIO = "slow_stop" }}

[apps.db]
command = [{exe:?}]
min-uptime = "1s"
"#
        ),
    )
    .unwrap();
    let mut watchdog = Watchdog::default();
    let mut up = up(&dir, &file);
    let db = watchdog.watch(next_number(&mut up, "worker "));
    let db_started = Instant::now();
    let web = watchdog.watch(next_number(&mut up, "worker "));
    let waited = db_started.elapsed();
    assert_eq!(pids(&dir.status("db")), [u64::from(db)]);
    assert_eq!(pids(&dir.status("web")), [u64::from(web)]);
    assert!(
        waited >= Duration::from_millis(800),
        "web started {waited:?} after db, before db was ready"
    );
    let outcome = up.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, web);
    assert_stopped_once(&outcome, db);
    // The line (of up's stdout, in order) that has `text`.
    let said = |text: &str| {
        outcome
            .stdout
            .iter()
            .position(|line| line.contains(text))
            .unwrap_or_else(|| panic!("{text:?} not in {outcome:#?}"))
    };
    assert!(
        said("keepalive up: web waits for db to be ready") < said(&format!("started pid {web}"))
    );
    assert!(
        said(&format!("hook {web}: ")) < said(&format!("stopping: sent SIGTERM (15) to pid {db}")),
        "web was stopped, and gone, before db was asked: {outcome:#?}"
    );
}

/// `keepalive apply` after editing the file: `web`'s workers 2 → 3 scales
/// it (no connection of a client asking all along refused, its first two
/// workers kept) and leaves `jobs`'s worker as it is; `jobs` taken out is
/// stopped gracefully, and gone when apply returns; `extra` put in is
/// started; nothing changed says so.
fn keepalive_apply_scales_removes_and_adds_apps_and_leaves_the_others() {
    let dir = RuntimeDir::new("apply");
    let exe = std::env::current_exe().unwrap();
    let file = dir.path().join("keepalive.toml");
    let write = |web_workers: u32, jobs: bool, extra: bool| {
        let mut text = format!(
            r#"name = "shop"

[apps.web]
command = [{exe:?}]
workers = {web_workers}
listen = ["127.0.0.1:0"]
wait-ready = true
env = {{ EXIT_HOOK_SCENARIO = "ready_server" }}
"#
        );
        if jobs {
            text.push_str(&format!(
                "\n[apps.jobs]\ncommand = [{exe:?}]\nmin-uptime = \"100ms\"\n"
            ));
        }
        if extra {
            text.push_str(&format!(
                "\n[apps.extra]\ncommand = [{exe:?}]\nmin-uptime = \"100ms\"\n"
            ));
        }
        std::fs::write(&file, text).unwrap();
    };
    write(2, true, false);
    let mut watchdog = Watchdog::default();
    let mut up = up(&dir, &file);
    let port = next_number(&mut up, "port ");
    // (The apps' lines come in any order: the pids from their status.)
    let status = status_until(&dir, "web", |s| all_ready(s, 2));
    let web: Vec<u32> = pids(&status)
        .into_iter()
        .map(|pid| watchdog.watch(pid as u32))
        .collect();
    let status = status_until(&dir, "jobs", |s| pids(s).len() == 1);
    let jobs = watchdog.watch(pids(&status)[0] as u32);
    let client = Asking::start(port);
    std::thread::sleep(Duration::from_millis(200));
    let apply = |dir: &RuntimeDir| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
        command
            .args(["apply", "-f"])
            .arg(&file)
            .env("XDG_RUNTIME_DIR", dir.path());
        command.output().unwrap()
    };

    write(3, true, false);
    let output = apply(&dir);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        "applied shop: scaled web to 3 worker(s)\n"
    );
    let status = dir.status("web");
    assert!(all_ready(&status, 3), "{status:#}");
    let now = pids(&status);
    for pid in &web {
        assert!(now.contains(&u64::from(*pid)), "kept: {status:#}");
    }
    for pid in &now {
        watchdog.watch(*pid as u32);
    }
    assert_eq!(pids(&dir.status("jobs")), [u64::from(jobs)], "left alone");

    write(3, false, true);
    let output = apply(&dir);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        "applied shop: removed jobs (stopped); added extra\n"
    );
    assert!(is_gone(jobs), "jobs's worker is gone when apply returns");
    let status = status_until(&dir, "extra", |s| pids(s).len() == 1);
    let extra = watchdog.watch(pids(&status)[0] as u32);
    assert_eq!(pids(&dir.status("web")), now, "web left alone");
    assert_eq!(
        apps(&dir),
        [
            ("web".into(), "running".into()),
            ("extra".into(), "running".into())
        ]
    );
    let output = apply(&dir);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "applied shop: nothing changed\n");

    std::thread::sleep(Duration::from_millis(200));
    client.stop_all_answered();
    let outcome = up.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, jobs);
    assert_stopped_once(&outcome, extra);
}

/// `keepalive apply` after editing an app's environment and `workers`
/// (2 → 3): its workers are replaced ready-first, the new ones with the
/// new environment, no connection of a client asking all along refused,
/// `jobs` left alone. Then a broken version (a scenario that never says
/// READY=1): apply exits 1 saying it was not applied, the workers it had
/// serve on, and a restart starts the settings they had again, not the
/// broken ones. An app stopped by hand takes new settings and stays
/// stopped.
fn keepalive_apply_reloads_an_app_whose_settings_changed_ready_first() {
    let dir = RuntimeDir::new("applyreload");
    let exe = std::env::current_exe().unwrap();
    let file = dir.path().join("keepalive.toml");
    let write_with = |web_workers: u32, scenario: &str, version: u32, jobs_uptime: &str| {
        std::fs::write(
            &file,
            format!(
                r#"name = "shop"

[apps.web]
command = [{exe:?}]
workers = {web_workers}
listen = ["127.0.0.1:0"]
wait-ready = true
listen-timeout = "2s"
env = {{ EXIT_HOOK_SCENARIO = "{scenario}", VERSION = "{version}" }}

[apps.jobs]
command = [{exe:?}]
min-uptime = "{jobs_uptime}"
"#
            ),
        )
        .unwrap();
    };
    let write =
        |web_workers, scenario, version| write_with(web_workers, scenario, version, "100ms");
    write(2, "ready_server", 1);
    let mut watchdog = Watchdog::default();
    let mut up = up(&dir, &file);
    let port = next_number(&mut up, "port ");
    let status = status_until(&dir, "web", |s| all_ready(s, 2));
    let old: Vec<u32> = pids(&status)
        .into_iter()
        .map(|pid| watchdog.watch(pid as u32))
        .collect();
    let status = status_until(&dir, "jobs", |s| pids(s).len() == 1);
    let jobs = watchdog.watch(pids(&status)[0] as u32);
    let apply = || {
        Command::new(env!("CARGO_BIN_EXE_keepalive"))
            .args(["apply", "-f"])
            .arg(&file)
            .env("XDG_RUNTIME_DIR", dir.path())
            .output()
            .unwrap()
    };
    let client = Asking::start(port);
    std::thread::sleep(Duration::from_millis(200));
    write(3, "ready_server", 2);
    let output = apply();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        "applied shop: reloaded web with its new settings (3 worker(s))\n"
    );
    let status = dir.status("web");
    assert!(all_ready(&status, 3), "{status:#}");
    let new: Vec<u32> = pids(&status)
        .into_iter()
        .map(|pid| watchdog.watch(pid as u32))
        .collect();
    for pid in &old {
        assert!(!new.contains(pid), "{pid} was replaced: {status:#}");
        assert_gone_soon(*pid);
    }
    for pid in &new {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(
            environ.split(|b| *b == 0).any(|var| var == b"VERSION=2"),
            "{pid} has the new environment"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    client.stop_all_answered();
    assert_eq!(pids(&dir.status("jobs")), [u64::from(jobs)], "left alone");

    // A broken version: not applied, the workers it had serve on.
    write(3, "worker", 3);
    let output = apply();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("web: not applied"),
        "{output:?}"
    );
    let status = status_until(&dir, "web", |s| all_ready(s, 3));
    let mut serving: Vec<u32> = pids(&status).into_iter().map(|pid| pid as u32).collect();
    serving.sort_unstable();
    let mut had = new.clone();
    had.sort_unstable();
    assert_eq!(serving, had, "{status:#}");
    // A restart starts what they run, not the broken version.
    let output = dir.client(&["restart", "web"]);
    assert!(output.status.success(), "{output:?}");
    let status = status_until(&dir, "web", |s| all_ready(s, 3));
    for pid in pids(&status) {
        watchdog.watch(pid as u32);
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(environ.split(|b| *b == 0).any(|var| var == b"VERSION=2"));
    }
    // An app stopped by hand takes its new settings and stays stopped.
    let output = dir.client(&["stop", "jobs"]);
    assert!(output.status.success(), "{output:?}");
    write_with(3, "ready_server", 2, "200ms");
    let output = apply();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        "applied shop: updated jobs (stopped: it starts with them)\n"
    );
    assert_eq!(dir.client(&["status", "jobs"]).status.code(), Some(1));
    up.signal(libc::SIGTERM).finish().assert_code(143);
}
