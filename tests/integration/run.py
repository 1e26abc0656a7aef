#!/usr/bin/env python3
"""nodedns integration tests: the real binary against real NSD upstreams.

Run everything (from the repository root):
    make integration            # NODEDNS_BIN=build/nodedns
    make asan                   # the same tests against build-asan/nodedns
Run one test, or every test whose name contains a word (argv = substrings):
    NODEDNS_BIN=build/nodedns python3 tests/integration/run.py cache_hit
    NODEDNS_BIN=build/nodedns python3 tests/integration/run.py negative stub
    python3 tests/integration/run.py --list      # the test names
Environment: NODEDNS_KEEP_LOGS=1 keeps each nodedns stderr file (path printed on
failure); NODEDNS_GARBAGE_SEED=N replays garbage_input with the seed it printed;
NODEDNS_KUBE_SNAPSHOT=FILE replaces deploy/examples/demo-cluster.json (the
cluster tests skip when neither exists).

Each test starts its own nodedns on fresh loopback ports (--threads 1, debug
log to a file) in front of NSD serving zones/example.test.zone (and a second
NSD with zones/stub.test.zone for --stub). A test ends by stopping nodedns
with SIGTERM, which must exit 0 within 3 s without a sanitizer report.
Output: "ok - NAME", "FAIL - NAME: reason", "skip - NAME: reason" and one
closing line "integration: N passed, N failed[, N skipped]"; exit 1 on failure.
Needs: nsd, dig, kdig, drill, ss, python3 (stdlib only). Files: harness.py
(NSD, nodedns, relay/blackhole upstreams, dig/kdig/drill, the runner),
zones/ (NSD zone files); tests/lib (ports, processes, the DNS codec and raw
UDP/TCP clients, the /metrics parser).
"""

import json
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))

from lib import dnswire, net  # noqa: E402
import harness  # noqa: E402
from lib.check import CheckFailed, Skip, check  # noqa: E402
from lib.dnswire import build_query, parse, check_reply  # noqa: E402
from harness import Nodedns, Relay, Blackhole, LOCAL  # noqa: E402

SNAPSHOT = os.environ.get("NODEDNS_KUBE_SNAPSHOT") or \
    os.path.join(REPO, "deploy", "examples", "demo-cluster.json")
TEST_TIMEOUT_S = 40

METRIC_NAMES = [
    "nodedns_requests_total",
    "nodedns_responses_total",
    "nodedns_cache_hits_total",
    "nodedns_cache_misses_total",
    "nodedns_cache_entries",
    "nodedns_cache_bytes",
    "nodedns_upstream_requests_total",
    "nodedns_upstream_failures_total",
]
HISTOGRAM_NAMES = ["nodedns_upstream_latency_seconds"]

TESTS = []
test = harness.collector(TESTS)


# ------------------------------------------------------------------ shared upstreams

_nsd = {}


def nsd():
    """The example.test NSD, (re)started when a previous test stopped it."""
    return harness.shared_nsd(_nsd, "main", [("example.test", "example.test.zone")], "main")


def nsd_stub():
    return harness.shared_nsd(_nsd, "stub", [("stub.test", "stub.test.zone"),
                                             ("cluster.local", "cluster.local.zone")], "stub")


def stop_nsd():
    _nsd["main"].stop()


def cleanup_nsd():
    harness.cleanup_nsds(_nsd)


# ------------------------------------------------------------------ small helpers

def expect_rcode(m, rcode, what):
    check(m.rcode_name == rcode, "%s: want %s, got %s" % (what, rcode, m.summary()))


def expect_answer(m, rtype, want, what):
    got = m.answers(rtype)
    want = sorted(want)
    check(got == want, "%s: want %s %s, got %s (%s)" % (what, rtype, want, got, m.summary()))


def soa_in_authority(m, zone, what):
    soas = [r for r in m.authority if r.type == 6]
    check(len(soas) == 1, "%s: want one SOA in authority, got %s" % (what, m.authority))
    check(soas[0].name.lower().rstrip(".") == zone,
          "%s: SOA owner %r, want %r" % (what, soas[0].name, zone))
    return soas[0]


def no_reply(sock, timeout, what):
    data = dnswire.udp_recv_any(sock, timeout)
    if data is not None:
        raise CheckFailed("%s: expected no reply, got %d bytes %s"
                          % (what, len(data), _safe_summary(data)))


def _safe_summary(data):
    try:
        return parse(data).summary()
    except Exception:
        return repr(data[:32])


def upstream_requests(nd):
    return nd.metrics().sum("nodedns_upstream_requests_total")


def wild(name):
    return "%s.wild.example.test" % name


def snapshot_or_skip():
    if not os.path.exists(SNAPSHOT):
        raise Skip("%s missing" % os.path.relpath(SNAPSHOT, REPO))
    return SNAPSHOT


def snapshot_endpoints(name, ns):
    """[(address, hostname or None)] of the ready endpoints of service ns/name in
    the snapshot (conditions.ready absent counts as ready)."""
    with open(SNAPSHOT) as f:
        doc = json.load(f)
    out = []
    for item in doc.get("items", []):
        md = item.get("metadata", {})
        if (item.get("kind") != "EndpointSlice" or md.get("namespace") != ns or
                md.get("labels", {}).get("kubernetes.io/service-name") != name):
            continue
        for ep in item.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True) is False:
                continue
            for a in ep.get("addresses", []):
                out.append((a, ep.get("hostname")))
    return out


def snapshot_service(name, ns):
    """ClusterIP of service ns/name in the snapshot, or None."""
    with open(SNAPSHOT) as f:
        doc = json.load(f)
    for item in doc.get("items", []):
        if item.get("kind") != "Service":
            continue
        md = item.get("metadata", {})
        if md.get("name") == name and md.get("namespace") == ns:
            return item.get("spec", {}).get("clusterIP")
    return None


# ================================================================== tests

@test
def forward_udp_tcp():
    up = nsd()
    direct_a = dnswire.query(up.addr, "www.example.test", "A")
    direct_aaaa = dnswire.query(up.addr, "www.example.test", "AAAA")
    with Nodedns(upstream=up.addr_text) as nd:
        m = nd.q("www.example.test", "A")
        expect_rcode(m, "NOERROR", "A over UDP")
        check(m.answers() == direct_a.answers(),
              "A over UDP: %s, NSD says %s" % (m.answers(), direct_a.answers()))
        check(all(0 < r.ttl <= 300 for r in m.answer), "A over UDP: bad TTLs %s" % m.answer)
        check(not m.tc, "A over UDP: TC=1 on a small answer")
        m = nd.q("www.example.test", "AAAA", tcp=True)
        expect_rcode(m, "NOERROR", "AAAA over TCP")
        check(m.answers() == direct_aaaa.answers(),
              "AAAA over TCP: %s, NSD says %s" % (m.answers(), direct_aaaa.answers()))
        # real clients
        d = harness.dig(nd.addr, "alias.example.test", "A", "+tcp")
        check(d.status == "NOERROR" and d.data("A") == ["192.0.2.10"]
              and d.data("CNAME") == ["www.example.test."],
              "dig +tcp alias.example.test: %r" % d)
        k = harness.kdig(nd.addr, "www.example.test", "AAAA", "+tcp")
        check(k.status == "NOERROR" and k.data("AAAA") == ["2001:db8::10"],
              "kdig +tcp www AAAA: %r\n%s" % (k, k.out))
        dr = harness.drill(nd.addr, "www.example.test", "A")
        check(dr.status == "NOERROR" and dr.data("A") == ["192.0.2.10"],
              "drill www A: %r\n%s" % (dr, dr.out))
        check("ra" in d.flags and "qr" in d.flags, "dig: flags %s lack qr/ra" % d.flags)
        # upstream traffic goes over (persistent) TCP
        conns = harness.tcp_conns_to(up.port, nd.pid)
        check(len(conns) >= 1,
              "no established TCP connection from nodedns (pid %d) to the upstream "
              "port %d after forwarding: upstream is not pooled TCP" % (nd.pid, up.port))


