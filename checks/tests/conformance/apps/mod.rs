//! Living inside real applications (SPEC §6): tokio runtimes of both
//! flavours that panic in a task or exit from one, axum servers, ordered
//! shutdown phases, per-hook time limits, and exit guards held by the
//! application's own code. Each test's child scenario is beside it.

use std::time::Duration;

use libtest_mimic::Trial;

use crate::harness::Child;

mod confirm;
mod guards;
mod hostile;
mod loggers;
mod phases;
mod runtimes;
mod servers;

pub fn tests() -> Vec<Trial> {
    [
        runtimes::tests(),
        confirm::tests(),
        phases::tests(),
        guards::tests(),
        hostile::tests(),
        loggers::tests(),
        servers::tests(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The child scenarios of these files.
pub fn scenarios() -> Vec<crate::Scenario> {
    [
        runtimes::scenarios(),
        confirm::scenarios(),
        phases::scenarios(),
        guards::scenarios(),
        hostile::scenarios(),
        loggers::scenarios(),
        servers::scenarios(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Far below the 10 s default deadline: the run did not wait it out.
const PROMPT: Duration = Duration::from_secs(5);

#[track_caller]
fn assert_prompt(elapsed: Duration) {
    assert!(
        elapsed < PROMPT,
        "took {elapsed:?}: waited for the deadline?"
    );
}

/// Blocks this (non-runtime) thread until a run has started: what a worker
/// thread that watches for the shutdown does.
fn wait_until_exiting() {
    while !exit_hook::is_exiting() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

// An axum server for the scenarios: `/slow?ms=N` prints "slow started" and
// answers after N ms; `/panic` panics in the handler.

async fn bind() -> tokio::net::TcpListener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    listener
}

/// Reads the child's "listening on" line; returns its base URL.
fn listening_address(child: &mut Child) -> String {
    let line = child.wait_line("listening on", |l| l.starts_with("listening on "));
    line["listening on ".len()..].to_owned()
}

fn router() -> axum::Router {
    use axum::extract::Query;
    use axum::routing::get;

    #[derive(serde::Deserialize)]
    struct Slow {
        ms: u64,
    }
    axum::Router::new()
        .route(
            "/slow",
            get(|Query(Slow { ms }): Query<Slow>| async move {
                println!("slow started");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                format!("slept {ms} ms")
            }),
        )
        .route("/panic", get(panicking))
}

async fn panicking() -> &'static str {
    panic!("handler boom")
}
