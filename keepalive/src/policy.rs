//! When to restart a child that exited, and after how long: pure logic.

use std::time::Duration;

/// Exponential backoff between restarts, as pm2's `exp_backoff_restart_delay`:
/// the first restart waits `initial`, each next one 1.5 times longer, up to
/// `max`; a child that stayed up `reset_after` starts the sequence again.
///
/// ```
/// use std::time::Duration;
/// use keepalive::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100));
/// assert_eq!(backoff.max, Duration::from_secs(15));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay (default 15 s, as pm2).
    pub max: Duration,
    /// An uptime after which the delay starts again from `initial`
    /// (default 30 s, as pm2).
    pub reset_after: Duration,
}

impl Backoff {
    /// Backoff from `initial`, capped at 15 s, reset after 30 s of uptime.
    pub fn new(initial: Duration) -> Self {
        Backoff {
            initial,
            max: Duration::from_secs(15),
            reset_after: Duration::from_secs(30),
        }
    }

    /// The longest delay.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The uptime after which the delay starts again from `initial`.
    pub fn reset_after(mut self, uptime: Duration) -> Self {
        self.reset_after = uptime;
        self
    }
}

/// Why the supervisor stopped restarting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The child exited within `min_uptime`, and no `spin_sleep`,
    /// `backoff` or `max_restarts` says to try again.
    Spinning {
        /// How long it had run.
        uptime: Duration,
    },
    /// The restart limit was reached.
    MaxRestarts(u32),
    /// The child exited with one of the `stop_exit_codes`.
    ExitCode(i32),
    /// The supervisor itself was told to stop (by this signal, or `None`
    /// for a panic or a normal exit); the child was stopped and not
    /// restarted.
    Stopped(Option<exit_hook::Signal>),
    /// The program could not be started (not found, not executable) and no
    /// `backoff` or `spin_sleep` says to try again.
    CannotStart,
}

/// The shortest wait before a spinning child is started again, whatever
/// `spin_sleep` says: 100 ms, so a program that exits at once costs ten
/// starts a second, not a core.
pub const MIN_SPIN_SLEEP: Duration = Duration::from_millis(100);

/// How long after a start that failed for want of descriptors, processes
/// or memory it is tried again, when no backoff or spin sleep says.
pub(crate) const TRANSIENT_RETRY: Duration = Duration::from_secs(1);

/// The restart settings.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) min_uptime: Duration,
    pub(crate) spin_sleep: Option<Duration>,
    pub(crate) max_restarts: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) stop_exit_codes: Vec<i32>,
}

impl Default for Policy {
    fn default() -> Self {
        // forever's defaults: a child that dies within a second is spinning,
        // and a spinning child is given up.
        Policy {
            min_uptime: Duration::from_secs(1),
            spin_sleep: None,
            max_restarts: None,
            backoff: None,
            stop_exit_codes: Vec::new(),
        }
    }
}

/// What to do after an exit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Restart(Duration),
    Stop(StopReason),
}

/// The state the decisions depend on: restarts so far and the backoff step.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    pub(crate) count: u32,
    backoff_step: u32,
}

impl Policy {
    /// Decides after a child exited with `code` (`None`: killed by a signal)
    /// after running for `uptime`.
    pub(crate) fn decide(
        &self,
        restarts: &mut Restarts,
        code: Option<i32>,
        uptime: Duration,
    ) -> Decision {
        if let Some(code) = code.filter(|code| self.stop_exit_codes.contains(code)) {
            return Decision::Stop(StopReason::ExitCode(code));
        }
        if self.max_restarts.is_some_and(|max| restarts.count >= max) {
            return Decision::Stop(StopReason::MaxRestarts(restarts.count));
        }
        let delay = if uptime < self.min_uptime {
            // An unstable restart (pm2's word): retried when anything says
            // how (a spin sleep, a backoff) or how often (a restart limit),
            // as pm2 does; given up only with none of them, as forever does.
            match (self.spin_sleep, self.backoff, self.max_restarts) {
                (Some(sleep), _, _) => sleep.max(MIN_SPIN_SLEEP),
                (None, Some(backoff), _) => backoff_delay(backoff, restarts, uptime),
                (None, None, Some(_)) => MIN_SPIN_SLEEP,
                (None, None, None) => return Decision::Stop(StopReason::Spinning { uptime }),
            }
        } else {
            match self.backoff {
                Some(backoff) => backoff_delay(backoff, restarts, uptime),
                None => Duration::ZERO,
            }
        };
        restarts.count += 1;
        Decision::Restart(delay)
    }

