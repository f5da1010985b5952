//! A forever-style keep-alive: runs a command, restarts it when it exits,
//! and stops it gracefully.
//!
//! ```text
//! cargo run --features supervisor --example keepalive -- \
//!     --min-uptime 1s --max-restarts 5 --kill-timeout 5s \
//!     cargo run --example 01_basic
//! ```
//!
//! The supervisor prints what it does on stderr (`keepalive: started pid …`,
//! `restarting in … ms`). Press Ctrl+C: it forwards SIGINT to the command,
//! whose own exit hooks run, waits up to the kill timeout, and exits 130.
//!
//! Options (durations as `500ms`, `2s` or milliseconds):
//! `--min-uptime D` (a run shorter than this is spinning; default 1s),
//! `--spin-sleep D` (restart a spinning command after D instead of giving up),
//! `--max-restarts N`, `--backoff D` (exponential backoff from D, ×1.5 each
//! restart, up to 15s), `--stop-exit-code N` (repeatable: do not restart),
//! `--kill-timeout D` (default 5s), `--prefix TEXT` (prefix the command's
//! output lines).
//!
//! Exit status: 128 + n when stopped by signal n; the command's code when it
//! exits with a `--stop-exit-code`; 1 when the supervisor gives up.

use std::ffi::OsString;
use std::time::Duration;

use exit_hook::supervisor::{Backoff, Output, StopReason, Supervisor};

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (supervisor, kill_timeout) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("keepalive: {message}\nusage: keepalive [options] <command> [args…]");
            std::process::exit(2);
        }
    };
    // The supervisor's own deadline leaves the child its kill timeout.
    if let Err(err) = exit_hook::Builder::new()
        .timeout(kill_timeout + Duration::from_secs(2))
        .install()
    {
        eprintln!("keepalive: {err}");
        std::process::exit(1);
    }
    let code = match supervisor
        .on_event(|event| eprintln!("keepalive: {event}"))
        .run()
    {
        Ok(StopReason::ExitCode(code)) => code,
        Ok(StopReason::Stopped(_)) => loop {
            std::thread::park(); // exit_hook ends the process with 128 + n
        },
        Ok(_) => 1,
        Err(err) => {
            eprintln!("keepalive: {err}");
            1
        }
    };
    exit_hook::exit(code);
}

/// The supervisor the options describe, and its kill timeout.
fn parse(args: &[OsString]) -> Result<(Supervisor, Duration), String> {
    let mut args = args.iter();
    let mut options: Vec<(String, String)> = Vec::new();
    let command = loop {
        let arg = args.next().ok_or("no command given")?;
        match arg.to_str() {
            Some(option) if option.starts_with("--") => {
                let value = args
                    .next()
                    .and_then(|v| v.to_str())
                    .ok_or(format!("{option} needs a value"))?;
                options.push((option.to_owned(), value.to_owned()));
            }
            _ => break arg,
        }
    };
    let mut supervisor = Supervisor::new(command).args(args);
    let mut kill_timeout = Duration::from_secs(5);
    for (option, value) in options {
        supervisor = match option.as_str() {
            "--min-uptime" => supervisor.min_uptime(duration(&value)?),
            "--spin-sleep" => supervisor.spin_sleep(duration(&value)?),
            "--max-restarts" => supervisor.max_restarts(number(&value)?),
            "--backoff" => supervisor.backoff(Backoff::new(duration(&value)?)),
            "--stop-exit-code" => supervisor.stop_exit_codes(vec![number(&value)?]),
            "--prefix" => supervisor.output(Output::Prefixed(value)),
            "--kill-timeout" => {
                kill_timeout = duration(&value)?;
                supervisor.kill_timeout(kill_timeout)
            }
            other => return Err(format!("unknown option {other}")),
        };
    }
    Ok((supervisor, kill_timeout))
}

fn duration(value: &str) -> Result<Duration, String> {
    let (number, unit) = match value.strip_suffix("ms") {
        Some(ms) => (ms, 1),
        None => value.strip_suffix('s').map_or((value, 1), |s| (s, 1000)),
    };
    number
        .parse::<u64>()
        .map(|n| Duration::from_millis(n * unit))
        .map_err(|_| format!("not a duration: {value}"))
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("not a number: {value}"))
}
