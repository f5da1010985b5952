//! Control by name from another shell: `keepalive status [NAME] [--json]`,
//! `reload`, `stop`, `signal`, through a socket only the same user (or
//! root) may use; a stale socket replaced, a name taken refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::child::wait_forever;
use crate::cluster::{Asking, Watchdog, assert_gone_soon, assert_stopped_once, next_number};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_status_by_name_shows_its_workers,
        keepalive_reload_signal_and_stop_by_name,
        keepalive_reload_waits_for_its_outcome,
        keepalive_reload_asked_during_a_reload_waits_for_its_own,
        keepalive_restart_during_a_reload_answers_when_the_workers_are_ready,
        keepalive_control_refuses_another_user,
        keepalive_replaces_a_stale_control_socket_and_refuses_a_taken_name,
        keepalive_prints_a_systemd_unit_for_a_running_instance,
        keepalive_streams_its_events_and_shows_its_logs,
        keepalive_shows_what_a_worker_says_on_its_notify_socket,
        keepalive_takes_no_control_request_once_it_stops,
        keepalive_restart_by_name_refuses_no_connection,
        keepalive_and_its_client_refuse_another_protocol_version,
        keepalive_scale_adds_and_retires_workers_with_no_failed_request,
        keepalive_stop_returns_once_the_instance_has_ended,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "usr1_worker" => usr1_worker(),
        "slow_stop" => {
            let pid = std::process::id();
            exit_hook::add(move |exit| {
                println!("stopping {pid}");
                std::thread::sleep(Duration::from_millis(1500));
                println!("hook {pid}: {exit}");
            });
            println!("worker {pid}");
            wait_forever()
        }
        "says_status" => {
            let pid = std::process::id();
            exit_hook::add(|_| {});
            sd_notify::notify(
                false,
                &[
                    sd_notify::NotifyState::Status("serving 3 requests"),
                    sd_notify::NotifyState::Custom("X_CACHE=warm"),
                ],
            )
            .unwrap();
            println!("worker {pid}");
            wait_forever()
        }
        _ => false,
    }
}

/// Prints `usr1` for each SIGUSR1; a hook; `worker PID`.
fn usr1_worker() -> ! {
    extern "C" fn on_usr1(_: libc::c_int) {
        let line = b"usr1\n";
        // SAFETY: write(2) is async-signal-safe; the buffer is static.
        unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
    }
    // SAFETY: installing a handler that does only async-signal-safe work.
    unsafe { libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t) };
    let pid = std::process::id();
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    println!("worker {pid}");
    wait_forever()
}

/// A private `XDG_RUNTIME_DIR` for one test, removed after it.
pub(crate) struct RuntimeDir(PathBuf);

