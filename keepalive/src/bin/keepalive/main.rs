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

#![deny(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use exit_hook::Signal;
use keepalive::StopReason;

/// Says a line on stderr without ever blocking: queued, written by a
/// thread of its own in one `write`, dropped and counted when nobody reads
/// (`say.rs`). Defined before the modules, which use it too.
macro_rules! say {
    ($($arg:tt)*) => {{
        $crate::say::line(format!($($arg)*));
    }};
}

mod cli;
#[cfg(unix)]
mod client;
mod config;
#[cfg(unix)]
mod daemon;
#[cfg(unix)]
mod logs;
mod say;
#[cfg(unix)]
mod up;

fn main() -> ExitCode {
    let code = command();
    say::flush(Duration::from_secs(1));
    code
}

fn command() -> ExitCode {
    // Bad arguments: clap's message and exit status 2.
    match cli::Cli::parse().into_command() {
        cli::Command::Run(run) => keep(&run),
        cli::Command::Validate { config } => validate(&config.file),
        #[cfg(unix)]
        cli::Command::Up {
            config: cli::ConfigFile { file },
            daemon,
            detached,
            env_set,
            pid_file,
        } => {
            if detached {
                daemon::leave_the_terminal();
            }
            let config = match config::load(&file) {
                Ok(config) => config,
                Err(problems) => return report(&file, &problems),
            };
            let config = match env_set {
                Some(set) => match config.with_env_set(&set) {
                    Ok(config) => config,
                    Err(err) => {
                        say!("keepalive up: {}: {err}", file.display());
                        return ExitCode::from(2);
                    }
                },
                None => config,
            };
            if daemon {
                return match daemon::log_path(&config.name) {
                    Ok(log) => daemon::detach(&log, &config.name, false),
                    Err(err) => {
                        say!("keepalive: {err}");
                        ExitCode::FAILURE
                    }
                };
            }
            if let Some(path) = &pid_file {
                if let Err(err) = write_pid_file(path) {
                    say!(
                        "keepalive up: cannot write the pid file {}: {err}",
                        path.display()
                    );
                    return ExitCode::FAILURE;
                }
            }
            up::up(config, pid_file)
        }
        #[cfg(unix)]
        other => client::command(other),
        #[cfg(not(unix))]
        _ => {
            say!(
                "keepalive: this command is Unix-only (on Windows, keepalive run keeps a program running)"
            );
            ExitCode::FAILURE
        }
    }
}

/// `keepalive validate`: every problem of the file with its line, exit 2
/// if there is one.
fn validate(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(config) => {
            let names: Vec<&str> = config.apps.iter().map(|app| app.name.as_str()).collect();
            println!(
                "{}: {} app(s), {}; `keepalive up` is controlled as {}",
                file.display(),
                names.len(),
                names.join(", "),
                config.name
            );
            ExitCode::SUCCESS
        }
        Err(problems) => report(file, &problems),
    }
}

/// A config file's problems, `FILE:LINE: message` each; exit 2, as for bad
/// arguments.
fn report(file: &std::path::Path, problems: &[config::Problem]) -> ExitCode {
    for problem in problems {
        match problem.line {
            0 => say!("{}: {}", file.display(), problem.message),
            line => say!("{}:{line}: {}", file.display(), problem.message),
        }
    }
    ExitCode::from(2)
}

/// `keepalive run`: supervises until stopped, then exits as the run says.
fn keep(run: &cli::RunArgs) -> ExitCode {
    #[cfg(unix)]
    {
        if run.detached {
            daemon::leave_the_terminal();
        }
        if run.daemon {
            let name = run
                .name
                .clone()
                .unwrap_or_else(|| keepalive::default_name(std::path::Path::new(run.program())));
            return match daemon::log_path(&name) {
                Ok(log) => daemon::detach(&log, &name, run.name.is_none()),
                Err(err) => {
                    say!("keepalive: {err}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    // The supervisor's own deadline leaves the command its kill timeout,
    // and up to as long again for workers that ask for more
    // (EXTEND_TIMEOUT_USEC=, see `cli::own_deadline`).
    // SIGHUP reloads the workers instead of stopping the supervisor. A
    // second stop signal does not force: systemd's SIGTERM and a Ctrl+C
    // would cut the workers' kill timeout short. SIGQUIT (Ctrl+\) forces
    // instead (`force_on_quit`).
    if let Err(err) = exit_hook::Builder::new()
        .timeout(cli::own_deadline(run.kill_timeout))
        .signals([Signal::terminate(), Signal::interrupt()])
        .force_on_second_signal(false)
        .install()
    {
        say!("keepalive: {err}");
        return ExitCode::FAILURE;
    }
    say::flush_at_exit();
    if let Some(path) = &run.pid_file {
        if let Err(err) = write_pid_file(path) {
            say!(
                "keepalive: cannot write the pid file {}: {err}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    // Last of keepalive's own shutdown, after the workers stopped: the pid
    // file removed, its own lines written out.
    let pid_file = run.pid_file.clone();
    let supervisor = run.supervisor().last_words(move || {
        if let Some(path) = pid_file {
            let _ = std::fs::remove_file(path);
        }
        say::flush(Duration::from_secs(1));
    });
    // A container's init (PID 1 of its namespace) ends with the app's
    // status, as tini and pm2-runtime do.
    let supervisor = supervisor.exit_as_workers(std::process::id() == 1);
    #[cfg(unix)]
    let supervisor = client::listen_for_control(run, supervisor);
    let code = match supervisor
        .on_event(move |event| say!("keepalive: {event}"))
        .run()
    {
        Ok(StopReason::ExitCode(code)) => code,
        Ok(StopReason::Stopped(_)) => loop {
            std::thread::park(); // exit_hook ends the process with 128 + n
        },
        Ok(_) => 1,
        Err(err) => {
            say!("keepalive: {err:#}"); // what failed, and why
            1
        }
    };
    exit_hook::exit(code)
}

/// Writes this process's pid to `path`, whole or not at all (a temporary
/// file beside it, renamed).
pub(crate) fn write_pid_file(path: &std::path::Path) -> std::io::Result<()> {
    let staged = path.with_extension("pid.new");
    std::fs::write(&staged, format!("{}\n", std::process::id()))?;
    std::fs::rename(&staged, path)
}
