//! [`Builder`]: configuration before installation, and installation itself.

use std::time::Duration;

use crate::config::{self, Config};
use crate::sys::{self, SignalPlan};
use crate::{Error, Signal, SignalExit};
use crate::{ask, report, trigger};

/// Configures and installs the handlers before the first hook is registered.
///
/// Without a builder, the first [`add`](crate::add) installs the defaults:
/// a 10 s deadline, SIGHUP, SIGINT and SIGTERM, runs on panic, a second
/// signal forcing the exit, and status 128 + n.
///
/// ```
/// use std::time::Duration;
/// use exit_hook::{Builder, Signal, SignalExit};
///
/// Builder::new()
///     .timeout(Duration::from_secs(25))
///     .signals([Signal::terminate(), Signal::interrupt()])
///     .signal_exit(SignalExit::Reraise)
///     .install()?;
/// exit_hook::add(|exit| eprintln!("stopping: {exit}"));
/// # Ok::<(), exit_hook::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until `install` is called"]
pub struct Builder {
    timeout: Duration,
    signals: Vec<Signal>,
    exit_on_panic: bool,
    force_on_second_signal: bool,
    signal_exit: SignalExit,
    take_ignored_signals: bool,
    drain_timeout: Option<Duration>,
    drain_delay: Duration,
}

impl Builder {
    /// The deadline of a run unless [`timeout`](Self::timeout) says otherwise:
    /// 10 s, as Node's `async-exit-hook` (and `docker stop`'s grace period).
    pub const DEFAULT_TIMEOUT: Duration = config::DEFAULT_TIMEOUT;

    /// The longest deadline [`install`](Self::install) accepts: one hour.
    /// Longer is almost certainly a unit mistake, and no supervisor waits that long.
    pub const MAX_TIMEOUT: Duration = config::MAX_TIMEOUT;

    /// The shortest deadline [`install`](Self::install) accepts: 1 ms.
    /// Shorter leaves the phases no time, and is a unit mistake too.
    pub const MIN_TIMEOUT: Duration = config::MIN_TIMEOUT;

    /// The defaults; see the type's docs.
    pub fn new() -> Self {
        Builder {
            timeout: Self::DEFAULT_TIMEOUT,
            signals: Signal::DEFAULTS.to_vec(),
            exit_on_panic: true,
            force_on_second_signal: true,
            signal_exit: SignalExit::Code,
            take_ignored_signals: false,
            drain_timeout: None,
            drain_delay: Duration::ZERO,
        }
    }

    /// The deadline for the whole run, sync hooks included. When it passes,
    /// the process exits with the status it was going to have, and one line
    /// on stderr names the hooks still running.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long into a run the [`Drain`](crate::Phase::Drain) phase may
    /// last — its hooks, the [exit guards](crate::hold_exit), the
    /// [drain delay](Self::drain_delay) — before the run goes on to the
    /// later phases without it (default: 3/5 of the
    /// [timeout](Self::timeout), 6 s of 10 s). The time left is the later
    /// phases': Cleanup must be over a third of the way through it, Close
    /// two thirds, Flush at the deadline; a phase over early leaves its
    /// time to the next. A phase still running at its end is left behind
    /// as a hook past its [time limit](crate::HookBuilder::time_limit) is,
    /// and named on stderr: a stuck drain cannot keep the pool from closing
    /// or the log from being flushed.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// exit_hook::Builder::new()
    ///     .timeout(Duration::from_secs(25))     // Kubernetes' grace period is 30 s
    ///     .drain_timeout(Duration::from_secs(20)) // 5 s kept for cleanup, close and flush
    ///     .install()?;
    /// # Ok::<(), exit_hook::Error>(())
    /// ```
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    /// Waits `delay` at the start of a run a signal started,
    /// [`is_exiting`](crate::is_exiting) already true and
    /// [`exiting`](crate::exiting) resolved, before the drain's hooks start
    /// (default: none; a panic, `main` returning or [`exit`](crate::exit)
    /// start the drain at once). For load balancers: Kubernetes
    /// takes a pod out of its Services asynchronously, so new connections
    /// keep coming for a few seconds after SIGTERM. With a delay the server
    /// keeps accepting them while its readiness check (`is_exiting()`)
    /// answers 503, and drains after — what a `preStop` sleep does, without
    /// a shell in the image. It counts against the drain's timeout.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// exit_hook::Builder::new()
    ///     .drain_delay(Duration::from_secs(5))
    ///     .install()?;
    /// // readiness: if exit_hook::is_exiting() { 503 } else { 200 }
    /// # Ok::<(), exit_hook::Error>(())
    /// ```
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// The signals that start a run, replacing the default set.
    /// An empty set handles no signal (and starts no thread).
    pub fn signals(mut self, signals: impl IntoIterator<Item = Signal>) -> Self {
        self.signals = signals.into_iter().collect();
        self.signals.sort_unstable();
        self.signals.dedup();
        self
    }

