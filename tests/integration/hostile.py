#!/usr/bin/env python3
"""hostile.py - nodedns in front of a DNS upstream that misbehaves on purpose
(tests/integration/hostile_upstream.py), one regression test per defect of
the upstream path:

  tcp_lying_length    a TCP frame 10 bytes short: the connection is closed
                      at once, what was in flight resent; later names answered
  tcp_drip            a reply dripped a byte every 0.5 s: the connection is
                      retired once the frame is late, other names answered
  edns_fallback_*     FORMERR/NOTIMP without OPT: asked again without EDNS,
                      remembered for the server
  badvers_is_failure  BADVERS from the upstream: SERVFAIL, never NOERROR
  tc_over_tcp         TC=1 over TCP: the next upstream, never relayed
  scrub_*             records outside the question's chain dropped, nothing
                      left is SERVFAIL, AD cleared without DO/AD
  tcp_reset*          RST before or in the middle of a reply, or on every
                      connection: SERVFAIL or the next upstream within
                      bounds, other names answered, no descriptor or memory
                      growth, the same rcodes as unbound's

Run: NODEDNS_BIN=build/nodedns python3 tests/integration/hostile.py [filter]
Closing line: "hostile: N passed, N failed". Takes about 10 s.
Figures (recovery time, queries lost) are printed per case as "# ..." lines.
"""

import os
import shutil
import socket
import sys
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Nodedns  # noqa: E402
from lib import dnswire  # noqa: E402
from lib.check import CheckFailed, Skip, check  # noqa: E402
from hostile_upstream import HostileUpstream, hash_ip  # noqa: E402

TEST_TIMEOUT_S = 60


def ask(nd, name, qtype="A", timeout=3.0, **kw):
    """(parsed reply or None on timeout, seconds)."""
    wire = dnswire.build_query(name, qtype, **kw)
    t0 = time.monotonic()
    data = dnswire.udp_exchange(nd.addr, wire, timeout)
    dt = time.monotonic() - t0
    if data is None:
        return None, dt
    m = dnswire.parse(data)
    dnswire.check_reply(wire, m)
    return m, dt


def a_of(m):
    return [rr.data for rr in m.answer if rr.type == 1]


def answered(m, name):
    return m is not None and m.rcode == 0 and hash_ip(name) in [str(x) for x in a_of(m)]


def follow_ups(nd, prefix, n, gap, limit):
    """Ask @n fresh names, @gap s apart; (lost, worst seconds)."""
    lost, worst = 0, 0.0
    for i in range(n):
        name = "%s-%d.example.test" % (prefix, i)
        m, dt = ask(nd, name)
        worst = max(worst, dt)
        if not answered(m, name) or dt > limit:
            lost += 1
        time.sleep(gap)
    return lost, worst


def burst(nd, names, limit):
    """Ask @names at once from one socket; (lost, worst seconds)."""
    import select
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pending, worst = {}, 0.0
    t0 = time.monotonic()
    try:
        for i, name in enumerate(names):
            wire = dnswire.build_query(name, qid=i + 1)
            pending[i + 1] = name
            sock.sendto(wire, nd.addr)
        while pending and time.monotonic() - t0 < limit:
            r, _, _ = select.select([sock], [], [], limit - (time.monotonic() - t0))
            if not r:
                break
            data, _ = sock.recvfrom(65535)
            m = dnswire.parse(data)
            name = pending.get(m.id)
            if name and answered(m, name):
                del pending[m.id]
                worst = max(worst, time.monotonic() - t0)
    finally:
        sock.close()
    return len(pending), worst


