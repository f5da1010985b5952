//! A pm2 user's migration, end to end: a pm2-shaped `keepalive.toml` with
//! a Node server in cluster mode and a Rust worker, run by `keepalive up`
//! with its production environment, driven the way the README's migration
//! table says: `status`, `logs` from another directory, a worker reading
//! its config in the watched folder, a reload of a broken version,
//! logrotate's SIGUSR1 to the pid in the pid file, and a stop.
//!
//! Without `node` the test is listed as ignored (said once); under CI it
//! runs and fails if `node` is missing.

use std::process::Command;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::cluster::{Watchdog, assert_gone_soon, is_gone};
use crate::control::{RuntimeDir, pids, status_until, text};
use crate::harness::Child;
use crate::http::{client, get, runtime};

pub fn tests() -> Vec<Trial> {
    vec![
        Trial::test("a_pm2_ecosystem_moves_to_keepalive_up", || {
            a_pm2_ecosystem_moves_to_keepalive_up();
            Ok(())
        })
        .with_ignored_flag(crate::node::ignored()),
    ]
}

/// The app the user had under pm2: the README's Node server, which also
/// reads its config (in the watched folder) every 50 ms.
const APP: &str = r#"
setInterval(() => require("fs").readFileSync(__dirname + "/config/app.json"), 50);
require(process.env.SERVER_JS);
"#;

/// What pm2's ecosystem.config.js said, in keepalive's words (the README's
/// migration table): `instances: 2, exec_mode: "cluster"`, `wait_ready`,
/// `watch: ["config"]`, `env`/`env_production`, `out_file`/`error_file`
/// in a `logs` folder that does not exist yet, `min_uptime`,
/// `max_restarts`, `exp_backoff_restart_delay`, `kill_timeout`.
fn ecosystem(worker: &std::path::Path) -> String {
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node/server.js");
    format!(
        r#"name = "shop"

[apps.web]
command = "node app.js"
workers = 2
listen = ["127.0.0.1:0"]
ready-fd = 4
worker-env = "NODE_APP_INSTANCE"
watch = ["config"]
log-dir = "logs"
min-uptime = "5s"
max-restarts = 10
backoff = "100ms"
kill-timeout = "15s"
env = {{ NODE_ENV = "development", SERVER_JS = {server:?} }}
env_production = {{ NODE_ENV = "production" }}

[apps.jobs]
command = [{worker:?}]
log-dir = "logs"
min-uptime = "100ms"
"#,
        worker = worker.display(),
    )
}

/// The line of `child` starting with `prefix`, seen already or waited for:
/// the apps' lines come in any order.
fn line_starting(child: &mut Child, prefix: &str) -> String {
    match child.seen().iter().find(|l| l.starts_with(prefix)) {
        Some(line) => line.clone(),
        None => child.wait_line(prefix, |l| l.starts_with(prefix)),
    }
}

