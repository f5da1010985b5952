//! A signal the application may decline: [`confirm_exit`] registers the
//! decision; `ask` asks it on a thread of its own before the signal's run.

use crate::{Error, Signal, ask, config, install};

/// Asks the application before `signal` starts the run: when it arrives,
/// `decide` is called, and its answer says whether the process exits.
///
/// - `true`: the run starts as it would have without a question, with the
///   signal's exit status (130 for Ctrl+C).
/// - `false`: nothing starts. [`is_exiting`](crate::is_exiting) stays
///   `false`, no hook runs, and the next `signal` asks again.
///
/// `decide` runs on a thread of the crate's, never in the signal handler,
/// so it may block on the terminal for as long as it likes. While it
/// decides:
///
/// - the same signal again ends the process at once with the signal's
///   status, without hooks, as a second signal does during a run ("press
///   Ctrl+C again to force"); with
///   [`Builder::force_on_second_signal(false)`](crate::Builder::force_on_second_signal)
///   it is ignored instead;
/// - any other trigger starts the run as usual: SIGTERM from a supervisor
///   is never held by a pending Ctrl+C question (unless the application
///   asks before SIGTERM too), and the process ends when that run is over,
///   whatever `decide` is doing. Its answer then changes nothing.
///
/// If `decide` panics, the process exits as if it had said `true`: the
/// panic is reported, and the run starts with the signal's status (a
/// broken question must not leave Ctrl+C without effect).
///
/// Registering again for the same signal replaces its decision. It may be
/// called before or after installation (the first call installs the
/// defaults, as [`add`](crate::add) does); registered while a run is going,
/// it changes nothing for that run (the signal forces, as it would have). A signal inherited as ignored
/// and left so (a background job's SIGINT) is never asked: it never
/// arrives. On Windows, Ctrl+C and Ctrl+Break ask; closing the console,
/// logoff and shutdown never do, since Windows ends the process soon after
/// them. A child forked (without exec) while its parent was asking asks
/// its own signals again; if the decision itself was being asked at the
/// fork, the child's copy is held by a thread that is not in the child,
/// so there the signal does what it would without a question, with a line
/// on stderr. Replacing a decision drops the old one outside the crate's
/// lock: what it captured may register a decision as it drops.
///
/// An async application can decide with its runtime's
/// [`Handle::block_on`](https://docs.rs/tokio/latest/tokio/runtime/struct.Handle.html#method.block_on):
/// the thread that decides is not one of the runtime's.
///
/// ```no_run
/// use std::io::{self, BufRead};
/// use exit_hook::Signal;
///
/// exit_hook::confirm_exit(Signal::interrupt(), |_| {
///     eprint!("the task is not finished, are you sure you want to exit? ");
///     let mut answer = String::new();
///     match io::stdin().lock().read_line(&mut answer) {
///         Ok(0) | Err(_) => true, // nobody can answer: stop
///         Ok(_) => answer.trim() == "y",
///     }
/// })?;
/// # Ok::<(), exit_hook::Error>(())
/// ```
///
/// # Errors
///
/// Those of [`Builder::install`](crate::Builder::install) on the first
/// call, and [`Error::SignalNotHandled`] for a signal that is not in the
/// installed [`signals`](crate::Builder::signals).
pub fn confirm_exit<F>(signal: Signal, decide: F) -> Result<(), Error>
where
    F: FnMut(Signal) -> bool + Send + 'static,
{
    install::ensure_installed()?;
    if !config::get().is_some_and(|config| config.signals.contains(&signal.as_raw())) {
        return Err(Error::SignalNotHandled(signal));
    }
    ask::register(signal, Box::new(decide));
    Ok(())
}