@test
def upstream_is_tcp_only():
    up = nsd()
    relay = Relay(up.addr)
    try:
        with Nodedns(upstream=relay.addr_text) as nd:
            names = [wild("tcponly%d" % i) for i in range(3)]
            for n in names:
                expect_answer(nd.q(n, "A"), "A", ["192.0.2.99"], n)
            expect_answer(nd.q("big.example.test", "TXT", tcp=True), "TXT",
                          dnswire.query(up.addr, "big.example.test", "TXT", tcp=True).answers(),
                          "big TXT over TCP")
            check(relay.total_udp() == 0,
                  "upstream got %d UDP queries with the default --upstream-proto tcp: %s"
                  % (relay.total_udp(), relay.udp_queries))
            for n in names:
                check(relay.total_tcp(n) == 1, "upstream got %d TCP queries for %s, want 1"
                      % (relay.total_tcp(n), n))
            check(relay.tcp_conns <= 2, "4 sequential upstream queries used %d TCP "
                  "connections: connections are not reused" % relay.tcp_conns)
    finally:
        relay.close()


@test
def upstream_proto_udp_tc_retry():
    up = nsd()
    relay = Relay(up.addr, udp_answer=True)
    try:
        with Nodedns(upstream=relay.addr_text, extra=["--upstream-proto", "udp"]) as nd:
            expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"], "www A")
            check(relay.udp_queries.get("www.example.test", 0) == 1,
                  "--upstream-proto udp: upstream saw %s UDP / %s TCP queries for www, "
                  "want 1 UDP" % (relay.udp_queries.get("www.example.test"),
                                  relay.tcp_queries.get("www.example.test")))
            m = nd.q("big.example.test", "TXT", tcp=True)
            check(len(m.answer) == 40 and not m.tc,
                  "big TXT via UDP upstream + TCP retry: %s" % m.summary())
            check(relay.udp_queries.get("big.example.test", 0) >= 1
                  and relay.tcp_queries.get("big.example.test", 0) == 1,
                  "big TXT: want a UDP attempt (TC=1) then one TCP retry, upstream saw "
                  "udp=%s tcp=%s" % (relay.udp_queries.get("big.example.test"),
                                     relay.tcp_queries.get("big.example.test")))
    finally:
        relay.close()


@test
def cache_hit():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        m0 = nd.metrics()
        m1 = nd.q("www.example.test", "A")
        expect_answer(m1, "A", ["192.0.2.10"], "first query")
        ma = nd.metrics()
        check(ma.sum("nodedns_cache_misses_total") >= m0.sum("nodedns_cache_misses_total") + 1,
              "nodedns_cache_misses_total did not increase on a first query")
        check(ma.sum("nodedns_cache_entries") >= 1, "nodedns_cache_entries is 0 after a query")
        check(ma.sum("nodedns_cache_bytes") > 0, "nodedns_cache_bytes is 0 after a query")
        stop_nsd()
        m2 = nd.q("www.example.test", "A")
        expect_answer(m2, "A", ["192.0.2.10"], "cached query with NSD stopped")
        check(m1.answer[0].ttl - 2 <= m2.answer[0].ttl <= m1.answer[0].ttl,
              "cached TTL %d after first TTL %d: not a fresh cache hit (a stale answer "
              "has TTL 30)" % (m2.answer[0].ttl, m1.answer[0].ttl))
        mb = nd.metrics()
        dh = mb.sum("nodedns_cache_hits_total") - ma.sum("nodedns_cache_hits_total")
        check(dh == 1, "nodedns_cache_hits_total rose by %g on one cache hit, want 1" % dh)
        dr = mb.sum("nodedns_requests_total") - ma.sum("nodedns_requests_total")
        check(dr == 1, "nodedns_requests_total rose by %g on one query, want 1" % dr)
        # over TCP, and with another case (the cache key is case-insensitive)
        m3 = nd.q("WWW.EXAMPLE.TEST", "A", tcp=True)
        expect_answer(m3, "A", ["192.0.2.10"], "cached query over TCP in upper case")


@test
def negative_cache():
    up = nsd()
    with Nodedns(upstream=up.addr_text, extra=["--neg-ttl", "5"]) as nd:
        nx = nd.q("nope.example.test", "A")
        expect_rcode(nx, "NXDOMAIN", "nope.example.test")
        check(not nx.answer, "NXDOMAIN with answers: %s" % nx.answer)
        soa = soa_in_authority(nx, "example.test", "NXDOMAIN")
        check(1 <= soa.ttl <= 5, "NXDOMAIN SOA TTL %d, want 1..5 (--neg-ttl 5)" % soa.ttl)
        nd_ = nd.q("onlya.example.test", "AAAA")
        expect_rcode(nd_, "NOERROR", "NODATA onlya AAAA")
        check(not nd_.answer, "NODATA with answers: %s" % nd_.answer)
        soa = soa_in_authority(nd_, "example.test", "NODATA")
        check(1 <= soa.ttl <= 5, "NODATA SOA TTL %d, want 1..5 (--neg-ttl 5)" % soa.ttl)
        h0 = nd.metrics().sum("nodedns_cache_hits_total")
        stop_nsd()
        nx2 = nd.q("nope.example.test", "A")
        expect_rcode(nx2, "NXDOMAIN", "cached NXDOMAIN (NSD stopped)")
        soa_in_authority(nx2, "example.test", "cached NXDOMAIN")
        nd2 = nd.q("onlya.example.test", "AAAA")
        expect_rcode(nd2, "NOERROR", "cached NODATA (NSD stopped)")
        check(not nd2.answer, "cached NODATA with answers: %s" % nd2.answer)
        soa_in_authority(nd2, "example.test", "cached NODATA")
        mets = nd.metrics()
        dh = mets.sum("nodedns_cache_hits_total") - h0
        check(dh == 2, "nodedns_cache_hits_total rose by %g on two negative hits, want 2" % dh)
        check(mets.sum("nodedns_responses_total", rcode="NXDOMAIN") >= 2,
              'nodedns_responses_total{rcode="NXDOMAIN"} < 2 after two NXDOMAIN answers')


@test
def negative_ttl_from_soa():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        nx = nd.q("nope2.example.test", "A")
        expect_rcode(nx, "NXDOMAIN", "nope2")
        soa = soa_in_authority(nx, "example.test", "NXDOMAIN")
        # RFC 2308: min(SOA TTL 3600, SOA MINIMUM 60); default --neg-ttl 300
        check(58 <= soa.ttl <= 60, "negative TTL %d, want 60 (SOA minimum)" % soa.ttl)


