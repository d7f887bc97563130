#!/usr/bin/env bash
# scripts/garage.sh — a local single-node Garage S3 server for development, tests and CI.
#
# Usage:
#   scripts/garage.sh [start]          start (or reuse) the server, set up the layout, the
#                                      development key and the main bucket, then print the
#                                      `export ...` lines below on stdout (also in <state>/env)
#   scripts/garage.sh stop             stop the server started by `start`
#   scripts/garage.sh env              print the `export ...` lines only
#   scripts/garage.sh bucket NAME      create bucket NAME if missing; allow the dev key on it
#   scripts/garage.sh key NAME BUCKET [rw|ro]
#                                      create (or reuse) key NAME, allowed read+write (rw, the
#                                      default) or read only (ro) on BUCKET only; prints
#                                      `KEY_ID=... SECRET=...` on stdout
#   scripts/garage.sh status           `garage status` of the running server
#   scripts/garage.sh garage ARGS...   run the garage CLI against this server's config
#
# Typical use:  eval "$(scripts/garage.sh start)"
# Printed lines:
#   export AWS_ENDPOINT_URL=http://127.0.0.1:3900
#   export AWS_ACCESS_KEY_ID=GK...
#   export AWS_SECRET_ACCESS_KEY=...
#   export AWS_REGION=us-east-1
#   export S3MOUNT_BUCKET=s3mount-test
# S3 addressing is path style (http://127.0.0.1:3900/BUCKET/KEY).
#
# Environment:
#   S3MOUNT_GARAGE_DIR  state dir (default <repo>/target/garage): garage.toml, rpc_secret,
#                       meta/, data/, garage.pid, garage.log, env
#   S3MOUNT_BUCKET      main bucket (default s3mount-test)
#   GARAGE_S3_PORT / GARAGE_RPC_PORT / GARAGE_ADMIN_PORT   (default 3900 / 3901 / 3903)
#   GARAGE_RUST_LOG     RUST_LOG for the server (default: info, without one line per request)
#   GARAGE_BIN          garage binary to use (default: `garage` on PATH, else ~/.cargo/bin/garage,
#                       else `cargo install garage --locked`, ~15 min on 2 cores)
#
# Safe to rerun any number of times, from any cwd. Only 127.0.0.1 is used. Human messages go
# to stderr; stdout carries only the machine-readable lines described above.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
STATE="${S3MOUNT_GARAGE_DIR:-$REPO/target/garage}"
S3_PORT="${GARAGE_S3_PORT:-3900}"
RPC_PORT="${GARAGE_RPC_PORT:-3901}"
ADMIN_PORT="${GARAGE_ADMIN_PORT:-3903}"
BUCKET="${S3MOUNT_BUCKET:-s3mount-test}"
REGION="us-east-1"
ENDPOINT="http://127.0.0.1:$S3_PORT"

# Fixed development credentials (local test server only; not a secret).
DEV_KEY_NAME="s3mount-dev"
DEV_KEY_ID="GK5335a0d2c1e7f4b89a6d3c01"
DEV_SECRET="7f3b9c2e5a8d41f6b0c7e2d9a4f81b3c6e5d0a9f2b7c4e1d8a3f6b9c0e2d5a71"

CFG="$STATE/garage.toml"
PIDFILE="$STATE/garage.pid"
LOGFILE="$STATE/garage.log"
ENVFILE="$STATE/env"
SECRETFILE="$STATE/rpc_secret"
GARAGE=""

