//! Runs the scenarios in children, two at a time, and checks each.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Trial};

use crate::harness::{Child, Outcome};
use crate::scenario::{Hook, Rng, Scenario, Trigger};

/// Beyond the deadline, how long a run may take before it counts as hung
/// (process start and exit on a busy two-core machine included).
const MARGIN: Duration = Duration::from_secs(3);

pub fn main() {
    crate::harness::default_signal_dispositions();
    let runs: usize = std::env::var("EXIT_HOOK_FAULT_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("EXIT_HOOK_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let trial = Trial::test("fault_injection", move || {
        let report = run_all(runs, seed);
        println!("{report}");
        if report.failures.is_empty() {
            Ok(())
        } else {
            Err(format!("{} failed runs (seed {seed})", report.failures.len()).into())
        }
    });
    libtest_mimic::run(&Arguments::from_args(), vec![trial]).exit();
}

#[derive(Default)]
struct Report {
    runs: usize,
    seed: u64,
    kinds: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    /// (exit − deadline) for signal runs cut at their deadline, by the
    /// kind of hook that was stuck.
    overshoot: BTreeMap<&'static str, Vec<Duration>>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "fault injection: {} runs, seed {}, {} scenario kinds, {} failures",
            self.runs,
            self.seed,
            self.kinds.len(),
            self.failures.len()
        )?;
        for (kind, n) in &self.kinds {
            writeln!(f, "  {n:5}  {kind}")?;
        }
        for (kind, overshoot) in &self.overshoot {
            let mut overshoot = overshoot.clone();
            overshoot.sort();
            let at = |p: usize| overshoot[(overshoot.len() - 1) * p / 100].as_secs_f64() * 1e3;
            writeln!(
                f,
                "exit − deadline, {} signal runs with a stuck {kind} hook (ms): min {:.1}, median {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}",
                overshoot.len(),
                at(0),
                at(50),
                at(90),
                at(99),
                at(100)
            )?;
        }
        for failure in &self.failures {
            writeln!(f, "FAILED {failure}")?;
        }
        Ok(())
    }
}

