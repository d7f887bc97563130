#!/usr/bin/env bash
# scripts/deps.sh — install what building and testing s3mount needs on a Debian machine,
# skipping whatever is already there. Safe to rerun.
#
#   scripts/deps.sh          FUSE (fusermount3), curl, Python venv support, rsync and attr
#                            (setfattr/getfattr) for the end-to-end tests
#   scripts/deps.sh --bench  also the peers and tools of scripts/bench.sh (s3fs, rclone,
#                            hyperfine, fio)
#
# Needs root (or sudo) only when something is missing. Rust itself (cargo) must already be
# installed; Garage and moto are installed by scripts/garage.sh and scripts/moto.sh.
set -euo pipefail

want=()
command -v fusermount3 >/dev/null 2>&1 || want+=(fuse3)
command -v curl >/dev/null 2>&1 || want+=(curl ca-certificates)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || want+=(python3-venv)
# Tools the end-to-end tests drive through the mount.
command -v rsync >/dev/null 2>&1 || want+=(rsync)
command -v setfattr >/dev/null 2>&1 || want+=(attr)
if [[ "${1:-}" == "--bench" ]]; then
    command -v s3fs >/dev/null 2>&1 || want+=(s3fs)
    command -v rclone >/dev/null 2>&1 || want+=(rclone)
    command -v hyperfine >/dev/null 2>&1 || want+=(hyperfine)
    command -v fio >/dev/null 2>&1 || want+=(fio)
fi
command -v cargo >/dev/null 2>&1 || { echo "deps.sh: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
[[ -e /dev/fuse ]] || echo "deps.sh: warning: /dev/fuse is missing; mounts will fail (containers need --device /dev/fuse)" >&2

if ((${#want[@]})); then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { echo "deps.sh: need root to install: ${want[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "deps.sh: installing ${want[*]}" >&2
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >&2
fi

# An ordinary user mounts through the setuid fusermount3, which opens /dev/fuse with the
# user's own rights: the device must be mode 0666, as udev sets it on Debian. Containers
# sometimes pass it in as 0600 (root only).
if [[ -c /dev/fuse && "$(stat -c %a /dev/fuse)" != 666 ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        echo "deps.sh: /dev/fuse is mode $(stat -c %a /dev/fuse); chmod 0666 so ordinary users can mount (as udev does)" >&2
        chmod 0666 /dev/fuse
    else
        echo "deps.sh: warning: /dev/fuse is mode $(stat -c %a /dev/fuse); ordinary users cannot mount until root runs: chmod 0666 /dev/fuse" >&2
    fi
fi
