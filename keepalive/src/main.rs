//! `keepalive`: runs a command, restarts it when it exits, and stops it
//! gracefully. The command line of the [`keepalive`] library.
//!
//! ```text
//! cargo install --path keepalive
//! keepalive --min-uptime 1s --max-restarts 5 --kill-timeout 5s -- my-server --port 8080
//! ```
//!
//! ```text
//! keepalive --workers 2 --listen 127.0.0.1:8080 --wait-ready -- my-server
//! kill -HUP <keepalive's pid>     # replace both workers, one at a time
//! ```
//!
//! `keepalive --help` lists the options. It prints what it does on stderr
//! (`keepalive: started pid …`, `restarting in … ms`); a stderr that cannot
//! be written (a closed pipe) loses those lines, never the service.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use exit_hook::Signal;
use keepalive::{Backoff, ListenAddr, Output, StopReason, Supervisor};

/// keepalive's own deadline is the kill timeout and 2 s, within what
/// exit_hook accepts.
const MAX_KILL_TIMEOUT: Duration = Duration::from_secs(3598);
const _: () = assert!(MAX_KILL_TIMEOUT.as_secs() + 2 == exit_hook::Builder::MAX_TIMEOUT.as_secs());

/// Writes a line to stderr in one `write`, so it does not mix with the
/// workers' output on the same stderr; a failed write (EPIPE, a full disk)
/// is ignored: keepalive's log must not take the service down. (Rust
/// ignores SIGPIPE, so such a write fails instead of killing the process.)
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

const USAGE: &str = "\
usage: keepalive [options] [--] <command> [args...]

Runs <command>, restarts it when it exits, and stops it gracefully: on
SIGTERM or SIGINT the signal is forwarded to the command (whose own exit
hooks run), and its process group is killed if it has not exited after the
kill timeout. On SIGHUP every worker is replaced, one at a time, by a new
one started from the command found again on PATH: the new one must be
ready before the old one is stopped, so no request is refused.

Workers speak systemd's protocols: the --listen sockets are passed as
descriptors 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID; each
worker gets a NOTIFY_SOCKET for READY=1, STOPPING=1 and STATUS=...

options (durations as 500ms, 2s or a number of milliseconds):
  --workers N          run N copies sharing the listeners (default 1)
  --listen [NAME=]ADDR bind ADDR (127.0.0.1:8080, [::1]:8080, /path/to.sock)
                       once and pass it to every worker (repeatable)
  --wait-ready         a worker is ready when it says READY=1
                       (without it: when it has been up --min-uptime)
  --listen-timeout D   how long a new worker may take to be ready (default 10s)
  --min-uptime D       a run shorter than D is spinning (default 1s)
  --spin-sleep D       restart a spinning command after D (at least 100ms)
                       instead of giving up
  --max-restarts N     give up after N restarts (default: no limit)
  --backoff D          wait D before a restart, x1.5 each restart, up to 15s
  --stop-exit-code N   exit code N means: do not restart (repeatable)
  --kill-timeout D     how long a stopping command may take (default 5s,
                       at most 3598s)
  --prefix TEXT        prefix each line of the command's output with TEXT
  -h, --help           print this help

exit status: 128+n when stopped by signal n; the command's code when it
exits with a --stop-exit-code; 1 when keepalive gives up; 2 for bad arguments.
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = match parse(&args) {
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(command)) => command,
        Err(message) => {
            say!("keepalive: {message}\n(keepalive --help lists the options)");
            return ExitCode::from(2);
        }
    };
    // The supervisor's own deadline leaves the command its kill timeout.
    // SIGHUP reloads the workers instead of stopping the supervisor.
    if let Err(err) = exit_hook::Builder::new()
        .timeout(command.kill_timeout + Duration::from_secs(2))
        .signals([Signal::terminate(), Signal::interrupt()])
        .install()
    {
        say!("keepalive: {err}");
        return ExitCode::FAILURE;
    }
    let code = match command
        .supervisor
        .on_event(|event| say!("keepalive: {event}"))
        .run()
    {
        Ok(StopReason::ExitCode(code)) => code,
        Ok(StopReason::Stopped(_)) => loop {
            std::thread::park(); // exit_hook ends the process with 128 + n
        },
        Ok(_) => 1,
        Err(err) => {
            say!("keepalive: {err}");
            1
        }
    };
    exit_hook::exit(code)
}

