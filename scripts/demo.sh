#!/usr/bin/env bash
# scripts/demo.sh — see s3mount work in one command on a fresh machine: installs what is
# missing, builds s3mount, starts a local Garage S3 server with a sample bucket, mounts it
# at ./mnt, writes a few files through the mount and shows `ls -l ./mnt`.
#
# Unmount afterwards with:   fusermount3 -u ./mnt
# Stop the local server with: scripts/garage.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
echo "demo.sh: building s3mount (release)" >&2
cargo build --release --locked -q

BUCKET=s3mount-demo
eval "$(scripts/garage.sh start)"
scripts/garage.sh bucket "$BUCKET" >/dev/null

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

s3://$BUCKET is mounted at ./mnt (Garage at $AWS_ENDPOINT_URL).
Try: ls -lR ./mnt; cp some-file ./mnt/; rm ./mnt/numbers.txt
Unmount with:       fusermount3 -u ./mnt
Stop the server:    scripts/garage.sh stop
MSG
