//! The machine's decisions, driven with a fake clock and fake children:
//! each test feeds inputs at chosen times and looks at the effects. The
//! conformance suite (`tests/conformance/`) proves the same with real
//! processes; these reach the races it cannot reach on purpose.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::*;
use crate::policy::Policy;

/// A machine and the children it started: a spawn is answered with the
/// next pid (from 100), or with `fail_spawns`' next failure.
struct Harness {
    machine: Machine,
    t0: Instant,
    next_pid: u32,
    fail_spawns: Vec<SpawnFailed>,
    /// Every worker started: (slot, purpose, pid).
    spawned: Vec<(usize, Purpose, u32)>,
}

fn settings(workers: usize) -> Settings {
    Settings {
        workers,
        policy: Policy::default(),
        wait_ready: true,
        listen_timeout: Duration::from_secs(10),
        kill_timeout: Duration::from_secs(15),
        watchdog: None,
        max_memory: None,
        holds_sockets: true,
    }
}

impl Harness {
    /// Started at 0 ms: every slot's first worker spawned.
    fn new(settings: Settings) -> Harness {
        let t0 = Instant::now();
        let mut harness = Harness {
            machine: Machine::new(settings, t0),
            t0,
            next_pid: 100,
            fail_spawns: Vec::new(),
            spawned: Vec::new(),
        };
        harness.feed(0, Input::Tick);
        harness
    }

    /// `workers` ready, started at 0 ms and said `READY=1` at 10 ms.
    fn serving(workers: usize) -> Harness {
        let mut harness = Harness::new(settings(workers));
        for pid in harness.pids() {
            harness.feed(10, said(pid, Message::Ready));
        }
        harness
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feeds `input` at `ms`, answering spawns as the shell does (before
    /// the effects after them); returns every effect but the spawns.
    fn feed(&mut self, ms: u64, input: Input) -> Vec<Effect> {
        let now = self.at(ms);
        let mut pending: Vec<Effect> = self.machine.handle(now, input);
        pending.reverse();
        let mut done = Vec::new();
        while let Some(effect) = pending.pop() {
            let Effect::Spawn { slot, purpose } = effect else {
                done.push(effect);
                continue;
            };
            let result = if self.fail_spawns.is_empty() {
                let pid = self.next_pid;
                self.next_pid += 1;
                self.spawned.push((slot, purpose, pid));
                Ok(pid)
            } else {
                Err(self.fail_spawns.remove(0))
            };
            let more = self.machine.handle(
                now,
                Input::Spawned {
                    slot,
                    purpose,
                    result,
                },
            );
            pending.extend(more.into_iter().rev());
        }
        done
    }

    /// The pids the machine has, oldest first.
    fn pids(&self) -> Vec<u32> {
        self.machine.workers.iter().map(|w| w.pid).collect()
    }

    fn role(&self, pid: u32) -> Option<Role> {
        let worker = self.machine.workers.iter().find(|w| w.pid == pid)?;
        Some(worker.role)
    }

    /// The serving worker of each slot.
    fn serving_pids(&self) -> Vec<(usize, u32)> {
        let mut serving: Vec<_> = self
            .machine
            .workers
            .iter()
            .filter(|w| w.role == Role::Serving)
            .map(|w| (w.slot, w.pid))
            .collect();
        serving.sort_unstable();
        serving
    }

    /// The last worker started.
    fn newest(&self) -> u32 {
        self.spawned.last().expect("a worker started").2
    }
}

fn said(pid: u32, message: Message) -> Input {
    Input::Said {
        pid,
        message,
        refused: None,
    }
}

fn exited(pid: u32, code: i32) -> Input {
    Input::Exited {
        pid,
        status: ExitStatus::from_raw(code << 8),
    }
}

fn killed(pid: u32, signal: i32) -> Input {
    Input::Exited {
        pid,
        status: ExitStatus::from_raw(signal),
    }
}

fn events(effects: &[Effect]) -> Vec<&Event> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Emit(event) => Some(event),
            _ => None,
        })
        .collect()
}

fn has(effects: &[Effect], wanted: impl Fn(&Event) -> bool) -> bool {
    events(effects).into_iter().any(wanted)
}

fn asked_to_stop(effects: &[Effect]) -> Vec<u32> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::AskToStop { pid } => Some(*pid),
            _ => None,
        })
        .collect()
}

