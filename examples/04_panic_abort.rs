//! Hooks run even when panics abort.
//!
//! Run it with the `panic-abort` profile (`panic = "abort"`):
//!
//! ```text
//! cargo run --profile panic-abort --example 04_panic_abort; echo "exit status $?"
//! ```
//!
//! You will see the panic message, then the hook's line, then `exit status 101`:
//! the process did not abort (status 134), because the crate's panic hook ran
//! the hooks and exited before the abort could happen.

fn main() {
    exit_hook::add(|exit| println!("flushing the log: {exit}"));
    panic!("disk full");
}