impl RuntimeDir {
    pub(crate) fn new(name: &str) -> RuntimeDir {
        let dir = std::env::temp_dir().join(format!("exit_hook_xdg_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        RuntimeDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// keepalive run `options` -- this binary as `role`, controlled as `name`.
    /// `keepalive run --name NAME OPTIONS -- this binary` in `role`, in
    /// this directory (relative paths in `options` are under it).
    pub(crate) fn keepalive(&self, name: &str, options: &[&str], role: &str) -> Child {
        self.keepalive_env(name, options, &[], role)
    }

    /// [`keepalive`](Self::keepalive), with `envs` for keepalive and its workers.
    pub(crate) fn keepalive_env(
        &self,
        name: &str,
        options: &[&str],
        envs: &[(&str, &Path)],
        role: &str,
    ) -> Child {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
        command.envs(envs.iter().copied());
        command
            .args(["run", "--name", name])
            .args(options)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .current_dir(&self.0)
            .env("XDG_RUNTIME_DIR", &self.0);
        crate::operations::merge_stderr(&mut command);
        Child::spawn_with(command, role)
    }

    /// `keepalive ARGS` as a client, from another process, in another
    /// directory than the instance's (`/`).
    pub(crate) fn client(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keepalive"))
            .args(args)
            .current_dir("/")
            .env("XDG_RUNTIME_DIR", &self.0)
            .output()
            .unwrap()
    }

    /// `keepalive status NAME --json`, parsed.
    pub(crate) fn status(&self, name: &str) -> serde_json::Value {
        let output = self.client(&["status", name, "--json"]);
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `status` until `done` holds for it (up to 10 s).
pub(crate) fn status_until(
    dir: &RuntimeDir,
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = dir.status(name);
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "status never got there: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn pids(status: &serde_json::Value) -> Vec<u64> {
    let mut pids: Vec<u64> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect();
    pids.sort_unstable();
    pids
}

fn keepalive_status_by_name_shows_its_workers() {
    let dir = RuntimeDir::new("status");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive(
        "web",
        &["--workers", "2", "--min-uptime", "100ms"],
        "worker",
    );
    let mut first =
        [(); 2].map(|()| u64::from(watchdog.watch(next_number(&mut keepalive, "worker "))));
    first.sort_unstable();
    let status = status_until(&dir, "web", |s| {
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["state"] == "ready")
    });
    assert_eq!(status["name"], "web");
    assert_eq!(status["pid"], keepalive.pid());
    assert_eq!(pids(&status), first);
    for worker in status["workers"].as_array().unwrap() {
        assert_eq!(worker["restarts"], 0, "{status}");
        assert!(worker["rss_bytes"].as_u64().unwrap() > 100_000, "{status}");
        assert!(worker["uptime_ms"].as_u64().unwrap() >= 100, "{status}");
        assert!(
            worker.get("cpu_ms").is_some() && worker.get("last_exit").is_none(),
            "{status}"
        );
    }
    // SAFETY: kill(2) on a worker of ours, alive.
    assert_eq!(unsafe { libc::kill(first[0] as i32, libc::SIGKILL) }, 0);
    let restarted = watchdog.watch(next_number(&mut keepalive, "worker "));
    let status = status_until(&dir, "web", |s| pids(s).contains(&u64::from(restarted)));
    let slot = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == restarted)
        .unwrap();
    assert_eq!(slot["restarts"], 1, "{status}");
    assert_eq!(slot["last_exit"], "signal: 9 (SIGKILL)", "{status}");
    // Every instance, as a table.
    let table = text(&dir.client(&["status"]).stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("web ")).count(),
        2,
        "{table}"
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    // Gone with it: its socket, and the name.
    assert!(!dir.path().join("keepalive/web.sock").exists());
    let output = dir.client(&["status", "web"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "keepalive: no keepalive named web\n");
}

fn keepalive_reload_signal_and_stop_by_name() {
    let dir = RuntimeDir::new("reload");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive(
        "api",
        &["--workers", "2", "--min-uptime", "100ms"],
        "usr1_worker",
    );
    let old: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "worker ")))
        .collect();
    status_until(&dir, "api", |s| {
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["state"] == "ready")
    });
    // reload: both replaced, one at a time, the old ones stopped gracefully;
    // the client returns once it is over.
    let output = dir.client(&["reload", "api"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        text(&output.stdout),
        "reloaded api: every worker replaced\n"
    );
    let new: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "worker ")))
        .collect();
    crate::operations::seen_or_wait(
        &mut keepalive,
        "keepalive: reload done: every worker replaced",
    );
    for pid in &old {
        assert_gone_soon(*pid);
    }
    // signal: to every worker.
    let output = dir.client(&["signal", "api", "USR1"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text(&output.stdout).starts_with("sent signal 10 to 2 worker(s)"),
        "{output:?}"
    );
    for _ in 0..2 {
        keepalive.wait_line("usr1", |l| l == "usr1");
    }
    // stop: the whole instance, as SIGTERM.
    let output = dir.client(&["stop", "api"]);
    assert!(output.status.success(), "{output:?}");
    let outcome = keepalive.finish();
    outcome.assert_code(143);
    for pid in old.iter().chain(&new) {
        assert_stopped_once(&outcome, *pid);
    }
    // A command that is not one: a usage error.
    assert_eq!(dir.client(&["frobnicate", "api"]).status.code(), Some(2));
}

