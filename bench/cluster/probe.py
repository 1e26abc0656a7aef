#!/usr/bin/env python3
"""bench/cluster/probe.py - a paced latency probe for the churn passes.

One A query at a time over UDP, one every --interval seconds, to names read
from --names (one a line, cycled), for --seconds; each answer is timed from
just before the send to just after the receive, and checked (ID, NOERROR,
an address). Prints one JSON object: sent, answered, bad, truncated, every
answer's latency in ms (lat_ms; clusterbench.py takes the quantiles with the
same pct() as dnsperf's) and the slow ones with their send times.

Why it exists next to dnsperf: the SCHED_FIFO pass asks how long nodedns's
control thread (watch + publish) can hold its worker back. dnsperf cannot
say: run SCHED_FIFO its sending thread shares a priority with its receiving
thread and with the Python stand-in and churn driver on the same CPU, and
whichever runs first keeps the CPU until it blocks (`--sched-record` showed
dnsperf's receiver waiting 40 ms behind the churn thread, 116 ms behind
perf). The probe blocks in recv between queries, so run one priority above
all of them it is woken the moment its answer arrives and takes the CPU
from nobody for long: what it measures is nodedns, the kernel and the
queue of dnsperf's queries ahead of it in nodedns's socket.
"""
import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from lib import dnswire  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--names", required=True, help="file of names, one a line")
    ap.add_argument("--interval", type=float, default=0.002)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=0.5)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds to wait first")
    ap.add_argument("--slow-ms", type=float, default=1.0,
                    help="list the answers slower than this (send time on CLOCK_MONOTONIC, "
                    "as `perf sched record -k CLOCK_MONOTONIC` stamps its events)")
    args = ap.parse_args()
    with open(args.names) as f:
        names = [ln.split()[0] for ln in f if ln.strip()]
    if not names:
        ap.error("no names in %s" % args.names)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((args.host, args.port))
    # EDNS 4096 as a stub would ask; a headless Service of 100 endpoints
    # still comes truncated (nodedns sends at most 1,232 bytes over UDP,
    # DNS Flag Day 2020's size), which is a complete answer for this
    # purpose: its time counts, and "truncated" says how many
    queries = [dnswire.build_query(n, "A", qid=0, edns=4096) for n in names[:5000]]
    truncated = 0
    time.sleep(args.delay)
    lat, bad, sent, qid = [], 0, 0, 0
    slow = []   # [CLOCK_MONOTONIC at the send, ms] of answers over --slow-ms
    t_end = time.monotonic() + args.seconds
    nxt = time.monotonic()
    i = 0
    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        if nxt > now:
            time.sleep(nxt - now)
        nxt += args.interval
        qid = (qid + 1) & 0xFFFF
        q = queries[i % len(queries)]
        i += 1
        wire = qid.to_bytes(2, "big") + q[2:]
        t_mono = time.monotonic()
        t0 = time.perf_counter()
        s.send(wire)
        sent += 1
        deadline = t0 + args.timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                bad += 1
                break
            s.settimeout(left)
            try:
                buf = s.recv(4096)
            except socket.timeout:
                bad += 1
                break
            t1 = time.perf_counter()
            if len(buf) < 12 or int.from_bytes(buf[:2], "big") != qid:
                continue   # a late answer to an earlier query
            m = dnswire.parse(buf)
            if m.rcode_name == "NOERROR" and m.tc:
                truncated += 1
            if m.rcode_name != "NOERROR" or not (m.answers("A") or m.tc):
                bad += 1
            else:
                lat.append(t1 - t0)
                if t1 - t0 > args.slow_ms / 1e3:
                    slow.append([round(t_mono, 6), round((t1 - t0) * 1e3, 3)])
            break
    out = {"sent": sent, "answered": len(lat), "bad": bad, "truncated": truncated,
           "interval_ms": args.interval * 1e3,
           "lat_ms": [round(x * 1e3, 4) for x in lat], "slow": slow[:200]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
