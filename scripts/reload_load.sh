#!/usr/bin/env bash
# Zero-downtime reloads under load: examples/http_server.rs under
#   keepalive --workers 2 --listen 127.0.0.1:PORT --wait-ready
# with wrk at 64 connections for 60 s, and a SIGHUP to keepalive every 5 s
# (10 reloads). Each run prints one table row: what wrk read, its errors,
# the reloads keepalive completed, and keepalive's open descriptors before
# and after. Run once with a new connection per request (Connection: close)
# and once with keep-alive connections (wrk's default).
#
#   scripts/reload_load.sh [seconds] [connections] [route]   (defaults: 60 64 /slow?ms=20)
#
# Needs wrk (Debian: apt-get install wrk). Traffic goes to 127.0.0.1 only;
# every process is bounded: wrk by -d, keepalive killed if alive 30 s after
# its SIGTERM. The workers' drain delay (DRAIN_DELAY_MS=500) is what moves
# keep-alive clients off an old worker: during it, responses carry
# `Connection: close`.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_OF_LOAD=${1:-60}
CONNECTIONS=${2:-64}
ROUTE=${3:-/slow?ms=20}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }

cargo build --quiet --release --example http_server
cargo build --quiet --release -p keepalive --bin keepalive
SERVER=$PWD/target/release/examples/http_server
KEEPALIVE=$PWD/target/release/keepalive
WORK=$(mktemp -d)
keepalive_pid=""; wrk_pid=""
cleanup() {
    [ -n "$wrk_pid" ] && kill "$wrk_pid" 2>/dev/null || true
    [ -n "$keepalive_pid" ] && kill -KILL "$keepalive_pid" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fds() { ls "/proc/$1/fd" | wc -l; }

echo "| connections | requests read | non-2xx | errors connect / read / write / timeout | reloads done / failed | keepalive fds before → after | exit |"
echo "|---|---|---|---|---|---|---|"
for mode in close keep-alive; do
    port=$(free_port)
    DRAIN_DELAY_MS=500 ACCESS_LOG="$WORK/access-$mode.log" DATABASE="$WORK/visits-$mode.db" RUST_LOG=warn \
        "$KEEPALIVE" --workers 2 --listen "127.0.0.1:$port" --wait-ready --kill-timeout 8s \
        -- "$SERVER" > "$WORK/keepalive-$mode.out" 2> "$WORK/keepalive-$mode.err" &
    keepalive_pid=$!
    for _ in $(seq 1 500); do
        [ "$(grep -c 'is ready' "$WORK/keepalive-$mode.err" || true)" -ge 2 ] && break
        sleep 0.01
    done
    fds_before=$(fds "$keepalive_pid")
    header=()
    [ "$mode" = close ] && header=(-H "Connection: close")
    wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_OF_LOAD}s" --timeout 5s "${header[@]}" \
        -s scripts/count_sent.lua "http://127.0.0.1:$port$ROUTE" > "$WORK/wrk-$mode.out" 2>&1 &
    wrk_pid=$!
    reloads=$(( SECONDS_OF_LOAD / 5 - 2 ))
    sleep 5
    for _ in $(seq 1 "$reloads"); do
        kill -HUP "$keepalive_pid"
        sleep 5
    done
    wait "$wrk_pid" || true
    wrk_pid=""
    sleep 1                  # the last old workers finish their drain
    fds_after=$(fds "$keepalive_pid")
    kill -TERM "$keepalive_pid"
    ( sleep 30; kill -KILL "$keepalive_pid" 2>/dev/null ) &
    watchdog=$!
    status=0; wait "$keepalive_pid" || status=$?
    kill "$watchdog" 2>/dev/null || true
    keepalive_pid=""

    read_by_wrk=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$WORK/wrk-$mode.out")
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$WORK/wrk-$mode.out")
    errors=$(sed -n 's/^errors connect \([0-9]*\) read \([0-9]*\) write \([0-9]*\) status [0-9]* timeout \([0-9]*\)/\1 \/ \2 \/ \3 \/ \4/p' "$WORK/wrk-$mode.out")
    done_count=$(grep -c 'reload done' "$WORK/keepalive-$mode.err" || true)
    failed_count=$(grep -c 'reload failed' "$WORK/keepalive-$mode.err" || true)
    echo "| $mode | $read_by_wrk | ${non2xx:-0} | $errors | $done_count / $failed_count (of $reloads) | $fds_before → $fds_after | $status |"
done
