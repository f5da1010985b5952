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
    pub(crate) status: Option<String>,
}

#[cfg_attr(not(unix), allow(dead_code, reason = "no control socket to show it"))]
impl Seen {
    /// Ready now: it said so, or (without `wait_ready`) it has been up long
    /// enough.
    pub(crate) fn is_ready(&self) -> bool {
        self.said_ready
            || self
                .ready_after
                .is_some_and(|after| self.started.elapsed() >= after)
    }

    /// What `status` says of it now (memory, CPU and whether the system
    /// stopped it: `usage`).
    pub(crate) fn status(&self, usage: Usage) -> WorkerStatus {
        let Usage {
            rss_bytes,
            cpu_ms,
            stopped,
        } = usage;
        let uptime = self.started.elapsed();
        let ready = self.is_ready();
        let state = match (self.stopping, stopped, ready) {
            (true, _, _) => "stopping",
            // SIGSTOP, or SIGTTIN/SIGTTOU from a terminal: it serves nothing.
            (false, true, _) => "stopped",
            (false, false, true) => "ready",
            (false, false, false) => "starting",
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
            status: self.status.clone(),
        }
    }
}

/// What the system says of a worker's process (Linux; zeros elsewhere).
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(not(unix), allow(dead_code, reason = "no control socket to show it"))]
pub(crate) struct Usage {
    pub(crate) rss_bytes: u64,
    pub(crate) cpu_ms: u64,
    /// Stopped by a signal (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
    pub(crate) stopped: bool,
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Request {
    /// The workers and what they do.
    Status,
    /// A rolling reload, as SIGHUP (when the instance reloads on SIGHUP);
    /// answered at once.
    Reload,
    /// A rolling reload, answered once it is over: an error says why it
    /// failed (a new worker never ready) or was abandoned (a restart, the
    /// instance stopping). Asked while a reload is going, it is answered
    /// by the one that runs after it (requests made meanwhile share it).
    ReloadAndWait,
    /// Every worker stopped gracefully, then started again (pm2's
    /// restart; a reload replaces them ready-first instead); answered at
    /// once.
    Restart,
    /// [`Restart`](Request::Restart), answered once it is over: every
    /// worker started again and ready; an error says which gave up, or
    /// that not all were ready within the listen timeout, or that the
    /// instance stopped first. A reload it abandons is said in the note.
    RestartAndWait,
    /// This many workers: new ones started (answered once they are
    /// ready), or the last ones stopped gracefully (answered once they are
    /// gone); the others are left alone. Waits for a reload or a restart
    /// going to end first.
    Scale {
        /// How many workers (at least 1).
        workers: usize,
    },
    /// A graceful stop of the whole instance, as SIGTERM.
    Stop,
    /// Every event from now on, one JSON line each, until the instance ends.
    Events,
    /// A `keepalive up` reads its file again and applies it: the apps
    /// added start, the apps removed stop gracefully, an app whose
    /// `workers` alone changed is scaled, one whose other settings changed
    /// is stopped and started with them; the others are left alone.
    /// Answered once done, with what it did in the note.
    Apply {
        /// The file the client read (the up's own, by absolute path).
        file: String,
    },
    /// Starts the app `app` of a `keepalive up` again.
    Start {
        /// The app's name.
        app: String,
    },
    /// Sends `signal` (a number) to every worker.
    Signal {
        /// The signal's number.
        signal: i32,
    },
}

/// The control protocol's version. A request says it (`"version": 1`;
/// one without says nothing else: the requests of the keepalive before
/// versions are version 1's), and so does every reply. An instance asked in
/// another version answers with an error that says both, and a client
/// answered in another refuses the answer.
pub const PROTOCOL: u32 = 1;

/// `request` as a client sends it: one JSON object, with the version.
#[cfg(unix)]
pub(crate) fn request_line(request: &Request) -> serde_json::Result<String> {
    let mut value = serde_json::to_value(request)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("version".into(), PROTOCOL.into());
    }
    serde_json::to_string(&value)
}

/// The request a line says, if it says it in this version.
#[cfg(unix)]
pub(crate) fn parse_request(text: &str) -> Result<Request, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| format!("not a request: {err}"))?;
    let version = match value
        .as_object_mut()
        .and_then(|fields| fields.remove("version"))
    {
        None => Some(1),
        Some(version) => version.as_u64(),
    };
    if version != Some(u64::from(PROTOCOL)) {
        let theirs = version.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
        let binary = std::env::current_exe()
            .map(|exe| format!(" ({})", exe.display()))
            .unwrap_or_default();
        return Err(format!(
            "this keepalive speaks control protocol {PROTOCOL}, the client protocol {theirs}: \
             ask it with the keepalive binary it runs{binary}"
        ));
    }
    serde_json::from_value(value).map_err(|err| format!("not a request: {err}"))
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reply {
    /// The protocol version it is said in ([`PROTOCOL`]); none from a
    /// keepalive before versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// What went wrong, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The instance, for [`Request::Status`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The workers a signal was sent to, for [`Request::Signal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signalled: Option<Vec<u32>>,
    /// What the request did besides what was asked (a restart that
    /// abandoned a reload in progress), for the client to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Reply {
    /// A reply that says what went wrong.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            error: Some(message.into()),
            ..Reply::default()
        }
    }
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
    /// Where the workers' stdout goes, if to a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_log: Option<String>,
    /// Where the workers' stderr goes, if to a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_log: Option<String>,
    /// For a `keepalive up`: its apps, each one an instance of its own
    /// while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppStatus>,
}

