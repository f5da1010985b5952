//! Child processes for the scenarios: spawn, handshake, signal, watchdog, reap.
//!
//! A child is this test binary run again with `EXIT_HOOK_SCENARIO` naming the
//! scenario, so the scenario runs as the child's real `main`. Every child is
//! killed and reaped when its `Child` is dropped, and every wait has a
//! deadline: a hung child fails its test instead of hanging the suite.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The variable that tells the binary to run a scenario instead of the suite.
pub const SCENARIO: &str = "EXIT_HOOK_SCENARIO";

/// Gives the signals the suites send their default disposition in this
/// (driver) process, so the children inherit it. Started as a background
/// job of a non-interactive shell (`cargo test &` in a script), a process
/// inherits SIGINT and SIGQUIT ignored, under `nohup` SIGHUP; the crate
/// leaves such signals ignored, and the tests that send them would wait
/// out their watchdog. (The nohup test sets SIGHUP ignored itself.)
pub fn default_signal_dispositions() {
    for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
        // SAFETY: signal(2) with SIG_DFL, in the driver, before any child starts.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
}

/// How long any child may take to print a line or to exit before it is killed.
const WATCHDOG: Duration = Duration::from_secs(60);

pub struct Child {
    scenario: String,
    process: std::process::Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    /// stderr so far, as the reading thread appends it.
    stderr_text: Arc<Mutex<String>>,
    stderr: Option<JoinHandle<()>>,
    /// The child's stdin, for [`spawn_answering`](Self::spawn_answering).
    stdin: Option<ChildStdin>,
    /// When the last signal was sent (or the child spawned).
    since: Instant,
    reaped: bool,
}

/// What a finished child did.
pub struct Outcome {
    pub status: ExitStatus,
    /// Every stdout line, in order, `READY` included.
    pub stdout: Vec<String>,
    pub stderr: String,
    /// From the last signal sent (or the spawn) to the child's exit.
    pub elapsed: Duration,
}

impl Child {
    pub fn spawn(scenario: &str) -> Child {
        Self::spawn_with(
            Command::new(std::env::current_exe().expect("the test binary's path")),
            scenario,
        )
    }

    /// Runs `command` (any program) as the child.
    pub fn spawn_with(command: Command, scenario: &str) -> Child {
        Self::spawn_inner(command, scenario, false)
    }

    /// [`spawn_with`](Self::spawn_with), with a stdin the test writes
    /// ([`answer`](Self::answer)) and closes ([`close_stdin`](Self::close_stdin)).
    #[allow(dead_code, reason = "used by some of the suites sharing this harness")]
    pub fn spawn_answering(command: Command, scenario: &str) -> Child {
        Self::spawn_inner(command, scenario, true)
    }

