#!/usr/bin/env bash
# scripts/test.sh — install what is missing and run the whole test suite: unit tests, and
# end-to-end tests that mount real FUSE file systems against a local Garage (S3) and a
# local moto server (STS/IAM). Both servers are started here (and by the test harness if
# run alone) and stopped at the end when this script started them.
#
#   scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

garage_was_running=0; moto_was_running=0
garage_dir="${S3MOUNT_GARAGE_DIR:-target/garage}"; moto_dir="${S3MOUNT_MOTO_DIR:-target/moto}"
[[ -f "$garage_dir/garage.pid" ]] && kill -0 "$(cat "$garage_dir/garage.pid")" 2>/dev/null && garage_was_running=1
[[ -f "$moto_dir/moto.pid" ]] && kill -0 "$(cat "$moto_dir/moto.pid")" 2>/dev/null && moto_was_running=1
cleanup() {
    ((garage_was_running)) || scripts/garage.sh stop >/dev/null 2>&1 || true
    ((moto_was_running)) || scripts/moto.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "test.sh: starting Garage (first run builds it: ~15 min)" >&2
scripts/garage.sh start >/dev/null
echo "test.sh: starting moto" >&2
scripts/moto.sh start >/dev/null

log="$(mktemp)"
set +e
cargo test --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
