#!/usr/bin/env python3
"""What a hostile local client costs a running keepalive (issue 29, points 4-6).

    python3 keepalive/scripts/hostile_probe.py [KEEPALIVE_BINARY]

Runs `KEEPALIVE run --name probe -- sleep 3600` (default binary:
target/debug/keepalive) in a private XDG_RUNTIME_DIR, then:

1. one client sends 512 MiB without a newline while another asks `status`:
   keepalive's RSS before and after, its peak, and how long the `status` took;
2. 2000 `events` subscribers connect and leave while idle: keepalive's
   descriptors before and after;
3. at a descriptor limit of 128, 200 subscribers that stay: keepalive's CPU
   over 3 s, and whether `status` answers.

Not part of CI: a measurement to run against two builds side by side.
"""

import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time


def rss_kib(pid, field="VmRSS:"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/keepalive"
    runtime = tempfile.mkdtemp(prefix="keepalive_probe_")
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime)
    keepalive = subprocess.Popen(
        [binary, "run", "--name", "probe", "--", "sleep", "3600"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    sock = os.path.join(runtime, "keepalive", "probe.sock")

    def status(timeout=30):
        started = time.monotonic()
        done = subprocess.run(
            [binary, "status", "probe"], env=env, capture_output=True, timeout=timeout
        )
        return done.returncode, time.monotonic() - started, done.stderr.decode().strip()

    try:
        for _ in range(100):
            if os.path.exists(sock) and status()[0] == 0:
                break
            time.sleep(0.1)
        pid = keepalive.pid

        # 1. 512 MiB without a newline.
        before = rss_kib(pid)
        flood = socket.socket(socket.AF_UNIX)
        flood.connect(sock)
        sent = [0]

        def send():
            chunk = b"x" * (1 << 20)
            try:
                for _ in range(512):
                    flood.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.5)
        code, took, said = status()
        sender.join(timeout=120)
        after = rss_kib(pid)
        peak = rss_kib(pid, "VmHWM:")
        print(f"512 MiB request: RSS {before} KiB -> {after} KiB, peak {peak} KiB "
              f"({sent[0] >> 20} MiB sent); "
              f"status meanwhile: exit {code} in {took:.2f} s {said}")
        flood.close()

        # 2. 2000 subscribers that come and go.
        before = fds(pid)
        for _ in range(40):
            round_ = []
            for _ in range(50):
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                s.sendall(b'{"command":"events"}\n')
                round_.append(s)
            time.sleep(0.02)
            for s in round_:
                s.close()
        time.sleep(1)
        print(f"2000 subscribers came and went: descriptors {before} -> {fds(pid)}")

        # 3. 200 subscribers that stay, at a limit of 128 descriptors.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (128, 128))
        held = []
        for _ in range(200):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            try:
                s.sendall(b'{"command":"events"}\n')
            except OSError:
                pass
            held.append(s)
        time.sleep(0.5)
        ticks = cpu_ticks(pid)
        time.sleep(3)
        used = cpu_ticks(pid) - ticks
        code, took, said = status()
        print(f"at 128 descriptors with 200 subscribers: {used} of 300 ticks in 3 s; "
              f"status: exit {code} in {took:.2f} s {said}")
        for s in held:
            s.close()
    finally:
        keepalive.terminate()
        try:
            keepalive.wait(timeout=20)
        except subprocess.TimeoutExpired:
            keepalive.kill()
            keepalive.wait()
        subprocess.run(["rm", "-rf", runtime])


if __name__ == "__main__":
    main()
