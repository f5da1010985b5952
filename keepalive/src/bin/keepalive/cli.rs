//! The command line (clap derive): `keepalive run [OPTIONS] -- PROGRAM
//! [ARGS]...`, and the same without `run`, as it always was.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keepalive::{Backoff, ListenAddr, Output, Supervisor};

/// keepalive's own deadline is the kill timeout and 2 s, within what
/// exit_hook accepts.
pub(crate) const MAX_KILL_TIMEOUT: Duration = Duration::from_secs(3598);
const _: () = assert!(MAX_KILL_TIMEOUT.as_secs() + 2 == exit_hook::Builder::MAX_TIMEOUT.as_secs());

/// keepalive's own `exit_hook` deadline for a kill timeout: the kill
/// timeout, as long again for the workers that say `EXTEND_TIMEOUT_USEC=`
/// while stopping (an `exit_hook` worker whose deadline is longer than the
/// kill timeout), and 2 s for the rest of the stop; at most the library's
/// hour. It is also what keepalive tells its own service manager it may
/// take (`EXTEND_TIMEOUT_USEC=` with its `STOPPING=1`).
pub(crate) fn own_deadline(kill_timeout: Duration) -> Duration {
    (kill_timeout * 2).min(MAX_KILL_TIMEOUT) + Duration::from_secs(2)
}

/// Keeps a program running: restarts it when it exits, stops it gracefully,
/// runs N workers on sockets it holds and replaces them one at a time.
#[derive(Debug, Parser)]
#[command(
    name = "keepalive",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "\
Durations: 500ms, 2s, 1m 30s (humantime), or a number of milliseconds; at
most 365 days (--kill-timeout: 3598s).

