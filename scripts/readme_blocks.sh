#!/usr/bin/env bash
# Runs the READMEs' command blocks that start a server, as written, from
# the repository's root (issue 30 §1): each command line verbatim through
# bash; the one that serves runs in the background until /healthz answers,
# then gets what its comment says (SIGTERM, Ctrl+C, `kill -HUP <pid>`)
# and must exit with the status the README promises.
#
#   README.md            cargo run --example http_server        → 143 on SIGTERM
#   README.md            the keepalive block (release, install) → 143 on SIGTERM
#   keepalive/README.md  the quick start (debug, cargo run)     → 130 on Ctrl+C
#   keepalive/README.md  the keepalive block, with its HUP      → 143 on SIGTERM
#
# .ci/run runs it on a fresh clone. `cargo test --workspace`, the other
# command of the first block, is CI's first step. The blocks of keepalive's
# commands (status, reload, logs, ...) name an instance the reader has
# started; the conformance suite runs each command.
set -euo pipefail
cd "$(dirname "$0")/.."

URL=http://127.0.0.1:3000/healthz
LOGS=target/readme_blocks
mkdir -p "$LOGS"

fail() {
    echo "readme_blocks: $*" >&2
    exit 1
}

# The lines of the ```sh block of $1 whose first line starts with $2.
block() {
    awk -v first="$2" '
        /^```sh$/ { inside = 1; fresh = 1; next }
        /^```/ { inside = 0; taking = 0; next }
        inside && fresh { taking = index($0, first) == 1; fresh = 0 }
        taking { print }
    ' "$1"
}

# Waits (up to $2 seconds) until the server answers /healthz, while the
# process $1 lives.
wait_healthy() {
    local pid=$1 limit=$2 waited=0
    until curl -sf -o /dev/null "$URL"; do
        kill -0 "$pid" 2>/dev/null || fail "pid $pid exited before $URL answered"
        ((waited++ < limit * 10)) || fail "$URL did not answer in ${limit}s"
        sleep 0.1
    done
}

# Waits for the background job $1 and checks its status is $2.
wait_status() {
    local pid=$1 expected=$2 status=0
    local watchdog
    (sleep 60 && kill -KILL -- "-$pid" 2>/dev/null) &
    watchdog=$!
    wait "$pid" || status=$?
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    [ "$status" = "$expected" ] || fail "exit status $status, the README says $expected"
}

# Sends requests for $1 seconds; each must be answered 200.
requests_for() {
    local until=$((SECONDS + $1)) n=0
    while ((SECONDS < until)); do
        curl -sf -o /dev/null "$URL" || fail "request $n failed"
        n=$((n + 1))
    done
    echo "  $n requests, every one answered"
}

# Runs the block $1 of README $2 (all its lines verbatim through bash, the
# serving line in the background, a process group of its own); then
# `stop` says how it ends.
run_block() {
    local readme=$1 first=$2 stop=$3 expected=$4 pid="" line
    echo "== $readme: $first"
    local lines=()
    mapfile -t lines < <(block "$readme" "$first")
    ((${#lines[@]} > 0)) || fail "$readme: no sh block starting with: $first"
    for line in "${lines[@]}"; do
        echo "\$ $line"
        case $line in
        keepalive\ --*|*"cargo run"*)
            # With job control the job is a process group of its own, and
            # does not inherit SIGINT ignored as a script's background job
            # does (the crate would leave it so). A simple command replaces
            # the shell, so $! is the server.
            set -m
            if [[ $line == *"&&"* ]]; then
                bash -c "$line" >"$LOGS/server.log" 2>&1 &
            else
                bash -c "exec $line" >"$LOGS/server.log" 2>&1 &
            fi
            pid=$!
            set +m
            # A cold build may come first.
            wait_healthy "$pid" 600
            requests_for 2
            ;;
        cargo\ test*)
            echo "  (CI's first step runs it)"
            ;;
        kill\ -HUP*)
            [ -n "$pid" ] || fail "nothing to HUP"
            bash -c "${line//"<keepalive's pid>"/$pid}"
            # Both workers are replaced one at a time: no request fails.
            requests_for 5
            ;;
        *)
            bash -c "$line"
            ;;
        esac
    done
    [ -n "$pid" ] || fail "$readme: the block starting with '$first' serves nothing"
    case $stop in
    sigterm) kill -TERM "$pid" ;;
    ctrl-c) kill -INT -- "-$pid" ;; # the terminal's Ctrl+C: the whole foreground group
    esac
    wait_status "$pid" "$expected"
    ! curl -s -o /dev/null "$URL" || fail "still answering after the exit"
    echo "  exit $expected, as the README says"
}

command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
! curl -s -o /dev/null "$URL" || fail "something already listens on $URL"

run_block README.md "cargo run --example http_server" sigterm 143
run_block README.md "cargo build --release --example http_server" sigterm 143
run_block keepalive/README.md "cargo build --example http_server && cargo run -p keepalive" ctrl-c 130
run_block keepalive/README.md "cargo build --release --example http_server" sigterm 143
echo "readme_blocks: every block ran as written"
