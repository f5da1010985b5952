//! Fault injection: the contract under randomized storms, faults and timing.
//!
//! ```text
//! cargo test --test fault_injection                          # 100 runs
//! EXIT_HOOK_FAULT_RUNS=1000 cargo test --test fault_injection
//! EXIT_HOOK_FAULT_SEED=42 cargo test --test fault_injection  # replay a seed
//! ```
//!
//! Each run draws a scenario from a seeded generator: a mix of hooks (ok,
//! slow, panicking, hanging, registering more hooks, calling
//! `exit_hook::exit` or `std::process::exit`), a trigger (a signal, a storm
//! of mixed signals, a signal while hooks register, panics on one or many
//! threads, `main` returning, `std::process::exit`, `exit_hook::exit`, a
//! panic during a signal run, a signal during a panic run, `main` returning
//! or another thread calling `std::process::exit` during a signal run), a
//! deadline and force on or off. The child (this binary again, with the
//! scenario in `EXIT_HOOK_FAULT`) sets it up; the driver sends the signals.
//!
//! Every run is checked: no hook line twice; the hooks the contract says must
//! run did; the status is one the contract allows; no abort and no death by
//! a signal; no run longer than its deadline plus a margin. The totals, the
//! distribution of (exit − deadline) for runs cut at the deadline, and every
//! failure with its scenario are printed.

#[cfg(unix)]
#[allow(
    dead_code,
    reason = "the conformance suite's harness; this suite uses part of it"
)]
#[path = "conformance/harness.rs"]
mod harness;

#[cfg(unix)]
fn main() {
    if let Ok(spec) = std::env::var("EXIT_HOOK_FAULT") {
        child::run(&scenario::Scenario::parse(&spec));
    } else {
        driver::main();
    }
}

#[cfg(not(unix))]
fn main() {
    println!("the fault-injection suite runs on Unix");
}

#[cfg(unix)]
mod scenario {
    //! A scenario, its text form (passed to the child), and what the contract
    //! allows for it.

    use std::time::Duration;

    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Hook {
        Sync,
        Async(u64),
        SyncPanic,
        AsyncPanic,
        SyncHang,
        AsyncHang,
        Registers,
        CallsExit,
        CallsProcessExit,
    }

    #[derive(Clone, Debug, PartialEq)]
    pub enum Trigger {
        Signal(i32),
        Storm(Vec<i32>),
        SignalWhileRegistering(i32),
        PanicMain,
        PanicThreads(usize),
        Return,
        ProcessExit(i32),
        ExitHookExit(i32),
        PanicDuringSignalRun(i32),
        SignalDuringPanicRun(i32),
        ReturnDuringSignalRun(i32),
        ProcessExitFromThreadDuringSignalRun(i32),
    }

    #[derive(Clone, Debug, PartialEq)]
    pub struct Scenario {
        pub hooks: Vec<Hook>,
        pub trigger: Trigger,
        pub timeout: Duration,
        pub force: bool,
    }

    const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

    impl Scenario {
        /// A random scenario from `rng`.
        pub fn draw(rng: &mut Rng) -> Scenario {
            let signal = |rng: &mut Rng| SIGNALS[rng.below(3)];
            let trigger = match rng.below(12) {
                0 => Trigger::Signal(signal(rng)),
                1 => {
                    let n = 2 + rng.below(300);
                    Trigger::Storm((0..n).map(|_| SIGNALS[rng.below(3)]).collect())
                }
                2 => Trigger::SignalWhileRegistering(signal(rng)),
                3 => Trigger::PanicMain,
                4 => Trigger::PanicThreads(2 + rng.below(7)),
                5 => Trigger::Return,
                6 => Trigger::ProcessExit(1 + rng.below(100) as i32),
                7 => Trigger::ExitHookExit(1 + rng.below(100) as i32),
                8 => Trigger::PanicDuringSignalRun(signal(rng)),
                9 => Trigger::SignalDuringPanicRun(signal(rng)),
                10 => Trigger::ReturnDuringSignalRun(signal(rng)),
                _ => Trigger::ProcessExitFromThreadDuringSignalRun(signal(rng)),
            };
            let hooks = (0..1 + rng.below(6))
                .map(|_| match rng.below(20) {
                    0..=5 => Hook::Sync,
                    6..=10 => Hook::Async(rng.below(50) as u64),
                    11 => Hook::SyncPanic,
                    12 => Hook::AsyncPanic,
                    13 => Hook::SyncHang,
                    14 => Hook::AsyncHang,
                    15 | 16 => Hook::Registers,
                    17 => Hook::CallsExit,
                    _ => Hook::CallsProcessExit,
                })
                .collect();
            Scenario {
                hooks,
                trigger,
                timeout: Duration::from_millis(300 + rng.below(500) as u64),
                force: rng.below(2) == 0,
            }
        }