Exit status: 128+n when stopped by signal n; the program's code when it exits
with a --stop-exit-code; 1 when keepalive gives up; 2 for bad arguments. As
PID 1 (a container's init), the app's own status instead, as tini's."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `keepalive [OPTIONS] -- PROGRAM`: `run` without saying it.
    #[command(flatten)]
    run: Option<RunArgs>,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once, at start")]
pub(crate) enum Command {
    /// Runs PROGRAM in the foreground and keeps it running (the default).
    Run(RunArgs),
    /// Shows the workers of a running keepalive (every one, without NAME):
    /// pid, state, uptime, restarts, memory, CPU, how the last one ended.
    Status {
        /// The instance (`--name`, or the program's file name).
        name: Option<String>,
        /// JSON, one object per instance, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Replaces every worker of NAME, one at a time, each new one ready
    /// before the old one stops (as SIGHUP); waits until it is over and
    /// exits 1 with the reason if it failed (a new worker never ready: the
    /// old ones serve on). On a `keepalive up`, every app.
    Reload {
        /// The instance, an app, or a `keepalive up`.
        name: String,
        /// Returns once the reload is asked for, not when it is over.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stops NAME gracefully: every worker, then keepalive (as SIGTERM).
    /// An app of a `keepalive up` stops alone; the up ends with its last
    /// app, or at once when NAME is the up itself.
    Stop {
        /// The instance, an app, or a `keepalive up`.
        name: String,
        /// Returns once the stop is asked for, not when NAME has ended.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stops every worker of NAME gracefully, then starts them all again
    /// (the listeners stay bound: connections wait instead of failing);
    /// waits until every new worker is ready and exits 1 with the reason
    /// if one is not (it gave up, or missed the listen timeout). `reload`
    /// replaces them ready-first instead. On a `keepalive up`, every app.
    Restart {
        /// The instance, an app, or a `keepalive up`.
        name: String,
        /// Returns once the restart is asked for, not when it is over.
        #[arg(long)]
        no_wait: bool,
    },
    /// Runs N workers of NAME: new ones start (ready before it returns),
    /// or the last ones stop gracefully (gone before it returns); the
    /// others are left alone. Exits 1 with the reason if a new one is not
    /// ready within the listen timeout. pm2's scale.
    Scale {
        /// The instance, or an app of a `keepalive up`.
        name: String,
        /// How many workers (at least 1).
        #[arg(value_parser = clap::value_parser!(u16).range(1..))]
        workers: u16,
    },
    /// Starts the app NAME of a running `keepalive up` again, after a
    /// `stop NAME` or after it gave up.
    Start {
        /// The app.
        name: String,
    },
    /// Runs every app of a config file in this one process, each under
    /// its own name (every control command works on it), until stopped.
    /// Relative paths in the file are its directory's.
    #[command(after_help = CONFIG_HELP)]
    Up {
        #[command(flatten)]
        config: ConfigFile,
        /// Detaches: runs in the background, its own lines (and the apps'
        /// output not sent to log files) in a log file it names.
        #[arg(long)]
        daemon: bool,
        /// Run by `--daemon`: starts a session of its own.
        #[arg(long, hide = true)]
        detached: bool,
        /// Each app's environment set NAME (its `env_NAME` table, pm2's
        /// env_production) over its own `env`.
        #[arg(long = "env", value_name = "NAME")]
        env_set: Option<String>,
        /// Writes up's own pid to FILE (what logrotate or a script signals:
        /// SIGHUP reloads every app, SIGUSR1 reopens their log files).
        #[arg(long, value_name = "FILE")]
        pid_file: Option<std::path::PathBuf>,
    },
    /// Reopens NAME's log files (after logrotate moved them), as SIGUSR1 to
    /// keepalive does; on a `keepalive up`, every app's. The workers are not
    /// signalled: logrotate's postrotate runs this, not `signal NAME USR1`.
    ReopenLogs {
        /// The instance, an app, or a `keepalive up`.
        name: String,
    },
    /// Checks a config file: every error, with its line; exit 2 if any.
    #[command(after_help = CONFIG_HELP)]
    Validate {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Applies the edited config file to the running `keepalive up` of it:
    /// the apps added start, the apps removed stop gracefully, an app whose
    /// `workers` alone changed is scaled, one whose command, args, env,
    /// cwd or prefix changed is reloaded (both ready-first, no connection
    /// refused), one whose other settings changed is stopped and started
    /// with them; the others are left alone (the same pids). Says what it
    /// did; exits 1 if a change failed, 2 if the file has errors.
    Apply {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Prints a systemd unit that runs NAME as it runs now (its command
    /// line, its directory), as `pm2 startup` does: reload is a rolling
    /// reload, stop a graceful stop. Save it as /etc/systemd/system/NAME.service.
    SystemdUnit {
        /// The running instance.
        name: String,
    },
    /// Prints the last lines of NAME's log files (--stdout, --stderr,
    /// --log-dir), and with -f what they get from then on. On a `keepalive
    /// up`, every app's; without NAME, every instance's; each line then
    /// starts with its app's name (`web | `, `web:err | `).
    Logs {
        /// The instance, an app, or a `keepalive up`; every instance if left out.
        name: Option<String>,
        /// How many lines of each file.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 15)]
        lines: usize,
        /// Follows the files as they grow, through rotations (until Ctrl+C).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Empties NAME's log files (pm2's flush); on a `keepalive up`, every
    /// app's. (A rotation by size may then come early: keepalive counts
    /// what it wrote since it opened the file.)
    Flush {
        /// The instance, an app, or a `keepalive up`.
        name: String,
    },
    /// Prints NAME's events as they happen, one JSON object a line:
    /// started, ready, status, exited (code/signal), restarting, gave-up,
    /// reload-done, reload-failed, ...; ends when NAME ends.
    Events {
        /// The instance.
        name: String,
    },
    /// Sends SIG (TERM, SIGUSR1, 10, ...) to every worker of NAME.
    Signal {
        /// The instance.
        name: String,
        /// A signal's name or number (1 to 31).
        #[arg(value_parser = signal_number)]
        signal: i32,
    },
}

/// `-f FILE`, for `up` and `validate`.
#[derive(Debug, Args)]
pub(crate) struct ConfigFile {
    /// The config file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "keepalive.toml"
    )]
    pub(crate) file: std::path::PathBuf,
}

/// The config file, as `up --help` and `validate --help` show it.
pub(crate) const CONFIG_HELP: &str = "\
keepalive.toml: one [apps.NAME] table per app; its keys are `keepalive run`'s
long options (a true flag is the flag, a list repeats the option, a table is
--env K=V per entry), and `command` is the program:

    name = \"shop\"                  # what `keepalive up` is controlled as
    [apps.web]
    command = [\"./server\", \"--port\", \"0\"]  # or \"./server --port 0\": split as sh would
    args = [\"--verbose\"]           # more words after the command (pm2's args)
    workers = 2
    listen = [\"127.0.0.1:8080\"]
    wait-ready = true
    env = { RUST_LOG = \"info\" }
    env_production = { RUST_LOG = \"warn\" }  # `keepalive up --env production` (pm2's)

Each app is an instance of its own: `keepalive status web`, `reload web`,
`stop web`, `start web`; on the up's own name, `reload shop`, `restart
shop`, `signal shop SIG` and `reopen-logs shop` act on every app, and
`keepalive stop shop` stops them all.";

impl Cli {
    /// What to do: `run` for either form of it.
    pub(crate) fn into_command(self) -> Command {
        match (self.command, self.run) {
            (Some(command), _) => command,
            (None, Some(run)) => Command::Run(run),
            (None, None) => unreachable!("clap requires PROGRAM or a command"),
        }
    }

    #[cfg(test)]
    fn into_run(self) -> RunArgs {
        match self.into_command() {
            Command::Run(run) => run,
            other => panic!("not run: {other:?}"),
        }
    }
}

/// `500MB`, `1.5GB` (powers of 1000), `512MiB`, `1GiB` (of 1024), `4096`
/// or `4096B` (bytes). No crate of the field parses just this; it is a few
/// lines.
fn size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("not a size: {text} (say 500MB or 1GiB)")),
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("not a size: {text} (say 500MB or 1GiB)"))?;
    Ok((number * factor) as u64)
}

/// A glob pattern, checked.
fn glob_pattern(text: &str) -> Result<String, String> {
    glob::Pattern::new(text)
        .map(|_| text.to_owned())
        .map_err(|err| err.to_string())
}

/// `K=V`, K not empty.
fn env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("not K=V: {text}")),
    }
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number, one this
/// system has (1 to 31: 0 is no signal, and above are real-time ones).
fn signal_number(text: &str) -> Result<i32, String> {
    let number = match text.parse::<i32>() {
        Ok(number) => number,
        Err(_) => {
            let name = text.to_ascii_uppercase();
            let name = name.strip_prefix("SIG").unwrap_or(&name);
            SIGNALS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|&(_, number)| number)
                .ok_or_else(|| format!("not a signal: {text} (say TERM, HUP, USR1, or a number)"))?
        }
    };
    if !is_signal(number) {
        return Err(format!("not a signal: {text} (signals are 1 to 31)"));
    }
    Ok(number)
}

#[cfg(unix)]
fn is_signal(number: i32) -> bool {
    rustix::process::Signal::from_named_raw(number).is_some()
}

#[cfg(not(unix))]
fn is_signal(number: i32) -> bool {
    (1..=31).contains(&number)
}

/// The signal that asks a worker to stop: a signal that ends a process by
/// default, or that a server may take as "stop" (not STOP, CONT, CHLD,
/// WINCH, URG, or a terminal's TSTP, TTIN, TTOU, which end nothing).
fn kill_signal(text: &str) -> Result<i32, String> {
    let number = signal_number(text)?;
    #[cfg(unix)]
    if [
        libc::SIGSTOP,
        libc::SIGCONT,
        libc::SIGCHLD,
        libc::SIGWINCH,
        libc::SIGURG,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ]
    .contains(&number)
    {
        return Err(format!(
            "{text} does not stop a program (say TERM, INT, QUIT, HUP or USR2)"
        ));
    }
    Ok(number)
}

/// The signals a user sends to workers by name.
#[cfg(unix)]
const SIGNALS: [(&str, i32); 10] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("WINCH", libc::SIGWINCH),
];
#[cfg(not(unix))]
const SIGNALS: [(&str, i32); 0] = [];

/// Runs PROGRAM, restarts it when it exits, and stops it gracefully: on
/// SIGTERM or SIGINT the signal is forwarded to every worker once (their
/// own exit hooks run), and what is left after the kill timeout is killed.
/// On SIGHUP every worker is replaced, one at a time, by a new one started
/// from PROGRAM found again on PATH; the new one is ready before the old one
/// is stopped. Workers speak systemd's protocols: the --listen sockets are
/// descriptors 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID;
/// each worker gets a NOTIFY_SOCKET for READY=1, STOPPING=1 and STATUS=.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Run N copies sharing the listeners, each restarted on its own.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) workers: u16,
    /// Bind ADDR (127.0.0.1:8080, [::1]:8080, /path/to.sock) once and pass
    /// it to every worker, named NAME in LISTEN_FDNAMES. Repeatable.
    #[arg(long, value_name = "[NAME=]ADDR", value_parser = listen)]
    listen: Vec<(String, ListenAddr)>,
    /// A worker is ready when it says READY=1 (without it: once it has been
    /// up --min-uptime).
    #[arg(long)]
    wait_ready: bool,
    /// Reloads every worker (ready-first, as SIGHUP) at each time the cron
    /// PATTERN names, in local time: "0 3 * * *" (03:00 daily), or with
    /// seconds first. pm2's cron_restart, never a stop-and-start.
    #[arg(long, visible_alias = "cron-restart", value_name = "PATTERN")]
    cron_reload: Option<keepalive::Schedule>,
    /// Each worker gets a pipe at descriptor N (and KEEPALIVE_READY_FD=N)
    /// and is ready when it writes a newline to it: readiness without a
    /// library (s6's notification-fd). Implies --wait-ready.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(3..=255))]
    ready_fd: Option<i32>,
    /// Each worker gets its slot's index (0..N-1, stable across its
    /// restarts) in KEEPALIVE_WORKER and in NAME too (NODE_APP_INSTANCE).
    #[arg(long, value_name = "NAME")]
    worker_env: Option<String>,
    /// How long a new worker may take to be ready.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = duration)]
    listen_timeout: Duration,
    /// A run shorter than D is spinning: retried after --spin-sleep, or
    /// --backoff, up to --max-restarts; given up with none of them.
    #[arg(long, value_name = "D", default_value = "1s", value_parser = duration)]
    min_uptime: Duration,
    /// Restart a spinning program after D (at least 100ms) instead of giving up.
    #[arg(long, value_name = "D", value_parser = duration)]
    spin_sleep: Option<Duration>,
    /// Give up after N restarts.
    #[arg(long, value_name = "N")]
    max_restarts: Option<u32>,
    /// Wait D before a restart, x1.5 each restart, up to 15s.
    #[arg(long, value_name = "D", value_parser = duration)]
    backoff: Option<Duration>,
    /// Exit code N means: do not restart. Repeatable.
    #[arg(
        long = "stop-exit-code",
        value_name = "N",
        allow_negative_numbers = true
    )]
    stop_exit_codes: Vec<i32>,
    /// How long a stopping program may take before it is killed (at most 3598s).
    #[arg(long, value_name = "D", default_value = "15s", value_parser = kill_timeout)]
    pub(crate) kill_timeout: Duration,
    /// Prefix each line of the program's output with TEXT.
    #[arg(long, value_name = "TEXT")]
    prefix: Option<String>,
    /// The program's working directory.
    #[arg(long, value_name = "DIR")]
    cwd: Option<std::path::PathBuf>,
    /// Sets K to V in the program's environment. Repeatable.
    #[arg(long = "env", value_name = "K=V", value_parser = env_pair)]
    pub(crate) envs: Vec<(String, String)>,
    /// The signal that asks a worker to stop (default: the one that stops
    /// keepalive; SIGTERM for a reload).
    #[arg(long, value_name = "SIG", value_parser = kill_signal)]
    kill_signal: Option<i32>,
    /// Watches PATH (repeatable): a change replaces the workers the way a
    /// reload does, each new one ready before the old one stops.
    #[arg(long, value_name = "PATH")]
    watch: Vec<std::path::PathBuf>,
    /// Changes to paths matching GLOB (the path or one of its parts:
    /// *.log, target) change nothing; .git never does. Repeatable.
    #[arg(long, value_name = "GLOB", value_parser = glob_pattern)]
    watch_ignore: Vec<String>,
    /// How long changes are gathered into one reload.
    #[arg(long, value_name = "D", default_value = "500ms", value_parser = duration)]
    watch_debounce: Duration,
    /// systemd's watchdog: each worker gets WATCHDOG_USEC; one that has not
    /// said WATCHDOG=1 for D is replaced, the new one ready first.
    #[arg(long, value_name = "D", value_parser = duration)]
    watchdog: Option<Duration>,
    /// A worker whose resident memory passes SIZE (500MB, 1GiB; at least
    /// 1MB) is replaced, the new one ready first. MB is 10^6 bytes, MiB
    /// 2^20: pm2's `500M` is 500MiB.
    #[arg(long, value_name = "SIZE", value_parser = max_memory)]
    max_memory: Option<u64>,
    /// Checks the workers with GET URL (http://127.0.0.1:PORT/healthz)
    /// every --health-interval: after --health-fails failures in a row
    /// (not 2xx/3xx, no answer, refused) the workers are replaced, each new
    /// one ready first.
    #[arg(long, value_name = "URL")]
    health_url: Option<keepalive::HealthUrl>,
    /// How often --health-url is asked (each check may take as long, at
    /// most 10s).
    #[arg(long, value_name = "D", default_value = "5s", value_parser = health_interval)]
    health_interval: Duration,
    /// How many failed checks in a row make the workers unhealthy.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    health_fails: u32,
    /// Appends the workers' stdout to FILE (SIGUSR1 reopens it).
    #[arg(long = "stdout", value_name = "FILE")]
    stdout_file: Option<std::path::PathBuf>,
    /// Appends the workers' stderr to FILE (SIGUSR1 reopens it).
    #[arg(long = "stderr", value_name = "FILE")]
    stderr_file: Option<std::path::PathBuf>,
    /// Both streams into DIR: NAME-out.log and NAME-err.log (NAME: --name,
    /// or the program's file name), unless --stdout or --stderr says.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<std::path::PathBuf>,
    /// Rotates a log file before it passes SIZE (10MB, 1GiB; at least
    /// 4KiB): FILE becomes FILE.1, and so on; no line is lost or split.
    #[arg(long, value_name = "SIZE", value_parser = log_max_size)]
    log_max_size: Option<u64>,
    /// How many rotated files are kept (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    log_keep: u32,
    /// Starts each logged line with its time (RFC 3339, UTC).
    #[arg(long)]
    log_timestamps: bool,
    /// Writes keepalive's own pid to FILE (removed at exit): what to signal
    /// (HUP reloads, USR1 reopens the logs). pm2's pid_file holds the
    /// app's pid instead: the workers' pids are in `status --json`.
    #[arg(long, value_name = "FILE")]
    pub(crate) pid_file: Option<std::path::PathBuf>,
    /// The name other shells control it by (`keepalive status NAME`);
    /// default: the program's file name (with -2, -3, ... if taken). No
    /// '/', no leading '.', no control character.
    #[arg(long, value_name = "NAME", value_parser = instance_name)]
    pub(crate) name: Option<String>,
    /// The workers read keepalive's own stdin (default: /dev/null, so a
    /// worker that reads stdin is not stopped by the terminal, SIGTTIN).
    #[arg(long)]
    inherit_stdin: bool,
    /// Detaches: runs in the background, its own lines (and the workers'
    /// output not sent to log files) in a log file it names.
    #[arg(long)]
    pub(crate) daemon: bool,
    /// Run by `--daemon`: starts a session of its own.
    #[arg(long, hide = true)]
    pub(crate) detached: bool,
    /// The program and its arguments, after `--`.
    #[arg(value_name = "PROGRAM", required = true, num_args = 1.., last = true)]
    program: Vec<OsString>,
}

impl RunArgs {
    /// The program, as given.
    #[cfg_attr(
        not(unix),
        allow(dead_code, reason = "names are for the control socket")
    )]
    pub(crate) fn program(&self) -> &OsString {
        &self.program[0]
    }

    /// The supervisor these arguments describe (reloading on SIGHUP).
    pub(crate) fn supervisor(&self) -> Supervisor {
        let (program, args) = self.program.split_first().expect("clap requires PROGRAM");
        let mut supervisor = Supervisor::new(program)
            .args(args)
            .reload_on_hangup(true)
            .force_on_quit(true)
            .workers(self.workers.into())
            .wait_ready(self.wait_ready)
            .listen_timeout(self.listen_timeout)
            .min_uptime(self.min_uptime)
            .kill_timeout(self.kill_timeout)
            .stop_exit_codes(self.stop_exit_codes.iter().copied());
        for (name, addr) in &self.listen {
            supervisor = supervisor.listen_named(name, addr.clone());
        }
        if let Some(fd) = self.ready_fd {
            supervisor = supervisor.ready_fd(fd);
        }
        if let Some(schedule) = &self.cron_reload {
            supervisor = supervisor.reload_on(schedule.clone());
        }
        if let Some(name) = &self.worker_env {
            supervisor = supervisor.worker_env(name);
        }
        if let Some(sleep) = self.spin_sleep {
            supervisor = supervisor.spin_sleep(sleep);
        }
        if let Some(max) = self.max_restarts {
            supervisor = supervisor.max_restarts(max);
        }
        if let Some(initial) = self.backoff {
            supervisor = supervisor.backoff(Backoff::new(initial));
        }
        if let Some(prefix) = &self.prefix {
            supervisor = supervisor.output(Output::Prefixed(prefix.clone()));
        }
        if let Some(dir) = &self.cwd {
            supervisor = supervisor.current_dir(dir);
        }
        for (key, value) in &self.envs {
            supervisor = supervisor.env(key, value);
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| keepalive::default_name(std::path::Path::new(&self.program[0])));
        let in_dir = |stream: &str| {
            self.log_dir
                .as_ref()
                .map(|dir| dir.join(format!("{name}-{stream}.log")))
        };
        if let Some(path) = self.stdout_file.clone().or_else(|| in_dir("out")) {
            supervisor = supervisor.stdout_file(path);
        }
        if let Some(path) = self.stderr_file.clone().or_else(|| in_dir("err")) {
            supervisor = supervisor.stderr_file(path);
        }
        if let Some(max_size) = self.log_max_size {
            supervisor = supervisor.log_rotation(keepalive::Rotation {
                max_size,
                keep: self.log_keep,
            });
        }
        supervisor = supervisor
            .log_timestamps(self.log_timestamps)
            .inherit_stdin(self.inherit_stdin);
        for path in &self.watch {
            supervisor = supervisor.watch(path);
        }
        for pattern in &self.watch_ignore {
            supervisor = supervisor
                .watch_ignore(pattern)
                .expect("checked by the parser");
        }
        supervisor = supervisor.watch_debounce(self.watch_debounce);
        if let Some(every) = self.watchdog {
            supervisor = supervisor.watchdog(every);
        }
        if let Some(bytes) = self.max_memory {
            supervisor = supervisor.max_memory(bytes);
        }
        if let Some(url) = &self.health_url {
            supervisor = supervisor.health_check(keepalive::HealthCheck {
                url: url.clone(),
                interval: self.health_interval,
                fails: self.health_fails,
            });
        }
        if let Some(signal) = self.kill_signal {
            supervisor = supervisor.kill_signal(exit_hook::Signal::from_raw(signal));
        }
        supervisor
    }
}

/// Whether `run` has the option `--long` (hidden ones aside), and if so,
/// whether it takes a value (else it is a flag).
pub(crate) fn run_option(long: &str) -> Option<bool> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let run = cli.find_subcommand("run")?;
    run.get_arguments()
        .find(|arg| !arg.is_hide_set() && arg.get_long() == Some(long))
        .map(|arg| arg.get_action().takes_values())
}

/// `keepalive run ARGV`, parsed: clap's message on its first line, as the
/// config file reports it.
pub(crate) fn parse_run(argv: &[OsString]) -> Result<RunArgs, String> {
    let words = ["keepalive".into(), "run".into()]
        .into_iter()
        .chain(argv.iter().cloned());
    match Cli::try_parse_from(words).map(Cli::into_command) {
        Ok(Command::Run(run)) => Ok(run),
        Ok(_) => unreachable!("parsed as run"),
        Err(err) => {
            let text = err.to_string();
            let line = text.lines().next().unwrap_or_default();
            Err(line.strip_prefix("error: ").unwrap_or(line).to_owned())
        }
    }
}

/// The longest duration an option takes (`--kill-timeout` aside): a year.
/// Longer ones are mistakes, and past what the clock's arithmetic holds.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// `500ms`, `2s`, `1m 30s` (humantime), or a number of milliseconds; at
/// most [`MAX_DURATION`].
fn duration(text: &str) -> Result<Duration, String> {
    let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse()
            .map(Duration::from_millis)
            .map_err(|err| format!("{err}"))?
    } else {
        humantime::parse_duration(text).map_err(|err| format!("{err} (say 500ms, 2s or 1m 30s)"))?
    };
    if parsed > MAX_DURATION {
        return Err(format!("{text}: longer than 365 days"));
    }
    Ok(parsed)
}

/// `--max-memory`: a size of at least 1 MB (less would replace every worker
/// as it starts, again and again).
fn max_memory(text: &str) -> Result<u64, String> {
    at_least(
        text,
        1_000_000,
        "1MB: a program needs more than that to run",
    )
}

/// `--log-max-size`: at least 4 KiB (less would rotate at every line).
fn log_max_size(text: &str) -> Result<u64, String> {
    at_least(text, 4096, "4KiB")
}

fn at_least(text: &str, least: u64, said: &str) -> Result<u64, String> {
    let bytes = size(text)?;
    if bytes < least {
        return Err(format!("{text}: less than {said}"));
    }
    Ok(bytes)
}

/// `--name`: a name a socket file and a unit's line can have.
fn instance_name(text: &str) -> Result<String, String> {
    keepalive::check_name(text)?;
    Ok(text.to_owned())
}

fn health_interval(text: &str) -> Result<Duration, String> {
    let every = duration(text)?;
    if every < Duration::from_millis(100) {
        return Err("shorter than 100ms: a health check is not a busy loop".into());
    }
    Ok(every)
}

fn kill_timeout(text: &str) -> Result<Duration, String> {
    let timeout = duration(text)?;
    if timeout > MAX_KILL_TIMEOUT {
        return Err(format!(
            "longer than {}s (keepalive's own deadline is it and 2 s, at most exit_hook's hour)",
            MAX_KILL_TIMEOUT.as_secs()
        ));
    }
    Ok(timeout)
}

/// `[NAME=]ADDR`; the name defaults to `listener`.
fn listen(text: &str) -> Result<(String, ListenAddr), String> {
    let (name, addr) = match text.split_once('=') {
        Some((name, addr)) if !name.contains([':', '/']) => (name, addr),
        _ => ("listener", text),
    };
    let addr = addr.parse().map_err(|err| format!("{err}"))?;
    Ok((name.to_owned(), addr))
}

#[cfg(test)]
mod tests {
    /// The README's migration table speaks only of what exists: each
    /// `keepalive COMMAND` in its keepalive column is a command, each
    /// `--option` an option of `run` or of that command.
    #[test]
    fn the_migration_table_names_real_commands_and_options() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        let run = cli.find_subcommand("run").unwrap();
        let long = |command: &clap::Command| -> Vec<String> {
            command
                .get_arguments()
                .filter_map(|arg| arg.get_long_and_visible_aliases())
                .flatten()
                .map(|long| format!("--{long}"))
                .collect()
        };
        let readme = include_str!("../../../README.md");
        let table = readme
            .split("## Coming from pm2 or forever")
            .nth(1)
            .unwrap()
            .split("\n## ")
            .next()
            .unwrap();
        let mut checked = 0;
        for row in table.lines().filter(|l| l.starts_with("| ")) {
            let ours = row.rsplit(" | ").next().unwrap();
            let command = ours
                .split("`keepalive ")
                .nth(1)
                .and_then(|rest| rest.split([' ', '`']).next())
                .filter(|word| !word.starts_with('-'));
            if let Some(name) = command {
                assert!(
                    cli.find_subcommand(name).is_some(),
                    "no command `keepalive {name}`: {row}"
                );
            }
            // An option of `run` or of any command (a row may name two).
            let options: Vec<String> = std::iter::once(run)
                .chain(cli.get_subcommands())
                .flat_map(long)
                .collect();
            for word in ours.split(|c: char| c.is_whitespace() || c == '`' || c == '(') {
                let option = word.trim_end_matches([',', ')', ';', ':']);
                if option.starts_with("--") && option.len() > 2 {
                    let option = option.split('=').next().unwrap();
                    assert!(options.iter().any(|o| o == option), "no {option}: {row}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 30, "{checked} options checked");
    }

    use super::*;

    fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("keepalive").chain(args.iter().copied()))
            .map(Cli::into_run)
    }

    #[test]
    fn run_and_the_bare_form_are_the_same() {
        for args in [
            &["--workers", "2", "--", "server", "--port", "1"][..],
            &["run", "--workers", "2", "--", "server", "--port", "1"],
        ] {
            let run = parse(args).unwrap();
            assert_eq!(run.workers, 2, "{args:?}");
            assert_eq!(run.program, ["server", "--port", "1"], "{args:?}");
        }
    }

    #[test]
    fn durations_take_units_or_milliseconds() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("soon").unwrap_err().contains("say 500ms"));
        assert!(
            kill_timeout("3599s")
                .unwrap_err()
                .contains("longer than 3598s")
        );
        assert_eq!(kill_timeout("1h").ok(), None);
        assert_eq!(kill_timeout("59m 58s"), Ok(MAX_KILL_TIMEOUT));
    }

    #[test]
    fn listeners_are_named_or_not() {
        let (name, addr) = listen("web=127.0.0.1:80").unwrap();
        assert_eq!(
            (name.as_str(), addr.to_string().as_str()),
            ("web", "127.0.0.1:80")
        );
        assert_eq!(listen("[::1]:80").unwrap().0, "listener");
        assert_eq!(listen("/run/a=b.sock").unwrap().0, "listener");
        assert!(listen("nowhere").is_err());
    }

    #[test]
    fn process_options_parse() {
        let run = parse(&[
            "--cwd",
            "/srv",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
            "--kill-signal",
            "INT",
            "--pid-file",
            "/run/k.pid",
            "--",
            "server",
        ])
        .unwrap();
        assert_eq!(run.cwd.as_deref(), Some(std::path::Path::new("/srv")));
        assert_eq!(
            run.envs,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(run.kill_signal, Some(2));
        assert!(parse(&["--env", "=1", "--", "x"]).is_err());
        assert!(parse(&["--env", "A", "--", "x"]).is_err());
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(size("500MB"), Ok(500_000_000));
        assert_eq!(size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(size("512MiB"), Ok(512 << 20));
        assert_eq!(size("4096"), Ok(4096));
        assert!(size("lots").is_err());
        assert!(size("5XB").is_err());
    }

    #[test]
    fn signals_go_by_name_or_number() {
        assert_eq!(signal_number("TERM"), Ok(15));
        assert_eq!(signal_number("sigusr1"), Ok(10));
        assert_eq!(signal_number("9"), Ok(9));
        assert!(signal_number("SIGNOPE").is_err());
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &[][..],
            &["--workers", "0", "x"],
            &["--bogus", "x"],
            &["--min-uptime", "soon", "x"],
            &["--health-interval", "10ms", "--", "x"],
            &["--health-url", "https://a/", "--", "x"],
            &["--health-fails", "0", "--", "x"],
            &["--max-restarts", "-1", "x"],
            &["--"],
            // Without `--` a word is a command, and this one is none.
            &["server", "--port", "1"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }
}