enum Parsed {
    Help,
    Run(Box<Command>),
}

/// The supervisor the arguments describe.
struct Command {
    supervisor: Supervisor,
    kill_timeout: Duration,
}

fn parse(args: &[OsString]) -> Result<Parsed, String> {
    let mut args = args.iter();
    let mut options: Vec<(&str, &str)> = Vec::new();
    let program = loop {
        let Some(arg) = args.next() else {
            return Err("no command given".into());
        };
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(Parsed::Help),
            Some("--") => break args.next().ok_or("no command given after --")?,
            Some(flag @ "--wait-ready") => options.push((flag, "")),
            Some(option) if option.starts_with('-') => {
                let value = args
                    .next()
                    .map(|value| value.to_str().ok_or(format!("{option}: not UTF-8")))
                    .transpose()?
                    .ok_or(format!("{option} needs a value"))?;
                options.push((option, value));
            }
            _ => break arg,
        }
    };
    let mut supervisor = Supervisor::new(program).args(args).reload_on_hangup(true);
    let mut kill_timeout = Duration::from_secs(5);
    let mut stop_exit_codes = Vec::new();
    for (option, value) in options {
        supervisor = match option {
            "--min-uptime" => supervisor.min_uptime(duration(option, value)?),
            "--spin-sleep" => supervisor.spin_sleep(duration(option, value)?),
            "--max-restarts" => supervisor.max_restarts(number(option, value)?),
            "--backoff" => supervisor.backoff(Backoff::new(duration(option, value)?)),
            "--stop-exit-code" => {
                stop_exit_codes.push(number(option, value)?);
                supervisor
            }
            "--prefix" => supervisor.output(Output::Prefixed(value.to_owned())),
            "--workers" => match number(option, value)? {
                0 => return Err("--workers: at least 1".into()),
                n => supervisor.workers(n),
            },
            "--listen" => {
                let (name, addr) = match value.split_once('=') {
                    Some((name, addr)) if !name.contains(':') => (name, addr),
                    _ => ("listener", value),
                };
                let addr: ListenAddr = addr.parse().map_err(|err| format!("--listen: {err}"))?;
                supervisor.listen_named(name, addr)
            }
            "--wait-ready" => supervisor.wait_ready(true),
            "--listen-timeout" => supervisor.listen_timeout(duration(option, value)?),
            "--kill-timeout" => {
                kill_timeout = duration(option, value)?;
                if kill_timeout > MAX_KILL_TIMEOUT {
                    return Err(format!(
                        "--kill-timeout: {value} is longer than {}s",
                        MAX_KILL_TIMEOUT.as_secs()
                    ));
                }
                supervisor.kill_timeout(kill_timeout)
            }
            other => return Err(format!("unknown option {other}")),
        };
    }
    let supervisor = supervisor.stop_exit_codes(stop_exit_codes);
    Ok(Parsed::Run(Box::new(Command {
        supervisor,
        kill_timeout,
    })))
}

/// `500ms`, `2s`, or a number of milliseconds.
fn duration(option: &str, value: &str) -> Result<Duration, String> {
    let (number, unit) = match value.strip_suffix("ms") {
        Some(ms) => (ms, 1),
        None => value.strip_suffix('s').map_or((value, 1), |s| (s, 1000)),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .map(Duration::from_millis)
        .ok_or(format!(
            "{option}: not a duration: {value} (say 500ms or 2s)"
        ))
}

fn number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{option}: not a number: {value}"))
}
