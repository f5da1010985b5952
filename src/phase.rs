//! [`Phase`]: the ordered steps of a run.

use std::fmt;

/// A step of the shutdown run. The run goes through the phases in order:
/// every hook of one phase has finished (or passed its
/// [time limit](crate::HookBuilder::time_limit)) before the hooks of the
/// next phase start. Within a phase, hooks run as they always do: in
/// registration order, sync hooks one after another, async hooks
/// concurrently.
///
/// One deadline bounds the whole run, and each phase has its share of it,
/// so that a stuck step cannot keep the later ones from running: the drain
/// must be over at its [timeout](crate::Builder::drain_timeout) (3/5 of
/// the deadline by default), cleanup a third of the way through the time
/// left, close two thirds, flush at the deadline. A phase over early leaves
/// its time to the next. A phase still going at its end, with hooks of a
/// later phase waiting, is left behind (its hooks as at a time limit) and
/// the run goes on. With nothing later to run, a phase may use the time up
/// to the deadline.
///
/// The phases are named after what a service does while it stops, so that
/// each hook can be registered where its resource is made, in any order,
/// and still run at the right time:
///
/// ```
/// use exit_hook::Phase;
///
/// // Made first, flushed last.
/// exit_hook::in_phase(Phase::Flush).add(|_| eprintln!("log flushed"));
/// // Closed once nothing uses it any more.
/// exit_hook::in_phase(Phase::Close).add_async(|_| async { eprintln!("pool closed") });
/// // Made last, stopped first.
/// exit_hook::in_phase(Phase::Drain).add_async(|_| async { eprintln!("server drained") });
/// // On SIGTERM: "server drained", "pool closed", "log flushed".
/// ```
///
/// [`add`](crate::add) and [`add_async`](crate::add_async) register in
/// [`Phase::Cleanup`]; an application that never names a phase has one
/// step, as if phases did not exist.
///
/// [`ExitGuard`](crate::ExitGuard)s hold the run at the end of
/// [`Phase::Drain`]: the later phases start once every guard is released,
/// or when the drain's time is up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Stop taking new work and finish the work in flight: a server's
    /// graceful shutdown, a queue consumer, background jobs. Application code
    /// holding an [`ExitGuard`](crate::ExitGuard) belongs here too.
    Drain,
    /// The default: cleanup that may still use the application's resources
    /// (write the state to the database, deregister from discovery, remove a
    /// temp file).
    #[default]
    Cleanup,
    /// Close what the work used: database pools, connections, channels.
    Close,
    /// Last: flush logs, metrics and traces, so that they record everything
    /// the earlier phases did.
    Flush,
}

impl Phase {
    /// Every phase, in the order a run goes through them.
    pub const ALL: [Phase; 4] = [Phase::Drain, Phase::Cleanup, Phase::Close, Phase::Flush];

    /// The phase's name in lower case, as reports write it.
    ///
    /// ```
    /// assert_eq!(exit_hook::Phase::Drain.name(), "drain");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Drain => "drain",
            Phase::Cleanup => "cleanup",
            Phase::Close => "close",
            Phase::Flush => "flush",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_ordered_as_a_run_goes_through_them() {
        let mut sorted = Phase::ALL;
        sorted.sort();
        assert_eq!(sorted, Phase::ALL);
        assert_eq!(Phase::default(), Phase::Cleanup);
        assert!(Phase::Drain < Phase::Cleanup && Phase::Close < Phase::Flush);
    }
}
