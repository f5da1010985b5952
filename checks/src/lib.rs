//! `exit_hook`'s checks, apart from the library so that their dependencies
//! are not compiled with its examples: the conformance suite
//! (`tests/conformance/`), the fault injection (`tests/fault_injection/`),
//! the Windows smoke suite under wine (`tests/windows_smoke.rs`), the
//! architecture check (`tests/architecture.rs`), the benchmarks
//! (`benches/`), and here the code of `docs/recipes.md` and
//! `docs/servers.md`, compiled as doc tests. Nothing here is published.

/// `docs/recipes.md`'s code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/recipes.md")]
pub struct RecipesDoctests;

/// `docs/servers.md`'s code blocks (the HTTP example's shutdown, a guard
/// in `main`), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/servers.md")]
pub struct ServersDoctests;
