//! The basics: a sync hook and an async hook, each run once when the process ends.
//!
//! ```text
//! cargo run --example 01_basic
//! ```
//!
//! Press Ctrl+C: both hooks print, and the process exits with status 130
//! (`echo $?`). From another terminal, `kill <pid>` sends SIGTERM: status 143.

use std::time::Duration;

fn main() {
    exit_hook::add(|exit| eprintln!("sync hook: {exit}"));
    exit_hook::add_async(|exit| async move {
        tokio::time::sleep(Duration::from_millis(200)).await; // say, pool.close().await
        eprintln!("async hook: closed after 200 ms ({exit})");
    });

    eprintln!(
        "working as pid {}; press Ctrl+C to stop",
        std::process::id()
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
