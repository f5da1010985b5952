//! Registration cost: `add` then `unregister`, and an exit guard taken and
//! released, on one thread and on two threads at once.
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

/// An exit guard taken and released: what `hold_exit()` costs a request
/// handler that holds the exit for the length of a request.
#[divan::bench(threads = [1, 2])]
fn hold_exit_then_release() {
    exit_hook::hold_exit().release();
}

/// A hook in a phase, with a time limit: the builder adds nothing to `add`.
#[divan::bench(threads = [1, 2])]
fn in_phase_with_time_limit_then_unregister() -> bool {
    exit_hook::in_phase(exit_hook::Phase::Close)
        .time_limit(std::time::Duration::from_secs(1))
        .add(|_| {})
        .unregister()
}