/// Replaces slot after slot, each once its replacement is ready, retiring
/// the old worker then; says `Reloaded` after the last slot only.
#[test]
fn a_reload_replaces_the_slots_in_order_ready_first() {
    let mut h = Harness::serving(2);
    let [old0, old1] = h.pids()[..] else { panic!() };
    h.feed(1000, Input::Reload);
    let effects = h.feed(1000, Input::Tick);
    assert!(has(&effects, |e| matches!(
        e,
        Event::Reloading { workers: 2 }
    )));
    let new0 = h.newest();
    assert_eq!(h.spawned.last(), Some(&(0, Purpose::Replace, new0)));
    assert!(
        asked_to_stop(&effects).is_empty(),
        "nobody stops before it is replaced"
    );
    h.feed(1500, said(new0, Message::Ready));
    let effects = h.feed(1500, Input::Tick);
    assert_eq!(asked_to_stop(&effects), [old0]);
    assert!(!has(&effects, |e| matches!(e, Event::Reloaded)));
    let new1 = h.newest();
    assert_eq!(h.spawned.last(), Some(&(1, Purpose::Replace, new1)));
    h.feed(2000, said(new1, Message::Ready));
    let effects = h.feed(2000, Input::Tick);
    assert_eq!(asked_to_stop(&effects), [old1]);
    assert!(has(&effects, |e| matches!(e, Event::Reloaded)));
    assert_eq!(h.serving_pids(), [(0, new0), (1, new1)]);
    // The old workers retire: not restarted when they exit.
    h.feed(2100, exited(old0, 0));
    h.feed(2100, killed(old1, 15));
    let effects = h.feed(2100, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(h.spawned.len(), 4);
}

/// Another slot's worker crashing during a reload is restarted by its
/// policy, and the reload goes on.
#[test]
fn a_crash_of_another_slot_during_a_reload_restarts_it_and_the_reload_goes_on() {
    let mut h = Harness::serving(2);
    let [_, old1] = h.pids()[..] else { panic!() };
    h.feed(5000, Input::Reload);
    h.feed(5000, Input::Tick);
    let new0 = h.newest();
    let effects = h.feed(6000, exited(old1, 1));
    assert!(has(&effects, |e| matches!(
        e,
        Event::Restarting { restarts: 1, .. }
    )));
    h.feed(6000, Input::Tick);
    let restarted1 = h.newest();
    assert_eq!(h.spawned.last(), Some(&(1, Purpose::Serve, restarted1)));
    h.feed(6500, said(new0, Message::Ready));
    h.feed(6500, Input::Tick);
    let new1 = h.newest();
    assert_eq!(h.spawned.last(), Some(&(1, Purpose::Replace, new1)));
    h.feed(7000, said(new1, Message::Ready));
    let effects = h.feed(7000, Input::Tick);
    assert_eq!(asked_to_stop(&effects), [restarted1]);
    assert!(has(&effects, |e| matches!(e, Event::Reloaded)));
}

/// A replacement that exits before it is ready fails the reload: the old
/// worker was never asked to stop, and the next slots are left alone.
#[test]
fn a_replacement_exiting_before_ready_fails_the_reload_and_the_old_worker_serves_on() {
    let mut h = Harness::serving(2);
    let before = h.serving_pids();
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    let new0 = h.newest();
    let effects = h.feed(1200, exited(new0, 1));
    let [Event::ReloadFailed { reason }] = &events(&effects)[..] else {
        panic!("{effects:?}")
    };
    assert!(
        reason.contains("exited") && reason.contains("before it was ready"),
        "{reason}"
    );
    let effects = h.feed(1200, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(h.serving_pids(), before);
    assert_eq!(h.spawned.len(), 3, "no restart of a failed replacement");
    assert!(h.machine.reloading.is_none());
}

/// A replacement not ready at the listen timeout is killed; the reload
/// fails; the old worker serves on.
#[test]
fn a_replacement_late_at_the_listen_timeout_is_killed_and_the_reload_fails() {
    let mut h = Harness::serving(1);
    let before = h.serving_pids();
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    let new0 = h.newest();
    assert_eq!(h.machine.next_due(), Some(h.at(11_000)));
    let effects = h.feed(10_999, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
    let effects = h.feed(11_000, Input::Tick);
    assert_eq!(effects[0], Effect::Kill { pid: new0 });
    assert!(has(&effects, |e| matches!(e, Event::ReloadFailed { .. })));
    assert_eq!(h.serving_pids(), before);
    // Its exit, killed, changes nothing more.
    let effects = h.feed(11_010, killed(new0, 9));
    assert!(effects.is_empty(), "{effects:?}");
}

/// The old worker of the slot being replaced crashes meanwhile: its slot
/// restarts it, and once the replacement is ready the slot has one
/// worker, the replacement.
#[test]
fn the_old_worker_crashing_while_its_replacement_starts_leaves_one_worker() {
    let mut h = Harness::serving(1);
    let [old] = h.pids()[..] else { panic!() };
    h.feed(5000, Input::Reload);
    h.feed(5000, Input::Tick);
    let new = h.newest();
    h.feed(5100, exited(old, 1));
    h.feed(5100, Input::Tick);
    let restarted = h.newest();
    assert_ne!(restarted, new);
    h.feed(5200, said(new, Message::Ready));
    let effects = h.feed(5200, Input::Tick);
    assert_eq!(asked_to_stop(&effects), [restarted]);
    assert_eq!(h.serving_pids(), [(0, new)]);
}

/// A replacement that said ready and exited before the machine's tick saw
/// it did replace the old worker, and its slot restarts it.
#[test]
fn a_replacement_ready_and_gone_before_the_tick_is_promoted_then_restarted() {
    let mut h = Harness::serving(1);
    let [old] = h.pids()[..] else { panic!() };
    h.feed(5000, Input::Reload);
    h.feed(5000, Input::Tick);
    let new = h.newest();
    h.feed(7000, said(new, Message::Ready));
    let effects = h.feed(7000, exited(new, 1));
    assert_eq!(asked_to_stop(&effects), [old]);
    assert!(has(&effects, |e| matches!(e, Event::Reloaded)));
    assert!(has(&effects, |e| matches!(e, Event::Restarting { .. })));
    h.feed(7000, Input::Tick);
    assert_eq!(
        h.spawned.last().map(|s| (s.0, s.1)),
        Some((0, Purpose::Serve))
    );
}

/// Once stopping, nothing starts: not the reload's next replacement, not
/// a restart of a worker that exits, not a slot due.
#[test]
fn a_stop_during_a_reload_starts_nothing_more() {
    let mut h = Harness::serving(2);
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    let new0 = h.newest();
    let started = h.spawned.len();
    h.feed(1100, Input::Stop);
    h.feed(1200, said(new0, Message::Ready));
    for pid in h.pids() {
        let effects = h.feed(1300, exited(pid, 0));
        assert!(!has(&effects, |e| matches!(
            e,
            Event::Restarting { .. } | Event::ReloadFailed { .. }
        )));
    }
    let effects = h.feed(1300, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(h.spawned.len(), started);
    assert!(h.machine.workers.is_empty());
    assert_eq!(h.machine.next_due(), None, "nothing to wake for");
    assert_eq!(h.machine.gave_up(), None, "stopped, not given up");
}

/// A stop during a restart: the old workers gone, no slot starts again.
#[test]
fn a_stop_during_a_restart_starts_nothing() {
    let mut h = Harness::serving(2);
    h.feed(1000, Input::Restart);
    let effects = h.feed(1000, Input::Tick);
    assert_eq!(asked_to_stop(&effects), h.pids());
    h.feed(1100, Input::Stop);
    for pid in h.pids() {
        h.feed(1200, exited(pid, 0));
    }
    let effects = h.feed(1200, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(h.spawned.len(), 2);
}

/// A restart asked during a reload abandons it, said as a failed reload;
/// every worker (the replacement too) is asked to stop once; the slots
/// start afresh only once all are gone.
#[test]
fn a_restart_during_a_reload_abandons_it_and_starts_when_all_are_gone() {
    let mut h = Harness::serving(2);
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    h.feed(1100, Input::Restart);
    let effects = h.feed(1100, Input::Tick);
    let [
        Event::ReloadFailed { reason },
        Event::Restart { workers: 3 },
    ] = &events(&effects)[..]
    else {
        panic!("{effects:?}")
    };
    assert_eq!(reason, "abandoned for a restart");
    let all = h.pids();
    assert_eq!(asked_to_stop(&effects), all);
    let started = h.spawned.len();
    for (i, pid) in all.iter().enumerate() {
        let effects = h.feed(1200, exited(*pid, 0));
        assert!(
            !has(&effects, |e| matches!(e, Event::ReloadFailed { .. })),
            "{effects:?}"
        );
        h.feed(1200, Input::Tick);
        let want = if i + 1 < all.len() {
            started
        } else {
            started + 2
        };
        assert_eq!(h.spawned.len(), want, "after {} exits", i + 1);
    }
    assert!(h.spawned[started..].iter().all(|s| s.1 == Purpose::Serve));
}

/// Reloads asked during a reload (SIGHUP, watched files, the control
/// socket, several times) make exactly one more reload, after it.
#[test]
fn reloads_asked_during_a_reload_make_exactly_one_more() {
    let mut h = Harness::serving(1);
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    for ms in [1100, 1200, 1300] {
        h.feed(ms, Input::Reload);
        let effects = h.feed(ms, Input::Tick);
        assert!(
            !has(&effects, |e| matches!(e, Event::Reloading { .. })),
            "{effects:?}"
        );
    }
    let first = h.newest();
    h.feed(1400, said(first, Message::Ready));
    // The queued one starts as the first ends, in the same turn.
    let effects = h.feed(1400, Input::Tick);
    let got = events(&effects);
    assert!(
        matches!(got[..], [Event::Reloaded, Event::Reloading { .. }]),
        "{got:?}"
    );
    let second = h.newest();
    assert_ne!(second, first);
    h.feed(1600, said(second, Message::Ready));
    h.feed(1600, Input::Tick);
    let effects = h.feed(1700, Input::Tick);
    assert!(effects.is_empty(), "one more, not three: {effects:?}");
    assert_eq!(h.spawned.len(), 3);
}

/// A worker that stopped saying `WATCHDOG=1` is replaced ready-first; its
/// replacement missing the listen timeout is killed, and the old worker
/// serves on until looked at again.
#[test]
fn a_watchdog_miss_replaces_the_worker_ready_first() {
    let mut h = Harness::new(Settings {
        watchdog: Some(Duration::from_secs(2)),
        ..settings(1)
    });
    let [old] = h.pids()[..] else { panic!() };
    h.feed(10, said(old, Message::Ready));
    h.feed(1500, said(old, Message::Watchdog));
    assert_eq!(h.machine.next_due(), Some(h.at(3500)));
    let effects = h.feed(3500, Input::Tick);
    assert!(has(
        &effects,
        |e| matches!(e, Event::Replacing { pid, .. } if *pid == old)
    ));
    let new = h.newest();
    assert_eq!(h.spawned.last(), Some(&(0, Purpose::Replace, new)));
    assert!(asked_to_stop(&effects).is_empty());
    let effects = h.feed(13_500, Input::Tick);
    assert_eq!(effects[0], Effect::Kill { pid: new });
    assert_eq!(h.serving_pids(), [(0, old)]);
    // Looked at again once the replacement had its chance: 2 s after it.
    let effects = h.feed(15_499, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
    let effects = h.feed(15_500, Input::Tick);
    assert!(
        has(&effects, |e| matches!(e, Event::Replacing { .. })),
        "{effects:?}"
    );
}

/// A failed health check during a reload waits for it to end, then
/// replaces the only worker (the one the reload started).
#[test]
fn a_failed_health_check_during_a_reload_waits_for_its_end() {
    let mut h = Harness::serving(1);
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    let new = h.newest();
    h.feed(1100, Input::Unhealthy("503".into()));
    let effects = h.feed(1100, Input::Tick);
    assert!(
        !has(&effects, |e| matches!(e, Event::Replacing { .. })),
        "{effects:?}"
    );
    h.feed(1200, said(new, Message::Ready));
    let effects = h.feed(1200, Input::Tick);
    let got = events(&effects);
    assert!(
        matches!(got[..], [Event::Reloaded, Event::Replacing { pid, reason }] if *pid == new && reason == "health check: 503"),
        "{got:?}"
    );
}

/// With several workers a failed health check reloads them all.
#[test]
fn a_failed_health_check_of_several_workers_reloads_them() {
    let mut h = Harness::serving(2);
    h.feed(1000, Input::Unhealthy("timed out".into()));
    let effects = h.feed(1000, Input::Tick);
    assert!(has(&effects, |e| matches!(e, Event::HealthFailed { .. })));
    assert!(has(&effects, |e| matches!(
        e,
        Event::Reloading { workers: 2 }
    )));
}

/// A worker whose memory passed the limit is replaced; the memory is read
/// again a second later.
#[test]
fn a_worker_over_its_memory_limit_is_replaced() {
    let mut h = Harness::new(Settings {
        max_memory: Some(50_000_000),
        ..settings(2)
    });
    let [a, b] = h.pids()[..] else { panic!() };
    for pid in [a, b] {
        h.feed(10, said(pid, Message::Ready));
    }
    let now = h.at(500);
    assert_eq!(h.machine.memory_due(now), Some(vec![a, b]));
    h.feed(
        500,
        Input::Memory(vec![(a, Some(10_000_000)), (b, Some(60_000_000))]),
    );
    assert_eq!(h.machine.memory_due(now), None);
    let effects = h.feed(500, Input::Tick);
    let [Event::Replacing { pid, reason }] = &events(&effects)[..] else {
        panic!("{effects:?}")
    };
    assert_eq!(*pid, b);
    assert!(
        reason.contains("60.0 MB") && reason.contains("50.0 MB"),
        "{reason}"
    );
    assert_eq!(
        h.spawned.last().map(|s| (s.0, s.1)),
        Some((1, Purpose::Replace))
    );
    assert_eq!(
        h.machine.memory_due(h.at(1500)),
        None,
        "not during the replacement"
    );
}

/// Slot 1 giving up while slot 0 is being replaced: the reload goes on,
/// the app lives on, and the reload's turn at slot 1 revives it.
#[test]
fn a_give_up_of_one_slot_during_a_reload_keeps_the_reload_and_the_app() {
    let mut h = Harness::new(Settings {
        policy: Policy {
            max_restarts: Some(0),
            ..Policy::default()
        },
        ..settings(2)
    });
    let [old0, old1] = h.pids()[..] else { panic!() };
    h.feed(10, said(old0, Message::Ready));
    h.feed(10, said(old1, Message::Ready));
    h.feed(5000, Input::Reload);
    h.feed(5000, Input::Tick);
    let new0 = h.newest();
    // No restart allowed: its slot gives up.
    let effects = h.feed(5500, exited(old1, 1));
    assert!(
        has(&effects, |e| matches!(e, Event::GaveUp { slot: 1, .. })),
        "{effects:?}"
    );
    assert_eq!(h.machine.gave_up(), None);
    h.feed(5600, said(new0, Message::Ready));
    h.feed(5600, Input::Tick);
    let new1 = h.newest();
    h.feed(5700, said(new1, Message::Ready));
    let effects = h.feed(5700, Input::Tick);
    assert!(has(&effects, |e| matches!(e, Event::Reloaded)));
    assert_eq!(h.serving_pids(), [(0, new0), (1, new1)]);
    assert!(h.machine.slots.iter().all(|slot| slot.given_up.is_none()));
}

/// Every slot given up, and no worker left: the machine is done, with the
/// first slot's reason, and says nothing of the last give-up (the
/// supervisor's end says it).
#[test]
fn every_slot_given_up_is_the_end() {
    let mut h = Harness::new(settings(2));
    let [a, b] = h.pids()[..] else { panic!() };
    let effects = h.feed(100, exited(a, 1));
    assert!(has(&effects, |e| matches!(
        e,
        Event::GaveUp { slot: 0, .. }
    )));
    let effects = h.feed(200, exited(b, 1));
    assert!(
        !has(&effects, |e| matches!(e, Event::GaveUp { .. })),
        "{effects:?}"
    );
    let spinning = StopReason::Spinning {
        uptime: Duration::from_millis(100),
    };
    assert_eq!(h.machine.gave_up(), Some(spinning));
    // A reload asked now starts nothing.
    h.feed(300, Input::Reload);
    let effects = h.feed(300, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
}

/// A start that fails is its slot's failure: a program not found gives
/// the slot up; the system's passing want (transient) is tried again.
#[test]
fn a_failed_start_is_decided_by_its_slots_policy() {
    let failure = |transient| SpawnFailed {
        reason: "cannot start app: no such file".into(),
        transient,
    };
    let t0 = Instant::now();
    let mut h = Harness {
        machine: Machine::new(settings(2), t0),
        t0,
        next_pid: 100,
        fail_spawns: vec![failure(false), failure(true)],
        spawned: Vec::new(),
    };
    let effects = h.feed(0, Input::Tick);
    let got: Vec<_> = events(&effects);
    assert!(
        matches!(
            got[..],
            [
                Event::StartFailed { slot: 0, .. },
                Event::GaveUp {
                    slot: 0,
                    reason: StopReason::CannotStart
                },
                Event::StartFailed { slot: 1, .. },
                Event::Restarting { restarts: 1, .. }
            ]
        ),
        "{got:?}"
    );
    assert_eq!(h.machine.next_due(), Some(h.at(1000)));
    h.feed(1000, Input::Tick);
    assert_eq!(h.spawned, [(1, Purpose::Serve, 100)]);
}

/// What a sender that may not speak for the worker says is reported as
/// refused and changes nothing.
#[test]
fn a_refused_ready_is_reported_and_not_believed() {
    let mut h = Harness::new(settings(1));
    let [pid] = h.pids()[..] else { panic!() };
    let effects = h.feed(
        10,
        Input::Said {
            pid,
            message: Message::Ready,
            refused: Some(4242),
        },
    );
    assert_eq!(
        events(&effects),
        [&Event::Refused {
            pid,
            sender: 4242,
            message: "READY=1".into()
        }]
    );
    assert!(!h.machine.workers[0].said_ready);
}

/// What is said for a worker already reaped changes nothing.
#[test]
fn said_for_a_reaped_worker_changes_nothing() {
    let mut h = Harness::serving(1);
    let [pid] = h.pids()[..] else { panic!() };
    h.feed(5000, exited(pid, 0));
    for message in [
        Message::Ready,
        Message::Stopping,
        Message::Extend(Duration::from_secs(5)),
        Message::Status("x".into()),
    ] {
        let effects = h.feed(5001, said(pid, message));
        assert!(effects.is_empty(), "{effects:?}");
    }
}

/// A retiring worker gone before its kill timeout is not killed when the
/// time comes; one still there is, once.
#[test]
fn the_kill_timeout_kills_only_who_is_still_there_and_once() {
    let mut h = Harness::serving(2);
    let [a, b] = h.pids()[..] else { panic!() };
    h.feed(1000, Input::Restart);
    h.feed(1000, Input::Tick);
    h.feed(2000, exited(a, 0));
    assert_eq!(h.machine.next_due(), Some(h.at(16_000)));
    let effects = h.feed(16_000, Input::Tick);
    assert_eq!(
        effects,
        [
            Effect::Kill { pid: b },
            Effect::Emit(Event::Killed { pid: b })
        ]
    );
    let effects = h.feed(17_000, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
}

/// `EXTEND_TIMEOUT_USEC=` moves the worker's kill time for the stop hook;
/// `STOPPING=1` is reported as draining.
#[test]
fn extend_timeout_asks_for_more_time() {
    let mut h = Harness::serving(1);
    let [pid] = h.pids()[..] else { panic!() };
    h.feed(1000, Input::Stop);
    let effects = h.feed(1000, said(pid, Message::Stopping));
    assert_eq!(events(&effects), [&Event::Draining { pid }]);
    let more = Duration::from_secs(30);
    let effects = h.feed(1010, said(pid, Message::Extend(more)));
    assert_eq!(
        effects,
        [
            Effect::Extend {
                pid,
                until: h.at(31_010)
            },
            Effect::Emit(Event::Extended { pid, more })
        ]
    );
}

/// At most ten reports a second of what a worker says; the rest is
/// counted and the count said when the second is over, even when nothing
/// more is said.
#[test]
fn chatter_is_reported_ten_times_a_second_and_the_rest_counted() {
    let mut h = Harness::serving(1);
    let [pid] = h.pids()[..] else { panic!() };
    let mut reported = 0;
    for n in 0..25 {
        let effects = h.feed(1000, said(pid, Message::Status(format!("step {n}"))));
        reported += events(&effects).len();
    }
    assert_eq!(reported, 10);
    assert_eq!(h.machine.next_due(), Some(h.at(2000)));
    let effects = h.feed(2000, Input::Tick);
    assert_eq!(events(&effects), [&Event::Quieted { pid, dropped: 15 }]);
    // A repeated status is not news.
    let effects = h.feed(3000, said(pid, Message::Status("step 24".into())));
    assert!(effects.is_empty(), "{effects:?}");
}

/// A serving worker that has not said `READY=1` at the listen timeout is
/// reported once, and serves on.
#[test]
fn a_worker_not_ready_at_the_listen_timeout_is_reported_once() {
    let mut h = Harness::new(settings(1));
    let [pid] = h.pids()[..] else { panic!() };
    assert_eq!(h.machine.next_due(), Some(h.at(10_000)));
    let effects = h.feed(10_000, Input::Tick);
    assert_eq!(
        events(&effects),
        [&Event::NotReady {
            pid,
            waited: Duration::from_secs(10)
        }]
    );
    assert_eq!(h.machine.next_due(), None);
    let effects = h.feed(20_000, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
}

/// Without `wait_ready`, a replacement is ready once up `min_uptime`: the
/// machine asks to be woken then.
#[test]
fn without_wait_ready_a_replacement_is_ready_after_min_uptime() {
    let mut h = Harness::new(Settings {
        wait_ready: false,
        ..settings(1)
    });
    let [old] = h.pids()[..] else { panic!() };
    h.feed(5000, Input::Reload);
    h.feed(5000, Input::Tick);
    assert_eq!(h.machine.next_due(), Some(h.at(6000)));
    let effects = h.feed(5999, Input::Tick);
    assert!(effects.is_empty(), "{effects:?}");
    let effects = h.feed(6000, Input::Tick);
    assert_eq!(asked_to_stop(&effects), [old]);
}

/// SIGQUIT: every worker counts as killed (the shell kills them), and no
/// kill timer is left to wake for.
#[test]
fn force_counts_every_worker_killed() {
    let mut h = Harness::serving(2);
    h.feed(1000, Input::Restart);
    h.feed(1000, Input::Tick);
    let effects = h.feed(1100, Input::Force);
    assert_eq!(events(&effects), [&Event::Forced]);
    assert_eq!(h.machine.next_due(), None, "no kill timer left");
    h.feed(1100, Input::Stop);
    assert!(
        h.pids()
            .iter()
            .all(|&pid| matches!(h.role(pid), Some(Role::Retiring { killed: true, .. })))
    );
}

/// The view for `status`: a replacement shows, the old worker retiring
/// shows as stopping, and the reload as replacing.
#[test]
fn the_view_shows_a_reload_going_on() {
    let mut h = Harness::serving(1);
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    let new = h.newest();
    h.feed(1100, said(new, Message::Ready));
    h.feed(1100, said(new, Message::Status("warm".into())));
    h.feed(1100, Input::Tick);
    let (view, replacing) = h.machine.view();
    assert!(!replacing, "one slot: the reload is over");
    let [old, new_seen] = &view[..] else {
        panic!("{view:?}")
    };
    assert!(old.stopping && !new_seen.stopping);
    assert_eq!(new_seen.status.as_deref(), Some("warm"));
    assert!(new_seen.said_ready);
}

fn replies(effects: &[Effect]) -> Vec<(u64, Result<(), String>)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Reply { ticket, outcome } => Some((ticket.0, outcome.result.clone())),
            _ => None,
        })
        .collect()
}

/// The one reply of `effects`, to `ticket`, a refusal: its reason.
fn refused(effects: &[Effect], ticket: u64) -> String {
    match &replies(effects)[..] {
        [(got, Err(reason))] if *got == ticket => reason.clone(),
        _ => panic!("not one refusal to {ticket}: {effects:?}"),
    }
}

fn command(ticket: u64, command: Command) -> Input {
    Input::Command {
        ticket: Ticket(ticket),
        command,
    }
}

/// A reload asked while one goes is answered by the reload that runs
/// after it, not by the one going; requests made meanwhile share it.
#[test]
fn each_reload_request_is_answered_by_its_own_reload() {
    let mut h = Harness::serving(1);
    h.feed(1000, command(1, Command::Reload));
    h.feed(1000, Input::Tick);
    let first = h.newest();
    h.feed(1100, command(2, Command::Reload));
    h.feed(1150, command(3, Command::Reload));
    h.feed(1200, said(first, Message::Ready));
    let effects = h.feed(1200, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))], "{effects:?}");
    let second = h.newest();
    assert_ne!(second, first, "the queued reload started");
    h.feed(1300, said(second, Message::Ready));
    let effects = h.feed(1300, Input::Tick);
    assert_eq!(replies(&effects), [(2, Ok(())), (3, Ok(()))]);
}

/// A failed reload answers its requests with the reason; the one queued
/// behind it gets its own outcome.
#[test]
fn a_failed_reload_answers_with_its_reason() {
    let mut h = Harness::serving(1);
    h.feed(1000, command(1, Command::Reload));
    h.feed(1000, Input::Tick);
    let broken = h.newest();
    h.feed(1100, command(2, Command::Reload));
    let effects = h.feed(1200, exited(broken, 1));
    let reason = refused(&effects, 1);
    assert!(reason.contains("before it was ready"), "{reason}");
    h.feed(1200, Input::Tick);
    let effects = h.feed(11_200, Input::Tick);
    let reason = refused(&effects, 2);
    assert!(reason.contains("not ready within 10000 ms"), "{reason}");
}

/// A restart asked during a reload: the reload's requests (going and
/// queued) are told it was abandoned; the restart's is answered once every
/// slot's new worker is ready.
#[test]
fn a_restart_during_a_reload_answers_both() {
    let mut h = Harness::serving(2);
    h.feed(1000, command(1, Command::Reload));
    h.feed(1000, Input::Tick);
    h.feed(1050, command(2, Command::Reload));
    h.feed(1100, command(3, Command::Restart));
    let effects = h.feed(1100, Input::Tick);
    let abandoned = Err("abandoned for a restart".to_owned());
    assert_eq!(
        replies(&effects),
        [(1, abandoned.clone()), (2, abandoned)],
        "{effects:?}"
    );
    for pid in h.pids() {
        h.feed(1200, exited(pid, 0));
    }
    h.feed(1200, Input::Tick);
    let [a, b] = h.pids()[..] else { panic!() };
    h.feed(1300, said(a, Message::Ready));
    let effects = h.feed(1300, Input::Tick);
    assert!(
        replies(&effects).is_empty(),
        "one of two ready: {effects:?}"
    );
    h.feed(1400, said(b, Message::Ready));
    let effects = h.feed(1400, Input::Tick);
    assert_eq!(replies(&effects), [(3, Ok(()))]);
    let [Effect::Reply { outcome, .. }] = &effects[..] else {
        panic!("{effects:?}")
    };
    assert_eq!(
        outcome.note.as_deref(),
        Some("workers were being replaced (a reload): that reload is abandoned for the restart")
    );
}

/// A restart whose new worker gives up, or is not ready in time, is
/// answered with why.
#[test]
fn a_restart_that_does_not_come_up_says_why() {
    let mut h = Harness::serving(1);
    h.feed(1000, command(1, Command::Restart));
    h.feed(1000, Input::Tick);
    let [old] = h.pids()[..] else { panic!() };
    h.feed(1100, exited(old, 0));
    h.feed(1100, Input::Tick);
    let new = h.newest();
    // Exits at once: spinning, given up (no spin sleep, no backoff).
    h.feed(1150, exited(new, 1));
    let effects = h.feed(1150, Input::Tick);
    let reason = refused(&effects, 1);
    assert!(reason.starts_with("worker 0: gave up"), "{reason}");

    let mut h = Harness::serving(1);
    h.feed(1000, command(1, Command::Restart));
    h.feed(1000, Input::Tick);
    let [old] = h.pids()[..] else { panic!() };
    h.feed(1100, exited(old, 0));
    h.feed(1100, Input::Tick);
    assert_eq!(h.machine.next_due(), Some(h.at(11_100)));
    let effects = h.feed(11_100, Input::Tick);
    let reason = refused(&effects, 1);
    assert!(reason.contains("within 10000 ms"), "{reason}");
}

/// Without `wait_ready`, a restart is answered once the new workers have
/// been up `min_uptime`: the machine asks to be woken then.
#[test]
fn a_restart_without_wait_ready_is_answered_after_min_uptime() {
    let mut h = Harness::new(Settings {
        wait_ready: false,
        ..settings(1)
    });
    h.feed(5000, command(1, Command::Restart));
    h.feed(5000, Input::Tick);
    let [old] = h.pids()[..] else { panic!() };
    h.feed(5100, exited(old, 0));
    h.feed(5100, Input::Tick);
    assert_eq!(h.machine.next_due(), Some(h.at(6100)));
    let effects = h.feed(6100, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))]);
}

