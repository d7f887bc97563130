#!/usr/bin/env python3
"""scripts/bench.py - read and write benchmarks of s3mount against raw S3 (curl), s3fs and rclone mount.

Usually run through scripts/bench.sh (installs the peers, starts the benchmark's Garage,
builds s3mount). Standalone:

    python3 scripts/bench.py [--tools raw,s3mount,s3fs,rclone] [--runs N] [--quick]
                             [--only reads|writes|faults] [--out FILE] [--budget-minutes M]
                             [--s3mount-bin PATH] [--baseline-bin PATH [--baseline-rev REV]]

Comparing two s3mount builds (e.g. before and after a refactor) in the same run:
  --baseline-bin PATH adds the tool `s3mount-base`: the s3mount binary at PATH, mounted and
  measured exactly like `s3mount` (same mount arguments and S3MOUNT_BENCH_ARGS, same checks,
  peak RSS and daemon CPU, interleaved in every run: raw, s3mount, s3mount-base, s3fs,
  rclone). With the default --tools it comes right after s3mount; with --tools, name it
  (`--tools raw,s3mount,s3mount-base`). The table gets its column and a "new / base" column
  (median of s3mount / median of s3mount-base; for ↑ rows > 1 means the new build is
  better, for ↓ rows < 1), and "All runs" a per-workload comparison of the two builds'
  daemon CPU. --baseline-rev REV only labels the baseline in the report (the commit it was
  built from); `s3mount` is the binary of --s3mount-bin (default target/release/s3mount).

What it does
  1. Makes sure bucket s3mount-bench holds the fixed read data set (loaded once; objects
     that are already there with the right size are skipped, checked by listing):
       big/1GiB.bin        1 GiB, deterministic pseudo-random bytes
       mid/100MiB.bin      100 MiB, same generator
       small/f0000..f0999  1,000 x 4 KiB
       many/e00000..e09999 10,000 empty objects in one directory
       huge/h000000..h099999  100,000 empty objects in one directory (lshead, ls100k)
       tree/d00..d99/f000..f099  10,000 empty objects in 100 directories (find)
     Only what the selected workloads need is loaded (mid/ always).
  2. Checks once per tool that the bytes read are right (sha256 of mid/100MiB.bin).
  3. For every read workload, run and tool (tools interleaved inside each run, so that
     outside noise spreads over all tools alike): drop the page cache, mount afresh,
     measure, read VmHWM of the FUSE daemon, unmount. Reports medians.
  4. Write workloads (sources staged in /dev/shm/s3mount-bench: random bytes, stamped
     per run so that Garage cannot deduplicate them), same scheme, everything under
     wbench/UNIQUE/ in the bucket:
       w1  dd 100 MiB, bs=1M conv=fsync      w2  the same with 1 GiB
       w3  cp -r of 1,000 x 4 KiB files      w4  tar -x of 2,000 files (1-64 KiB, 40 dirs)
       w5  mv of a directory of 1,000 objects (PUT with curl beforehand)
     Each run also times until a raw listing shows everything in S3 (rclone uploads after
     close), checks the content with raw GETs and deletes wbench/ with raw DELETEs.
     rclone writes with --vfs-cache-mode writes (off cannot do all of them).
  5. Prints a markdown table and writes it, with machine info, versions and the exact
     commands, to bench/results-YYYY-MM-DD.md (or --out).

Fault scenarios (--only faults; opt-in: not part of a default run: a default run takes 19-28
minutes of its 35-minute --budget-minutes, the faults 8-10 more per run, and they have their
own report): scripts/bench_faults.py mounts s3mount, s3fs and rclone through a
fault-injecting TCP proxy on loopback (trickled to 100 MiB/s down, 25 MiB/s up, so that every
fault starts mid-transfer) and measures sha256sum of big/1GiB.bin with seeded connection resets
(1 per 2,000 x 64 KiB), with the server down 6 s (connections reset, new ones refused) and with
10 s of silence, and dd of 100 MiB + fsync with the server down 20 s and with 20 s of silence:
exact or not, time against a clean run through the proxy, and for writes whether the object in
S3 is exact and whether a multipart upload is left pending. --runs defaults to 1 there (about
10 minutes); results go to bench/results-YYYY-MM-DD-faults.md (or --out). See that file's
docstring; it also runs standalone (python3 scripts/bench_faults.py --help).

Environment
  AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  the S3 server (must be on
      loopback). When AWS_ENDPOINT_URL is unset, the benchmark's own Garage is started with
      scripts/garage.sh (state target/garage-bench, S3 port 3910; see bench.sh).
  S3MOUNT_BENCH_ARGS  extra arguments for `s3mount mount` (shell-quoted).

Needs root (drop_caches, mounting); without root the caches are not dropped (noted in the
results). Every step has a timeout; mounts are always unmounted on exit, Ctrl-C included.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, urlparse

REPO = Path(__file__).resolve().parent.parent
BUCKET = "s3mount-bench"
REGION = "us-east-1"
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

BIG = "big/1GiB.bin"
BIG_SIZE = GiB
MID = "mid/100MiB.bin"
MID_SIZE = 100 * MiB
SMALL = [f"small/f{i:04d}" for i in range(1000)]
SMALL_SIZE = 4 * KiB
MANY = [f"many/e{i:05d}" for i in range(10000)]
HUGE = [f"huge/h{i:06d}" for i in range(100000)]
TREE = [f"tree/d{d:02d}/f{i:03d}" for d in range(100) for i in range(100)]
HEAD_LINES = 20

ALL_TOOLS = ["raw", "s3mount", "s3fs", "rclone"]
PEERS = ["s3fs", "rclone"]
BASE = "s3mount-base"          # --baseline-bin: a second s3mount binary, measured like s3mount
S3MOUNTS = ("s3mount", BASE)   # tools that are an s3mount binary (same mount command, checks, log)

# workload id -> (table label, unit, higher is better, timeout seconds)
WORKLOADS = {
    "seq": ("read 1 GiB with dd bs=1M (MiB/s)", "MiB/s", True, 300),
    "par4": ("4 readers on the 4 quarters of it (MiB/s, aggregate)", "MiB/s", True, 300),
    "first4k": ("first 4 KiB of the 1 GiB file, open+read (ms)", "ms", False, 60),
    "rand": ("200 random 64 KiB preads, 1 thread (reads/s)", "reads/s", True, 180),
    "ls": ("`ls -l` of 10,000 entries (s)", "s", False, 300),
    "lshead": ("`ls -f | head` of 100,000 entries (s)", "s", False, 300),
    "ls100k": ("`ls -l` of 100,000 entries (s)", "s", False, 600),
    "find": ("`find` over 10,000 files in 100 directories (s)", "s", False, 300),
    "cat": ("`cat` 1,000 x 4 KiB files (files/s)", "files/s", True, 300),
}
READ_ORDER = ["seq", "par4", "first4k", "rand", "ls", "lshead", "ls100k", "find", "cat"]
RAW_WORKLOADS = ["seq", "par4", "first4k", "w1", "w2", "w3"]  # par4 for raw = 8 ranged GETs, see below

# Write workloads: everything is written under wbench/UNIQUE/ and deleted (raw DELETEs)
# after each run. Value = until the command returns; "in S3" = until a raw listing shows
# everything written (the same for tools that upload before close/fsync returns).
WORKLOADS.update({
    "w1": ("write 100 MiB + fsync, dd bs=1M conv=fsync (MiB/s)", "MiB/s", True, 300),
    "w2": ("write 1 GiB + fsync, dd bs=1M conv=fsync (MiB/s)", "MiB/s", True, 600),
    "w3": ("`cp -r` of 1,000 x 4 KiB files (files/s)", "files/s", True, 600),
    "w4": ("`tar -x` of 2,000 files of 1-64 KiB in 40 dirs (s)", "s", False, 900),
    "w5": ("`mv` of a directory of 1,000 x 4 KiB objects (s)", "s", False, 600),
})
WRITE_ORDER = ["w1", "w2", "w3", "w4", "w5"]
WORKLOAD_ORDER = READ_ORDER + WRITE_ORDER
W1_SIZE = 100 * MiB
W2_SIZE = GiB
W3_COUNT = 1000
W3_SIZE = 4 * KiB
W4_COUNT = 2000
W4_DIRS = 40
W4_SEED = 20261122
W5_COUNT = 1000
WPREFIX = "wbench/"
# Garage keeps a deleted key as a tombstone, and a ListObjectsV2 steps over tombstones until
# it has found max-keys live keys, wherever they are: a "does name/ exist" listing (max-keys
# 1, what s3mount and s3fs send to look up a new name) reads on over every tombstone that
# sorts after it. So each run writes under a prefix that sorts after every earlier run's
# (wbench/t<nanoseconds>-...), and this small object stays, so that a listing that starts at
# wbench/ (looking up the directory wbench) stops right there.
WSENTINEL = "wbench/0-keep"
DURABLE_TIMEOUT = 300   # seconds to wait, after the command returned, for the data to be in S3
STAGE = Path("/dev/shm/s3mount-bench")

RAND_COUNT = 200
RAND_SIZE = 64 * KiB
RAND_SEED = 20261122

MOUNT_TIMEOUT = 60
UNMOUNT_TIMEOUT = 30


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


class Unsupported(BenchError):
    """The tool refuses the operation (ENOSYS, ENOTSUP): recorded as n/a, not as a failure."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data set

def gen_block(key, index):
    """1 MiB block number `index` of object `key` (deterministic across runs and machines)."""
    return random.Random(f"s3mount-bench:{key}:{index}").randbytes(MiB)


def gen_range(key, offset, length):
    out = bytearray()
    first, last = offset // MiB, (offset + length - 1) // MiB
    for i in range(first, last + 1):
        out += gen_block(key, i)
    start = offset - first * MiB
    return bytes(out[start:start + length])


def gen_small(key):
    return random.Random(f"s3mount-bench:{key}").randbytes(SMALL_SIZE)


def write_generated(key, size, path):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // MiB):
            b = gen_block(key, i)
            h.update(b)
            f.write(b)
    return h.hexdigest()


def expected_sha_mid():
    h = hashlib.sha256()
    for i in range(MID_SIZE // MiB):
        h.update(gen_block(MID, i))
    return h.hexdigest()


def expected_sha_small_concat():
    h = hashlib.sha256()
    for k in SMALL:  # `cat small/*` with LC_ALL=C expands in this order
        h.update(gen_small(k))
    return h.hexdigest()


# ----------------------------------------------------------------------------- processes

def run(cmd, timeout, check=True, env=None, input=None, what=None):
    """Run cmd in its own session; on timeout kill its whole process group (which we
    started). Returns CompletedProcess with text stdout/stderr."""
    what = what or " ".join(cmd[:3])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         env=env, start_new_session=True, text=True)
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        raise BenchError(f"{what}: timed out after {timeout}s")
    except BaseException:
        kill_group(p)
        raise
    if check and p.returncode != 0:
        raise BenchError(f"{what}: exit {p.returncode}: {(err or out).strip()[-600:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.communicate(timeout=10)
    except Exception:
        pass


def timed_parallel(cmds, timeout, what, env=None):
    """Start all commands at once; return (wall seconds, [CompletedProcess])."""
    procs = []
    t0 = time.perf_counter()
    try:
        for c in cmds:
            procs.append(subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=True, text=True))
        deadline = t0 + timeout
        results = []
        for p in procs:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise subprocess.TimeoutExpired(p.args, timeout)
            out, err = p.communicate(timeout=left)
            results.append((p, out, err))
        wall = time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        for p in procs:
            kill_group(p)
        raise BenchError(f"{what}: timed out after {timeout}s")
    except BaseException:
        for p in procs:
            kill_group(p)
        raise
    for p, out, err in results:
        if p.returncode != 0:
            raise BenchError(f"{what}: {' '.join(p.args)}: exit {p.returncode}: {err.strip()[-400:]}")
    return wall, [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, o, e in results]