@test
def ttl_countdown():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        t1 = nd.q("ttl300.example.test", "A").answer[0].ttl
        check(299 <= t1 <= 300, "first TTL %d, want 300" % t1)
        time.sleep(2.2)
        m = nd.q("ttl300.example.test", "A")
        expect_answer(m, "A", ["192.0.2.30"], "second query")
        t2 = m.answer[0].ttl
        check(t1 - t2 in (2, 3), "TTL went %d -> %d after 2.2 s, want a drop of 2 or 3"
              % (t1, t2))
        t3 = nd.q("ttl300.example.test", "A", tcp=True).answer[0].ttl
        check(t3 <= t2 and t2 - t3 <= 1, "TCP cache hit TTL %d after UDP TTL %d" % (t3, t2))


@test
def ttl_expiry_refetch():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        m = nd.q("short.example.test", "A")
        check(m.answer and m.answer[0].ttl <= 2, "short TTL: %s" % m.answer)
        u0 = upstream_requests(nd)
        time.sleep(2.6)
        m = nd.q("short.example.test", "A")
        expect_answer(m, "A", ["192.0.2.2"], "after expiry")
        check(1 <= m.answer[0].ttl <= 2, "refetched TTL %d, want 2" % m.answer[0].ttl)
        du = upstream_requests(nd) - u0
        check(du == 1, "an expired entry caused %g upstream requests, want 1" % du)


@test
def ttl_clamps():
    up = nsd()
    with Nodedns(upstream=up.addr_text, extra=["--min-ttl", "10", "--max-ttl", "100"]) as nd:
        t = nd.q("short.example.test", "A").answer[0].ttl
        check(9 <= t <= 10, "TTL 2 with --min-ttl 10 answered with TTL %d, want 10" % t)
        t = nd.q("ttl300.example.test", "A").answer[0].ttl
        check(99 <= t <= 100, "TTL 300 with --max-ttl 100 answered with TTL %d, want 100" % t)


@test
def prefetch():
    up = nsd()
    relay = Relay(up.addr)
    name = "ttl300.example.test"
    try:
        with Nodedns(upstream=relay.addr_text, extra=["--max-ttl", "10"]) as nd:
            t0 = time.monotonic()
            nd.q(name, "A")
            check(relay.total_tcp(name) == 1, "first query: %d upstream queries"
                  % relay.total_tcp(name))
            time.sleep(max(0, t0 + 9.3 - time.monotonic()))
            expect_answer(nd.q(name, "A"), "A", ["192.0.2.30"], "query in the last 10%")
            time.sleep(0.4)
            check(relay.total_tcp(name) == 2,
                  "a hit in the last 10%% of the TTL made %d upstream queries in all, "
                  "want 2 (prefetch)" % relay.total_tcp(name))
            time.sleep(max(0, t0 + 10.6 - time.monotonic()))
            m = nd.q(name, "A")
            check(m.answer and m.answer[0].ttl >= 8,
                  "after the original expiry the prefetched entry should answer with "
                  "TTL >= 8, got %s" % m.answer)
            check(relay.total_tcp(name) == 2, "prefetched entry not used: %d upstream "
                  "queries" % relay.total_tcp(name))
    finally:
        relay.close()


@test
def truncation_and_edns():
    up = nsd()
    big_all = dnswire.query(up.addr, "big.example.test", "TXT", tcp=True).answers()
    with Nodedns(upstream=up.addr_text) as nd:
        for name in ("big.example.test", "medium.example.test"):
            m = nd.q(name, "TXT")
            check(m.tc, "%s TXT over UDP without EDNS: TC=0 (%s)" % (name, m.summary()))
            check(m.size <= 512, "%s without EDNS: %d-byte UDP reply" % (name, m.size))
            check(m.opt is None, "%s: OPT in the reply to a query without EDNS" % name)
        m = nd.q("manya.example.test", "A")
        check(m.tc and m.size <= 512, "manya A (40 records) over UDP without EDNS: %s"
              % m.summary())
        m = nd.q("medium.example.test", "TXT", edns=1232)
        check(not m.tc and len(m.answer) == 8,
              "medium TXT with EDNS 1232 (fits): %s" % m.summary())
        check(m.opt is not None, "no OPT in the reply to an EDNS query")
        check(m.opt["udp_size"] == 1232, "OPT advertises %d, want 1232" % m.opt["udp_size"])
        check(m.opt["version"] == 0, "OPT version %d" % m.opt["version"])
        m = nd.q("big.example.test", "TXT", edns=1232)
        check(m.tc, "big TXT (4.4 KB) with EDNS 1232: TC=0 (%s)" % m.summary())
        check(m.size <= 1232, "big TXT with EDNS 1232: %d-byte UDP reply" % m.size)
        check(m.opt is not None, "truncated EDNS reply lacks OPT")
        m = nd.q("big.example.test", "TXT", edns=4096)
        check(m.size <= 4096, "big TXT with EDNS 4096: %d-byte reply" % m.size)
        m = nd.q("www.example.test", "A")
        check(m.opt is None and not m.tc, "www A without EDNS: %s opt=%s" % (m.summary(), m.opt))
        m = nd.q("big.example.test", "TXT", tcp=True)
        check(not m.tc and m.answers() == big_all,
              "big TXT over TCP: %s (want the 40 records NSD has)" % m.summary())
        d = harness.dig(nd.addr, "big.example.test", "TXT", "+noedns", "+ignore")
        check("tc" in d.flags, "dig +noedns +ignore big TXT: flags %s, want tc" % d.flags)
        d = harness.dig(nd.addr, "big.example.test", "TXT", "+tcp")
        check(d.status == "NOERROR" and len(d.data("TXT")) == 40,
              "dig +tcp big TXT: %s, %d TXT" % (d.status, len(d.data("TXT"))))


def _read_replies(sock, n, timeout):
    deadline = time.monotonic() + timeout
    out = []
    while len(out) < n:
        out.append(parse(dnswire.tcp_read_msg(sock, deadline)))
    return out


