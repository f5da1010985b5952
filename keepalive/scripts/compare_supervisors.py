#!/usr/bin/env python3
"""keepalive beside pm2 and forever, on this machine, in one run.

    python3 keepalive/scripts/compare_supervisors.py            # from the repository's root

Needs node and npm (pm2 7 and forever 4 are installed from npm into
target/bench-pm2), so it is not part of CI. Builds keepalive and the HTTP
server example in release. Every process it starts is stopped (and killed
if need be) before it ends, and each supervisor gets its own home
(PM2_HOME, FOREVER_ROOT, XDG_RUNTIME_DIR) under a temporary directory.

Measured, for each supervisor:
- crash -> answering: SIGKILL to the worker (the HTTP example), then
  connections until one is answered; the median of ROUNDS (default 15);
- requests failed while the worker is replaced under a bounded load (4
  clients, each one request at a time): by a reload (`keepalive reload`,
  `pm2 reload`, `forever restart`) and by a change to a watched file
  (`--watch`), REPLACEMENTS times each (default 5). One worker each: a
  program that is not Node runs in pm2's fork mode, where two instances
  cannot share a port;
- the supervisor's own RSS with one idle worker (`sleep 3600`) and with
  100, and its CPU time over 30 s idle with one (schedstat, ns);
- Node in pm2's cluster mode, where pm2's reload is ready-first: the same
  Node server (keepalive/examples/node/server.js) under `pm2 start -i N`
  and under `keepalive --workers N --ready-fd 4`, N = 1 and 2, requests
  failed under the same load over REPLACEMENTS reloads each.

`--node-only` runs the last part alone.
"""

import json
import os
import threading
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEEPALIVE = os.path.join(ROOT, "target/release/keepalive")
SERVER = os.path.join(ROOT, "target/release/examples/http_server")
NODE_DIR = os.path.join(ROOT, "target/bench-pm2")
PM2 = os.path.join(NODE_DIR, "node_modules/.bin/pm2")
FOREVER = os.path.join(NODE_DIR, "node_modules/.bin/forever")
NODE_SERVER = os.path.join(ROOT, "keepalive/examples/node/server.js")
ROUNDS = int(os.environ.get("ROUNDS", "15"))
REPLACEMENTS = int(os.environ.get("REPLACEMENTS", "5"))
IDLE_SECS = int(os.environ.get("IDLE_SECS", "30"))


