#!/usr/bin/env python3
"""deploy/sizing.py - memory and CPU for the DaemonSet against cluster size.

  python3 deploy/sizing.py                      the table of deploy/README.md
  python3 deploy/sizing.py --services 3000 --endpoints 20 --cache-memory 64
                                                one row for your cluster

Reads the measured figures from bench/results/cluster-latest.md (the cluster
bench: `bench/cluster/table.py`, its column of 10,000 Services of 10 endpoints) and scales
them linearly with the number of endpoints, which is what the store holds
per Service. After a new bench run, run this again and paste its output into
deploy/README.md ("Resources"). Prints Markdown.
"""
import argparse
import math
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RESULTS = os.path.join(ROOT, "bench", "results", "cluster-latest.md")
MARGIN = 1.25          # on top of the peak: allocator slack, a burst of changes
ROUND_MIB = 64         # limits rounded up to this


def measured(path):
    """The figures of the bench file: services, endpoints, idle, synced and
    peak RSS (MB), sync wall time (s), CPU per endpoint change (ms)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()

    def grab(pattern, what):
        m = re.search(pattern, text, re.M)
        if not m:
            sys.exit("sizing: %s not found in %s (the bench's wording changed?)" % (what, path))
        return m

    # bench/cluster/table.py: one column per shape; the first is 10k Services
    # of 10 endpoints, the shape this table scales.
    def first_col(row_start, what, unit):
        m = grab(r"^\| " + re.escape(row_start) + r"[^|]*\|[^|]*\|[^|]*\| ([\d.]+) " + unit,
                 what)
        return float(m.group(1))

    m = grab(r"^- (\d+)k-(\d+): syncs .*?idle nodedns (\d+) MB", "the cluster size")
    services = int(m.group(1)) * 1000
    endpoints = services * int(m.group(2))
    idle_rss = float(m.group(3))
    synced_rss = first_col("resident memory 5 s after sync", "memory after sync", "MB")
    peak = first_col("peak resident memory during the first sync", "peak VmHWM", "MB")
    sync_s = first_col("start → /ready", "initial sync", "s")
    change_ms = first_col("CPU per EndpointSlice change", "CPU per endpoint change", "µs") / 1000
    date = re.search(r"on (\d{4}-\d{2}-\d{2})", text)
    return {"services": services, "endpoints": endpoints, "idle": idle_rss, "synced": synced_rss,
            "peak": peak, "sync_s": sync_s, "change_ms": change_ms,
            "date": date.group(1) if date else "?"}


def row(m, services, per_service, cache_mb):
    scale = services * per_service / m["endpoints"]
    peak = m["idle"] + (m["peak"] - m["idle"]) * scale
    synced = m["idle"] + (m["synced"] - m["idle"]) * scale
    limit = (peak + cache_mb) * MARGIN
    limit_mib = max(ROUND_MIB, int(math.ceil(limit * 1e6 / 2**20 / ROUND_MIB)) * ROUND_MIB)
    sync_cpu = m["sync_s"] * scale
    return ("| %s | %s | %.0f MB | %.0f MB | %dMi | %s s | %s s |"
            % (format(services, ","), format(services * per_service, ","), synced, peak, limit_mib,
               seconds(sync_cpu), seconds(sync_cpu / 0.1)))


def seconds(x):
    """Two significant digits under 10 s, whole seconds above."""
    return "%.0f" % x if x >= 10 else "%.2g" % x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, action="append")
    ap.add_argument("--endpoints", type=int, default=10, help="endpoints per Service (default 10)")
    ap.add_argument("--cache-memory", type=int, default=64, help="cache-memory of config.json, MB (default 64)")
    ap.add_argument("--results", default=RESULTS)
    a = ap.parse_args()
    m = measured(a.results)
    print("| Services | endpoints | RSS after the first sync | peak during it | memory limit "
          "(= request) | first sync, CPU | first sync at 100m |")
    print("|---|---|---|---|---|---|---|")
    for n in a.services or (500, 1000, 2500, 5000, 10000, 20000):
        print(row(m, n, a.endpoints, a.cache_memory))
    print()
    print("From bench/results/cluster-latest.md of %s (%s Services, %s endpoints): idle %.0f MB, synced %.0f MB, "
          "peak %.0f MB, first sync %.1f s on one CPU, %.2f ms of CPU per endpoint change. Memory and sync time "
          "scaled by the number of endpoints; limit = (peak + cache-memory %d MB) x %.2f, rounded up to %dMi."
          % (m["date"], format(m["services"], ","), format(m["endpoints"], ","), m["idle"], m["synced"],
             m["peak"], m["sync_s"], m["change_ms"], a.cache_memory, MARGIN, ROUND_MIB))
    return 0


if __name__ == "__main__":
    sys.exit(main())
