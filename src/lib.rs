//! Run cleanup hooks exactly once, however the process ends.
//!
//! Register cleanup work once — flush a file, close a database pool, drain a
//! server — and `exit_hook` runs it exactly once when the process ends: on
//! SIGTERM from Kubernetes or systemd, Ctrl+C, SIGHUP, a panic on any thread,
//! `main` returning or [`std::process::exit`]. It waits for async work up to
//! a deadline (10 s by default), then exits with the status a shell and a
//! supervisor expect: 128 + the signal number.
//!
//! Add it with `cargo add exit_hook` (or `exit_hook = "0.1"` under
//! `[dependencies]`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! exit_hook::add(|exit| eprintln!("bye: {exit}"));
//! exit_hook::add_async(|_exit| async move {
//!     tokio::time::sleep(Duration::from_millis(100)).await; // say, pool.close().await
//!     eprintln!("pool closed");
//! });
//! // ... serve until SIGTERM: both hooks run once, then the process exits with 143.
//! # loop { std::thread::park() }
//! ```
//!
//! # How it works
//!
//! **Trigger.** The first [`add`] (or an explicit [`Builder::install`])
//! installs three things: signal handlers for SIGHUP, SIGINT and SIGTERM
//! (through `signal-hook`, so they coexist with `tokio::signal`; a signal
//! the process inherited as ignored, as under `nohup`, stays ignored; on Windows,
//! a console control handler for Ctrl+C, Ctrl+Break and console close), a
//! panic hook, and an exit handler that the C library's `exit()` calls. Every
//! trigger races for the process's single run with one atomic
//! compare-and-swap; the winner decides the exit status. The signal handler
//! itself only does that swap and a one-byte `send` to wake a thread.
//!
//! **Worker thread.** Hooks never run on the application's threads. They run
//! on the crate's thread, `exit-hook`: for a signal, the thread that waited
//! for it; otherwise one started for the run. That thread first wakes the
//! [`exiting`] futures (never the triggering thread, which may be a runtime
//! worker about to block). For async hooks it builds a current-thread tokio
//! runtime of the crate's own, so they run even when the application's
//! runtime is blocked, busy or already dropped. The triggering thread is
//! held only where it cannot go on: inside `exit()`, in [`exit`], and in a
//! panic under `panic = "abort"`. A signal's thread is the crate's own, a
//! panic that unwinds goes on unwinding (tokio turns it into a `JoinError`,
//! the locks it held are released), and [`start_exit`] returns at once.
//!
//! **Hooks.** The run goes through the [`Phase`]s in order — drain, cleanup,
//! close, flush — each hook in the phase it was registered in
//! ([`in_phase`]; [`add`] registers in [`Phase::Cleanup`]). Within a phase,
//! hooks start in registration order; sync hooks run one after another;
//! async hooks run concurrently (1000 hooks that each wait 100 ms take about
//! 100 ms). A hook may have a [time limit](HookBuilder::time_limit) after
//! which the run moves on. A panicking hook is caught and reported, and the
//! others still run. A hook registered during the run joins it. Each hook
//! runs at most once, whatever arrives meanwhile. [`ExitGuard`]s held by
//! the application's own code hold the run after the drain phase, until
//! they are released.
//!
//! **Timeout.** Another thread waits for the run up to the deadline.
//! The deadline bounds sync hooks too: a hook stuck in a loop cannot keep the
//! process alive. A run that finishes early exits at once.
//!
//! **Exit.** Then the process ends with the status of the trigger that
//! started the run. A second signal during a run, from another process,
//! ends the process at once with that signal's status ("press Ctrl+C again
//! to force").
//!
//! # Exit status
//!
//! | trigger | status ([`ExitStatus::code`](std::process::ExitStatus::code)) |
//! |---|---|
//! | SIGHUP | 129 |
//! | SIGINT (Ctrl+C) | 130 |
//! | SIGTERM | 143 |
//! | panic on any thread ([`Builder::exit_on_panic`], on by default) | 101 |
//! | `main` returns / `std::process::exit(n)` | `n`, unchanged |
//! | [`exit_hook::exit(n)`](exit), [`exit_hook::start_exit(n)`](start_exit) | `n` |
//! | a second signal during a run | that signal's 128 + n |
//! | the same signal again while [`confirm_exit`]'s question waits | that signal's 128 + n, no hooks |
//! | a run that hits its deadline | the trigger's status, unchanged |
//!
//! A process stopped by a signal *exits* with 128 + n instead of dying by the
//! signal, as Node's `async-exit-hook` does: it ran its cleanup and decided
//! to stop, and shells report 128 + n for death by a signal anyway. Some
//! supervisors tell the two apart: systemd counts death by SIGTERM as a clean
//! stop but exit status 143 as a failure unless `SuccessExitStatus=143` is
//! set. [`SignalExit::Reraise`] makes the process die by the signal instead,
//! and [`SignalExit::Custom`] maps signals to statuses of your choice.
//!
//! # Command-line tools: "really stop?"
//!
//! A tool running a long task may ask before Ctrl+C ends it.
//! [`confirm_exit`] registers the decision for a signal; it runs on a
//! thread of the crate's (so it may block on the terminal), and the run
//! starts only if it says so. Until then nothing starts: `is_exiting()`
//! stays false, and the next Ctrl+C asks again. Ctrl+C again while the
//! question waits forces the exit, and SIGTERM is not held by it.
//!
//! ```no_run
//! use std::io::{self, BufRead};
//!
//! exit_hook::add(|exit| eprintln!("saving the progress ({exit})"));
//! exit_hook::confirm_exit(exit_hook::Signal::interrupt(), |_| {
//!     eprint!("the task is not finished, are you sure you want to exit? ");
//!     let mut answer = String::new();
//!     match io::stdin().lock().read_line(&mut answer) {
//!         Ok(0) | Err(_) => true, // nobody can answer: stop
//!         Ok(_) => answer.trim() == "y",
//!     }
//! })?;
//! # Ok::<(), exit_hook::Error>(())
//! ```
//!
//! `examples/06_confirm.rs` is the whole tool.
//!
//! # Servers
//!
//! Under systemd's `Type=notify` (or keepalive), a run that starts tells the
//! service manager `STOPPING=1` on the socket `NOTIFY_SOCKET` names, with
//! `EXTEND_TIMEOUT_USEC=` the run's budget, so the manager neither kills it
//! mid-hook nor waits longer than it needs.
//!
//! [`is_exiting`] and the [`exiting`] future tell a server that the shutdown
//! has started: `axum::serve(..).with_graceful_shutdown(exit_hook::exiting())`
//! stops accepting and lets the requests in flight finish, and a readiness
//! probe answers 503 once `is_exiting()` is true. The future does not keep
//! the process alive by itself; the drain must be awaited, in one of two ways:
//!
//! - **Hooks in phases**, each registered where its resource is made: the
//!   server's drain in [`Phase::Drain`], the pool's close in [`Phase::Close`],
//!   the log's flush in [`Phase::Flush`]. Each phase starts when the one
//!   before has finished, so no request in flight finds the pool closed.
//!   Each phase has its share of the deadline: if a request never
//!   finishes, the drain's time runs out ([`Builder::drain_timeout`]) and
//!   the pool and the log are still closed in time. [`Exit::deadline`]
//!   tells a hook how long it may take, and [`Builder::drain_delay`] keeps
//!   the server accepting (`is_exiting()` already true) while load
//!   balancers notice.
//! - **A guard in `main`**: [`hold_exit`] in a `#[tokio::main]` that serves
//!   until [`exiting`] fires and then cleans up itself (the
//!   `CancellationToken` habit). The process exits when the guard is
//!   dropped, or at the deadline.
//!
//! ```no_run
//! use std::future::IntoFuture; // in the prelude from edition 2024 on
//! use exit_hook::Phase;
//! # #[allow(dead_code)]
//! # async fn app(router: axum::Router) -> std::io::Result<()> {
//! # struct Pool; impl Pool { async fn close(&self) {} }
//! # let pool = std::sync::Arc::new(Pool);
//! exit_hook::in_phase(Phase::Close).add_async(move |_| async move { pool.close().await });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let server = tokio::spawn(
//!     axum::serve(listener, router)
//!         .with_graceful_shutdown(exit_hook::exiting())
//!         .into_future(),
//! );
//! exit_hook::in_phase(Phase::Drain).add_async(|_| async move { let _ = server.await; });
//! # Ok(()) }
//! ```
//!
//! `examples/http_server.rs` is a complete server that does this, with a
//! drain delay for load balancers, and the conformance suite proves it under
//! concurrent requests with a real HTTP client.
//!
//! To end the process from async code (a fatal error in a task), call
//! [`start_exit`]: it starts the run and returns, so the application's
//! runtime keeps running what the hooks wait for. [`exit`] blocks the
//! calling thread until the process ends — right for sync code, wrong in a
//! task, where it blocks a worker (the whole runtime, on a current-thread
//! runtime).
//!
//! # Deploying
//!
#![doc = include_str!("../docs/deploying.md")]
//!
//! # Caveats
//!
//! - **The first trigger wins.** Once a run has started, its status is
//!   fixed. A thread that calls `exit` meanwhile, or panics with
//!   `panic = "abort"`, waits for the run and then ends the process with the
//!   run's status. With unwinding panics, a thread panicking during a run
//!   unwinds as usual.
//! - **Panics stop the process.** By default a panic on *any* thread — a
//!   worker thread, a tokio task, an axum handler — runs the hooks and exits
//!   with 101, even where the panic would otherwise have been caught (tokio
//!   catches a task's panic into its `JoinError`; that still ends the
//!   process). The panicking thread is not held: it unwinds as it would
//!   have, and the process ends when the run does, so the application keeps
//!   running while its hooks drain it. Turn it off with
//!   [`Builder::exit_on_panic(false)`](Builder::exit_on_panic).
//! - **Replacing the panic hook turns the panic trigger off.** Installing
//!   wraps the panic hook that was there; a later `std::panic::set_hook`
//!   (color-eyre, human-panic and Sentry install their own) replaces the
//!   wrapper, and a panic on a thread then runs no hook. Call
//!   [`handle_panic`] from the new hook.
//! - **Guards and `panic = "abort"`.** A thread that panics under
//!   `panic = "abort"` never gets back to the [`ExitGuard`]s it holds; the
//!   run waits for them until the deadline.
//! - **Exit handlers of C libraries.** After a signal or a panic the process
//!   ends with `_exit`, after flushing stdout, as it would have on the
//!   default action of the signal: handlers registered with C's `atexit` do
//!   not run. This is what makes the exit safe while a hook is stuck or
//!   another thread is exiting. [`exit`] ends with `std::process::exit` when
//!   every hook returned.
//! - **A hook that ends the process** (calls [`exit`] or
//!   `std::process::exit`, or panics under `panic = "abort"`) ends the run:
//!   hooks still running are abandoned and the process exits with the run's
//!   status. If the run was started by a normal exit, the standard library
//!   makes a second `std::process::exit` wait forever, so such a hook waits
//!   for the deadline.
//! - **The deadline cannot stop a thread.** A hook still running at the
//!   deadline is not cancelled; the process ends around it.
//! - **No thread can be created** (a pids cgroup or `RLIMIT_NPROC`
//!   exhausted) when the process ends: every trigger still runs every hook,
//!   on the crate's signal thread, which exists since install. A panic or
//!   [`start_exit`] then blocks its thread until the process ends (it
//!   keeps the deadline). After a signal, the signal thread runs the hooks
//!   itself with no thread beside it: an alarm (`setitimer`, SIGALRM;
//!   its handler replaces any other) ends the process at the deadline, and
//!   a stuck phase holds the later ones until then. Time-limited sync hooks
//!   run without their limits. Windows has no such alarm: there the
//!   deadline is not kept in that state.
//! - **SIGKILL cannot be handled**, nor can a crash of the process (a
//!   segmentation fault, an abort from outside Rust). Hooks do not run then.
//! - **fork() without exec.** A forked child inherits the hooks, as it
//!   inherits C's `atexit` handlers: its `exit()` and its panics run them,
//!   in the child. The crate's signal thread does not survive the fork, so
//!   until the child calls into the crate again ([`add`], [`hold_exit`],
//!   [`exiting`], …, which start its own), a signal ends the child as the
//!   signal's status says, without hooks, and one line on stderr says why.
//!   Nothing the child does wakes or changes the parent. A child that a
//!   *hook* forked and that returns into the run ends there with the run's
//!   status and runs no other hook (its parent does); if it calls `exit`, it
//!   ends with its own status. As with any fork in a threaded process, the
//!   child must not need a lock another thread held at the fork.
//! - **Signals inherited as ignored stay ignored.** Under `nohup` SIGHUP is
//!   ignored, and a non-interactive shell's background job ignores SIGINT;
//!   the crate leaves such a signal alone, as CPython does, unless
//!   [`Builder::take_ignored_signals`] says otherwise. Installing says so
//!   once: a `tracing` warning, or without a subscriber a line on stderr.
//! - **A limited sync hook holds its phase's async hooks.** While a sync
//!   hook with a [time limit](HookBuilder::time_limit) runs (on a helper,
//!   the runner watching it), the async hooks of the same batch are not
//!   polled; they go on once it returns or is left behind at its limit. Put
//!   a slow limited sync hook in a phase of its own if its neighbours must
//!   progress meanwhile.
//! - **"No" to [`confirm_exit`] is the crate's.** Declining stops the
//!   crate's run only: another handler of the same signal in the process
//!   (tokio's `signal::ctrl_c()`, a `ctrlc` handler) still fires. Use one
//!   or the other for Ctrl+C.
//! - **Signals the process sends itself** during a run (a hook's
//!   `kill(0, SIGTERM)` to stop its children, which reaches the process
//!   too) do not force the exit: only another process's signal does. On
//!   Unix the handler reads the sender from `siginfo`.
//! - **Signal masks and descriptors.** The crate's threads unblock the
//!   signals they handle (a thread that blocked SIGTERM before installing
//!   does not stop the shutdown) and block SIGPIPE. The crate's wake-up
//!   socket lives at descriptor 512 or above and is checked before each
//!   use: an application that closed stdout, or closes every descriptor
//!   from 3 up, keeps its own descriptors, and the crate makes a new socket.
//! - **Exit codes are eight bits on Unix.** [`exit(259)`](exit) exits with
//!   259, which a parent reads as 3; [`Exit::code`] tells hooks 3.
//! - **std's stdout and stderr locks.** A thread that calls
//!   `std::process::exit` while holding `stdout().lock()` keeps it for ever:
//!   hooks that print wait for the deadline. The crate's own lines are
//!   written to stderr without std's lock (on Unix), so the deadline's line
//!   still gets out.
//! - **One copy per process.** The crate sets `links = "exit_hook"`, so
//!   cargo refuses a build with two semver-incompatible versions of it:
//!   both would install handlers and race for the exit.
//!
//! # Logging
//!
//! The crate emits [`tracing`](https://docs.rs/tracing) events: the run
//! starting (with its trigger) and finishing, each hook starting and
//! finishing (with its duration and registration site, at `debug`), a hook
//! panicking, and the deadline passing with the registration sites of the
//! hooks still running. Without a subscriber nothing is printed on the happy
//! path; a passed deadline or a panicking hook writes one line to stderr.
//!
//! # Platform support
//!
//! Where each trigger is tested: *run* means a test starts a real process
//! and reads its exit status; *wine* means the Windows build runs under wine
//! on Linux in CI; *handler* means a test calls the console handler routine
//! directly (under wine), because wine cannot send that event.
//!
//! | trigger | Linux (glibc) | macOS, other Unix | Windows |
//! |---|---|---|---|
//! | SIGTERM, SIGINT, SIGHUP → 143, 130, 129 | run | same code, type-checked | SIGTERM is never sent |
//! | Ctrl+C → 130 | run (SIGINT) | same code | wine (SIGINT arrives as `CTRL_C_EVENT`) |
//! | Ctrl+Break → SIGBREAK, 149 | — | — | handler |
//! | console close, logoff, shutdown → SIGHUP, 129 | — | — | handler |
//! | a second event forces the exit | run | same code | wine (second Ctrl+C) |
//! | panic → 101 | run, also `panic = "abort"` | same code | wine |
//! | `main` returns | run; hooks see the status | same code; [`Exit::code`] is `None` | wine; [`Exit::code`] is `None` |
//! | `std::process::exit(n)` | run; hooks see `n` | same code; [`Exit::code`] is `None` | **runs no hooks** (wine): it calls `ExitProcess`, which skips the C runtime's exit handlers; use [`exit`] |
//! | [`exit(n)`](exit) | run | same code | wine |
//! | [`SignalExit::Reraise`] | run, also as PID 1 | same code | exits with 128 + n: Windows has no death by signal |
//!
//! On Windows, close, logoff and shutdown end the process as soon as the
//! handler returns, so the handler blocks until the run is over; but Windows
//! ends the process about 5 s after a close event anyway (logoff and
//! shutdown: the system's own time-out), whatever the deadline. Hooks that
//! must finish when the console closes should finish well within 5 s.
//!
//! # Feature flags
//!
//! None. keepalive, the process manager built on this crate (restarts,
//! graceful stops, listening sockets held across workers, rolling reloads,
//! systemd's protocols), is a crate of its own in the same repository
//! (`keepalive/`): the library's users do not compile it.
//!
//! Behaviour is otherwise chosen at run time with [`Builder`], never with a
//! feature.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85. Raising it is a minor-version change, and the MSRV stays at
//! least six months behind the newest stable release.
//!
//! # Similar crates
//!
//! - [`ctrlc`](https://docs.rs/ctrlc): a Ctrl+C (and optionally SIGTERM)
//!   handler; no hooks, deadline, panic handling or exit status.
//! - [`signal-hook`](https://docs.rs/signal-hook): the building block this
//!   crate uses for its handlers.
//! - [`tokio-graceful-shutdown`](https://docs.rs/tokio-graceful-shutdown):
//!   shutdown of a tree of tokio subsystems; does not set the exit status.
//! - Node's [`async-exit-hook`](https://www.npmjs.com/package/async-exit-hook),
//!   whose model (sync and async hooks, run once, 10 s, 128 + n) this follows.
#![deny(unreachable_pub, missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod ask;
mod config;
mod confirm;
mod error;
mod exit;
mod guard;
mod hook;
mod install;
mod panic;
mod phase;
mod registry;
mod report;
mod runner;
mod signal;
mod state;
mod sys;
mod trigger;
mod watch;

pub use confirm::confirm_exit;
pub use error::Error;
pub use exit::{Exit, Panic, Trigger};
pub use guard::{ExitGuard, hold_exit};
pub use hook::{HookBuilder, HookHandle, add, add_async, in_phase};
pub use install::Builder;
pub use panic::handle_panic;
pub use phase::Phase;
pub use signal::{Signal, SignalExit};
pub use trigger::{exit, start_exit};
pub use watch::{exiting, is_exiting};

/// The README's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
