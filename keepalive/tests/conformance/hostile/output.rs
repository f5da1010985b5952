//! keepalive's output and the disk: a full disk under a flooding worker,
//! `logs -f` across rotations, `logs -n` on a huge file, and a stderr
//! nobody reads.

use std::io::{BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::child::wait_forever;
use crate::cluster::{Watchdog, next_number};
use crate::control::{RuntimeDir, text};
use crate::harness::Child;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        a_full_disk_drops_whole_lines_counts_them_and_keepalive_serves_on,
        logs_follow_sees_each_line_once_across_rotations,
        logs_of_a_huge_file_read_only_its_end,
        a_stderr_nobody_reads_stops_nothing,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "flooder" => flooder(),
        "numbered_lines" => numbered_lines(),
        "chatty_crasher" => {
            println!("worker {}", std::process::id());
            let status = format!("STATUS={}", "s".repeat(600));
            sd_notify::notify(false, &[sd_notify::NotifyState::Custom(&status)]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            std::process::exit(1)
        }
        _ => false,
    }
}

/// The line `n` a flooder writes: whole, it is recognizable.
fn flood_line(n: u64) -> String {
    format!("line {n} {}", "x".repeat(100))
}

/// Writes `flood_line`s to stdout as fast as 10 a millisecond, and
/// `alive N` to stderr every 100 ms.
fn flooder() -> ! {
    let mut out = std::io::stdout().lock();
    let mut last = Instant::now();
    for n in 0.. {
        let _ = writeln!(out, "{}", flood_line(n));
        if n % 10 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        if last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            crate::operations::say_err(&format!("alive {n}"));
        }
    }
    wait_forever()
}

/// `n=N` and some text, a line a millisecond.
fn numbered_lines() -> ! {
    crate::operations::say_err(&format!("worker {}", std::process::id()));
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let _ = writeln!(out, "n={n} {}", "y".repeat(90));
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    wait_forever()
}

/// A 1 MiB tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs takes root; CI runs as root"
        );
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn a_full_disk_drops_whole_lines_counts_them_and_keepalive_serves_on() {
    super::assert_root();
    let dir = RuntimeDir::new("fulldisk");
    let disk = SmallDisk::mount(&dir.path().join("logs"));
    // Most of it taken already, so the log fills it within a second.
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 900 * 1024]).unwrap();
    let log = disk.0.join("out.log");
    let mut keepalive = dir.keepalive("disk", &["--stdout", log.to_str().unwrap()], "flooder");
    let full = keepalive.wait_line("the disk full", |l| {
        l.starts_with("keepalive: cannot write the log") && l.contains("dropping its lines")
    });
    assert!(full.contains("No space left on device"), "{full}");
    // keepalive answers, and the worker is not held up.
    dir.status("disk");
    let alive = |line: &str| {
        line.strip_prefix("alive ")
            .and_then(|n| n.parse::<u64>().ok())
    };
    let then = alive(&keepalive.wait_line("alive", |l| alive(l).is_some())).unwrap();
    let mut now = then;
    while now < then + 20_000 {
        now = alive(&keepalive.wait_line("alive", |l| alive(l).is_some())).unwrap();
    }
    // Space comes back: writing goes on, and says how much was dropped.
    std::fs::remove_file(&filler).unwrap();
    let resumed = keepalive.wait_line("writing again", |l| {
        l.starts_with("keepalive: writing the log") && l.contains("line(s) dropped")
    });
    let dropped: u64 = resumed
        .rsplit("; ")
        .next()
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{resumed}"));
    assert!(dropped > 0, "{resumed}");
    let said = keepalive
        .seen()
        .iter()
        .filter(|l| l.contains("cannot write the log"));
    assert_eq!(said.count(), 1, "said once");
    std::thread::sleep(Duration::from_millis(200));
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
    // Every line in the file is whole: none cut, none glued to the next.
    let written = std::fs::read_to_string(&log).unwrap();
    let mut count = 0;
    for line in written.lines() {
        let n: u64 = line
            .strip_prefix("line ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a whole line: {line:?}"));
        assert_eq!(line, flood_line(n), "not a whole line");
        count += 1;
    }
    assert!(count > 100, "{count} lines");
    drop(disk);
}

