//! A Node server under keepalive, as the README's recipe runs it
//! (`examples/node/server.js`, the machine's `node`): keepalive's socket
//! at descriptor 3, readiness by a newline on `--ready-fd`, the slot's
//! index in `NODE_APP_INSTANCE`, and the drain on SIGTERM. Reloaded under
//! load from clients that open a connection per request and from clients
//! that keep theirs alive, then stopped: no request fails, no worker is
//! killed at the kill timeout.
//!
//! Without `node` on the PATH the test is listed as ignored, saying so;
//! under CI (`CI` set) it runs, and fails if `node` is missing.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use libtest_mimic::Trial;

use crate::cluster::Watchdog;
use crate::harness::Child;
use crate::http::{get, runtime};
use crate::supervisor::keepalive_command;

/// Whether the tests that run `node` are ignored: no `node` on the PATH,
/// and not under CI (which installs it, and fails without it). Said once.
pub(crate) fn ignored() -> bool {
    static IGNORED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORED.get_or_init(|| {
        let node = Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        let ignored = !node && std::env::var_os("CI").is_none();
        if ignored {
            eprintln!(
                "keepalive's Node tests are ignored: no `node` on the PATH (apt-get install nodejs)"
            );
        }
        ignored
    })
}

pub fn tests() -> Vec<Trial> {
    vec![
        Trial::test(
            "keepalive_runs_node_ready_first_and_drains_keep_alive_connections",
            || {
                keepalive_runs_node_ready_first_and_drains_keep_alive_connections();
                Ok(())
            },
        )
        .with_ignored_flag(ignored()),
    ]
}

/// Requests through a reload and a stop: a client that connects for each
/// request, and one that keeps its connection alive (reqwest's pool).
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        // One client connecting for each request; eight keeping theirs
        // alive, each asking again as soon as it is answered, so that their
        // connections are never idle long.
        let threads = std::iter::once(false)
            .chain([true; 8])
            .map(|keep_alive| {
                let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
                std::thread::spawn(move || {
                    let client = reqwest::Client::builder()
                        .pool_max_idle_per_host(if keep_alive { 8 } else { 0 })
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    let rt = runtime();
                    let ms = if keep_alive { 0 } else { 20 };
                    let url = format!("http://127.0.0.1:{port}/?ms={ms}");
                    while !stop.load(Ordering::Relaxed) {
                        match rt.block_on(get(&client, url.clone())) {
                            Ok((200, body)) if body.starts_with("worker ") => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            other => failed.lock().unwrap().push(format!("{other:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            answered,
            failed,
            threads,
        }
    }

    /// Stops the clients: how many answers, and what failed.
    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.answered.load(Ordering::Relaxed), failed)
    }
}

fn keepalive_runs_node_ready_first_and_drains_keep_alive_connections() {
    let server = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node/server.js");
    let mut command = keepalive_command();
    command.args([
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--ready-fd",
        "4",
        "--worker-env",
        "NODE_APP_INSTANCE",
        "--",
        "node",
        server,
    ]);
    crate::operations::merge_stderr(&mut command);
    let mut keepalive = Child::spawn_with(command, "node");
    let listening = keepalive.wait_line("listening on", |l| {
        l.starts_with("keepalive: listening on ")
    });
    let port: u16 = listening.rsplit(':').next().unwrap().parse().unwrap();
    let mut watchdog = Watchdog::default();
    for _ in 0..2 {
        let line = keepalive.wait_line("is ready", |l| l.ends_with(" is ready"));
        let pid: u32 = line
            .trim_start_matches("keepalive: pid ")
            .trim_end_matches(" is ready")
            .parse()
            .unwrap();
        watchdog.watch(pid);
    }
    // Each slot's index, as Node apps read it from pm2.
    let (client, rt) = (crate::http::client(), runtime());
    let mut instances = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (status, body) = rt
            .block_on(get(&client, format!("http://127.0.0.1:{port}/")))
            .unwrap();
        assert_eq!(status, 200, "{body}");
        instances.insert(body.split_whitespace().nth(1).unwrap().to_owned());
    }
    assert_eq!(
        instances.into_iter().collect::<Vec<_>>(),
        ["0", "1"],
        "NODE_APP_INSTANCE"
    );
    // A reload under load: both replaced, ready first.
    let load = Load::start(port);
    std::thread::sleep(Duration::from_millis(300));
    keepalive.send(libc::SIGHUP);
    keepalive.wait_line("reload done", |l| {
        l == "keepalive: reload done: every worker replaced"
    });
    std::thread::sleep(Duration::from_millis(300));
    let (answered, failed) = load.stop();
    assert!(answered > 20, "the clients got through: {answered}");
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "failed requests over the reload"
    );
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    let killed: Vec<&String> = outcome
        .stdout
        .iter()
        .filter(|l| l.contains("after the kill timeout"))
        .collect();
    assert_eq!(
        killed,
        Vec::<&String>::new(),
        "Node workers drained, none killed: {:#?}",
        outcome.stdout
    );
    outcome.assert_elapsed(..Duration::from_secs(10));
}
