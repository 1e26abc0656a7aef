#!/usr/bin/env python3
"""tests/integration/differential.py - nodedns side by side with unbound.

nodedns and Debian's unbound (a plain forwarder over TCP, no validation) both
forward to one NSD serving zones/diff.test.zone and zones/glue.test.zone. The
same questions, byte for byte, go to both (over UDP unless a case says TCP,
in the same order, so both caches see the same history), and the replies are
compared: rcode, the header flags, the question, the answer, authority and
additional records (as sets of owner, type, class and data; TTLs are not
compared: both count down from the same upstream TTL, a second apart at
most) and the OPT record (presence, version, DO). Every difference must be
listed in ALLOWED, with its reason; anything else fails the case.

The misbehaving-upstream tests (upstream_down, upstream_refusing,
upstream_slow, failover_*, all_failing) start their own pair, nodedns and
unbound forwarding to the same upstream list: a stopped NSD (then started
again on its port), a relay that answers chosen names late, an NSD that
REFUSEs every diff.test name, and pairs of these in front of the good NSD.
Besides the comparison, nodedns must answer every question within a bound
(its --upstream-timeout and 0.8 s, 0.8 s where the failure is immediate).
Known and not an allowed difference of the fields: with a first upstream
that is slow, nodedns pays one attempt's timeout on its first three cache
misses (per worker thread), then sets that upstream aside (three timeouts
in a row, no timely reply between) and asks the next one first, probing
the slow one in the background (failover_first_slow_learned); unbound
learns the RTTs and mostly goes to the fast one, still waiting on the slow
one now and then.

Run: NODEDNS_BIN=build/nodedns python3 tests/integration/differential.py
[name-filter ...]. Needs: nsd, unbound (/usr/sbin/unbound), python3.
Output as the other integration suites: "ok - NAME" / "FAIL - NAME: reason"
and the closing line "differential: N passed, N failed".
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))

from lib import dnswire, net, procs  # noqa: E402
import harness  # noqa: E402
from lib.check import Skip, check  # noqa: E402
from harness import Nodedns, LOCAL  # noqa: E402

UNBOUND = os.environ.get("UNBOUND_BIN", "/usr/sbin/unbound")
TEST_TIMEOUT_S = 60

# unbound as a plain forwarder: everything to the NSD over TCP, no
# validation; allow_snoop lets RD=0 queries be answered from its cache (as
# nodedns does; plain "allow" refuses every RD=0 query).
UNBOUND_CONF = """\
server:
    verbosity: 0
    num-threads: 1
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    so-reuseport: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    access-control: 127.0.0.0/8 allow_snoop
    do-not-query-localhost: no
    module-config: "iterator"
    qname-minimisation: no
    prefetch: no
    serve-expired: no
    # test. is a special-use domain unbound answers NXDOMAIN itself (RFC 6761)
    local-zone: "test." nodefault
remote-control:
    control-enable: no
