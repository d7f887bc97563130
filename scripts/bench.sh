#!/usr/bin/env bash
# scripts/bench.sh — read and write benchmarks of s3mount against raw curl, s3fs and rclone
# mount on a local Garage. Installs the peers (scripts/deps.sh --bench), starts the
# benchmark's own Garage, builds s3mount (release), then runs scripts/bench.py with the
# given arguments.
#
#   scripts/bench.sh [--tools raw,s3mount,s3fs,rclone] [--runs N] [--quick] [--out FILE]
#                    [--only reads|writes|faults|memory|diskcache] [--cgroup-limit MIB] [--budget-minutes M] [--wait-idle SECONDS]
#                    [--server-cache warm|cold] [--s3mount-bin PATH] [--workloads IDS]
#                    [--baseline-bin PATH [--baseline-rev REV]]
#
#   --quick            1 run, no 1 GiB dd (read or write) for the peers (smoke test, ~5 min)
#   --only             only the read or only the write workloads (default both), or only
#                      the fault scenarios (faults; opt-in, never part of a default run):
#                      scripts/bench_faults.py mounts s3mount, s3fs and rclone through a
#                      fault-injecting loopback proxy (resets, server down, silence) and reads
#                      1 GiB / writes 100 MiB + fsync through each fault; --runs defaults to 1
#                      there (~10 min); results in bench/results-YYYY-MM-DD-faults.md;
#                      or memory: 16 readers + 4 writers at once with each tool's daemon in a
#                      cgroup limited to --cgroup-limit MiB (256; scripts/bench_memory.py),
#                      peak RSS and OOM kills; results in bench/results-YYYY-MM-DD-memory.md;
#                      or diskcache: 1 GiB read from the network with --cache-dir, then again
#                      after drop_caches and a remount, from the disk cache (MiB/s both times,
#                      daemon CPU, GETs; scripts/bench_diskcache.py); results in
#                      bench/results-YYYY-MM-DD-diskcache.md
#   --workloads IDS    only these workloads (comma-separated ids, e.g. ls,w3,w4; see
#                      bench.py --help)
#   --wait-idle S      before each measurement wait up to S s for the CPUs to be < 25% busy
#                      (useful while something else, e.g. cargo, runs now and then)
#   --server-cache     after dropping the page cache, read Garage's files back in (warm,
#                      default) or leave Garage to read from disk (cold); read workloads only
#   --s3mount-bin P    the s3mount binary to measure (default target/release/s3mount)
#   --baseline-bin P   also measure a second s3mount binary P (e.g. built from an older commit
#                      in a git worktree) as tool `s3mount-base`: same mount arguments and
#                      S3MOUNT_BENCH_ARGS, checks, peak RSS and CPU accounting, interleaved
#                      right after s3mount in every run (default --tools; otherwise name it in
#                      --tools). The table gets an s3mount-base column and a "new / base" ratio
#                      of the medians; "All runs" compares the two builds' daemon CPU.
#                      --baseline-rev REV only labels it in the report. E.g.
#                        git worktree add /tmp/base OLDREV && (cd /tmp/base && cargo build --release)
#                        scripts/bench.sh --baseline-bin /tmp/base/target/release/s3mount \
#                                         --baseline-rev OLDREV --budget-minutes 45
#
# Results: a markdown table on stdout and bench/results-YYYY-MM-DD.md (see bench.py --help).
# Needs root (drop_caches between runs, FUSE mounts) and ~1.2 GiB free in /dev/shm (write
# sources). A default run takes ~22 minutes on 2 cores (bounded by --budget-minutes,
# default 35); --quick about 5.
#
# Environment:
#   S3MOUNT_BENCH_ARGS        extra arguments for `s3mount mount`
#   S3MOUNT_BENCH_GARAGE_DIR  Garage state dir (default target/garage-bench)
#   S3MOUNT_BENCH_PORT        Garage S3 port (default 3910; RPC port+1, admin port+3). The
#                             benchmark has its own Garage so that test runs, which start and
#                             stop the development server on 3900, cannot disturb it (and its
#                             1.1 GiB data set stays out of the test bucket). To use the
#                             development server instead: S3MOUNT_BENCH_PORT=3900
#                             S3MOUNT_BENCH_GARAGE_DIR=target/garage
#   S3MOUNT_BENCH_NO_BUILD=1  benchmark target/release/s3mount as it is (no cargo build)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO"

scripts/deps.sh --bench

port="${S3MOUNT_BENCH_PORT:-3910}"
[[ "$port" =~ ^[0-9]+$ ]] || { echo "bench.sh: S3MOUNT_BENCH_PORT must be a number" >&2; exit 1; }
export S3MOUNT_GARAGE_DIR="${S3MOUNT_BENCH_GARAGE_DIR:-$REPO/target/garage-bench}"
export GARAGE_S3_PORT="$port" GARAGE_RPC_PORT="$((port + 1))" GARAGE_ADMIN_PORT="$((port + 3))"
env_lines="$(timeout 1800 scripts/garage.sh start)" || { echo "bench.sh: garage.sh start failed" >&2; exit 1; }
eval "$env_lines"

if [[ "${S3MOUNT_BENCH_NO_BUILD:-0}" != "1" ]]; then
    echo "bench.sh: cargo build --release" >&2
    timeout 3600 cargo build --release >&2 || {
        echo "bench.sh: cargo build --release failed (S3MOUNT_BENCH_NO_BUILD=1 benchmarks the existing target/release/s3mount)" >&2
        exit 1
    }
fi

exec python3 scripts/bench.py "$@"
