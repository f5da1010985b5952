#!/usr/bin/env bash
# Load check for examples/http_server.rs: steady load from wrk, SIGTERM in the
# middle, then what the client saw against what the server accepted, answered,
# logged and wrote to its database.
#
# Counting: `sent` is every request wrk wrote (scripts/count_sent.lua), including
# those on connections refused after the listener closed; `accepted` is every
# request the server's handler started (its "request started" log lines);
# `answered` is the access log (written by tracing-appender's thread, flushed
# last); `rows` is what `/slow` wrote to the SQLite database, read after the
# exit; `read` is what wrk received. A request accepted
# but not read by the client is a failure; `sent - accepted` never reached the
# server (refused or reset once the listener closed). A request that found the
# pool closed is answered 503 and counts as failed. "WAL left" is SQLite's
# write-ahead log still there after the exit: the pool was not closed. wrk is stopped with
# SIGINT (it prints its totals) as soon as the server has exited.
#
#   scripts/load.sh [runs] [connections] [route]     (defaults: 5 64 /slow?ms=20)
#
# Needs wrk (Debian: apt-get install wrk) and python3 (its sqlite3 module reads
# the database). Traffic goes to 127.0.0.1 only, and
# every run is bounded: wrk stops when the server exits (at most 10 s), the server is killed if still
# alive after 30 s. Prints one table row per run.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-5}
CONNECTIONS=${2:-64}
ROUTE=${3:-/slow?ms=20}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 not found: apt-get install python3" >&2; exit 1; }

cargo build --quiet --release --example http_server
SERVER=target/release/examples/http_server
WORK=$(mktemp -d)
server_pid=""; wrk_pid=""
cleanup() {
    [ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

rows() {
    python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT count(*) FROM visits").fetchone()[0])' "$1"
}

echo "| run | sent | accepted | answered | rows | read by wrk | failed among accepted | never accepted | wrk errors: write / read / timeout | WAL left | SIGTERM → exit (ms) | status |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for run in $(seq 1 "$RUNS"); do
    log="$WORK/access-$run.log"
    db="$WORK/visits-$run.db"
    PORT=0 ACCESS_LOG="$log" DATABASE="$db" RUST_LOG=warn,http_server=info "$SERVER" > "$WORK/server-$run.out" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 500); do
        grep -q "listening on" "$WORK/server-$run.out" && break
        sleep 0.01
    done
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/server-$run.out" | head -1)
    [ -n "$url" ] || { echo "the server did not start" >&2; cat "$WORK/server-$run.out" >&2; exit 1; }

    wrk -t2 -c"$CONNECTIONS" -d10s --timeout 5s -s scripts/count_sent.lua "$url$ROUTE" > "$WORK/wrk-$run.out" 2>&1 &
    wrk_pid=$!
    sleep 3                      # steady load for 3 s, then the stop
    sent_at=$(now_ms)
    kill -TERM "$server_pid"
    ( sleep 30; kill -KILL "$server_pid" 2>/dev/null ) &
    watchdog=$!
    status=0; wait "$server_pid" || status=$?
    exit_ms=$(( $(now_ms) - sent_at ))
    kill "$watchdog" 2>/dev/null || true
    server_pid=""
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" || true
    wrk_pid=""

    sent=$(sed -n 's/^sent \([0-9]*\)/\1/p' "$WORK/wrk-$run.out")
    accepted=$(grep -c "request started" "$WORK/server-$run.out" || true)
    answered=$(wc -l < "$log")
    wal_left=no; [ -e "$db-wal" ] && wal_left=yes
    rows=$(rows "$db")
    read_by_wrk=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$WORK/wrk-$run.out")
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$WORK/wrk-$run.out")
    read_ok=$(( read_by_wrk - ${non2xx:-0} ))
    errors=$(sed -n 's/^errors connect [0-9]* read \([0-9]*\) write \([0-9]*\) status [0-9]* timeout \([0-9]*\)/\2 \/ \1 \/ \3/p' "$WORK/wrk-$run.out")
    echo "| $run | $sent | $accepted | $answered | $rows | $read_ok | $(( accepted - read_ok )) | $(( sent - accepted )) | $errors | $wal_left | $exit_ms | $status |"
done
