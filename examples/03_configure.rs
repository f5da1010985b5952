//! Configuring before the first hook: deadline, signals, what a panic does.
//!
//! ```text
//! cargo run --example 03_configure
//! ```
//!
//! Press Ctrl+C: the quick hook finishes, the slow one is still running when
//! the 2 s deadline passes, and one line on stderr names it by the place it
//! was registered. The process exits with 130 all the same. Press Ctrl+C
//! twice to exit at once.

use std::time::Duration;

use exit_hook::{Builder, Signal};

fn main() -> Result<(), exit_hook::Error> {
    Builder::new()
        .timeout(Duration::from_secs(2))
        .signals([Signal::interrupt(), Signal::terminate()])
        .exit_on_panic(true)
        .force_on_second_signal(true)
        .install()?;

    exit_hook::add(|exit| eprintln!("quick hook: {exit}"));
    exit_hook::add_async(|_| async {
        eprintln!("slow hook: this takes a minute...");
        tokio::time::sleep(Duration::from_secs(60)).await;
    });

    eprintln!("pid {}; press Ctrl+C", std::process::id());
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
