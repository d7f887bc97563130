#!/usr/bin/env bash
# scripts/moto.sh — local moto server (S3 + STS + IAM on one port) for the
# AssumeRole / ExternalId / scoped-credential tests of s3mount.
#
# Usage:
#   scripts/moto.sh [start]        create <repo>/target/venv if missing (moto[server], boto3),
#                                  start moto_server on 127.0.0.1:${MOTO_PORT:-5055} in the
#                                  background (reused if already running), print
#                                  `export MOTO_ENDPOINT_URL=http://127.0.0.1:PORT` on stdout
#   scripts/moto.sh stop           stop the server started by `start`
#   scripts/moto.sh env            print the export line only
#   scripts/moto.sh setup ARGS...  run scripts/moto_setup.py with the venv's python
#                                  (--endpoint defaults to this server); prints one JSON object
#   scripts/moto.sh check ARGS...  run scripts/moto_check.py with the venv's python
#   scripts/moto.sh python ARGS... run the venv's python
#
# Typical use:
#   eval "$(scripts/moto.sh start)"
#   scripts/moto.sh setup --bucket b --prefix p --external-id xyz > target/moto/setup.json
#   scripts/moto.sh check --config target/moto/setup.json
#
# Environment: MOTO_PORT (default 5055), S3MOUNT_VENV (default <repo>/target/venv),
# S3MOUNT_MOTO_DIR (default <repo>/target/moto).
# Only 127.0.0.1 is ever contacted (besides PyPI through pip when the venv is created).
# Human messages go to stderr; stdout carries only machine-readable output.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
PORT="${MOTO_PORT:-5055}"
VENV="${S3MOUNT_VENV:-$REPO/target/venv}"
STATE="${S3MOUNT_MOTO_DIR:-$REPO/target/moto}"
PIDFILE="$STATE/moto.pid"
LOGFILE="$STATE/moto.log"
ENDPOINT="http://127.0.0.1:$PORT"

log() { printf 'moto.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The moto release the tests are written against. Pinned: 5.2.6 (newest on 2026-12-04)
# refuses an assumed role's ListObjectsV2 that its role policy allows (AccessDenied).
MOTO_VERSION=5.2.1

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] \
        && "$VENV/bin/python" -c "import boto3, moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        return
    fi
    log "creating python venv in $VENV (pip install moto[server]==$MOTO_VERSION boto3)"
    mkdir -p "$(dirname "$VENV")"
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (install python3-venv?)"
    fi
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2 || log "warning: pip upgrade failed"
    "$VENV/bin/python" -m pip install --quiet "moto[server]==$MOTO_VERSION" boto3 >&2 \
        || die "pip install moto[server]==$MOTO_VERSION boto3 failed"
}

# True if the moto server answers on our port.
answering() {
    curl -fsS -o /dev/null --max-time 2 --noproxy '*' "$ENDPOINT/moto-api/data.json" 2>/dev/null
}

# alive PID: the process exists, is not a zombie, and is a moto_server (not a reused pid).
alive() {
    local pid="$1" stat
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        stat="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
        [[ "$stat" != "Z" ]] || return 1
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'moto_server' || return 1
    fi
}

running_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    alive "$pid" || return 1
    printf '%s\n' "$pid"
}

print_env() {
    printf 'export MOTO_ENDPOINT_URL=%s\n' "$ENDPOINT"
}

cmd_start() {
    ensure_venv
    mkdir -p "$STATE"
    if running_pid >/dev/null && answering; then
        log "moto already running (pid $(cat "$PIDFILE")) on $ENDPOINT"
        print_env
        return
    fi
    if answering; then
        die "something else already answers on $ENDPOINT (not started by this script); set MOTO_PORT"
    fi
    if pid="$(running_pid)"; then
        log "stale moto process $pid is not answering; stopping it"
        cmd_stop
    fi
    log "starting moto_server on $ENDPOINT (log: $LOGFILE)"
    # setsid: own session so that the server survives the calling shell/CI step.
    # scripts/moto_server.py: moto_server with AWS's canonical query string (see there).
    setsid "$VENV/bin/python" "$REPO/scripts/moto_server.py" -H 127.0.0.1 -p "$PORT" >>"$LOGFILE" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local i
    for ((i = 0; i < 150; i++)); do
        if answering; then
            log "moto ready (pid $(cat "$PIDFILE"))"
            print_env
            return
        fi
        if ! alive "$(cat "$PIDFILE")"; then
            tail -n 20 "$LOGFILE" >&2 || true
            die "moto_server exited during startup"
        fi
        sleep 0.2
    done
    tail -n 20 "$LOGFILE" >&2 || true
    die "moto_server did not answer on $ENDPOINT within 30 s"
}

cmd_stop() {
    local pid i
    if ! pid="$(running_pid)"; then
        log "moto not running"
        rm -f "$PIDFILE"
        return
    fi
    log "stopping moto (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "moto did not exit after SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

has_endpoint_arg() {
    local a
    for a in "$@"; do
        case "$a" in --endpoint | --endpoint=*) return 0 ;; esac
    done
    return 1
}

run_py() {
    local script="$1"
    shift
    ensure_venv
    if has_endpoint_arg "$@"; then
        exec "$VENV/bin/python" "$SCRIPT_DIR/$script" "$@"
    fi
    exec "$VENV/bin/python" "$SCRIPT_DIR/$script" --endpoint "$ENDPOINT" "$@"
}

main() {
    local cmd="${1:-start}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        env) print_env ;;
        setup) run_py moto_setup.py "$@" ;;
        check) run_py moto_check.py "$@" ;;
        python) ensure_venv; exec "$VENV/bin/python" "$@" ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2 ;;
        *) die "unknown command '$cmd' (start|stop|env|setup|check|python)" ;;
    esac
}

main "$@"
