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

pub(crate) fn run_started(exit: &Exit) {
    tracing::info!(trigger = %exit, "exit hooks: run started");
}

pub(crate) fn run_finished(elapsed: Duration) {
    tracing::info!(?elapsed, "exit hooks: run finished");
}

pub(crate) fn hook_started(hook: &'static Location<'static>) {
    tracing::debug!(%hook, "exit hook started");
}

pub(crate) fn hook_finished(hook: &'static Location<'static>, elapsed: Duration) {
    tracing::debug!(%hook, ?elapsed, "exit hook finished");
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
    pub(crate) running: Vec<Site>,
    pub(crate) not_started: Vec<Site>,
    pub(crate) guards: Vec<Site>,
}

pub(crate) fn deadline_passed(timeout: Duration, unfinished: Unfinished) {
    let Unfinished {
        running,
        not_started,
        guards,
    } = unfinished;
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

pub(crate) fn runner_failed(err: &io::Error) {
    tracing::error!(%err, "exit hooks: could not start the run");
    stderr_line(format_args!("could not run the exit hooks: {err}"));
}