/// A stop answers every request still waiting, and those that come after.
#[test]
fn a_stop_answers_every_request_waiting() {
    let mut h = Harness::serving(1);
    h.feed(1000, command(1, Command::Reload));
    h.feed(1000, Input::Tick);
    h.feed(1100, command(2, Command::Reload));
    h.feed(1100, command(3, Command::Restart));
    let effects = h.feed(1200, Input::Stop);
    let stopping = Err(STOPPING.to_owned());
    let mut got = replies(&effects);
    got.sort_by_key(|(ticket, _)| *ticket);
    assert_eq!(
        got,
        [
            (1, stopping.clone()),
            (2, stopping.clone()),
            (3, stopping.clone())
        ]
    );
    let effects = h.feed(1300, command(4, Command::Reload));
    assert_eq!(replies(&effects), [(4, stopping)]);
}

/// Scaling up starts the new slots, leaves the others alone, and answers
/// once the new workers are ready.
#[test]
fn scaling_up_starts_new_slots_and_answers_when_they_are_ready() {
    let mut h = Harness::serving(2);
    let before = h.serving_pids();
    h.feed(1000, command(1, Command::Scale(4)));
    let effects = h.feed(1000, Input::Tick);
    assert!(has(&effects, |e| matches!(
        e,
        Event::Scaling { from: 2, to: 4 }
    )));
    assert!(asked_to_stop(&effects).is_empty());
    let started: Vec<_> = h.spawned[2..].iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(started, [(2, Purpose::Serve), (3, Purpose::Serve)]);
    let (a, b) = (h.spawned[2].2, h.spawned[3].2);
    h.feed(1100, said(a, Message::Ready));
    let effects = h.feed(1100, Input::Tick);
    assert!(replies(&effects).is_empty(), "{effects:?}");
    h.feed(1200, said(b, Message::Ready));
    let effects = h.feed(1200, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))]);
    assert_eq!(h.serving_pids()[..2], before[..]);
    assert_eq!(h.serving_pids().len(), 4);
}

