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
        Command::Restart { name } => ask(&name, &Request::Restart).map(|_| ()),
        Command::Start { name } => start(&name),
        Command::Status { name, json } => status(name, json),
        Command::Reload { name } => ask(&name, &Request::Reload).map(|_| ()),
        Command::Stop { name } => ask(&name, &Request::Stop).map(|_| ()),
        Command::Logs {
            name,
            lines,
            follow,
        } => logs(&name, lines, follow),
        Command::Events { name } => events(&name),
        Command::SystemdUnit { name } => ask(&name, &Request::Status).map(|reply| {
            if let Some(status) = reply.status {
                print!("{}", systemd_unit(&status));
            }
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
fn ask(name: &str, request: &Request) -> Result<Reply, String> {
    let reply = control::request(name, request).map_err(|err| err.to_string())?;
    match reply.error {
        Some(error) => Err(format!("{name}: {error}")),
        None => Ok(reply),
    }
}

fn status(name: Option<String>, json: bool) -> Result<(), String> {
    let names = match name {
        Some(name) => vec![name],
        None => control::names(),
    };
    let mut statuses = Vec::new();
    for name in &names {
        match ask(name, &Request::Status) {
            Ok(reply) => statuses.extend(reply.status),
            // Listing every instance: a stale socket is no instance.
            Err(_) if names.len() > 1 => {}
            Err(err) => return Err(err),
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
    let owner = control::find(|status| status.apps.iter().any(|a| a.name == app));
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
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < until {
        if control::request(app, &Request::Status).is_ok() {
            println!("started {app}");
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(format!("{app} was started but does not answer yet"))
}

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
fn systemd_unit(status: &Status) -> String {
    let mut argv = status.argv.clone();
    if !argv
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
    format!(
        "[Unit]
Description={name}, kept running by keepalive
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec}
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory={cwd}
KillMode=mixed
SuccessExitStatus=143
Restart=on-failure

[Install]
WantedBy=multi-user.target
",
        name = status.name,
        exec = exec.join(" "),
        cwd = status.cwd,
    )
}

/// An argument as systemd's `ExecStart` reads it: quoted if it has a space,
/// a quote or a backslash; `$` and `%` escaped.
fn systemd_quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if escaped.is_empty() || escaped.contains([' ', '"', '\\', '\'', '\t']) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
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
fn events(name: &str) -> Result<(), String> {
    use std::io::BufRead;
    let stream = control::subscribe(name).map_err(|err| err.to_string())?;
    let mut out = std::io::stdout().lock();
    for line in stream.lines() {
        let Ok(line) = line else { break };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break; // nobody reads (`| head`)
        }
    }
    Ok(())
}

/// `keepalive logs NAME [-n N] [-f]`.
fn logs(name: &str, lines: usize, follow: bool) -> Result<(), String> {
    let status = ask(name, &Request::Status)?
        .status
        .ok_or_else(|| format!("{name}: no status"))?;
    let files: Vec<std::path::PathBuf> = [status.stdout_log, status.stderr_log]
        .into_iter()
        .flatten()
        .map(Into::into)
        .collect();
    if files.is_empty() {
        return Err(format!(
            "{name} writes no log files (run it with --stdout, --stderr or --log-dir)"
        ));
    }
    let mut out = std::io::stdout().lock();
    let mut followed = Vec::new();
    for file in &files {
        if files.len() > 1 {
            let _ = writeln!(out, "==> {} <==", file.display());
        }
        let text = std::fs::read(file).unwrap_or_default();
        let _ = out.write_all(last_lines(&text, lines));
        followed.push(Followed::at_end(file, text.len() as u64));
    }
    let _ = out.flush();
    if !follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        for file in &mut followed {
            let new = file.read_new();
            if !new.is_empty() && (out.write_all(&new).is_err() || out.flush().is_err()) {
                return Ok(()); // nobody reads any more
            }
        }
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body
        .iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == b'\n')
        .nth(n.saturating_sub(1))
        .map_or(0, |(at, _)| at + 1);
    if n == 0 { &[] } else { &text[start..] }
}

/// A log file followed: a rotation (another file at the path, or a shorter
/// one) is read from its start.
struct Followed {
    path: std::path::PathBuf,
    id: Option<(u64, u64)>,
    offset: u64,
}

impl Followed {
    fn at_end(path: &Path, offset: u64) -> Followed {
        Followed {
            path: path.to_owned(),
            id: Self::id(path),
            offset,
        }
    }

    fn id(path: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }

    fn read_new(&mut self) -> Vec<u8> {
        use std::io::{Read, Seek, SeekFrom};
        let id = Self::id(&self.path);
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if id != self.id || len < self.offset {
            self.id = id;
            self.offset = 0;
        }
        let mut new = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            if file.seek(SeekFrom::Start(self.offset)).is_ok() {
                let _ = file.read_to_end(&mut new);
            }
        }
        self.offset += new.len() as u64;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn the_last_lines_of_a_text() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
    }
}