forward-zone:
    name: "."
{forwards}    forward-tcp-upstream: yes
"""

# Allowed differences: (case tag, field) -> reason. A case carries tags; a
# field that differs is allowed when one of the case's tags lists it here.
# Fields: rcode, flags.<name>, answer, authority, additional, opt, and reply
# (unbound sent nothing within the client's wait; nodedns must always answer).
ALLOWED = {
    ("positive", "authority"):
        "the upstream's NS set in a positive answer: nodedns passes it on as "
        "received, unbound strips it (minimal-responses); both valid, the "
        "records are not needed for the answer (RFC 2181 9, RFC 1034 4.3.2)",
    ("positive", "additional"):
        "glue of that NS set, likewise (RFC 2181 9)",
    ("rd0", "flags.rd"):
        "RD is copied from the query into the response (RFC 1035 4.1.1): "
        "nodedns answers an RD=0 query with RD=0, unbound's cache answer sets RD=1",
    ("rd0", "rcode"):
        "RD=0 and nothing cached: nodedns answers REFUSED (as unbound does with "
        "its default access-control 'allow'); unbound with 'allow_snoop' returns "
        "a referral from its cache. Both are what a server that does not "
        "recurse for this query may say (RFC 1034 4.3.1, 4.3.2)",
    ("rd0", "authority"): "the referral's NS set, as above",
    ("rd0", "additional"): "the referral's glue, as above",
    ("meta", "rcode"):
        "QCLASS ANY: nodedns serves class IN only and refuses it; unbound "
        "forwards it and relays the upstream's answer (RFC 6895 3.1: a "
        "meta-class in a query is for the server to handle as it can)",
    ("meta", "answer"):
        "ANY: nodedns passes the upstream's full answer; unbound answers from "
        "its cache what it has (RFC 8482 lets ANY be answered with a subset)",
    ("meta", "flags.ra"):
        "RA on the refusal of a meta query: nodedns sets it on every reply "
        "(RFC 1035 4.1.1, it offers recursion); unbound's passed-on answer "
        "carries the upstream's",
    ("formerr", "question"):
        "a FORMERR reply echoes the question only when there is exactly one "
        "(nodedns); unbound echoes the query as it came (RFC 1035 4.1.1 leaves "
        "the question section of an error reply open)",
    ("formerr", "flags.ra"):
        "RA on an error reply: nodedns always sets it (it offers recursion, "
        "RFC 1035 4.1.1); unbound echoes the query's header",
    ("notimp", "flags.ra"): "as for FORMERR: RA on every nodedns reply (RFC 1035 4.1.1)",
    ("chase", "rcode"):
        "a CNAME whose target the upstream did not follow (an authoritative "
        "upstream; out of its zones): nodedns relays the upstream's answer as "
        "it came, as a forwarder trusting a recursive upstream does (RFC 1034 "
        "3.6.2, 4.3.1: the recursive server follows the chain); unbound asks "
        "for the target itself, is refused and answers SERVFAIL",
    ("slow", "rcode"):
        "an upstream slower than --upstream-timeout (per attempt, then the "
        "next upstream): nodedns answers SERVFAIL at the deadline, so a client "
        "hears back within a known bound (glibc's stub gives up after 5 s, "
        "resolv.conf(5)); unbound keeps waiting with its own adaptive timeouts "
        "(RTT-based, up to 120 s) and answers when the reply comes, then "
        "serves it from its cache while nodedns, which dropped the late reply, "
        "answers SERVFAIL again. RFC 1035 7.2 and RFC 1536 leave retransmission "
        "and timeouts to the resolver",
    ("slow", "authority"): "the late NXDOMAIN's SOA, as above",
    ("slow", "answer"): "the late answer, as above",
    ("slow", "reply"):
        "unbound, still waiting for the slow upstream, sends nothing within the "
        "client's wait; nodedns always answers within its timeout",
    ("recovery", "rcode"):
        "a stopped upstream that is back: nodedns tries it with the next query "
        "(a server in backoff is still tried when no other is left) and "
        "answers; unbound keeps its infrastructure cache verdict (the server is "
        "down) and answers SERVFAIL until it probes the server again (still "
        "SERVFAIL 6 s after the restart here). Both are retry policy, left to "
        "the resolver (RFC 1035 7.2)",
    ("recovery", "authority"): "the NXDOMAIN's SOA nodedns passes on, as above",
    ("recovery", "answer"): "the answer nodedns passes on, as above",
    ("chaos", "answer"):
        "CH TXT version.bind: each server names itself (RFC 4892)",
    ("chaos", "flags.aa"): "as above",
}

CASES = []


def case(name, qname, qtype="A", tags=(), tcp=False, edns=1232, do=False, rd=True, cd=False,
         ad=False, opcode=0, qclass="IN", wire=None):
    """One question sent to both; @wire: raw bytes instead of a built query."""
    CASES.append(dict(name=name, qname=qname, qtype=qtype, tags=set(tags), tcp=tcp, edns=edns,
                      do=do, rd=rd, cd=cd, ad=ad, opcode=opcode, qclass=qclass, wire=wire))


# ---- types
case("a", "a.diff.test", "A", ["positive"])
case("aaaa", "a.diff.test", "AAAA", ["positive"])
case("mx", "mx.diff.test", "MX", ["positive"])
case("txt", "txt.diff.test", "TXT", ["positive"])
case("srv", "_http._tcp.srv.diff.test", "SRV", ["positive"])
case("caa", "caa.diff.test", 257, ["positive"])
case("sshfp", "sshfp.diff.test", 44, ["positive"])
case("ptr", "ptr.diff.test", "PTR", ["positive"])
case("hinfo", "hinfo.diff.test", 13, ["positive"])
case("naptr", "naptr.diff.test", 35, ["positive"])
case("unknown type", "unknown.diff.test", 65280, ["positive"])
case("soa", "diff.test", "SOA", ["positive"])
case("ns", "diff.test", "NS", ["positive"])
case("mixed case", "A.DiFf.TeSt", "A", ["positive"])
# ---- CNAME, DNAME, wildcard, empty non-terminal
case("cname", "cname.diff.test", "A", ["positive"])
case("cname asked", "cname.diff.test", "CNAME", ["positive"])
case("cname chain", "chain1.diff.test", "A", ["positive"])
case("dangling cname", "dangling.diff.test", "A", ["negative", "positive"])
case("dname", "x.dname.diff.test", "A", ["positive"])
case("wildcard", "anything.wild.diff.test", "A", ["positive"])
case("wildcard txt", "deep.er.wild.diff.test", "TXT", ["positive"])
case("wildcard nodata", "other.wild.diff.test", "MX", ["negative"])
case("empty non-terminal", "ent.diff.test", "A", ["negative"])
case("leaf under ent", "leaf.ent.diff.test", "A", ["positive"])
# ---- negative answers
case("nxdomain", "nothere.diff.test", "A", ["negative"])
case("nxdomain deep", "a.b.c.nothere.diff.test", "AAAA", ["negative"])
case("nodata", "a.diff.test", "MX", ["negative"])
case("nxdomain again (cached)", "nothere.diff.test", "A", ["negative"])
# ---- sizes: UDP without EDNS, with EDNS, TCP
case("40 A, no EDNS (TC)", "many.diff.test", "A", ["positive"], edns=None)
case("40 A, EDNS 1232", "many.diff.test", "A", ["positive"])
case("150 TXT over UDP (TC)", "huge.diff.test", "TXT", ["positive"])
case("150 TXT over TCP", "huge.diff.test", "TXT", ["positive"], tcp=True)
case("600 A over TCP (issue 10.2)", "lots.diff.test", "A", ["positive"], tcp=True)
case("600 A over TCP, again", "lots.diff.test", "A", ["positive"], tcp=True)
case("glue-heavy, no EDNS (issue 10.3)", "www.glue.test", "A", ["positive"], edns=None)
case("glue-heavy, EDNS 1232", "www.glue.test", "A", ["positive"])
# ---- EDNS
case("EDNS 512", "a.diff.test", "A", ["positive"], edns=512)
case("EDNS 4096", "a.diff.test", "TXT", ["negative"], edns=4096)
case("no EDNS", "txt.diff.test", "TXT", ["positive"], edns=None)
case("EDNS version 1", "a.diff.test", "A", ["badvers"],
     wire=dnswire.make_header(0x4242, qd=1, ar=1) + dnswire.encode_name("a.diff.test") +
     struct.pack("!HH", 1, 1) + dnswire.opt_rr(version=1))
# ---- header flags
case("DO=1", "a.diff.test", "A", ["positive"], do=True)
case("CD=1", "a.diff.test", "A", ["positive"], cd=True)
case("AD=1 asked", "a.diff.test", "A", ["positive"], ad=True)
case("RD=0, cached", "a.diff.test", "A", ["positive", "rd0"], rd=False)
case("RD=0, not cached (issue 10.4)", "never-asked.diff.test", "A", ["rd0"], rd=False)
case("RD=0 not cached, then RD=1 (nothing cached by it)", "never-asked.diff.test", "A",
     ["negative"])
case("CD=1 DO=1", "mx.diff.test", "MX", ["positive"], cd=True, do=True)
case("CD=1, then CD=0 (issue 10.1)", "mx.diff.test", "MX", ["positive"])
# ---- opcodes, classes, malformed headers
case("opcode STATUS", "a.diff.test", "A", ["notimp"], opcode=2)
case("opcode UPDATE", "a.diff.test", "A", ["notimp"], opcode=5)
case("DSO, QDCOUNT 0 (issue 10.5)", None, tags=["notimp"],
     wire=dnswire.make_header(0x4243, opcode=6, qd=0, ar=1) + dnswire.opt_rr())
case("QDCOUNT 0", None, tags=["formerr"], wire=dnswire.make_header(0x4244, qd=0))
case("QDCOUNT 2", None, tags=["formerr"],
     wire=dnswire.make_header(0x4245, qd=2) +
     (dnswire.encode_name("a.diff.test") + struct.pack("!HH", 1, 1)) * 2)
case("class CH version.bind", "version.bind", "TXT", ["chaos"], qclass="CH")
case("AXFR over UDP", "diff.test", 252, ["meta"])
case("ANY", "a.diff.test", "ANY", ["meta"])
case("RRSIG asked", "a.diff.test", 46, ["meta"])
case("class ANY", "a.diff.test", "A", ["meta"], qclass=255)
case("upstream REFUSED (issue 10.6)", "www.other.test", "A", [])
case("CNAME out of the upstream's zones", "out.diff.test", "A", ["chase"])
case("QR=1 (dropped by both)", None, wire=dnswire.make_header(0x4246, qr=True, qd=1) +
     dnswire.encode_name("a.diff.test") + struct.pack("!HH", 1, 1))
case("TCP, positive", "txt.diff.test", "TXT", ["positive"], tcp=True)
case("TCP, nxdomain", "nothere2.diff.test", "A", ["negative"], tcp=True)
case("TCP, no EDNS", "many.diff.test", "A", ["positive"], tcp=True, edns=None)


def build(c):
    if c["wire"] is not None:
        return c["wire"]
    return dnswire.build_query(c["qname"], c["qtype"], qclass=c["qclass"], qid=0x5000 + len(c["name"]),
                               rd=c["rd"], opcode=c["opcode"], edns=c["edns"], do=c["do"],
                               cd=c["cd"], ad=c["ad"])


def exchange(addr, wire, tcp):
    if tcp:
        return dnswire.tcp_exchange(addr, wire, 3.0)
    return dnswire.udp_exchange(addr, wire, 3.0)


def rrset(section):
    return sorted((r.name.lower(), r.type, r.cls, repr(r.data)) for r in section)


def fields(m):
    """What is compared, field by field."""
    out = {"rcode": m.rcode_name,
           "question": [(n.lower(), t, c) for n, t, c in m.question],
           "answer": rrset(m.answer), "authority": rrset(m.authority),
           "additional": rrset(m.additional),
           "opt": None if m.opt is None else (m.opt["version"], m.opt["do"])}
    for f in ("qr", "aa", "tc", "rd", "ra", "ad", "cd"):
        out["flags." + f] = getattr(m, f)
    return out


def compare(c, a, b):
    """Differences between nodedns's reply @a and unbound's @b not allowed
    for case @c: a list of texts."""
    if a is None or b is None:
        if a is None and b is None:
            return []
        if b is None and any((t, "reply") in ALLOWED for t in c["tags"]):
            return []
        return ["%s did not answer" % ("nodedns" if a is None else "unbound")]
    fa, fb = fields(a), fields(b)
    bad = []
    for k in fa:
        if fa[k] == fb[k]:
            continue
        if any((t, k) in ALLOWED for t in c["tags"]):
            continue
        bad.append("%s: nodedns %r, unbound %r" % (k, fa[k], fb[k]))
    return bad


def allowed_hits(c, a, b):
    """The allowed differences case @c showed (for the log)."""
    if a is None or b is None:
        return ["reply (%s)" % t for t in sorted(c["tags"]) if (t, "reply") in ALLOWED] \
            if b is None and a is not None else []
    fa, fb = fields(a), fields(b)
    return ["%s (%s)" % (k, t) for k in fa if fa[k] != fb[k]
            for t in sorted(c["tags"]) if (t, k) in ALLOWED]


_st = {}


def _nsd():
    n = harness.Nsd([("diff.test", "diff.test.zone"), ("glue.test", "glue.test.zone")], "diff")
    n.start()
    return n


def _unbound(upstream_port, template=UNBOUND_CONF, d=None, probe="diff.test"):
    """unbound from @template forwarding to @upstream_port (a port, or a list
    of them: one forward-addr each, in that order), files in @d (a new
    directory when None); when @probe is set, waits until its SOA is
    answered, else until the port answers at all. @return (process, port,
    directory)."""
    d = d or tempfile.mkdtemp(prefix="nodedns-diff-unbound-")
    port = net.free_port()
    conf = os.path.join(d, "unbound.conf")
    with open(conf, "w") as f:
        ports = upstream_port if isinstance(upstream_port, (list, tuple)) else [upstream_port]
        forwards = "".join("    forward-addr: 127.0.0.1@%d\n" % u for u in ports)
        f.write(template.format(port=port, dir=d, forwards=forwards))
    log = open(os.path.join(d, "unbound.log"), "wb")
    p = procs.start([UNBOUND, "-d", "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError("unbound exited: %s" % procs.read_text(os.path.join(d, "unbound.log")))
        try:
            if probe is None:
                m = dnswire.query((LOCAL, port), "version.bind", "TXT", qclass="CH", timeout=0.3)
                return p, port, d
            m = dnswire.query((LOCAL, port), probe, "SOA", timeout=0.3)
            if m.rcode == 0 and m.answer:
                return p, port, d
        except (TimeoutError, OSError, dnswire.DNSError):
            pass
        time.sleep(0.05)
    procs.stop(p)
    raise RuntimeError("unbound did not answer on port %d" % port)


def setup():
    if not os.access(UNBOUND, os.X_OK):
        return None  # every case is skipped
    try:
        _st["nsd"] = _nsd()
        _st["unbound"], port, _st["udir"] = _unbound(_st["nsd"].port)
        _st["ub_addr"] = (LOCAL, port)
        nd = Nodedns(upstream=_st["nsd"].addr_text, timeout_ms=1000)
        nd.start()
        _st["nd"] = nd
    except Exception as e:  # noqa: BLE001 - reported as the setup failure
        return "%s: %s" % (type(e).__name__, e)
    return None


def teardown():
    if "nd" in _st:
        _st["nd"].stop()
    if "unbound" in _st:
        procs.stop(_st["unbound"])
        shutil.rmtree(_st["udir"], ignore_errors=True)
    if "nsd" in _st:
        _st["nsd"].cleanup()


def make_test(c):
    def t():
        if "nd" not in _st:
            raise Skip("%s not installed" % UNBOUND)
        wire = build(c)
        a = exchange(_st["nd"].addr, wire, c["tcp"])
        b = exchange(_st["ub_addr"], wire, c["tcp"])
        pa = dnswire.parse(a) if a is not None else None
        pb = dnswire.parse(b) if b is not None else None
        bad = compare(c, pa, pb)
        hits = allowed_hits(c, pa, pb)
        if hits:
            print("# %s: allowed: %s" % (c["name"], ", ".join(hits)))
        check(not bad, "%s: not in the allowed differences:\n  %s\n  nodedns: %s\n  unbound: %s"
              % (c["name"], "\n  ".join(bad), pa and pa.summary(), pb and pb.summary()))
    t.__name__ = c["name"].replace(" ", "_")
    return t


def tcp_pipelined(addr, wires):
    """Send @wires back to back on one TCP connection; the replies by ID."""
    s = dnswire.tcp_connect(addr, 3.0)
    try:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in wires))
        deadline = time.monotonic() + 3.0
        out = {}
        for _ in wires:
            m = dnswire.parse(dnswire.tcp_read_msg(s, deadline))
            out[m.id] = m
        return out
    finally:
        s.close()


def tcp_pipelining():
    """Ten questions back to back on one TCP connection to each (RFC 7766
    6.2.1.1): every one answered, each as the other server answers it."""
    if "nd" not in _st:
        raise Skip("%s not installed" % UNBOUND)
    names = [("a.diff.test", "A"), ("nothere.diff.test", "A"), ("huge.diff.test", "TXT"),
             ("mx.diff.test", "MX"), ("x.dname.diff.test", "A"), ("pipe%d.wild.diff.test", "A")]
    wires = []
    for i in range(10):
        n, t = names[i % len(names)]
        wires.append(dnswire.build_query(n.replace("%d", str(i)), t, qid=0x7000 + i, edns=1232))
    a = tcp_pipelined(_st["nd"].addr, wires)
    b = tcp_pipelined(_st["ub_addr"], wires)
    check(sorted(a) == sorted(b) == sorted(0x7000 + i for i in range(10)),
          "pipelined replies: nodedns ids %s, unbound ids %s" % (sorted(a), sorted(b)))
    c = dict(tags={"positive", "negative"})
    for qid in sorted(a):
        bad = compare(c, a[qid], b[qid])
        check(not bad, "pipelined query %d: %s" % (qid, "; ".join(bad)))


# ---- misbehaving upstreams: each test starts its own pair, nodedns and
# unbound forwarding to the same upstream list (a stopped NSD, one that
# answers late, one that REFUSEs every question, failover between two).

PAIR_TIMEOUT_MS = 1000  # nodedns's --upstream-timeout in these tests
CLIENT_WAIT_S = 2.5     # how long a client waits for either server
FAST_S = 0.8            # bound where no timeout is involved (refused, REFUSED)
ASIDE_AFTER = 3         # timeouts in a row that set an upstream aside (UP_ASIDE_TIMEOUTS)


def _ask_either(addr, c):
    """The reply of @addr to case @c (parsed, or None when it did not
    answer within CLIENT_WAIT_S), and the seconds it took."""
    wire = build(c)
    t0 = time.monotonic()
    try:
        if c["tcp"]:
            data = dnswire.tcp_exchange(addr, wire, CLIENT_WAIT_S)
        else:
            data = dnswire.udp_exchange(addr, wire, CLIENT_WAIT_S)
    except (TimeoutError, OSError, dnswire.DNSError):
        data = None
    return (dnswire.parse(data) if data else None), time.monotonic() - t0


def _step(name, qname, tags=(), within=None, **kw):
    """One question of a misbehaving-upstream test; nodedns must answer it
    within @within seconds (default: its timeout and 0.8 s for a loaded
    machine), with rcode @rcode when given (whatever unbound says)."""
    c = dict(name=name, qname=qname, qtype=kw.pop("qtype", "A"), tags=set(tags),
             tcp=kw.pop("tcp", False), edns=1232, do=False, rd=True, cd=False, ad=False,
             opcode=0, qclass="IN", wire=None, rcode=kw.pop("rcode", None))
    c["within"] = within if within is not None else PAIR_TIMEOUT_MS / 1000.0 + 0.8
    assert not kw, kw
    return c


class _Pair:
    """nodedns and unbound forwarding to the upstream ports @ports."""

    def __init__(self, ports):
        self.ports = list(ports)
        self.ub = self.dir = self.nd = None

    def __enter__(self):
        self.ub, port, self.dir = _unbound(self.ports, probe=None)
        self.ub_addr = (LOCAL, port)
        self.nd = Nodedns(upstream=["%s:%d" % (LOCAL, p) for p in self.ports],
                          timeout_ms=PAIR_TIMEOUT_MS)
        self.nd.start()
        return self

    def __exit__(self, et, ev, tb):
        if self.nd is not None:
            self.nd.__exit__(et, ev, tb)
        if self.ub is not None:
            procs.stop(self.ub)
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def run(self, label, steps):
        """Each step to nodedns, then to unbound; compared as the other cases,
        and nodedns must have answered within the step's bound."""
        for c in steps:
            a, ta = _ask_either(self.nd.addr, c)
            b, tb = _ask_either(self.ub_addr, c)
            hits = allowed_hits(c, a, b)
            print("# %s / %s: nodedns %s in %.2fs, unbound %s in %.2fs%s" % (
                label, c["name"], a.rcode_name if a else "nothing", ta,
                b.rcode_name if b else "nothing", tb,
                "; allowed: " + ", ".join(hits) if hits else ""))
            check(a is not None and ta <= c["within"],
                  "%s / %s: nodedns answered %s after %.2fs, want an answer within %.2fs"
                  % (label, c["name"], a and a.rcode_name, ta, c["within"]))
            check(c["rcode"] is None or a.rcode_name == c["rcode"],
                  "%s / %s: nodedns answered %s, want %s" % (label, c["name"], a.rcode_name,
                                                            c["rcode"]))
            bad = compare(c, a, b)
            check(not bad, "%s / %s: not in the allowed differences:\n  %s\n  nodedns: %s\n"
                  "  unbound: %s" % (label, c["name"], "\n  ".join(bad), a and a.summary(),
                                     b and b.summary()))


