//! `keepalive up`: every app of a config file in this one process.
//!
//! The apps are a [`keepalive::Group`]: one loop and one reaper for every
//! app's workers, which are this process's children. Each app is what
//! `keepalive run` makes of the arguments its table makes, under its
//! own name and control socket, so every `run` option and every control
//! command works per app, and one app's trouble (a give-up, a crash loop,
//! a failed reload) is not another's. `up` itself listens as the file's
//! `name` (default: its directory's name) and keeps the list of apps:
//!
//! - `keepalive status UP` lists the apps; `keepalive stop APP` stops one
//!   alone, `keepalive start APP` starts a stopped one again;
//!   `keepalive stop UP` stops them all;
//! - an app that ends (stopped, or given up) stays down until `start`;
//!   when the last app ends, `up` exits with the status its `keepalive
//!   run` would have;
//! - SIGHUP reloads every app (as `keepalive reload UP`), SIGUSR1 reopens
//!   every app's log files (logrotate's postrotate; `keepalive
//!   reopen-logs UP`): what they mean to `run` and to the unit
//!   `systemd-unit` writes. A reload, a restart or a signal asked of the
//!   up's name is asked of every app;
//! - an app with `after = ["db"]` starts once every app it names is
//!   ready (every worker), and is stopped before them;
//! - `keepalive apply` reads the file again: an app taken out is stopped,
//!   one put in is started, one whose `workers` alone changed is scaled,
//!   one whose command, args, env, cwd or prefix changed is reloaded with
//!   them (ready-first; a failed reload gives it its old settings back),
//!   one whose other settings changed is started again with them;
//! - SIGTERM or SIGINT stop `up` the way `run` stops: first no control
//!   request is taken (exit_hook's drain phase), then every app's workers
//!   get their stop signal once and are waited for (the last phase, whose
//!   end is the deadline): those of the apps no running app starts after
//!   first, then those of the apps they started after, and so on; then
//!   `up` exits 128 + n. Killed by SIGKILL, it takes its workers with it,
//!   as `run` does (their parent-death signal).
//!
//! It runs from the file's directory, so that every relative path of the
//! file (a program, a log file, a watched path, a `cwd`) means that
//! directory, whoever starts it from where.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use exit_hook::{Phase, Signal};
use keepalive::control::{Answer, Endpoint};
use keepalive::{
    AppStatus, Event, Group, GroupHandle, Reply, Request, Status, StopReason, Supervisor,
};

use crate::config::{App, Config};

/// How long a reload asked of every app is waited for, app by app.
const RELOAD_WITHIN: Duration = Duration::from_secs(3600);

/// The options of an app's `run` arguments that a reload changes (with
/// its program and arguments, after `--`); `--workers` by a scale.
const RELOADABLE: &[&str] = &["--workers=", "--env=", "--cwd=", "--prefix="];

/// `argv`'s options (before `--`) but those starting with one of `except`.
fn but(argv: &[std::ffi::OsString], except: &[&str]) -> Vec<std::ffi::OsString> {
    argv.iter()
        .take_while(|arg| *arg != "--")
        .filter(|arg| {
            let arg = arg.to_string_lossy();
            !except.iter().any(|option| arg.starts_with(option))
        })
        .cloned()
        .collect()
}

/// How long `apply` waits for an app it started to be ready.
const START_WITHIN: Duration = Duration::from_secs(60);

