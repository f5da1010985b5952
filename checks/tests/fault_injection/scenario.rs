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
    /// Forks; the child returns into the run (it must end there), the
    /// hook waits for it.
    Forks,
    /// Sends SIGTERM to its own pid and raises SIGINT (must not force).
    SignalsSelf,
    /// Its closure's `Drop` unregisters another hook, mid-run.
    DropUnregisters,
    /// A sync hook with a time limit (100 ms) that returns at once.
    Limited,
    /// A sync hook with a time limit (100 ms) that never returns: the run
    /// leaves it behind and goes on.
    LimitedHang,
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
    /// A thread panics while holding a lock the first hook needs.
    PanicHoldingLock,
    /// The app replaced the panic hook with one that calls `handle_panic`;
    /// a thread panics.
    ForeignPanicHook,
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
        let trigger = match rng.below(14) {
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
            11 => Trigger::ProcessExitFromThreadDuringSignalRun(signal(rng)),
            12 => Trigger::PanicHoldingLock,
            _ => Trigger::ForeignPanicHook,
        };
        let hooks = (0..1 + rng.below(6))
            .map(|_| match rng.below(26) {
                0..=5 => Hook::Sync,
                6..=10 => Hook::Async(rng.below(50) as u64),
                11 => Hook::SyncPanic,
                12 => Hook::AsyncPanic,
                13 => Hook::SyncHang,
                14 => Hook::AsyncHang,
                15 | 16 => Hook::Registers,
                17 => Hook::CallsExit,
                18 => Hook::CallsProcessExit,
                19 => Hook::Forks,
                20 => Hook::SignalsSelf,
                21 => Hook::DropUnregisters,
                22..=24 => Hook::Limited,
                _ => Hook::LimitedHang,
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
            Trigger::PanicHoldingLock => "PanicHoldingLock".into(),
            Trigger::ForeignPanicHook => "ForeignPanicHook".into(),
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
            Trigger::PanicHoldingLock => "panic holding a lock the hooks need",
            Trigger::ForeignPanicHook => "panic under the app's own panic hook",
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
            Trigger::PanicMain
            | Trigger::PanicThreads(_)
            | Trigger::PanicHoldingLock
            | Trigger::ForeignPanicHook => vec![101],
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
            .position(|h| matches!(h, Hook::SyncHang | Hook::CallsExit | Hook::CallsProcessExit))
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
                    Hook::AsyncHang
                        | Hook::SyncHang
                        | Hook::LimitedHang
                        | Hook::CallsExit
                        | Hook::CallsProcessExit
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
                    "Forks" => Hook::Forks,
                    "SignalsSelf" => Hook::SignalsSelf,
                    "DropUnregisters" => Hook::DropUnregisters,
                    "Limited" => Hook::Limited,
                    "LimitedHang" => Hook::LimitedHang,
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
            "PanicHoldingLock" => Trigger::PanicHoldingLock,
            "ForeignPanicHook" => Trigger::ForeignPanicHook,
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
