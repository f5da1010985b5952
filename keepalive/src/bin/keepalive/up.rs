//! `keepalive up`: every app of a config file, each an instance of its own.
//!
//! Each app runs as a child `keepalive run --name APP …` (the arguments its
//! table makes, from the file's directory): its own loop, reaper, stop hook
//! and control socket, so every `run` option and every control command
//! works per app, and one app's trouble is not another's. `up` itself
//! listens as the file's `name` (default: its directory's name) and keeps
//! the list of apps:
//!
//! - `keepalive status UP` lists the apps; `keepalive start APP` starts a
//!   stopped one again; `keepalive stop UP` stops them all;
//! - an app's keepalive that ends with a status (it was stopped, or it
//!   gave up) stays down until `start`; one killed by a signal (SIGKILL,
//!   the OOM killer) is started again after a second;
//! - when the last app ends, `up` exits with that app's status;
//! - SIGHUP reloads every app (as `keepalive reload UP`), SIGUSR1 has
//!   every app's keepalive reopen its log files (logrotate's postrotate;
//!   `keepalive reopen-logs UP`): what they mean to `run` and to the unit
//!   `systemd-unit` writes. A reload, a restart or a signal asked of the
//!   up's name is asked of every app;
//! - an app with `after = ["db"]` starts once every app it names is
//!   ready (every worker), and is stopped before them;
//! - SIGTERM or SIGINT stop `up` the way `run` stops: first no control
//!   request is taken (exit_hook's drain phase), then every app gets
//!   SIGTERM once and is waited for (the last phase, whose end is the
//!   deadline): those no running app starts after first, then the apps
//!   they started after, and so on; then `up` exits 128 + n. Each app's keepalive has the parent-death signal SIGTERM: a
//!   `up` killed by SIGKILL still has its apps stop gracefully.

use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use exit_hook::{Phase, Signal};
use keepalive::control::{Answer, Endpoint};
use keepalive::{AppStatus, Reply, Request, Status};
use signal_hook::consts::{SIGHUP, SIGUSR1};

use crate::config::{App, Config};

/// How long a reload asked of every app is waited for, app by app.
const RELOAD_WITHIN: Duration = Duration::from_secs(3600);

/// How long `apply` waits for an app it started to be ready.
const START_WITHIN: Duration = Duration::from_secs(60);

