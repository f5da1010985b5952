#!/usr/bin/env python3
"""Sync hooks with time limits, this checkout against an older commit, in
one sitting (BENCHMARKS.md §13).

    python3 scripts/compare_limited_hooks.py [BASE]     # BASE: a commit, default a4e536a

Builds one small program twice (release), against `exit_hook` at BASE (a
git worktree under target/) and against this checkout: it registers N no-op
sync hooks with a 1 s time limit, says READY, and waits. Each run sends it
SIGTERM and times until it is reaped; the table gives the medians and the
ratio. Not part of CI (it builds the crate twice).
"""

import os
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "target", "compare-limited-hooks")
MAIN = """fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    for _ in 0..n {
        exit_hook::HookBuilder::new()
            .time_limit(std::time::Duration::from_secs(1))
            .add(|_| {});
    }
    println!("READY");
    loop {
        std::thread::park();
    }
}
"""


def program(name, crate):
    """A cargo project on `exit_hook` at `crate`; the built executable."""
    project = os.path.join(WORK, name)
    os.makedirs(os.path.join(project, "src"), exist_ok=True)
    with open(os.path.join(project, "Cargo.toml"), "w") as f:
        f.write(f'[package]\nname = "{name}"\nversion = "0.0.0"\nedition = "2021"\n'
                f'[dependencies]\nexit_hook = {{ path = "{crate}" }}\n[workspace]\n')
    with open(os.path.join(project, "src", "main.rs"), "w") as f:
        f.write(MAIN)
    subprocess.run(["cargo", "build", "--quiet", "--release"], cwd=project, check=True)
    return os.path.join(project, "target", "release", name)


def once(exe, n):
    child = subprocess.Popen([exe, str(n)], stdout=subprocess.PIPE)
    try:
        child.stdout.readline()
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        return (time.monotonic() - started) * 1000
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "a4e536a"
    worktree = os.path.join(WORK, "base")
    subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT,
                   stderr=subprocess.DEVNULL)
    subprocess.run(["git", "worktree", "add", "--force", "--detach", worktree, base],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    try:
        variants = [(f"before ({base})", program("limited_base", worktree)),
                    ("now", program("limited_now", ROOT))]
        print("| hooks | " + " | ".join(name for name, _ in variants) + " | ratio |")
        print("|---|---|---|---|")
        for n, rounds in ((10_000, 9), (100_000, 5)):
            medians = [statistics.median(once(exe, n) for _ in range(rounds))
                       for _, exe in variants]
            print(f"| {n} | " + " | ".join(f"{m:.1f} ms" for m in medians)
                  + f" | {medians[0] / medians[1]:.1f}× |")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT)


if __name__ == "__main__":
    main()