/// `keepalive reload` waits for the outcome: a broken new version (never
/// ready) fails it, and the client says why and exits 1 (it exited 0 about
/// 9 ms after it was called, whatever became of the reload). `--no-wait`
/// returns at once; a restart that abandons the reload says so, and waits
/// for its own outcome (it too exited 0 at once, whatever became of it).
fn keepalive_reload_waits_for_its_outcome() {
    let dir = RuntimeDir::new("broken");
    let state = dir.path().join("starts");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive_env(
        "broken",
        &[
            "--listen",
            "127.0.0.1:0",
            "--wait-ready",
            "--listen-timeout",
            "500ms",
        ],
        &[
            ("EXIT_HOOK_STATE", &state),
            ("EXIT_HOOK_READY_STARTS", Path::new("1")),
        ],
        "ready_then_never", // cluster.rs
    );
    let old = watchdog.watch(next_number(&mut keepalive, "ready "));
    let asked = Instant::now();
    let output = dir.client(&["reload", "broken"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).starts_with("keepalive: broken: the reload failed: "),
        "{output:?}"
    );
    assert!(asked.elapsed() >= Duration::from_millis(500), "{output:?}");
    let never = watchdog.watch(next_number(&mut keepalive, "never_ready "));
    assert_gone_soon(never);
    assert!(!crate::cluster::is_gone(old), "the old worker serves on");
    // --no-wait: asked, not waited for; a restart during it says so, and
    // waits for its own outcome: the new worker is never ready.
    let output = dir.client(&["reload", "broken", "--no-wait"]);
    assert!(output.status.success(), "{output:?}");
    let never = watchdog.watch(next_number(&mut keepalive, "never_ready "));
    let output = dir.client(&["restart", "broken"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = text(&output.stderr);
    assert!(
        said.contains("that reload is abandoned for the restart"),
        "{output:?}"
    );
    assert!(
        said.contains(
            "broken: the restart failed: not every worker was ready within 500 ms (the listen timeout)"
        ),
        "{output:?}"
    );
    assert_gone_soon(never);
    let restarted = watchdog.watch(next_number(&mut keepalive, "never_ready "));
    // --no-wait: the old way, answered at once.
    let output = dir.client(&["restart", "broken", "--no-wait"]);
    assert!(output.status.success(), "{output:?}");
    assert_gone_soon(restarted);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

/// `keepalive reload` asked while a reload (SIGHUP's) is going is
/// answered by the reload queued for it, not by the one going: once it
/// returns, the worker is the third, not the second (it returned with the
/// first reload's outcome).
fn keepalive_reload_asked_during_a_reload_waits_for_its_own() {
    let dir = RuntimeDir::new("twice");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive_env(
        "twice",
        &["--listen", "127.0.0.1:0", "--wait-ready"],
        &[("EXIT_HOOK_READY_DELAY_MS", Path::new("700"))],
        "ready_server", // cluster.rs: READY=1 700 ms after it starts
    );
    let first = watchdog.watch(next_number(&mut keepalive, "ready "));
    keepalive.send(libc::SIGHUP);
    keepalive.wait_line("reloading", |l| l.starts_with("keepalive: reloading"));
    let output = dir.client(&["reload", "twice"]);
    assert!(output.status.success(), "{output:?}");
    // The workers as the reload returned (looked at for 300 ms, as the
    // status the loop publishes may lag its events), then the two that
    // started: the third was ready then, where the first reload's end
    // comes 700 ms before it is.
    let returned = Instant::now();
    let mut statuses = Vec::new();
    while returned.elapsed() < Duration::from_millis(300) {
        statuses.push(dir.status("twice"));
    }
    let second = watchdog.watch(next_number(&mut keepalive, "ready "));
    let third = watchdog.watch(next_number(&mut keepalive, "ready "));
    let third_ready = |status: &serde_json::Value| {
        status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["pid"] == third && w["state"] == "ready")
    };
    assert!(
        statuses.iter().any(third_ready),
        "the reload asked during the first ({first} → {second}) is its own: {statuses:#?}"
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

/// `keepalive restart` sent during a reload says the reload is abandoned,
/// and returns once both new workers are ready (each says READY=1 700 ms
/// after it starts), not before, and not with the reload's outcome.
fn keepalive_restart_during_a_reload_answers_when_the_workers_are_ready() {
    let dir = RuntimeDir::new("again");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive_env(
        "again",
        &["--listen", "127.0.0.1:0", "--wait-ready", "--workers", "2"],
        &[("EXIT_HOOK_READY_DELAY_MS", Path::new("700"))],
        "ready_server", // cluster.rs: READY=1 700 ms after it starts
    );
    let old = [
        watchdog.watch(next_number(&mut keepalive, "ready ")),
        watchdog.watch(next_number(&mut keepalive, "ready ")),
    ];
    keepalive.send(libc::SIGHUP);
    keepalive.wait_line("reloading", |l| l.starts_with("keepalive: reloading"));
    let asked = Instant::now();
    let output = dir.client(&["restart", "again"]);
    let took = asked.elapsed();
    assert!(output.status.success(), "{output:?}");
    assert!(
        text(&output.stderr).contains("that reload is abandoned for the restart"),
        "{output:?}"
    );
    assert!(
        text(&output.stdout).contains("restarted again: every worker started again and ready"),
        "{output:?}"
    );
    assert!(
        took >= Duration::from_millis(700),
        "returned after {took:?}"
    );
    let status = dir.status("again");
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{status:#}");
    for worker in workers {
        assert_eq!(worker["state"], "ready", "{status:#}");
        let pid = worker["pid"].as_u64().unwrap() as u32;
        assert!(!old.contains(&pid), "a new worker: {status:#}");
        watchdog.watch(pid);
    }
    for pid in old {
        assert_gone_soon(pid);
    }
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

/// A request in another control protocol version gets an error that says
/// both versions and the binary to ask with; a reply in another version is
/// refused by the client, which says so and exits 1. (A request without a
/// version, as the keepalive before versions sent, is version 1's.)
fn keepalive_and_its_client_refuse_another_protocol_version() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = RuntimeDir::new("versions");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("now", &[], "worker");
    watchdog.watch(next_number(&mut keepalive, "worker "));
    let ask = |line: &str| -> serde_json::Value {
        let mut stream = UnixStream::connect(dir.path().join("keepalive/now.sock")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    let refused = ask("{\"command\":\"status\",\"version\":2}\n");
    assert_eq!(refused["version"], 1, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.starts_with("this keepalive speaks control protocol 1, the client protocol 2: ask it with the keepalive binary it runs ("),
        "{refused}"
    );
    assert!(refused["status"].is_null(), "{refused}");
    for line in [
        "{\"command\":\"status\",\"version\":1}\n",
        "{\"command\":\"status\"}\n",
    ] {
        let answered = ask(line);
        assert_eq!(answered["status"]["name"], "now", "{answered}");
    }
    // An instance of a later keepalive, as its socket answers.
    let later = UnixListener::bind(dir.path().join("keepalive/later.sock")).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = later.accept().unwrap();
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request).unwrap();
        (&stream)
            .write_all(b"{\"version\":2,\"error\":\"this keepalive speaks control protocol 2\"}\n")
            .unwrap();
        request
    });
    let output = dir.client(&["status", "later"]);
    let request = server.join().unwrap();
    assert!(request.contains("\"version\":1"), "{request}");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("keepalive later speaks control protocol 2, this client 1: ask it with the keepalive binary it runs (it said: this keepalive speaks control protocol 2)"),
        "{output:?}"
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

/// `keepalive scale`: 2 → 4 workers, the new ones ready before it returns
/// and the first two left as they are; 4 → 1, the last three stopped
/// gracefully (once each) and gone before it returns; a client asking all
/// along has every connection answered. 0 workers is a usage error.
fn keepalive_scale_adds_and_retires_workers_with_no_failed_request() {
    let dir = RuntimeDir::new("scale");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive(
        "shop",
        &["--listen", "127.0.0.1:0", "--wait-ready", "--workers", "2"],
        "ready_server", // cluster.rs
    );
    let port = next_number(&mut keepalive, "port ");
    let first = [
        watchdog.watch(next_number(&mut keepalive, "ready ")),
        watchdog.watch(next_number(&mut keepalive, "ready ")),
    ];
    let client = Asking::start(port);
    std::thread::sleep(Duration::from_millis(200));
    let output = dir.client(&["scale", "shop", "4"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "scaled shop to 4 worker(s)\n");
    let status = dir.status("shop");
    let workers = status["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 4, "{status:#}");
    assert!(workers.iter().all(|w| w["state"] == "ready"), "{status:#}");
    let now = pids(&status);
    for pid in first {
        assert!(now.contains(&u64::from(pid)), "left alone: {status:#}");
    }
    let added: Vec<u32> = now
        .iter()
        .map(|&pid| pid as u32)
        .filter(|pid| !first.contains(pid))
        .collect();
    for &pid in &added {
        watchdog.watch(pid);
    }
    // Slot 0's worker stays (the first two said ready in either order).
    let slot_0 = workers
        .iter()
        .find(|w| w["slot"] == 0)
        .and_then(|w| w["pid"].as_u64())
        .unwrap() as u32;
    assert!(first.contains(&slot_0), "{status:#}");
    std::thread::sleep(Duration::from_millis(200));
    let output = dir.client(&["scale", "shop", "1"]);
    assert!(output.status.success(), "{output:?}");
    for &pid in first.iter().chain(&added).filter(|&&pid| pid != slot_0) {
        assert!(
            crate::cluster::is_gone(pid),
            "gone before scale returned: {pid}"
        );
    }
    assert_eq!(pids(&dir.status("shop")), [u64::from(slot_0)]);
    std::thread::sleep(Duration::from_millis(200));
    let answers = client.stop_all_answered();
    assert!(
        answers.iter().any(|pid| added.contains(pid)),
        "the added workers answered"
    );
    let output = dir.client(&["scale", "shop", "0"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    for &pid in first.iter().chain(&added) {
        assert_stopped_once(&outcome, pid);
    }
}

/// `keepalive stop` returns once the instance has ended: its worker took
/// 1.5 s to stop, and the instance's keepalive is gone when the client
/// returns (it returned at once). `--no-wait` returns while it stops.
fn keepalive_stop_returns_once_the_instance_has_ended() {
    let dir = RuntimeDir::new("stopwait");
    let mut watchdog = Watchdog::default();
    for wait in [true, false] {
        let mut keepalive = dir.keepalive("slow", &[], "slow_stop");
        let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
        let pid = keepalive.pid() as u32;
        let asked = Instant::now();
        let args: &[&str] = if wait {
            &["stop", "slow"]
        } else {
            &["stop", "slow", "--no-wait"]
        };
        let output = dir.client(args);
        let took = asked.elapsed();
        assert!(output.status.success(), "{output:?}");
        if wait {
            assert_eq!(text(&output.stdout), "stopped slow\n");
            assert!(
                took >= Duration::from_millis(1400),
                "returned after {took:?}"
            );
            assert!(crate::cluster::is_gone(worker), "the worker is gone");
            assert!(crate::cluster::is_gone(pid), "keepalive has ended");
        } else {
            assert_eq!(text(&output.stdout), "");
            assert!(
                !crate::cluster::is_gone(pid),
                "still stopping after {took:?}"
            );
        }
        let outcome = keepalive.finish();
        outcome.assert_code(143);
        assert_stopped_once(&outcome, worker);
    }
}

fn keepalive_control_refuses_another_user() {
    // SAFETY: getuid(2) has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    assert!(
        root,
        "this test runs a client as another user (nobody), which takes root; CI runs as root"
    );
    let dir = RuntimeDir::new("refuse");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("db", &[], "worker");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    dir.status("db");
    for args in [&["status", "db"][..], &["stop", "db"]] {
        let output = {
            use std::os::unix::process::CommandExt;
            Command::new(env!("CARGO_BIN_EXE_keepalive"))
                .args(args)
                .env("XDG_RUNTIME_DIR", dir.path())
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap()
        };
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert_eq!(output.stdout, b"", "{args:?}: {output:?}");
    }
    // Nothing happened to the instance.
    let status = dir.status("db");
    assert_eq!(pids(&status), [u64::from(worker)]);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

fn keepalive_prints_a_systemd_unit_for_a_running_instance() {
    let dir = RuntimeDir::new("unit");
    let mut watchdog = Watchdog::default();
    // Its environment goes into the unit (it was dropped): its workers
    // inherit it.
    let mut keepalive = dir.keepalive_env(
        "shop",
        &["--workers", "2"],
        &[("APP_MODE", Path::new("production $HOME 100%"))],
        "worker",
    );
    watchdog.watch(next_number(&mut keepalive, "worker "));
    let output = dir.client(&["systemd-unit", "shop"]);
    assert!(output.status.success(), "{output:?}");
    let unit = text(&output.stdout);
    let line = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {unit}"))
            .to_owned()
    };
    let exec = line("ExecStart=");
    assert_eq!(
        exec,
        format!(
            "{} run --name shop --workers 2 -- {}",
            env!("CARGO_BIN_EXE_keepalive"),
            std::env::current_exe().unwrap().display()
        ),
        "{unit}"
    );
    assert_eq!(line("ExecReload="), "/bin/kill -HUP $MAINPID");
    assert_eq!(line("KillMode="), "mixed", "one stop signal per worker");
    assert_eq!(line("SuccessExitStatus="), "143");
    assert_eq!(line("WorkingDirectory="), dir.path().display().to_string());
    assert!(
        unit.contains("[Install]\nWantedBy=multi-user.target"),
        "{unit}"
    );
    assert!(
        unit.contains("\nEnvironment=\"APP_MODE=production $HOME 100%%\"\n"),
        "{unit}"
    );
    // A login session's runtime directory is not the service's.
    assert!(!unit.contains("XDG_RUNTIME_DIR"), "{unit}");
    verify_unit(&dir, "shop", &unit);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

/// `systemd-analyze verify` (Debian's systemd package) on `unit`, saved as
/// `NAME.service`: systemd reads it as written, its `ExecStart=` program
/// exists and is executable.
pub(crate) fn verify_unit(dir: &RuntimeDir, name: &str, unit: &str) {
    let file = dir.path().join(format!("{name}.service"));
    std::fs::write(&file, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze, to verify the unit (Debian: apt-get install systemd)");
    assert!(
        output.status.success(),
        "systemd-analyze verify {}: {output:?}\n{unit}",
        file.display()
    );
}

fn keepalive_streams_its_events_and_shows_its_logs() {
    use std::io::BufRead;
    let dir = RuntimeDir::new("events");
    let mut watchdog = Watchdog::default();
    // A relative path in a directory not made yet: keepalive makes it, and
    // `keepalive logs` from another directory finds the file (it read the
    // path against its own directory, printed nothing and exited 0).
    let mut keepalive = dir.keepalive(
        "feed",
        &["--min-uptime", "0ms", "--stdout", "logs/feed.log"],
        "ticker", // operations/logs.rs
    );
    let first = watchdog.watch(next_number(&mut keepalive, "worker "));
    // `keepalive events feed`, from another process, for the rest of the run.
    let mut events = Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .args(["events", "feed"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let reader = {
        let stdout = events.stdout.take().unwrap();
        std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .map(|line| serde_json::from_str::<serde_json::Value>(&line).unwrap())
                .collect::<Vec<_>>()
        })
    };
    // Subscribed once the server has read the request: a status after it
    // is answered after it.
    std::thread::sleep(Duration::from_millis(200));
    dir.status("feed");
    // SAFETY: kill(2) on a worker of ours, alive.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    let second = watchdog.watch(next_number(&mut keepalive, "worker "));
    // logs -n 3: the last three lines of the log file.
    std::thread::sleep(Duration::from_millis(100));
    let output = dir.client(&["logs", "feed", "-n", "3"]);
    assert!(output.status.success(), "{output:?}");
    let tail: Vec<String> = text(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(tail.len(), 3, "{tail:?}");
    assert!(tail.iter().all(|l| l.starts_with("tick ")), "{tail:?}");
    // logs -f: what comes next.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .args(["logs", "feed", "-n", "0", "-f"])
        .current_dir("/")
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("tick "), "{line:?}");
    follow.kill().unwrap();
    follow.wait().unwrap();
    // flush (pm2's): the file emptied, and the lines that come after
    // start it again.
    let output = dir.client(&["flush", "feed"]);
    assert!(output.status.success(), "{output:?}");
    let log = dir.path().join("logs/feed.log");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        // Emptied: what is there now came after, whole lines from the start.
        if text.starts_with("tick ") {
            break;
        }
        assert!(text.is_empty(), "{text:?}");
        assert!(Instant::now() < until, "no line after the flush");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A log file gone is an error, not an empty tail.
    std::fs::remove_file(dir.path().join("logs/feed.log")).unwrap();
    let output = dir.client(&["logs", "feed"]);
    assert!(!output.status.success(), "{output:?}");
    assert!(text(&output.stderr).contains("no such file"), "{output:?}");
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    // The instance ended: so did the event stream.
    assert!(events.wait().unwrap().success());
    let events = reader.join().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let exited = events
        .iter()
        .find(|e| e["event"] == "exited" && e["pid"] == first)
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(exited["signal"], 9, "{exited}");
    assert_eq!(exited["code"], serde_json::Value::Null, "{exited}");
    assert!(
        exited["message"].as_str().unwrap().contains("SIGKILL"),
        "{exited}"
    );
    assert!(exited["time"].as_str().unwrap().ends_with('Z'), "{exited}");
    for kind in ["restarting", "started", "stopping"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "started" && e["pid"] == second)
    );
}

fn keepalive_shows_what_a_worker_says_on_its_notify_socket() {
    let dir = RuntimeDir::new("says");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("talker", &[], "says_status");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    crate::operations::seen_or_wait(
        &mut keepalive,
        &format!("keepalive: pid {worker} says X_CACHE=warm"),
    );
    let status = status_until(&dir, "talker", |s| {
        s["workers"][0]["status"] == "serving 3 requests"
    });
    assert_eq!(status["workers"][0]["pid"], worker);
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert!(
        outcome.stdout.contains(&format!(
            "keepalive: pid {worker} status: serving 3 requests"
        )),
        "{outcome:#?}"
    );
}

fn keepalive_replaces_a_stale_control_socket_and_refuses_a_taken_name() {
    let dir = RuntimeDir::new("stale");
    // A socket left by a keepalive that was killed: nobody accepts on it.
    let sockets = dir.path().join("keepalive");
    std::fs::create_dir_all(&sockets).unwrap();
    drop(std::os::unix::net::UnixListener::bind(sockets.join("jobs.sock")).unwrap());
    assert!(sockets.join("jobs.sock").exists());
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("jobs", &[], "worker");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    assert_eq!(pids(&dir.status("jobs")), [u64::from(worker)]);
    // The name is taken now: a second one says so and exits 1.
    let second = Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .args(["run", "--name", "jobs", "--", "true"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "{second:?}");
    assert!(
        text(&second.stderr).contains("a keepalive named jobs is already running"),
        "{second:?}"
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
}

/// keepalive's own shutdown is exit_hook's phases: its control socket is
/// gone (drain) while its workers are still being stopped (cleanup).
fn keepalive_takes_no_control_request_once_it_stops() {
    let dir = RuntimeDir::new("phases");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("slow", &["--min-uptime", "100ms"], "slow_stop");
    let worker = watchdog.watch(next_number(&mut keepalive, "worker "));
    status_until(&dir, "slow", |s| pids(s) == [u64::from(worker)]);
    keepalive.send(libc::SIGTERM);
    keepalive.wait_line("stopping", |l| l == format!("stopping {worker}"));
    let output = dir.client(&["status", "slow"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(text(&output.stderr), "keepalive: no keepalive named slow\n");
    assert!(
        !crate::cluster::is_gone(worker),
        "the worker is still stopping"
    );
    let outcome = keepalive.finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, worker);
}

/// `keepalive restart NAME`: the workers stop, then new ones start; the
/// socket keepalive holds queues the connections made in between, so
/// every one is answered (by an old worker, or a new one).
fn keepalive_restart_by_name_refuses_no_connection() {
    let dir = RuntimeDir::new("restart");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive(
        "web",
        &["--workers", "2", "--listen", "127.0.0.1:0", "--wait-ready"],
        "ready_server",
    );
    let port = next_number(&mut keepalive, "port ");
    let old: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "ready ")))
        .collect();
    let client = crate::cluster::Asking::start(port);
    std::thread::sleep(Duration::from_millis(200));
    let output = dir.client(&["restart", "web"]);
    assert!(output.status.success(), "{output:?}");
    let new: Vec<u32> = (0..2)
        .map(|_| watchdog.watch(next_number(&mut keepalive, "ready ")))
        .collect();
    // Stopped before the new ones started: a restart, not a reload.
    for pid in &old {
        assert!(crate::cluster::is_gone(*pid), "{pid} outlived the restart");
    }
    std::thread::sleep(Duration::from_millis(300));
    let (answers, failures) = client.stop();
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "refused or unanswered connections"
    );
    assert!(answers.iter().any(|pid| old.contains(pid)), "{answers:?}");
    assert!(answers.iter().any(|pid| new.contains(pid)), "{answers:?}");
    let status = outcome
        .stdout
        .iter()
        .filter(|l| l.contains("keepalive: restart: stopping 2 worker(s)"))
        .count();
    assert_eq!(status, 1, "{outcome:#?}");
}