def _stopped_nsd():
    """An NSD that served diff.test and was stopped: its port refuses TCP
    and answers UDP with port unreachable. @return (the Nsd, its old port)."""
    n = harness.Nsd([("diff.test", "diff.test.zone")], "down")
    n.start()
    port = n.port
    n.stop()
    return n, port


def _restart_on(n, port):
    """Start Nsd @n again on @port (the port it had)."""
    saved = harness.free_port
    harness.free_port = lambda: port
    try:
        n.start()
    finally:
        harness.free_port = saved


def _refusing_nsd():
    """An NSD that serves only glue.test: REFUSED for every diff.test name."""
    n = harness.Nsd([("glue.test", "glue.test.zone")], "refusing")
    n.start()
    return n


def _need_pair():
    if "nd" not in _st:
        raise Skip("%s not installed" % UNBOUND)


def upstream_down():
    """The only upstream is a stopped NSD: SERVFAIL from both, at once (the
    connection is refused), over UDP and TCP, positive and negative names
    alike; then the NSD is back on its port: nodedns answers again."""
    _need_pair()
    n, port = _stopped_nsd()
    try:
        with _Pair([port]) as p:
            fast = FAST_S
            p.run("down", [
                _step("A", "a.diff.test", within=fast),
                _step("NXDOMAIN name", "nothere.diff.test", within=fast),
                _step("A over TCP", "mx.diff.test", qtype="MX", tcp=True, within=fast),
                _step("A again", "a.diff.test", within=fast)])
            _restart_on(n, port)
            # The backoff after the failures is at most 5 s.
            p.run("back", [_step("A after the restart", "a.diff.test",
                                 ["positive", "recovery"], within=6.0),
                           _step("NXDOMAIN after the restart", "gone.diff.test",
                                 ["negative", "recovery"])])
    finally:
        n.cleanup()