/// Waits until the app `name` answers with every worker ready.
fn wait_ready(name: &str, within: Duration) -> Result<(), String> {
    let until = std::time::Instant::now() + within;
    loop {
        let ready = keepalive::control::request(name, &Request::Status)
            .ok()
            .and_then(|reply| reply.status)
            .is_some_and(|status| crate::client::all_ready(&status));
        if ready {
            return Ok(());
        }
        if std::time::Instant::now() >= until {
            return Err(format!("{name} is not ready after {} s", within.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `up`'s apps, shared by the control threads and the apps' listeners.
struct Up {
    /// The file as `up` started (its apps are in `apps`: `apply` changes
    /// them).
    config: Config,
    group: GroupHandle,
    apps: Mutex<Vec<Running>>,
    /// The status of the app that ended last.
    last_code: Mutex<Option<i32>>,
}

/// An app of the file, and whether it runs.
struct Running {
    app: App,
    running: bool,
    /// How it last ended: the status its own `keepalive run` would have
    /// exited with.
    last_exit: Option<String>,
    /// Taken out of the file (`apply`): not shown, never started again.
    retired: bool,
}

/// Runs the apps of `config` until stopped, or until each has ended; its
/// exit status. `pid_file`, written, is removed once the apps are stopped.
pub(crate) fn up(mut config: Config, pid_file: Option<std::path::PathBuf>) -> ExitCode {
    let _usr1 = match set_up(&mut config) {
        Ok(registered) => registered,
        Err(err) => {
            say!("keepalive up: {err}");
            return ExitCode::FAILURE;
        }
    };
    let apps = std::mem::take(&mut config.apps);
    let count = apps.len();
    let mut group = Group::new();
    let up = Arc::new(Up {
        group: group.handle(),
        apps: Mutex::new(Vec::with_capacity(count)),
        last_code: Mutex::new(None),
        config,
    });
    for app in apps {
        group = group.app(up.supervisor_of(&app));
        up.lock().push(Running {
            app,
            running: true,
            last_exit: None,
            retired: false,
        });
    }
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
    // No more control requests first; the pid file removed last, once
    // every app's workers are stopped.
    exit_hook::in_phase(Phase::Drain).add({
        let endpoint = endpoint.clone();
        move |_| endpoint.close()
    });
    let own_pid_file = pid_file.clone();
    let group = group.last_words(move || {
        if let Some(path) = &own_pid_file {
            let _ = std::fs::remove_file(path);
        }
    });
    for running in up.lock().iter() {
        Up::write_pid_file(&running.app);
    }
    say!(
        "keepalive up: {} with {} app(s), controlled as {}",
        up.config.dir.display(),
        count,
        endpoint.name()
    );
    let ran = group.run();
    up.end(ran, pid_file.as_deref())
}

/// What `up` sets up before its apps: it runs from the file's directory
/// (every relative path of the file means it), exit_hook stops it on
/// SIGTERM and SIGINT within the longest kill timeout's own deadline,
/// SIGUSR1 never ends it (the group reopens the apps' log files on it;
/// the registration returned, kept for the run).
fn set_up(config: &mut Config) -> Result<signal_hook::SigId, String> {
    absolute(config)
        .and_then(|()| std::env::set_current_dir(&config.dir))
        .map_err(|err| format!("cannot run from {}: {err}", config.dir.display()))?;
    // The longest kill timeout's own deadline, and 2 s for up's own end.
    let deadline = crate::cli::own_deadline(
        config
            .apps
            .iter()
            .map(|app| app.run.kill_timeout)
            .max()
            .unwrap_or_default(),
    ) + Duration::from_secs(2);
    exit_hook::Builder::new()
        .timeout(deadline.min(exit_hook::Builder::MAX_TIMEOUT))
        .signals([Signal::terminate(), Signal::interrupt()])
        // A second stop signal does not cut a worker's stop short (as `run`).
        .force_on_second_signal(false)
        .install()
        .map_err(|err| err.to_string())?;
    crate::say::flush_at_exit();
    signal_hook::flag::register(
        signal_hook::consts::SIGUSR1,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    )
    .map_err(|err| format!("cannot handle SIGUSR1: {err}"))
}

/// The file's path and directory, absolute: `up` runs from the directory.
fn absolute(config: &mut Config) -> std::io::Result<()> {
    config.file = std::path::absolute(&config.file)?;
    config.dir = std::path::absolute(&config.dir)?;
    Ok(())
}

/// The status `keepalive run` exits with for `reason`.
pub(crate) fn run_status(reason: StopReason) -> i32 {
    match reason {
        StopReason::Stopped(Some(signal)) => 128 + signal.as_raw(),
        StopReason::Stopped(None) => 0,
        StopReason::ExitCode(code) => code,
        _ => 1,
    }
}

impl Up {
    fn lock(&self) -> MutexGuard<'_, Vec<Running>> {
        self.apps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The group's run is over: stopped (exit_hook ends the process with
    /// 128 + n), every app ended (up exits with the last one's status), or
    /// it failed (the pid files go, and up exits 1).
    fn end(
        &self,
        ran: Result<Vec<StopReason>, keepalive::Error>,
        pid_file: Option<&std::path::Path>,
    ) -> ! {
        if let Err(err) = ran {
            say!("keepalive up: {err:#}"); // what failed, and why
            let apps = self.lock();
            for path in apps
                .iter()
                .filter_map(|running| running.app.run.pid_file.as_deref())
                .chain(pid_file)
            {
                let _ = std::fs::remove_file(path);
            }
            drop(apps);
            exit_hook::exit(1);
        }
        if exit_hook::is_exiting() {
            loop {
                std::thread::park(); // exit_hook ends the process with 128 + n
            }
        }
        let code = self
            .last_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or(1);
        say!("keepalive up: no app runs any more; exiting {code}");
        exit_hook::exit(code)
    }

    /// The supervisor `keepalive run` makes of `app`'s arguments, its
    /// lines said as `keepalive[APP]: …`, its end noted.
    fn supervisor_of(self: &Arc<Self>, app: &App) -> Supervisor {
        let name = app.name.clone();
        let tag = format!("keepalive[{name}]");
        let up = Arc::downgrade(self);
        let exe = std::env::current_exe()
            .map_or_else(|_| "keepalive".into(), |exe| exe.display().to_string());
        let command_line = std::iter::once(exe).chain(["run".to_owned()]).chain(
            app.argv
                .iter()
                .map(|arg| arg.to_string_lossy().into_owned()),
        );
        let mut supervisor = crate::client::listen_for_control(&app.run, app.run.supervisor())
            .after(app.after.iter().cloned())
            .command_line(command_line);
        if let Some(path) = app.run.pid_file.clone() {
            // Written once it runs (`pid_file`); gone when it ends.
            supervisor = supervisor.last_words(move || {
                let _ = std::fs::remove_file(path);
            });
        }
        supervisor.on_event(move |event| match event {
            Event::Waiting { app } => say!("keepalive up: {name} waits for {app} to be ready"),
            Event::Done(reason) => {
                say!("{tag}: {event}");
                if let Some(up) = up.upgrade() {
                    up.ended(&name, *reason);
                }
            }
            _ => say!("{tag}: {event}"),
        })
    }

    /// The pid file `app` asks for, if any, with this process's pid: what
    /// to signal for it.
    fn write_pid_file(app: &App) {
        if let Some(path) = &app.run.pid_file {
            if let Err(err) = crate::write_pid_file(path) {
                say!(
                    "keepalive[{}]: cannot write the pid file {}: {err}",
                    app.name,
                    path.display()
                );
            }
        }
    }

    /// The app `name` ended with `reason`.
    fn ended(&self, name: &str, reason: StopReason) {
        let code = run_status(reason);
        if let Some(running) = self
            .lock()
            .iter_mut()
            .find(|running| running.app.name == name && running.running)
        {
            running.running = false;
            running.last_exit = Some(format!("exit status: {code}"));
        }
        *self
            .last_code
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(code);
    }

    /// A control request: `status`, `start APP`, `stop`, `apply`; a
    /// reload, a restart or a signal goes to every app.
    fn answer(self: &Arc<Self>, request: Request) -> Answer {
        match request {
            Request::Status => {
                let mut reply = Reply::default();
                reply.status = Some(self.status());
                Answer::from(reply)
            }
            Request::Start { app } => match self.start(&app) {
                Ok(()) => Answer::default(),
                Err(err) => Answer::from(Reply::error(err)),
            },
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

    /// `keepalive start APP`: the app of the file, stopped, started again
    /// (answered once it is set up; the client waits for it to be ready).
    fn start(self: &Arc<Self>, name: &str) -> Result<(), String> {
        let supervisor = {
            let mut apps = self.lock();
            let Some(running) = apps
                .iter_mut()
                .find(|running| running.app.name == name && !running.retired)
            else {
                return Err(format!("no app named {name}"));
            };
            if running.running {
                return Err(format!("{name} is running"));
            }
            running.running = true;
            self.supervisor_of(&running.app)
        };
        match self.group.add(supervisor) {
            Ok(()) => {
                if let Some(running) = self
                    .lock()
                    .iter()
                    .find(|r| r.app.name == name && !r.retired)
                {
                    Up::write_pid_file(&running.app);
                }
                Ok(())
            }
            Err(err) => {
                self.mark(name, false);
                Err(format!("cannot start {name}: {err:#}"))
            }
        }
    }

    /// Notes whether the app `name` runs.
    fn mark(&self, name: &str, running: bool) {
        if let Some(app) = self
            .lock()
            .iter_mut()
            .find(|app| app.app.name == name && !app.retired)
        {
            app.running = running;
        }
    }

    /// `keepalive apply`: the file read again and what changed done, app
    /// by app; answered once done, with what it did.
    fn apply(self: &Arc<Self>, file: &str) -> Reply {
        let config = match self.read_again(file) {
            Ok(config) => config,
            Err(err) => return Reply::error(err),
        };
        // An app stopped to start again with new settings may be the only
        // one: the group does not end in between.
        let _hold = self.group.hold();
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        // The apps taken out of the file: stopped, and gone, first.
        let removed: Vec<(String, bool)> = {
            let mut apps = self.lock();
            let mut removed = Vec::new();
            for running in apps.iter_mut().filter(|running| {
                !running.retired && !config.apps.iter().any(|app| app.name == running.app.name)
            }) {
                running.retired = true;
                removed.push((running.app.name.clone(), running.running));
            }
            removed
        };
        for (name, running) in removed {
            match self.stop_one(&name, running) {
                Ok(()) => done.push(format!("removed {name} (stopped)")),
                Err(err) => failed.push(err),
            }
        }
        let mut started = Vec::new();
        for app in config.apps {
            let name = app.name.clone();
            let old = self.lock().iter().find_map(|running| {
                (running.app.name == name && !running.retired)
                    .then(|| (running.app.argv.clone(), running.running))
            });
            let Some((old, running)) = old else {
                match self.add(app) {
                    Ok(()) => {
                        done.push(format!("added {name}"));
                        started.push(name);
                    }
                    Err(err) => failed.push(err),
                }
                continue;
            };
            match self.apply_changed(app, &old, running) {
                None => {}
                Some(Ok((note, restarted))) => {
                    done.push(note);
                    if restarted {
                        started.push(name);
                    }
                }
                Some(Err(err)) => failed.push(err),
            }
        }
        for name in started {
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

    /// What `apply` does with `app`, an app of the file `up` has, whose
    /// arguments were `old`: nothing if they are the same; a scale if its
    /// `workers` alone changed, a reload if its command, args, env, cwd or
    /// prefix did, else a stop and a start (a stopped app just takes
    /// them). What it did, and whether it started the app anew (to wait
    /// for), or why it failed.
    fn apply_changed(
        self: &Arc<Self>,
        app: App,
        old: &[std::ffi::OsString],
        running: bool,
    ) -> Option<Result<(String, bool), String>> {
        if old == app.argv {
            return None;
        }
        let name = app.name.clone();
        if !running {
            self.replace(app);
            return Some(Ok((
                format!("updated {name} (stopped: it starts with them)"),
                false,
            )));
        }
        let workers = usize::from(app.run.workers);
        let only_workers = |argv: &[std::ffi::OsString]| {
            let program = argv.iter().skip_while(|arg| *arg != "--");
            (
                but(argv, &["--workers="]),
                program.cloned().collect::<Vec<_>>(),
            )
        };
        let done = if only_workers(old) == only_workers(&app.argv) {
            self.scale(&name, workers)
                .map(|()| (format!("scaled {name} to {workers} worker(s)"), false))
        } else if but(old, RELOADABLE) == but(&app.argv, RELOADABLE) {
            self.reload_with(&app).map(|note| {
                (
                    format!("reloaded {name} with its new settings{note}"),
                    false,
                )
            })
        } else {
            // Other settings: stopped, and started again with them.
            if let Err(err) = self.stop_one(&name, true) {
                return Some(Err(err));
            }
            self.replace(app);
            return Some(
                self.start(&name)
                    .map(|()| (format!("restarted {name} with its new settings"), true)),
            );
        };
        if done.is_ok() {
            self.replace(app);
        }
        Some(done)
    }

    /// Scales the running app `name` to `workers`, waiting until it is done.
    fn scale(&self, name: &str, workers: usize) -> Result<(), String> {
        let request = Request::Scale { workers };
        match keepalive::control::request_within(name, &request, RELOAD_WITHIN) {
            Ok(Reply { error: None, .. }) => Ok(()),
            Ok(Reply {
                error: Some(err), ..
            }) => Err(format!("{name}: {err}")),
            Err(err) => Err(format!("{name}: {err}")),
        }
    }

    /// The running app `app` names, its next workers started as `app`
    /// says, reloaded (ready-first: the old workers serve until each new
    /// one is ready), then scaled to its `workers`: what it said of the
    /// workers. A reload that fails gives the app its old settings back.
    fn reload_with(self: &Arc<Self>, app: &App) -> Result<String, String> {
        let name = &app.name;
        let old = self.lock().iter().find_map(|running| {
            (running.app.name == *name && !running.retired)
                .then(|| self.supervisor_of(&running.app))
        });
        self.group
            .update(name, &self.supervisor_of(app))
            .map_err(|err| format!("{name}: {err:#}"))?;
        let reloaded =
            keepalive::control::request_within(name, &Request::ReloadAndWait, RELOAD_WITHIN)
                .map_err(|err| err.to_string())
                .and_then(|reply| reply.error.map_or(Ok(()), Err));
        if let Err(err) = reloaded {
            if let Some(old) = old {
                let _ = self.group.update(name, &old);
            }
            return Err(format!(
                "{name}: not applied ({err}): its workers run the settings they had"
            ));
        }
        let workers = usize::from(app.run.workers);
        self.scale(name, workers)?;
        Ok(format!(" ({workers} worker(s))"))
    }

    /// The app of the file named as `app` is, replaced by it (its new
    /// settings), as it runs or not.
    fn replace(&self, app: App) {
        if let Some(running) = self
            .lock()
            .iter_mut()
            .find(|running| running.app.name == app.name && !running.retired)
        {
            running.app = app;
        }
    }

    /// A new app of the file, started.
    fn add(self: &Arc<Self>, app: App) -> Result<(), String> {
        let name = app.name.clone();
        self.lock().push(Running {
            app,
            running: false,
            last_exit: None,
            retired: false,
        });
        self.start(&name)
    }

    /// Stops the app `name` alone, if `running`, and waits until its
    /// workers are gone.
    fn stop_one(&self, name: &str, running: bool) -> Result<(), String> {
        if !running {
            return Ok(());
        }
        match self.group.stop(name) {
            Ok(_) => Ok(()),
            // It ended meanwhile.
            Err(keepalive::Error::Setup(err)) if err.kind() == std::io::ErrorKind::NotFound => {
                Ok(())
            }
            Err(err) => Err(format!("{name}: {err:#}")),
        }
    }

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

    /// Asks every running app (by its name: its control socket) what the
    /// `up` was asked; the workers signalled, and what went wrong, app by
    /// app.
    fn ask_every_app(&self, request: &Request) -> Reply {
        let running: Vec<String> = self
            .lock()
            .iter()
            .filter(|running| running.running && !running.retired)
            .map(|running| running.app.name.clone())
            .collect();
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
        let apps = self.lock();
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
        status.apps = apps
            .iter()
            .filter(|running| !running.retired)
            .map(|running| {
                let mut shown = AppStatus::default();
                shown.name = running.app.name.clone();
                shown.state = if running.running {
                    "running"
                } else {
                    "stopped"
                }
                .into();
                shown.last_exit = running.last_exit.clone();
                shown
            })
            .collect();
        status
    }
}
