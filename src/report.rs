//! Telling the user what happened: `tracing` events, and one stderr line for
//! a deadline or a panicking hook when no subscriber would show them.

use std::io;
use std::panic::{Location, PanicHookInfo};
use std::time::Duration;

use crate::exit::panic_message;
use crate::registry::Site;
use crate::{Exit, sys};

/// How many registration sites the stderr line names before "and N more".
const SITES_NAMED: usize = 5;

/// Writes one line to stderr unless a global `tracing` subscriber will show
/// the event instead; without std's stderr lock (see
/// [`sys::write_stderr`]). Errors are ignored: the process is ending.
fn stderr_line(line: std::fmt::Arguments<'_>) {
    if !tracing::dispatcher::has_been_set() {
        sys::write_stderr(format!("exit_hook: {line}\n").as_bytes());
    }
}

/// Signals inherited as ignored and left so (a background job's SIGINT,
/// `nohup`'s SIGHUP): said once at install, through `tracing`, else on
/// stderr, since a program without a subscriber would never learn why its
/// Ctrl+C does nothing.
pub(crate) fn signals_left_ignored(signals: &[crate::Signal]) {
    tracing::warn!(
        signals = ?signals,
        "exit_hook: signals inherited as ignored are left ignored \
         (Builder::take_ignored_signals takes them)"
    );
    let names: Vec<String> = signals.iter().map(ToString::to_string).collect();
    stderr_line(format_args!(
        "{} inherited as ignored (a background job, nohup): left ignored, it starts no run \
         (Builder::take_ignored_signals takes it)",
        names.join(", ")
    ));
}

pub(crate) fn run_started(exit: &Exit) {
    tracing::info!(trigger = %exit, "exit hooks: run started");
}

pub(crate) fn run_finished(elapsed: Duration) {
    tracing::info!(?elapsed, "exit hooks: run finished");
}

pub(crate) fn hook_started(hook: &'static Location<'static>, phase: crate::Phase) {
    tracing::debug!(%hook, phase = phase.name(), "exit hook started");
}

pub(crate) fn hook_finished(
    hook: &'static Location<'static>,
    phase: crate::Phase,
    elapsed: Duration,
) {
    tracing::debug!(%hook, phase = phase.name(), ?elapsed, "exit hook finished");
}

pub(crate) fn hook_panicked(hook: &'static Location<'static>, info: &PanicHookInfo<'_>) {
    let message = panic_message(info);
    let at = info.location().map(ToString::to_string).unwrap_or_default();
    tracing::error!(%hook, panic = %message, %at, "exit hook panicked");
    stderr_line(format_args!(
        "the hook registered at {hook} panicked at {at}: {message}"
    ));
}

/// What the run left undone when the deadline passed.
#[derive(Debug)]
pub(crate) struct Unfinished {
    /// Async hooks past their time limits, not reported yet.
    pub(crate) passed_limits: Vec<(Site, Duration)>,
    pub(crate) running: Vec<Site>,
    pub(crate) not_started: Vec<Site>,
    pub(crate) guards: Vec<Site>,
}

pub(crate) fn deadline_passed(timeout: Duration, unfinished: Unfinished) {
    let Unfinished {
        passed_limits,
        running,
        not_started,
        guards,
    } = unfinished;
    time_limits_passed(&passed_limits);
    tracing::error!(
        ?timeout,
        still_running = ?sites(&running),
        never_started = ?sites(&not_started),
        guards_held = ?sites(&guards),
        "exit hooks: deadline passed"
    );
    let mut line = format!("deadline of {timeout:?} passed");
    for (sites, what) in [
        (&running, "hook(s) still running:"),
        (&not_started, "hook(s) never started:"),
        (&guards, "exit guard(s) still held, taken at:"),
    ] {
        if !sites.is_empty() {
            line += &format!("; {} {what} {}", sites.len(), named(sites));
        }
    }
    stderr_line(format_args!("{line}"));
}

pub(crate) fn time_limit_passed(hook: Site, limit: Duration) {
    tracing::warn!(%hook, ?limit, "exit hook passed its time limit: the run moves on");
    stderr_line(format_args!(
        "the hook registered at {hook} passed its time limit of {limit:?}; the run moves on"
    ));
}

