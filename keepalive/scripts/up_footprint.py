#!/usr/bin/env python3
"""What a `keepalive up` of N apps costs: its own processes, threads, RSS
and descriptors (the workers, `sleep 3600` each, not counted).

    python3 keepalive/scripts/up_footprint.py target/release/keepalive [OTHER_KEEPALIVE ...] [--apps N]

Each binary in turn, alternated over ROUNDS (default 2), from a temporary
directory with its own runtime directory: `up` is started, looked at after
3 s (every process under it that is not a worker), stopped with SIGTERM
and waited for (killed, with its process group, if it has not ended in
30 s). Linux (/proc). Not part of CI: a measurement, not a test.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(entry))
    return found


def status(pid):
    with open(f"/proc/{pid}/status") as text:
        fields = dict(line.split(":", 1) for line in text.read().splitlines() if ":" in line)
    return (
        fields["Name"].strip(),
        int(fields["Threads"]),
        int(fields["VmRSS"].split()[0]),
        len(os.listdir(f"/proc/{pid}/fd")),
    )


def measure(exe, apps, home):
    config = os.path.join(home, "keepalive.toml")
    with open(config, "w") as file:
        file.write('name = "footprint"\n')
        for n in range(apps):
            file.write(f'\n[apps.app{n}]\ncommand = ["sleep", "3600"]\n')
    runtime = os.path.join(home, "run")
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime)
    up = subprocess.Popen(
        [exe, "up", "-f", config],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(3)
        tree, i = [up.pid], 0
        while i < len(tree):
            tree += children(tree[i])
            i += 1
        own = [status(pid) for pid in tree if status(pid)[0] != "sleep"]
        workers = len(tree) - len(own)
        return len(own), sum(s[1] for s in own), sum(s[2] for s in own), sum(s[3] for s in own), workers
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()


def main():
    args = sys.argv[1:]
    apps = 3
    if "--apps" in args:
        at = args.index("--apps")
        apps = int(args[at + 1])
        del args[at : at + 2]
    if not args:
        sys.exit(__doc__)
    rounds = int(os.environ.get("ROUNDS", "2"))
    print(f"| keepalive | apps | its processes | threads | RSS | descriptors |")
    print("|---|---|---|---|---|---|")
    for _ in range(rounds):
        for exe in args:
            with tempfile.TemporaryDirectory() as home:
                procs, threads, rss, fds, workers = measure(os.path.abspath(exe), apps, home)
            assert workers == apps, f"{exe}: {workers} workers for {apps} apps"
            print(f"| {exe} | {apps} | {procs} | {threads} | {rss / 1024:.1f} MB | {fds} |")


if __name__ == "__main__":
    main()