def upstream_refusing():
    """The only upstream REFUSEs diff.test: SERVFAIL from both (its policy is
    not the client's answer, issue 10.6); names it does serve answered."""
    _need_pair()
    n = _refusing_nsd()
    try:
        with _Pair([n.port]) as p:
            p.run("refusing", [
                _step("refused A", "a.diff.test"),
                _step("refused A over TCP", "a.diff.test", tcp=True),
                _step("refused MX", "mx.diff.test", qtype="MX"),
                _step("served name", "www.glue.test", ["positive"]),
                _step("refused again", "txt.diff.test", qtype="TXT")])
    finally:
        n.cleanup()


def upstream_slow():
    """The upstream answers late (a relay in front of the NSD delaying chosen
    names): within nodedns's timeout both answer alike; beyond it nodedns
    answers SERVFAIL at its deadline while unbound waits (allowed: slow)."""
    _need_pair()
    relay = harness.Relay(_st["nsd"].addr, delays={
        "a.diff.test": 0.3, "txt.diff.test": 0.6, "late.diff.test": 1.6,
        "later.diff.test": 4.0})
    try:
        with _Pair([relay.port]) as p:
            p.run("slow", [
                _step("0.3 s late", "a.diff.test", ["positive"]),
                _step("0.6 s late", "txt.diff.test", ["positive"], qtype="TXT"),
                _step("0.6 s late, cached", "txt.diff.test", ["positive"], qtype="TXT",
                      within=FAST_S),
                _step("1.6 s late", "late.diff.test", ["slow"]),
                _step("4 s late", "later.diff.test", ["slow"]),
                _step("1.6 s late, again", "late.diff.test", ["slow"]),
                _step("in time after the late ones", "mx.diff.test", ["positive"],
                      qtype="MX", within=FAST_S)])
    finally:
        relay.close()


