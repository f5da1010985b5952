//! `keepalive status|reload|stop|signal NAME`: the client of a running
//! instance's control socket ([`keepalive::control`]).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use keepalive::control;
use keepalive::{Reply, Request, Status, Supervisor};

use crate::cli::{Command, RunArgs};

/// Runs a control command; `keepalive: no keepalive named NAME` and exit 1
/// when there is no such instance.
pub(crate) fn command(command: Command) -> ExitCode {
    let result = match command {
        Command::Run(_) | Command::Up { .. } | Command::Validate { .. } => {
            unreachable!("not a control command")
        }
        Command::Restart {
            name,
            no_wait: true,
        } => ask(&name, &Request::Restart).map(|reply| {
            if let Some(note) = reply.note {
                say!("keepalive: {name}: {note}");
            }
        }),
        Command::Restart { name, .. } => restart(&name),
        Command::Start { name } => start(&name),
        Command::Apply { config } => return apply(&config.file),
        Command::Scale { name, workers } => {
            let workers = usize::from(workers);
            let request = Request::Scale { workers };
            control::request_within(&name, &request, RELOAD_WITHIN)
                .map_err(|err| err.to_string())
                .and_then(|reply| match reply.error {
                    Some(error) => Err(format!("{name}: {error}")),
                    None => {
                        println!("scaled {name} to {workers} worker(s)");
                        Ok(())
                    }
                })
        }
        Command::Status { name, json } => status(name, json),
        Command::Reload {
            name,
            no_wait: true,
        } => ask(&name, &Request::Reload).map(|_| ()),
        Command::Reload { name, .. } => reload(&name),
        Command::Stop {
            name,
            no_wait: true,
        } => ask(&name, &Request::Stop).map(|_| ()),
        Command::Stop { name, .. } => stop(&name),
        Command::Logs {
            name,
            lines,
            follow,
        } => crate::logs::logs(name.as_deref(), lines, follow),
        Command::Flush { name } => crate::logs::flush(&name),
        Command::Events { name } => events(&name),
        Command::ReopenLogs { name } => reopen_logs(&name),
        Command::SystemdUnit { name } => ask(&name, &Request::Status).and_then(|reply| {
            let status = reply.status.ok_or_else(|| format!("{name}: no status"))?;
            print!("{}", systemd_unit(&status)?);
            Ok(())
        }),
        Command::Signal { name, signal } => ask(&name, &Request::Signal { signal }).map(|reply| {
            let pids = reply.signalled.unwrap_or_default();
            println!("sent signal {signal} to {} worker(s): {pids:?}", pids.len());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            say!("keepalive: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The reply to `request`, or what went wrong, said.
pub(crate) fn ask(name: &str, request: &Request) -> Result<Reply, String> {
    let reply = control::request(name, request).map_err(|err| err.to_string())?;
    match reply.error {
        Some(error) => Err(format!("{name}: {error}")),
        None => Ok(reply),
    }
}

fn status(name: Option<String>, json: bool) -> Result<(), String> {
    let mut statuses = Vec::new();
    match name {
        Some(name) => statuses.extend(ask(&name, &Request::Status)?.status),
        None => {
            for socket in control::instances().map_err(|err| err.to_string())? {
                match control::status_at(&socket, control::ANSWER_WITHIN) {
                    Ok(status) => statuses.push(status),
                    // A socket nobody accepts on is a killed instance's.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    // One that does not answer is said, and the others shown.
                    Err(err) => say!("keepalive: {err}"),
                }
            }
            if statuses.is_empty() {
                say!(
                    "keepalive: no keepalive runs as uid {} (each user sees only their own)",
                    rustix::process::geteuid().as_raw()
                );
            }
        }
    }
    if json {
        for status in &statuses {
            println!(
                "{}",
                serde_json::to_string(status).map_err(|e| e.to_string())?
            );
        }
    } else {
        print_table(&statuses);
    }
    Ok(())
}

/// `keepalive start APP`: asks the `keepalive up` that has APP to start it,
/// and returns once APP answers.
fn start(app: &str) -> Result<(), String> {
    if let Ok(reply) = control::request(app, &Request::Status) {
        if reply.status.is_some_and(|status| status.apps.is_empty()) {
            return Err(format!("{app} is running"));
        }
    }
    let owner = control::find(std::time::Duration::from_secs(2), |status| {
        status.apps.iter().any(|a| a.name == app)
    });
    let Some(owner) = owner else {
        return Err(format!(
            "no keepalive up has an app named {app} (`keepalive up -f FILE` runs one)"
        ));
    };
    ask(
        &owner,
        &Request::Start {
            app: app.to_owned(),
        },
    )?;
    // Started once every worker is ready; ended if it stops answering
    // after it did (it gave up).
    let until = std::time::Instant::now() + START_WITHIN;
    let mut answered = false;
    while std::time::Instant::now() < until {
        match control::request(app, &Request::Status) {
            Ok(Reply {
                status: Some(status),
                ..
            }) => {
                answered = true;
                if all_ready(&status) {
                    println!("started {app}");
                    return Ok(());
                }
            }
            _ if answered => {
                return Err(format!(
                    "{app} ended before its workers were ready (keepalive logs {app})"
                ));
            }
            _ => {}
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(format!(
        "{app} was started, but its workers are not ready after {} s",
        START_WITHIN.as_secs()
    ))
}

/// Whether `status` shows workers, every one ready.
pub(crate) fn all_ready(status: &Status) -> bool {
    !status.workers.is_empty() && status.workers.iter().all(|w| w.state == "ready")
}

/// How long `start` waits for the app's workers to be ready.
const START_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

fn print_table(statuses: &[Status]) {
    println!(
        "{:<16} {:>7} {:>4} {:>7} {:<8} {:>9} {:>8} {:>9} {:>9}  LAST EXIT",
        "NAME", "PID", "SLOT", "WORKER", "STATE", "UPTIME", "RESTARTS", "RSS", "CPU"
    );
    let running: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
    for status in statuses {
        // A `keepalive up`: the apps that do not show as instances.
        for app in &status.apps {
            if statuses.len() > 1 && running.contains(&app.name.as_str()) {
                continue;
            }
            println!(
                "{:<16} {:>7} {:>4} {:>7} {:<8} {:>9} {:>8} {:>9} {:>9}  {}",
                app.name,
                app.pid
                    .map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
                "-",
                "-",
                app.state,
                "-",
                "-",
                "-",
                "-",
                app.last_exit.as_deref().unwrap_or("-")
            );
        }
        for worker in &status.workers {
            println!(
                "{:<16} {:>7} {:>4} {:>7} {:<8} {:>9} {:>8} {:>9} {:>9}  {}",
                status.name,
                status.pid,
                worker.slot,
                worker.pid,
                worker.state,
                format!("{:.1}s", worker.uptime_ms as f64 / 1000.0),
                worker.restarts,
                format!("{:.1}MB", worker.rss_bytes as f64 / 1e6),
                format!("{}ms", worker.cpu_ms),
                worker.last_exit.as_deref().unwrap_or("-")
            );
        }
    }
}

/// A unit for systemd that runs `status`'s instance the way it runs now.
///
/// - `ExecStart`: keepalive's own command line, with its absolute path and
///   `--name` (so `keepalive status NAME` finds it under systemd too);
/// - `ExecReload`: SIGHUP, a rolling reload;
/// - `KillMode=mixed`: systemd's SIGTERM goes to keepalive alone, which
///   stops each worker once (the default `control-group` would signal every
///   worker too, and an `exit_hook` worker takes the second as "force");
/// - `SuccessExitStatus=143`: a stop by SIGTERM exits 143, which is success.
///
/// Every argument is quoted by systemd's rules ([`systemd_quote`]), so
/// the unit runs exactly the argv that ran; a working directory with a
/// control character is refused (it would end the line).
fn systemd_unit(status: &Status) -> Result<String, String> {
    if status.cwd.chars().any(char::is_control) || status.cwd.is_empty() {
        return Err(format!(
            "{}: its working directory {:?} cannot be written into a unit",
            status.name, status.cwd
        ));
    }
    let mut argv = status.argv.clone();
    let up = argv.get(1).is_some_and(|command| command == "up");
    if !up
        && !argv
            .iter()
            .any(|arg| arg == "--name" || arg.starts_with("--name="))
    {
        // After the program's `--` nothing is keepalive's: name it before.
        let at = argv
            .iter()
            .position(|arg| arg == "--")
            .unwrap_or(argv.len());
        argv.splice(at..at, ["--name".to_owned(), status.name.clone()]);
    }
    let exec: Vec<String> = argv.iter().map(|arg| systemd_quote(arg)).collect();
    let environment: String = environment_of(status.pid)
        .iter()
        .map(|entry| format!("Environment={}\n", systemd_quote_env(entry)))
        .collect();
    Ok(format!(
        "[Unit]
Description={name}, kept running by keepalive
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec}
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory={cwd}
{environment}KillMode=mixed
SuccessExitStatus=143
Restart=on-failure

[Install]
WantedBy=multi-user.target
",
        name = status.name.replace('%', "%%"),
        exec = exec.join(" "),
        cwd = status.cwd.replace('%', "%%"),
    ))
}

/// What a login session, a terminal or a service manager sets for its own
/// process, not the instance's: left out of a unit's `Environment=`.
/// (`XDG_RUNTIME_DIR` too: under systemd the instance's control socket is
/// where an instance outside a session has it, which `status` also looks
/// at from a login shell.)
const SESSION_VARS: &[&str] = &[
    "XDG_RUNTIME_DIR",
    "XDG_SESSION_ID",
    "XDG_SESSION_TYPE",
    "XDG_SESSION_CLASS",
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "SSH_CLIENT",
    "SSH_CONNECTION",
    "SSH_TTY",
    "SSH_AUTH_SOCK",
    "TERM",
    "COLORTERM",
    "LS_COLORS",
    "PWD",
    "OLDPWD",
    "SHLVL",
    "_",
    "MAIL",
    "MOTD_SHOWN",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "MANAGERPID",
    "SYSTEMD_EXEC_PID",
];

/// The environment the instance `pid` was started with (`/proc`, Linux;
/// this user's own processes), less [`SESSION_VARS`]: what its workers
/// inherit, so what the unit must give it.
fn environment_of(pid: u32) -> Vec<String> {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return Vec::new();
    };
    environ
        .split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter(|entry| {
            entry
                .split_once('=')
                .is_some_and(|(key, _)| !key.is_empty() && !SESSION_VARS.contains(&key))
        })
        .map(str::to_owned)
        .collect()
}

/// A `KEY=value` as systemd's `Environment=` reads it back: quoted as an
/// argument is, but `$` as it is (no variable is expanded there).
fn systemd_quote_env(entry: &str) -> String {
    systemd_quote(entry).replace("$$", "$")
}

/// An argument as systemd's `ExecStart=` reads it back exactly
/// (systemd.syntax(7), "Quoting"): `%` (a specifier) and `$` (a
/// variable) doubled; a word of only plain characters as it is; any
/// other in double quotes with C escapes (`\\`, `\"`, `\n`, `\xNN`), so
/// a newline cannot start a line of its own; a lone `;` (which would
/// separate commands) as `\;`.
fn systemd_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    let doubled = arg.replace('%', "%%").replace('$', "$$");
    if arg == ";" {
        return "\\;".into();
    }
    if !arg.is_empty() && arg.chars().all(|c| plain(c) || c == '$') {
        return doubled;
    }
    let mut quoted = String::from("\"");
    for c in doubled.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x80 => {
                quoted.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// How `run` listens for control: as `--name`, or as the program's file
/// name with `-2`, `-3`, ... when an instance of that name already runs.
pub(crate) fn listen_for_control(run: &RunArgs, supervisor: Supervisor) -> Supervisor {
    match &run.name {
        Some(name) => supervisor.control(name),
        None => supervisor.control_numbered(keepalive::default_name(Path::new(run.program()))),
    }
}

/// `keepalive events NAME`: the JSON lines, as they come.
/// A reload, waited for: "reloaded NAME", or why it failed.
fn reload(name: &str) -> Result<(), String> {
    let reply = control::request_within(name, &Request::ReloadAndWait, RELOAD_WITHIN)
        .map_err(|err| err.to_string())?;
    match reply.error {
        Some(error) => Err(format!("{name}: {error}")),
        None => {
            println!("reloaded {name}: every worker replaced");
            Ok(())
        }
    }
}

/// A restart, waited for: "restarted NAME", or why it failed; and the
/// reload it abandoned, if it did.
fn restart(name: &str) -> Result<(), String> {
    let reply = control::request_within(name, &Request::RestartAndWait, RELOAD_WITHIN)
        .map_err(|err| err.to_string())?;
    if let Some(note) = reply.note {
        say!("keepalive: {name}: {note}");
    }
    match reply.error {
        Some(error) => Err(format!("{name}: {error}")),
        None => {
            println!("restarted {name}: every worker started again and ready");
            Ok(())
        }
    }
}

/// `keepalive apply`: the file checked here (its errors said with their
/// lines, exit 2), then applied by the up it names; what it did, said.
fn apply(file: &Path) -> ExitCode {
    let config = match crate::config::load(file) {
        Ok(config) => config,
        Err(problems) => {
            for problem in problems {
                say!("{}:{}: {}", file.display(), problem.line, problem.message);
            }
            return ExitCode::from(2);
        }
    };
    let name = config.name.clone();
    let request = Request::Apply {
        file: config.file.display().to_string(),
    };
    let reply = match control::request_within(&name, &request, RELOAD_WITHIN) {
        Ok(reply) => reply,
        Err(err) => {
            say!("keepalive: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(note) = &reply.note {
        println!("applied {name}: {note}");
    }
    match reply.error {
        Some(error) => {
            say!("keepalive: {name}: {error}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// A stop, waited for: asked, then NAME's keepalive seen gone (its
/// workers stopped, and what they left): "stopped NAME".
fn stop(name: &str) -> Result<(), String> {
    let pid = ask(name, &Request::Status)?
        .status
        .map(|status| status.pid)
        .ok_or_else(|| format!("{name}: no status in the reply"))?;
    let reply = control::request_within(name, &Request::Stop, RELOAD_WITHIN)
        .map_err(|err| err.to_string())?;
    if let Some(error) = reply.error {
        return Err(format!("{name}: {error}"));
    }
    if reply.note.as_deref() == Some(keepalive::STOPPED_ALONE) {
        // One app of a `keepalive up`: stopped when it answers.
        println!("stopped {name}");
        return Ok(());
    }
    let until = std::time::Instant::now() + RELOAD_WITHIN;
    while !ended(pid) {
        if std::time::Instant::now() >= until {
            return Err(format!("{name} (pid {pid}) has not ended yet"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    println!("stopped {name}");
    Ok(())
}

/// Whether the process `pid` has ended: gone, or a zombie its parent has
/// not reaped yet.
fn ended(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    }
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    rustix::process::test_kill_process(pid).is_err()
}

/// How long `reload` and `restart` wait for their work to be over.
const RELOAD_WITHIN: std::time::Duration = std::time::Duration::from_secs(3600);

/// SIGUSR1 to NAME's keepalive (its pid from its status), which reopens
/// its log files; an `up` passes it to each app's.
fn reopen_logs(name: &str) -> Result<(), String> {
    let status = ask(name, &Request::Status)?
        .status
        .ok_or_else(|| format!("{name}: no status"))?;
    let pid = rustix::process::Pid::from_raw(status.pid as i32)
        .ok_or_else(|| format!("{name}: no pid"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::USR1)
        .map_err(|err| format!("{name} (pid {pid}): {err}"))?;
    println!("asked {name} (pid {pid}) to reopen its log files");
    Ok(())
}

fn events(name: &str) -> Result<(), String> {
    use std::io::BufRead;
    let stream = control::subscribe(name).map_err(|err| err.to_string())?;
    let mut out = std::io::stdout().lock();
    for line in stream.lines() {
        let Ok(line) = line else { break };
        // A refusal is a reply with its error, not an event: said, exit 1.
        if let Ok(Reply {
            error: Some(error), ..
        }) = serde_json::from_str::<Reply>(&line)
        {
            return Err(format!("{name}: {error}"));
        }
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // nobody reads (`| head`)
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::systemd_quote;

    #[test]
    fn arguments_are_quoted_as_systemd_reads_them() {
        assert_eq!(systemd_quote("--port=8080"), "--port=8080");
        assert_eq!(systemd_quote("50%"), "50%%");
        assert_eq!(systemd_quote("$HOME"), "$$HOME");
        assert_eq!(systemd_quote(""), "\"\"");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote(";"), "\\;");
        assert_eq!(systemd_quote("a;b"), "\"a;b\"");
        assert_eq!(
            systemd_quote("x\nExecStartPre=touch pwned"),
            "\"x\\nExecStartPre=touch pwned\""
        );
        assert_eq!(systemd_quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(systemd_quote("\u{1b}[0m"), "\"\\x1b[0m\"");
    }
}
