//! What keepalive writes and copies: its own log on a stderr nobody reads
//! any more, and (`--prefix`) worker output that is not UTF-8 or has no
//! newline for 40 MiB.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libtest_mimic::Trial;

use crate::child::wait_forever;
use crate::cluster::{Watchdog, assert_stopped_once, next_number};
use crate::harness::{Child, SCENARIO};
use crate::supervisor::keepalive_command;
use crate::trials;

pub fn tests() -> Vec<Trial> {
    trials![
        keepalive_survives_a_stderr_nobody_reads,
        keepalive_prefix_copies_any_bytes_in_bounded_memory,
    ]
}

pub fn run_role(role: &str) -> bool {
    match role {
        "odd_output" => odd_output(),
        _ => false,
    }
}

/// How much the `odd_output` worker writes without a newline.
const LONG_LINE: usize = 40 << 20;

fn keepalive_survives_a_stderr_nobody_reads() {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) into an array of two descriptors we own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let [read, write] = fds;
    // The reader has gone (a log shipper that restarted, `| head -c1`).
    // SAFETY: closing the read end we own.
    unsafe { libc::close(read) };
    let mut command = keepalive_command();
    command
        .args(["--min-uptime", "0ms", "--"])
        .arg(std::env::current_exe().unwrap());
    // SAFETY: dup2(2) in the forked child, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::dup2(write, 2) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut keepalive = Child::spawn_with(command, "worker");
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(write) };
    let mut watchdog = Watchdog::default();
    let first = watchdog.watch(next_number(&mut keepalive, "worker "));
    // SAFETY: kill(2) on keepalive's worker, alive.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    // keepalive reports the exit and the restart to the dead pipe, and restarts.
    let second = watchdog.watch(next_number(&mut keepalive, "worker "));
    let outcome = keepalive.signal(libc::SIGTERM).finish();
    outcome.assert_code(143);
    assert_stopped_once(&outcome, second);
}

/// A line that is not UTF-8, lines after it (one 200 ms later: a worker
/// whose pipe was closed would die of SIGPIPE there), 40 MiB without a
/// newline, `end`, then `worker PID` and a hook.
fn odd_output() -> ! {
    let pid = std::process::id();
    let mut out = std::io::stdout().lock();
    out.write_all(b"caf\xe9 au lait\nafter 1\n").unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    out.write_all(b"after 2\n").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..LONG_LINE / chunk.len() {
        out.write_all(&chunk).unwrap();
    }
    out.write_all(b"\nend\n").unwrap();
    out.flush().unwrap();
    drop(out);
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    println!("worker {pid}");
    wait_forever()
}

fn keepalive_prefix_copies_any_bytes_in_bounded_memory() {
    let mut keepalive = keepalive_command()
        .args(["--prefix", "[w] ", "--"])
        .arg(std::env::current_exe().unwrap())
        .env(SCENARIO, "odd_output")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = keepalive.id();
    let mut stdout = keepalive.stdout.take().unwrap();
    let (chunks, received) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = vec![0; 1 << 16];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if chunks.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut output = Vec::new();
    // Reads until `what` appears after `from`; returns where it ends.
    let read_until = |output: &mut Vec<u8>, from: &mut usize, what: &[u8]| {
        loop {
            if let Some(at) = output[*from..].windows(what.len()).position(|w| w == what) {
                *from += at + what.len();
                return;
            }
            *from = output.len().saturating_sub(what.len()).max(*from);
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(chunk) => output.extend(chunk),
                Err(_) => {
                    // SAFETY: kill(2) on our child, not reaped.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    panic!(
                        "no {:?} from keepalive; got {} bytes",
                        String::from_utf8_lossy(what),
                        output.len()
                    );
                }
            }
        }
    };
    let mut from = 0;
    read_until(&mut output, &mut from, b"[w] worker ");
    read_until(&mut output, &mut from, b"\n");
    // keepalive's peak memory while it copied the long line.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    // SAFETY: kill(2) on our child, not reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    read_until(&mut output, &mut from, b"exit status 143\n");
    let status = keepalive.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(
        output.starts_with(b"[w] caf\xe9 au lait\n[w] after 1\n[w] after 2\n"),
        "the bytes as written, the lines after them too: {:?}",
        String::from_utf8_lossy(&output[..output.len().min(100)])
    );
    let lines: Vec<&[u8]> = output.split(|&b| b == b'\n').collect();
    let long: Vec<&&[u8]> = lines.iter().filter(|l| l.starts_with(b"[w] x")).collect();
    let xs: usize = long.iter().map(|l| l.len() - 4).sum();
    assert_eq!(xs, LONG_LINE, "every byte of the long line");
    assert!(
        long.iter().all(|l| l.len() <= 4 + (64 << 10)),
        "written in pieces of at most 64 KiB"
    );
    assert!(lines.contains(&&b"[w] end"[..]));
    assert!(
        peak_kib < 24 << 10,
        "keepalive's peak RSS {peak_kib} KiB: it held the long line"
    );
}
