//! Shutdown phases and per-hook time limits.

use std::future::pending;
use std::thread;
use std::time::Duration;

use exit_hook::{Builder, HookBuilder, Phase};
use libtest_mimic::Trial;

use super::PROMPT;
use crate::child::{install, ready, wait_forever};
use crate::harness::terminate;
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        phases_run_in_order_whatever_the_registration_order,
        time_limits_move_the_run_on_and_name_the_hook,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        phases,
        time_limits,
    }
}

fn phases_run_in_order_whatever_the_registration_order() {
    let outcome = terminate("phases");
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        [
            "drain sync",
            "drain async",
            "late drain",
            "cleanup",
            "close",
            "flush"
        ]
    );
}

/// Registered in the reverse of their phases' order; one drain hook
/// registers another drain hook while the drain runs.
fn phases() {
    exit_hook::in_phase(Phase::Flush).add(|_| println!("flush"));
    exit_hook::in_phase(Phase::Close).add_async(|_| async { println!("close") });
    exit_hook::add(|_| println!("cleanup"));
    exit_hook::in_phase(Phase::Drain).add_async(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        exit_hook::in_phase(Phase::Drain).add(|_| println!("late drain"));
        println!("drain async");
    });
    exit_hook::in_phase(Phase::Drain).add(|_| println!("drain sync"));
    ready();
    wait_forever();
}

fn time_limits_move_the_run_on_and_name_the_hook() {
    let outcome = terminate("time_limits");
    outcome.assert_code(143);
    assert_eq!(outcome.after_ready(), ["close ran", "flush ran"]);
    let errors = outcome.lines_starting("error: ");
    assert_eq!(errors.len(), 2, "{outcome:#?}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("invalid shutdown timeout")),
        "{errors:?}"
    );
    let sites = outcome
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("sites: "))
        .unwrap();
    let (stuck_async, stuck_sync) = sites.split_once(' ').unwrap();
    let lines = outcome.crate_lines();
    assert_eq!(
        lines,
        [
            format!(
                "exit_hook: the hook registered at {stuck_async} passed its time limit of 300ms; the run moves on"
            ),
            format!(
                "exit_hook: the hook registered at {stuck_sync} passed its time limit of 300ms; the run moves on"
            ),
        ],
        "{outcome:#?}"
    );
    // Two limits of 300 ms one after the other, far from the 30 s deadline.
    outcome.assert_elapsed(Duration::from_millis(550)..);
    outcome.assert_elapsed(..PROMPT);
}

fn time_limits() {
    install(Builder::new().timeout(Duration::from_secs(30)));
    let limit = Duration::from_millis(300);
    let stuck_async = exit_hook::in_phase(Phase::Drain)
        .time_limit(limit)
        .add_async(|_| pending());
    let stuck_sync = HookBuilder::new()
        .time_limit(limit)
        .add(|_| thread::sleep(Duration::from_secs(3600)));
    exit_hook::in_phase(Phase::Close).add(|_| println!("close ran"));
    exit_hook::in_phase(Phase::Flush).add(|_| println!("flush ran"));
    println!(
        "sites: {} {}",
        stuck_async.location(),
        stuck_sync.location()
    );
    for bad in [Duration::ZERO, Builder::MAX_TIMEOUT * 2] {
        match HookBuilder::new().time_limit(bad).try_add(|_| {}) {
            Ok(_) => println!("registered with {bad:?}"),
            Err(err) => println!("error: {err}"),
        }
    }
    ready();
    wait_forever();
}
