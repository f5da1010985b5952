//! An async service: a worker stops when the shutdown starts, and an async
//! hook waits for it to drain.
//!
//! ```text
//! cargo run --example 02_tokio
//! ```
//!
//! Press Ctrl+C: the worker sees `exit_hook::exiting()` resolve and stops
//! taking jobs; the hook, running on the crate's own runtime, awaits the
//! worker's join handle and reports how many jobs it did. Exit status 130.

use std::time::Duration;

#[tokio::main]
async fn main() {
    let worker = tokio::spawn(async {
        let mut jobs = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = exit_hook::exiting() => break,
                _ = tick.tick() => jobs += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // finish the job in hand
        jobs
    });

    exit_hook::add_async(|exit| async move {
        let jobs = worker.await.expect("the worker did not panic");
        eprintln!("worker drained after {jobs} jobs ({exit})");
    });

    eprintln!(
        "serving as pid {}; press Ctrl+C to stop",
        std::process::id()
    );
    std::future::pending::<()>().await;
}