def tcp_lying_length():
    up = HostileUpstream()
    try:
        with Nodedns(upstream=up.addr_text, timeout_ms=2000) as nd:
            m, _ = ask(nd, "ok-warm.example.test")
            check(answered(m, "ok-warm.example.test"), "warm-up not answered")
            t0 = time.monotonic()
            m, dt = ask(nd, "shortlen-1.example.test")
            check(m is not None and m.rcode == 2, "the broken reply: want SERVFAIL, got %r"
                  % (m and m.rcode))
            lost, worst = follow_ups(nd, "ok-after", 8, 0.1, 0.5)
            print("# shortlen: broken query %.2fs, then 8 names: %d lost, worst %.3fs"
                  % (dt, lost, worst))
            check(lost == 0, "%d of 8 names after the lying frame not answered within 0.5 s"
                  % lost)
            check(time.monotonic() - t0 < 6, "too slow")
    finally:
        up.close()


def tcp_drip():
    up = HostileUpstream(drip_s=0.5)
    try:
        with Nodedns(upstream=up.addr_text, timeout_ms=2000) as nd:
            m, _ = ask(nd, "ok-warm.example.test")
            check(answered(m, "ok-warm.example.test"), "warm-up not answered")
            box = {}

            def slow():
                box["m"], box["dt"] = ask(nd, "drip-1.example.test", timeout=8)
            th = threading.Thread(target=slow)
            th.start()
            time.sleep(0.05)
            lost = worst = 0
            for r in range(5):
                names = ["ok-during-%d-%d.example.test" % (r, i) for i in range(4)]
                lo, wo = burst(nd, names, 1.0)
                lost, worst = lost + lo, max(worst, wo)
                time.sleep(0.1)
            th.join()
            dm, ddt = box.get("m"), box.get("dt", 0)
            print("# drip: 5 bursts of 4 names during the drip: %d lost, worst %.3fs; dripped query "
                  "rcode %s after %.2fs" % (lost, worst, dm and dm.rcode, ddt))
            check(lost == 0, "%d of 20 names during the drip not answered within 1 s" % lost)
            check(dm is not None and dm.rcode == 2 and ddt < 1.6,
                  "the dripped query: want SERVFAIL within the attempt, got %r after %.2fs"
                  % (dm and dm.rcode, ddt))
    finally:
        up.close()


def _edns_fallback(prefix, proto):
    up = HostileUpstream()
    try:
        extra = ["--upstream-proto", proto]
        with Nodedns(upstream=up.addr_text, timeout_ms=1000, extra=extra) as nd:
            for i, kw in enumerate(({"edns": 1232}, {}, {"edns": 1232, "do": True})):
                name = "%s-%d.example.test" % (prefix, i)
                m, dt = ask(nd, name, **kw)
                check(answered(m, name), "%s (%r): want the A record, got rcode %r"
                      % (name, kw, m and m.rcode))
            # The first query with EDNS, every later one without (remembered).
            e, p = up.count(prefix, edns=True), up.count(prefix, edns=False)
            print("# %s over %s: %d queries with EDNS, %d without" % (prefix, proto, e, p))
            check(e == 1 and p == 3, "want 1 query with EDNS then 3 without, got %d and %d"
                  % (e, p))
    finally:
        up.close()


def edns_fallback_formerr_tcp():
    _edns_fallback("noedns", "tcp")


def edns_fallback_notimp_udp():
    _edns_fallback("noednsimp", "udp")


def badvers_is_failure():
    up = HostileUpstream()
    try:
        with Nodedns(upstream=up.addr_text, timeout_ms=1000) as nd:
            for kw in ({}, {"edns": 1232}):
                m, _ = ask(nd, "badvers-1.example.test", **kw)
                check(m is not None and m.rcode == 2,
                      "BADVERS from the upstream (%r): want SERVFAIL, got %r"
                      % (kw, m and m.rcode))
    finally:
        up.close()


def tc_over_tcp():
    bad, good = HostileUpstream(mode="tc"), HostileUpstream(mode="ok")
    try:
        with Nodedns(upstream=[bad.addr_text, good.addr_text], timeout_ms=1000) as nd:
            name = "tc-1.example.test"
            m, _ = ask(nd, name)
            check(m is not None and not m.tc and answered(m, name),
                  "TC=1 over TCP: want the next upstream's answer, got rcode %r tc %r"
                  % (m and m.rcode, m and m.tc))
        with Nodedns(upstream=bad.addr_text, timeout_ms=1000) as nd:
            for _ in range(2):
                m, _ = ask(nd, "tc-2.example.test")
                check(m is not None and m.rcode == 2 and not m.tc and not m.answer,
                      "TC=1 over TCP from the only upstream: want SERVFAIL, got rcode %r tc %r"
                      % (m and m.rcode, m and m.tc))
            check(bad.count("tc", proto="tcp") >= 3, "the TC answer was cached")
    finally:
        bad.close()
        good.close()