/// Waits until the app `name` answers with every worker ready.
fn wait_ready(name: &str, within: Duration) -> Result<(), String> {
    let until = Instant::now() + within;
    loop {
        if is_ready(name) {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!("{name} is not ready after {} s", within.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the app `name` answers with every worker (one at least) ready.
fn is_ready(name: &str) -> bool {
    keepalive::control::request(name, &Request::Status)
        .ok()
        .and_then(|reply| reply.status)
        .is_some_and(|status| crate::client::all_ready(&status))
}

/// How long after an app's keepalive was killed it is started again.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// `up`'s apps, shared by the control thread, the waiters and the stop hook.
struct Up {
    /// The file as `up` started (its apps are in `state`: `apply` changes them).
    config: Config,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    apps: Vec<Running>,
    /// The stop hook ran: nothing starts any more.
    stopping: bool,
}

/// An app and its keepalive, if running.
struct Running {
    app: App,
    pid: Option<u32>,
    last_exit: Option<String>,
    /// Taken out of the file (`apply`): not shown, never started again.
    retired: bool,
}

impl Running {
    fn of(app: App) -> Running {
        Running {
            app,
            pid: None,
            last_exit: None,
            retired: false,
        }
    }
}

/// Runs the apps of `config` until stopped; its exit status. `pid_file`,
/// written, is removed once the apps are stopped.
pub(crate) fn up(mut config: Config, pid_file: Option<std::path::PathBuf>) -> ExitCode {
    // Each app's keepalive's own deadline, and 2 s for up's own end.
    let deadline = crate::cli::own_deadline(
        config
            .apps
            .iter()
            .map(|app| app.run.kill_timeout)
            .max()
            .unwrap_or_default(),
    ) + Duration::from_secs(2);
    if let Err(err) = exit_hook::Builder::new()
        .timeout(deadline.min(exit_hook::Builder::MAX_TIMEOUT))
        .signals([Signal::terminate(), Signal::interrupt()])
        // Each app's keepalive gets one SIGTERM whatever comes after.
        .force_on_second_signal(false)
        .install()
    {
        say!("keepalive up: {err}");
        return ExitCode::FAILURE;
    }
    crate::say::flush_at_exit();
    let apps = std::mem::take(&mut config.apps);
    let count = apps.len();
    let up = Arc::new(Up {
        state: Mutex::new(State {
            apps: apps.into_iter().map(Running::of).collect(),
            stopping: false,
        }),
        config,
        changed: Condvar::new(),
    });
    let endpoint = match Endpoint::serve(&up.config.name, {
        let up = up.clone();
        move |request| up.answer(request)
    }) {
        Ok(endpoint) => Arc::new(endpoint),
        Err(err) => {
            say!(
                "keepalive up: cannot listen for control as {}: {err}",
                up.config.name
            );
            return ExitCode::FAILURE;
        }
    };
    // Its own shutdown, in exit_hook's phases: no more control requests,
    // then the apps, stopped and waited for.
    exit_hook::in_phase(Phase::Drain).add({
        let endpoint = endpoint.clone();
        move |_| endpoint.close()
    });
    // In the last phase: its end is the deadline, which the wait for the
    // apps is measured against.
    exit_hook::in_phase(Phase::Flush).add({
        let up = up.clone();
        move |exit| {
            up.stop_all(exit.deadline());
            if let Some(path) = pid_file {
                let _ = std::fs::remove_file(path);
            }
        }
    });
    say!(
        "keepalive up: {} with {} app(s), controlled as {}",
        up.config.dir.display(),
        count,
        endpoint.name()
    );
    let signals = signal_hook::iterator::Signals::new([SIGHUP, SIGUSR1]);
    for index in 0..count {
        // Each on its own thread: one waiting for its `after` apps holds
        // up no other.
        let _ = up.start_in_background(index);
    }
    match signals {
        // The waiters and exit_hook end the process.
        Ok(mut signals) => {
            for signal in signals.forever() {
                up.on_signal(signal);
            }
        }
        Err(err) => say!("keepalive up: SIGHUP and SIGUSR1 do nothing: {err}"),
    }
    loop {
        std::thread::park();
    }
}

impl Up {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the keepalive of app `index` on a thread of its own, which
    /// then waits for it (and starts it again after a kill): the thread
    /// that spawned a child lives as long as the child. The child's
    /// parent-death signal (`--up-app`) comes when that *thread* ends, not
    /// `up`: a child spawned by a thread that then returned would be sent
    /// SIGTERM as soon as it set the signal.
    fn start(self: &Arc<Self>, index: usize) -> Result<u32, String> {
        self.start_in_background(index)?
            .recv()
            .unwrap_or_else(|_| Err("the starting thread ended".to_owned()))
    }

    /// [`start`](Self::start), not waiting for the pid: where it will come.
    fn start_in_background(
        self: &Arc<Self>,
        index: usize,
    ) -> Result<std::sync::mpsc::Receiver<Result<u32, String>>, String> {
        let (started, pid) = std::sync::mpsc::channel();
        let up = self.clone();
        std::thread::Builder::new()
            .name(format!("keepalive-up-{}", self.lock().apps[index].app.name))
            .spawn(move || up.keep(index, &started))
            .map_err(|err| err.to_string())?;
        Ok(pid)
    }

    /// Waits until every app that app `index` starts after is ready
    /// (every worker); false if `up` stops first.
    fn wait_for_after(&self, index: usize) -> bool {
        let (name, after) = {
            let state = self.lock();
            let app = &state.apps[index].app;
            (app.name.clone(), app.after.clone())
        };
        for other in &after {
            let mut said = false;
            loop {
                if self.lock().stopping {
                    return false;
                }
                if is_ready(other) {
                    break;
                }
                if !std::mem::replace(&mut said, true) {
                    say!("keepalive up: {name} waits for {other} to be ready");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        true
    }

    /// The thread of app `index`: starts its keepalive, says the pid (or
    /// why not) through `started`, and [`wait`](Self::wait)s; while `wait`
    /// says to start it again, does so here.
    fn keep(self: Arc<Self>, index: usize, started: &std::sync::mpsc::Sender<Result<u32, String>>) {
        if !self.wait_for_after(index) {
            let _ = started.send(Err(format!("{} is stopping", self.config.name)));
            return;
        }
        let mut child = match self.spawn(index) {
            Ok(child) => {
                let _ = started.send(Ok(child.id()));
                child
            }
            Err(reason) => {
                let _ = started.send(Err(reason));
                return;
            }
        };
        loop {
            match self.wait(index, child) {
                Some(again) => child = again,
                None => return,
            }
        }
    }

    /// Spawns app `index`'s keepalive, unless `up` is stopping or it runs.
    fn spawn(&self, index: usize) -> Result<Child, String> {
        let mut state = self.lock();
        let name = state.apps[index].app.name.clone();
        if state.stopping {
            return Err(format!("{} is stopping", self.config.name));
        }
        if state.apps[index].retired {
            return Err(format!("{name} was taken out of the file"));
        }
        if let Some(pid) = state.apps[index].pid {
            return Err(format!("{name} is running (keepalive pid {pid})"));
        }
        let child = match self.command(&state.apps[index].app).spawn() {
            Ok(child) => child,
            Err(err) => {
                let reason = format!("cannot start keepalive for {name}: {err}");
                state.apps[index].last_exit = Some(reason.clone());
                drop(state);
                say!("keepalive up: {reason}");
                self.ended_one(None);
                return Err(reason);
            }
        };
        let pid = child.id();
        state.apps[index].pid = Some(pid);
        drop(state);
        say!("keepalive up: started {name} (pid {pid})");
        Ok(child)
    }

    /// `keepalive run` for `app`: this executable, from the file's
    /// directory, with the parent-death signal set (`--up-app`).
    fn command(&self, app: &App) -> Command {
        let exe = std::env::current_exe().unwrap_or_else(|_| "keepalive".into());
        let mut command = Command::new(exe);
        command
            .arg("run")
            .arg(format!("--up-app={}", std::process::id()))
            .args(&app.argv)
            .current_dir(&self.config.dir)
            .stdin(Stdio::null());
        command
    }

    /// Waits for app `index`'s keepalive to end, then decides: killed by
    /// a signal, it is started again (the new child is returned, for this
    /// thread to wait on); otherwise it stays down, and the last app down
    /// ends `up`.
    fn wait(&self, index: usize, mut child: Child) -> Option<Child> {
        // Seen ended, but not reaped yet: the stop hook, which signals under
        // the lock, cannot hit a reused pid.
        let _ = rustix::process::waitid(
            rustix::process::WaitId::Pid(
                rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid"),
            ),
            rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
        );
        let mut state = self.lock();
        let status = child.wait();
        state.apps[index].pid = None;
        let name = state.apps[index].app.name.clone();
        let shown = status
            .as_ref()
            .map_or_else(ToString::to_string, ToString::to_string);
        state.apps[index].last_exit = Some(shown.clone());
        let stopping = state.stopping || state.apps[index].retired;
        drop(state);
        self.changed.notify_all();
        if stopping {
            return None;
        }
        use std::os::unix::process::ExitStatusExt;
        if status.as_ref().is_ok_and(|s| s.signal().is_some()) {
            say!(
                "keepalive up: {name}'s keepalive was killed ({shown}); starting it again in {} s",
                RESTART_AFTER.as_secs()
            );
            std::thread::sleep(RESTART_AFTER);
            if let Ok(again) = self.spawn(index) {
                return Some(again);
            }
        } else {
            say!("keepalive up: {name} ended ({shown})");
        }
        self.ended_one(status.ok());
        None
    }

    /// When no app runs any more, `up` ends, with `status`'s code.
    fn ended_one(&self, status: Option<ExitStatus>) {
        let state = self.lock();
        if state.stopping || state.apps.iter().any(|app| app.pid.is_some()) {
            return;
        }
        drop(state);
        let code = status.and_then(|s| s.code()).unwrap_or(1);
        say!("keepalive up: no app runs any more; exiting {code}");
        exit_hook::exit(code);
    }

    /// SIGHUP: a reload of every app; SIGUSR1: every app's keepalive
    /// reopens its log files. Nothing once stopping.
    fn on_signal(&self, received: i32) {
        if self.lock().stopping {
            return;
        }
        if received == SIGHUP {
            say!("keepalive up: SIGHUP: reloading every app");
            if let Some(error) = self.ask_every_app(&Request::ReloadAndWait).error {
                say!("keepalive up: reload: {error}");
            }
        } else {
            let state = self.lock();
            for pid in state.apps.iter().filter_map(|app| app.pid) {
                let _ = signal(pid, rustix::process::Signal::USR1);
            }
        }
    }

    /// The stop hook: SIGTERM to every app's keepalive once, then waits
    /// for them until shortly before `deadline`, then kills what is left.
    fn stop_all(&self, deadline: Instant) {
        let mut state = self.lock();
        state.stopping = true;
        let until = deadline
            .checked_sub(Duration::from_millis(500))
            .unwrap_or(deadline);
        // Each app's name and what it starts after, as they are now.
        let apps: Vec<(String, Vec<String>)> = state
            .apps
            .iter()
            .map(|running| (running.app.name.clone(), running.app.after.clone()))
            .collect();
        let mut signalled = vec![false; apps.len()];
        // In waves: the running apps no running app starts after, each
        // asked once, waited for; then the next.
        loop {
            let running: Vec<usize> = (0..apps.len())
                .filter(|&i| state.apps[i].pid.is_some())
                .collect();
            if running.is_empty() || Instant::now() >= until {
                break;
            }
            let wave: Vec<usize> = running
                .iter()
                .copied()
                .filter(|&i| !running.iter().any(|&j| apps[j].1.contains(&apps[i].0)))
                .collect();
            // (`validate` refuses a cycle; were there one, all at once.)
            let wave = if wave.is_empty() { running } else { wave };
            for &i in &wave {
                if !std::mem::replace(&mut signalled[i], true) {
                    if let Some(pid) = state.apps[i].pid {
                        let _ = signal(pid, rustix::process::Signal::TERM);
                    }
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            state = self
                .changed
                .wait_timeout_while(state, left, |s| {
                    wave.iter().any(|&i| s.apps[i].pid.is_some())
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        for pid in state.apps.iter().filter_map(|app| app.pid) {
            // Its workers have keepalive's parent-death SIGKILL.
            let _ = signal(pid, rustix::process::Signal::KILL);
        }
    }

    /// A control request: `status`, `start APP`, `stop`; a reload, a
    /// restart or a signal goes to every app.
    fn answer(self: &Arc<Self>, request: Request) -> Answer {
        match request {
            Request::Status => {
                let mut reply = Reply::default();
                reply.status = Some(self.status());
                Answer::from(reply)
            }
            Request::Start { app } => {
                let Some(index) = self.index_of(&app) else {
                    return Answer::from(Reply::error(format!("no app named {app}")));
                };
                match self.start(index) {
                    Ok(_) => Answer::default(),
                    Err(err) => Answer::from(Reply::error(err)),
                }
            }
            Request::Stop => Answer {
                reply: Reply::default(),
                then_stop: true,
            },
            Request::Apply { file } => Answer::from(self.apply(&file)),
            // A reload, a restart or a signal of the `up` is one of every app.
            request @ (Request::Reload
            | Request::ReloadAndWait
            | Request::Restart
            | Request::RestartAndWait
            | Request::Signal { .. }) => Answer::from(self.ask_every_app(&request)),
            Request::Events => Answer::from(Reply::error(format!(
                "{} is a `keepalive up`: ask each app for its events (keepalive events APP)",
                self.config.name
            ))),
            other => Answer::from(Reply::error(format!(
                "{} is a `keepalive up`, which does not know this request: {other:?}",
                self.config.name
            ))),
        }
    }

    /// `keepalive apply`: the file read again and what changed done, app
    /// by app; answered once done, with what it did.
    fn apply(self: &Arc<Self>, file: &str) -> Reply {
        let config = match self.read_again(file) {
            Ok(config) => config,
            Err(err) => return Reply::error(err),
        };
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        // The apps taken out of the file: stopped, and gone, first.
        let removed: Vec<usize> = {
            let mut state = self.lock();
            let gone: Vec<usize> = (0..state.apps.len())
                .filter(|&i| {
                    let running = &state.apps[i];
                    !running.retired && !config.apps.iter().any(|app| app.name == running.app.name)
                })
                .collect();
            for &i in &gone {
                state.apps[i].retired = true;
            }
            gone
        };
        for index in removed {
            let name = self.lock().apps[index].app.name.clone();
            match self.stop_one(index) {
                Ok(()) => done.push(format!("removed {name} (stopped)")),
                Err(err) => failed.push(err),
            }
        }
        let mut started = Vec::new();
        for app in config.apps {
            let name = app.name.clone();
            let Some(index) = self.index_of(&name) else {
                started.push(self.add(app));
                done.push(format!("added {name}"));
                continue;
            };
            let old = self.lock().apps[index].app.argv.clone();
            if old == app.argv {
                continue;
            }
            let but_workers = |argv: &[std::ffi::OsString]| -> Vec<std::ffi::OsString> {
                argv.iter()
                    .filter(|arg| !arg.to_string_lossy().starts_with("--workers="))
                    .cloned()
                    .collect()
            };
            if but_workers(&old) == but_workers(&app.argv) {
                let workers = usize::from(app.run.workers);
                let request = Request::Scale { workers };
                match keepalive::control::request_within(&name, &request, RELOAD_WITHIN) {
                    Ok(Reply { error: None, .. }) => {
                        self.lock().apps[index].app = app;
                        done.push(format!("scaled {name} to {workers} worker(s)"));
                    }
                    Ok(Reply {
                        error: Some(err), ..
                    }) => failed.push(format!("{name}: {err}")),
                    Err(err) => failed.push(format!("{name}: {err}")),
                }
                continue;
            }
            // Other settings: a keepalive of its own runs them, started anew.
            self.lock().apps[index].retired = true;
            if let Err(err) = self.stop_one(index) {
                failed.push(err);
                continue;
            }
            started.push(self.add(app));
            done.push(format!("restarted {name} with its new settings"));
        }
        for name in started.into_iter().flatten() {
            if let Err(err) = wait_ready(&name, START_WITHIN) {
                failed.push(err);
            }
        }
        let mut reply = Reply::default();
        if !failed.is_empty() {
            reply.error = Some(failed.join("; "));
        }
        reply.note = Some(if done.is_empty() {
            "nothing changed".into()
        } else {
            done.join("; ")
        });
        reply
    }

    /// The app `name` of the file (not one taken out of it).
    fn index_of(&self, name: &str) -> Option<usize> {
        self.lock()
            .apps
            .iter()
            .position(|running| running.app.name == name && !running.retired)
    }

    /// The up's file, read again (`file`, the client's, must be it), with
    /// the environment set it started with: what it says, or why not.
    fn read_again(&self, file: &str) -> Result<Config, String> {
        if std::path::Path::new(file) != self.config.file {
            return Err(format!(
                "{} runs {}, not {file}",
                self.config.name,
                self.config.file.display()
            ));
        }
        let config = crate::config::load(&self.config.file).map_err(|problems| {
            let said: Vec<String> = problems
                .iter()
                .map(|p| format!("line {}: {}", p.line, p.message))
                .collect();
            format!("not applied: {}", said.join("; "))
        })?;
        let config = match &self.config.env_set {
            Some(set) => config
                .with_env_set(set)
                .map_err(|err| format!("not applied: {err}"))?,
            None => config,
        };
        if config.name != self.config.name {
            return Err(format!(
                "not applied: the file names the up {}, and this one is {}: start it anew",
                config.name, self.config.name
            ));
        }
        Ok(config)
    }

    /// A new app, started (once the apps it starts after are ready): its
    /// name, or `None` if it could not be.
    fn add(self: &Arc<Self>, app: App) -> Option<String> {
        let name = app.name.clone();
        let index = {
            let mut state = self.lock();
            state.apps.push(Running::of(app));
            state.apps.len() - 1
        };
        self.start_in_background(index).ok().map(|_| name)
    }

    /// Stops app `index`'s keepalive (SIGTERM, once) and waits until it is
    /// gone, up to its own deadline.
    fn stop_one(&self, index: usize) -> Result<(), String> {
        let mut state = self.lock();
        let name = state.apps[index].app.name.clone();
        let Some(pid) = state.apps[index].pid else {
            return Ok(());
        };
        let _ = signal(pid, rustix::process::Signal::TERM);
        let within = crate::cli::own_deadline(state.apps[index].app.run.kill_timeout)
            + Duration::from_secs(1);
        state = self
            .changed
            .wait_timeout_while(state, within, |s| s.apps[index].pid.is_some())
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        match state.apps[index].pid {
            None => Ok(()),
            Some(pid) => Err(format!("{name}'s keepalive (pid {pid}) has not ended")),
        }
    }

    /// Asks every running app's keepalive (an instance of its own, by the
    /// app's name) what the `up` was asked; the workers signalled, and
    /// what went wrong, app by app.
    fn ask_every_app(&self, request: &Request) -> Reply {
        let running: Vec<String> = {
            let state = self.lock();
            state
                .apps
                .iter()
                .filter(|running| running.pid.is_some() && !running.retired)
                .map(|running| running.app.name.clone())
                .collect()
        };
        if running.is_empty() {
            return Reply::error(format!("{}: no app runs", self.config.name));
        }
        let mut reply = Reply::default();
        let (mut failed, mut notes) = (Vec::new(), Vec::new());
        for app in running {
            let within = if matches!(request, Request::ReloadAndWait | Request::RestartAndWait) {
                RELOAD_WITHIN
            } else {
                keepalive::control::ANSWER_WITHIN
            };
            match keepalive::control::request_within(&app, request, within) {
                Ok(Reply {
                    error: Some(error), ..
                }) => failed.push(format!("{app}: {error}")),
                Ok(answer) => {
                    if let Some(pids) = answer.signalled {
                        reply.signalled.get_or_insert_with(Vec::new).extend(pids);
                    }
                    if let Some(note) = answer.note {
                        notes.push(format!("{app}: {note}"));
                    }
                }
                Err(err) => failed.push(format!("{app}: {err}")),
            }
        }
        if !failed.is_empty() {
            reply.error = Some(failed.join("; "));
        }
        if !notes.is_empty() {
            reply.note = Some(notes.join("; "));
        }
        reply
    }

    fn status(&self) -> Status {
        let state = self.lock();
        let mut status = Status::default();
        status.name = self.config.name.clone();
        status.pid = std::process::id();
        status.program = "keepalive up".into();
        status.cwd = self.config.dir.display().to_string();
        // What a unit (`keepalive systemd-unit`) runs to start it again:
        // this executable, `up` and the file, by absolute paths.
        status.argv = [
            std::env::current_exe()
                .map_or_else(|_| "keepalive".into(), |exe| exe.display().to_string()),
            "up".into(),
            "-f".into(),
            self.config.file.display().to_string(),
        ]
        .into();
        if let Some(set) = &self.config.env_set {
            status.argv.extend(["--env".to_owned(), set.clone()]);
        }
        status.apps = state
            .apps
            .iter()
            .filter(|running| !running.retired)
            .map(|running| {
                let mut shown = AppStatus::default();
                shown.name = running.app.name.clone();
                shown.state = if running.pid.is_some() {
                    "running"
                } else {
                    "stopped"
                }
                .into();
                shown.pid = running.pid;
                shown.last_exit = running.last_exit.clone();
                shown
            })
            .collect();
        status
    }
}

fn signal(pid: u32, signal: rustix::process::Signal) -> std::io::Result<()> {
    let pid = rustix::process::Pid::from_raw(pid as i32).ok_or(std::io::ErrorKind::InvalidInput)?;
    rustix::process::kill_process(pid, signal).map_err(Into::into)
}