def sh(*args, env=None, check=True):
    # Not pipes: a daemon started here (pm2's, forever's monitor) would keep
    # them, and die of EPIPE on its next line once this call returned.
    return subprocess.run(args, env=env, check=check,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def setup():
    sh("cargo", "build", "--quiet", "--release", "-p", "keepalive")
    sh("cargo", "build", "--quiet", "--release", "--example", "http_server")
    if not (os.path.exists(PM2) and os.path.exists(FOREVER)):
        os.makedirs(NODE_DIR, exist_ok=True)
        sh("npm", "install", "--prefix", NODE_DIR, "--no-audit", "--no-fund", "pm2@7", "forever@4")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tree(pid):
    """pid and every descendant."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ns(pid):
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        pass
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answered(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            head = s.recv(64)
            return head.startswith(b"HTTP/1.") and head[8:13] == b" 200 "
    except OSError:
        return False


def wait(what, test, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


class Keepalive:
    name = "keepalive"

    def __init__(self, home):
        self.env = dict(os.environ, XDG_RUNTIME_DIR=home)
        self.proc = None

    def start(self, program, workers=1, port=None, watch=None):
        args = [KEEPALIVE, "run", "--name", "bench", "--workers", str(workers)]
        if port:
            args += ["--listen", f"127.0.0.1:{port}", "--wait-ready", "--min-uptime", "0ms"]
        if program[0] == "node":
            args += ["--ready-fd", "4"]
        if watch:
            args += ["--watch", watch]
        self.proc = subprocess.Popen(args + ["--"] + program, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait("workers", lambda: len(self.workers()) >= workers)

    def supervisors(self):
        return [self.proc.pid]

    def reload(self):
        sh(KEEPALIVE, "reload", "bench", env=self.env)

    def workers(self):
        return children(self.proc.pid)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            for p in tree(self.proc.pid):
                os.kill(p, signal.SIGKILL)
            self.proc.wait()


class Pm2:
    name = "pm2 7"

    def __init__(self, home):
        self.env = dict(os.environ, PM2_HOME=home)

    def start(self, program, workers=1, port=None, watch=None):
        env = dict(self.env, PORT=str(port or 0))
        if program[0] == "node":
            # A Node script with -i: pm2's cluster mode (Node's cluster
            # module shares the port), where its reload is ready-first.
            sh(PM2, "start", program[1], "--name", "bench", "-i", str(workers), env=env)
            wait("workers", lambda: len(self.workers()) >= workers)
            return
        rest = ["--", *program[1:]] if program[1:] else []
        watching = ["--watch", watch] if watch else []
        sh(PM2, "start", program[0], "--name", "bench", "-i", str(workers), *watching, *rest,
           env=env)
        wait("workers", lambda: len(self.workers()) >= workers)

    def daemon(self):
        with open(os.path.join(self.env["PM2_HOME"], "pm2.pid")) as f:
            return int(f.read())

    def supervisors(self):
        return [self.daemon()]

    def reload(self):
        sh(PM2, "reload", "bench", env=self.env)

    def workers(self):
        return children(self.daemon())

    def stop(self):
        sh(PM2, "kill", env=self.env, check=False)


class Forever:
    name = "forever 4"

    def __init__(self, home):
        self.env = dict(os.environ, FOREVER_ROOT=home)
        self.uids = []

    def start(self, program, workers=1, port=None, watch=None):
        env = dict(self.env, PORT=str(port or 0))
        watching = ["--watch", "--watchDirectory", watch] if watch else []
        # forever runs `COMMAND SCRIPT`: the program, through a script that
        # execs it (same pid).
        script = os.path.join(self.env["FOREVER_ROOT"], "run.sh")
        with open(script, "w") as f:
            f.write("exec " + " ".join(program) + "\n")
        for n in range(workers):
            uid = f"bench{n}"
            sh(FOREVER, "start", "--uid", uid, "--minUptime", "1", "--spinSleepTime", "1",
               *watching, "-c", "/bin/sh", script, env=env)
            self.uids.append(uid)
        wait("workers", lambda: len(self.workers()) >= workers)

    def reload(self):
        for uid in self.uids:
            sh(FOREVER, "restart", uid, env=self.env)

    def supervisors(self):
        """The monitor processes (one per app) and forever's daemon."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        if f"FOREVER_ROOT={self.env['FOREVER_ROOT']}".encode() in f.read():
                            with open(f"/proc/{entry}/cmdline", "rb") as c:
                                if b"node" in c.read().split(b"\0")[0]:
                                    pids.append(int(entry))
                except OSError:
                    pass
        return pids

    def workers(self):
        return [c for p in self.supervisors() for c in children(p)
                if not self._is_node(c)]

    @staticmethod
    def _is_node(pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as c:
                return b"node" in c.read().split(b"\0")[0]
        except OSError:
            return False

    def stop(self):
        sh(FOREVER, "stopall", env=self.env, check=False)
        for p in self.supervisors():
            os.kill(p, signal.SIGKILL)


def crash_to_answering(sup):
    port = free_port()
    try:
        sup.start([SERVER], 1, port)
        wait("an answer", lambda: answered(port))
        times = []
        for _ in range(ROUNDS):
            [worker] = wait("one worker", lambda: sup.workers() if len(sup.workers()) == 1 else None)
            time.sleep(0.3)  # settled
            t0 = time.monotonic()
            os.kill(worker, signal.SIGKILL)
            while not answered(port):
                if time.monotonic() - t0 > 30:
                    raise SystemExit(f"{sup.name}: no answer 30 s after the crash")
            times.append((time.monotonic() - t0) * 1000)
        return statistics.median(times), min(times), max(times)
    finally:
        sup.stop()


class Load:
    """CLIENTS threads, each sending one `GET /` at a time and counting the
    answers that are not 200 (refused, reset, timed out, another status)."""

    CLIENTS = 4

    def __init__(self, port):
        self.port, self.sent, self.failed = port, 0, 0
        self.lock, self.done = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.client) for _ in range(self.CLIENTS)]

    def client(self):
        while not self.done.is_set():
            ok = answered(self.port)
            with self.lock:
                self.sent += 1
                self.failed += 0 if ok else 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_):
        self.done.set()
        for t in self.threads:
            t.join()


