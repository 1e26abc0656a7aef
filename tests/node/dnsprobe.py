#!/usr/bin/env python3
"""dnsprobe.py - DNS client for the node tests; runs inside a network namespace
(through `ip netns exec`), so it only uses the standard library.

  dnsprobe.py loop SERVER NAME [--interval-ms 10] [--timeout-ms 1000]
                   [--duration-s 5] [--stop-file PATH]
      One UDP query every interval, each from a fresh connected socket (a new
      source port, as glibc does per lookup, so SO_REUSEPORT spreads them over
      every listening socket; ICMP port unreachable shows as "refused").
      Prints one JSON object: sent, ok, refused, lost (no answer within the
      timeout), bad, max_gap_ms (longest time between two successful answers),
      the three longest gaps with their start offsets, and the timeline of
      failures.

  dnsprobe.py query SERVER NAME [TYPE]
      One query; prints JSON {rcode, aa, ra, answers: [...]} or {"error": ...}.

  dnsprobe.py get URL
      HTTP GET; prints the body (exit 1 on error).
"""

import errno
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
from lib import dnswire  # noqa: E402


def parse_server(s):
    if s.startswith("["):
        host, _, port = s[1:].partition("]")
        port = port.lstrip(":")
        return socket.AF_INET6, host, int(port or 53)
    if s.count(":") > 1:
        return socket.AF_INET6, s, 53
    host, _, port = s.partition(":")
    return socket.AF_INET, host, int(port or 53)


def reply_info(msg):
    """The fields of a reply that the node tests look at."""
    m = dnswire.parse(msg)
    answers = [r.data if r.type in (1, 28) and isinstance(r.data, str) else "type%d" % r.type
               for r in m.answer]
    return {"id": m.id, "rcode": m.rcode, "aa": m.aa, "ra": m.ra, "tc": m.tc, "answers": answers}


def cmd_query(server, name, qtype="A"):
    fam, host, port = parse_server(server)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    qid = random.randrange(65536)
    try:
        s.connect((host, port))
        s.send(dnswire.build_query(name, qtype, qid=qid, rd=True))
        while True:
            r = reply_info(s.recv(4096))
            if r["id"] == qid:
                print(json.dumps(r))
                return 0
    except OSError as e:
        print(json.dumps({"error": e.__class__.__name__, "errno": e.errno}))
        return 0
    finally:
        s.close()


def cmd_loop(server, name, interval_ms, timeout_ms, duration_s, stop_file):
    fam, host, port = parse_server(server)
    sel = selectors.DefaultSelector()
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    t0 = time.monotonic()
    sent = ok = refused = lost = bad = 0
    ok_times = []
    failures = []  # (offset ms, kind)
    pending = {}  # sock -> (qid, sent_at)
    next_send = t0
    query_name = name
    while True:
        now = time.monotonic()
        done = stop["now"] or now - t0 >= duration_s or (stop_file and os.path.exists(stop_file))
        if done and not pending:
            break
        if not done and now >= next_send:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)
            qid = random.randrange(65536)
            try:
                s.connect((host, port))
                s.send(dnswire.build_query(query_name, "A", qid=qid))
                pending[s] = (qid, now)
                sel.register(s, selectors.EVENT_READ)
                sent += 1
            except OSError as e:
                s.close()
                sent += 1
                if e.errno == errno.ECONNREFUSED:
                    refused += 1
                    failures.append((round((now - t0) * 1000, 1), "refused"))
                else:
                    bad += 1
                    failures.append((round((now - t0) * 1000, 1), "send:%s" % e.errno))
            next_send += interval_ms / 1000.0
            if next_send < now:  # we fell behind: do not burst
                next_send = now + interval_ms / 1000.0
        wait = max(0.0, min(next_send - time.monotonic(), 0.05)) if not done else 0.05
        for key, _ in sel.select(wait):
            s = key.fileobj
            qid, at = pending.pop(s)
            sel.unregister(s)
            t = time.monotonic()
            try:
                r = reply_info(s.recv(4096))
                if r["id"] == qid and r["rcode"] == 0 and r["answers"]:
                    ok += 1
                    ok_times.append(t)
                else:
                    bad += 1
                    failures.append((round((at - t0) * 1000, 1), "rcode%d" % r["rcode"]))
            except OSError as e:
                if e.errno == errno.ECONNREFUSED:
                    refused += 1
                    failures.append((round((at - t0) * 1000, 1), "refused"))
                else:
                    bad += 1
                    failures.append((round((at - t0) * 1000, 1), "recv:%s" % e.errno))
            except Exception:  # a reply we cannot parse
                bad += 1
                failures.append((round((at - t0) * 1000, 1), "garbled"))
            s.close()
        t = time.monotonic()
        for s, (qid, at) in list(pending.items()):
            if t - at >= timeout_ms / 1000.0:
                pending.pop(s)
                sel.unregister(s)
                s.close()
                lost += 1
                failures.append((round((at - t0) * 1000, 1), "lost"))
    gaps = []
    for a, b in zip(ok_times, ok_times[1:]):
        gaps.append((round((b - a) * 1000, 1), round((a - t0) * 1000, 1)))
    gaps.sort(reverse=True)
    print(json.dumps({
        "sent": sent, "ok": ok, "refused": refused, "lost": lost, "bad": bad,
        "duration_ms": round((time.monotonic() - t0) * 1000, 1),
        "max_gap_ms": gaps[0][0] if gaps else None,
        "top_gaps": gaps[:3],
        "failures": failures[:200],
    }))
    return 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "loop":
        opts = {"--interval-ms": "10", "--timeout-ms": "1000", "--duration-s": "5", "--stop-file": ""}
        rest = argv[3:]
        while rest:
            k = rest.pop(0)
            if k not in opts or not rest:
                print("bad option %s" % k, file=sys.stderr)
                return 2
            opts[k] = rest.pop(0)
        return cmd_loop(argv[1], argv[2], float(opts["--interval-ms"]), float(opts["--timeout-ms"]),
                        float(opts["--duration-s"]), opts["--stop-file"])
    if len(argv) in (3, 4) and argv[0] == "query":
        return cmd_query(*argv[1:])
    if len(argv) == 2 and argv[0] == "get":
        try:
            with urllib.request.urlopen(argv[1], timeout=5) as r:
                sys.stdout.write(r.read().decode())
            return 0
        except Exception as e:  # noqa: BLE001 - report any failure
            print("GET %s: %s" % (argv[1], e), file=sys.stderr)
            return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
