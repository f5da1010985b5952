//! The measured processes.

use std::time::Duration;

pub fn run(role: &str) {
    match role {
        "floor" => ready(),
        "signal_hook" => {
            let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM]).unwrap();
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    std::process::exit(143);
                }
            });
            ready();
        }
        // The least any design with a deadline can do: a thread that
        // could end the process while a hook is stuck, one no-op hook, _exit.
        "signal_hook_guard" => {
            let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM]).unwrap();
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    let _guard = std::thread::spawn(|| {
                        std::thread::sleep(Duration::from_secs(10));
                        // SAFETY: _exit(2) ends the process.
                        unsafe { libc::_exit(143) }
                    });
                    std::hint::black_box(|| {})();
                    // SAFETY: _exit(2) ends the process.
                    unsafe { libc::_exit(143) }
                }
            });
            ready();
        }
        // The same with the guard thread started beforehand and parked:
        // at the signal it is woken, not spawned.
        "signal_hook_parked_guard" => {
            let (arm, armed) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                if armed.recv().is_ok() {
                    std::thread::sleep(Duration::from_secs(10));
                    // SAFETY: _exit(2) ends the process.
                    unsafe { libc::_exit(143) }
                }
            });
            let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM]).unwrap();
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    let _ = arm.send(());
                    std::hint::black_box(|| {})();
                    // SAFETY: _exit(2) ends the process.
                    unsafe { libc::_exit(143) }
                }
            });
            ready();
        }
        // What the guard thread costs: the same without any deadline kept.
        "signal_hook_exit_now" => {
            let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM]).unwrap();
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    std::hint::black_box(|| {})();
                    // SAFETY: _exit(2) ends the process.
                    unsafe { libc::_exit(143) }
                }
            });
            ready();
        }
        // The deadline kept by a POSIX timer instead of a thread: at
        // expiry, a SIGALRM handler would end the process (issue 13, goal 4).
        // Linux: macOS has no POSIX timers.
        #[cfg(target_os = "linux")]
        "signal_hook_timer" => {
            extern "C" fn expired(_: libc::c_int) {
                // SAFETY: _exit(2) is async-signal-safe.
                unsafe { libc::_exit(143) }
            }
            // SAFETY: `expired` only calls _exit(2).
            unsafe { libc::signal(libc::SIGALRM, expired as *const () as libc::sighandler_t) };
            let mut signals = signal_hook::iterator::Signals::new([libc::SIGTERM]).unwrap();
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    arm_timer(Duration::from_secs(10));
                    std::hint::black_box(|| {})();
                    // SAFETY: _exit(2) ends the process.
                    unsafe { libc::_exit(143) }
                }
            });
            ready();
        }
        "noop" => {
            exit_hook::add(|_| {});
            ready();
        }
        "sync_1000" | "sync_10000" => {
            let n = if role == "sync_1000" { 1000 } else { 10_000 };
            for _ in 0..n {
                exit_hook::add(|_| {});
            }
            ready();
        }
        "limited_10000" | "limited_100000" => {
            let n = if role == "limited_10000" {
                10_000
            } else {
                100_000
            };
            for _ in 0..n {
                exit_hook::HookBuilder::new()
                    .time_limit(std::time::Duration::from_secs(1))
                    .add(|_| {});
            }
            ready();
        }
        "async_1" => async_hooks(1),
        "async_1000" => async_hooks(1000),
        "async_100000" => async_hooks(100_000),
        "std_exit" => {
            stamp();
            std::process::exit(0);
        }
        "idle" => idle(),
        "registry_memory" => registry_memory(),
        role => {
            let n: usize = role
                .strip_prefix("exit_")
                .and_then(|n| n.parse().ok())
                .expect("a known role");
            for _ in 0..n {
                exit_hook::add(|_| {});
            }
            stamp();
            exit_hook::exit(0);
        }
    }
}