def failover_first_down():
    """Two upstreams, the first a stopped NSD: both answer from the second."""
    _need_pair()
    n, port = _stopped_nsd()
    try:
        with _Pair([port, _st["nsd"].port]) as p:
            p.run("first down", [
                _step("A", "a.diff.test", ["positive"], within=FAST_S),
                _step("NXDOMAIN", "nothere.diff.test", ["negative"], within=FAST_S),
                _step("TXT over TCP", "txt.diff.test", ["positive"], qtype="TXT", tcp=True,
                      within=FAST_S),
                _step("MX", "mx.diff.test", ["positive"], qtype="MX", within=FAST_S)])
    finally:
        n.cleanup()


def failover_first_refusing():
    """Two upstreams, the first REFUSEs: both answer from the second."""
    _need_pair()
    n = _refusing_nsd()
    try:
        with _Pair([n.port, _st["nsd"].port]) as p:
            p.run("first refusing", [
                _step("A", "a.diff.test", ["positive"], within=FAST_S),
                _step("NXDOMAIN", "nothere.diff.test", ["negative"], within=FAST_S),
                _step("AAAA over TCP", "a.diff.test", ["positive"], qtype="AAAA", tcp=True,
                      within=FAST_S),
                _step("glue.test (both serve it)", "www.glue.test", ["positive"], within=FAST_S)])
    finally:
        n.cleanup()


