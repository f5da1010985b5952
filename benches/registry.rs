//! Registration cost: `add` then `unregister`, on one thread and on two
//! threads registering at once.
//!
//! ```text
//! cargo bench --bench registry
//! ```

fn main() {
    divan::main();
}

/// One registration and its removal, uncontended and with another thread
/// doing the same at the same time.
#[divan::bench(threads = [1, 2])]
fn add_then_unregister() -> bool {
    exit_hook::add(|_| {}).unregister()
}

/// An async hook: one more box for the future's factory.
#[divan::bench(threads = [1, 2])]
fn add_async_then_unregister() -> bool {
    exit_hook::add_async(|_| async {}).unregister()
}

/// Registering alone. The hooks stay registered, and run (no-ops) when the
/// benchmark's `main` returns.
#[divan::bench(sample_count = 100, sample_size = 1000)]
fn add_only() -> exit_hook::HookHandle {
    exit_hook::add(|_| {})
}