    /// Decides after the program could not be started at all: try again
    /// after the backoff, or else after `spin_sleep`; with neither, give
    /// up, unless the failure is `transient` (the system was out of
    /// descriptors, processes or memory, not the program missing): that is
    /// tried again after [`TRANSIENT_RETRY`], up to `max_restarts`.
    pub(crate) fn decide_failed_start(&self, restarts: &mut Restarts, transient: bool) -> Decision {
        if self.max_restarts.is_some_and(|max| restarts.count >= max) {
            return Decision::Stop(StopReason::MaxRestarts(restarts.count));
        }
        let delay = match (self.backoff, self.spin_sleep) {
            (Some(backoff), _) => backoff_delay(backoff, restarts, Duration::ZERO),
            (None, Some(sleep)) => sleep.max(MIN_SPIN_SLEEP),
            (None, None) if transient => TRANSIENT_RETRY,
            (None, None) => return Decision::Stop(StopReason::CannotStart),
        };
        restarts.count += 1;
        Decision::Restart(delay)
    }
}

/// The next backoff delay, the step moved on (reset by a long enough uptime).
fn backoff_delay(backoff: Backoff, restarts: &mut Restarts, uptime: Duration) -> Duration {
    if uptime >= backoff.reset_after {
        restarts.backoff_step = 0;
    }
    let factor = 1.5f64.powi(restarts.backoff_step.min(64) as i32);
    restarts.backoff_step += 1;
    // Saturating: a huge `initial` times 1.5^n is the cap, not a panic.
    Duration::try_from_secs_f64(backoff.initial.as_secs_f64() * factor)
        .unwrap_or(Duration::MAX)
        .min(backoff.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_spinning_child_is_given_up_or_restarted_after_spin_sleep() {
        let policy = Policy {
            min_uptime: 1000 * MS,
            ..Policy::default()
        };
        let mut restarts = Restarts::default();
        assert_eq!(
            policy.decide(&mut restarts, Some(1), 10 * MS),
            Decision::Stop(StopReason::Spinning { uptime: 10 * MS })
        );
        let policy = Policy {
            spin_sleep: Some(200 * MS),
            ..policy
        };
        assert_eq!(
            policy.decide(&mut restarts, Some(1), 10 * MS),
            Decision::Restart(200 * MS)
        );
        // `spin_sleep` 0 still waits the floor.
        let policy = Policy {
            spin_sleep: Some(Duration::ZERO),
            ..policy
        };
        assert_eq!(
            policy.decide(&mut restarts, Some(1), 10 * MS),
            Decision::Restart(MIN_SPIN_SLEEP)
        );
    }

    #[test]
    fn a_short_run_is_retried_under_the_backoff_up_to_the_limit() {
        // pm2's min_uptime: 5s, max_restarts: 10, exp_backoff_restart_delay: 100,
        // for an app that crashes 1 s in (a database down at boot).
        let policy = Policy {
            min_uptime: 5000 * MS,
            max_restarts: Some(10),
            backoff: Some(Backoff::new(100 * MS)),
            ..Policy::default()
        };
        let mut restarts = Restarts::default();
        let delays: Vec<Decision> = (0..3)
            .map(|_| policy.decide(&mut restarts, Some(1), 1000 * MS))
            .collect();
        assert_eq!(delays, [100, 150, 225].map(|ms| Decision::Restart(ms * MS)));
        for _ in 3..10 {
            assert!(matches!(
                policy.decide(&mut restarts, Some(1), 1000 * MS),
                Decision::Restart(_)
            ));
        }
        assert_eq!(
            policy.decide(&mut restarts, Some(1), 1000 * MS),
            Decision::Stop(StopReason::MaxRestarts(10))
        );
        // A restart limit alone retries after the floor.
        let limited = Policy {
            min_uptime: 5000 * MS,
            max_restarts: Some(1),
            ..Policy::default()
        };
        let mut restarts = Restarts::default();
        assert_eq!(
            limited.decide(&mut restarts, Some(1), 10 * MS),
            Decision::Restart(MIN_SPIN_SLEEP)
        );
        assert_eq!(
            limited.decide(&mut restarts, Some(1), 10 * MS),
            Decision::Stop(StopReason::MaxRestarts(1))
        );
    }

    #[test]
    fn a_failed_start_retries_after_the_backoff_or_spin_sleep_or_gives_up() {
        let mut restarts = Restarts::default();
        let plain = Policy::default();
        assert_eq!(
            plain.decide_failed_start(&mut restarts, false),
            Decision::Stop(StopReason::CannotStart)
        );
        // Out of descriptors is not the program's fault: tried again.
        assert_eq!(
            plain.decide_failed_start(&mut Restarts::default(), true),
            Decision::Restart(TRANSIENT_RETRY)
        );
        let sleepy = Policy {
            spin_sleep: Some(500 * MS),
            ..Policy::default()
        };
        assert_eq!(
            sleepy.decide_failed_start(&mut restarts, false),
            Decision::Restart(500 * MS)
        );
        let backoff = Policy {
            backoff: Some(Backoff::new(100 * MS)),
            max_restarts: Some(3),
            ..Policy::default()
        };
        assert_eq!(
            backoff.decide_failed_start(&mut restarts, false),
            Decision::Restart(100 * MS)
        );
        assert_eq!(
            backoff.decide_failed_start(&mut restarts, false),
            Decision::Restart(150 * MS)
        );
        assert_eq!(
            backoff.decide_failed_start(&mut restarts, false),
            Decision::Stop(StopReason::MaxRestarts(3))
        );
    }

    #[test]
    fn the_restart_limit_and_stop_codes_end_it() {
        let policy = Policy {
            min_uptime: MS,
            max_restarts: Some(2),
            stop_exit_codes: vec![0],
            ..Policy::default()
        };
        let mut restarts = Restarts::default();
        assert_eq!(
            policy.decide(&mut restarts, Some(0), 5 * MS),
            Decision::Stop(StopReason::ExitCode(0))
        );
        assert_eq!(
            policy.decide(&mut restarts, Some(1), 5 * MS),
            Decision::Restart(Duration::ZERO)
        );
        assert_eq!(
            policy.decide(&mut restarts, None, 5 * MS),
            Decision::Restart(Duration::ZERO)
        );
        assert_eq!(
            policy.decide(&mut restarts, Some(1), 5 * MS),
            Decision::Stop(StopReason::MaxRestarts(2))
        );
    }

    #[test]
    fn backoff_grows_by_half_is_capped_and_resets_after_a_stable_run() {
        let backoff = Backoff::new(100 * MS).max(300 * MS).reset_after(1000 * MS);
        let policy = Policy {
            min_uptime: MS,
            backoff: Some(backoff),
            ..Policy::default()
        };
        let mut restarts = Restarts::default();
        let delays: Vec<Decision> = (0..4)
            .map(|_| policy.decide(&mut restarts, Some(1), 10 * MS))
            .collect();
        let expected = [100, 150, 225, 300].map(|ms| Decision::Restart(ms * MS));
        assert_eq!(delays, expected);
        assert_eq!(
            policy.decide(&mut restarts, Some(1), 2000 * MS),
            Decision::Restart(100 * MS)
        );
    }
}
