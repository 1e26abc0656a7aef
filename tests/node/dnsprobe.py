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
import struct
import sys
import time
import urllib.request

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "TXT": 16, "AAAA": 28, "SRV": 33}


def parse_server(s):
    if s.startswith("["):
        host, _, port = s[1:].partition("]")
        port = port.lstrip(":")
        return socket.AF_INET6, host, int(port or 53)
    if s.count(":") > 1:
        return socket.AF_INET6, s, 53
    host, _, port = s.partition(":")
    return socket.AF_INET, host, int(port or 53)


def build_query(name, qtype, qid):
    wire = b""
    for label in name.rstrip(".").split("."):
        wire += bytes([len(label)]) + label.encode()
    wire += b"\0"
    # RD=1, one question, EDNS-less.
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def parse_reply(msg):
    qid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    answers = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        rdata = msg[off:off + rdlen]
        off += rdlen
        if rtype == 1 and rdlen == 4:
            answers.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28 and rdlen == 16:
            answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
        else:
            answers.append("type%d" % rtype)
    return {"id": qid, "rcode": flags & 0xF, "aa": bool(flags & 0x0400),
            "ra": bool(flags & 0x0080), "tc": bool(flags & 0x0200), "answers": answers}


def cmd_query(server, name, qtype="A"):
    fam, host, port = parse_server(server)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(2)
    qid = random.randrange(65536)
    try:
        s.connect((host, port))
        s.send(build_query(name, TYPES[qtype], qid))
        while True:
            r = parse_reply(s.recv(4096))
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
                s.send(build_query(query_name, 1, qid))
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
                r = parse_reply(s.recv(4096))
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