def failover_first_slow():
    """Two upstreams, the first answers everything 4 s late: nodedns answers
    the first misses from the second after one attempt's timeout (later ones
    without: failover_first_slow_learned); unbound may wait on the slow one
    first (allowed: slow)."""
    _need_pair()
    names = ["a.diff.test", "mx.diff.test", "nothere.diff.test"]
    relay = harness.Relay(_st["nsd"].addr, delays={n: 4.0 for n in names})
    try:
        with _Pair([relay.port, _st["nsd"].port]) as p:
            p.run("first slow", [
                _step("A", "a.diff.test", ["positive", "slow"]),
                _step("MX", "mx.diff.test", ["positive", "slow"], qtype="MX"),
                _step("NXDOMAIN", "nothere.diff.test", ["negative", "slow"])])
    finally:
        relay.close()


def failover_first_slow_learned():
    """Two upstreams, the first a relay that answers every name 4 s late
    (beyond nodedns's timeout), the second the good NSD: nodedns pays the
    first upstream's timeout on its first UP_ASIDE_TIMEOUTS (3) misses,
    sets it aside and answers every later new name from the second within
    FAST_S; the set-aside upstream gets only probes (one at a time, copies
    of the queries that skipped it, no client waiting on them)."""
    _need_pair()
    learn, fast = ASIDE_AFTER, 12
    names = ["n%d.wild.diff.test" % i for i in range(learn + fast)]
    relay = harness.Relay(_st["nsd"].addr, delays={n: 4.0 for n in names})
    try:
        with _Pair([relay.port, _st["nsd"].port]) as p:
            p.run("first slow, learning", [
                _step("miss %d" % i, names[i], ["positive", "slow"], rcode="NOERROR")
                for i in range(learn)])
            # unbound too may still wait on the slow one now and then (slow)
            p.run("first slow, set aside", [
                _step("miss %d" % i, names[i], ["positive", "slow"], within=FAST_S,
                      rcode="NOERROR")
                for i in range(learn, learn + fast)])
            m = p.nd.metrics()
            sent = m.sum("nodedns_upstream_requests_total", upstream=relay.addr_text)
            print("# first slow: %d misses, the first %d paid the timeout; nodedns sent the "
                  "slow upstream %d queries (probes included)" % (len(names), learn, sent))
            check(sent <= learn + 3,
                  "the set-aside upstream got %d queries from nodedns for %d names: more "
                  "than probes" % (sent, len(names)))
            for name in ("nodedns_upstream_timeout_asides_total", "nodedns_upstream_set_aside"):
                v = m.sum(name, upstream=relay.addr_text)
                check(v == 1, "%s{upstream=%s} is %s, want 1" % (name, relay.addr_text, v))
    finally:
        relay.close()


