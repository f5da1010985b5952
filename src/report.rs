//! Telling the user what happened: `tracing` events, and one stderr line for
//! a deadline or a panicking hook when no subscriber would show them.

use std::io::{self, Write};
use std::panic::{Location, PanicHookInfo};
use std::time::Duration;

use crate::Exit;
use crate::exit::panic_message;
use crate::runner::Unfinished;

/// How many registration sites the stderr line names before "and N more".
const SITES_NAMED: usize = 5;

/// Writes one line to stderr unless a global `tracing` subscriber will show
/// the event instead. Errors are ignored: the process is ending.
fn stderr_line(line: std::fmt::Arguments<'_>) {
    if !tracing::dispatcher::has_been_set() {
        let _ = writeln!(io::stderr().lock(), "exit_hook: {line}");
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

pub(crate) fn deadline_passed(timeout: Duration, unfinished: Unfinished) {
    let Unfinished {
        running,
        not_started,
    } = unfinished;
    let sites: Vec<String> = running.iter().map(ToString::to_string).collect();
    tracing::error!(?timeout, still_running = ?sites, not_started, "exit hooks: deadline passed");
    let mut named = sites
        .iter()
        .take(SITES_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if sites.len() > SITES_NAMED {
        named.push_str(&format!(" and {} more", sites.len() - SITES_NAMED));
    }
    let never = if not_started > 0 {
        format!("; {not_started} never started")
    } else {
        String::new()
    };
    stderr_line(format_args!(
        "deadline of {timeout:?} passed; {} hook(s) still running: {named}{never}",
        sites.len()
    ));
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
