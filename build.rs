//! Does nothing: it exists because `links = "exit_hook"` in Cargo.toml
//! (which makes cargo refuse two copies of the crate in one build) needs a
//! build script.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