def all_failing():
    """Two upstreams, one stopped and one refusing: SERVFAIL from both."""
    _need_pair()
    n, port = _stopped_nsd()
    r = _refusing_nsd()
    try:
        with _Pair([port, r.port]) as p:
            p.run("all failing", [
                _step("A", "a.diff.test", within=FAST_S),
                _step("NXDOMAIN name", "nothere.diff.test", within=FAST_S),
                _step("TXT over TCP", "txt.diff.test", qtype="TXT", tcp=True, within=FAST_S)])
    finally:
        n.cleanup()
        r.cleanup()


UPSTREAM_TESTS = [upstream_down, upstream_refusing, upstream_slow, failover_first_down,
                  failover_first_refusing, failover_first_slow, failover_first_slow_learned,
                  all_failing]


SEC_ZONE = """\
$ORIGIN sec.test.
$TTL 300
@      3600 IN SOA ns1.sec.test. h.sec.test. 1 3600 900 604800 60
@      3600 IN NS  ns1.sec.test.
ns1         IN A   127.0.0.1
good        IN A   192.0.2.1
bogus       IN A   192.0.2.66
bogus2      IN A   192.0.2.67
"""

VALIDATOR_CONF = UNBOUND_CONF.replace('module-config: "iterator"',
                                      'module-config: "validator iterator"\n'
                                      '    trust-anchor-file: "{dir}/anchor"\n'
                                      '    val-log-level: 0')