def scrub_unrelated():
    up = HostileUpstream()
    try:
        with Nodedns(upstream=up.addr_text, timeout_ms=1000) as nd:
            m, _ = ask(nd, "unrelated-1.example.test")
            check(m is not None and m.rcode == 2 and not m.answer,
                  "only victim.test in the answer: want SERVFAIL, got rcode %r, %d records"
                  % (m and m.rcode, len(m.answer) if m else -1))
            m, _ = ask(nd, "mixed-1.example.test")
            names = [rr.name.lower() for rr in m.answer] if m else []
            check(answered(m, "mixed-1.example.test") and names == ["mixed-1.example.test"],
                  "victim.test next to the answer: want it dropped, got %r" % names)
            m, _ = ask(nd, "nstype-1.example.test", "NS")
            check(m is not None and m.rcode == 2 and not m.answer,
                  "A records for an NS question: want SERVFAIL, got rcode %r"
                  % (m and m.rcode))
            # Nothing of it was cached: victim.test is asked upstream.
            m, _ = ask(nd, "victim.test")
            check(m is not None and a_of(m) and str(a_of(m)[0]) == hash_ip("victim.test"),
                  "victim.test answered from the scrubbed records")
    finally:
        up.close()


def scrub_ad_bit():
    up = HostileUpstream()
    try:
        with Nodedns(upstream=up.addr_text, timeout_ms=1000) as nd:
            m, _ = ask(nd, "ad-1.example.test")
            check(answered(m, "ad-1.example.test") and not m.ad,
                  "a client without DO or AD: want AD=0, got AD=%r" % (m and m.ad))
            m, _ = ask(nd, "ad-1.example.test", edns=1232, do=True)
            check(answered(m, "ad-1.example.test") and m.ad,
                  "a client with DO: want the upstream's AD=1, got AD=%r" % (m and m.ad))
    finally:
        up.close()


def _fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


RESET_ROUNDS = 60