@test
def tcp_pipelining():
    up = nsd()
    slow = wild("slow")
    fresh = [wild("fresh%02d" % i) for i in range(20)]
    delays = {slow: 0.4}
    delays.update({n: 0.3 for n in fresh})
    delays[wild("gone")] = 0.3
    relay = Relay(up.addr, delays=delays)
    try:
        with Nodedns(upstream=relay.addr_text, timeout_ms=2000) as nd:
            cached = [wild("p%02d" % i) for i in range(19)]
            for n in cached:
                nd.q(n, "A")
            # 1: the slow (uncached) query first, 19 cached ones behind it
            names = [slow] + cached
            qs = [build_query(n, "A", qid=1000 + i) for i, n in enumerate(names)]
            s = dnswire.tcp_connect(nd.addr)
            try:
                s.sendall(b"".join(struct.pack("!H", len(q)) + q for q in qs))
                replies = _read_replies(s, 20, 3.0)
                byid = {}
                for r in replies:
                    check(r.id not in byid, "two replies with ID %d" % r.id)
                    byid[r.id] = r
                for i, q in enumerate(qs):
                    r = byid.get(1000 + i)
                    check(r is not None, "no reply for pipelined query %d (%s); got IDs %s"
                          % (i, names[i], sorted(byid)))
                    check_reply(q, r)
                    expect_answer(r, "A", ["192.0.2.99"], "pipelined %s" % names[i])
                order = [r.id for r in replies]
                check(order[0] != 1000,
                      "the slow uncached query (sent first) was answered first: pipelined "
                      "queries are served in order, not concurrently (order %s)" % order)
                # the connection stays usable
                q = build_query("www.example.test", "A", qid=4242)
                s.sendall(struct.pack("!H", len(q)) + q)
                r = _read_replies(s, 1, 2.0)[0]
                check_reply(q, r)
            finally:
                s.close()
            # 2: 20 uncached queries at once on one connection
            qs = [build_query(n, "A", qid=2000 + i) for i, n in enumerate(fresh)]
            s = dnswire.tcp_connect(nd.addr)
            try:
                s.sendall(b"".join(struct.pack("!H", len(q)) + q for q in qs))
                t0 = time.monotonic()
                replies = {r.id: r for r in _read_replies(s, 20, 3.0)}
                took = time.monotonic() - t0
            finally:
                s.close()
            for i, q in enumerate(qs):
                check(2000 + i in replies, "no reply for uncached pipelined query %s" % fresh[i])
                check_reply(q, replies[2000 + i])
                expect_answer(replies[2000 + i], "A", ["192.0.2.99"], fresh[i])
            check(took < 2.0, "20 pipelined queries with a 0.3 s upstream took %.2f s: "
                  "not processed concurrently" % took)
            check(relay.tcp_conns < 20, "20 concurrent upstream queries opened %d upstream "
                  "connections: no upstream pipelining" % relay.tcp_conns)
            # 3: a client that goes away while its queries are in flight
            s = dnswire.tcp_connect(nd.addr)
            q = build_query(wild("gone"), "A")
            s.sendall(struct.pack("!H", len(q)) + q)
            s.close()
            time.sleep(0.5)
            nd.assert_alive("after a TCP client closed with a query in flight")
            expect_answer(nd.q("www.example.test", "A", tcp=True), "A", ["192.0.2.10"],
                          "after a client went away")
    finally:
        relay.close()


