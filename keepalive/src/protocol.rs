//! What a client and a running supervisor say to each other over the
//! control socket: one JSON request, one JSON reply (serde).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A worker as the loop last saw it; the control socket turns it into a
/// [`WorkerStatus`] when asked, so the times are those of the asking.
#[derive(Clone, Debug)]
#[cfg_attr(not(unix), allow(dead_code, reason = "no control socket to show it"))]
pub(crate) struct Seen {
    pub(crate) slot: usize,
    pub(crate) pid: u32,
    pub(crate) started: Instant,
    /// It said `READY=1`.
    pub(crate) said_ready: bool,
    /// Ready without a word once up this long (no `wait_ready`).
    pub(crate) ready_after: Option<Duration>,
    /// Retiring, or the supervisor is stopping.
    pub(crate) stopping: bool,
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<String>,
}

#[cfg_attr(not(unix), allow(dead_code, reason = "no control socket to show it"))]
impl Seen {
    /// What `status` says of it now (memory and CPU: `usage`).
    pub(crate) fn status(&self, (rss_bytes, cpu_ms): (u64, u64)) -> WorkerStatus {
        let uptime = self.started.elapsed();
        let ready = self.said_ready || self.ready_after.is_some_and(|after| uptime >= after);
        let state = match (self.stopping, ready) {
            (true, _) => "stopping",
            (false, true) => "ready",
            (false, false) => "starting",
        };
        WorkerStatus {
            slot: self.slot,
            pid: self.pid,
            state: state.into(),
            uptime_ms: uptime.as_millis().try_into().unwrap_or(u64::MAX),
            restarts: self.restarts,
            rss_bytes,
            cpu_ms,
            last_exit: self.last_exit.clone(),
        }
    }
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Request {
    /// The workers and what they do.
    Status,
    /// A rolling reload, as SIGHUP (when the instance reloads on SIGHUP).
    Reload,
    /// A graceful stop of the whole instance, as SIGTERM.
    Stop,
    /// Sends `signal` (a number) to every worker.
    Signal {
        /// The signal's number.
        signal: i32,
    },
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reply {
    /// What went wrong, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The instance, for [`Request::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The workers a signal was sent to, for [`Request::Signal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signalled: Option<Vec<u32>>,
}

/// One instance, as `keepalive status --json` prints it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// The instance's name.
    pub name: String,
    /// keepalive's own pid.
    pub pid: u32,
    /// The program it runs.
    pub program: String,
    /// Every worker process, slot by slot (a reload shows two in a slot).
    pub workers: Vec<WorkerStatus>,
    /// The supervisor's own command line, as started (for
    /// `keepalive systemd-unit`).
    #[serde(default)]
    pub argv: Vec<String>,
    /// Its working directory.
    #[serde(default)]
    pub cwd: String,
}

/// One worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// Which of the workers (0 for the first).
    pub slot: usize,
    /// Its process id.
    pub pid: u32,
    /// `starting` (not ready yet), `ready`, or `stopping`.
    pub state: String,
    /// How long it has run, in milliseconds.
    pub uptime_ms: u64,
    /// Its slot's restarts so far.
    pub restarts: u32,
    /// Its resident memory, in bytes (Linux; 0 elsewhere).
    pub rss_bytes: u64,
    /// The CPU time it used, in milliseconds (Linux; 0 elsewhere).
    pub cpu_ms: u64,
    /// How the slot's previous worker ended (`exit status: 1`,
    /// `signal: 9 (SIGKILL)`), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_json_lines() {
        let text = serde_json::to_string(&Request::Signal { signal: 10 }).unwrap();
        assert_eq!(text, r#"{"command":"signal","signal":10}"#);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"command":"status"}"#).unwrap(),
            Request::Status
        );
        let reply = serde_json::to_string(&Reply::default()).unwrap();
        assert_eq!(reply, "{}");
    }
}