        /// The text form, as `hooks;trigger;timeout ms;force`, with `:`
        /// between a variant and its numbers and `,` between hooks.
        pub fn text(&self) -> String {
            let hooks: Vec<String> = self
                .hooks
                .iter()
                .map(|h| match h {
                    Hook::Async(ms) => format!("Async:{ms}"),
                    other => format!("{other:?}"),
                })
                .collect();
            let trigger = match &self.trigger {
                Trigger::Storm(signals) => {
                    let signals: Vec<String> = signals.iter().map(ToString::to_string).collect();
                    format!("Storm:{}", signals.join(":"))
                }
                Trigger::PanicMain => "PanicMain".into(),
                Trigger::Return => "Return".into(),
                other => format!("{other:?}").replace('(', ":").replace(')', ""),
            };
            format!(
                "{};{trigger};{};{}",
                hooks.join(","),
                self.timeout.as_millis(),
                self.force
            )
        }

        /// Parses [`text`](Self::text) back (the child's side).
        pub fn parse(text: &str) -> Scenario {
            parse::scenario(text)
        }

        /// Which kind of scenario, for the totals.
        pub fn kind(&self) -> &'static str {
            match self.trigger {
                Trigger::Signal(_) => "signal",
                Trigger::Storm(_) => "signal storm",
                Trigger::SignalWhileRegistering(_) => "signal while hooks register",
                Trigger::PanicMain => "panic on main",
                Trigger::PanicThreads(_) => "panics on many threads",
                Trigger::Return => "main returns",
                Trigger::ProcessExit(_) => "std::process::exit",
                Trigger::ExitHookExit(_) => "exit_hook::exit",
                Trigger::PanicDuringSignalRun(_) => "panic during a signal run",
                Trigger::SignalDuringPanicRun(_) => "signal during a panic run",
                Trigger::ReturnDuringSignalRun(_) => "main returns during a signal run",
                Trigger::ProcessExitFromThreadDuringSignalRun(_) => {
                    "process::exit from a thread mid-run"
                }
            }
        }

        /// The exit codes the contract allows.
        pub fn allowed_codes(&self) -> Vec<i32> {
            match &self.trigger {
                Trigger::Signal(s)
                | Trigger::SignalWhileRegistering(s)
                | Trigger::PanicDuringSignalRun(s)
                | Trigger::ReturnDuringSignalRun(s)
                | Trigger::ProcessExitFromThreadDuringSignalRun(s) => vec![128 + s],
                Trigger::Storm(signals) => {
                    let mut codes: Vec<i32> = signals.iter().map(|s| 128 + s).collect();
                    codes.sort_unstable();
                    codes.dedup();
                    codes
                }
                Trigger::PanicMain | Trigger::PanicThreads(_) => vec![101],
                // Forced by the signal, or the run ended before it arrived.
                Trigger::SignalDuringPanicRun(s) if self.force => vec![101, 128 + s],
                Trigger::SignalDuringPanicRun(_) => vec![101],
                Trigger::Return => vec![0],
                Trigger::ProcessExit(n) | Trigger::ExitHookExit(n) => vec![*n],
            }
        }

        /// The hooks (by index) that must have started. Hooks start in
        /// registration order, async hooks before a later sync hook; a hook
        /// that hangs (sync) or ends the process stops the ones after it. A
        /// second signal may cut the run anywhere when forcing is on, and a
        /// signal while hooks register may come before any of them.
        pub fn must_start(&self) -> Vec<usize> {
            let cut_anywhere = matches!(self.trigger, Trigger::SignalWhileRegistering(_))
                || (self.force
                    && matches!(
                        self.trigger,
                        Trigger::Storm(_) | Trigger::SignalDuringPanicRun(_)
                    ));
            if cut_anywhere {
                return Vec::new();
            }
            let stop = self
                .hooks
                .iter()
                .position(|h| {
                    matches!(h, Hook::SyncHang | Hook::CallsExit | Hook::CallsProcessExit)
                })
                .map_or(self.hooks.len(), |i| i + 1);
            (0..stop).collect()
        }

