//! "Ctrl+C: really stop?" A long task that asks before Ctrl+C ends it.
//!
//! ```text
//! cargo run --example 06_confirm
//! ```
//!
//! Press Ctrl+C: the task asks on stderr and reads the answer from stdin.
//! `n` carries on (no hook runs, the next Ctrl+C asks again); `y`, or a
//! closed stdin, stops: the hook saves the progress and the process exits
//! with 130. Ctrl+C again while the question waits stops at once (130, no
//! hooks), and SIGTERM from a supervisor is never held by the question.

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exit_hook::Signal;

/// While the question waits, the task works on without printing over it.
static ASKING: AtomicBool = AtomicBool::new(false);

fn main() -> Result<(), exit_hook::Error> {
    exit_hook::add(|exit| eprintln!("saving the progress ({exit})"));
    // Asked on a thread of the crate's, never in the signal handler: the
    // decision may block on the terminal for as long as it likes.
    exit_hook::confirm_exit(Signal::interrupt(), |_| {
        ASKING.store(true, Ordering::SeqCst);
        eprint!("the task is not finished, are you sure you want to exit? ");
        let _ = io::stderr().flush();
        let mut answer = String::new();
        let exit = match io::stdin().lock().read_line(&mut answer) {
            Ok(0) | Err(_) => true, // nobody can answer: stop
            Ok(_) => answer.trim().eq_ignore_ascii_case("y"),
        };
        ASKING.store(false, Ordering::SeqCst);
        exit
    })?;

    let pid = std::process::id();
    println!("working as pid {pid}; press Ctrl+C to stop");
    for step in 1..=100 {
        if !ASKING.load(Ordering::SeqCst) {
            println!("step {step} of 100");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("done");
    Ok(())
}
