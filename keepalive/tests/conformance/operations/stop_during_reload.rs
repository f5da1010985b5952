//! `systemctl reload` then `systemctl stop`: a SIGTERM to keepalive while
//! a rolling reload is retiring a worker. The worker being retired already
//! got SIGTERM from the reload; a second one would tell an `exit_hook`
//! program to force its exit and drop its requests in flight.

use std::time::Duration;

use libtest_mimic::Trial;

use super::{TempDir, events, keepalive_merged};
use crate::harness::cargo_build;
use crate::http::{client, get, runtime};
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![keepalive_stop_during_a_reload_answers_every_request_in_flight]
}

fn keepalive_stop_during_a_reload_answers_every_request_in_flight() {
    let dir = TempDir::new("stop_during_reload");
    let (log, database) = (dir.join("access.log"), dir.join("visits.db"));
    let server = cargo_build(
        "http_server",
        &["-p", "exit_hook", "--example", "http_server"],
    )
    .unwrap();
    let mut keepalive = keepalive_merged(
        &["--workers", "2", "--listen", "127.0.0.1:0", "--wait-ready"],
        &[&server],
        &[
            ("DRAIN_DELAY_MS", "500"),
            ("SHUTDOWN_TIMEOUT_MS", "10000"),
            ("ACCESS_LOG", log.to_str().unwrap()),
            ("DATABASE", database.to_str().unwrap()),
            ("RUST_LOG", "info"),
        ],
        "http_stop_during_reload",
    );
    let listening = keepalive.wait_line("listening on", |l| l.contains("listening on http://"));
    let url = listening
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        keepalive.wait_line("a worker ready", |l| {
            l.starts_with("keepalive: pid ") && l.ends_with(" is ready")
        });
    }
    let rt = runtime();
    let client = client();
    let requests: Vec<_> = (0..6)
        .map(|_| rt.spawn(get(&client, format!("{url}/slow?ms=2000"))))
        .collect();
    for _ in 0..6 {
        keepalive.wait_line("request started", |l| {
            l.contains("request started") && l.contains("/slow")
        });
    }
    keepalive.send(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(400));
    keepalive.send(libc::SIGTERM);
    let answers: Vec<_> = requests
        .into_iter()
        .map(|request| rt.block_on(request).unwrap())
        .collect();
    let outcome = keepalive.finish();
    outcome.assert_code(143);
    for answer in &answers {
        match answer {
            Ok((200, body)) => assert!(body.starts_with("slept 2000 ms, visit "), "{body}"),
            other => panic!("a request in flight was not answered: {other:?}; {outcome:#?}"),
        }
    }
    let events = events(&outcome.stdout);
    assert!(
        events.iter().any(|e| e.starts_with("reloading: ")),
        "the reload had started: {outcome:#?}"
    );
    // Every worker, the one being retired included, was asked to stop once.
    let stopped: Vec<&str> = events
        .iter()
        .filter_map(|e| e.strip_prefix("stopping: sent SIGTERM (15) to pid "))
        .collect();
    let mut unique = stopped.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        stopped.len(),
        "a worker signalled twice: {outcome:#?}"
    );
    assert!(
        stopped.len() >= 3,
        "old workers and the new one: {outcome:#?}"
    );
    assert!(
        !outcome.stdout.iter().any(|l| l.contains("exiting now")),
        "no worker forced its exit: {outcome:#?}"
    );
}
