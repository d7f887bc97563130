#!/usr/bin/env python3
"""scripts/bench_diskcache.py - the read cache on disk (--cache-dir): a 1 GiB file read from the
network, then read again after the page cache was dropped and the mount remounted, from disk.

Per run, with a fresh cache directory under the benchmark's work dir:

  1. drop the page cache (Garage's data files read back in: the server serves from memory),
     mount s3mount with --cache-dir DIR --max-cache-size 2GiB, then
     dd if=MNT/big/1GiB.bin of=/dev/null bs=1M          -> network MiB/s, daemon CPU seconds
     (every block read is also written to DIR/read-cache/, off the reply path)
  2. unmount (the daemon writes what is still queued before it exits), drop the page cache
     again (so the cache files come from the disk, not from memory) and remount, then the
     same dd                                             -> disk MiB/s, daemon CPU seconds,
     and the GetObject requests the mount sent meanwhile (from --metrics-addr; 0 when every
     block came from disk)

The report gives the medians and the ratio disk / network (issue 14 item 3 asks for at least 2).
Run as `scripts/bench.sh --only diskcache [--runs N]` (bench.py hands over to this file; about
1 minute per run once the data set is loaded). Results: a markdown table on stdout and
bench/results-YYYY-MM-DD-diskcache.md (or --out).
"""

import datetime
import os
import shutil
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402  (bench.py registers itself as `bench` when it hands over)

MiB = B.MiB
log = B.log
STEP_TIMEOUT = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        k, v = line.rsplit(" ", 1)
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def gets(m):
    return m.get('s3mount_s3_requests_total{operation="GetObject",outcome="ok"}', 0.0)


class DiskRun:
    def __init__(self, b):
        self.b = b
        self.results = []
        self.cache = b.work / "diskcache"

    def read_once(self, cache, what):
        """Mount with the disk cache, dd the 1 GiB file, unmount: MiB/s, CPU s, metrics."""
        b = self.b
        port = free_port()
        m = b.mount_for("s3mount")
        m.cmd += ["--cache-dir", str(cache), "--max-cache-size", "2GiB",
                  "--metrics-addr", f"127.0.0.1:{port}"]
        b.commands.setdefault("mount s3mount (diskcache)", m.display + " --cache-dir DIR "
                              "--max-cache-size 2GiB --metrics-addr 127.0.0.1:PORT")
        b.reset_caches()
        b.note_load()
        m.start()
        b.mounts.append(m)
        try:
            cpu0 = B.cpu_seconds(m.pid)
            t0 = time.perf_counter()
            r = B.run(["dd", f"if={m.mnt / B.BIG}", "of=/dev/null", "bs=1M"], STEP_TIMEOUT, what=f"dd ({what})")
            dt = time.perf_counter() - t0
            if B.dd_bytes(r.stderr) != B.BIG_SIZE:
                raise B.BenchError(f"dd read {B.dd_bytes(r.stderr)} bytes, expected {B.BIG_SIZE}")
            cpu = B.cpu_seconds(m.pid) - cpu0
            metrics = scrape(port)
        finally:
            m.stop()
            b.mounts.remove(m)
        return B.BIG_SIZE / MiB / dt, cpu, metrics

    def one(self, run_no):
        shutil.rmtree(self.cache, ignore_errors=True)
        res = {}
        try:
            res["net"], res["net_cpu"], m1 = self.read_once(self.cache, "network")
            res["net_gets"] = gets(m1)
            res["written"] = m1.get("s3mount_disk_cache_bytes", 0.0)
            res["dropped"] = m1.get("s3mount_disk_cache_dropped_writes_total", 0.0)
            res["disk"], res["disk_cpu"], m2 = self.read_once(self.cache, "disk")
            res["disk_gets"] = gets(m2)
            res["hits"] = m2.get("s3mount_disk_cache_hits_total", 0.0)
        except B.BenchError as e:
            res["error"] = str(e)
        log(f"diskcache run {run_no}: {res}")
        return res

    def main(self):
        b = self.b
        started = datetime.datetime.now().astimezone()
        t0 = time.time()
        b.tools = ["s3mount"]
        b.reads = b.writes = False
        b.cleanup_stale()
        b.setup_env()
        b.snapshot_s3mount("s3mount")
        B.ensure_dataset(b.s3, b.work)
        try:
            for r in range(b.args.runs):
                self.results.append(self.one(r + 1))
        finally:
            shutil.rmtree(self.cache, ignore_errors=True)
        elapsed = time.time() - t0
        md = self.report(started, elapsed)
        print(md)
        out = Path(b.args.out) if b.args.out else B.REPO / "bench" / f"results-{started:%Y-%m-%d}-diskcache.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        log(f"wrote {out} ({elapsed / 60:.1f} min)")
        return 1 if any("error" in r for r in self.results) else 0

    def report(self, started, elapsed):
        ok = [r for r in self.results if "error" not in r]

        def med(k):
            v = [r[k] for r in ok if r.get(k) is not None]
            return statistics.median(v) if v else 0.0
        net, disk = med("net"), med("disk")
        md = ["# Read cache on disk: 1 GiB read from the network, then from disk after a remount",
              "",
              f"{started:%Y-%m-%d %H:%M %Z}, {elapsed / 60:.1f} min, {len(ok)} of {len(self.results)} run(s) ok; "
              "see scripts/bench_diskcache.py for the workload. Medians over runs.",
              "",
              "| read | MiB/s | daemon CPU (s) | GetObject requests |",
              "|---|---|---|---|",
              f"| 1st: network (Garage warm), blocks also written to disk | {net:.0f} | {med('net_cpu'):.2f} | "
              f"{med('net_gets'):.0f} |",
              f"| 2nd: remount after drop_caches, from the disk cache | {disk:.0f} | {med('disk_cpu'):.2f} | "
              f"{med('disk_gets'):.0f} |",
              "",
              f"Ratio disk / network: **{disk / net:.2f}×**" if net else "Ratio: n/a",
              "",
              f"Bytes written to the cache by the 1st read: {med('written') / MiB:.0f} MiB (block files with "
              f"headers), writes dropped (queue full): {med('dropped'):.0f}; disk-cache hits in the 2nd read: "
              f"{med('hits'):.0f} blocks of 256 KiB.",
              "",
              "All runs (network MiB/s, disk MiB/s, CPU s network/disk):",
              ""]
        for i, r in enumerate(self.results):
            if "error" in r:
                md.append(f"- run {i + 1}: error: {r['error']}")
            else:
                md.append(f"- run {i + 1}: {r['net']:.0f}, {r['disk']:.0f}, {r['net_cpu']:.2f}/{r['disk_cpu']:.2f}")
        loads = [l for l, _ in self.b.loads]
        if loads:
            busy = sum(1 for _, c in self.b.loads if c)
            md += ["", f"{os.cpu_count()} cores; 1-min load average at the measurements "
                   f"{min(loads):.2f}–{max(loads):.2f}; compiler processes running at {busy} of "
                   f"{len(loads)} of them. Cache directory on the same disk as Garage's data."]
        md += ["", "Commands: " + "; ".join(f"`{k}`: `{v}`" for k, v in self.b.commands.items())]
        return "\n".join(md) + "\n"


def run(b):
    """Entry point from bench.py (`--only diskcache`), with its Bench."""
    return DiskRun(b).main()
