//! Windows: a console control handler, and the C runtime's `atexit`.
//!
//! A console program gets no signals on Windows: the system calls a handler
//! routine, on a new thread of its own, for Ctrl+C, Ctrl+Break, and when the
//! console closes, the user logs off or the system shuts down. The events
//! stand for the signals Node maps them to: Ctrl+C → SIGINT (2, status 130),
//! Ctrl+Break → SIGBREAK (21, status 149), close, logoff and shutdown →
//! SIGHUP (1, status 129).
//!
//! For Ctrl+C and Ctrl+Break the handler starts the run on the crate's own
//! thread (which runs the hooks as the Unix signal thread does, with a guard
//! thread keeping the deadline) and returns at once, so that the next event
//! reaches it: a second Ctrl+C forces the exit. (Wine, at least, calls no
//! handler again while one is still running.) For close, logoff and shutdown
//! the handler must not return before the run is over — Windows ends the
//! process as soon as it does — so it runs the hooks itself and never
//! returns. Windows also ends the process about 5 s after a close event
//! (logoff and shutdown: the system's own time-out), whatever the deadline.

use std::io;
use std::os::raw::c_int;
use std::sync::OnceLock;

use windows_sys::Win32::System::Console::{
    CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT,
    SetConsoleCtrlHandler,
};
use windows_sys::core::BOOL;

use super::{SignalPlan, StartThread, Wake};
use crate::Signal;
use crate::state::STATE;
use crate::state::question::{QUESTIONS, Raised};

const SIGHUP: i32 = Signal::hangup().as_raw();
const SIGINT: i32 = Signal::interrupt().as_raw();
const SIGTERM: i32 = Signal::terminate().as_raw();
const SIGBREAK: i32 = Signal::ctrl_break().as_raw();

/// SIGINT, SIGBREAK and SIGHUP stand for console events. SIGTERM is accepted
/// so that a portable signal set installs, but Windows never sends it.
pub(crate) fn check_signal(signal: i32) -> Result<(), &'static str> {
    match signal {
        SIGHUP | SIGINT | SIGBREAK | SIGTERM => Ok(()),
        _ => Err("it is not a console event on Windows (SIGINT, SIGBREAK and SIGHUP are)"),
    }
}

/// The signal a console control event stands for.
fn event_signal(event: u32) -> Option<i32> {
    match event {
        CTRL_C_EVENT => Some(SIGINT),
        CTRL_BREAK_EVENT => Some(SIGBREAK),
        CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT => Some(SIGHUP),
        _ => None,
    }
}

/// What each configured signal does; read by the handler.
static PLANS: OnceLock<Vec<SignalPlan>> = OnceLock::new();

/// Installs the console handler for the planned events. Windows has no
/// inherited "ignored" disposition to respect, so nothing is left alone.
/// The console handler runs on threads of Windows': there is no signal
/// thread to start.
pub(crate) fn install_signals(
    plans: &[SignalPlan],
    _take_ignored: bool,
    _start_thread: StartThread,
) -> io::Result<Vec<Signal>> {
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    if PLANS.set(plans.to_vec()).is_err() {
        return Err(io::Error::other("the console handler is installed already"));
    }
    // SAFETY: `console_handler` is a valid handler routine for the whole
    // life of the process and never unwinds.
    if unsafe { SetConsoleCtrlHandler(Some(console_handler), 1) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Vec::new())
}

/// systemd's notification protocol is Unix's.
pub(crate) fn read_notify_socket() {}

/// See [`read_notify_socket`].
pub(crate) fn notify_stopping(_left: std::time::Duration) {}

/// Windows has no fork.
pub(crate) fn forked() -> bool {
    false
}

/// Windows has no fork.
pub(crate) fn forks() -> u64 {
    0
}

/// Windows has no fork.
pub(crate) fn restart_after_fork(_start_thread: StartThread) -> io::Result<()> {
    Ok(())
}

/// Windows has no signal thread: nothing ever waits.
pub(crate) enum SignalWaiter {}

impl SignalWaiter {
    pub(crate) fn wait(&mut self) -> Wake {
        match *self {}
    }
}

/// The console handler's threads are Windows': a run starts a thread.
pub(crate) fn run_on_signal_thread() -> bool {
    false
}

/// Windows threads have no signal mask.
pub(crate) fn mask_crate_thread() {}