fn run_all(runs: usize, seed: u64) -> Report {
    let mut rng = Rng::new(seed);
    let scenarios: Vec<Scenario> = (0..runs).map(|_| Scenario::draw(&mut rng)).collect();
    let report = Arc::new(Mutex::new(Report {
        runs,
        seed,
        ..Report::default()
    }));
    let next = Arc::new(AtomicUsize::new(0));
    let scenarios = Arc::new(scenarios);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (report, next, scenarios) = (report.clone(), next.clone(), scenarios.clone());
            std::thread::spawn(move || {
                while let Some(scenario) = scenarios.get(next.fetch_add(1, Ordering::SeqCst)) {
                    // The harness panics on a child that outlives its
                    // watchdog (and kills and reaps it): a failed run.
                    let (verdict, overshoot) = std::panic::catch_unwind(|| run_one(scenario))
                        .unwrap_or_else(|panic| {
                            let why = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .unwrap_or_else(|| "the driver panicked".into());
                            (Err(why), None)
                        });
                    let mut report = report.lock().unwrap();
                    *report.kinds.entry(scenario.kind()).or_default() += 1;
                    if let Some((kind, overshoot)) = overshoot {
                        report.overshoot.entry(kind).or_default().push(overshoot);
                    }
                    if let Err(why) = verdict {
                        report.failures.push(format!("{}: {why}", scenario.text()));
                    }
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    Arc::try_unwrap(report).ok().unwrap().into_inner().unwrap()
}

/// Runs one scenario; returns the verdict and, for a run cut at its
/// deadline, how long after the deadline the process was gone.
fn run_one(scenario: &Scenario) -> (Result<(), String>, Option<(&'static str, Duration)>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("EXIT_HOOK_FAULT", scenario.text());
    let mut child = Child::spawn_with(command, scenario.kind());
    let started = Instant::now();
    let mut triggered = started;
    let within = Duration::from_secs(30);
    match &scenario.trigger {
        Trigger::Signal(s)
        | Trigger::PanicDuringSignalRun(s)
        | Trigger::ReturnDuringSignalRun(s)
        | Trigger::ProcessExitFromThreadDuringSignalRun(s) => {
            if child.try_wait_line(within, |l| l == "READY").is_some() {
                child.send(*s);
                triggered = Instant::now();
            }
        }
        Trigger::Storm(signals) => {
            if child.try_wait_line(within, |l| l == "READY").is_some() {
                triggered = Instant::now();
                for s in signals {
                    // SAFETY: kill(2) on our unreaped child; it may be exiting already.
                    unsafe { libc::kill(child.pid(), *s) };
                }
            }
        }
        Trigger::SignalWhileRegistering(s) => {
            if child
                .try_wait_line(within, |l| l == "REGISTERING")
                .is_some()
            {
                child.send(*s);
                triggered = Instant::now();
            }
        }
        Trigger::SignalDuringPanicRun(s) => {
            if child
                .try_wait_line(within, |l| l.starts_with("start "))
                .is_some()
            {
                // SAFETY: as above; the run may have ended meanwhile.
                unsafe { libc::kill(child.pid(), *s) };
            }
        }
        Trigger::PanicMain
        | Trigger::PanicThreads(_)
        | Trigger::Return
        | Trigger::ProcessExit(_)
        | Trigger::ExitHookExit(_)
        | Trigger::PanicHoldingLock
        | Trigger::ForeignPanicHook => {}
    }
    let outcome = child.finish();
    let elapsed_since_trigger = outcome.elapsed.min(triggered.elapsed());
    let overshoot = scenario
        .cut_at_deadline()
        .map(|kind| (kind, elapsed_since_trigger.saturating_sub(scenario.timeout)));
    (check(scenario, &outcome, elapsed_since_trigger), overshoot)
}

fn check(scenario: &Scenario, outcome: &Outcome, elapsed: Duration) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = outcome.status.signal() {
        return Err(format!("killed by signal {signal} (abort: 6): {outcome:?}"));
    }
    let code = outcome.status.code().unwrap_or(-1);
    if code == 134 {
        return Err(format!("aborted: {outcome:?}"));
    }
    if !scenario.allowed_codes().contains(&code) {
        return Err(format!(
            "status {code}, allowed {:?}: {outcome:?}",
            scenario.allowed_codes()
        ));
    }
    let mut seen = HashSet::new();
    for line in outcome
        .stdout
        .iter()
        .filter(|l| l.starts_with("start ") || l.starts_with("end ") || l.starts_with("late "))
    {
        if !seen.insert(line.as_str()) {
            return Err(format!("{line:?} twice: {outcome:?}"));
        }
    }
    for index in scenario.must_start() {
        if !seen.contains(format!("start {index}").as_str()) {
            return Err(format!("hook {index} did not start: {outcome:?}"));
        }
    }
    if scenario.must_complete() {
        for (index, hook) in scenario.hooks.iter().enumerate() {
            let ends = matches!(
                hook,
                Hook::Sync
                    | Hook::Async(_)
                    | Hook::Registers
                    | Hook::Forks
                    | Hook::SignalsSelf
                    | Hook::DropUnregisters
                    | Hook::Limited
            );
            if ends && !seen.contains(format!("end {index}").as_str()) {
                return Err(format!("hook {index} did not finish: {outcome:?}"));
            }
            if *hook == Hook::Registers && !seen.contains(format!("late {index}").as_str()) {
                return Err(format!(
                    "the hook registered by hook {index} did not run: {outcome:?}"
                ));
            }
        }
    }
    if elapsed > scenario.timeout + MARGIN {
        return Err(format!(
            "took {elapsed:?}, deadline {:?}: {outcome:?}",
            scenario.timeout
        ));
    }
    Ok(())
}