/// Async hooks of one batch past their time limits: one event and one
/// line, however many (10 000 hooks are not 10 000 lines).
pub(crate) fn time_limits_passed(passed: &[(Site, Duration)]) {
    match passed {
        [] => {}
        [(hook, limit)] => time_limit_passed(hook, *limit),
        _ => {
            let hooks: Vec<Site> = passed.iter().map(|(hook, _)| *hook).collect();
            tracing::warn!(
                count = passed.len(),
                hooks = ?sites(&hooks[..hooks.len().min(SITES_NAMED)]),
                "exit hooks passed their time limits: the run moves on"
            );
            stderr_line(format_args!(
                "{} hooks passed their time limits; the run moves on: {}",
                passed.len(),
                named(&hooks)
            ));
        }
    }
}

fn sites(sites: &[Site]) -> Vec<String> {
    sites.iter().map(ToString::to_string).collect()
}

/// The first [`SITES_NAMED`] sites, then "and N more".
fn named(sites: &[Site]) -> String {
    let mut named = sites
        .iter()
        .take(SITES_NAMED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if sites.len() > SITES_NAMED {
        named += &format!(" and {} more", sites.len() - SITES_NAMED);
    }
    named
}

pub(crate) fn abandoned(hook: Option<&'static Location<'static>>, what: &str) {
    let hook = hook.map_or_else(|| "?".to_owned(), ToString::to_string);
    tracing::warn!(%hook, "exit hook {what}: the run ends here");
    stderr_line(format_args!(
        "the hook registered at {hook} {what}; the remaining hooks do not run"
    ));
}

/// A hook left behind `when` (`at its time limit`, `at its phase's end`)
/// tried to end the process (`what`).
pub(crate) fn left_behind_tried(hook: Option<&'static Location<'static>>, when: &str, what: &str) {
    let hook = hook.map_or_else(|| "?".to_owned(), ToString::to_string);
    tracing::warn!(%hook, "exit hook left behind {when} {what}: ignored");
    stderr_line(format_args!(
        "the hook registered at {hook}, left behind {when}, {what}; the run goes on without it"
    ));
}

pub(crate) fn drain_delay(delay: Duration) {
    tracing::info!(?delay, "exit hooks: drain delay, still serving");
}

/// A phase's end came with its hooks still going: the run goes on.
pub(crate) fn phase_over(phase: crate::Phase, running: &[Site], skipped: &[Site]) {
    tracing::error!(
        phase = phase.name(),
        still_running = ?sites(running),
        never_started = ?sites(skipped),
        "exit hooks: phase over, the run goes on to the next"
    );
    let mut line = format!(
        "the {} phase's time is up; the run goes on to the next",
        phase.name()
    );
    for (sites, what) in [
        (running, "hook(s) left running:"),
        (skipped, "hook(s) of the phase never started:"),
    ] {
        if !sites.is_empty() {
            line += &format!("; {} {what} {}", sites.len(), named(sites));
        }
    }
    stderr_line(format_args!("{line}"));
}

/// Guards still held when the drain's time was up: they hold nothing more.
pub(crate) fn guards_given_up(guards: Vec<Site>) {
    tracing::error!(
        guards_held = ?sites(&guards),
        "exit hooks: the drain's time is up with exit guards held: the run goes on"
    );
    stderr_line(format_args!(
        "the drain phase's time is up with {} exit guard(s) held, taken at: {}; the run goes on",
        guards.len(),
        named(&guards)
    ));
}

pub(crate) fn decision_panicked(signal: crate::Signal) {
    tracing::error!(%signal, "exit_hook: the decision before the run panicked: exiting");
    stderr_line(format_args!(
        "the decision for {signal} panicked: exiting as {signal} does"
    ));
}

pub(crate) fn decision_unavailable(signal: crate::Signal) {
    tracing::error!(%signal, "exit_hook: the decision was in use when this process was forked: exiting");
    stderr_line(format_args!(
        "the decision for {signal} was being asked when this process was forked: exiting as {signal} does"
    ));
}

/// No thread could be created for the run: it goes on without one.
pub(crate) fn no_thread(err: &io::Error) {
    tracing::warn!(%err, "exit hooks: no thread could be started; the hooks run on the signal thread");
}

/// No thread keeps the deadline, and the alarm that would could not be set.
pub(crate) fn deadline_unkept(err: &io::Error) {
    tracing::warn!(%err, "exit hooks: no thread could be started and no alarm set: the deadline is not kept");
}

pub(crate) fn runner_failed(err: &io::Error) {
    tracing::error!(%err, "exit hooks: could not start the run");
    stderr_line(format_args!("could not run the exit hooks: {err}"));
}