@test
def a_aaaa_parallel_one_socket():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        for rnd in ("uncached", "cached"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                qa = build_query(wild("glibc"), "A", qid=0x1111)
                q6 = build_query(wild("glibc"), "AAAA", qid=0x2222)
                sock.sendto(qa, nd.addr)
                sock.sendto(q6, nd.addr)
                got = {}
                deadline = time.monotonic() + 2.0
                while len(got) < 2 and time.monotonic() < deadline:
                    data = dnswire.udp_recv_any(sock, deadline - time.monotonic())
                    if data is None:
                        break
                    r = parse(data)
                    got[r.id] = r
                check(set(got) == {0x1111, 0x2222},
                      "%s: A+AAAA from one socket: got replies for IDs %s"
                      % (rnd, [hex(i) for i in got]))
                check_reply(qa, got[0x1111])
                check_reply(q6, got[0x2222])
                expect_answer(got[0x1111], "A", ["192.0.2.99"], rnd + " A")
                expect_answer(got[0x2222], "AAAA", ["2001:db8::99"], rnd + " AAAA")
            finally:
                sock.close()


@test
def upstream_down_servfail():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        nd.q("www.example.test", "A")
        stop_nsd()
        t0 = time.monotonic()
        m = nd.q(wild("down"), "A", timeout=3.0)
        took = time.monotonic() - t0
        expect_rcode(m, "SERVFAIL", "uncached name with the upstream down")
        check(m.ra, "SERVFAIL without RA")
        check(took < 1.5, "SERVFAIL took %.2f s with --upstream-timeout 500" % took)
        nd.assert_alive()


@test
def upstream_timeout_blackhole():
    bh = Blackhole()
    try:
        with Nodedns(upstream=bh.addr_text) as nd:
            f0 = nd.metrics().sum("nodedns_upstream_failures_total")
            t0 = time.monotonic()
            m = nd.q(wild("blackholed"), "A", timeout=3.0)
            took = time.monotonic() - t0
            expect_rcode(m, "SERVFAIL", "upstream that never answers")
            check(0.45 <= took < 1.5, "SERVFAIL after %.2f s with --upstream-timeout 500, "
                  "want about 0.5 s" % took)
            f1 = nd.metrics().sum("nodedns_upstream_failures_total")
            check(f1 > f0, "nodedns_upstream_failures_total did not rise on a timeout")
    finally:
        bh.close()


@test
def upstream_failover():
    up = nsd()
    bh = Blackhole()
    try:
        with Nodedns(upstream=[bh.addr_text, up.addr_text]) as nd:
            t0 = time.monotonic()
            m = nd.q(wild("failover"), "A", timeout=3.0)
            took = time.monotonic() - t0
            expect_answer(m, "A", ["192.0.2.99"], "first upstream dead, second alive")
            check(took < 1.5, "answer via the second upstream took %.2f s" % took)
    finally:
        bh.close()


@test
def serve_stale():
    up = nsd()
    with Nodedns(upstream=up.addr_text, extra=["--max-ttl", "1"]) as nd:
        m = nd.q(wild("stale"), "A")
        check(m.answer and m.answer[0].ttl <= 1, "--max-ttl 1: TTL %s" % m.answer)
        time.sleep(2.0)
        stop_nsd()
        m = nd.q(wild("stale"), "A", timeout=3.0)
        expect_rcode(m, "NOERROR", "expired entry with the upstream down (serve-stale)")
        expect_answer(m, "A", ["192.0.2.99"], "stale answer")
        check(all(r.ttl == 30 for r in m.answer), "stale answer TTLs %s, want 30"
              % [r.ttl for r in m.answer])
    up = nsd()
    with Nodedns(upstream=up.addr_text, extra=["--max-ttl", "1", "--serve-stale", "0"]) as nd:
        nd.q(wild("stale"), "A")
        time.sleep(2.0)
        stop_nsd()
        m = nd.q(wild("stale"), "A", timeout=3.0)
        expect_rcode(m, "SERVFAIL", "expired entry, upstream down, --serve-stale 0")


@test
def coalescing():
    up = nsd()
    name = wild("coalesce")
    relay = Relay(up.addr, delays={name: 0.3})
    try:
        with Nodedns(upstream=relay.addr_text, timeout_ms=2000) as nd:
            u0 = upstream_requests(nd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            try:
                qs = {}
                for i in range(100):
                    q = build_query(name, "A", qid=30000 + i)
                    qs[30000 + i] = q
                    sock.sendto(q, nd.addr)
                got = {}
                deadline = time.monotonic() + 3.0
                while len(got) < 100 and time.monotonic() < deadline:
                    data = dnswire.udp_recv_any(sock, deadline - time.monotonic())
                    if data is None:
                        break
                    r = parse(data)
                    check(r.id in qs, "reply with an ID we never sent: %d" % r.id)
                    check(r.id not in got, "two replies for ID %d" % r.id)
                    got[r.id] = r
            finally:
                sock.close()
            missing = sorted(set(qs) - set(got))
            check(not missing, "%d of 100 identical queries unanswered (e.g. IDs %s)"
                  % (len(missing), missing[:5]))
            for i, r in got.items():
                check_reply(qs[i], r)
                expect_answer(r, "A", ["192.0.2.99"], "coalesced reply %d" % i)
            du = upstream_requests(nd) - u0
            check(du == 1, "100 identical queries made nodedns_upstream_requests_total "
                  "rise by %g, want 1" % du)
            check(relay.total_tcp(name) == 1, "upstream received %d queries for %s, want 1"
                  % (relay.total_tcp(name), name))
    finally:
        relay.close()


@test
def garbage_input():
    up = nsd()
    seed = int(os.environ.get("NODEDNS_GARBAGE_SEED", "0")) or random.randrange(1, 1 << 30)
    rnd = random.Random(seed)
    print("# garbage_input: NODEDNS_GARBAGE_SEED=%d" % seed)
    with Nodedns(upstream=up.addr_text) as nd:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for i in range(1000):
                sock.sendto(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 601))),
                            nd.addr)
                if i % 50 == 49:
                    while dnswire.udp_recv_any(sock, 0) is not None:
                        pass
                    time.sleep(0.005)
        finally:
            sock.close()
        nd.assert_alive("after 1000 random datagrams (NODEDNS_GARBAGE_SEED=%d)" % seed)
        # broken TCP frames
        frames = [
            struct.pack("!H", 100) + b"\x00" * 10,
            struct.pack("!H", 0),
            struct.pack("!H", 65535) + bytes(rnd.getrandbits(8) for _ in range(300)),
            b"\x00",
            struct.pack("!H", 5) + b"\x12\x34\x01\x00\x00",
            struct.pack("!H", 30) + bytes(rnd.getrandbits(8) for _ in range(30)),
        ]
        for f in frames:
            s = dnswire.tcp_connect(nd.addr)
            try:
                s.sendall(f)
            finally:
                s.close()
        # a zero-length frame followed by a good query on the same connection
        s = dnswire.tcp_connect(nd.addr)
        try:
            q = build_query("www.example.test", "A", qid=777)
            s.sendall(struct.pack("!H", 0) + struct.pack("!H", len(q)) + q)
            s.settimeout(2.0)
            try:
                dnswire.tcp_read_msg(s, time.monotonic() + 2.0)
            except (ConnectionError, TimeoutError, OSError):
                pass  # closing the connection is a fine reaction
        finally:
            s.close()
        time.sleep(0.2)
        nd.assert_alive("after broken TCP frames")
        expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"],
                      "UDP query after garbage (seed %d)" % seed)
        expect_answer(nd.q("www.example.test", "A", tcp=True), "A", ["192.0.2.10"],
                      "TCP query after garbage")

        def raw(wire, what, timeout=2.0):
            data = dnswire.udp_exchange(nd.addr, wire, timeout)
            check(data is not None, "%s: no reply" % what)
            r = parse(data)
            check(r.qr and r.id == dnswire.query_id(wire),
                  "%s: reply not matching the query: %s" % (what, r.summary()))
            return r

        hdr = dnswire.make_header(0xBEEF, qd=1)
        r = raw(hdr + b"\x07exam", "truncated question name")
        expect_rcode(r, "FORMERR", "truncated question name")
        r = raw(dnswire.make_header(0xBEF0, qd=0), "header only, QDCOUNT 0")
        expect_rcode(r, "FORMERR", "QDCOUNT 0")
        q = build_query("www.example.test", "A")[12:]
        r = raw(dnswire.make_header(0xBEF1, qd=2) + q + q, "QDCOUNT 2")
        expect_rcode(r, "FORMERR", "QDCOUNT 2")
        r = raw(dnswire.make_header(0xBEF2, qd=1) + b"\x03www\x07example\x04test\x00\x00",
                "question without type/class")
        expect_rcode(r, "FORMERR", "question without type/class")
        r = raw(dnswire.make_header(0xBEF3, qd=1) + b"\x03www\xc0\x0c\x00\x01\x00\x01",
                "compression pointer loop in the question")
        check(r.rcode_name in ("FORMERR",), "compression loop: %s" % r.summary())
        for opcode in (dnswire.OPCODE_STATUS, 5):
            w = build_query("www.example.test", "A", opcode=opcode)
            r = raw(w, "opcode %d" % opcode)
            expect_rcode(r, "NOTIMP", "opcode %d" % opcode)
        # Issue 10.5: the opcode before QDCOUNT (DSO has none); an error
        # reply to a query with an OPT carries one (RFC 6891 6.1.1).
        r = raw(dnswire.make_header(0xBEF4, opcode=6, qd=0, ar=1) + dnswire.opt_rr(),
                "DSO (opcode 6), QDCOUNT 0, with OPT")
        expect_rcode(r, "NOTIMP", "opcode 6 with QDCOUNT 0")
        check(r.opt is not None, "NOTIMP to a query with OPT carries none: %s" % r.summary())
        r = raw(dnswire.make_header(0xBEF5, qd=0, ar=1) + dnswire.opt_rr(do=True),
                "QDCOUNT 0 with OPT")
        expect_rcode(r, "FORMERR", "QDCOUNT 0 with OPT")
        check(r.opt is not None and r.opt["do"], "FORMERR to a query with OPT (DO=1): %s"
              % r.summary())
        w = build_query("version.bind", "TXT", qclass="CH")
        r = raw(w, "CH version.bind")
        check_reply(w, r)
        check((r.rcode_name == "NOERROR" and r.answer) or r.rcode_name == "REFUSED",
              "CH TXT version.bind: want an answer or REFUSED, got %s" % r.summary())
        w = build_query("www.example.test", "A", qclass="HS")
        r = raw(w, "class HESIOD")
        check_reply(w, r)
        expect_rcode(r, "REFUSED", "class HESIOD (4)")
        # no reply at all: QR=1, shorter than a header, empty
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.sendto(build_query("www.example.test", "A", qr=True), nd.addr)
            sock.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00", nd.addr)
            sock.sendto(b"", nd.addr)
            no_reply(sock, 0.7, "QR=1 / <12-byte / empty datagrams")
        finally:
            sock.close()
        nd.assert_alive()
        expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"], "final query")


@test
def ra_and_question_case():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        m = nd.q("WwW.ExAmPlE.TeSt", "A")  # check_reply: question echoed byte for byte
        expect_answer(m, "A", ["192.0.2.10"], "mixed-case query")
        check(m.question[0][0] == "WwW.ExAmPlE.TeSt", "question %r" % (m.question,))
        check(m.ra and m.rd and m.qr, "flags of a forwarded answer: %s" % m.flags_text())
        m = nd.q("www.EXAMPLE.test", "A")  # cache hit, other case
        check(m.question[0][0] == "www.EXAMPLE.test", "cache hit echoed %r" % (m.question,))
        check(m.ra, "no RA on a cache hit")
        m = nd.q("www.example.test", "A", rd=False)
        check(not m.rd, "RD=0 query answered with RD=1")
        check(m.ra, "no RA on an RD=0 answer")
        m = nd.q("NoPe.Example.Test", "A")
        expect_rcode(m, "NXDOMAIN", "mixed-case NXDOMAIN")
        check(m.ra, "no RA on NXDOMAIN")
        m = nd.q("www.example.test", "A", opcode=dnswire.OPCODE_STATUS)
        check(m.ra, "no RA on NOTIMP")
        data = dnswire.udp_exchange(nd.addr, dnswire.make_header(0xABC, qd=1) + b"\x03ww", 2.0)
        check(data is not None, "no reply to a truncated question (want FORMERR)")
        r = parse(data)
        expect_rcode(r, "FORMERR", "truncated question")
        check(r.ra, "no RA on FORMERR")


