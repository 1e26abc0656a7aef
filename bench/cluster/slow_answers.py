#!/usr/bin/env python3
"""bench/cluster/slow_answers.py - who held nodedns's CPU during each slow answer.

    bench/cluster/run.sh --quick --phases baseline,sync,perf --rt-pass 50 \\
        --sched-record SCHED.data --json RUN.json
    bench/cluster/slow_answers.py --json RUN.json --sched SCHED.data [--cpu 1]

For every answer the paced probe (probe.py) timed over its --slow-ms in the
recorded pass, prints what ran on nodedns's CPU between the send and the
answer, from `perf sched timehist`: how long nodedns's main thread (watch +
publish) and its worker ran, how long the worker sat runnable without the
CPU, idle time and anything else, and how long the main thread ran in the
--before-ms before the send. Both sides are on CLOCK_MONOTONIC (the
probe's send times and perf's `-k CLOCK_MONOTONIC`).
"""
import argparse
import json
import re
import subprocess
import sys

LINE = re.compile(r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def runs(sched, cpu):
    """[(start, end, task, sch_delay_ms)] of every run on @cpu, in order."""
    out = subprocess.run(["perf", "sched", "timehist", "-i", sched], capture_output=True,
                         text=True, check=True).stdout
    res = []
    for ln in out.splitlines():
        m = LINE.match(ln)
        if not m or int(m.group(2)) != cpu:
            continue
        end, run = float(m.group(1)), float(m.group(6)) / 1e3
        res.append((end - run, end, m.group(3), float(m.group(5))))
    return res


def classify(task, main_tid):
    if task.startswith("<idle>"):
        return "idle"
    if task.startswith("nodedns["):
        return "main" if task == "nodedns[%s]" % main_tid else "worker"
    return "other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True, help="clusterbench --json output")
    ap.add_argument("--sched", required=True, help="perf sched record output")
    ap.add_argument("--cpu", type=int, default=1, help="nodedns's CPU (run.sh pins it to 1)")
    ap.add_argument("--before-ms", type=float, default=5.0,
                    help="also sum the main thread's runs this long before each send "
                    "(a long pass there leaves a queue the worker is still working off)")
    ap.add_argument("--pass", dest="pas", default="perf_rt_churn",
                    help="which dnsperf pass's probe (perf_rt_churn, perf_churn, ...)")
    args = ap.parse_args()
    R = json.load(open(args.json))
    probe = (R.get(args.pas) or {}).get("probe") or {}
    slow = probe.get("slow") or []
    print("%s: probe answered %s of %s, max %s ms; %d answers over the probe's threshold"
          % (args.pas, probe.get("answered"), probe.get("sent"), probe.get("max_ms"), len(slow)))
    if not slow:
        return 0
    rr = runs(args.sched, args.cpu)
    pids = {re.match(r"nodedns\[(\d+)", t).group(1) for _, _, t, _ in rr
            if t.startswith("nodedns[") and "/" not in t}
    main_tid = min(pids) if pids else "?"
    print("%-14s %7s | %6s %6s %6s %6s | %11s | %s" % (
        "sent at", "ms", "main", "worker", "idle", "other", "main before",
        "longest main run, worker's wait"))
    for t0, ms in slow:
        t1 = t0 + ms / 1e3
        got = {"main": 0.0, "worker": 0.0, "idle": 0.0, "other": 0.0}
        longest_main, worker_wait, others, before = 0.0, 0.0, set(), 0.0
        b0 = t0 - args.before_ms / 1e3
        for a, b, task, delay in rr:
            if b >= b0 and a <= t0 and classify(task, main_tid) == "main":
                before += (min(b, t0) - max(a, b0)) * 1e3
            if b < t0 or a > t1:
                continue
            k = classify(task, main_tid)
            got[k] += (min(b, t1) - max(a, t0)) * 1e3
            if k == "main":
                longest_main = max(longest_main, (b - a) * 1e3)
            elif k == "worker":
                worker_wait = max(worker_wait, delay)
            elif k == "other":
                others.add(task)
        print("%-14.6f %7.2f | %6.2f %6.2f %6.2f %6.2f | %11.2f | %.2f ms, %.2f ms%s"
              % (t0, ms, got["main"], got["worker"], got["idle"], got["other"], before,
                 longest_main, worker_wait,
                 (" (" + ", ".join(sorted(others)) + ")") if others else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