/// The handler routine Windows calls on a thread of its own.
unsafe extern "system" fn console_handler(event: u32) -> BOOL {
    let plan = event_signal(event).and_then(|signal| {
        PLANS
            .get()?
            .iter()
            .find(|plan| plan.signal == signal)
            .copied()
    });
    let Some(plan) = plan else {
        return 0; // not configured: the next handler decides (by default, the end)
    };
    // Unwinding into Windows is undefined.
    std::panic::catch_unwind(|| on_event(event, plan)).unwrap_or(1)
}

/// Whether Windows ends the process as soon as the handler returns.
fn ends_on_return(event: u32) -> bool {
    matches!(
        event,
        CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT
    )
}

/// Asks the application first (`confirm_exit`), starts the run, forces the
/// exit for a second event, or waits for the run another trigger started.
/// Returns TRUE: the event is handled.
fn on_event(event: u32, plan: SignalPlan) -> BOOL {
    // Windows ends the process soon after a close, logoff or shutdown
    // event: there is no time to ask.
    if !STATE.is_exiting() && !ends_on_return(event) {
        match QUESTIONS.raise(plan.signal) {
            Raised::NotAsked => {}
            Raised::Ask => {
                if QUESTIONS.take(plan.signal) {
                    (super::calls().console_ask)(Signal::from_raw(plan.signal));
                }
                return 1;
            }
            Raised::Again if plan.force => {
                // The question waits for its answer on the line: end it.
                let _ = std::io::Write::write_all(&mut std::io::stderr(), b"\n");
                force(plan, b" while its question is pending: ")
            }
            Raised::Again => return 1,
        }
    }
    if start_run(plan, !ends_on_return(event)) {
        1
    } else if plan.force {
        force(plan, b" during the shutdown run: ")
    } else if ends_on_return(event) {
        // Returning would end the process before the run is over.
        (super::calls().console_join)()
    } else {
        1 // a run is going and forcing is off: ignore the event
    }
}

/// Starts the run for `signal` from a thread other than its handler's (the
/// application answered its question "exit"), as its handler would have.
/// `false` if a run had started already.
pub(crate) fn start_signal_run(signal: i32) -> bool {
    PLANS
        .get()
        .and_then(|plans| plans.iter().find(|plan| plan.signal == signal).copied())
        .is_some_and(|plan| start_run(plan, true))
}

/// Wins the run for `plan`'s signal and has its hooks run: on a new crate
/// thread, which ends the process, when `detached`; otherwise (or if no
/// thread can start) here, never returning. `false` if a run had started.
fn start_run(plan: SignalPlan, detached: bool) -> bool {
    if !STATE.begin_from_signal(plan.signal) {
        return false;
    }
    STATE.take_signal();
    let signal = Signal::from_raw(plan.signal);
    let started = detached
        && std::thread::Builder::new()
            .name("exit-hook".into())
            .spawn(move || (super::calls().console_run)(signal, plan.status))
            .is_ok();
    if !started {
        // Block here until the run is over: the process ends with it.
        (super::calls().console_run)(signal, plan.status)
    }
    true
}

/// Ends the process at once for a signal that came again, after one line.
fn force(plan: SignalPlan, context: &[u8]) -> ! {
    // The handler runs on an ordinary thread: plain std I/O is fine here.
    let mut line = [0u8; 160];
    let len = plan.forced_line(context, &mut line);
    let _ = std::io::Write::write_all(&mut std::io::stderr(), &line[..len]);
    exit_now(
        plan.status
            .unwrap_or(Signal::from_raw(plan.signal).shell_status()),
    )
}

unsafe extern "C" {
    fn atexit(function: extern "C" fn()) -> c_int;
}

/// The C runtime calls `atexit` handlers when `main` returns. Rust's
/// `std::process::exit` calls `ExitProcess` directly, which does not.
pub(crate) fn install_exit_handler() -> io::Result<()> {
    extern "C" fn handler() {
        let _ = std::panic::catch_unwind(|| (super::calls().process_exit)(None));
    }
    // SAFETY: `handler` is a plain function valid for the whole process that never unwinds.
    if unsafe { atexit(handler) } != 0 {
        return Err(io::Error::other(
            "the C runtime refused to register an exit handler",
        ));
    }
    Ok(())
}

pub(crate) fn exit_now(code: i32) -> ! {
    super::flush_stdout();
    std::process::exit(code)
}