/// Scaling down stops the last slots' workers gracefully (once, not
/// restarted), and answers once they are gone.
#[test]
fn scaling_down_retires_the_last_slots_and_answers_when_they_are_gone() {
    let mut h = Harness::serving(3);
    let [a, b, c] = h.pids()[..] else { panic!() };
    h.feed(1000, command(1, Command::Scale(1)));
    let effects = h.feed(1000, Input::Tick);
    assert!(has(&effects, |e| matches!(
        e,
        Event::Scaling { from: 3, to: 1 }
    )));
    assert_eq!(asked_to_stop(&effects), [b, c]);
    assert!(replies(&effects).is_empty());
    h.feed(1100, exited(b, 0));
    let effects = h.feed(1100, Input::Tick);
    assert!(replies(&effects).is_empty(), "{effects:?}");
    let effects = h.feed(1200, killed(c, 15));
    assert!(
        !has(&effects, |e| matches!(e, Event::Restarting { .. })),
        "{effects:?}"
    );
    let effects = h.feed(1200, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))]);
    assert_eq!(h.serving_pids(), [(0, a)]);
    assert_eq!(h.spawned.len(), 3, "nothing started");
    let (view, _) = h.machine.view();
    assert_eq!(view.len(), 1);
    // A reload now replaces one worker.
    h.feed(1300, Input::Reload);
    let effects = h.feed(1300, Input::Tick);
    assert!(has(&effects, |e| matches!(
        e,
        Event::Reloading { workers: 1 }
    )));
}