        /// Whether every hook must also have finished, and every hook that a
        /// hook registered must have run: nothing hangs, exits or forces.
        pub fn must_complete(&self) -> bool {
            !self.must_start().is_empty()
                && self.must_start().len() == self.hooks.len()
                && !self.hooks.iter().any(|h| {
                    matches!(
                        h,
                        Hook::AsyncHang | Hook::SyncHang | Hook::CallsExit | Hook::CallsProcessExit
                    )
                })
        }

        /// For a run started by a signal (so the driver knows when it
        /// started) that is expected to end at its deadline: which kind of
        /// hook holds it there.
        pub fn cut_at_deadline(&self) -> Option<&'static str> {
            let signal_run = matches!(
                self.trigger,
                Trigger::Signal(_)
                    | Trigger::ReturnDuringSignalRun(_)
                    | Trigger::PanicDuringSignalRun(_)
            ) || (!self.force && matches!(self.trigger, Trigger::Storm(_)));
            if !signal_run {
                return None;
            }
            // In order: a stuck async hook holds the run but lets the later
            // hooks start; a stuck sync hook stops them; a hook that exits
            // ends the run early.
            let mut async_stuck = false;
            for hook in &self.hooks {
                match hook {
                    Hook::AsyncHang => async_stuck = true,
                    Hook::SyncHang => {
                        return Some(if async_stuck {
                            "async and a sync"
                        } else {
                            "sync"
                        });
                    }
                    Hook::CallsExit | Hook::CallsProcessExit => return None,
                    _ => {}
                }
            }
            async_stuck.then_some("async")
        }
    }

    /// xorshift64*: small, seeded, reproducible.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.max(1))
        }

        pub fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }
    }

    mod parse {
        //! The inverse of [`Scenario::text`].

        use super::*;

        pub fn scenario(text: &str) -> Scenario {
            let [hooks, trigger, timeout, force] = text.split(';').collect::<Vec<_>>()[..] else {
                panic!("not a scenario: {text}");
            };
            let hooks = hooks
                .split(',')
                .map(|hook| match hook.split_once(':') {
                    Some(("Async", ms)) => Hook::Async(ms.parse().unwrap()),
                    _ => match hook {
                        "Sync" => Hook::Sync,
                        "SyncPanic" => Hook::SyncPanic,
                        "AsyncPanic" => Hook::AsyncPanic,
                        "SyncHang" => Hook::SyncHang,
                        "AsyncHang" => Hook::AsyncHang,
                        "Registers" => Hook::Registers,
                        "CallsExit" => Hook::CallsExit,
                        "CallsProcessExit" => Hook::CallsProcessExit,
                        other => panic!("unknown hook {other:?}"),
                    },
                })
                .collect();
            let mut parts = trigger.split(':');
            let name = parts.next().unwrap();
            let numbers: Vec<i32> = parts.map(|n| n.parse().unwrap()).collect();
            let n = numbers.first().copied().unwrap_or_default();
            let trigger = match name {
                "Signal" => Trigger::Signal(n),
                "Storm" => Trigger::Storm(numbers),
                "SignalWhileRegistering" => Trigger::SignalWhileRegistering(n),
                "PanicMain" => Trigger::PanicMain,
                "PanicThreads" => Trigger::PanicThreads(n as usize),
                "Return" => Trigger::Return,
                "ProcessExit" => Trigger::ProcessExit(n),
                "ExitHookExit" => Trigger::ExitHookExit(n),
                "PanicDuringSignalRun" => Trigger::PanicDuringSignalRun(n),
                "SignalDuringPanicRun" => Trigger::SignalDuringPanicRun(n),
                "ReturnDuringSignalRun" => Trigger::ReturnDuringSignalRun(n),
                "ProcessExitFromThreadDuringSignalRun" => {
                    Trigger::ProcessExitFromThreadDuringSignalRun(n)
                }
                other => panic!("unknown trigger {other:?}"),
            };
            Scenario {
                hooks,
                trigger,
                timeout: Duration::from_millis(timeout.parse().unwrap()),
                force: force == "true",
            }
        }
    }
}