@test
def stub_domains():
    up = nsd()
    st = nsd_stub()
    pre = dnswire.query(up.addr, "www.stub.test", "A")
    check(pre.rcode_name == "REFUSED", "precondition: main NSD answers stub.test: %s"
          % pre.summary())
    with Nodedns(upstream=up.addr_text, extra=["--stub", "stub.test=%s" % st.addr_text]) as nd:
        expect_answer(nd.q("www.stub.test", "A"), "A", ["198.51.100.7"], "www.stub.test via --stub")
        expect_answer(nd.q("A.B.SUB.STUB.TEST", "A"), "A", ["198.51.100.8"],
                      "name below the stub domain, upper case")
        expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"],
                      "non-stub name still to --upstream")
        check(harness.tcp_conns_to(st.port, nd.pid),
              "no TCP connection from nodedns to the stub server")
        labels = nd.metrics().label_values("nodedns_upstream_requests_total", "upstream")
        check(st.addr_text in labels and up.addr_text in labels,
              "nodedns_upstream_requests_total upstream labels %s, want %s and %s"
              % (labels, up.addr_text, st.addr_text))


@test
def refused_fails_over():
    """Issue 10.6: an upstream's REFUSED sends the query to the next upstream;
    when every one refuses the client gets SERVFAIL, not REFUSED."""
    up = nsd()
    st = nsd_stub()
    with Nodedns(upstream=[up.addr_text, st.addr_text]) as nd:
        m = nd.q("www.stub.test", "A")  # the main NSD refuses stub.test
        expect_answer(m, "A", ["198.51.100.7"], "www.stub.test after the first upstream refused")
        check(nd.metrics().sum("nodedns_upstream_rcode_failovers_total") >= 1,
              "nodedns_upstream_rcode_failovers_total did not count the REFUSED")
    with Nodedns(upstream=[up.addr_text]) as nd:
        m = nd.q("www.stub.test", "A")
        expect_rcode(m, "SERVFAIL", "every upstream refused")
        check(m.ra, "SERVFAIL without RA")


@test
def http_endpoints():
    up = nsd()
    extra = ["--kube-snapshot", SNAPSHOT] if os.path.exists(SNAPSHOT) else []
    with Nodedns(upstream=up.addr_text, extra=extra) as nd:
        nd.q("www.example.test", "A")
        nd.q("nope.example.test", "A")
        st, body = nd.http_get("/health", nd.health_port)
        check(st == 200, "GET /health: HTTP %d %r" % (st, body[:100]))
        st, body = nd.http_get("/no-such-path", nd.health_port)
        check(st == 404, "GET /no-such-path: HTTP %d, want 404" % st)
        m = nd.metrics()
        for n in METRIC_NAMES:
            m.require(n)
        for n in HISTOGRAM_NAMES:
            for suffix in ("_bucket", "_sum", "_count"):
                m.require(n + suffix)
            check(m.types.get(n) == "histogram", "# TYPE %s is %r, want histogram"
                  % (n, m.types.get(n)))
            check(m.sum(n + "_count") >= 1, "%s_count is 0 after upstream queries" % n)
            check(m.sum(n + "_bucket", le="+Inf") == m.sum(n + "_count"),
                  "%s: +Inf bucket != _count" % n)
        for n in METRIC_NAMES:
            if n.endswith("_total"):
                check(m.types.get(n) == "counter", "# TYPE %s is %r, want counter"
                      % (n, m.types.get(n)))
        check(m.sum("nodedns_responses_total", rcode="NOERROR") >= 1,
              'nodedns_responses_total{rcode="NOERROR"} is 0')
        check(m.sum("nodedns_responses_total", rcode="NXDOMAIN") >= 1,
              'nodedns_responses_total{rcode="NXDOMAIN"} is 0')
        check(m.sum("nodedns_requests_total") >= 2, "nodedns_requests_total < 2")
        labels = m.label_values("nodedns_upstream_requests_total", "upstream")
        check(up.addr_text in labels, 'no nodedns_upstream_requests_total{upstream="%s"} '
              '(labels: %s)' % (up.addr_text, labels))
        st, body = nd.http_get("/ready", nd.health_port)
        if extra:
            check(st == 200, "GET /ready with --kube-snapshot: HTTP %d %r" % (st, body[:100]))
    if not extra:
        # no snapshot and no API server: the cluster store can never sync
        check(st != 200, "GET /ready is 200 without a snapshot or an API server")
        raise Skip("/ready with a snapshot not checked: %s missing"
                   % os.path.relpath(SNAPSHOT, REPO))


@test
def bad_flags():
    base = ["--listen", "127.0.0.1:%d" % net.free_port(), "--upstream", "127.0.0.1:9",
            "--metrics", "none", "--health", "none"]
    cases = [
        (["--threads", "abc"], "--threads"),
        (["--threads", "0"], "--threads"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--listen", "300.1.2.3:53"], "--listen"),
        (["--cache-memory", "lots"], "--cache-memory"),
        (["--upstream-proto", "sctp"], "--upstream-proto"),
        (["--upstream-timeout", "-5"], "--upstream-timeout"),
    ]
    for args, name in cases:
        rc, out, err = harness.run_nodedns(base + args)
        lines = [l for l in err.splitlines() if l.strip()]
        check(rc == 2, "%s: exit code %d, want 2 (stderr: %r)" % (" ".join(args), rc, err[-300:]))
        check(len(lines) == 1 and name in lines[0],
              "%s: want one stderr line naming %s, got %r" % (" ".join(args), name, err[-300:]))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"no-such-key": 1}, f)
        cfg = f.name
    try:
        rc, out, err = harness.run_nodedns(base + ["--config", cfg])
        check(rc == 2 and "no-such-key" in err,
              "config file with an unknown key: exit %d, stderr %r" % (rc, err[-300:]))
    finally:
        os.unlink(cfg)
    rc, out, err = harness.run_nodedns(["--version"])
    check(rc == 0 and out.strip(), "--version: exit %d, stdout %r" % (rc, out))
    rc, out, err = harness.run_nodedns(["--help"])
    check(rc == 0 and "--listen" in out, "--help: exit %d, stdout lacks --listen" % rc)