/// A scale waits for a reload going to end; the last one asked wins, and
/// everyone who asked is answered by it. Zero workers is refused.
#[test]
fn a_scale_waits_for_a_reload_and_the_last_asked_wins() {
    let mut h = Harness::serving(1);
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    let new = h.newest();
    h.feed(1100, command(1, Command::Scale(3)));
    h.feed(1100, command(2, Command::Scale(2)));
    let effects = h.feed(1100, Input::Tick);
    assert!(
        !has(&effects, |e| matches!(e, Event::Scaling { .. })),
        "{effects:?}"
    );
    h.feed(1200, said(new, Message::Ready));
    let effects = h.feed(1200, Input::Tick);
    let got = events(&effects);
    assert!(
        matches!(
            got[..],
            [Event::Reloaded, Event::Scaling { from: 1, to: 2 }]
        ),
        "{got:?}"
    );
    let added = h.newest();
    h.feed(1300, said(added, Message::Ready));
    let effects = h.feed(1300, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(())), (2, Ok(()))]);
    let effects = h.feed(1400, command(3, Command::Scale(0)));
    let reason = refused(&effects, 3);
    assert!(reason.starts_with("at least 1 worker"), "{reason}");
}

/// A restart asked before the first workers started (the control socket
/// answers before the loop's first turn) starts each slot once.
#[test]
fn a_restart_before_the_first_start_starts_each_slot_once() {
    let t0 = Instant::now();
    let mut h = Harness {
        machine: Machine::new(settings(2), t0),
        t0,
        next_pid: 100,
        fail_spawns: Vec::new(),
        spawned: Vec::new(),
    };
    h.feed(0, command(1, Command::Restart));
    let effects = h.feed(0, Input::Tick);
    assert!(asked_to_stop(&effects).is_empty(), "{effects:?}");
    assert_eq!(
        h.spawned,
        [(0, Purpose::Serve, 100), (1, Purpose::Serve, 101)]
    );
    h.feed(10, said(100, Message::Ready));
    h.feed(10, said(101, Message::Ready));
    let effects = h.feed(10, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))]);
}