#[cfg(unix)]
mod child {
    //! The child's side: set up the scenario, then do what its trigger needs.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    use crate::scenario::{Hook, Scenario, Trigger};

    static MID_RUN: AtomicBool = AtomicBool::new(false);

    fn register(index: usize, hook: Hook) {
        match hook {
            Hook::Sync => drop(exit_hook::add(move |_| say(index, true))),
            Hook::Async(ms) => drop(exit_hook::add_async(move |_| async move {
                println!("start {index}");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                println!("end {index}");
            })),
            Hook::SyncPanic => drop(exit_hook::add(move |_| {
                println!("start {index}");
                panic!("hook {index}");
            })),
            Hook::AsyncPanic => drop(exit_hook::add_async(move |_| async move {
                println!("start {index}");
                panic!("hook {index}");
            })),
            Hook::SyncHang => drop(exit_hook::add(move |_| {
                println!("start {index}");
                loop {
                    thread::sleep(Duration::from_secs(1));
                }
            })),
            Hook::AsyncHang => drop(exit_hook::add_async(move |_| async move {
                println!("start {index}");
                std::future::pending::<()>().await;
            })),
            Hook::Registers => drop(exit_hook::add(move |_| {
                say(index, false);
                exit_hook::add(move |_| println!("late {index}"));
                println!("end {index}");
            })),
            Hook::CallsExit => drop(exit_hook::add(move |_| {
                println!("start {index}");
                exit_hook::exit(77);
            })),
            Hook::CallsProcessExit => drop(exit_hook::add(move |_| {
                println!("start {index}");
                std::process::exit(78);
            })),
        }
    }

    fn say(index: usize, end: bool) {
        println!("start {index}");
        if end {
            println!("end {index}");
        }
    }

    pub fn run(scenario: &Scenario) {
        exit_hook::Builder::new()
            .timeout(scenario.timeout)
            .force_on_second_signal(scenario.force)
            .install()
            .unwrap();
        let mid_run_trigger = matches!(
            scenario.trigger,
            Trigger::PanicDuringSignalRun(_)
                | Trigger::ReturnDuringSignalRun(_)
                | Trigger::ProcessExitFromThreadDuringSignalRun(_)
        );
        if mid_run_trigger {
            // The first hook lets the trigger happen while the run is going.
            exit_hook::add(|_| {
                MID_RUN.store(true, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(50));
            });
        }
        if let Trigger::SignalWhileRegistering(_) = scenario.trigger {
            println!("REGISTERING");
            for (index, hook) in scenario.hooks.iter().enumerate() {
                register(index, *hook);
                thread::sleep(Duration::from_millis(1));
            }
            wait_forever();
        }
        for (index, hook) in scenario.hooks.iter().enumerate() {
            register(index, *hook);
        }
        match scenario.trigger {
            Trigger::PanicMain => panic!("main"),
            Trigger::PanicThreads(n) => {
                let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
                for i in 0..n {
                    let barrier = barrier.clone();
                    thread::spawn(move || {
                        barrier.wait();
                        panic!("thread {i}");
                    });
                }
                wait_forever();
            }
            Trigger::Return => {}
            Trigger::ProcessExit(n) => std::process::exit(n),
            Trigger::ExitHookExit(n) => exit_hook::exit(n),
            Trigger::SignalDuringPanicRun(_) => panic!("main"),
            Trigger::PanicDuringSignalRun(_) => {
                println!("READY");
                wait_mid_run();
                panic!("main, mid-run");
            }
            Trigger::ReturnDuringSignalRun(_) => {
                println!("READY");
                wait_mid_run();
            }
            Trigger::ProcessExitFromThreadDuringSignalRun(_) => {
                println!("READY");
                wait_mid_run();
                thread::spawn(|| std::process::exit(5)).join().unwrap();
            }
            Trigger::Signal(_) | Trigger::Storm(_) | Trigger::SignalWhileRegistering(_) => {
                println!("READY");
                wait_forever();
            }
        }
    }

    fn wait_mid_run() {
        while !MID_RUN.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_forever() -> ! {
        loop {
            thread::park();
        }
    }
}

#[cfg(unix)]
mod driver {
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
                        let (verdict, overshoot) = run_one(scenario);
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
            | Trigger::ExitHookExit(_) => {}
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
                let ends = matches!(hook, Hook::Sync | Hook::Async(_) | Hook::Registers);
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
}