def cpu_busy_fraction(window=1.0):
    """Share of all CPUs' time spent non-idle over `window` seconds (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v), idle
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def drop_caches():
    if os.geteuid() != 0:
        return False
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    return True


def warm_dir(d):
    """Read every file under d once, so that it is in the page cache."""
    n = 0
    for root, _, files in os.walk(d):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb", buffering=0) as f:
                    while True:
                        b = f.read(MiB)
                        if not b:
                            break
                        n += len(b)
            except OSError:
                pass
    return n


# ----------------------------------------------------------------------------- S3 via curl

class S3:
    """Raw S3 access with curl --aws-sigv4 (UNSIGNED-PAYLOAD: Garage 2.5 needs it with curl
    7.88). Credentials live in a curl config file, so command lines carry no secret."""

    def __init__(self, endpoint, key_id, secret, workdir):
        self.endpoint = endpoint.rstrip("/")
        self.key_id, self.secret = key_id, secret
        self.cfg = workdir / "curl.cfg"
        fd = os.open(self.cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'aws-sigv4 = "aws:amz:{REGION}:s3"\n')
            f.write(f'user = "{key_id}:{secret}"\n')
            f.write('header = "x-amz-content-sha256: UNSIGNED-PAYLOAD"\n')
            f.write('noproxy = "*"\n')
            f.write("silent\nshow-error\n")

    def url(self, key=""):
        return f"{self.endpoint}/{BUCKET}/{quote(key)}"

    def curl(self, *args):
        return ["curl", "-K", str(self.cfg), *args]

    def list(self, prefix):
        """key -> size for every key under prefix (ListObjectsV2, paginated by start-after;
        curl 7.88 signs query strings correctly only when the parameters are sorted)."""
        found, after = {}, None
        while True:
            q = [("list-type", "2"), ("max-keys", "1000"), ("prefix", prefix)]
            if after:
                q.append(("start-after", after))
            qs = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(q))
            r = run(self.curl("-f", f"{self.endpoint}/{BUCKET}?{qs}"), 60, what=f"list {prefix}")
            root = ET.fromstring(r.stdout)
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            keys = root.findall(f"{ns}Contents")
            for c in keys:
                found[c.find(f"{ns}Key").text] = int(c.find(f"{ns}Size").text)
            truncated = (root.findtext(f"{ns}IsTruncated") or "false") == "true"
            if not truncated or not keys:
                return found
            after = keys[-1].find(f"{ns}Key").text

    def put_many(self, pairs, timeout, parallel=16):
        """Upload [(key, local file)] with one curl process running `parallel` transfers."""
        if not pairs:
            return
        with tempfile.NamedTemporaryFile("w", suffix=".curl", dir=self.cfg.parent, delete=False) as f:
            if parallel:
                f.write(f"parallel\nparallel-max = {parallel}\n")
            f.write('write-out = "%{http_code} %{url_effective}\\n"\n')
            for key, path in pairs:
                f.write(f'upload-file = "{path}"\nurl = "{self.url(key)}"\noutput = "/dev/null"\n')
            listfile = f.name
        try:
            r = run(self.curl("-K", listfile), timeout, check=False, what=f"upload {len(pairs)} objects")
        finally:
            os.unlink(listfile)
        bad = [ln for ln in r.stdout.splitlines() if not ln.startswith("200 ")]
        ok = len(r.stdout.splitlines()) - len(bad)
        if r.returncode != 0 or bad or ok != len(pairs):
            raise BenchError(f"upload failed: exit {r.returncode}, {ok}/{len(pairs)} ok, "
                             f"first errors: {bad[:3]} {r.stderr.strip()[-300:]}")

    def delete_many(self, keys, timeout=600, parallel=16):
        """DELETE every key (one curl process, `parallel` transfers)."""
        if not keys:
            return
        with tempfile.NamedTemporaryFile("w", suffix=".curl", dir=self.cfg.parent, delete=False) as f:
            f.write(f"parallel\nparallel-max = {parallel}\n")
            f.write('request = "DELETE"\n')
            f.write('write-out = "%{http_code} %{url_effective}\\n"\n')
            for key in keys:
                f.write(f'url = "{self.url(key)}"\noutput = "/dev/null"\n')
            listfile = f.name
        try:
            r = run(self.curl("-K", listfile), timeout, check=False, what=f"delete {len(keys)} objects")
        finally:
            os.unlink(listfile)
        lines = r.stdout.splitlines()
        bad = [ln for ln in lines if not ln.startswith(("204 ", "200 ", "404 "))]
        if r.returncode != 0 or bad or len(lines) != len(keys):
            raise BenchError(f"delete failed: exit {r.returncode}, {len(lines) - len(bad)}/{len(keys)} ok, "
                             f"first errors: {bad[:3]} {r.stderr.strip()[-300:]}")

    def purge(self, prefix, keep=()):
        """Delete every key under prefix but those in keep; returns how many there were."""
        keys = [k for k in self.list(prefix) if k not in keep]
        self.delete_many(keys)
        left = [k for k in self.list(prefix) if k not in keep]
        if left:
            raise BenchError(f"{len(left)} keys still under {prefix} after deleting, e.g. {list(left)[:3]}")
        return len(keys)

    def get_bytes(self, key, start=None, length=None, timeout=120):
        """GET key (or a range of it) into memory, through a temporary file."""
        fd, tmp = tempfile.mkstemp(dir=self.cfg.parent, suffix=".get")
        os.close(fd)
        try:
            rng = ["-r", f"{start}-{start + length - 1}"] if start is not None else []
            run(self.curl("-f", *rng, "-o", tmp, self.url(key)), timeout, what=f"GET {key}")
            return Path(tmp).read_bytes()
        finally:
            os.unlink(tmp)


def ensure_dataset(s3, work, order=None):
    """Load what the read workloads in `order` (all when None) need and is not there yet:
    mid/ always (every tool's bytes are checked on it), big/ for the reads of the 1 GiB
    file, small/ for cat, many/ for ls, huge/ for lshead and ls100k, tree/ for find."""
    t0 = time.time()
    order = READ_ORDER if order is None else order
    want = {MID: MID_SIZE}
    if any(w in order for w in ("seq", "par4", "first4k", "rand")):
        want[BIG] = BIG_SIZE
    if "cat" in order:
        want.update({k: SMALL_SIZE for k in SMALL})
    if "ls" in order:
        want.update({k: 0 for k in MANY})
    if "lshead" in order or "ls100k" in order:
        want.update({k: 0 for k in HUGE})
    if "find" in order:
        want.update({k: 0 for k in TREE})
    prefixes = sorted({k.split("/", 1)[0] + "/" for k in want})
    tmp = work / "upload"
    tmp.mkdir(exist_ok=True)
    try:
        have = {}
        for prefix in prefixes:
            have.update(s3.list(prefix))
        for key, size in ((BIG, BIG_SIZE), (MID, MID_SIZE)):
            if key not in want or have.get(key) == size:
                continue
            log(f"loading {key} ({size // MiB} MiB)")
            path = tmp / Path(key).name
            write_generated(key, size, path)
            s3.put_many([(key, path)], timeout=600, parallel=1)
            path.unlink()
        small_missing = [k for k in SMALL if k in want and have.get(k) != SMALL_SIZE]
        if small_missing:
            log(f"loading {len(small_missing)} small objects")
            d = tmp / "small"
            d.mkdir(exist_ok=True)
            pairs = []
            for k in small_missing:
                p = d / Path(k).name
                p.write_bytes(gen_small(k))
                pairs.append((k, p))
            s3.put_many(pairs, timeout=600)
        empty_missing = [k for k, v in want.items() if v == 0 and have.get(k) != 0]
        if empty_missing:
            log(f"loading {len(empty_missing)} empty objects")
            empty = tmp / "empty"
            empty.write_bytes(b"")
            for i in range(0, len(empty_missing), 5000):
                s3.put_many([(k, empty) for k in empty_missing[i:i + 5000]], timeout=900, parallel=64)
        # confirm
        have = {}
        for prefix in prefixes:
            have.update(s3.list(prefix))
        wrong = [k for k, v in want.items() if have.get(k) != v]
        extra = [k for k in have if k not in want]
        if wrong:
            raise BenchError(f"data set incomplete after loading: {len(wrong)} objects missing or wrong, e.g. {wrong[:3]}")
        if extra:
            log(f"warning: {len(extra)} unexpected objects under the data set's prefixes, e.g. {extra[:3]}")
        log(f"data set ready ({time.time() - t0:.1f}s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- mounts

def mountinfo():
    """mount point -> (fstype, 'major:minor') from /proc/self/mountinfo."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
            out[mp] = (parts[sep + 1], parts[2])
    return out


def is_mounted(path):
    return str(path) in mountinfo()


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def fuse_daemon_pids(mnt):
    """Processes whose command line names mnt and that hold /dev/fuse open, newest first."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if str(mnt).encode() not in argv:
                continue
            has_fuse = any(os.readlink(f"/proc/{d}/fd/{fd}") == "/dev/fuse"
                           for fd in os.listdir(f"/proc/{d}/fd"))
            if has_fuse:
                with open(f"/proc/{d}/stat") as f:
                    start = int(f.read().rsplit(")", 1)[1].split()[19])
                found.append((start, int(d)))
        except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
            continue
    return [pid for _, pid in sorted(found, reverse=True)]


def cpu_seconds(pid):
    """utime + stime of all threads of pid, in seconds (None if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def vm_hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return None


def force_unmount(mnt, pid=None):
    """Best effort: lazy unmount, abort the FUSE connection, stop the daemon (by pid)."""
    info = mountinfo().get(str(mnt))
    subprocess.run(["fusermount3", "-uz", str(mnt)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=20)
    if info and info[0].startswith("fuse"):
        minor = info[1].split(":")[1]
        try:
            with open(f"/sys/fs/fuse/connections/{minor}/abort", "w") as f:
                f.write("1")
        except OSError:
            pass
    if pid and pid_alive(pid):
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            t = time.time()
            while pid_alive(pid) and time.time() - t < wait:
                time.sleep(0.1)
            if not pid_alive(pid):
                break


class Mount:
    def __init__(self, tool, cmd, env, mnt, display, logfile):
        self.tool, self.cmd, self.env, self.mnt, self.display = tool, cmd, env, mnt, display
        self.logfile = logfile
        self.pid = None
        self.log_start = 0

    def start(self):
        if is_mounted(self.mnt):
            log(f"stale mount at {self.mnt}; removing it")
            force_unmount(self.mnt)
        log_size = self.logfile.stat().st_size if self.logfile.exists() else 0
        self.log_start = log_size
        # Output to a file, not a pipe: a daemon that keeps the inherited stdout/stderr open
        # (rclone --daemon does) would make reading a pipe to EOF hang.
        with tempfile.TemporaryFile("w+") as out:
            p = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=self.env, start_new_session=True, text=True)
            try:
                rc = p.wait(timeout=MOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                kill_group(p)
                rc = None
            except BaseException:
                kill_group(p)
                raise
            out.seek(0)
            output = out.read().strip()[-800:]
        if rc is None:
            raise BenchError(f"mount {self.tool}: timed out after {MOUNT_TIMEOUT}s {output} {self.new_log(log_size)}".rstrip())
        if rc != 0:
            raise BenchError(f"mount {self.tool} failed (exit {rc}): {output} {self.new_log(log_size)}".rstrip())
        deadline = time.time() + MOUNT_TIMEOUT
        while not is_mounted(self.mnt):
            if time.time() > deadline:
                raise BenchError(f"mount {self.tool}: {self.mnt} not mounted {MOUNT_TIMEOUT}s after the command returned")
            time.sleep(0.05)
        # The mount answers (root getattr only: nothing about the data set is looked up).
        run(["stat", "-c", "%i", str(self.mnt)], 30, what=f"stat {self.mnt}")
        pids = fuse_daemon_pids(self.mnt)
        if not pids:
            raise BenchError(f"mount {self.tool}: no process with /dev/fuse open names {self.mnt}")
        self.pid = pids[0]

    def new_log(self, since):
        """What the tool logged since offset `since` (last lines), for error messages."""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(since)
                lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
            return ("log: " + " | ".join(lines[-5:]))[-800:] if lines else ""
        except OSError:
            return ""

    def log_lines(self, since):
        """Every non-empty line the tool logged since offset `since`."""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(since)
                return [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return []

    def rss_kib(self):
        return vm_hwm_kib(self.pid) if self.pid else None

    def stop(self):
        if not is_mounted(self.mnt):
            self._wait_exit()
            return
        r = subprocess.run(["fusermount3", "-u", str(self.mnt)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=UNMOUNT_TIMEOUT)
        if r.returncode != 0 or is_mounted(self.mnt):
            log(f"fusermount3 -u {self.mnt} failed ({r.stdout.strip()}); forcing")
            force_unmount(self.mnt, self.pid)
        self._wait_exit()

    def _wait_exit(self):
        if not self.pid:
            return
        t = time.time()
        while pid_alive(self.pid) and time.time() - t < 15:
            time.sleep(0.05)
        if pid_alive(self.pid):
            log(f"{self.tool} daemon {self.pid} still running 15s after unmount; stopping it")
            force_unmount(self.mnt, self.pid)
        self.pid = None


# ----------------------------------------------------------------------------- helpers run on the mount

FIRST4K_PY = r"""
import hashlib, json, os, sys, time
p = sys.argv[1]
t0 = time.perf_counter()
fd = os.open(p, os.O_RDONLY)
buf = b""
while len(buf) < 4096:
    b = os.read(fd, 4096 - len(buf))
    if not b:
        break
    buf += b
t1 = time.perf_counter()
os.close(fd)
print(json.dumps({"s": t1 - t0, "n": len(buf), "sha": hashlib.sha256(buf).hexdigest()}))
"""

RAND_PY = r"""
import hashlib, json, os, sys, time
p, size = sys.argv[1], int(sys.argv[2])
offsets = json.loads(sys.stdin.read())
fd = os.open(p, os.O_RDONLY)
bufs = []
t0 = time.perf_counter()
for off in offsets:
    bufs.append(os.pread(fd, size, off))
t1 = time.perf_counter()
os.close(fd)
print(json.dumps({"s": t1 - t0, "sha": [hashlib.sha256(b).hexdigest() for b in bufs],
                  "n": [len(b) for b in bufs]}))
"""


def rand_offsets():
    r = random.Random(RAND_SEED)
    # 4 KiB aligned, anywhere in the file
    return [r.randrange(0, (BIG_SIZE - RAND_SIZE) // 4096 + 1) * 4096 for _ in range(RAND_COUNT)]


def dd_bytes(stderr):
    m = re.search(r"^(\d+) bytes", stderr, re.M)
    return int(m.group(1)) if m else -1


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = REPO / "target" / "bench"
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "logs").mkdir(exist_ok=True)
        self.mounts = []          # every Mount ever started (for cleanup)
        self.results = {}         # tool -> workload -> [values]
        self.errors = {}          # tool -> workload -> message
        self.rss = {}             # tool -> workload -> max VmHWM KiB
        self.raw8 = []            # raw: 8 parallel ranged GETs, MiB/s
        self.loads = []           # (loadavg1, compiler processes) at each measurement
        self.busy = {}            # tool -> workload -> [compiler seen during run i]
        self.cpu = {}             # tool -> workload -> [daemon CPU seconds]
        self.garage_cpu = []      # Garage CPU seconds per raw GET of the 1 GiB object
        self.garage_cpu_w = []    # Garage CPU seconds per GiB written by raw PUTs (w1, w2)
        self.durable = {}         # tool -> write workload -> [value until everything is in S3]
        self.rclone_cache = self.work / "rclone-cache"
        self.w4_files = {}        # w4: path inside the tar -> size
        self.w4_offsets = {}      # w4: path inside the tar -> offset of its data in the tar
        self.src_sha = {}         # w1: sha256 of the source as stamped for the current run
        self.s3mount_log = {}     # s3mount tool -> what it logged during runs (level warn: any line matters)
        self.umount_warnings = {} # s3mount tool -> fuser's "Failed to umount filesystem" warnings (one per unmount)
        self.umount_example = ""
        self.bins = {}            # s3mount tool -> {"src", "bin", "sha", "built"} (see snapshot_s3mount)
        self.idle_waits = 0
        self.commands = {}        # description -> command line
        self.verified = {}        # tool -> message
        self.notes = []
        self.cache_dropped = os.geteuid() == 0
        self.deadline = time.time() + args.budget_minutes * 60
        self.offsets = rand_offsets()
        self.expected_rand = None
        self.first4k_sha = hashlib.sha256(gen_range(BIG, 0, 4096)).hexdigest()
        self.small_sha = expected_sha_small_concat()
        self.mid_sha = None

    # -------------------------------------------------------------- setup

    def setup_env(self):
        env = os.environ
        if not env.get("AWS_ENDPOINT_URL"):
            genv = dict(env)
            genv.setdefault("S3MOUNT_GARAGE_DIR", str(REPO / "target" / "garage-bench"))
            port = int(genv.get("S3MOUNT_BENCH_PORT", "3910"))
            genv.setdefault("GARAGE_S3_PORT", str(port))
            genv.setdefault("GARAGE_RPC_PORT", str(port + 1))
            genv.setdefault("GARAGE_ADMIN_PORT", str(port + 3))
            log("AWS_ENDPOINT_URL not set: starting the benchmark's Garage with scripts/garage.sh")
            r = run([str(REPO / "scripts" / "garage.sh"), "start"], 1200, env=genv, what="garage.sh start")
            for line in r.stdout.splitlines():
                m = re.match(r"export (\w+)=(.*)$", line)
                if m:
                    os.environ[m.group(1)] = shlex.split(m.group(2))[0] if m.group(2) else ""
            for k in ("S3MOUNT_GARAGE_DIR", "GARAGE_S3_PORT", "GARAGE_RPC_PORT", "GARAGE_ADMIN_PORT"):
                os.environ[k] = genv[k]
        gd = os.environ.get("S3MOUNT_GARAGE_DIR")
        self.garage_dir = Path(gd) if gd and (Path(gd) / "data").is_dir() else None
        if self.args.server_cache == "warm" and not self.garage_dir:
            self.notes.append("- --server-cache warm: S3MOUNT_GARAGE_DIR unknown, so Garage's files were "
                              "not read back into the page cache after dropping it")
        self.endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
        host = urlparse(self.endpoint).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise BenchError(f"refusing to benchmark against {self.endpoint}: only a loopback endpoint is allowed")
        self.key_id = os.environ["AWS_ACCESS_KEY_ID"]
        self.secret = os.environ["AWS_SECRET_ACCESS_KEY"]
        self.s3 = S3(self.endpoint, self.key_id, self.secret, self.work)
        # the bucket (idempotent; same Garage instance as the env above)
        run([str(REPO / "scripts" / "garage.sh"), "bucket", BUCKET], 300, what=f"garage.sh bucket {BUCKET}")

    def tool_available(self, tool):
        if tool == "raw":
            return shutil.which("curl") is not None
        if tool in S3MOUNTS:
            return Path(self.bin_arg(tool)).is_file()
        return shutil.which(tool) is not None

    def bin_arg(self, tool):
        """The binary an s3mount tool runs, as given on the command line."""
        return self.args.s3mount_bin if tool == "s3mount" else self.args.baseline_bin

    def snapshot_s3mount(self, tool):
        # Copy the binary so that a rebuild during the benchmark cannot change it between runs
        # (target/bench/s3mount, target/bench/s3mount-base).
        src = Path(self.bin_arg(tool))
        dst = self.work / tool
        shutil.copy2(src, dst)
        self.bins[tool] = {"src": src, "bin": dst, "sha": hashlib.sha256(dst.read_bytes()).hexdigest(),
                           "built": datetime.datetime.fromtimestamp(src.stat().st_mtime).astimezone()}

    def repo_state(self):
        try:
            head = run(["git", "-C", str(REPO), "rev-parse", "HEAD"], 20).stdout.strip()
            dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--", "src",
                         "Cargo.toml", "Cargo.lock"], 20).stdout.strip()
            return f"{head}{' + uncommitted changes in src/Cargo' if dirty else ''}"
        except BenchError as e:
            return f"unknown ({e})"

    def source_newer_than_binary(self):
        """Source files (src/, Cargo.*) modified after the binary was written, as cargo judges
        freshness: the binary may not include them. Empty when none (or unknown)."""
        try:
            built = Path(self.args.s3mount_bin).stat().st_mtime
            files = [REPO / "Cargo.toml", REPO / "Cargo.lock", *sorted((REPO / "src").rglob("*"))]
            return [str(f.relative_to(REPO)) for f in files if f.is_file() and f.stat().st_mtime > built]
        except OSError:
            return []

    def mount_for(self, tool, write=False):
        mnt = (self.work / "mnt" / tool).resolve()
        mnt.mkdir(parents=True, exist_ok=True)
        logs = self.work / "logs"
        if tool in S3MOUNTS:
            # s3mount and s3mount-base: the same command, only the binary (and therefore the
            # mount point and log file, named after the tool) differs.
            extra = shlex.split(os.environ.get("S3MOUNT_BENCH_ARGS", ""))
            cmd = [str(self.bins[tool]["bin"]), "mount", BUCKET, str(mnt), "--endpoint-url", self.endpoint,
                   "--log-file", str(logs / f"{tool}.log"), *extra]
            env = dict(os.environ, AWS_REGION=REGION)
            shown_bin = str(self.bin_arg(tool))
            if Path(shown_bin).resolve() == (REPO / "target" / "release" / "s3mount").resolve():
                shown_bin = "target/release/s3mount"
            shown = ("AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=us-east-1 "
                     + " ".join(shlex.quote(c) for c in [shown_bin, *cmd[1:]]))
        elif tool == "s3fs":
            pw = self.work / "s3fs.passwd"
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.key_id}:{self.secret}\n")
            os.chmod(pw, 0o600)
            cmd = ["s3fs", BUCKET, str(mnt), "-o", f"url={self.endpoint}", "-o", "use_path_request_style",
                   "-o", f"passwd_file={pw}", "-o", f"endpoint={REGION}", "-o", "sigv4",
                   "-o", f"logfile={logs / 's3fs.log'}"]
            env = dict(os.environ)
            shown = " ".join(shlex.quote(c) for c in cmd) + "   # passwd_file holds KEY_ID:SECRET, mode 0600"
        elif tool == "rclone":
            cmd = ["rclone", "mount", f"bench:{BUCKET}", str(mnt), "--daemon",
                   "--log-file", str(logs / "rclone.log")]
            if write:
                # rclone's default --vfs-cache-mode off cannot open files read-write or write
                # after a seek; `writes` stages every file written in --cache-dir and uploads
                # it after close (after --vfs-write-back, default 5s).
                cmd += ["--vfs-cache-mode", "writes", "--cache-dir", str(self.rclone_cache)]
            # AWS_CA_BUNDLE (set in some environments, e.g. this sandbox) makes rclone 1.60 fail:
            # "LoadCustomCABundleError: ... unsupported transport"; the endpoint is plain HTTP.
            env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
            env.update(RCLONE_CONFIG=str(self.work / "rclone-empty.conf"),
                       RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                       RCLONE_CONFIG_BENCH_ENDPOINT=self.endpoint,
                       RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=self.key_id,
                       RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=self.secret,
                       RCLONE_CONFIG_BENCH_REGION=REGION,
                       RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true")
            (self.work / "rclone-empty.conf").touch()
            shown = ("env -u AWS_CA_BUNDLE RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other "
                     f"RCLONE_CONFIG_BENCH_ENDPOINT={self.endpoint} RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=... "
                     "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=... RCLONE_CONFIG_BENCH_REGION=us-east-1 "
                     "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true " + " ".join(shlex.quote(c) for c in cmd))
        else:
            raise ValueError(tool)
        self.commands[f"mount {tool}{' (write workloads)' if write and tool == 'rclone' else ''}"] = shown
        return Mount(tool, cmd, env, mnt, shown, logs / f"{tool}.log")

    def cleanup_writes(self):
        """Remove the write sources from /dev/shm, rclone's staging directory and, when the S3
        client is set up, anything left under wbench/ (an interrupted run)."""
        shutil.rmtree(STAGE, ignore_errors=True)
        shutil.rmtree(self.rclone_cache, ignore_errors=True)
        if self.writes and getattr(self, "s3", None) is not None:
            try:
                self.s3.purge(WPREFIX, keep=(WSENTINEL,))
            except BenchError as e:
                log(f"cleanup of {WPREFIX}: {e}")

    def cleanup_stale(self):
        base = (self.work / "mnt").resolve()
        for mp in list(mountinfo()):
            if mp.startswith(str(base) + "/"):
                log(f"removing stale mount {mp}")
                force_unmount(Path(mp))

    # -------------------------------------------------------------- measurements

    def reset_caches(self):
        """Drop the page cache (client side cold), then, with --server-cache warm, read the
        benchmark Garage's files back in, so that the server serves from memory as a real S3
        would instead of from this machine's disk (~600 MiB/s here, which would cap every
        tool's throughput at the disk's)."""
        drop_caches()
        if self.args.server_cache == "warm" and self.garage_dir:
            warm_dir(self.garage_dir / "data")
            warm_dir(self.garage_dir / "meta")

    def wait_idle(self):
        """--wait-idle S: wait up to S seconds for the machine to be quiet (< 25% CPU busy over
        1 s, nothing of ours running at that point), so that bursts of outside work (a
        concurrent cargo build) hit fewer measurements."""
        if not self.args.wait_idle:
            return
        end = time.time() + self.args.wait_idle
        waited = False
        while cpu_busy_fraction() >= 0.25 and time.time() < end and time.time() < self.deadline:
            if not waited:
                log("  waiting for the machine to be idle (--wait-idle)")
                waited = True
        if waited:
            self.idle_waits += 1

    def garage_pid(self):
        try:
            pid = int((self.garage_dir / "garage.pid").read_text().strip())
            return pid if pid_alive(pid) else None
        except (OSError, ValueError, TypeError):
            return None

    def note_load(self):
        with open("/proc/loadavg") as f:
            load1 = float(f.read().split()[0])
        compilers = 0
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/comm") as f:
                        if f.read().strip() in ("rustc", "cargo", "cc", "ld", "rust-lld", "cc1", "cc1plus"):
                            compilers += 1
                except OSError:
                    pass
        self.loads.append((load1, compilers))
        return compilers > 0

    def measure_mounted(self, wl, mnt):
        big = str(mnt / BIG)
        timeout = self.args.workload_timeout or WORKLOADS[wl][3]
        if wl == "seq":
            cmd = ["dd", f"if={big}", "of=/dev/null", "bs=1M"]
            self.commands.setdefault("seq", "dd if=MNT/big/1GiB.bin of=/dev/null bs=1M")
            t0 = time.perf_counter()
            r = run(cmd, timeout, what="dd")
            dt = time.perf_counter() - t0
            if dd_bytes(r.stderr) != BIG_SIZE:
                raise BenchError(f"dd read {dd_bytes(r.stderr)} bytes, expected {BIG_SIZE}")
            return BIG_SIZE / MiB / dt
        if wl == "par4":
            q = BIG_SIZE // MiB // 4
            cmds = [["dd", f"if={big}", "of=/dev/null", "bs=1M", f"skip={i * q}", f"count={q}"] for i in range(4)]
            self.commands.setdefault("par4", "for i in 0 1 2 3; do dd if=MNT/big/1GiB.bin of=/dev/null bs=1M "
                                     "skip=$((i*256)) count=256 & done; wait")
            dt, rs = timed_parallel(cmds, timeout, "4 x dd")
            for r in rs:
                if dd_bytes(r.stderr) != q * MiB:
                    raise BenchError(f"a quarter reader read {dd_bytes(r.stderr)} bytes, expected {q * MiB}")
            return BIG_SIZE / MiB / dt
        if wl == "first4k":
            self.commands.setdefault("first4k", "python3 -c '<open(MNT/big/1GiB.bin); read 4096 bytes; "
                                     "time both with perf_counter>'")
            r = run([sys.executable, "-c", FIRST4K_PY, big], timeout, what="first 4 KiB")
            d = json.loads(r.stdout)
            if d["n"] != 4096 or d["sha"] != self.first4k_sha:
                raise BenchError(f"first 4 KiB: wrong bytes (got {d['n']} bytes)")
            return d["s"] * 1000
        if wl == "rand":
            self.commands.setdefault("rand", f"python3 -c '<open once; {RAND_COUNT} x os.pread(fd, 65536, off) at "
                                     f"fixed 4 KiB-aligned offsets from random.Random({RAND_SEED})>' (open excluded)")
            r = run([sys.executable, "-c", RAND_PY, big, str(RAND_SIZE)], timeout,
                    input=json.dumps(self.offsets), what="random reads")
            d = json.loads(r.stdout)
            if self.expected_rand is None:
                self.expected_rand = [hashlib.sha256(gen_range(BIG, o, RAND_SIZE)).hexdigest() for o in self.offsets]
            bad = sum(1 for a, b in zip(d["sha"], self.expected_rand) if a != b)
            if bad or any(n != RAND_SIZE for n in d["n"]):
                raise BenchError(f"random reads: {bad} of {RAND_COUNT} reads returned wrong bytes")
            return RAND_COUNT / d["s"]
        if wl == "ls":
            self.commands.setdefault("ls", "ls -l MNT/many > /dev/null   (output line count checked)")
            t0 = time.perf_counter()
            r = run(["ls", "-l", str(mnt / "many")], timeout, env=dict(os.environ, LC_ALL="C"), what="ls -l")
            dt = time.perf_counter() - t0
            n = len(r.stdout.splitlines())
            if n != len(MANY) + 1:
                raise BenchError(f"ls -l printed {n} lines, expected {len(MANY) + 1}")
            return dt
        if wl == "lshead":
            self.commands.setdefault("lshead", f"ls -f MNT/huge | head -n {HEAD_LINES} > /dev/null   "
                                     "(until head exits; its line count checked)")
            script = f"ls -f {shlex.quote(str(mnt / 'huge'))} | head -n {HEAD_LINES}"
            t0 = time.perf_counter()
            # No pipefail: ls ends on SIGPIPE once head is done, which is the point.
            r = run(["bash", "-c", script], timeout, env=dict(os.environ, LC_ALL="C"), what="ls -f | head")
            dt = time.perf_counter() - t0
            n = len(r.stdout.splitlines())
            if n != HEAD_LINES:
                raise BenchError(f"ls -f | head printed {n} lines, expected {HEAD_LINES}")
            return dt
        if wl == "ls100k":
            self.commands.setdefault("ls100k", "ls -l MNT/huge > /dev/null   (output line count checked)")
            t0 = time.perf_counter()
            r = run(["ls", "-l", str(mnt / "huge")], timeout, env=dict(os.environ, LC_ALL="C"), what="ls -l huge")
            dt = time.perf_counter() - t0
            n = len(r.stdout.splitlines())
            if n != len(HUGE) + 1:
                raise BenchError(f"ls -l printed {n} lines, expected {len(HUGE) + 1}")
            return dt
        if wl == "find":
            self.commands.setdefault("find", "find MNT/tree > /dev/null   (output line count checked)")
            t0 = time.perf_counter()
            r = run(["find", str(mnt / "tree")], timeout, env=dict(os.environ, LC_ALL="C"), what="find tree")
            dt = time.perf_counter() - t0
            n = len(r.stdout.splitlines())
            if n != len(TREE) + 100 + 1:
                raise BenchError(f"find printed {n} lines, expected {len(TREE) + 101}")
            return dt
        if wl == "cat":
            self.commands.setdefault("cat", "cat MNT/small/* | sha256sum   (LC_ALL=C; digest checked)")
            script = f"cat {shlex.quote(str(mnt / 'small'))}/* | sha256sum"
            t0 = time.perf_counter()
            r = run(["bash", "-c", "set -o pipefail; " + script], timeout,
                    env=dict(os.environ, LC_ALL="C"), what="cat small/*")
            dt = time.perf_counter() - t0
            if r.stdout.split()[0] != self.small_sha:
                raise BenchError("cat small/*: wrong bytes")
            return len(SMALL) / dt
        raise ValueError(wl)

    def measure_raw(self, wl):
        url = self.s3.url(BIG)
        timeout = self.args.workload_timeout or WORKLOADS[wl][3]
        if wl == "seq":
            cmd = self.s3.curl("-f", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url)
            self.commands.setdefault("raw seq", "curl -K curl.cfg -o /dev/null -w '%{size_download} %{time_total}' "
                                     f"{url}   # curl.cfg: aws-sigv4 aws:amz:us-east-1:s3, user KEY:SECRET, "
                                     "header x-amz-content-sha256: UNSIGNED-PAYLOAD")
            r = run(cmd, timeout, what="curl GET")
            size, secs = r.stdout.split()
            if int(float(size)) != BIG_SIZE:
                raise BenchError(f"curl GET got {size} bytes")
            return BIG_SIZE / MiB / float(secs)
        if wl == "par4":  # raw: 8 parallel ranged GETs of 128 MiB
            part = BIG_SIZE // 8
            cmds = [self.s3.curl("-f", "-r", f"{i * part}-{(i + 1) * part - 1}", "-o", "/dev/null",
                                 "-w", "%{size_download}", url) for i in range(8)]
            self.commands.setdefault("raw 8-range", f"8 x curl -K curl.cfg -r $((i*128Mi))-$(((i+1)*128Mi-1)) "
                                     f"-o /dev/null {url}   (started together; wall time of all 8)")
            dt, rs = timed_parallel(cmds, timeout, "8 x curl ranged GET")
            for r in rs:
                if int(float(r.stdout)) != part:
                    raise BenchError(f"ranged GET got {r.stdout} bytes")
            return BIG_SIZE / MiB / dt
        if wl == "first4k":
            out = self.work / "first4k.bin"
            cmd = self.s3.curl("-f", "-r", "0-4095", "-o", str(out), "-w", "%{time_total}", url)
            self.commands.setdefault("raw first4k", f"curl -K curl.cfg -r 0-4095 -o FILE -w '%{{time_total}}' {url}")
            r = run(cmd, timeout, what="curl ranged GET 4 KiB")
            data = out.read_bytes()
            out.unlink()
            if hashlib.sha256(data).hexdigest() != self.first4k_sha:
                raise BenchError("raw first 4 KiB: wrong bytes")
            return float(r.stdout) * 1000
        raise ValueError(wl)

    def record(self, tool, wl, value):
        self.results.setdefault(tool, {}).setdefault(wl, []).append(value)

    def record_error(self, tool, wl, msg):
        log(f"  {tool} {wl}: FAILED: {msg}")
        self.errors.setdefault(tool, {})[wl] = msg

    def one_run(self, tool, wl, run_no):
        if self.errors.get(tool, {}).get(wl) or self.errors.get(tool, {}).get("mount"):
            return
        if time.time() > self.deadline:
            self.record_error(tool, wl, f"skipped: time budget of {self.args.budget_minutes} min used up")
            return
        if wl in WRITE_ORDER:
            self.one_write_run(tool, wl, run_no)
            return
        self.wait_idle()
        self.reset_caches()
        if tool == "raw":
            try:
                busy = self.note_load()
                gpid = self.garage_pid()
                g0 = cpu_seconds(gpid) if gpid else None
                if wl == "par4":
                    v = self.measure_raw("par4")
                    self.raw8.append(v)
                    self.busy.setdefault(tool, {}).setdefault("raw8", []).append(busy)
                    log(f"  raw 8-range GET run {run_no}: {v:.1f} MiB/s" + (" [compiler running]" if busy else ""))
                else:
                    v = self.measure_raw(wl)
                    self.record(tool, wl, v)
                    self.busy.setdefault(tool, {}).setdefault(wl, []).append(busy)
                g1 = cpu_seconds(gpid) if gpid else None
                if wl in ("seq", "par4") and g0 is not None and g1 is not None:
                    self.garage_cpu.append(g1 - g0)
                if wl != "par4":
                    log(f"  raw {wl} run {run_no}: {v:.1f} {WORKLOADS[wl][1]}" + (" [compiler running]" if busy else ""))
            except BenchError as e:
                self.record_error(tool, wl, str(e))
            return
        m = self.mount_for(tool)
        self.mounts.append(m)
        try:
            try:
                m.start()
            except BenchError as e:
                self.record_error(tool, "mount", str(e))
                return
            try:
                busy = self.note_load()
                cpu0 = cpu_seconds(m.pid)
                v = self.measure_mounted(wl, m.mnt)
                cpu1 = cpu_seconds(m.pid)
                self.record(tool, wl, v)
                self.busy.setdefault(tool, {}).setdefault(wl, []).append(busy)
                if cpu0 is not None and cpu1 is not None:
                    self.cpu.setdefault(tool, {}).setdefault(wl, []).append(cpu1 - cpu0)
                log(f"  {tool} {wl} run {run_no}: {v:.2f} {WORKLOADS[wl][1]}"
                    + (f" (daemon CPU {cpu1 - cpu0:.2f}s)" if cpu0 is not None and cpu1 is not None else "")
                    + (" [compiler running]" if busy else ""))
            except BenchError as e:
                self.record_error(tool, wl, str(e))
            rss = m.rss_kib()
            if rss is not None:
                cur = self.rss.setdefault(tool, {})
                cur[wl] = max(cur.get(wl, 0), rss)
        finally:
            m.stop()
            self.mounts.remove(m)
            self.collect_log(m, wl, run_no)

    def collect_log(self, m, wl, run_no):
        """s3mount logs at level warn: keep whatever it logged during a run for the report
        (the warning fuser prints at every external unmount is only counted)."""
        if m.tool not in S3MOUNTS:
            return
        lines = m.log_lines(m.log_start)
        umount = [ln for ln in lines if "Failed to umount filesystem" in ln]
        self.umount_warnings[m.tool] = self.umount_warnings.get(m.tool, 0) + len(umount)
        if umount and not self.umount_example:
            self.umount_example = umount[0]
        other = [ln for ln in lines if ln not in umount]
        if other:
            self.s3mount_log.setdefault(m.tool, []).append(f"{wl} run {run_no} ({len(other)} lines): "
                                    + " | ".join(ln[:300] for ln in other[:8])
                                    + (" | ..." if len(other) > 8 else ""))

    def verify(self, tool):
        """Once per tool: sha256 of mid/100MiB.bin read through the tool."""
        if self.mid_sha is None:
            self.mid_sha = expected_sha_mid()
        self.reset_caches()
        try:
            if tool == "raw":
                r = run(["bash", "-c", "set -o pipefail; " + " ".join(shlex.quote(c) for c in
                         self.s3.curl("-f", self.s3.url(MID))) + " | sha256sum"], 120, what="raw sha256")
            else:
                m = self.mount_for(tool)
                self.mounts.append(m)
                try:
                    m.start()
                    r = run(["sha256sum", str(m.mnt / MID)], 120, what=f"{tool} sha256sum")
                finally:
                    m.stop()
                    self.mounts.remove(m)
            got = r.stdout.split()[0]
            if got != self.mid_sha:
                raise BenchError(f"sha256 of {MID} is {got}, expected {self.mid_sha}")
            self.verified[tool] = f"ok (sha256 {got[:16]}...)"
            log(f"  {tool}: {MID} sha256 ok")
        except BenchError as e:
            self.verified[tool] = f"FAILED: {e}"
            self.record_error(tool, "mount", f"verification failed: {e}")

    # -------------------------------------------------------------- write workloads

    def stage_write_data(self):
        """Sources of the write workloads, in /dev/shm (tmpfs: reading them costs no disk I/O
        and drop_caches cannot evict them). Random bytes: Garage compresses (zstd), so zeros
        would measure the compressor. Each run stamps them (see stamp) so that no run writes
        blocks Garage already holds (it deduplicates blocks by hash)."""
        t0 = time.time()
        shutil.rmtree(STAGE, ignore_errors=True)
        STAGE.mkdir(parents=True)
        for name, size in (("f100", W1_SIZE), ("f1g", W2_SIZE)):
            with open(STAGE / name, "wb") as f:
                for _ in range(size // MiB):
                    f.write(os.urandom(MiB))
        d = STAGE / "w3src"
        d.mkdir()
        for i in range(W3_COUNT):
            (d / f"f{i:04d}").write_bytes(os.urandom(W3_SIZE))
        rnd = random.Random(W4_SEED)
        self.w4_files = {}
        for i in range(W4_COUNT):
            name = f"w4src/d{i % W4_DIRS:02d}/g{i:04d}.dat"
            size = rnd.randint(KiB, 64 * KiB)
            path = STAGE / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rnd.randbytes(size))
            self.w4_files[name] = size
        run(["tar", "-cf", str(STAGE / "w4.tar"), "--owner=0", "--group=0", "--numeric-owner",
             "-C", str(STAGE), "w4src"], 120, what="tar -c")
        shutil.rmtree(STAGE / "w4src")
        with tarfile.open(STAGE / "w4.tar") as tf:
            self.w4_offsets = {m.name: m.offset_data for m in tf.getmembers() if m.isfile()}
        if set(self.w4_offsets) != set(self.w4_files):
            raise BenchError("w4.tar does not hold the files it was made from")
        log(f"write sources staged in {STAGE} ({time.time() - t0:.1f}s): 100 MiB, 1 GiB, "
            f"{W3_COUNT} x 4 KiB, w4.tar ({(STAGE / 'w4.tar').stat().st_size / MiB:.0f} MiB, "
            f"{W4_COUNT} files, {W4_DIRS} dirs)")

    def stamp(self, wl, tag):
        """Make this run's bytes unique: 32 bytes of sha256(tag) at every MiB of the 1 GiB /
        100 MiB sources (every Garage block of 1 MiB holds one), at the start of each small file
        and of each file inside the tar."""
        t = hashlib.sha256(tag.encode()).digest()
        if wl in ("w1", "w2"):
            path, size = (STAGE / "f100", W1_SIZE) if wl == "w1" else (STAGE / "f1g", W2_SIZE)
            fd = os.open(path, os.O_RDWR)
            try:
                for off in range(0, size, MiB):
                    os.pwrite(fd, t, off)
                if wl == "w1":
                    h = hashlib.sha256()
                    os.lseek(fd, 0, os.SEEK_SET)
                    while True:
                        b = os.read(fd, 8 * MiB)
                        if not b:
                            break
                        h.update(b)
                    self.src_sha["w1"] = h.hexdigest()
            finally:
                os.close(fd)
        elif wl in ("w3", "w5"):
            for i in range(W3_COUNT):
                fd = os.open(STAGE / "w3src" / f"f{i:04d}", os.O_WRONLY)
                os.pwrite(fd, t, 0)
                os.close(fd)
        elif wl == "w4":
            fd = os.open(STAGE / "w4.tar", os.O_WRONLY)
            for off in self.w4_offsets.values():
                os.pwrite(fd, t, off)
            os.close(fd)

    def expected_keys(self, wl, u):
        """key -> size that must be in S3 after workload wl wrote under prefix u, and a
        prefix that must then be empty (w5: the source directory), or None."""
        if wl == "w1":
            return {u + "f100": W1_SIZE}, None
        if wl == "w2":
            return {u + "f1g": W2_SIZE}, None
        if wl == "w3":
            return {u + f"w3src/f{i:04d}": W3_SIZE for i in range(W3_COUNT)}, None
        if wl == "w4":
            return {u + name: size for name, size in self.w4_files.items()}, None
        if wl == "w5":
            return {u + f"d-moved/f{i:04d}": W3_SIZE for i in range(W5_COUNT)}, u + "d/"
        raise ValueError(wl)

    def check_written(self, wl, u):
        """(complete?, what is missing) from a raw listing of u."""
        want, gone = self.expected_keys(wl, u)
        have = self.s3.list(u)
        missing = [k for k, v in want.items() if have.get(k) != v]
        left = [k for k in have if gone and k.startswith(gone)]
        if not missing and not left:
            return True, ""
        why = []
        if missing:
            why.append(f"{len(missing)} of {len(want)} objects missing or of the wrong size (e.g. {missing[0]}: "
                       f"{have.get(missing[0], 'absent')})")
        if left:
            why.append(f"{len(left)} keys still under {gone}")
        return False, "; ".join(why)

    def verify_written(self, wl, u):
        """After the run: the bytes in S3 are this run's (raw GETs)."""
        def same(key, local, start=None, length=None):
            got = self.s3.get_bytes(key, start, length)
            if got != local:
                raise BenchError(f"{key}{f' bytes {start}+{length}' if start is not None else ''}: "
                                 "content differs from what was written")
        if wl == "w1":
            data = self.s3.get_bytes(u + "f100")
            if hashlib.sha256(data).hexdigest() != self.src_sha["w1"]:
                raise BenchError("f100: sha256 differs from the source's")
        elif wl == "w2":
            with open(STAGE / "f1g", "rb") as f:
                for off in (0, W2_SIZE // 2 - MiB // 2, W2_SIZE - MiB):
                    f.seek(off)
                    same(u + "f1g", f.read(MiB), off, MiB)
        elif wl in ("w3", "w5"):
            sub = "w3src/" if wl == "w3" else "d-moved/"
            for i in (0, W3_COUNT // 2, W3_COUNT - 1):
                same(u + f"{sub}f{i:04d}", (STAGE / "w3src" / f"f{i:04d}").read_bytes())
        elif wl == "w4":
            names = sorted(self.w4_files)
            with open(STAGE / "w4.tar", "rb") as f:
                for name in (names[0], names[len(names) // 2], names[-1]):
                    f.seek(self.w4_offsets[name])
                    same(u + name, f.read(self.w4_files[name]))

    def write_command(self, wl, base):
        """The timed command of a write workload, with base = MNT/wbench/UNIQUE."""
        if wl == "w1":
            self.commands.setdefault("w1", f"dd if={STAGE}/f100 of=MNT/wbench/UNIQUE/f100 bs=1M conv=fsync   "
                                     "(source: 100 MiB of random bytes on tmpfs)")
            return ["dd", f"if={STAGE / 'f100'}", f"of={base / 'f100'}", "bs=1M", "conv=fsync"]
        if wl == "w2":
            self.commands.setdefault("w2", f"dd if={STAGE}/f1g of=MNT/wbench/UNIQUE/f1g bs=1M conv=fsync   "
                                     "(source: 1 GiB of random bytes on tmpfs)")
            return ["dd", f"if={STAGE / 'f1g'}", f"of={base / 'f1g'}", "bs=1M", "conv=fsync"]
        if wl == "w3":
            self.commands.setdefault("w3", f"cp -r {STAGE}/w3src MNT/wbench/UNIQUE/   "
                                     f"(w3src: {W3_COUNT} x 4 KiB random files on tmpfs)")
            return ["cp", "-r", str(STAGE / "w3src"), str(base) + "/"]
        if wl == "w4":
            self.commands.setdefault("w4", f"tar -xf {STAGE}/w4.tar -C MNT/wbench/UNIQUE   (as root, so tar "
                                     "also sets owner, mode and mtime of every file and directory; "
                                     f"w4.tar: {W4_COUNT} files of 1-64 KiB in {W4_DIRS} directories, "
                                     "made once with tar -c --owner=0 --group=0)")
            return ["tar", "-xf", str(STAGE / "w4.tar"), "-C", str(base)]
        if wl == "w5":
            self.commands.setdefault("w5", "mv MNT/wbench/UNIQUE/d MNT/wbench/UNIQUE/d-moved   (d: "
                                     f"{W5_COUNT} x 4 KiB objects PUT with curl before mounting, no "
                                     "directory marker)")
            return ["mv", str(base / "d"), str(base / "d-moved")]
        raise ValueError(wl)

    def write_value(self, wl, secs):
        if wl == "w1":
            return W1_SIZE / MiB / secs
        if wl == "w2":
            return W2_SIZE / MiB / secs
        if wl == "w3":
            return W3_COUNT / secs
        return secs

    def timed_write(self, tool, wl, u, cmd, timeout, check_dd=None):
        """Run cmd; return (seconds until it returned, seconds until a raw listing shows
        everything written). Unsupported: the tool said ENOSYS/ENOTSUP."""
        t0 = time.perf_counter()
        r = run(cmd, timeout, check=False, what=cmd[0])
        t_cmd = time.perf_counter() - t0
        if r.returncode != 0:
            err = (r.stderr or r.stdout).strip()
            msg = f"{' '.join(cmd[:2])}...: exit {r.returncode}: {err[-500:]}"
            if re.search(r"Function not implemented|Operation not supported|not supported", err):
                raise Unsupported(msg)
            raise BenchError(msg)
        if check_dd is not None and dd_bytes(r.stderr) != check_dd:
            raise BenchError(f"dd wrote {dd_bytes(r.stderr)} bytes, expected {check_dd}")
        first = True
        deadline = time.perf_counter() + DURABLE_TIMEOUT
        while True:
            ok, why = self.check_written(wl, u)
            now = time.perf_counter()
            if ok:
                return t_cmd, (t_cmd if first else now - t0)
            if now > deadline:
                raise BenchError(f"the command returned after {t_cmd:.1f}s but {DURABLE_TIMEOUT}s later "
                                 f"S3 still lacks what it wrote: {why}")
            first = False
            time.sleep(0.2)

    def one_write_run(self, tool, wl, run_no):
        timeout = self.args.workload_timeout or WORKLOADS[wl][3]
        u = f"{WPREFIX}t{time.time_ns()}-{tool}-{wl}-r{run_no}/"  # sorts after every earlier run's
        self.wait_idle()
        drop_caches()  # syncs first, so the previous run's data is not written back meanwhile
        self.stamp(wl, u)
        m = None
        try:
            if wl == "w5":
                self.s3.put_many([(u + f"d/f{i:04d}", STAGE / "w3src" / f"f{i:04d}") for i in range(W5_COUNT)],
                                 timeout=300)
            busy = self.note_load()
            if tool == "raw":
                gpid = self.garage_pid()
                g0 = cpu_seconds(gpid) if gpid else None
                if wl in ("w1", "w2"):
                    src, key = (STAGE / "f100", "f100") if wl == "w1" else (STAGE / "f1g", "f1g")
                    cmd = self.s3.curl("-f", "-T", str(src), "-o", "/dev/null", self.s3.url(u + key))
                    self.commands.setdefault(f"raw {wl}", f"curl -K curl.cfg -T {src} -o /dev/null "
                                             f"{self.endpoint}/{BUCKET}/wbench/UNIQUE/{key}   (one PUT)")
                    t_cmd, t_dur = self.timed_write(tool, wl, u, cmd, timeout)
                else:  # w3: one curl process, one connection, PUTs one after the other
                    self.commands.setdefault("raw w3", f"curl -K curl.cfg -K LIST   (LIST: {W3_COUNT} x "
                                             "upload-file + url; one process, one connection, sequential PUTs)")
                    t0 = time.perf_counter()
                    self.s3.put_many([(u + f"w3src/f{i:04d}", STAGE / "w3src" / f"f{i:04d}")
                                      for i in range(W3_COUNT)], timeout=timeout, parallel=None)
                    t_cmd = t_dur = time.perf_counter() - t0
                    ok, why = self.check_written(wl, u)
                    if not ok:
                        raise BenchError(why)
                g1 = cpu_seconds(gpid) if gpid else None
                if wl in ("w1", "w2") and g0 is not None and g1 is not None:
                    self.garage_cpu_w.append((g1 - g0) / ((W1_SIZE if wl == "w1" else W2_SIZE) / GiB))
                cpu = None
            else:
                m = self.mount_for(tool, write=True)
                self.mounts.append(m)
                try:
                    m.start()
                except BenchError as e:
                    self.record_error(tool, "mount", str(e))
                    return
                base = m.mnt / u.rstrip("/")
                if wl != "w5":
                    run(["mkdir", "-p", str(base)], 60, what=f"mkdir -p MNT/{u}")
                cmd = self.write_command(wl, base)
                cpu0 = cpu_seconds(m.pid)
                try:
                    t_cmd, t_dur = self.timed_write(tool, wl, u, cmd, timeout,
                                                    check_dd={"w1": W1_SIZE, "w2": W2_SIZE}.get(wl))
                finally:
                    cpu1 = cpu_seconds(m.pid)
                    rss = m.rss_kib()
                    if rss is not None:
                        cur = self.rss.setdefault(tool, {})
                        cur[wl] = max(cur.get(wl, 0), rss)
                cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
                if cpu is not None:
                    self.cpu.setdefault(tool, {}).setdefault(wl, []).append(cpu)
            v, vd = self.write_value(wl, t_cmd), self.write_value(wl, t_dur)
            self.record(tool, wl, v)
            self.durable.setdefault(tool, {}).setdefault(wl, []).append(vd)
            self.busy.setdefault(tool, {}).setdefault(wl, []).append(busy)
            u_ = WORKLOADS[wl][1]
            log(f"  {tool} {wl} run {run_no}: {self.fmt(u_, v)} {u_}"
                + (f" (in S3: {self.fmt(u_, vd)} {u_})" if t_dur > t_cmd else "")
                + (f" (daemon CPU {cpu:.2f}s)" if cpu is not None else "")
                + (" [compiler running]" if busy else ""))
            if m:
                m.stop()
            self.verify_written(wl, u)
        except Unsupported as e:
            self.record_error(tool, wl, f"n/a: {tool} cannot do this: {e}")
        except BenchError as e:
            extra = ""
            if m is not None and tool in S3MOUNTS:
                extra = " " + m.new_log(m.log_start)
            self.record_error(tool, wl, f"{e}{extra}".rstrip())
        finally:
            if m is not None:
                try:
                    m.stop()
                finally:
                    self.mounts.remove(m)
                    self.collect_log(m, wl, run_no)
            if tool == "rclone":
                shutil.rmtree(self.rclone_cache, ignore_errors=True)
            try:
                self.s3.purge(WPREFIX, keep=(WSENTINEL,))
            except BenchError as e:
                self.notes.append(f"- cleanup after {tool} {wl} run {run_no}: {e}")

    def run_all(self):
        tools = self.tools
        if self.reads:
            log("verifying the bytes each tool reads (sha256 of mid/100MiB.bin)")
            for tool in tools:
                self.verify(tool)
        if self.writes:
            self.stage_write_data()
            n = self.s3.purge(WPREFIX, keep=(WSENTINEL,))
            if n:
                log(f"deleted {n} keys left under {WPREFIX} by an earlier run")
            if WSENTINEL not in self.s3.list(WSENTINEL):
                keep = self.work / "0-keep"
                keep.write_text("kept by scripts/bench.py: listings of wbench/ stop here instead of "
                                "stepping over the tombstones of earlier runs\n")
                self.s3.put_many([(WSENTINEL, keep)], timeout=60)
                keep.unlink()
        runs = 1 if self.args.quick else self.args.runs
        for wl in self.order:
            for run_no in range(1, runs + 1):
                for tool in tools:
                    if tool == "raw" and wl not in RAW_WORKLOADS:
                        continue
                    if self.args.quick and wl in ("seq", "w2") and tool in PEERS:
                        continue
                    self.one_run(tool, wl, run_no)

    # -------------------------------------------------------------- report

    def fmt(self, unit, v):
        if v is None:
            return "—"
        if unit == "ms":
            return f"{v:.1f}"
        if unit == "s":
            return f"{v:.2f}"
        return f"{v:.0f}"

    def cell(self, tool, wl):
        vals = self.results.get(tool, {}).get(wl)
        err = self.errors.get(tool, {}).get(wl) or self.errors.get(tool, {}).get("mount")
        if vals:
            c = self.fmt(WORKLOADS[wl][1], statistics.median(vals))
            d = self.median_durable(tool, wl)
            m = statistics.median(vals)
            if d is not None and abs(d - m) > 0.03 * m:
                c += f" (in S3: {self.fmt(WORKLOADS[wl][1], d)})"
            return c
        if err:
            if err.startswith("skipped"):
                return "skipped"
            return "n/a" if err.startswith("n/a") and tool not in S3MOUNTS else "FAIL"
        return "—"

    def median(self, tool, wl):
        vals = self.results.get(tool, {}).get(wl)
        return statistics.median(vals) if vals else None

    def median_durable(self, tool, wl):
        """Write workloads: median of the values until everything was in S3."""
        vals = self.durable.get(tool, {}).get(wl)
        return statistics.median(vals) if vals else None

    def rss_row(self, label, wls):
        row = [label]
        peak = {}
        for t in self.tools:
            if t == "raw":
                row.append("n/a")
                continue
            vals = [v for w, v in self.rss.get(t, {}).items() if w in wls]
            if vals:
                peak[t] = max(vals) / 1024
                row.append(f"{peak[t]:.0f}")
            else:
                row.append("—")
        pp = [peak[p] for p in PEERS if p in peak]
        row.append(f"{peak['s3mount'] / min(pp):.2f}" if "s3mount" in peak and pp else "—")
        row.append("")
        if BASE in self.tools:
            row.append(f"{peak['s3mount'] / peak[BASE]:.2f}" if "s3mount" in peak and BASE in peak else "—")
        return "| " + " | ".join(row) + " |"

    def table(self):
        tools = self.tools
        cols = tools + ["s3mount / best peer", "s3mount / raw"] + (["new / base"] if BASE in tools else [])
        lines = ["| workload | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for wl in self.order:
            label, unit, higher, _ = WORKLOADS[wl]
            write = wl in WRITE_ORDER
            row = [label + (" ↑" if higher else " ↓")]
            for t in tools:
                if t == "raw":
                    if wl == "seq":
                        one = self.median("raw", "seq")
                        eight = statistics.median(self.raw8) if self.raw8 else None
                        c = f"{self.fmt(unit, one)} one stream"
                        c += f", {self.fmt(unit, eight)} 8 ranges" if eight else ""
                        row.append(c if one or eight else self.cell("raw", "seq"))
                    elif wl == "first4k":
                        row.append(self.cell("raw", wl) + " (ranged GET)")
                    elif wl in ("w1", "w2"):
                        row.append(self.cell("raw", wl) + " (one PUT)")
                    elif wl == "w3":
                        row.append(self.cell("raw", wl) + " (PUTs in turn)")
                    else:
                        row.append("n/a")
                else:
                    row.append(self.cell(t, wl))
            get = self.median_durable if write else self.median
            s = get("s3mount", wl)
            peers = [get(p, wl) for p in PEERS if p in tools]
            peers = [p for p in peers if p is not None]
            if s is not None and peers:
                best = max(peers) if higher else min(peers)
                row.append(f"{s / best:.2f}")
            else:
                row.append("—")
            if wl == "seq" and s is not None and self.raw8:
                row.append(f"{s / statistics.median(self.raw8):.2f}")
            elif write and s is not None and self.median_durable("raw", wl):
                row.append(f"{s / self.median_durable('raw', wl):.2f}")
            else:
                row.append("")
            if BASE in tools:
                # the new build (s3mount) over the baseline (s3mount-base), medians; like the
                # other ratios, write rows use the values until the data was in S3
                b = get(BASE, wl)
                row.append(f"{s / b:.2f}" if s is not None and b else "—")
            lines.append("| " + " | ".join(row) + " |")
            if wl in READ_ORDER and wl == [w for w in self.order if w in READ_ORDER][-1]:
                lines.append(self.rss_row("peak RSS of the FUSE daemon, max VmHWM over all read runs (MiB) ↓",
                                          READ_ORDER))
        if self.writes:
            lines.append(self.rss_row("peak RSS of the FUSE daemon while writing 1 GiB, max VmHWM over its "
                                      "runs (MiB; s3mount's target: ≤ 256) ↓", ["w2"]))
            lines.append(self.rss_row("peak RSS of the FUSE daemon, max VmHWM over the other write runs "
                                      "(MiB) ↓", ["w1", "w3", "w4", "w5"]))
        return "\n".join(lines)

    def runs_str(self, tool, key, unit, vals):
        busy = self.busy.get(tool, {}).get(key, [])
        return ", ".join(self.fmt(unit, v) + ("*" if i < len(busy) and busy[i] else "") for i, v in enumerate(vals))

    def details(self):
        out = ["`*`: a compiler (rustc/cargo/cc/ld) was running when that run started. Write workloads: "
               "the value until the command returned, and a second row \"in S3\" where the data reached "
               "S3 later than that (FUSE daemon CPU is counted until then).", "",
               "| tool | workload | runs (in order) | min | max | FUSE daemon CPU s per run (median) |",
               "|---|---|---|---|---|---|"]
        for t in self.tools:
            for wl in self.order:
                vals = self.results.get(t, {}).get(wl)
                if vals:
                    u = WORKLOADS[wl][1]
                    cpu = self.cpu.get(t, {}).get(wl)
                    out.append(f"| {t} | {wl} ({u}) | {self.runs_str(t, wl, u, vals)} | "
                               f"{self.fmt(u, min(vals))} | {self.fmt(u, max(vals))} | "
                               f"{f'{statistics.median(cpu):.2f}' if cpu else 'n/a'} |")
                    dur = self.durable.get(t, {}).get(wl)
                    if dur and any(abs(a - b) > 0.03 * a for a, b in zip(vals, dur)):
                        out.append(f"| {t} | {wl} in S3 ({u}) | {self.runs_str(t, wl, u, dur)} | "
                                   f"{self.fmt(u, min(dur))} | {self.fmt(u, max(dur))} | |")
                if t == "raw" and wl == "par4" and self.raw8:
                    out.append(f"| raw | 8 ranged GETs (MiB/s) | {self.runs_str('raw', 'raw8', 'MiB/s', self.raw8)} | "
                               f"{min(self.raw8):.0f} | {max(self.raw8):.0f} | n/a |")
        rss = ["", "Peak RSS (VmHWM, MiB) per workload, max over runs:", "",
               "| tool | " + " | ".join(self.order) + " |", "|---" * (len(self.order) + 1) + "|"]
        for t in self.tools:
            if t in self.rss:
                rss.append(f"| {t} | " + " | ".join(
                    f"{self.rss[t][w] / 1024:.0f}" if w in self.rss[t] else "—" for w in self.order) + " |")
        return "\n".join(out + rss + self.base_comparison())

    def base_comparison(self):
        """--baseline-bin: the two s3mount builds side by side, values and daemon CPU."""
        if not ("s3mount" in self.tools and BASE in self.tools):
            return []
        out = ["", f"New build (s3mount) against the baseline ({BASE}): median (min–max) of the runs (write "
               "workloads: the values until the data was in S3, as in the table's ratios), the ratio of the "
               "medians, and the FUSE daemon's CPU seconds per run (median; for writes until the data was "
               "in S3):", "",
               "| workload | s3mount | s3mount-base | new / base | daemon CPU s, new | daemon CPU s, base | "
               "CPU new / base |", "|---|---|---|---|---|---|---|"]

        def spread(t, wl, u):
            vals = (self.durable if wl in WRITE_ORDER else self.results).get(t, {}).get(wl)
            if not vals:
                return self.cell(t, wl), None
            m = statistics.median(vals)
            return f"{self.fmt(u, m)} ({self.fmt(u, min(vals))}–{self.fmt(u, max(vals))})", m

        for wl in self.order:
            u = WORKLOADS[wl][1]
            (cn, mn), (cb, mb) = spread("s3mount", wl, u), spread(BASE, wl, u)
            cpu_n = self.cpu.get("s3mount", {}).get(wl)
            cpu_b = self.cpu.get(BASE, {}).get(wl)
            pn = statistics.median(cpu_n) if cpu_n else None
            pb = statistics.median(cpu_b) if cpu_b else None
            out.append(f"| {wl} ({u}) | {cn} | {cb} | {f'{mn / mb:.2f}' if mn is not None and mb else '—'} | "
                       f"{f'{pn:.2f}' if pn is not None else 'n/a'} | {f'{pb:.2f}' if pb is not None else 'n/a'} | "
                       f"{f'{pn / pb:.2f}' if pn is not None and pb else '—'} |")
        return out

    def versions(self):
        def first_line(cmd):
            try:
                r = run(cmd, 20, check=False)
                return (r.stdout or r.stderr).strip().splitlines()[0]
            except Exception as e:  # noqa: BLE001
                return f"unavailable ({e})"
        v = {}
        for t in S3MOUNTS:
            if t in self.tools:
                b = self.bins[t]
                v[t] = (f"{first_line([str(b['bin']), '--version'])}: {b['src']} built "
                        f"{b['built']:%Y-%m-%d %H:%M:%S}, sha256 {b['sha']}, copied to "
                        f"target/bench/{t} at the start so that a rebuild cannot change it mid-run")
        v["repo at the start"] = self.repo_state_start
        if "s3fs" in self.tools:
            v["s3fs"] = first_line(["s3fs", "--version"])
        if "rclone" in self.tools:
            v["rclone"] = first_line(["rclone", "version"])
        v["curl"] = first_line(["curl", "--version"])
        v["fuse3"] = first_line(["fusermount3", "--version"])
        garage = shutil.which("garage") or str(Path.home() / ".cargo/bin/garage")
        v["garage"] = first_line([garage, "--version"])
        v["python"] = sys.version.split()[0]
        return v

    def machine(self):
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        free = run(["free", "-g"], 10).stdout.rstrip()
        return cpu, os.cpu_count(), free, platform.platform(), " ".join(os.uname())

    def report(self, started, elapsed):
        table = self.table()
        cpu, ncpu, free, _, uname = self.machine()
        vers = self.versions()
        loads = [l for l, _ in self.loads]
        busy = sum(1 for _, c in self.loads if c)
        runs = 1 if self.args.quick else self.args.runs
        quick = " (--quick: 1 run, no 1 GiB dd (read or write) for the peers)" if self.args.quick else ""
        what = {"all": "read and write", "reads": "read", "writes": "write"}[self.args.only]
        md = [f"# s3mount {what} benchmark — {started:%Y-%m-%d %H:%M} {quick}".rstrip(), ""]
        argv = " ".join(["scripts/bench.sh"] + [shlex.quote(a) for a in sys.argv[1:]])
        md += [f"Generated by `{argv}` (scripts/bench.py).", ""]
        if "s3mount" in self.tools:
            b = self.bins["s3mount"]
            line = (f"s3mount: commit {self.repo_state_start} (git rev-parse HEAD at the start); binary "
                    f"sha256 {b['sha']}, written {b['built']:%Y-%m-%d %H:%M:%S %Z}.")
            if self.src_newer:
                line += (f" NOTE: modified after the binary was written: {', '.join(self.src_newer)} — "
                         "the binary may not include these changes.")
            if self.repo_state_end != self.repo_state_start:
                line += f" HEAD changed during the run: {self.repo_state_end} at the end."
            md += [line, ""]
        if BASE in self.tools:
            b = self.bins[BASE]
            md += [f"{BASE} (baseline, `--baseline-bin {self.args.baseline_bin}`): "
                   + (f"commit {self.args.baseline_rev} (as given with --baseline-rev); " if self.args.baseline_rev
                      else "commit not given (--baseline-rev); ")
                   + f"binary sha256 {b['sha']}, written {b['built']:%Y-%m-%d %H:%M:%S %Z}. Mounted and measured "
                   "exactly like s3mount (same arguments, checks and interleaving).", ""]
        intro = f"Median of {runs} run(s) per cell; every run on a fresh mount. "
        if self.reads:
            intro += ("Read runs start after `echo 3 > /proc/sys/vm/drop_caches`"
                      + ("" if self.cache_dropped else " (NOT done: not root)")
                      + (", after which Garage's data files are read back into the page cache (`--server-cache "
                         "warm`: the server serves from memory, as a real S3 endpoint is not limited by this "
                         "machine's disk)" if self.args.server_cache == "warm" and self.garage_dir else
                         " (`--server-cache cold`: Garage reads from disk, ~600 MiB/s here)") + ". ")
        if self.writes:
            intro += ("Write runs start after `sync` and dropping the page cache, write random bytes (made "
                      "unique per run, so Garage cannot deduplicate them) from tmpfs under "
                      "`wbench/UNIQUE/`, are checked with raw GETs/listings and deleted afterwards. A write "
                      "cell is the value until the command returned; \"(in S3: …)\" follows where a raw "
                      "listing showed everything written only later (rclone uploads after close). ")
        intro += ("↑ higher is better, ↓ lower is better. The ratio columns divide s3mount's value by the "
                  "best peer's (s3fs, rclone) or by raw curl's (8 ranged GETs for the 1 GiB read; the PUTs "
                  "for writes): for ↑ rows > 1 means s3mount is better, for ↓ rows < 1 means s3mount is "
                  "better. Write ratios use the values until the data was in S3. "
                  + (f"\"new / base\" divides s3mount's median by {BASE}'s (the baseline build): for ↑ rows "
                     "> 1 means the new build is faster, for ↓ rows < 1 means it is faster. "
                     if BASE in self.tools else "")
                  + "n/a/FAIL/skipped: see Problems.")
        md += ["## Results", "", intro, "", table, ""]
        noise = ("The benchmark, Garage and the FUSE daemons share the 2 cores; anything else running "
                 "(a concurrent `cargo build`) shows up directly in these numbers. Tools are interleaved "
                 f"within each run ({', '.join(self.tools)}, then the next run) so that such noise "
                 "spreads over all tools instead of hitting one. ")
        if self.reads:
            noise += ((f"Garage itself used {statistics.median(self.garage_cpu):.1f} CPU-seconds (median) "
                       "per GiB served in the raw runs, " if self.garage_cpu else "Garage itself needs about "
                       "2 CPU-seconds per GiB it serves, ")
                      + "so on 2 cores the server, not the client, caps every read throughput row (roughly "
                      "450–700 MiB/s here, varying from run to run), and parallel ranged GETs gain little "
                      "over one stream. ")
        if self.writes and self.garage_cpu_w:
            noise += (f"Writing, Garage used {statistics.median(self.garage_cpu_w):.1f} CPU-seconds (median) "
                      "per GiB received in the raw PUT runs (hashing, a compression attempt, writing its "
                      "files), which likewise bounds every write throughput row. ")
        noise += ("The per-run FUSE daemon CPU time in the next section is a steadier signal of client "
                  "efficiency than MiB/s.")
        md += ["## Noise", "",
               f"{ncpu} cores. 1-min load average during the measurements: "
               f"{min(loads):.2f}–{max(loads):.2f} (median {statistics.median(loads):.2f}); "
               f"compiler processes (rustc/cargo/cc/ld) were running during {busy} of {len(self.loads)} "
               "measurements."
               + (f" `--wait-idle {self.args.wait_idle:g}`: waited for a quiet machine before "
                  f"{self.idle_waits} measurements." if self.args.wait_idle else "")
               if loads else "no measurements", "", noise, ""]
        md += ["## All runs", "", self.details(), ""]
        md += ["## Machine", "", f"- date: {started:%Y-%m-%d %H:%M:%S %Z}".rstrip(),
               f"- total time: {elapsed / 60:.1f} min",
               f"- CPU: {cpu}, nproc {ncpu}", f"- kernel: {uname}", "- memory (`free -g`):", "",
               "```", free, "```", ""]
        md += ["Versions:", ""] + [f"- {k}: {v}" for k, v in vers.items()] + [""]
        md += ["Server: Garage (single node, lmdb, replication_factor 1, default zstd compression and "
               f"1 MiB blocks) on {self.endpoint}, bucket `{BUCKET}`, path-style; loopback quickack route "
               f"{'on' if self.quickack() else 'OFF'} (scripts/garage.sh applies it).", ""]
        if self.reads:
            md += ["Read data set: big/1GiB.bin (1 GiB) and mid/100MiB.bin (100 MiB) of deterministic "
                   "pseudo-random bytes (1 MiB blocks of `random.Random('s3mount-bench:KEY:N').randbytes`), "
                   "small/f0000..f0999 (4 KiB each), many/e00000..e09999 (10,000 empty objects), "
                   "huge/h000000..h099999 (100,000 empty objects), tree/d00..d99/f000..f099 (10,000 empty "
                   "objects in 100 directories); each set only when a selected workload uses it. Loaded once "
                   "with curl (parallel PUTs).", ""]
        if self.writes:
            md += [f"Write sources, staged in {STAGE} (tmpfs) at the start and removed at the end: 100 MiB and "
                   f"1 GiB of random bytes, {W3_COUNT} x 4 KiB random files, a tar of {W4_COUNT} random files "
                   f"of 1–64 KiB (sizes from random.Random({W4_SEED})) in {W4_DIRS} directories. Before each "
                   "run, 32 bytes derived from the run's prefix are written at every MiB of the big sources "
                   "and at the start of every small file (inside the tar too).", ""]
        corr = []
        if self.reads:
            corr.append("sha256 of mid/100MiB.bin read through each tool: "
                        + "; ".join(f"{t} {v}" for t, v in self.verified.items())
                        + ". Every timed read run also checks what it read: byte counts of dd, the bytes of "
                        "the first 4 KiB and of all 200 random reads, the digest of the concatenated small "
                        "files, the line count of `ls -l`.")
        if self.writes:
            corr.append("Every write run is checked with the raw client: all keys with their sizes in a "
                        "listing (w5: also none left under the old name), the sha256 of the whole 100 MiB "
                        "object, three 1 MiB ranges (start, middle, end) of the 1 GiB object, and three whole "
                        "small objects (first, middle, last) for w3–w5, compared with this run's source bytes.")
        md += ["Correctness: " + " ".join(corr), ""]
        md += ["## Commands", "", "MNT is target/bench/mnt/TOOL. Mounts:", ""]
        md += ["```"] + [f"{v}" for k, v in self.commands.items() if k.startswith("mount ")] + ["```", ""]
        md += ["Workloads (timed with time.perf_counter around the command unless said otherwise):", "", "```"]
        md += [f"{k}: {v}" for k, v in self.commands.items() if not k.startswith("mount ")] + ["```", ""]
        if self.writes:
            md += ["Write runs: `mkdir -p MNT/wbench/UNIQUE` through the mount first (untimed; w1–w4); "
                   "then the timed command; then a raw listing of wbench/UNIQUE/ right away and every "
                   f"0.2 s (up to {DURABLE_TIMEOUT} s) until it shows everything written — the \"in S3\" "
                   "time (equal to the command's when the first listing already does). Afterwards the "
                   "mount is unmounted, the content checked, and every key under wbench/ deleted "
                   f"(but {WSENTINEL}, see below).", "",
                   "Garage keeps a deleted key as a tombstone, and its ListObjectsV2 steps over tombstones "
                   "until it has found max-keys live keys: a `name/` listing with max-keys 1 (how s3mount "
                   "and s3fs look up a new name) reads on over every tombstone that sorts after it. Left "
                   "alone, the deleted keys of earlier runs slow the lookups of later runs (in a first full "
                   "run, `cp -r` fell to 83 files/s for s3mount and 25 for s3fs). So UNIQUE is "
                   "`t<nanoseconds since 1970>-TOOL-WORKLOAD-rN`, which sorts after every earlier run's, and "
                   f"the small object {WSENTINEL} stays in the bucket, so that a listing starting at wbench/ "
                   "(the lookup of the directory wbench) stops at it. A real S3 bucket without versioning "
                   "keeps no tombstones.", ""]
        md += ["Peer options: s3fs runs with its defaults besides the connection options (no `use_cache`, "
               "i.e. no local disk cache; stat cache on; `-o sigv4` only because Garage speaks only "
               "SigV4; writes are staged in temporary files in /tmp, on disk, and uploaded by flush/fsync). "
               "rclone runs with its defaults for reads (`--vfs-cache-mode off`, `--vfs-read-chunk-size "
               "128M`, `--buffer-size 16M`, `--dir-cache-time 5m`, `--attr-timeout 1s`)"
               + ("; for the write workloads with `--vfs-cache-mode writes --cache-dir target/bench/rclone-cache`"
                  " (on disk; emptied after each run), since with `off` it cannot open a file read-write or "
                  "write after a seek: files are written to the cache, and uploaded after close once "
                  "`--vfs-write-back` (default 5 s) has passed — so its commands return before the data is "
                  "in S3" if self.writes else "")
               + f". s3mount{f' and {BASE}' if BASE in self.tools else ''}: "
               f"`S3MOUNT_BENCH_ARGS`={os.environ.get('S3MOUNT_BENCH_ARGS', '')!r} (defaults). "
               "Peak RSS is VmHWM of the process that serves the mount (holds /dev/fuse and names the mount "
               "point), read just before unmounting (write runs: once the data is in S3).", ""]
        probs = []
        for t, d in self.errors.items():
            for wl, msg in d.items():
                probs.append(f"- {t} / {wl}: {msg}")
        md += ["## Problems", ""] + (probs or ["none"]) + [""] + self.notes
        for t in S3MOUNTS:
            logged, umounts = self.s3mount_log.get(t, []), self.umount_warnings.get(t, 0)
            if logged or umounts:
                md += ["", f"{t}'s log (target/bench/logs/{t}.log, level warn) during the runs:", ""]
                md += [f"- {l}" for l in logged]
                if umounts:
                    md += [f"- {umounts} times, once per `fusermount3 -u`: `{self.umount_example}`"]
        return table, "\n".join(md).rstrip() + "\n"

    def quickack(self):
        try:
            r = run(["ip", "route", "show", "table", "local", "127.0.0.1"], 10, check=False)
            return "quickack 1" in r.stdout
        except BenchError:
            return False

    # -------------------------------------------------------------- main

    def main(self):
        if self.args.only == "faults":
            # scripts/bench_faults.py imports this module as `bench`: give it this one (run as
            # __main__), so that its BenchError and Interrupted are the ones caught here.
            sys.modules.setdefault("bench", sys.modules[__name__])
            import bench_faults
            self.reads = self.writes = False
            return bench_faults.run(self)
        if self.args.only == "memory":
            sys.modules.setdefault("bench", sys.modules[__name__])
            import bench_memory
            self.reads = self.writes = False
            return bench_memory.run(self)
        if self.args.only == "diskcache":
            sys.modules.setdefault("bench", sys.modules[__name__])
            import bench_diskcache
            self.reads = self.writes = False
            return bench_diskcache.run(self)
        started = datetime.datetime.now().astimezone()
        t0 = time.time()
        self.reads = self.args.only in ("all", "reads")
        self.writes = self.args.only in ("all", "writes")
        self.order = (READ_ORDER if self.reads else []) + (WRITE_ORDER if self.writes else [])
        if self.args.workloads:
            wanted = [w.strip() for w in self.args.workloads.split(",") if w.strip()]
            bad = [w for w in wanted if w not in WORKLOAD_ORDER]
            if bad:
                raise BenchError(f"unknown workload {bad[0]!r} (choose from {','.join(WORKLOAD_ORDER)})")
            # A measurement of only what a change is about, with only the set-up it needs
            # (the read data set, the write sources).
            self.order = [w for w in self.order if w in wanted]
            if not self.order:
                raise BenchError(f"--workloads {self.args.workloads} selects nothing that --only {self.args.only} runs")
            self.reads = any(w in READ_ORDER for w in self.order)
            self.writes = any(w in WRITE_ORDER for w in self.order)
        if self.args.tools is None:  # default: all, and the baseline right after s3mount
            self.args.tools = ",".join(ALL_TOOLS)
            if self.args.baseline_bin:
                self.args.tools = self.args.tools.replace("s3mount", f"s3mount,{BASE}", 1)
        self.tools = [t.strip() for t in self.args.tools.split(",") if t.strip()]
        known = ALL_TOOLS + ([BASE] if self.args.baseline_bin else [])
        for t in self.tools:
            if t == BASE and not self.args.baseline_bin:
                raise BenchError(f"tool {BASE} needs --baseline-bin PATH (the baseline s3mount binary)")
            if t not in known:
                raise BenchError(f"unknown tool {t!r} (choose from {','.join(known)})")
        missing = [t for t in self.tools if not self.tool_available(t)]
        for t in missing:
            msg = (f"{self.args.s3mount_bin} not found (cargo build --release)" if t == "s3mount"
                   else f"--baseline-bin {self.args.baseline_bin} not found" if t == BASE
                   else f"{t} not installed (scripts/deps.sh --bench)")
            self.notes.append(f"- {t}: not run: {msg}")
            log(f"warning: {t}: {msg}; skipping it")
        self.tools = [t for t in self.tools if t not in missing]
        if not self.tools:
            raise BenchError("no tool to benchmark")
        if os.geteuid() != 0:
            log("warning: not root: page cache is not dropped between runs")
        self.cleanup_stale()
        self.repo_state_start = self.repo_state()
        self.repo_state_end = self.repo_state_start
        self.src_newer = self.source_newer_than_binary() if "s3mount" in self.tools else []
        self.setup_env()
        for t in S3MOUNTS:
            if t in self.tools:
                self.snapshot_s3mount(t)
        if self.reads:
            ensure_dataset(self.s3, self.work, self.order)
        try:
            self.run_all()
        finally:
            for m in list(self.mounts):
                try:
                    m.stop()
                except Exception as e:  # noqa: BLE001
                    log(f"cleanup of {m.mnt}: {e}")
            self.cleanup_stale()
            self.cleanup_writes()
        elapsed = time.time() - t0
        self.repo_state_end = self.repo_state()
        table, md = self.report(started, elapsed)
        print(table)
        out = Path(self.args.out) if self.args.out else REPO / "bench" / f"results-{started:%Y-%m-%d}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        log(f"wrote {out} ({elapsed / 60:.1f} min)")
        return 1 if any(self.errors.values()) else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default=None,
                    help=f"comma-separated subset of raw,s3mount,s3fs,rclone and, with --baseline-bin, "
                         f"{BASE} (default: all; with --baseline-bin raw,s3mount,{BASE},s3fs,rclone)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per workload and tool (default 3; with --only faults 1)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 run, no 1 GiB dd (read or write) for the peers")
    ap.add_argument("--only", choices=["reads", "writes", "all", "faults", "memory", "diskcache"], default="all",
                    help="run only the read or only the write workloads (default: all: both), or "
                         "only the fault scenarios of scripts/bench_faults.py (faults: opt-in, never "
                         "part of all), or 16 readers + 4 writers in a memory-limited cgroup "
                         "(scripts/bench_memory.py; memory: opt-in), or the read cache on disk: 1 GiB "
                         "from the network, then from disk after drop_caches and a remount "
                         "(scripts/bench_diskcache.py; diskcache: opt-in)")
    ap.add_argument("--cgroup-limit", type=int, default=256, metavar="MIB",
                    help="with --only memory: the cgroup's memory limit in MiB (default 256)")
    ap.add_argument("--workloads", metavar="IDS",
                    help="comma-separated subset of the workloads to run: " + ",".join(WORKLOAD_ORDER)
                         + " (default: every workload --only selects)")
    ap.add_argument("--out", help="results file (default bench/results-YYYY-MM-DD.md)")
    ap.add_argument("--budget-minutes", type=float, default=35,
                    help="skip the remaining runs after this many minutes (default 35; a default run "
                         "takes about 22)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before each measurement wait up to SECONDS for the CPUs to be < 25%% busy "
                         "(default 0: do not wait); the time budget still applies")
    ap.add_argument("--workload-timeout", type=float,
                    help="override every workload's timeout (seconds; default: 60-300 per workload)")
    ap.add_argument("--server-cache", choices=["warm", "cold"], default="warm",
                    help="after dropping the page cache before each run, read Garage's data files "
                         "back in (warm, default: the server is not disk-bound) or not (cold)")
    ap.add_argument("--s3mount-bin", default=str(REPO / "target" / "release" / "s3mount"))
    ap.add_argument("--baseline-bin", metavar="PATH",
                    help=f"a second s3mount binary (e.g. built from an older commit), benchmarked as "
                         f"tool {BASE} exactly like s3mount; adds a \"new / base\" ratio column")
    ap.add_argument("--baseline-rev", metavar="REV",
                    help="label for the report: the commit --baseline-bin was built from")
    args = ap.parse_args()
    if args.runs is None:
        args.runs = 1 if args.only in ("faults", "memory") else 3
    args.cgroup_limit *= MiB
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.baseline_rev and not args.baseline_bin:
        ap.error("--baseline-rev labels --baseline-bin; give both")

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    b = Bench(args)
    try:
        return b.main()
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({type(e).__name__} {e}); unmounting")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        return 2
    finally:
        for m in list(b.mounts):
            try:
                m.stop()
            except BaseException as e:  # noqa: BLE001
                log(f"cleanup of {m.mnt}: {e}")
        try:
            b.cleanup_stale()
        except BaseException as e:  # noqa: BLE001
            log(f"cleanup: {e}")
        try:
            b.cleanup_writes()
        except BaseException as e:  # noqa: BLE001
            log(f"cleanup: {e}")


if __name__ == "__main__":
    sys.exit(main())