/// An app of a `keepalive up`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AppStatus {
    /// Its name (its table's in the config file).
    pub name: String,
    /// `running`, or `stopped` (it ended: asked to, or it gave up).
    pub state: String,
    /// Its keepalive's pid, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How its keepalive last ended (`exit status: 143`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

/// The note of a `Stop`'s reply from one app of a group: it was stopped
/// alone, and is when the reply comes (an instance of its own is stopped
/// once it has answered, its process gone when it is).
pub const STOPPED_ALONE: &str = "stopped alone: the other apps of its process run on";

/// What the control server knows of its instance besides the workers.
#[derive(Clone, Debug, Default)]
#[cfg(unix)]
pub(crate) struct About {
    pub(crate) program: String,
    pub(crate) stdout_log: Option<String>,
    pub(crate) stderr_log: Option<String>,
    /// The command line that runs it alone, if not this process's.
    pub(crate) argv: Option<Vec<String>>,
}

#[cfg(unix)]
/// An [`Event`](crate::Event) as `keepalive events` prints it: one JSON
/// object a line, `{"time": …, "event": "started", "pid": 42, "message": …}`.
pub(crate) fn event_json(event: &crate::Event) -> serde_json::Value {
    let mut fields = serde_json::to_value(event).unwrap_or_else(
        |err| serde_json::json!({ "event": "unserializable", "error": err.to_string() }),
    );
    fields["message"] = serde_json::json!(event.to_string());
    fields["time"] = serde_json::json!(
        humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
    );
    fields
}

/// One worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// Which of the workers (0 for the first).
    pub slot: usize,
    /// Its process id.
    pub pid: u32,
    /// `starting` (not ready yet), `ready`, `stopping`, or `stopped` (the
    /// process is stopped by a signal: SIGSTOP, or a terminal's SIGTTIN).
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
    /// What the worker last said with `STATUS=` on its notify socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events as `keepalive events` prints them, as the hand-kept writer
    /// that `Event`'s derived `Serialize` replaced wrote them (all 32 kinds
    /// compared when it was replaced; these pin the ones with renamed or
    /// converted fields).
    #[cfg(unix)]
    #[test]
    fn events_serialize_with_their_kind_and_converted_fields() {
        use crate::{Event as E, StopReason};
        use serde_json::json;
        use std::os::unix::process::ExitStatusExt;
        use std::time::Duration;
        let ms = Duration::from_millis;
        let cases = [
            (
                E::Exited {
                    pid: 7,
                    status: std::process::ExitStatus::from_raw(9),
                    uptime: ms(1500),
                },
                json!({"event": "exited", "pid": 7, "code": null, "signal": 9, "uptime_ms": 1500}),
            ),
            (
                E::Exited {
                    pid: 7,
                    status: std::process::ExitStatus::from_raw(3 << 8),
                    uptime: ms(2),
                },
                json!({"event": "exited", "pid": 7, "code": 3, "signal": null, "uptime_ms": 2}),
            ),
            (
                E::Restarting {
                    delay: ms(150),
                    restarts: 2,
                },
                json!({"event": "restarting", "delay_ms": 150, "restarts": 2}),
            ),
            (
                E::Stopping {
                    pid: 7,
                    signal: exit_hook::Signal::terminate(),
                },
                json!({"event": "stopping", "pid": 7, "signal": 15}),
            ),
            (
                E::Refused {
                    pid: 7,
                    sender: 8,
                    message: "READY=1".into(),
                },
                json!({"event": "refused", "pid": 7, "sender": 8, "said": "READY=1"}),
            ),
            (E::Scheduled, json!({"event": "scheduled-reload"})),
            (E::Reloaded, json!({"event": "reload-done"})),
            (
                E::GaveUp {
                    slot: 1,
                    reason: StopReason::MaxRestarts(3),
                },
                json!({"event": "gave-up", "slot": 1}),
            ),
            (
                E::Done(StopReason::Stopped(Some(exit_hook::Signal::terminate()))),
                json!({"event": "done"}),
            ),
        ];
        for (event, expected) in cases {
            let mut got = event_json(&event);
            let object = got.as_object_mut().unwrap();
            assert!(
                object.remove("time").is_some_and(|t| t.is_string()),
                "{event:?}"
            );
            assert_eq!(object.remove("message"), Some(json!(event.to_string())));
            assert_eq!(got, expected, "{event:?}");
        }
    }

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

    #[test]
    #[cfg(unix)]
    fn a_request_says_its_version_and_another_version_is_refused() {
        let line = request_line(&Request::ReloadAndWait).unwrap();
        assert_eq!(line, r#"{"command":"reload-and-wait","version":1}"#);
        assert_eq!(parse_request(&line), Ok(Request::ReloadAndWait));
        // Before versions: version 1's.
        assert_eq!(
            parse_request(r#"{"command":"status"}"#),
            Ok(Request::Status)
        );
        for other in [
            r#"{"command":"status","version":2}"#,
            r#"{"version":"x","command":"status"}"#,
        ] {
            let refused = parse_request(other).unwrap_err();
            assert!(
                refused
                    .starts_with("this keepalive speaks control protocol 1, the client protocol "),
                "{refused}"
            );
        }
        assert!(
            parse_request("{")
                .unwrap_err()
                .starts_with("not a request: ")
        );
    }
}
