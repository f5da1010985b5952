//! Descriptors: the crate's wake-up socket keeps out of the application's way.
//!
//! An application that closed stdout before its first `add` gets fd 1 back
//! for its own use; one that closes every descriptor from 3 up (as daemons
//! do) and opens a file has nothing of the crate's written into it, and its
//! first SIGTERM still runs the hooks.

use std::io::{Read, Write};

use libtest_mimic::Trial;

use crate::child::{ready, wait_forever};
use crate::harness::{Child, terminate};
use crate::trials;
use crate::{Scenario, scenarios};

pub fn tests() -> Vec<Trial> {
    trials![
        the_wake_up_socket_does_not_take_a_closed_stdout,
        closing_every_descriptor_loses_no_signal_and_writes_nothing_into_the_apps_files,
    ]
}

/// The child scenarios of this file, each run as the `main` of a child
/// by its name (`Child::spawn("name")`).
pub fn scenarios() -> Vec<Scenario> {
    scenarios! {
        closed_stdout,
        close_all_fds,
    }
}

/// Closes fd 1, registers (which installs), and reports whether fd 1 is still free.
fn closed_stdout() {
    // SAFETY: dup(2)/close(2)/fcntl(2)/dup2(2) on this process's stdout.
    let free = unsafe {
        let saved = libc::dup(1);
        libc::close(1);
        exit_hook::add(|exit| println!("hook: {exit}"));
        let free = libc::fcntl(1, libc::F_GETFD) == -1;
        libc::dup2(saved, 1);
        libc::close(saved);
        free
    };
    println!("fd 1 stayed free: {free}");
    ready();
    wait_forever();
}

fn the_wake_up_socket_does_not_take_a_closed_stdout() {
    let outcome = terminate("closed_stdout");
    outcome.assert_code(143);
    assert_eq!(
        outcome.stdout,
        [
            "fd 1 stayed free: true",
            "READY",
            "hook: SIGTERM (15), exit status 143"
        ],
        "{outcome:#?}"
    );
}

/// Registers, then closes every descriptor from 3 up and opens its own
/// file (which gets the lowest free number). The file's path is in
/// `EXIT_HOOK_FILE`; the hook writes a line into it.
fn close_all_fds() {
    exit_hook::add(|exit| println!("hook: {exit}"));
    // SAFETY: closing descriptors this scenario owns; no other thread of
    // its own uses any (the crate's thread notices its socket vanish).
    unsafe {
        for fd in 3..4096 {
            libc::close(fd);
        }
    }
    let path = std::env::var("EXIT_HOOK_FILE").unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(b"the app's own file\n").unwrap();
    ready();
    wait_forever();
}

fn closing_every_descriptor_loses_no_signal_and_writes_nothing_into_the_apps_files() {
    let path = std::env::temp_dir().join(format!("exit_hook_close_all_{}", std::process::id()));
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.env("EXIT_HOOK_FILE", &path);
    let outcome = Child::spawn_with(command, "close_all_fds")
        .ready()
        .signal(libc::SIGTERM)
        .finish();
    let mut written = String::new();
    std::fs::File::open(&path)
        .and_then(|mut file| file.read_to_string(&mut written))
        .unwrap();
    let _ = std::fs::remove_file(&path);
    outcome.assert_code(143);
    assert_eq!(
        outcome.after_ready(),
        ["hook: SIGTERM (15), exit status 143"],
        "{outcome:#?}"
    );
    assert_eq!(written, "the app's own file\n");
}