@test
def check_config():
    """--check-config: exit 0 or 2 with the one line a start would print,
    and nothing bound (the listen and metrics ports are taken here)."""
    port = net.free_port()
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tmp = tempfile.mkdtemp(prefix="nodedns-it-check-")
    try:
        t.bind((LOCAL, port))
        t.listen(1)
        u.bind((LOCAL, port))
        common = ["--upstream", "127.0.0.1:9", "--health", "none", "--threads", "1"]
        base = common + ["--listen", "127.0.0.1:%d" % port, "--metrics", "127.0.0.1:%d" % port]
        snap = SNAPSHOT if os.path.exists(SNAPSHOT) else None
        good = base + (["--kube-snapshot", snap] if snap else [])
        rc, out, err = harness.run_nodedns(good + ["--check-config"])
        check(rc == 0 and out.strip() == "nodedns: config ok",
              "good config: exit %d, stdout %r, stderr %r" % (rc, out, err[-300:]))
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write("tok\n")
        cfg = os.path.join(tmp, "unexpanded.json")
        with open(cfg, "w") as f:
            json.dump({"upstream": ["$(UPSTREAM_IP)"]}, f)
        # (flags, what the one line names, exit code of a start with the same flags)
        cases = [
            (["--threads", "abc"], "--threads", 2),
            (["--config", cfg], "upstream", 2),
            (["--kube-snapshot", os.path.join(tmp, "missing.json")], "--kube-snapshot", 1),
            (["--kube-api", "https://192.0.2.1:6443", "--kube-token-file", token,
              "--kube-ca-file", os.path.join(tmp, "missing-ca.crt")], "missing-ca.crt", 1),
            (["--kubeconfig", token], "kubeconfig", 1),
        ]
        for args, name, start_rc in cases:
            rc, out, err = harness.run_nodedns(base + args + ["--check-config"])
            lines = [l for l in err.splitlines() if l.strip()]
            check(rc == 2, "%s: exit code %d, want 2 (stderr %r)" % (" ".join(args), rc, err[-300:]))
            check(len(lines) == 1 and lines[0].startswith("nodedns: ") and name in lines[0],
                  "%s: want one stderr line naming %s, got %r" % (" ".join(args), name, err[-300:]))
            check(out == "", "%s: stdout %r, want nothing" % (" ".join(args), out))
            # A start with the same flags fails with the same message (it
            # gets the free port, so that a bind never comes first).
            free = ["--listen", "127.0.0.1:%d" % net.free_port(), "--metrics", "none"]
            rc2, out2, err2 = harness.run_nodedns(common + free + args, timeout=8)
            check(rc2 == start_rc, "%s: a start exits %d, want %d (stderr %r)"
                  % (" ".join(args), rc2, start_rc, err2[-300:]))
            msg = lines[0][len("nodedns: "):]
            check(msg in err2, "%s: a start does not print %r: %r" % (" ".join(args), msg, err2[-300:]))
    finally:
        t.close()
        u.close()
        for n in os.listdir(tmp):
            os.unlink(os.path.join(tmp, n))
        os.rmdir(tmp)


@test
def port_in_use():
    for what in ("listen", "metrics"):
        port = net.free_port()
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind((LOCAL, port))
            t.listen(1)
            u.bind((LOCAL, port))
            listen = port if what == "listen" else net.free_port()
            metrics = port if what == "metrics" else net.free_port()
            rc, out, err = harness.run_nodedns([
                "--listen", "127.0.0.1:%d" % listen, "--upstream", "127.0.0.1:9",
                "--metrics", "127.0.0.1:%d" % metrics, "--health", "none",
                "--threads", "1"], timeout=8)
        finally:
            t.close()
            u.close()
        check(rc == 1, "--%s on a port in use: exit code %d, want 1 (stderr %r)"
              % (what, rc, err[-300:]))
        check(str(port) in err, "--%s on a port in use: stderr does not name port %d: %r"
              % (what, port, err[-300:]))
        for m in harness.SANITIZER_MARKERS:
            check(m not in err, "sanitizer report on a failed start:\n%s" % err[-2000:])


@test
def sighup_keeps_cache():
    up = nsd()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"log-level": "debug"}, f)
        cfg = f.name
    try:
        with Nodedns(upstream=up.addr_text, extra=["--config", cfg]) as nd:
            expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"], "before SIGHUP")
            stop_nsd()
            nd.signal(signal.SIGHUP)
            time.sleep(0.3)
            nd.assert_alive("after SIGHUP")
            expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"],
                          "cached name after SIGHUP with the upstream down")
            with open(cfg, "w") as f:
                json.dump({"log-level": "info"}, f)
            nd.signal(signal.SIGHUP)
            time.sleep(0.3)
            nd.assert_alive("after a second SIGHUP")
            expect_answer(nd.q("www.example.test", "A", tcp=True), "A", ["192.0.2.10"],
                          "cached name over TCP after a second SIGHUP")
            check(nd.metrics().sum("nodedns_cache_entries") >= 1, "cache emptied by SIGHUP")
    finally:
        os.unlink(cfg)


@test
def sighup_without_config():
    up = nsd()
    with Nodedns(upstream=up.addr_text) as nd:
        nd.q("www.example.test", "A")
        nd.signal(signal.SIGHUP)
        time.sleep(0.3)
        nd.assert_alive("after SIGHUP without --config")
        expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"], "after SIGHUP")


@test
def sighup_reloads_config():
    """SIGHUP re-reads the config file: turning the query log on in the file
    takes effect (queried names appear in the log only after the reload)."""
    up = nsd()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"log-level": "info", "query-log": False}, f)
        cfg = f.name
    try:
        with Nodedns(upstream=up.addr_text, extra=["--config", cfg], log_level=None) as nd:
            expect_answer(nd.q(wild("hup-before"), "A"), "A", ["192.0.2.99"], "before SIGHUP")
            time.sleep(0.2)
            before = nd.stderr_text()
            check("hup-before" not in before.lower(),
                  "query logged with query-log false in the config file:\n%s"
                  % nd.stderr_tail(10))
            with open(cfg, "w") as f:
                json.dump({"log-level": "info", "query-log": True}, f)
            nd.signal(signal.SIGHUP)
            time.sleep(0.4)
            nd.assert_alive("after SIGHUP")
            expect_answer(nd.q(wild("hup-after"), "A"), "A", ["192.0.2.99"], "after SIGHUP")
            expect_answer(nd.q(wild("hup-after"), "A", tcp=True), "A", ["192.0.2.99"],
                          "after SIGHUP, cached, TCP")
            time.sleep(0.3)
            after = nd.stderr_text()[len(before):]
            check("hup-after" in after.lower(),
                  "no query-log line for hup-after.wild.example.test after setting "
                  "query-log true in the config file and SIGHUP: the file was not re-read\n%s"
                  % nd.stderr_tail(15))
    finally:
        os.unlink(cfg)


@test
def sigterm_finishes_inflight():
    up = nsd()
    name = wild("inflight")
    relay = Relay(up.addr, delays={name: 0.5})
    try:
        nd = Nodedns(upstream=relay.addr_text, timeout_ms=2000)
        nd.start()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            q = build_query(name, "A")
            sock.sendto(q, nd.addr)
            time.sleep(0.15)
            nd.signal(signal.SIGTERM)
            data = dnswire.udp_recv_any(sock, 2.5)
            sock.close()
            check(data is not None, "in-flight query not answered after SIGTERM")
            r = parse(data)
            check_reply(q, r)
            expect_answer(r, "A", ["192.0.2.99"], "in-flight query during graceful stop")
            try:
                rc = nd.proc.wait(3.0)
            except Exception:
                raise CheckFailed("nodedns did not exit within 3 s of SIGTERM\n%s"
                                  % nd.stderr_tail())
            check(rc == 0, "exit %s after SIGTERM\n%s" % (nd.describe_rc(rc), nd.stderr_tail()))
            rep = nd.sanitizer_report()
            check(rep is None, "sanitizer report %s\n%s" % (rep, nd.stderr_tail(80)))
        finally:
            nd.stopped = True
            if nd.alive():
                nd.proc.kill()
                nd.proc.wait(5)
    finally:
        relay.close()