/// A slot due to start in the tick a restart is taken is not started
/// beside the restart (its worker would serve on, and the restart wait
/// for ever): it starts with the others once the old ones are gone.
#[test]
fn a_slot_due_in_the_tick_of_a_restart_starts_with_the_restart() {
    let mut h = Harness::serving(2);
    let [a, b] = h.pids()[..] else { panic!() };
    h.feed(5000, exited(b, 1)); // restarted at once by the policy
    h.feed(5000, command(1, Command::Restart));
    let effects = h.feed(5000, Input::Tick);
    assert_eq!(asked_to_stop(&effects), [a]);
    assert_eq!(h.spawned.len(), 2, "nothing started: {:?}", h.spawned);
    h.feed(5100, exited(a, 0));
    h.feed(5100, Input::Tick);
    let started: Vec<_> = h.spawned[2..].iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(started, [(0, Purpose::Serve), (1, Purpose::Serve)]);
    for pid in h.pids() {
        h.feed(5200, said(pid, Message::Ready));
    }
    let effects = h.feed(5200, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))]);
    assert_eq!(h.pids().len(), 2);
}

/// A reload's next replacement asked in the tick a restart abandons the
/// reload is not started.
#[test]
fn a_replacement_due_in_the_tick_of_a_restart_is_not_started() {
    let mut h = Harness::serving(2);
    h.feed(1000, Input::Reload);
    h.feed(1000, Input::Tick);
    let new0 = h.newest();
    h.feed(1100, said(new0, Message::Ready));
    h.feed(1100, command(1, Command::Restart));
    let effects = h.feed(1100, Input::Tick);
    assert!(has(&effects, |e| matches!(e, Event::ReloadFailed { .. })));
    assert_eq!(
        h.spawned.len(),
        3,
        "no replacement for slot 1: {:?}",
        h.spawned
    );
    assert_eq!(asked_to_stop(&effects).len(), 3);
    for pid in h.pids() {
        h.feed(1200, exited(pid, 0));
    }
    h.feed(1200, Input::Tick);
    assert_eq!(h.pids().len(), 2);
    for pid in h.pids() {
        h.feed(1300, said(pid, Message::Ready));
    }
    let effects = h.feed(1300, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))]);
}

/// A scale down taken in the tick a restart starts the slots again: the
/// slots scaled away are not started, and both requests are answered.
#[test]
fn a_scale_down_in_the_tick_of_a_restarts_start_starts_only_what_is_left() {
    let mut h = Harness::serving(3);
    h.feed(1000, command(1, Command::Restart));
    h.feed(1000, Input::Tick);
    h.feed(1000, command(2, Command::Scale(1)));
    for pid in h.pids() {
        h.feed(1100, exited(pid, 0));
    }
    let effects = h.feed(1100, Input::Tick);
    assert_eq!(
        replies(&effects),
        [(2, Ok(()))],
        "nothing to stop: {effects:?}"
    );
    assert_eq!(h.spawned[3..], [(0, Purpose::Serve, h.newest())]);
    h.feed(1200, said(h.newest(), Message::Ready));
    let effects = h.feed(1200, Input::Tick);
    assert_eq!(replies(&effects), [(1, Ok(()))]);
    // And a scale asked too high is refused.
    let effects = h.feed(1300, command(3, Command::Scale(MAX_WORKERS + 1)));
    assert!(
        matches!(&replies(&effects)[..], [(3, Err(_))]),
        "{effects:?}"
    );
}