fn logs_follow_sees_each_line_once_across_rotations() {
    let dir = RuntimeDir::new("follow");
    let log = dir.path().join("out.log");
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive(
        "ticks",
        &["--stdout", log.to_str().unwrap(), "--log-max-size", "64KiB"],
        "numbered_lines",
    );
    let worker = next_number(&mut keepalive, "worker ");
    watchdog.watch(worker);
    let mut follow = Command::new(env!("CARGO_BIN_EXE_keepalive"))
        .args(["logs", "ticks", "-n", "0", "-f"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    // Whole lines only: the follower is killed, maybe in the middle of one.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut BufReader::new(stdout), &mut text);
        let end = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
        let whole = &text[..end];
        String::from_utf8_lossy(whole)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    });
    // About 100 bytes a line, 1000 lines a second: a rotation every
    // 0.7 s or so. Followed through three of them, and a moment more.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("out.log.3").exists() {
        assert!(Instant::now() < deadline, "no third rotation in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    follow.kill().unwrap();
    follow.wait().unwrap();
    let lines = reader.join().unwrap();
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
    let numbers: Vec<u64> = lines
        .iter()
        .map(|line| {
            line.strip_prefix("n=")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a line of the worker's: {line:?}"))
        })
        .collect();
    assert!(numbers.len() > 1000, "{} lines", numbers.len());
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "a line missed or repeated around {}",
            pair[0]
        );
    }
}

fn logs_of_a_huge_file_read_only_its_end() {
    let dir = RuntimeDir::new("hugelog");
    let log = dir.path().join("big.log");
    {
        // 1 GiB, sparse: costly to read whole, free to make.
        let file = std::fs::File::create(&log).unwrap();
        file.set_len(1 << 30).unwrap();
    }
    let mut watchdog = Watchdog::default();
    let mut keepalive = dir.keepalive("big", &["--stdout", log.to_str().unwrap()], "worker");
    watchdog.watch(next_number(&mut keepalive, "keepalive: started pid "));
    dir.status("big");
    // After the worker's own line went in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&log).unwrap().len() == 1 << 30 {
        assert!(Instant::now() < deadline, "the worker's line never came");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"\nthe last line\n")
        .unwrap();
    // In 256 MiB of address space: reading the file whole cannot fit.
    let mut client = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    client
        .args(["logs", "big", "-n", "1"])
        .env("XDG_RUNTIME_DIR", dir.path());
    // SAFETY: setrlimit(2) in the forked child, async-signal-safe.
    unsafe {
        client.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256 << 20,
                rlim_max: 256 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let started = Instant::now();
    let output = client.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stdout), "the last line\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    keepalive.signal(libc::SIGTERM).finish().assert_code(143);
}

/// keepalive's stderr is a pipe whose reader is open and never reads (a
/// stuck log shipper), 4 KiB deep: it fills at once. keepalive restarts
/// its worker on and on, answers, and stops on SIGTERM.
fn a_stderr_nobody_reads_stops_nothing() {
    let dir = RuntimeDir::new("stuckerr");
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) into our array; F_SETPIPE_SZ on its write end.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096);
    }
    // SAFETY: both are ours, just made: closed when dropped, passed or failed.
    let (_pipe, stuck_write) = unsafe {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let (read, write) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        let raw = write.as_raw_fd();
        ((read, write), raw)
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepalive"));
    command
        .args(["run", "--name", "stuck", "--min-uptime", "0ms", "--"])
        .arg(std::env::current_exe().unwrap())
        .env("XDG_RUNTIME_DIR", dir.path());
    // SAFETY: dup2(2) in the forked child, async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(stuck_write, 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut keepalive = Child::spawn_with(command, "chatty_crasher");
    let mut watchdog = Watchdog::default();
    let started = Instant::now();
    for _ in 0..40 {
        watchdog.watch(next_number(&mut keepalive, "worker "));
    }
    eprintln!("40 restarts in {:?} with a stuck stderr", started.elapsed());
    let status = dir.status("stuck");
    assert_eq!(status["pid"], keepalive.pid());
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    outcome.assert_elapsed(..Duration::from_secs(8));
}
