#!/usr/bin/env bash
# scripts/demo.sh — see s3mount work in one command on a fresh machine: installs what is
# missing, builds s3mount, starts a local S3 server with a sample bucket, mounts it at
# ./mnt, writes a few files through the mount and shows `ls -l ./mnt`.
#
# The server is Garage when it is installed (S3MOUNT_GARAGE_BIN, else on PATH, else in
# ~/.cargo/bin; S3MOUNT_GARAGE_BIN=none pretends it is not).
# Otherwise the demo does not wait ~11 minutes for Garage to build: it starts moto (a
# Python S3 server, installed from PyPI in seconds) instead. The tests keep using Garage
# (`scripts/garage.sh start` builds it).
#
# Unmount afterwards with:   fusermount3 -u ./mnt
# Stop the local server with: scripts/garage.sh stop   (or scripts/moto.sh stop)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
BUCKET=s3mount-demo

garage_bin() {
    if [[ -n "${S3MOUNT_GARAGE_BIN:-}" ]]; then
        [[ -x "$S3MOUNT_GARAGE_BIN" ]] && printf '%s\n' "$S3MOUNT_GARAGE_BIN"
    elif command -v garage >/dev/null 2>&1; then
        command -v garage
    elif [[ -x "$HOME/.cargo/bin/garage" ]]; then
        printf '%s\n' "$HOME/.cargo/bin/garage"
    fi
}
GARAGE_BIN="$(garage_bin || true)"

# The server's setup (a venv from PyPI for moto) overlaps the build.
if [[ -n "$GARAGE_BIN" ]]; then
    SERVER=Garage
else
    SERVER=moto
    echo "demo.sh: Garage is not installed, so this demo uses moto as its S3 server (for Garage, which the tests use: scripts/garage.sh start builds it, ~11 min)" >&2
    scripts/moto.sh start >"${TMPDIR:-/tmp}/s3mount-demo-moto.$$" 2>&1 &
    MOTO_JOB=$!
fi

if [[ -x target/release/s3mount ]]; then
    echo "demo.sh: building s3mount (release; only what changed)" >&2
else
    echo "demo.sh: building s3mount (release, about 9 minutes the first time on 2 cores)" >&2
fi
start=$SECONDS
cargo build --release --locked -q
echo "demo.sh: built in $((SECONDS - start)) s" >&2

if [[ "$SERVER" == Garage ]]; then
    export GARAGE_BIN
    eval "$(scripts/garage.sh start)"
    scripts/garage.sh bucket "$BUCKET" >/dev/null
else
    wait "$MOTO_JOB" || { cat "${TMPDIR:-/tmp}/s3mount-demo-moto.$$" >&2; exit 1; }
    rm -f "${TMPDIR:-/tmp}/s3mount-demo-moto.$$"
    eval "$(scripts/moto.sh env)"
    # moto checks no signatures until told to: any key works for this local demo.
    export AWS_ENDPOINT_URL="$MOTO_ENDPOINT_URL" AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret-not-a-secret
    curl -fsS --noproxy '*' -X PUT -o /dev/null "$AWS_ENDPOINT_URL/$BUCKET" \
        || { echo "demo.sh: creating bucket $BUCKET on moto failed" >&2; exit 1; }
fi

mkdir -p mnt
if grep -q " $(pwd)/mnt " /proc/self/mountinfo; then
    fusermount3 -u mnt
fi
./target/release/s3mount mount "$BUCKET" ./mnt --endpoint-url "$AWS_ENDPOINT_URL"

# Sample content, written through the mount (so it lands in the bucket as objects).
if [[ ! -e mnt/README.txt ]]; then
    echo "Hello from s3mount: this file is the object s3://$BUCKET/README.txt" > mnt/README.txt
    mkdir -p mnt/photos/2026
    head -c 3000000 /dev/urandom > mnt/photos/2026/beach.raw
    seq 1 1000 > mnt/numbers.txt
fi

echo
echo "\$ ls -l ./mnt"
ls -l ./mnt
echo
echo "\$ cat ./mnt/README.txt"
cat ./mnt/README.txt
cat <<MSG

s3://$BUCKET is mounted at ./mnt ($SERVER at $AWS_ENDPOINT_URL).
Try: ls -lR ./mnt; cp some-file ./mnt/; rm ./mnt/numbers.txt
Unmount with:       fusermount3 -u ./mnt
Stop the server:    scripts/$(tr '[:upper:]' '[:lower:]' <<<"$SERVER").sh stop
MSG