    fn spawn_inner(mut command: Command, scenario: &str, answering: bool) -> Child {
        let mut process = command
            .env(SCENARIO, scenario)
            .stdin(if answering {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("spawning the {scenario} child: {err}"));
        let stdout = process.stdout.take().expect("piped stdout");
        let mut stderr = process.stderr.take().expect("piped stderr");
        let (send, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let stderr = thread::spawn({
            let text = Arc::clone(&stderr_text);
            move || {
                let mut chunk = [0u8; 4096];
                while let Ok(read @ 1..) = stderr.read(&mut chunk) {
                    text.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..read]));
                }
            }
        });
        Child {
            scenario: scenario.to_owned(),
            stdin: process.stdin.take(),
            process,
            lines,
            seen: Vec::new(),
            stderr_text,
            stderr: Some(stderr),
            since: Instant::now(),
            reaped: false,
        }
    }

    pub fn pid(&self) -> i32 {
        self.process.id() as i32
    }

    /// Reads stdout until a line equal to `line` (the handshake).
    pub fn wait_for(mut self, line: &str) -> Self {
        self.wait_line(line, |got| got == line);
        self
    }

    /// Reads stdout until a line for which `matches` holds, and returns it;
    /// panics on a watchdog timeout or if stdout ends first. `what` names
    /// the line in the panic message.
    pub fn wait_line(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(got) => {
                    let done = matches(&got);
                    self.seen.push(got.clone());
                    if done {
                        return got;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: no {what:?} line within {WATCHDOG:?}; saw {:?}",
                        self.scenario, self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let outcome = self.finish_inner();
                    panic!(
                        "{}: stdout ended before {what:?}: {outcome:#?}",
                        self.scenario
                    )
                }
            }
        }
    }

    /// Reads stdout until a line for which `matches` holds and returns it, or
    /// `None` if stdout ends first or nothing matches within `within`.
    #[allow(
        dead_code,
        reason = "used by tests/fault_injection/, which shares this harness"
    )]
    pub fn try_wait_line(
        &mut self,
        within: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = self.lines.recv_timeout(left).ok()?;
            let done = matches(&got);
            self.seen.push(got.clone());
            if done {
                return Some(got);
            }
        }
    }

    /// Waits until the child's stderr so far satisfies `matches` (it need
    /// not end with a newline: a question waiting for its answer), and
    /// returns it; panics on a watchdog timeout or if the child exits first.
    #[allow(dead_code, reason = "used by some of the suites sharing this harness")]
    pub fn wait_stderr(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let text = self.stderr_text.lock().unwrap().clone();
            if matches(&text) {
                return text;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no {what:?} on stderr within {WATCHDOG:?}; saw {text:?}",
                    self.scenario
                );
            }
            if let Ok(Some(_)) = self.process.try_wait() {
                let outcome = self.finish_inner();
                panic!(
                    "{}: exited before {what:?} on stderr: {outcome:#?}",
                    self.scenario
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Writes `line` and a newline to the child's stdin
    /// ([`spawn_answering`](Self::spawn_answering)).
    #[allow(dead_code, reason = "used by some of the suites sharing this harness")]
    pub fn answer(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("a child spawned answering");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("writing the child's stdin");
    }

    /// Closes the child's stdin: it reads end-of-file.
    #[allow(dead_code, reason = "used by some of the suites sharing this harness")]
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The stdout lines read so far.
    #[allow(dead_code, reason = "used by some of the suites sharing this harness")]
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Waits for the `READY` line every waiting scenario prints.
    pub fn ready(self) -> Self {
        self.wait_for("READY")
    }

    /// Sends a real signal with kill(2).
    pub fn signal(mut self, signal: i32) -> Self {
        self.send(signal);
        self
    }

    /// [`signal`](Self::signal) for a borrowed child.
    pub fn send(&mut self, signal: i32) {
        self.since = Instant::now();
        // SAFETY: kill(2) with the pid of a child we have not reaped yet.
        let sent = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            sent,
            0,
            "kill({}, {signal}): {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the child to exit (the watchdog kills it after a minute and
    /// fails the test), then collects its output.
    pub fn finish(mut self) -> Outcome {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> Outcome {
        let deadline = Instant::now() + WATCHDOG;
        let status = loop {
            if let Some(status) = self.process.try_wait().expect("waitpid") {
                break status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{}: still running after {WATCHDOG:?}; stdout so far {:?}",
                    self.scenario, self.seen
                );
            }
            thread::sleep(Duration::from_millis(2));
        };
        let elapsed = self.since.elapsed();
        self.reaped = true;
        let mut stdout = std::mem::take(&mut self.seen);
        stdout.extend(self.lines.iter());
        if let Some(reader) = self.stderr.take() {
            let _ = reader.join();
        }
        let stderr = std::mem::take(&mut *self.stderr_text.lock().unwrap());
        Outcome {
            status,
            stdout,
            stderr,
            elapsed,
        }
    }

    fn kill(&mut self) {
        if !self.reaped {
            let _ = self.process.kill();
            let _ = self.process.wait();
            self.reaped = true;
        }
    }
}

/// Builds an example with `cargo build --example name` (in `profile`, or the
/// dev profile) and returns the path of its executable, as cargo reports it.
pub fn build_example(name: &str, profile: Option<&str>) -> String {
    build_example_with(name, profile, &[])
}

/// [`build_example`] with cargo features enabled.
pub fn build_example_with(name: &str, profile: Option<&str>, features: &[&str]) -> String {
    // The library's examples, whichever workspace crate's suite asks.
    let mut args = vec!["-p", "exit_hook", "--example", name];
    if let Some(profile) = profile {
        args.extend(["--profile", profile]);
    }
    let features = features.join(",");
    if !features.is_empty() {
        args.extend(["--features", &features]);
    }
    cargo_build(name, &args).unwrap_or_else(|err| panic!("building the {name} example: {err}"))
}

/// Runs `cargo build` on this package with `args` and returns the path of
/// the executable cargo built for the target `name`, as its JSON messages say.
pub fn cargo_build(name: &str, args: &[&str]) -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--message-format=json"])
        .args([
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("running cargo: {err}"))?;
    if !output.status.success() {
        return Err(format!("cargo build {} failed", args.join(" ")));
    }
    let messages = String::from_utf8_lossy(&output.stdout);
    let (target, key) = (format!("\"name\":\"{name}\""), "\"executable\":\"");
    messages
        .lines()
        .filter(|line| line.contains(&target))
        .find_map(|line| {
            let path = &line[line.find(key)? + key.len()..];
            Some(path[..path.find('"')?].to_owned())
        })
        .ok_or_else(|| format!("cargo reported no executable for {name}"))
}

/// The common case: spawn `scenario`, wait for `READY`, send SIGTERM, wait for the exit.
pub fn terminate(scenario: &str) -> Outcome {
    Child::spawn(scenario)
        .ready()
        .signal(libc::SIGTERM)
        .finish()
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Outcome {
    /// The stdout lines after `READY` (or all of them when there is none).
    pub fn after_ready(&self) -> Vec<&str> {
        let start = self
            .stdout
            .iter()
            .position(|l| l == "READY")
            .map_or(0, |i| i + 1);
        self.stdout[start..].iter().map(String::as_str).collect()
    }

    /// The stdout lines starting with `prefix`.
    pub fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// The stderr lines written by the crate itself.
    pub fn crate_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("exit_hook: "))
            .collect()
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        self.assert_status(format!("code={code}"))
    }

    /// The child died by `signal` (it did not exit).
    #[track_caller]
    #[allow(dead_code, reason = "used by some of the suites sharing this harness")]
    pub fn assert_signal(&self, signal: i32) -> &Self {
        self.assert_status(format!("signal={signal}"))
    }

    /// The status, as [`describe`] gives it, is `expected`.
    #[track_caller]
    fn assert_status(&self, expected: String) -> &Self {
        let got = describe(self.status);
        assert!(got == expected, "expected {expected}, got {got}: {self:#?}");
        self
    }

    /// The child took a time within `range` from the last signal sent (or
    /// its spawn) to its end. The bounds are generous: the machines are
    /// shared and noisy.
    #[track_caller]
    #[allow(dead_code, reason = "used by some of the suites sharing this harness")]
    pub fn assert_elapsed(
        &self,
        range: impl std::ops::RangeBounds<Duration> + std::fmt::Debug,
    ) -> &Self {
        assert!(
            range.contains(&self.elapsed),
            "took {:?}, not within {range:?}: {self:#?}",
            self.elapsed
        );
        self
    }
}

/// An exit status as `code=143` or `signal=15`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code={code}"),
        (None, Some(signal)) => format!("signal={signal}"),
        (None, None) => format!("{status}"),
    }
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("status", &format_args!("{}", describe(self.status)))
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("elapsed", &self.elapsed)
            .finish()
    }
}