def _is_asan():
    import subprocess
    try:
        out = subprocess.run(["ldd", harness.nodedns_bin()], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in out


def _burst_replies(nd, names, limit):
    """Ask @names at once from one socket: {name: parsed reply} of those
    answered (any rcode) within @limit seconds."""
    import select
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out, t0 = {}, time.monotonic()
    try:
        for i, name in enumerate(names):
            sock.sendto(dnswire.build_query(name, qid=i + 1), nd.addr)
        while len(out) < len(names) and time.monotonic() - t0 < limit:
            r, _, _ = select.select([sock], [], [], limit - (time.monotonic() - t0))
            if not r:
                break
            m = dnswire.parse(sock.recvfrom(65535)[0])
            if 1 <= m.id <= len(names):
                out[names[m.id - 1]] = m
    finally:
        sock.close()
    return out


def tcp_reset():
    """An upstream that resets TCP connections: before any byte of the reply
    (reset-*) and halfway through it (resetmid-*). Such a query gets SERVFAIL
    well within the attempt (the reset is seen at once, the query resent
    once on a fresh connection, then given up); every other name asked in
    between, and in bursts next to the resets, is answered within 0.5 s;
    after RESET_ROUNDS rounds the process holds no more descriptors than
    before, its memory has not grown by more than 2 MiB (not checked with
    ASan) and it keeps at most its pool of connections to the server."""
    up = HostileUpstream()
    try:
        with Nodedns(upstream=up.addr_text, timeout_ms=2000) as nd:
            m, _ = ask(nd, "ok-warm.example.test")
            check(answered(m, "ok-warm.example.test"), "warm-up not answered")
            for i in range(3):  # the reset path once before the baseline
                ask(nd, "reset-warm%d.example.test" % i)
                ask(nd, "resetmid-warm%d.example.test" % i)
            fds0, rss0 = _fds(nd.pid), _rss_kib(nd.pid)
            worst_bad = worst_ok = 0.0
            lost = wrong = 0
            for i in range(RESET_ROUNDS):
                for kind in ("reset", "resetmid"):
                    m, dt = ask(nd, "%s-%d.example.test" % (kind, i))
                    worst_bad = max(worst_bad, dt)
                    if m is None or m.rcode != 2 or m.answer or dt > 1.0:
                        wrong += 1
                name = "ok-%d.example.test" % i
                m, dt = ask(nd, name)
                worst_ok = max(worst_ok, dt)
                if not answered(m, name) or dt > 0.5:
                    lost += 1
            # Bursts: the resets asked first, then fresh names, at once: the
            # resets hit connections that carry the other queries, and hit
            # the fresh connection they are resent on too. Every bystander
            # must still be answered (each is retried alone on the isolation
            # connection; only the resetting query fails), within 1.5 s.
            silent = collateral = again_lost = 0
            for r in range(5):
                oks = ["ok-b%d-%d.example.test" % (r, i) for i in range(6)]
                names = ["reset-b%d.example.test" % r, "resetmid-b%d.example.test" % r] + oks
                replies = _burst_replies(nd, names, 1.5)
                for name in oks:
                    m = replies.get(name)
                    if m is None:
                        silent += 1
                    elif not answered(m, name):
                        collateral += 1
                        m, dt = ask(nd, name)
                        if not answered(m, name) or dt > 0.5:
                            again_lost += 1
            time.sleep(0.3)
            fds1, rss1 = _fds(nd.pid), _rss_kib(nd.pid)
            conns = len(harness.tcp_conns_to(up.port, nd.pid))
            print("# reset: %d rounds of reset/resetmid/ok: %d reset queries not SERVFAIL "
                  "within 1 s (worst %.3fs), %d ok names lost (worst %.3fs); 5 bursts of 6 "
                  "names next to 2 resets: %d unanswered, %d SERVFAIL with the resets "
                  "(%d of them lost when asked again); fds %d -> %d, RSS %d -> %d KiB, "
                  "%d connections open, %d accepted in all"
                  % (RESET_ROUNDS, wrong, worst_bad, lost, worst_ok, silent, collateral,
                     again_lost, fds0, fds1, rss0, rss1, conns, up.accepted))
            check(wrong == 0, "%d reset queries not answered SERVFAIL within 1 s" % wrong)
            check(lost == 0, "%d names between the resets not answered within 0.5 s" % lost)
            check(silent == 0, "%d names asked next to resets not answered within 1.5 s"
                  % silent)
            check(collateral == 0, "%d names asked next to resets got SERVFAIL with them "
                  "(%d of them lost when asked again)" % (collateral, again_lost))
            check(fds1 <= fds0 + 2, "descriptors grew from %d to %d" % (fds0, fds1))
            # Not with ASan: its quarantine holds freed memory (not ours).
            check(rss1 - rss0 <= 2048 or _is_asan(), "RSS grew from %d to %d KiB"
                  % (rss0, rss1))
            check(conns <= 2, "%d connections open to the upstream (pool of 2)" % conns)
    finally:
        up.close()


def tcp_reset_on_connect():
    """Two upstreams, the first resets every connection as soon as it is
    accepted: every name answered from the second within 0.5 s, and the
    first is not hammered with connections (its backoff)."""
    bad, good = HostileUpstream(mode="resetconn"), HostileUpstream(mode="ok")
    try:
        with Nodedns(upstream=[bad.addr_text, good.addr_text], timeout_ms=2000) as nd:
            fds0 = None
            lost, worst = 0, 0.0
            t0 = time.monotonic()
            for i in range(40):
                name = "rc-%d.example.test" % i
                m, dt = ask(nd, name)
                worst = max(worst, dt)
                if not answered(m, name) or dt > 0.5:
                    lost += 1
                if i == 4:
                    fds0 = _fds(nd.pid)
                time.sleep(0.025)
            secs = time.monotonic() - t0
            fds1 = _fds(nd.pid)
            print("# reset on connect: 40 names in %.1fs: %d lost, worst %.3fs; %d connections "
                  "accepted by the resetting server; fds %d -> %d"
                  % (secs, lost, worst, bad.accepted, fds0, fds1))
            check(lost == 0, "%d of 40 names not answered within 0.5 s" % lost)
            # Backoff from 100 ms doubling: a handful of tries, not one per query.
            check(bad.accepted <= 12, "%d connections to the resetting server in %.1fs"
                  % (bad.accepted, secs))
            check(fds1 <= fds0 + 2, "descriptors grew from %d to %d" % (fds0, fds1))
    finally:
        bad.close()
        good.close()


def _unbound_or_skip(ports):
    import differential
    if not os.access(differential.UNBOUND, os.X_OK):
        raise Skip("%s not installed" % differential.UNBOUND)
    return differential._unbound(ports, probe=None)


def tcp_reset_vs_unbound():
    """nodedns and unbound forwarding to the same resetting upstreams give
    the same rcodes: SERVFAIL for a name whose every TCP exchange is reset
    (before or in the middle of the reply), the answer for other names; with
    a second, good upstream, every name answered by both. nodedns answers
    each within 1 s."""
    from lib import procs
    up, good = HostileUpstream(), HostileUpstream(mode="ok")
    rc = HostileUpstream(mode="resetconn")
    ub = d = None
    try:
        for label, ups, names in (
                ("one resetting upstream", [up], [("reset-u1", 2), ("ok-u1", 0),
                                                  ("resetmid-u1", 2), ("ok-u2", 0)]),
                ("resetting first, good second", [rc, good], [("ok-u3", 0), ("ok-u4", 0)])):
            ub, port, d = _unbound_or_skip([u.port for u in ups])
            with Nodedns(upstream=[u.addr_text for u in ups], timeout_ms=1000) as nd:
                for prefix, want in names:
                    name = prefix + ".example.test"
                    a, ta = ask(nd, name)
                    wire = dnswire.build_query(name)
                    t0 = time.monotonic()
                    data = dnswire.udp_exchange(("127.0.0.1", port), wire, 6.0)
                    tb = time.monotonic() - t0
                    b = dnswire.parse(data) if data else None
                    print("# %s / %s: nodedns %s in %.2fs, unbound %s in %.2fs"
                          % (label, name, a and a.rcode_name, ta, b and b.rcode_name, tb))
                    check(a is not None and a.rcode == want and ta <= 1.0,
                          "%s / %s: nodedns %r after %.2fs, want rcode %d within 1 s"
                          % (label, name, a and a.rcode_name, ta, want))
                    check(b is not None and b.rcode == a.rcode,
                          "%s / %s: nodedns %s, unbound %s" % (label, name, a.rcode_name,
                                                             b and b.rcode_name))
                    if want == 0:
                        check(answered(a, name) and answered(b, name),
                              "%s / %s: the A record missing" % (label, name))
            procs.stop(ub)
            shutil.rmtree(d, ignore_errors=True)
            ub = None
    finally:
        if ub is not None:
            procs.stop(ub)
            shutil.rmtree(d, ignore_errors=True)
        for u in (up, good, rc):
            u.close()


TESTS = [tcp_lying_length, tcp_drip, edns_fallback_formerr_tcp, edns_fallback_notimp_udp,
         badvers_is_failure, tc_over_tcp, scrub_unrelated, scrub_ad_bit, tcp_reset,
         tcp_reset_on_connect, tcp_reset_vs_unbound]


def main(argv):
    return harness.run_suite(argv, TESTS, "hostile", "hostile upstream", TEST_TIMEOUT_S,
                             "hostile.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
