//! An exhaustive model check of the lock-free part of [`RunState`]: every
//! interleaving of its atomic steps, run on the real type, with the
//! invariants checked in every end state.

use super::RunState;

/// Every interleaving of the lock-free steps, on the real `RunState`:
/// two signal handlers (each `begin` then `record_signal`) and a panic
/// trigger race for the run; the signal thread, woken only by the winning
/// handler, takes the signal twice; two threads finish the run.
#[test]
fn model_check_every_interleaving() {
    let leaves = explore(&mut Vec::new());
    eprintln!("model check: {leaves} interleavings, every one checked");
    // Under Miri the exploration is smaller (see `ACTORS`); natively all.
    assert!(leaves > 100, "{leaves} end states explored");
}

/// The actors and how many steps each has. Under Miri, which runs the
/// full model in about six minutes, one watcher step and one finisher.
const ACTORS: &[(Actor, usize)] = if cfg!(miri) {
    &[
        (Actor::Handler(15), 2),
        (Actor::Handler(2), 2),
        (Actor::Panic, 1),
        (Actor::Watcher, 1),
        (Actor::Finisher, 1),
    ]
} else {
    &[
        (Actor::Handler(15), 2),
        (Actor::Handler(2), 2),
        (Actor::Panic, 1),
        (Actor::Watcher, 2),
        (Actor::Finisher, 1),
        (Actor::Finisher, 1),
    ]
};

#[derive(Clone, Copy, Debug)]
enum Actor {
    Handler(i32),
    Panic,
    Watcher,
    Finisher,
}

/// What a schedule did, replayed on a fresh `RunState`.
#[derive(Default, Debug)]
struct Replay {
    steps: Vec<usize>,
    won: Vec<bool>,
    winners: Vec<Actor>,
    woken_with: Option<i32>,
    taken: Vec<Option<i32>>,
    finished_first: usize,
}

fn replay(schedule: &[usize]) -> (RunState, Replay) {
    let state = RunState::new();
    let mut r = Replay {
        steps: vec![0; ACTORS.len()],
        won: vec![false; ACTORS.len()],
        ..Replay::default()
    };
    for &actor in schedule {
        match (ACTORS[actor].0, r.steps[actor]) {
            (Actor::Handler(_), 0) | (Actor::Panic, 0) => {
                r.won[actor] = state.begin();
                if r.won[actor] {
                    r.winners.push(ACTORS[actor].0);
                }
            }
            (Actor::Handler(signal), 1) => {
                if r.won[actor] {
                    state.record_signal(signal);
                    r.woken_with = Some(signal); // then the handler writes to the pipe
                }
            }
            (Actor::Watcher, _) => r.taken.push(state.take_signal()),
            (Actor::Finisher, _) => {
                r.finished_first += usize::from(state.finish(super::Ended::CutShort))
            }
            step => unreachable!("{step:?}"),
        }
        r.steps[actor] += 1;
    }
    (state, r)
}

/// Depth-first over schedules; checks each end state; returns how many.
fn explore(schedule: &mut Vec<usize>) -> usize {
    let (_, r) = replay(schedule);
    let enabled: Vec<usize> = (0..ACTORS.len())
        .filter(|&a| r.steps[a] < ACTORS[a].1)
        // The signal thread sleeps until the winning handler wakes it,
        // and only the run's own threads finish it, after it started.
        .filter(|&a| match ACTORS[a].0 {
            Actor::Watcher => r.woken_with.is_some(),
            Actor::Finisher => !r.winners.is_empty(),
            _ => true,
        })
        .collect();
    if enabled.is_empty() {
        check(schedule);
        return 1;
    }
    enabled
        .into_iter()
        .map(|actor| {
            schedule.push(actor);
            let leaves = explore(schedule);
            schedule.pop();
            leaves
        })
        .sum()
}

fn check(schedule: &[usize]) {
    let (state, r) = replay(schedule);
    assert_eq!(
        r.winners.len(),
        1,
        "exactly one trigger starts the run: {schedule:?}"
    );
    assert!(state.is_exiting() && state.is_finished(), "{schedule:?}");
    assert_eq!(
        r.finished_first, 1,
        "finish reports the end once: {schedule:?}"
    );
    match r.winners[0] {
        Actor::Handler(signal) => {
            assert_eq!(r.woken_with, Some(signal), "{schedule:?}");
            // The woken thread takes the winner's signal, once.
            assert_eq!(r.taken.first(), Some(&Some(signal)), "{schedule:?}");
            assert!(r.taken[1..].iter().all(Option::is_none), "{schedule:?}");
        }
        _ => assert!(r.woken_with.is_none() && r.taken.is_empty(), "{schedule:?}"),
    }
}