/// Waits (at most 10 s) until `file` holds a line with `needle`.
fn holds(file: &std::path::Path, needle: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(file).is_ok_and(|text| text.contains(needle)) {
        assert!(
            Instant::now() < until,
            "{} never had {needle:?}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_pm2_ecosystem_moves_to_keepalive_up() {
    let dir = RuntimeDir::new("migration");
    let root = dir.path();
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::write(root.join("config/app.json"), "{}").unwrap();
    std::fs::write(root.join("app.js"), APP).unwrap();
    let file = root.join("keepalive.toml");
    let exe = std::env::current_exe().unwrap();
    std::fs::write(&file, ecosystem(&exe)).unwrap();
    let output = dir.client(&["validate", "-f", file.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");

    // `pm2 start ecosystem.config.js --env production`, from another directory.
    let pid_file = root.join("up.pid");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["up", "-f"])
        .arg(&file)
        .args(["--env", "production", "--pid-file"])
        .arg(&pid_file)
        .current_dir("/")
        .env("XDG_RUNTIME_DIR", root);
    crate::operations::merge_stderr(&mut command);
    let mut up = Child::spawn_with(command, "ticker"); // operations/logs.rs
    let mut watchdog = Watchdog::default();

    // `pm2 list`: both apps, two web workers ready.
    for app in ["web", "jobs"] {
        line_starting(&mut up, &format!("keepalive[{app}]: controlled as {app} "));
    }
    let web = status_until(&dir, "web", |s| {
        let workers = s["workers"].as_array().unwrap();
        workers.len() == 2 && workers.iter().all(|w| w["state"] == "ready")
    });
    let old_web: Vec<u32> = pids(&web).into_iter().map(|p| p as u32).collect();
    for pid in &old_web {
        watchdog.watch(*pid);
    }
    let jobs = status_until(&dir, "jobs", |s| pids(s).len() == 1);
    watchdog.watch(pids(&jobs)[0] as u32);
    let table = text(&dir.client(&["status", "shop"]).stdout);
    assert!(table.contains("web") && table.contains("jobs"), "{table}");

    // The port, from keepalive's event; the production environment, and
    // each worker's index.
    let listening = line_starting(&mut up, "keepalive[web]: listening on 127.0.0.1:");
    let port: u16 = listening.rsplit(':').next().unwrap().parse().unwrap();
    let (client, rt) = (client(), runtime());
    let url = format!("http://127.0.0.1:{port}/");
    let mut instances = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, body) = rt.block_on(get(&client, url.clone())).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.trim_end().ends_with("env production"), "{body}");
        instances.insert(body.split_whitespace().nth(1).unwrap().to_owned());
    }
    assert_eq!(instances.len(), 2, "{instances:?}");

    // `pm2 logs` from anywhere: every app's lines, each with its app.
    let logs = text(&dir.client(&["logs", "-n", "5"]).stdout);
    assert!(
        logs.lines().any(|l| l.starts_with("jobs | tick ")),
        "{logs}"
    );

    // The web workers read config/app.json all the time: no reload.
    let reloaded = up.try_wait_line(Duration::from_millis(1500), |l| {
        l.contains("changed: reloading")
    });
    assert_eq!(reloaded, None, "{:#?}", up.seen());
    assert!(old_web.iter().all(|pid| !is_gone(*pid)), "{:#?}", up.seen());

    // A broken version: `keepalive reload web` says it failed, exit 1,
    // and the old workers serve on.
    std::fs::write(root.join("app.js"), "process.exit(1);\n").unwrap();
    let output = dir.client(&["reload", "web"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        text(&output.stderr).contains("the reload failed"),
        "{output:?}"
    );
    for _ in 0..5 {
        let (status, _) = rt.block_on(get(&client, url.clone())).unwrap();
        assert_eq!(status, 200);
    }
    assert!(old_web.iter().all(|pid| !is_gone(*pid)));
    // Fixed: the reload goes through.
    std::fs::write(root.join("app.js"), APP).unwrap();
    let output = dir.client(&["reload", "web"]);
    assert!(output.status.success(), "{output:?}");
    for pid in &old_web {
        assert_gone_soon(*pid);
    }

    // logrotate: the file moved, then `kill -USR1 $(cat up.pid)`.
    let log = root.join("logs/jobs-out.log");
    holds(&log, "tick ");
    std::fs::rename(&log, root.join("logs/jobs-out.log.1")).unwrap();
    let up_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(up_pid, up.pid());
    // SAFETY: kill(2) on our child, alive.
    assert_eq!(unsafe { libc::kill(up_pid, libc::SIGUSR1) }, 0);
    holds(&log, "tick ");

    // `pm2 stop all`: every app, gracefully; up exits 143.
    let output = dir.client(&["stop", "shop"]);
    assert!(output.status.success(), "{output:?}");
    let outcome = up.finish();
    outcome.assert_code(143);
    assert!(
        !outcome
            .stdout
            .iter()
            .any(|l| l.contains("after the kill timeout")),
        "{outcome:#?}"
    );
}