def _signed_zone(d):
    """sec.test signed with one ECDSA key into @d, then two A records changed
    under their signatures (bogus). @return the DNSKEY record (the anchor)."""
    with open(os.path.join(d, "sec.test.zone"), "w") as f:
        f.write(SEC_ZONE)
    key = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "sec.test"], cwd=d,
                         capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["ldns-signzone", "sec.test.zone", key], cwd=d, capture_output=True,
                   check=True)
    path = os.path.join(d, "sec.test.zone.signed")
    with open(path) as f:
        text = f.read()
    for good, bad in (("192.0.2.66", "192.0.2.166"), ("192.0.2.67", "192.0.2.167")):
        check(good in text, "signed zone lacks %s" % good)
        text = text.replace("\t" + good, "\t" + bad)
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(d, key + ".key")) as f:
        return f.read().split(";")[0].strip()


def _ask(addr, name, cd=False, do=True):
    w = dnswire.build_query(name, "A", edns=1232, do=do, cd=cd)
    return dnswire.parse(dnswire.udp_exchange(addr, w, 3.0))


def dnssec_cd_via_validating_upstream():
    """Issue 10.1, end to end: nodedns forwards to a validating unbound in
    front of NSD serving a signed zone with two bogus records. What was
    fetched with CD=1 (checking disabled: the bogus data) must not reach a
    CD=0 client from the cache, nor a validator's SERVFAIL a CD=1 client."""
    if "nd" not in _st:
        raise Skip("%s not installed" % UNBOUND)
    if not shutil.which("ldns-signzone") or not shutil.which("ldns-keygen"):
        raise Skip("ldns-signzone/ldns-keygen not installed (ldnsutils)")
    d = tempfile.mkdtemp(prefix="nodedns-diff-sec-")
    nsd = val = None
    saved = harness.ZONES
    try:
        anchor = _signed_zone(d)
        harness.ZONES = d
        nsd = harness.Nsd([("sec.test", "sec.test.zone.signed")], "sec")
        nsd.start()
        harness.ZONES = saved
        with open(os.path.join(d, "anchor"), "w") as f:
            f.write(anchor + "\n")
        val, port, vdir = _unbound(nsd.port, VALIDATOR_CONF, d, "sec.test")
        vaddr = (LOCAL, port)
        m = _ask(vaddr, "good.sec.test")
        check(m.rcode_name == "NOERROR" and m.ad, "validator: good.sec.test not secure: %s"
              % m.summary())
        m = _ask(vaddr, "bogus.sec.test")
        check(m.rcode_name == "SERVFAIL", "validator: bogus.sec.test not bogus: %s" % m.summary())
        with Nodedns(upstream="%s:%d" % vaddr, timeout_ms=2000) as nd:
            m = _ask(nd.addr, "good.sec.test")
            check(m.rcode_name == "NOERROR" and m.ad and m.answers("A") == ["192.0.2.1"],
                  "good.sec.test through nodedns: %s" % m.summary())
            # CD=1 first: the unchecked data, then CD=0 must not get it.
            m = _ask(nd.addr, "bogus.sec.test", cd=True)
            check(m.rcode_name == "NOERROR" and m.answers("A") == ["192.0.2.166"] and m.cd,
                  "bogus.sec.test with CD=1: want the unchecked data, got %s" % m.summary())
            m = _ask(nd.addr, "bogus.sec.test")
            check(m.rcode_name == "SERVFAIL",
                  "bogus.sec.test with CD=0 after a CD=1 query: want SERVFAIL, got %s "
                  "(the CD=1 answer served from the cache)" % m.summary())
            # CD=0 first: the validator's SERVFAIL, then CD=1 must get the data.
            m = _ask(nd.addr, "bogus2.sec.test")
            check(m.rcode_name == "SERVFAIL", "bogus2.sec.test with CD=0: %s" % m.summary())
            m = _ask(nd.addr, "bogus2.sec.test", cd=True)
            check(m.rcode_name == "NOERROR" and m.answers("A") == ["192.0.2.167"],
                  "bogus2.sec.test with CD=1 after a CD=0 SERVFAIL: want the data, got %s"
                  % m.summary())
    finally:
        harness.ZONES = saved
        if val is not None:
            procs.stop(val)
        if nsd is not None:
            nsd.cleanup()
        shutil.rmtree(d, ignore_errors=True)


TESTS = [make_test(c) for c in CASES] + [tcp_pipelining, dnssec_cd_via_validating_upstream] + \
    UPSTREAM_TESTS


def main(argv):
    if "--allowed" in argv:
        for (tag, field), why in sorted(ALLOWED.items()):
            print("| %s | %s | %s |" % (tag, field, why))
        return 0
    return harness.run_suite(argv, TESTS, "differential", "differential", TEST_TIMEOUT_S,
                             "differential.py", setup=setup, teardown=teardown)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