def replaced_under_load(sup, how):
    """Requests sent and failed over REPLACEMENTS replacements by `how`
    ("reload" or "watch"), each from 0.5 s before it until 1 s after the new
    worker answers alone."""
    port = free_port()
    watched = tempfile.mkdtemp(prefix="bench-watch-")
    try:
        sup.start([SERVER], 1, port, watch=watched if how == "watch" else None)
        wait("an answer", lambda: answered(port))
        time.sleep(1)
        with Load(port) as load:
            for n in range(REPLACEMENTS):
                [old] = wait("one worker", lambda: sup.workers() if len(sup.workers()) == 1 else None)
                time.sleep(0.5)
                if how == "reload":
                    sup.reload()
                else:
                    with open(os.path.join(watched, "config"), "w") as f:
                        f.write(f"change {n}\n")
                wait("the new worker alone",
                     lambda: (w := sup.workers()) and old not in w and len(w) == 1 and answered(port))
                time.sleep(1)
        return load.sent, load.failed
    finally:
        sup.stop()
        shutil.rmtree(watched, ignore_errors=True)


def node_reloads(sup, workers):
    """Requests sent and failed over REPLACEMENTS reloads of the Node
    server with `workers` workers, each reload waited for (both
    `keepalive reload` and `pm2 reload` return once it is over), then 1 s."""
    port = free_port()
    try:
        sup.start(["node", NODE_SERVER], workers, port)
        wait("an answer", lambda: answered(port))
        time.sleep(1)
        with Load(port) as load:
            for _ in range(REPLACEMENTS):
                old = set(sup.workers())
                time.sleep(0.5)
                sup.reload()
                wait("new workers", lambda: not (set(sup.workers()) & old) and answered(port))
                time.sleep(1)
        return load.sent, load.failed
    finally:
        sup.stop()


def node_rows():
    """pm2's cluster mode beside keepalive, for the same Node server."""
    rows = []
    for kind in (Keepalive, Pm2):
        for workers in (1, 2):
            home = tempfile.mkdtemp(prefix="bench-sup-")
            try:
                sent, failed = node_reloads(kind(home), workers)
                rows.append((kind.name, workers, sent, failed))
                print(f"{kind.name} -i {workers}: {failed} / {sent}", file=sys.stderr)
            finally:
                shutil.rmtree(home, ignore_errors=True)
    print(f"| Node server, {REPLACEMENTS} reloads under load | workers | failed / sent |")
    print("|---|---|---|")
    for name, workers, sent, failed in rows:
        how = "pm2 cluster mode (`-i`)" if name.startswith("pm2") else "keepalive `--ready-fd`"
        print(f"| {name}, {how} | {workers} | {failed} / {sent} |")


def footprint(sup, workers):
    try:
        sup.start(["sleep", "3600"], workers)
        time.sleep(2)
        rss = sum(rss_kb(p) for p in sup.supervisors())
        cpu = None
        if workers == 1:
            c0 = sum(cpu_ns(p) for p in sup.supervisors())
            time.sleep(IDLE_SECS)
            cpu = (sum(cpu_ns(p) for p in sup.supervisors()) - c0) / 1e6 * 30 / IDLE_SECS
        return rss, cpu
    finally:
        sup.stop()


def main():
    setup()
    if "--node-only" in sys.argv:
        node_rows()
        return
    rows = []
    for kind in (Keepalive, Pm2, Forever):
        homes = []

        def fresh():
            homes.append(tempfile.mkdtemp(prefix="bench-sup-"))
            return kind(homes[-1])

        try:
            crash = crash_to_answering(fresh())
            reload = replaced_under_load(fresh(), "reload")
            watch = replaced_under_load(fresh(), "watch")
            rss1, cpu = footprint(fresh(), 1)
            rss100, _ = footprint(fresh(), 100)
            rows.append((kind.name, crash, reload, watch, rss1, rss100, cpu))
            print(f"{kind.name}: done", file=sys.stderr)
        finally:
            for home in homes:
                shutil.rmtree(home, ignore_errors=True)
    print(f"| supervisor | crash → answering, median (min–max) of {ROUNDS} "
          f"| failed / sent, {REPLACEMENTS} reloads under load "
          f"| failed / sent, {REPLACEMENTS} watch restarts under load "
          "| its RSS, 1 idle worker | its RSS, 100 workers | its CPU per 30 s idle |")
    print("|---|---|---|---|---|---|---|")
    for name, (med, lo, hi), reload, watch, rss1, rss100, cpu in rows:
        print(f"| {name} | {med:.1f} ms ({lo:.1f}–{hi:.1f}) | {reload[1]} / {reload[0]} "
              f"| {watch[1]} / {watch[0]} | {rss1 / 1024:.1f} MB | {rss100 / 1024:.1f} MB "
              f"| {cpu:.3f} ms |")
    print(json.dumps({"rounds": ROUNDS, "replacements": REPLACEMENTS, "idle_secs": IDLE_SECS}),
          file=sys.stderr)
    print()
    node_rows()


if __name__ == "__main__":
    main()