    /// Whether a panic on any thread runs the hooks and exits with 101
    /// (default `true`). The previous panic hook still runs first, so the
    /// panic message is printed as usual.
    pub fn exit_on_panic(mut self, on: bool) -> Self {
        self.exit_on_panic = on;
        self
    }

    /// Whether a second signal during a run ends the process at once with
    /// that signal's status — "press Ctrl+C again to force" (default `true`).
    /// When off, further signals are ignored and only the deadline ends a run.
    ///
    /// Only a signal from another process forces: one the process sends
    /// itself during the run (a hook's `kill(0, SIGTERM)` to stop its
    /// children reaches the process too) is ignored. Unix reads the sender
    /// from `siginfo`; Windows console events have none.
    pub fn force_on_second_signal(mut self, on: bool) -> Self {
        self.force_on_second_signal = on;
        self
    }

    /// Whether to handle a signal the process inherited as *ignored*
    /// (default `false`: it stays ignored).
    ///
    /// A parent that starts a program with a signal ignored asks it not to
    /// stop on that signal: `nohup` ignores SIGHUP so the program outlives
    /// the terminal, and a non-interactive shell ignores SIGINT for a
    /// background job so that Ctrl+C stops only the foreground. By default
    /// the crate respects that, as CPython and the fish shell do: such a
    /// signal is not handled (a debug `tracing` event names it), and the
    /// other signals are. Set this to `true` to take every configured
    /// signal anyway. Unix only; Windows has no inherited dispositions.
    ///
    /// ```no_run
    /// // A service that must stop on SIGHUP even under nohup:
    /// exit_hook::Builder::new().take_ignored_signals(true).install()?;
    /// # Ok::<(), exit_hook::Error>(())
    /// ```
    pub fn take_ignored_signals(mut self, take: bool) -> Self {
        self.take_ignored_signals = take;
        self
    }

    /// How a run started by a signal ends the process (default
    /// [`SignalExit::Code`], status 128 + n).
    pub fn signal_exit(mut self, policy: SignalExit) -> Self {
        self.signal_exit = policy;
        self
    }

    /// Installs the signal handlers, the panic hook and the exit handler.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTimeout`] for a deadline below
    /// [`MIN_TIMEOUT`](Self::MIN_TIMEOUT) (zero included) or above
    /// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT); [`Error::UnsupportedSignal`] for a
    /// signal that cannot be handled (SIGKILL, SIGSTOP, SIGSEGV, glibc's
    /// reserved 32 and 33, …);
    /// [`Error::AlreadyInstalled`] when a builder or the first
    /// [`add`](crate::add) already installed; [`Error::Io`] when the
    /// operating system refuses a step. On an error nothing was installed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = exit_hook::Builder::new().timeout(Duration::ZERO).install().unwrap_err();
    /// assert!(matches!(err, exit_hook::Error::InvalidTimeout(_)));
    /// ```
    pub fn install(self) -> Result<(), Error> {
        self.install_once(true)
    }

    fn install_once(self, explicit: bool) -> Result<(), Error> {
        let installing = config::installing();
        if config::get().is_some() {
            return if explicit {
                Err(Error::AlreadyInstalled)
            } else {
                Ok(())
            };
        }
        if std::thread::panicking() {
            // `std::panic::set_hook` cannot be called while unwinding.
            return Err(Error::Panicking);
        }
        let plans = self.validate()?;
        sys::hand_over(sys::Calls {
            process_exit: trigger::on_process_exit,
            console_run: trigger::run_after_signal,
            console_join: trigger::join,
            console_ask: ask::ask,
        });
        let left_ignored = sys::install_signals(
            &plans,
            self.take_ignored_signals,
            trigger::start_signal_thread,
        )?;
        if !left_ignored.is_empty() {
            // A background job of a script (`app &`) starts with SIGINT
            // ignored, `nohup` with SIGHUP: say so, since Ctrl+C or a
            // hangup then does nothing.
            report::signals_left_ignored(&left_ignored);
        }
        sys::install_exit_handler()?;
        sys::read_notify_socket();
        crate::panic::install();
        installing.set(Config {
            timeout: self.timeout,
            exit_on_panic: self.exit_on_panic,
            drain_timeout: self.drain_timeout_or_default(),
            drain_delay: self.drain_delay,
            signals: self.signals.iter().map(|signal| signal.as_raw()).collect(),
        });
        tracing::debug!(config = ?self, "exit_hook installed");
        Ok(())
    }

