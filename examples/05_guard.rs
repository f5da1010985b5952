//! The `CancellationToken` habit: `main` runs the service until the shutdown
//! starts, then cleans up by itself; an exit guard keeps the process alive
//! for that, and a hook in the last phase runs once `main` is done.
//!
//! ```text
//! cargo run --example 05_guard
//! ```
//!
//! Press Ctrl+C: the service stops taking jobs, `main` finishes the job in
//! hand and closes its pool, then the flush hook runs, and the process exits
//! with status 130. Without the guard it would exit a millisecond after
//! Ctrl+C, in the middle of `main`'s cleanup.

use std::time::Duration;

use exit_hook::Phase;

#[tokio::main]
async fn main() {
    let _running = exit_hook::hold_exit();
    exit_hook::in_phase(Phase::Flush).add(|exit| println!("flush hook: logs flushed ({exit})"));

    println!(
        "serving as pid {}; press Ctrl+C to stop",
        std::process::id()
    );
    let mut jobs = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = exit_hook::exiting() => break,
            _ = tick.tick() => jobs += 1,
        }
    }
    println!("main: stopped taking jobs after {jobs}");
    tokio::time::sleep(Duration::from_millis(300)).await; // finish the job in hand, close the pool
    println!("main: cleanup done");
} // the guard is dropped here: the flush hook runs, then the process exits