log() { printf 'garage.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- binary

find_garage() {
    if [[ -n "${GARAGE_BIN:-}" ]]; then
        [[ -x "$GARAGE_BIN" ]] || die "GARAGE_BIN=$GARAGE_BIN is not executable"
        GARAGE="$GARAGE_BIN"
    elif command -v garage >/dev/null 2>&1; then
        GARAGE="$(command -v garage)"
    elif [[ -x "$HOME/.cargo/bin/garage" ]]; then
        GARAGE="$HOME/.cargo/bin/garage"
    else
        return 1
    fi
}

ensure_garage() {
    if find_garage; then
        check_garage_version
        return
    fi
    command -v cargo >/dev/null 2>&1 || die "garage not found and cargo is not installed"
    mkdir -p "$STATE"
    # One build at a time on this machine, even if several copies of this script run at
    # once with different state dirs (they all install into ~/.cargo/bin).
    exec 9>"${TMPDIR:-/tmp}/s3mount-garage-install.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
    if find_garage; then
        check_garage_version
        return
    fi
    log "garage not found: building it with 'cargo install garage --locked'"
    log "(this takes about 15 minutes on 2 cores; output follows on stderr)"
    cargo install garage --locked >&2 || die "cargo install garage --locked failed"
    find_garage || die "cargo install succeeded but no garage binary on PATH or in ~/.cargo/bin"
    check_garage_version
}

# This script reads cluster state with `garage json-api`, new in Garage 2.0.
check_garage_version() {
    "$GARAGE" json-api --help >/dev/null 2>&1 \
        || die "$GARAGE ($("$GARAGE" --version 2>/dev/null | head -n 1)) is too old: Garage >= 2.0 is needed"
}

# The garage CLI against our config. RUST_LOG from the caller (e.g. for s3mount) is not
# passed on, so that the CLI keeps its quiet default.
g() {
    env -u RUST_LOG "$GARAGE" -c "$CFG" "$@"
}

# ---------------------------------------------------------------- config

ensure_config() {
    mkdir -p "$STATE/meta" "$STATE/data"
    case "$STATE" in *[\"\\]*) die "state dir must not contain a double quote or a backslash: $STATE" ;; esac
    if [[ ! -s "$SECRETFILE" ]]; then
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SECRETFILE")
        log "generated a new rpc_secret in $SECRETFILE"
    fi
    local secret
    secret="$(cat "$SECRETFILE")"
    [[ "$secret" =~ ^[0-9a-f]{64}$ ]] || die "$SECRETFILE does not hold 64 hex digits; delete it"
    local new="$CFG.new.$$"
    (
        umask 077
        cat >"$new" <<EOF
# Generated by scripts/garage.sh — edits are overwritten on the next start.
# Garage 2.x single-node development server (replication_mode is gone in 2.x:
# replication_factor + consistency_mode replace it).
metadata_dir = "$STATE/meta"
data_dir = "$STATE/data"
db_engine = "lmdb"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$secret"

[s3_api]
api_bind_addr = "127.0.0.1:$S3_PORT"
s3_region = "$REGION"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
EOF
    )
    if [[ -f "$CFG" ]] && cmp -s "$new" "$CFG"; then
        rm -f "$new"
    else
        mv -f "$new" "$CFG"
        if running_pid >/dev/null; then
            log "warning: $CFG changed while the server runs; run '$0 stop' and start again to apply"
        fi
    fi
}

# ---------------------------------------------------------------- process

# alive PID: the process exists, is not a zombie, and is a garage (not a reused pid).
alive() {
    local pid="$1" stat
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/stat" ]]; then
        stat="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
        [[ "$stat" != "Z" ]] || return 1
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'garage' || return 1
    fi
}

running_pid() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE")"
    alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# The node answers RPC (this is what every garage CLI command needs).
answering() {
    g status >/dev/null 2>&1
}

# Anything at all answers HTTP on the S3 port.
s3_port_answers() {
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --noproxy '*' "$ENDPOINT/" 2>/dev/null || true)"
    [[ -n "$code" && "$code" != "000" ]]
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local secs="$1" what="$2" i pid
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        "$@" && return 0
        if pid="$(cat "$PIDFILE" 2>/dev/null)" && ! alive "$pid"; then
            tail -n 30 "$LOGFILE" >&2 || true
            die "garage server exited while waiting for: $what (log: $LOGFILE)"
        fi
        sleep 0.2
    done
    tail -n 30 "$LOGFILE" >&2 || true
    die "timed out after ${secs}s waiting for: $what (log: $LOGFILE)"
}

start_server() {
    local pid
    if pid="$(running_pid)"; then
        if answering; then
            log "garage already running (pid $pid), reusing it"
            return
        fi
        log "garage process $pid exists but does not answer yet; waiting"
        if wait_for_quiet 20 answering; then
            return
        fi
        log "garage process $pid still not answering; restarting it"
        cmd_stop
    fi
    if s3_port_answers; then
        die "something not started by this script already listens on $ENDPOINT (pid file: $PIDFILE); stop it or set GARAGE_S3_PORT"
    fi
    log "starting $("$GARAGE" --version 2>/dev/null | head -n 1) (state: $STATE, log: $LOGFILE)"
    # setsid: own session, so the server outlives the calling shell or CI step.
    NO_COLOR=1 RUST_LOG="${GARAGE_RUST_LOG:-netapp=info,garage=info,garage_api_common::generic_server=warn}" \
        setsid "$GARAGE" -c "$CFG" server >>"$LOGFILE" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$PIDFILE"
    wait_for 60 "garage status to answer" answering
    log "garage running (pid $(cat "$PIDFILE"))"
}

wait_for_quiet() { # like wait_for, but returns 1 on timeout
    local secs="$1" i
    shift
    for ((i = 0; i < secs * 5; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    return 1
}

cmd_stop() {
    local pid i
    if ! pid="$(running_pid)"; then
        log "garage not running"
        rm -f "$PIDFILE"
        return
    fi
    log "stopping garage (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "garage did not exit within 15 s of SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$PIDFILE"
    log "garage stopped"
}

# ---------------------------------------------------------------- cluster setup

# json_get EXPR: evaluate a Python expression over the JSON document `d` read from stdin.
json_get() {
    python3 -c 'import json, sys
d = json.load(sys.stdin)
r = eval(sys.argv[1])
if isinstance(r, bool):
    print("true" if r else "false")
elif isinstance(r, (list, tuple)):
    print("\n".join(str(x) for x in r))
elif r is not None:
    print(r)' "$1"
}

ensure_layout() {
    local node layout has_role staged version
    node="$(g node id -q 2>/dev/null | head -n 1)"
    node="${node%%@*}"
    [[ "$node" =~ ^[0-9a-f]{64}$ ]] || die "could not read the node id (got '$node')"
    layout="$(g json-api GetClusterLayout)"
    has_role="$(json_get "any(r['id'] == '$node' for r in d['roles'])" <<<"$layout")"
    if [[ "$has_role" == "true" ]]; then
        return
    fi
    staged="$(json_get "any(c['id'] == '$node' for c in d['stagedRoleChanges'])" <<<"$layout")"
    if [[ "$staged" != "true" ]]; then
        log "assigning a layout role to node ${node:0:16} (zone dc1, 10G)"
        g layout assign -z dc1 -c 10G "$node" >/dev/null
    fi
    version="$(json_get "d['version'] + 1" <<<"$layout")"
    log "applying layout version $version"
    g layout apply --version "$version" >/dev/null
}

healthy() {
    g health -q >/dev/null 2>&1 && s3_port_answers
}

# key_exists ID: the key ID is present (not deleted) in the cluster.
key_exists() {
    g json-api GetKeyInfo "{\"id\":\"$1\"}" >/dev/null 2>&1
}

# bucket_id NAME: prints the bucket's id, or nothing if there is no such global alias.
bucket_id() {
    g json-api ListBuckets | json_get "[b['id'] for b in d if '$1' in b['globalAliases']]"
}

valid_bucket_name() {
    [[ "$1" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "invalid bucket name '$1'"
}

ensure_bucket() { # ensure_bucket NAME
    valid_bucket_name "$1"
    if [[ -z "$(bucket_id "$1")" ]]; then
        log "creating bucket $1"
        g bucket create "$1" >/dev/null
    fi
}

allow() { # allow KEY_ID BUCKET FLAGS...
    local key="$1" bucket="$2"
    shift 2
    g bucket allow "$@" --key "$key" "$bucket" >/dev/null
}

ensure_dev_key() {
    if ! key_exists "$DEV_KEY_ID"; then
        log "importing development key $DEV_KEY_NAME ($DEV_KEY_ID)"
        g key import --yes -n "$DEV_KEY_NAME" "$DEV_KEY_ID" "$DEV_SECRET" >/dev/null
    fi
    # The buckets view (s3mount mount MOUNTPOINT) creates buckets with mkdir.
    g key allow --create-bucket "$DEV_KEY_ID" >/dev/null
}

# ---------------------------------------------------------------- loopback quickack

# Garage answers small requests on a reused keep-alive connection ~40 ms late: the server
# writes the response in more than one segment, Nagle's algorithm holds back the last small
# segment until the previous one is ACKed, and the client delays that ACK (delayed-ACK
# timer, ~40 ms). Every small GET/HEAD then costs ~40 ms, which swamps any small-file
# benchmark. Making the kernel ACK immediately on loopback (route option quickack) removes
# the stall. It needs root and changes a system-wide route (127.0.0.1 only).
apply_quickack() {
    if [[ "$(id -u)" != "0" ]]; then
        log "note: not root, so the loopback quickack fix is not applied; expect ~40 ms extra latency on small requests over reused connections"
        return
    fi
    if ip route show table local 127.0.0.1 2>/dev/null | grep -q 'quickack 1'; then
        return
    fi
    if ip route change local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1 table local quickack 1 2>/dev/null; then
        log "applied loopback quickack fix: ip route change local 127.0.0.1 dev lo ... table local quickack 1"
    else
        log "warning: could not apply the loopback quickack fix (ip route change failed); small requests may see ~40 ms delays"
    fi
}

# ---------------------------------------------------------------- commands

env_lines() {
    printf 'export AWS_ENDPOINT_URL=%s\n' "$ENDPOINT"
    printf 'export AWS_ACCESS_KEY_ID=%s\n' "$DEV_KEY_ID"
    printf 'export AWS_SECRET_ACCESS_KEY=%s\n' "$DEV_SECRET"
    printf 'export AWS_REGION=%s\n' "$REGION"
    printf 'export S3MOUNT_BUCKET=%s\n' "$BUCKET"
}

# Serialise concurrent runs of this script on one state dir (fd 8; the server must not
# inherit it, see start_server).
lock_state() {
    mkdir -p "$STATE"
    exec 8>"$STATE/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 8
    fi
}

ensure_started() {
    lock_state
    ensure_garage
    command -v python3 >/dev/null 2>&1 || die "python3 is needed (to read the garage CLI's JSON)"
    command -v curl >/dev/null 2>&1 || die "curl is needed"
    ensure_config
    start_server
    ensure_layout
    wait_for 60 "the cluster to become healthy and the S3 API to answer" healthy
    ensure_dev_key
    ensure_bucket "$BUCKET"
    allow "$DEV_KEY_ID" "$BUCKET" --read --write --owner
    apply_quickack
}

cmd_start() {
    ensure_started
    (umask 077 && env_lines >"$ENVFILE")
    log "ready: S3 on $ENDPOINT, bucket $BUCKET, key $DEV_KEY_NAME (env lines also in $ENVFILE)"
    env_lines
}

cmd_bucket() {
    [[ $# -eq 1 ]] || die "usage: $0 bucket NAME"
    ensure_started
    ensure_bucket "$1"
    allow "$DEV_KEY_ID" "$1" --read --write --owner
    log "bucket $1 ready (key $DEV_KEY_NAME allowed read, write, owner)"
}

cmd_key() {
    [[ $# -eq 2 || $# -eq 3 ]] || die "usage: $0 key NAME BUCKET [rw|ro]"
    local name="$1" bucket="$2" mode="${3:-rw}" id secret info bid other
    [[ "$mode" == rw || "$mode" == ro ]] || die "mode must be rw or ro, not '$mode'"
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "key name must match [A-Za-z0-9._-]+: '$name'"
    valid_bucket_name "$bucket"
    [[ "$name" != "$DEV_KEY_NAME" ]] || die "'$DEV_KEY_NAME' is the development key; pick another name"
    ensure_started
    bid="$(bucket_id "$bucket")"
    [[ -n "$bid" ]] || die "no bucket '$bucket' (create it with: $0 bucket $bucket)"
    id="$(g json-api ListKeys | json_get "[k['id'] for k in d if k['name'] == '$name'][:1]")"
    if [[ -z "$id" ]]; then
        # Derive the key from its name, so that a test gets the same credentials after the
        # state dir is wiped.
        id="GK$(printf 's3mount-key-id:%s' "$name" | sha256sum | cut -c1-24)"
        secret="$(printf 's3mount-key-secret:%s' "$name" | sha256sum | cut -c1-64)"
        if key_exists "$id"; then
            die "key id $id exists under another name; rename it back to '$name' or pick another name"
        fi
        log "importing key $name ($id)"
        g key import --yes -n "$name" "$id" "$secret" >/dev/null
    fi
    # Read+write (or read only) on BUCKET, and nothing on any other bucket.
    info="$(g json-api GetKeyInfo "{\"id\":\"$id\",\"showSecretKey\":true}")"
    secret="$(json_get "d['secretAccessKey']" <<<"$info")"
    while read -r other; do
        [[ -n "$other" && "$other" != "$bid" ]] || continue
        log "revoking key $name's permissions on bucket $other"
        g json-api DenyBucketKey "{\"bucketId\":\"$other\",\"accessKeyId\":\"$id\",\"permissions\":{\"read\":true,\"write\":true,\"owner\":true}}" >/dev/null
    done < <(json_get "[b['id'] for b in d['buckets']]" <<<"$info")
    if [[ "$mode" == ro ]]; then
        g json-api DenyBucketKey "{\"bucketId\":\"$bid\",\"accessKeyId\":\"$id\",\"permissions\":{\"owner\":true,\"write\":true}}" >/dev/null
        allow "$id" "$bucket" --read
        log "key $name allowed read only on bucket $bucket only"
    else
        g json-api DenyBucketKey "{\"bucketId\":\"$bid\",\"accessKeyId\":\"$id\",\"permissions\":{\"owner\":true}}" >/dev/null
        allow "$id" "$bucket" --read --write
        log "key $name allowed read+write on bucket $bucket only"
    fi
    printf 'KEY_ID=%s SECRET=%s\n' "$id" "$secret"
}

main() {
    local cmd="${1:-start}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        start) [[ $# -eq 0 ]] || die "usage: $0 start"; cmd_start ;;
        stop) lock_state; cmd_stop ;;
        env) env_lines ;;
        bucket) cmd_bucket "$@" ;;
        key) cmd_key "$@" ;;
        status) ensure_garage; g status ;;
        garage) ensure_garage; g "$@" ;;
        -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2 ;;
        *) die "unknown command '$cmd' (start|stop|env|bucket|key|status|garage)" ;;
    esac
}

main "$@"
