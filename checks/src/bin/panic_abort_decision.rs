//! A fixture of `tests/conformance/apps/confirm.rs`, built with `--profile
//! panic-abort`: a hook, and a Ctrl+C decision that panics. Under
//! `panic = "abort"` nothing can catch that panic; the crate counts it as
//! "yes", as it does when panics unwind: the hook runs, exit status 130.

fn main() {
    exit_hook::add(|exit| println!("hook: {exit}"));
    exit_hook::confirm_exit(exit_hook::Signal::interrupt(), |_| {
        println!("asked");
        panic!("the question cannot be answered");
    })
    .expect("installing");
    println!("READY");
    loop {
        std::thread::park();
    }
}