/// The deadline kept without a thread (see the Unix `alarm`): Windows has
/// no alarm signal; the hooks run without it.
pub(crate) fn end_after(_after: std::time::Duration, _end: i32) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Windows has no death by signal; the status is 128 + n as with the default policy.
pub(crate) fn die_by_signal(signal: i32) -> ! {
    exit_now(Signal::from_raw(signal).shell_status())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn every_console_event_stands_for_a_signal() {
        assert_eq!(event_signal(CTRL_C_EVENT), Some(SIGINT));
        assert_eq!(event_signal(CTRL_BREAK_EVENT), Some(SIGBREAK));
        for event in [CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT] {
            assert_eq!(event_signal(event), Some(SIGHUP));
        }
        assert_eq!(event_signal(99), None);
    }

    const EVENT: &str = "EXIT_HOOK_TEST_CONSOLE_EVENT";

    /// Run in a child process by the test below: install, register a hook,
    /// and call the handler routine directly with the event given.
    #[test]
    fn handler_child() {
        let Ok(event) = std::env::var(EVENT) else {
            return;
        };
        crate::add(|exit| println!("hook: {exit}"));
        let event: u32 = event.parse().unwrap();
        // SAFETY: calling the handler routine as Windows would.
        let handled = unsafe { console_handler(event) };
        assert_eq!(handled, 1);
        // Ctrl+C and Ctrl+Break return at once; the run ends the process.
        loop {
            std::thread::park();
        }
    }

    const CONFIRM: &str = "EXIT_HOOK_TEST_CONFIRM";

    /// Run in a child process by the test below: a decision that says no,
    /// then yes, and the handler routine called for Ctrl+C twice.
    #[test]
    fn confirm_child() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static ANSWERED: AtomicUsize = AtomicUsize::new(0);
        if std::env::var(CONFIRM).is_err() {
            return;
        }
        crate::add(|exit| println!("hook: {exit}"));
        crate::confirm_exit(Signal::interrupt(), |_| {
            let asked = ANSWERED.load(Ordering::SeqCst) + 1;
            println!("asked {asked}, exiting: {}", crate::is_exiting());
            ANSWERED.store(asked, Ordering::SeqCst);
            asked == 2
        })
        .unwrap();
        // SAFETY: calling the handler routine as Windows would.
        assert_eq!(unsafe { console_handler(CTRL_C_EVENT) }, 1);
        while ANSWERED.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        println!("carried on, exiting: {}", crate::is_exiting());
        // SAFETY: as above.
        assert_eq!(unsafe { console_handler(CTRL_C_EVENT) }, 1);
        loop {
            std::thread::park();
        }
    }

    /// Ctrl+C with a decision: asked on a thread of the crate's, "no"
    /// starts nothing, "yes" runs the hooks once and exits 130.
    #[test]
    fn ctrl_c_asks_the_decision_first() {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::windows::tests::confirm_child",
                "--nocapture",
            ])
            .env(CONFIRM, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(130), "{stdout}");
        let lines: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("asked") || l.starts_with("carried") || l.starts_with("hook"))
            .collect();
        assert_eq!(
            lines,
            [
                "asked 1, exiting: false",
                "carried on, exiting: false",
                "asked 2, exiting: false",
                "hook: SIGINT (2), exit status 130"
            ]
        );
    }

    /// The handler routine, called directly for every event type, runs the
    /// hooks once and ends the process with the event's status.
    #[test]
    fn handler_runs_the_hooks_and_exits_with_the_events_status() {
        let cases = [
            (CTRL_C_EVENT, 130, "SIGINT (2)"),
            (CTRL_BREAK_EVENT, 149, "SIGBREAK (21)"),
            (CTRL_CLOSE_EVENT, 129, "SIGHUP (1)"),
            (CTRL_LOGOFF_EVENT, 129, "SIGHUP (1)"),
            (CTRL_SHUTDOWN_EVENT, 129, "SIGHUP (1)"),
        ];
        for (event, status, signal) in cases {
            let output = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sys::windows::tests::handler_child",
                    "--nocapture",
                ])
                .env(EVENT, event.to_string())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert_eq!(
                output.status.code(),
                Some(status),
                "event {event}: {stdout}"
            );
            let hooks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("hook: ")).collect();
            assert_eq!(
                hooks,
                [format!("hook: {signal}, exit status {status}")],
                "event {event}"
            );
        }
    }
}
