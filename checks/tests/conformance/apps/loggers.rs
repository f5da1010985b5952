//! A logger that buffers: `tracing-appender`'s non-blocking writer queues
//! lines for its own thread, and only dropping its `WorkerGuard` waits until
//! they are written. Handed to a Flush hook, the guard keeps every line
//! however the process ends.

use std::path::PathBuf;
use std::process::Command;

use exit_hook::Phase;
use libtest_mimic::Trial;

use crate::child::{install, ready, wait_forever};
use crate::harness::Child;
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![appender_guard_in_flush_keeps_every_line_however_the_process_ends]
}

/// The child scenarios of this file: one per way the process ends.
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        appender_return => appender("return"),
        appender_sigterm => appender("sigterm"),
        appender_exit => appender("exit"),
        appender_panic => appender("panic"),
    }
}

/// Lines the shutdown logs just before its flush.
const LINES: usize = 200_000;

/// The threads that log them.
const THREADS: usize = 4;

/// The variable that names the log file.
const LOG: &str = "EXIT_HOOK_APPENDER_LOG";

/// Each way of ending, and the status it gives.
fn appender_guard_in_flush_keeps_every_line_however_the_process_ends() {
    for (end, code) in [("return", 0), ("sigterm", 143), ("exit", 3), ("panic", 101)] {
        let log = std::env::temp_dir().join(format!(
            "exit_hook_appender_{end}_{}.log",
            std::process::id()
        ));
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.env(LOG, &log);
        let mut child = Child::spawn_with(command, &format!("appender_{end}"));
        if end == "sigterm" {
            child = child.ready().signal(libc::SIGTERM);
        }
        let outcome = child.finish();
        let written = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        outcome.assert_code(code);
        assert_eq!(outcome.after_ready(), ["flush: guard dropped"], "{end}");
        // The crate's own events (the run's start and end) are there too.
        let mut logged: Vec<usize> = written
            .lines()
            .filter_map(|l| l.split(" logged line=").nth(1)?.parse().ok())
            .collect();
        logged.sort_unstable();
        assert!(
            logged.iter().copied().eq(0..LINES),
            "{end}: every line reached the file, once: {} of {LINES}",
            logged.len()
        );
    }
}

/// Logs [`LINES`] lines through a non-blocking writer, then ends as `end`
/// says. The guard is dropped by a Flush hook, the one line that keeps them.
fn appender(end: &str) {
    use tracing_subscriber::prelude::*;

    let path = PathBuf::from(std::env::var_os(LOG).expect("the log's path"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::fs::File::create(path).unwrap());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false),
        )
        .init();
    install(exit_hook::Builder::new());
    exit_hook::in_phase(Phase::Flush).add(move |_| {
        drop(guard);
        println!("flush: guard dropped");
    });
    // The last lines are logged by the shutdown itself, just before the
    // flush, from more threads than the writer's one keeps up with: with
    // the guard kept, lines would still be queued at the exit.
    exit_hook::in_phase(Phase::Cleanup).add(|_| {
        std::thread::scope(|threads| {
            for thread in 0..THREADS {
                threads.spawn(move || {
                    for line in (thread..LINES).step_by(THREADS) {
                        tracing::info!(line, "logged");
                    }
                });
            }
        });
    });
    ready();
    match end {
        "return" => {}
        "sigterm" => wait_forever(),
        "exit" => exit_hook::exit(3),
        "panic" => {
            std::thread::spawn(|| panic!("the end")).join().unwrap_err();
            wait_forever()
        }
        _ => panic!("unknown end {end}"),
    }
}