@test
def cache_memory_bound():
    up = nsd()
    names = 2500  # ~1 KB answers each: about 2.5 MB offered to a 1 MiB cache
    with Nodedns(upstream=up.addr_text, extra=["--cache-memory", "1M"]) as nd:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        answered = 0
        try:
            for batch in range(names // 100):
                ids = set()
                for i in range(100):
                    qid = batch * 100 + i
                    ids.add(qid)
                    sock.sendto(build_query("n%05d.fat.example.test" % qid, "TXT", qid=qid,
                                            edns=1232), nd.addr)
                deadline = time.monotonic() + 2.0
                while ids and time.monotonic() < deadline:
                    data = dnswire.udp_recv_any(sock, deadline - time.monotonic())
                    if data is None:
                        break
                    qid = dnswire.query_id(data)
                    if qid in ids:
                        ids.discard(qid)
                        answered += 1
        finally:
            sock.close()
        check(answered >= names * 0.95, "only %d of %d queries answered" % (answered, names))
        m = nd.metrics()
        b, e = m.sum("nodedns_cache_bytes"), m.sum("nodedns_cache_entries")
        check(0 < b <= 1 << 20, "nodedns_cache_bytes %d with --cache-memory 1M" % b)
        check(0 < e < answered, "nodedns_cache_entries %d after %d names of ~1 KB with a "
              "1 MiB cache: nothing evicted" % (e, answered))
        nd.assert_alive()
        m = nd.q("n%05d.fat.example.test" % (names - 1), "TXT", tcp=True)
        check(len(m.answer) == 10, "latest name after filling: %s" % m.summary())
        expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"], "after filling")


@test
def cluster_zone():
    snap = snapshot_or_skip()
    ip = snapshot_service("kubernetes", "default")
    check(ip, "snapshot %s has no default/kubernetes Service with a clusterIP" % snap)
    up = nsd()
    with Nodedns(upstream=up.addr_text, extra=["--kube-snapshot", snap]) as nd:
        u0 = upstream_requests(nd)
        m = nd.q("kubernetes.default.svc.cluster.local", "A")
        expect_answer(m, "A", [ip], "kubernetes.default.svc.cluster.local")
        check(m.aa, "cluster answer without AA")
        check(m.ra, "cluster answer without RA")
        check(all(0 < r.ttl <= 5 for r in m.answer), "cluster TTLs %s, want 5 (--cluster-ttl)"
              % [r.ttl for r in m.answer])
        dr = harness.drill(nd.addr, "kubernetes.default.svc.cluster.local", "A", tcp=True)
        check(dr.status == "NOERROR" and dr.data("A") == [ip] and "aa" in dr.flags,
              "drill -t kubernetes.default: %r\n%s" % (dr, dr.out))
        m = nd.q("nonexistent.default.svc.cluster.local", "A")
        expect_rcode(m, "NXDOMAIN", "nonexistent service")
        check(m.aa, "cluster NXDOMAIN without AA")
        soa_in_authority(m, "cluster.local", "cluster NXDOMAIN")
        m = nd.q("kubernetes.default.svc.cluster.local", "TXT")
        expect_rcode(m, "NOERROR", "existing service, TXT (NODATA)")
        check(not m.answer, "NODATA with answers: %s" % m.answer)
        soa_in_authority(m, "cluster.local", "cluster NODATA")
        for n in ("www.example.com.default.svc.cluster.local",
                  "www.example.com.svc.cluster.local", "www.example.com.cluster.local"):
            m = nd.q(n, "A")
            expect_rcode(m, "NXDOMAIN", n)
            check(m.aa, "%s: NXDOMAIN without AA" % n)
            m = nd.q(n, "AAAA")
            expect_rcode(m, "NXDOMAIN", n + " AAAA")
        m = nd.q(".".join(reversed(ip.split("."))) + ".in-addr.arpa", "PTR")
        expect_answer(m, "PTR", ["kubernetes.default.svc.cluster.local"], "reverse of %s" % ip)
        m = nd.q("_https._tcp.kubernetes.default.svc.cluster.local", "SRV")
        srv = [r.data for r in m.answer if r.type == 33]
        check(len(srv) == 1 and srv[0][2] == 443
              and srv[0][3] == "kubernetes.default.svc.cluster.local",
              "SRV _https._tcp.kubernetes.default: %s" % m.answer)
        # headless service: the ready IPv4 endpoints, and hostname records
        eps = snapshot_endpoints("web", "demo")
        v4 = sorted({a for a, _ in eps if ":" not in a})
        check(v4, "snapshot has no ready IPv4 endpoint for demo/web")
        m = nd.q("web.demo.svc.cluster.local", "A")
        expect_answer(m, "A", v4, "headless web.demo")
        for addr, host in eps:
            if host and ":" not in addr:
                m = nd.q("%s.web.demo.svc.cluster.local" % host, "A")
                expect_answer(m, "A", [addr], "hostname record %s.web.demo" % host)
                break
        du = upstream_requests(nd) - u0
        check(du == 0, "cluster-domain queries made %g upstream requests, want 0" % du)
        # ExternalName (after the upstream check: chasing the target is allowed)
        m = nd.q("search.demo.svc.cluster.local", "A")
        cn = [r for r in m.answer if r.type == 5]
        check(m.aa and len(cn) == 1 and cn[0].name.lower() == "search.demo.svc.cluster.local"
              and cn[0].data == "www.example.com",
              "ExternalName search.demo: want CNAME www.example.com, got %s %s"
              % (m.summary(), m.answer))
        st, body = nd.http_get("/ready", nd.health_port)
        check(st == 200, "GET /ready with a snapshot: HTTP %d" % st)


@test
def cluster_not_synced_and_fallback():
    up = nsd()
    fb = nsd_stub()  # also serves a cluster.local zone (kubernetes.default -> 10.96.0.99)
    with Nodedns(upstream=up.addr_text) as nd:
        st, _ = nd.http_get("/ready", nd.health_port)
        check(st == 503, "GET /ready with no cluster source: HTTP %d, want 503" % st)
        m = nd.q("kubernetes.default.svc.cluster.local", "A")
        expect_rcode(m, "SERVFAIL", "cluster name with no cluster store and no fallback")
        st, _ = nd.http_get("/health", nd.health_port)
        check(st == 200, "GET /health (data path fine, store not synced): HTTP %d" % st)
    with Nodedns(upstream=up.addr_text, extra=["--cluster-fallback", fb.addr_text]) as nd:
        m = nd.q("kubernetes.default.svc.cluster.local", "A")
        expect_answer(m, "A", ["10.96.0.99"], "cluster name via --cluster-fallback")
        expect_answer(nd.q("www.example.test", "A"), "A", ["192.0.2.10"],
                      "other names still to --upstream")
    if os.path.exists(SNAPSHOT):
        ip = snapshot_service("kubernetes", "default")
        with Nodedns(upstream=up.addr_text,
                     extra=["--cluster-fallback", fb.addr_text, "--kube-snapshot", SNAPSHOT]) as nd:
            m = nd.q("kubernetes.default.svc.cluster.local", "A")
            expect_answer(m, "A", [ip], "snapshot loaded: the store answers, not the fallback")


# ================================================================== runner

def _start_nsd():
    try:
        nsd()
    except Exception as e:
        return "cannot start NSD: %s" % e
    return None


def main(argv):
    return harness.run_suite(argv, TESTS, "integration", "integration", TEST_TIMEOUT_S, "run.py",
                             setup=_start_nsd, teardown=cleanup_nsd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