    /// The drain's timeout, said or by default.
    fn drain_timeout_or_default(&self) -> Duration {
        self.drain_timeout
            .unwrap_or_else(|| config::default_drain_timeout(self.timeout))
    }

    /// Checks the configuration and plans what each signal handler does.
    fn validate(&self) -> Result<Vec<SignalPlan>, Error> {
        if self.timeout < Self::MIN_TIMEOUT || self.timeout > Self::MAX_TIMEOUT {
            return Err(Error::InvalidTimeout(self.timeout));
        }
        let drain = self.drain_timeout_or_default();
        if drain.is_zero() || drain > self.timeout || self.drain_delay >= drain {
            return Err(Error::InvalidDrain {
                drain_timeout: drain,
                drain_delay: self.drain_delay,
                timeout: self.timeout,
            });
        }
        self.signals
            .iter()
            .map(|&signal| {
                sys::check_signal(signal.as_raw())
                    .map_err(|reason| Error::UnsupportedSignal { signal, reason })?;
                Ok(SignalPlan {
                    signal: signal.as_raw(),
                    name: signal.name().unwrap_or("signal"),
                    status: self.signal_exit.status(signal),
                    force: self.force_on_second_signal,
                })
            })
            .collect()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

/// Installs the defaults unless something is installed already.
///
/// In a child forked (without exec) after installation, the first call
/// starts the child's own signal thread.
pub(crate) fn ensure_installed() -> Result<(), Error> {
    if config::get().is_some() {
        if let Err(err) = sys::restart_after_fork(trigger::start_signal_thread) {
            report::runner_failed(&err);
        }
        return Ok(());
    }
    Builder::new().install_once(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_while_panicking_is_its_own_error() {
        struct InstallsOnDrop(std::sync::mpsc::Sender<String>);
        impl Drop for InstallsOnDrop {
            fn drop(&mut self) {
                // No assertion here: a panic while unwinding aborts.
                let said = match Builder::new().install_once(true) {
                    Err(Error::Panicking) => Error::Panicking.to_string(),
                    other => format!("not Panicking: {other:?}"),
                };
                let _ = self.0.send(said);
            }
        }
        let (send, said) = std::sync::mpsc::channel();
        let _ = std::thread::spawn(move || {
            let _installs = InstallsOnDrop(send);
            std::panic::panic_any("unwinding");
        })
        .join();
        assert_eq!(
            said.recv().unwrap(),
            "cannot install exit_hook while this thread is panicking: install it at the start of main"
        );
    }

    #[test]
    fn drains_that_do_not_fit_are_rejected() {
        let s = Duration::from_secs;
        for builder in [
            Builder::new().drain_timeout(Duration::ZERO),
            Builder::new().timeout(s(5)).drain_timeout(s(6)),
            Builder::new().drain_delay(s(6)), // the default drain is 6 s of 10
            Builder::new().drain_timeout(s(2)).drain_delay(s(3)),
        ] {
            let err = builder.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidDrain { .. }), "{err}");
        }
        assert!(Builder::new().drain_delay(s(5)).validate().is_ok());
        assert!(
            Builder::new()
                .timeout(s(25))
                .drain_timeout(s(25))
                .validate()
                .is_ok()
        );
        let err = Builder::new().drain_delay(s(6)).validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid drain: a delay of 6s in a drain of 6s (of a 10s timeout); \
             the drain must be more than zero and within the timeout, the delay shorter than the drain"
        );
    }

    #[test]
    fn zero_and_absurd_timeouts_are_rejected() {
        for timeout in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Builder::MIN_TIMEOUT - Duration::from_nanos(1),
            Builder::MAX_TIMEOUT + Duration::from_nanos(1),
            Duration::MAX,
        ] {
            let err = Builder::new().timeout(timeout).validate().unwrap_err();
            assert!(matches!(err, Error::InvalidTimeout(t) if t == timeout));
        }
        for timeout in [Builder::MIN_TIMEOUT, Builder::MAX_TIMEOUT] {
            assert!(
                Builder::new().timeout(timeout).validate().is_ok(),
                "{timeout:?}"
            );
        }
    }

    #[test]
    fn plans_carry_the_status_and_force_setting() {
        let plans = Builder::new()
            .signals([Signal::terminate(), Signal::terminate()])
            .force_on_second_signal(false)
            .validate()
            .unwrap();
        assert_eq!(plans.len(), 1, "duplicates are dropped");
        assert_eq!(plans[0].signal, Signal::terminate().as_raw());
        assert_eq!(plans[0].status, Some(143));
        assert!(!plans[0].force);
    }
}