/// Arms a one-shot `CLOCK_MONOTONIC` timer that sends SIGALRM after `after`.
#[cfg(target_os = "linux")]
fn arm_timer(after: Duration) {
    // SAFETY: all-zero is a valid `sigevent` (a plain C struct).
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_SIGNAL;
    event.sigev_signo = libc::SIGALRM;
    let mut timer: libc::timer_t = std::ptr::null_mut();
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `event` and `spec` are initialized; `timer` receives the id.
    unsafe {
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer),
            0
        );
        assert_eq!(
            libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
            0
        );
    }
}

fn async_hooks(n: usize) {
    for _ in 0..n {
        exit_hook::add_async(|_| tokio::time::sleep(Duration::from_millis(100)));
    }
    ready();
}

fn ready() {
    println!("READY");
    loop {
        std::thread::park();
    }
}

fn stamp() {
    println!("T {}", super::monotonic_ns());
}

fn idle() {
    let before = (threads(), rss_kib());
    // The baseline: the same 5 s of sleeping, before anything is installed.
    let cpu_idle_start = cpu_time();
    std::thread::sleep(Duration::from_secs(5));
    let baseline = cpu_time() - cpu_idle_start;
    let cpu_start = cpu_time();
    exit_hook::add(|_| {});
    // Let the signal thread finish starting, then measure idling only.
    std::thread::sleep(Duration::from_millis(100));
    let installing = cpu_time() - cpu_start;
    let after = (threads(), rss_kib());
    let cpu_before = cpu_time();
    let crate_before = crate_thread_ns();
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = cpu_time() - cpu_before;
    let crate_idle = crate_thread_ns()
        .zip(crate_before)
        .map(|(after, before)| after - before);
    println!("| | threads | resident memory |");
    println!("|---|---|---|");
    println!("| before the first add | {} | {} KiB |", before.0, before.1);
    println!(
        "| after (installed, 1 hook) | {} | {} KiB |",
        after.0, after.1
    );
    println!("\nthreads after install: {}", thread_names().join(", "));
    println!(
        "CPU time to install (first add): {} µs",
        installing.as_micros()
    );
    println!(
        "CPU time over 5 s idle: {} µs before installing, {} µs after",
        baseline.as_micros(),
        idle_cpu.as_micros()
    );
    match crate_idle {
        Some(ns) => println!(
            "of which the crate's `exit-hook` thread: {ns} ns (its on-CPU time, /proc/self/task/*/schedstat)"
        ),
        None => println!("the crate's thread was not found"),
    }
}

/// Resident memory before, with 1 000 000 hooks registered, and after all
/// of them are unregistered: once with closures that capture nothing (no
/// allocation of their own), once with closures capturing 32 bytes.
fn registry_memory() {
    exit_hook::add(|_| {});
    println!("| hooks | resident memory |");
    println!("|---|---|");
    println!("| 1 (installed) | {} KiB |", rss_kib());
    let capture = std::env::var("EXIT_HOOK_BENCH_CAPTURE").is_ok();
    let what = if capture {
        "capturing 32 bytes"
    } else {
        "capturing nothing"
    };
    {
        let handles: Vec<_> = (0..1_000_000u64)
            .map(|i| {
                if capture {
                    let data = [i; 4];
                    exit_hook::add(move |_| {
                        std::hint::black_box(data);
                    })
                } else {
                    exit_hook::add(|_| {})
                }
            })
            .collect();
        println!("| + 1 000 000 {what} | {} KiB |", rss_kib());
        for handle in handles {
            handle.unregister();
        }
        println!("| all unregistered | {} KiB |", rss_kib());
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: malloc_trim(3) only releases free memory of glibc's heap.
            unsafe { libc::malloc_trim(0) };
            println!("| then glibc's `malloc_trim(0)` | {} KiB |", rss_kib());
        }
    }
}

/// The on-CPU time of the crate's `exit-hook` thread, in nanoseconds.
fn crate_thread_ns() -> Option<u64> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if name.trim() != "exit-hook" {
                return None;
            }
            let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            schedstat.split_whitespace().next()?.parse().ok()
        })
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count())
}

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of the whole process.
fn cpu_time() -> Duration {
    // SAFETY: getrusage(2) writes into the struct we own.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}
