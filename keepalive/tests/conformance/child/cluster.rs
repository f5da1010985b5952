//! The workers `cluster.rs` runs under keepalive: they report what they
//! were passed, serve on the listener they were given, say `READY=1` (or
//! never do), and start children of their own.

use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use exit_hook::Phase;

use super::wait_forever;

/// Runs the scenario `role` if it is one of this file's; `false` if not.
pub fn run_role(role: &str) -> bool {
    match role {
        "worker" => worker(),
        "report_listeners" => report_listeners(),
        "ready_server" => ready_server(),
        "ready_then_never" => {
            // The first EXIT_HOOK_READY_STARTS starts serve; later ones never get ready.
            let starts = super::supervisor::starts_before();
            let ready_starts: u32 = std::env::var("EXIT_HOOK_READY_STARTS")
                .unwrap()
                .parse()
                .unwrap();
            if starts < ready_starts {
                ready_server()
            }
            println!("notify_socket {}", std::env::var("NOTIFY_SOCKET").unwrap());
            println!("never_ready {}", std::process::id());
            wait_forever()
        }
        "term_ignoring_parent" => {
            // Its output goes nowhere, so only its death ends keepalive's
            // stdout, not its own end 300 s later.
            #[allow(
                clippy::zombie_processes,
                reason = "it dies with the worker's process group"
            )]
            let grandchild = Command::new("sleep")
                .arg("300")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            println!("grandchild {}", grandchild.id());
            // SAFETY: setting SIGTERM's disposition to ignore.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            println!("worker {}", std::process::id());
            wait_forever()
        }
        _ => false,
    }
}

/// A hook that names the worker, then `worker <pid>`.
fn worker() -> ! {
    let pid = std::process::id();
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    println!("worker {pid}");
    wait_forever()
}

/// What systemd's variables and the open descriptors say, then waits
/// (without exit_hook, whose socket would be one more descriptor).
fn report_listeners() -> ! {
    let var = |name| std::env::var(name).unwrap_or_default();
    // SAFETY: getpid(2) has no preconditions.
    let mine = var("LISTEN_PID") == unsafe { libc::getpid() }.to_string();
    println!(
        "LISTEN_FDS={} LISTEN_FDNAMES={} LISTEN_PID is mine: {mine} NOTIFY_SOCKET set: {}",
        var("LISTEN_FDS"),
        var("LISTEN_FDNAMES"),
        !var("NOTIFY_SOCKET").is_empty()
    );
    // SAFETY: fcntl(2) F_GETFD only reads the descriptor's flags.
    let open: Vec<i32> = (0..4096)
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect();
    println!("open fds: {open:?}");
    // The well-kept crate reads them as any server would.
    let mut fds = listenfd::ListenFd::from_env();
    let tcp = fds
        .take_tcp_listener(0)
        .unwrap()
        .expect("fd 3: a TCP listener");
    let unix = fds
        .take_unix_listener(1)
        .unwrap()
        .expect("fd 4: a Unix listener");
    println!("tcp {}", tcp.local_addr().unwrap());
    println!(
        "unix {}",
        unix.local_addr().unwrap().as_pathname().unwrap().display()
    );
    println!("READY");
    wait_forever()
}

/// Answers every connection on its listener (from `LISTEN_FDS`) with its
/// pid, says `READY=1`, and stops gracefully: once the run starts it
/// accepts no more (the connections queued are the other workers'), and
/// its drain hook waits for the connection at hand to be answered.
fn ready_server() -> ! {
    let pid = std::process::id();
    let listener: TcpListener = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .unwrap()
        .expect("a listener from keepalive");
    listener.set_nonblocking(true).unwrap();
    println!("port {}", listener.local_addr().unwrap().port());
    let (stopped, drained) = mpsc::channel::<()>();
    thread::spawn(move || {
        while !exit_hook::is_exiting() {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = writeln!(stream, "{pid}");
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => break,
            }
        }
        drop(stopped);
    });
    exit_hook::in_phase(Phase::Drain).add(move |_| {
        let _ = drained.recv_timeout(Duration::from_secs(5));
    });
    exit_hook::add(move |exit| println!("hook {pid}: {exit}"));
    if let Ok(ms) = std::env::var("EXIT_HOOK_READY_DELAY_MS") {
        thread::sleep(Duration::from_millis(ms.parse().unwrap()));
    }
    if let Some(file) = std::env::var_os("EXIT_HOOK_READ_FILE") {
        // A worker that reads its own config, in a watched folder, all the time.
        thread::spawn(move || {
            loop {
                let _ = std::fs::read(&file);
                thread::sleep(Duration::from_millis(20));
            }
        });
    }
    sd_notify::notify(false, &[sd_notify::NotifyState::Ready]).unwrap();
    println!("ready {pid}");
    wait_forever()
}
