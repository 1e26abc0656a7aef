#!/usr/bin/env python3
"""cluster_e2e.py - end-to-end tests of the cluster zone: nodedns watching the
Kubernetes API stand-in (tests/apiserver/fake_apiserver.py) over TLS.

Run (from the repository root):
    NODEDNS_BIN=build/nodedns python3 tests/integration/cluster_e2e.py [filter ...]
    python3 tests/integration/cluster_e2e.py --list
A filter is a substring of a test name. NODEDNS_KEEP_LOGS=1 keeps the nodedns
stderr files. Output: "ok - NAME", "FAIL - NAME: reason", "skip - NAME: reason",
then one closing line "cluster-e2e: N passed, N failed[, N skipped]"; exit 1 on
a failure. Needs root for the network-namespace test (it skips otherwise).

Each test starts its own stand-in (fresh certificates and token) and its own
nodedns (--threads 1, debug log to a file) with --kube-api/--kube-token-file/
--kube-ca-file pointing at it, and NSD (harness.Nsd, zones/example.test.zone)
as the upstream for non-cluster names. Every nodedns is stopped with SIGTERM
and must exit 0 without a sanitizer report.

"Not yet reachable" (readiness test) is a TCP gate in front of the stand-in:
nothing listens on the gate's port until the test opens it, so nodedns sees
connection refused, exactly as with an API server that is not up yet.

Decisions these tests pin down (CONTRACT.md is silent on them):
 - /ready means "synced once": it stays 200 when the API server goes away
   afterwards, and the last good data keeps being served (an API outage must
   not take DNS of the whole node down).
 - Recovery delays: the watch backoff starts at 0.8 s and doubles with jitter
   x[1,2) (k8s_watch.h), so after k consecutive failures a change must be seen
   within sum(0.8*2^i*2, i<k) + 1.5 s.
"""

import http.client
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
HERE = os.path.dirname(os.path.abspath(__file__))

from lib import dnswire, net, procs  # noqa: E402
import harness  # noqa: E402
from lib.check import CheckFailed, Skip, check, tail  # noqa: E402
from harness import Nodedns, LOCAL  # noqa: E402

FAKE_API = os.path.join(REPO, "tests", "apiserver", "fake_apiserver.py")
ZONE = "cluster.local"
CLUSTER_TTL = 5          # --cluster-ttl default
CHANGE_DEADLINE_S = 1.0  # a change must be visible within this
POLL_S = 0.02
TEST_TIMEOUT_S = 120

TESTS = []
test = harness.collector(TESTS)


# ================================================================== fixture

def namespace(name):
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}}


def service(ns, name, ips=None, ports=(("http", "TCP", 80),), headless=False,
            external=None):
    """A Service: ClusterIP(s) @ips (list, v4 and/or v6), headless, or
    ExternalName @external."""
    spec = {"sessionAffinity": "None"}
    if external:
        spec.update({"type": "ExternalName", "externalName": external})
    else:
        spec["type"] = "ClusterIP"
        if headless:
            spec.update({"clusterIP": "None", "clusterIPs": ["None"],
                         "ipFamilies": ["IPv4", "IPv6"],
                         "ipFamilyPolicy": "PreferDualStack"})
        else:
            fams = ["IPv6" if ":" in ip else "IPv4" for ip in ips]
            spec.update({"clusterIP": ips[0], "clusterIPs": list(ips), "ipFamilies": fams,
                         "ipFamilyPolicy": "RequireDualStack" if len(ips) > 1
                         else "SingleStack"})
        spec["ports"] = [dict(({"name": n} if n else {}), protocol=p, port=port,
                              targetPort=port) for n, p, port in ports]
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint(ip, hostname=None, ready=True, pod=None):
    ep = {"addresses": [ip],
          "conditions": {"ready": ready, "serving": ready, "terminating": False}}
    if hostname:
        ep["hostname"] = hostname
    ep["targetRef"] = {"kind": "Pod", "namespace": "x",
                       "name": pod or hostname or "pod-" + ip.replace(".", "-").replace(":", "-")}
    return ep


def eslice(ns, svc, name, endpoints, ports=(("http", "TCP", 80),), family=None):
    if family is None:
        family = "IPv6" if endpoints and ":" in endpoints[0]["addresses"][0] else "IPv4"
    for ep in endpoints:
        ep["targetRef"]["namespace"] = ns
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc,
                                    "endpointslice.kubernetes.io/managed-by":
                                    "endpointslice-controller.k8s.io"}},
            "addressType": family, "endpoints": endpoints,
            "ports": [dict(({"name": n} if n else {}), protocol=p, port=port)
                      for n, p, port in ports]}


def fixture():
    """The cluster of the tests: the objects of the e2e DNS conformance tests
    (test/e2e/network/dns.go) plus a StatefulSet-style dual-stack headless
    service, a dual-stack ClusterIP, ExternalNames and edge cases."""
    return [
        namespace("default"), namespace("kube-system"), namespace("e2e"),
        service("default", "kubernetes", ["10.96.0.1"], ports=[("https", "TCP", 443)]),
        eslice("default", "kubernetes", "kubernetes",
               [endpoint("172.18.0.2", pod="apiserver")], ports=[("https", "TCP", 6443)]),
        service("kube-system", "kube-dns", ["10.96.0.10"],
                ports=[("dns", "UDP", 53), ("dns-tcp", "TCP", 53)]),
        # conformance "should provide DNS for services"
        service("e2e", "dns-test-service", headless=True),
        eslice("e2e", "dns-test-service", "dns-test-service-abcde", [
            endpoint("10.244.1.10", hostname="dns-querier-1"),
            endpoint("10.244.1.11", pod="dns-test-7f9c"),
            endpoint("10.244.1.12", hostname="not-ready-pod", ready=False)]),
        service("e2e", "test-service-2", ["10.96.20.2"]),
        eslice("e2e", "test-service-2", "test-service-2-xyz12",
               [endpoint("10.244.1.10", pod="dns-querier-1")]),
        # StatefulSet "web", dual-stack headless, web-2 not ready
        service("e2e", "web", headless=True, ports=[("web", "TCP", 8080)]),
        eslice("e2e", "web", "web-v4", [
            endpoint("10.244.2.10", hostname="web-0"),
            endpoint("10.244.2.11", hostname="web-1"),
            endpoint("10.244.2.12", hostname="web-2", ready=False)],
            ports=[("web", "TCP", 8080)]),
        eslice("e2e", "web", "web-v6", [
            endpoint("fd00:10:244::a", hostname="web-0"),
            endpoint("fd00:10:244::b", hostname="web-1")],
            ports=[("web", "TCP", 8080)]),
        # dual-stack ClusterIP
        service("e2e", "dual", ["10.96.20.3", "fd00:10:96::3"]),
        # ExternalName (conformance) and one whose target the upstream serves
        service("e2e", "dns-test-service-3", external="foo.example.com"),
        service("e2e", "ext-upstream", external="www.example.test"),
        # headless without a ready endpoint; ClusterIP without endpoints
        service("e2e", "noready", headless=True),
        eslice("e2e", "noready", "noready-1", [endpoint("10.244.3.1", ready=False)]),
        service("e2e", "empty", ["10.96.20.5"]),
        # headless, the pods listen on 8080 behind service port 80: SRV carries
        # the EndpointSlice's port (kube-dns and CoreDNS both do)
        service("e2e", "tport", headless=True),
        eslice("e2e", "tport", "tport-1", [endpoint("10.244.4.1", hostname="tp-0")],
               ports=[("http", "TCP", 8080)]),
        # RelaxedServiceNameValidation: a name starting with a digit
        service("e2e", "1digit", ["10.96.20.6"]),
    ]


def big_headless(n=300):
    objs = [service("e2e", "big", headless=True)]
    for s in range(0, n, 100):
        objs.append(eslice("e2e", "big", "big-%d" % s, [
            endpoint("10.250.%d.%d" % (i // 250, i % 250 + 1)) for i in range(s, min(n, s + 100))]))
    return objs


SVC = "%s.svc." + ZONE


def fq(name):
    return name + "." + ZONE


def rev(ip):
    return ipaddress.ip_address(ip).reverse_pointer


# ================================================================== processes

CLEANUP = []   # callables run after each test (reverse order)


class StandIn:
    """The fake API server, in its own temp dir, optionally in a netns."""

    def __init__(self, objects=None, netns=None, host=None, bookmark_interval=None):
        self.dir = tempfile.mkdtemp(prefix="nodedns-e2e-api-")
        self.objects = objects
        self.netns = netns
        self.host = host
        self.bookmark_interval = bookmark_interval
        self.proc = None
        self.info = None

    @property
    def token_file(self):
        return os.path.join(self.dir, "token")

    @property
    def ca(self):
        return os.path.join(self.dir, "certs", "ca.crt")

    @property
    def other_ca(self):
        return os.path.join(self.dir, "certs", "other-ca.crt")

    @property
    def port(self):
        return self.info["port"]

    @property
    def url(self):
        return "https://%s:%d" % (self.host or LOCAL, self.port)

    def kube_args(self, ca=None, port=None):
        url = self.url if port is None else "https://%s:%d" % (LOCAL, port)
        return ["--kube-api", url, "--kube-token-file", self.token_file,
                "--kube-ca-file", ca or self.ca]

    def start(self):
        cmd = [sys.executable, FAKE_API, "--port", "0", "--control-port", "0",
               "--token-file", self.token_file, "--cert-dir", os.path.join(self.dir, "certs")]
        if self.objects is not None:
            fx = os.path.join(self.dir, "fixture.json")
            with open(fx, "w") as f:
                json.dump({"objects": self.objects}, f)
            cmd += ["--fixture", fx]
        if self.host:
            cmd += ["--host", self.host]
        if self.bookmark_interval is not None:
            cmd += ["--bookmark-interval", str(self.bookmark_interval)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.errf = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = procs.start(cmd, stdout=subprocess.PIPE, stderr=self.errf)
        CLEANUP.append(self.stop)
        line = procs.read_line(self.proc, 20)
        if not line.endswith(b"\n"):
            self.stop()
            raise CheckFailed("API stand-in did not start: %s" % tail(
                os.path.join(self.dir, "stderr")))
        self.info = json.loads(line.decode())
        return self

    def kill(self):
        """SIGKILL: the API server vanishes without closing anything itself."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        procs.stop(self.proc, grace=5.0, group=False)
        self.proc.stdout.close()
        self.errf.close()
        self.proc = None

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- control interface
    def ctl(self, path, body=None, method="POST"):
        c = http.client.HTTPConnection(LOCAL, self.info["control_port"], timeout=10)
        try:
            data = json.dumps(body if body is not None else {}).encode() \
                if method == "POST" else None
            c.request(method, "/control/" + path, body=data,
                      headers={"Content-Type": "application/json"} if data else {})
            r = c.getresponse()
            out = r.read().decode()
            if r.status != 200:
                raise CheckFailed("stand-in /control/%s %s -> HTTP %d: %s"
                                  % (path, json.dumps(body), r.status, out.strip()))
            return json.loads(out)
        finally:
            c.close()

    def add(self, *objs):
        return self.ctl("add", {"objects": list(objs)})

    def update(self, *objs):
        return self.ctl("update", {"objects": list(objs)})

    def delete(self, *objs):
        return self.ctl("delete", {"objects": list(objs)})

    def stats(self):
        return self.ctl("stats", method="GET")


class Gate:
    """A TCP forwarder LOCAL:port -> LOCAL:target. Nothing listens on port
    until open() (connection refused, like an API server not up yet)."""

    def __init__(self, target):
        self.target = target
        self.port = net.free_port()
        self.lsock = None
        self.stopping = False
        self.socks = []
        self.lock = threading.Lock()
        CLEANUP.append(self.close)

    def open(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOCAL, self.port))
        s.listen(64)
        self.lsock = s
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        ls = self.lsock
        while not self.stopping:
            try:
                r, _, _ = select.select([ls], [], [], 0.2)
                if not r:
                    continue
                c, _ = ls.accept()
            except (OSError, ValueError):
                return
            try:
                u = socket.create_connection((LOCAL, self.target), timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.stopping = True
        if self.lsock:
            self.lsock.close()
            self.lsock = None
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass
            self.socks = []


_nsd = {}


def upstream_nsd():
    return harness.shared_nsd(_nsd, "main", [("example.test", "example.test.zone")], "e2e-main")


def fallback_nsd():
    return harness.shared_nsd(_nsd, "fb", [("cluster.local", "cluster.local.zone")],
                              "e2e-fallback")


def start_api(objects=None, **kw):
    api = StandIn(fixture() if objects is None else objects, **kw).start()
    CLEANUP.append(api.remove)
    return api


def nodedns(api, extra=(), wait_synced=True, kube_args=None):
    nd = Nodedns(upstream=upstream_nsd().addr_text,
                 extra=list(kube_args if kube_args is not None else api.kube_args())
                 + list(extra))
    nd.start()
    if wait_synced:
        wait_ready(nd, 10.0)
    return nd


# ================================================================== helpers

def ready_status(nd):
    try:
        return harness.http_get(LOCAL, nd.health_port, "/ready", timeout=2)[0]
    except OSError as e:
        return "error: %s" % e


def wait_ready(nd, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if ready_status(nd) == 200:
            return time.monotonic() - t0
        nd.assert_alive("while waiting for /ready")
        time.sleep(0.05)
    raise CheckFailed("/ready not 200 within %.0f s (last: %s)\n%s"
                      % (timeout, ready_status(nd), nd.stderr_tail()))


def q(nd, name, qtype="A", tcp=False, **kw):
    try:
        return nd.q(name, qtype, tcp=tcp, **kw)
    except (TimeoutError, OSError, dnswire.DNSError) as e:
        nd.assert_alive("after %s %s" % (name, qtype))
        raise CheckFailed("%s %s over %s: %s" % (name, qtype, "TCP" if tcp else "UDP", e))


def show(m):
    lines = [m.summary()]
    for sec, rrs in (("an", m.answer), ("ns", m.authority), ("ar", m.additional)):
        for r in rrs:
            lines.append("    %s: %r" % (sec, r))
    return "\n".join(lines)


def expect(nd, name, qtype, rcode="NOERROR", want=None, tcp=False, what=None, aa=True):
    """Query and check rcode, AA, and (when @want is a list) exactly the answer
    data of type @qtype. NXDOMAIN/NODATA: exactly one SOA of the zone in the
    authority section, negative TTL = cluster TTL."""
    m = q(nd, name, qtype, tcp=tcp)
    what = what or "%s %s%s" % (name, qtype, " (TCP)" if tcp else "")
    check(m.rcode_name == rcode, "%s: want %s, got\n  %s" % (what, rcode, show(m)))
    if aa:
        check(m.aa, "%s: AA=0 on a cluster-zone answer\n  %s" % (what, show(m)))
    check(m.ra, "%s: RA=0\n  %s" % (what, show(m)))
    if want is not None:
        got = m.answers(qtype)
        check(got == sorted(want), "%s: want %s %s, got %s\n  %s"
              % (what, qtype, sorted(want), got, show(m)))
    if rcode == "NXDOMAIN" or (rcode == "NOERROR" and want == []):
        check(not m.answer, "%s: negative answer with records in the answer section\n  %s"
              % (what, show(m)))
        soas = [r for r in m.authority if r.type == 6]
        check(len(soas) == 1 and len(m.authority) == 1,
              "%s: want exactly one SOA in authority\n  %s" % (what, show(m)))
        check(soas[0].name.lower().rstrip(".") == ZONE,
              "%s: SOA owner %r, want %s\n  %s" % (what, soas[0].name, ZONE, show(m)))
        neg = min(soas[0].ttl, soas[0].data[6])
        check(neg == CLUSTER_TTL, "%s: negative TTL min(SOA TTL %d, MINIMUM %d) = %d, want "
              "--cluster-ttl %d" % (what, soas[0].ttl, soas[0].data[6], neg, CLUSTER_TTL))
    if rcode == "NOERROR" and want:
        for r in m.answer:
            check(r.ttl == CLUSTER_TTL or r.type != dnswire.type_num(qtype) or
                  r.name.lower() != name.lower(),
                  "%s: TTL %d, want --cluster-ttl %d\n  %s" % (what, r.ttl, CLUSTER_TTL, show(m)))
    return m


def metrics(nd):
    return nd.metrics()


def wait_for(what, fn, timeout, nd=None, interval=POLL_S):
    """Poll fn() until it returns a true value; return (value, seconds)."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v, time.monotonic() - t0
            last = v
        except CheckFailed as e:
            last = str(e)
        if time.monotonic() - t0 > timeout:
            raise CheckFailed("%s: not seen within %.1f s (last: %s)%s"
                              % (what, timeout, last, ("\n" + nd.stderr_tail(25)) if nd else ""))
        if nd is not None:
            nd.assert_alive(what)
        time.sleep(interval)


def answers_now(nd, name, qtype="A", rcode="NOERROR"):
    """A predicate: the answer data of @name, when the rcode is @rcode."""
    def f():
        m = q(nd, name, qtype)
        if m.rcode_name != rcode:
            return None
        return tuple(m.answers(qtype)) if rcode == "NOERROR" else True
    return f


def is_answer(nd, name, qtype, want):
    want = tuple(sorted(want))

    def f():
        m = q(nd, name, qtype)
        return m.rcode_name == "NOERROR" and tuple(m.answers(qtype)) == want
    return f


def is_rcode(nd, name, qtype, rcode):
    def f():
        return q(nd, name, qtype).rcode_name == rcode
    return f


def backoff_bound(k):
    """Worst case for k consecutive failures (0.8 s doubling, jitter x<2) + slack."""
    return sum(0.8 * (2 ** i) * 2 for i in range(k)) + 1.5


def counter(nd, name):
    return metrics(nd).sum(name)


# ================================================================== tests

@test
def ready_fallback_then_sync():
    """/ready 503 and cluster names SERVFAIL (or from --cluster-fallback) while
    the API is unreachable; /ready 200 and store answers after the sync."""
    api = start_api()
    gate = Gate(api.port)
    fb = fallback_nsd()
    kargs = api.kube_args(port=gate.port)
    nd1 = nodedns(api, kube_args=kargs, wait_synced=False)
    nd2 = nodedns(api, kube_args=kargs, wait_synced=False,
                  extra=["--cluster-fallback", fb.addr_text])
    name = fq("kubernetes.default.svc")
    t_end = time.monotonic() + 1.0
    while True:
        for nd in (nd1, nd2):
            st = ready_status(nd)
            check(st == 503, "/ready before the API is reachable: %s, want 503" % st)
            st = harness.http_get(LOCAL, nd.health_port, "/health")[0]
            check(st == 200, "/health while unsynced: %s, want 200 (the data path answers)"
                  % st)
        m = q(nd1, name)
        check(m.rcode_name == "SERVFAIL", "unsynced, no fallback: %s A: want SERVFAIL, got\n  %s"
              % (name, show(m)))
        m = q(nd2, name)
        check(m.rcode_name == "NOERROR" and m.answers("A") == ["10.96.0.99"],
              "unsynced, --cluster-fallback %s: %s A: want 10.96.0.99 from the fallback, got"
              "\n  %s" % (fb.addr_text, name, show(m)))
        m = q(nd1, "www.example.test")
        check(m.rcode_name == "NOERROR" and m.answers("A") == ["192.0.2.10"],
              "unsynced: forwarding of www.example.test broken:\n  %s" % show(m))
        if time.monotonic() > t_end:
            break
        time.sleep(0.2)
    for nd in (nd1, nd2):
        mt = metrics(nd)
        check(mt.sum("nodedns_cluster_synced") == 0, "nodedns_cluster_synced %s before the sync"
              % mt.sum("nodedns_cluster_synced"))
    check(api.stats().get("requests", 0) == 0, "stand-in got requests through a closed gate?")
    gate.open()
    t1 = wait_ready(nd1, backoff_bound(4))
    t2 = wait_ready(nd2, backoff_bound(4))
    print("# ready %.2f s / %.2f s after the API became reachable" % (t1, t2))
    for nd in (nd1, nd2):
        expect(nd, name, "A", want=["10.96.0.1"], what="after sync: " + name)
        check(metrics(nd).sum("nodedns_cluster_synced") == 1, "nodedns_cluster_synced != 1 "
              "with /ready 200")
    nd1.stop()
    nd2.stop()


@test
def conformance_queries():
    """The queries of test/e2e/network/dns.go and the spec's record table."""
    api = start_api()
    nd = nodedns(api)
    ns = "e2e"
    # dns-version
    expect(nd, fq("dns-version"), "TXT", want=["('1.1.0',)"])
    # ClusterIP A; AAAA of a v4-only service is NODATA
    for tcp in (False, True):
        expect(nd, fq("kubernetes.default.svc"), "A", want=["10.96.0.1"], tcp=tcp)
        expect(nd, fq("test-service-2.e2e.svc"), "A", want=["10.96.20.2"], tcp=tcp)
    expect(nd, fq("kubernetes.default.svc"), "AAAA", want=[])
    expect(nd, fq("empty.e2e.svc"), "A", want=["10.96.20.5"],
           what="ClusterIP service without endpoints")
    # dual-stack ClusterIP
    expect(nd, fq("dual.e2e.svc"), "A", want=["10.96.20.3"])
    expect(nd, fq("dual.e2e.svc"), "AAAA", want=["fd00:10:96::3"])
    # headless: ready endpoints only
    for tcp in (False, True):
        expect(nd, fq("dns-test-service.e2e.svc"), "A", want=["10.244.1.10", "10.244.1.11"],
               tcp=tcp)
    expect(nd, fq("web.e2e.svc"), "A", want=["10.244.2.10", "10.244.2.11"])
    expect(nd, fq("web.e2e.svc"), "AAAA", want=["fd00:10:244::a", "fd00:10:244::b"])
    expect(nd, fq("dns-test-service.e2e.svc"), "AAAA", want=[],
           what="headless service with IPv4 endpoints only, AAAA (NODATA)")
    expect(nd, fq("noready.e2e.svc"), "A", "NXDOMAIN",
           what="headless service without ready endpoints (spec: SHOULD be NXDOMAIN)")
    # endpoint hostnames (StatefulSet / pod subdomain)
    expect(nd, fq("dns-querier-1.dns-test-service.e2e.svc"), "A", want=["10.244.1.10"])
    expect(nd, fq("web-0.web.e2e.svc"), "A", want=["10.244.2.10"])
    expect(nd, fq("web-0.web.e2e.svc"), "AAAA", want=["fd00:10:244::a"])
    expect(nd, fq("web-1.web.e2e.svc"), "AAAA", want=["fd00:10:244::b"], tcp=True)
    expect(nd, fq("web-2.web.e2e.svc"), "A", "NXDOMAIN", what="not-ready endpoint hostname")
    expect(nd, fq("not-ready-pod.dns-test-service.e2e.svc"), "A", "NXDOMAIN",
           what="not-ready endpoint hostname")
    expect(nd, fq("web-9.web.e2e.svc"), "A", "NXDOMAIN")
    # case-insensitive, question case echoed
    m = expect(nd, fq("WEB-0.Web.E2E.svc"), "A", want=["10.244.2.10"])
    check(m.answer[0].name == fq("WEB-0.Web.E2E.svc"),
          "answer owner %r does not keep the query's case" % m.answer[0].name)

    # SRV, ClusterIP: one record to the service name, its A in additional
    m = expect(nd, fq("_http._tcp.test-service-2.e2e.svc"), "SRV")
    srv = [r.data for r in m.answer if r.type == 33]
    check(len(srv) == 1 and srv[0][2] == 80 and srv[0][3] == fq("test-service-2.e2e.svc"),
          "ClusterIP SRV: want one SRV port 80 -> test-service-2.e2e.svc.cluster.local, got"
          "\n  %s" % show(m))
    add = sorted((r.name.lower(), r.data) for r in m.additional if r.type == 1)
    check(add == [(fq("test-service-2.e2e.svc"), "10.96.20.2")],
          "ClusterIP SRV: additional section should hold the A record of the target, got\n  %s"
          % show(m))
    # SRV, headless: one per ready endpoint, targets' A records in additional
    for tcp in (False, True):
        m = expect(nd, fq("_http._tcp.dns-test-service.e2e.svc"), "SRV", tcp=tcp)
        srv = [r.data for r in m.answer if r.type == 33]
        targets = sorted(s[3] for s in srv)
        check(len(srv) == 2 and all(s[2] == 80 for s in srv) and
              fq("dns-querier-1.dns-test-service.e2e.svc") in targets and
              all(t.endswith("." + fq("dns-test-service.e2e.svc")) for t in targets),
              "headless SRV: want 2 SRVs port 80 -> <endpoint>.dns-test-service.e2e.svc."
              "cluster.local (one dns-querier-1), got\n  %s" % show(m))
        add = {}
        for r in m.additional:
            if r.type == 1:
                add.setdefault(r.name.lower(), []).append(r.data)
        check(sorted(sum(add.values(), [])) == ["10.244.1.10", "10.244.1.11"] and
              set(add) == set(targets),
              "headless SRV: additional A records %s do not match the targets %s\n  %s"
              % (add, targets, show(m)))
    m = expect(nd, fq("_web._tcp.web.e2e.svc"), "SRV")
    targets = sorted(r.data[3] for r in m.answer if r.type == 33)
    check(targets == [fq("web-0.web.e2e.svc"), fq("web-1.web.e2e.svc")],
          "StatefulSet SRV targets %s, want web-0/web-1\n  %s" % (targets, show(m)))
    add = sorted((r.name.lower(), str(r.data)) for r in m.additional if r.type in (1, 28))
    check(add == sorted([(fq("web-0.web.e2e.svc"), "10.244.2.10"),
                         (fq("web-0.web.e2e.svc"), "fd00:10:244::a"),
                         (fq("web-1.web.e2e.svc"), "10.244.2.11"),
                         (fq("web-1.web.e2e.svc"), "fd00:10:244::b")]),
          "StatefulSet SRV: additional A/AAAA %s\n  %s" % (add, show(m)))
    m = expect(nd, fq("_http._tcp.tport.e2e.svc"), "SRV")
    check([(r.data[2], r.data[3]) for r in m.answer] == [(8080, fq("tp-0.tport.e2e.svc"))],
          "headless SRV behind a targetPort: want port 8080 (the EndpointSlice port) -> "
          "tp-0.tport.e2e.svc.cluster.local, got\n  %s" % show(m))
    expect(nd, fq("1digit.e2e.svc"), "A", want=["10.96.20.6"],
           what="service name starting with a digit")
    expect(nd, fq("_nope._tcp.test-service-2.e2e.svc"), "SRV", "NXDOMAIN",
           what="SRV of an unknown port name")
    expect(nd, fq("_http._udp.test-service-2.e2e.svc"), "SRV", "NXDOMAIN",
           what="SRV with the wrong protocol")

    # PTR: ClusterIP v4/v6, headless endpoint v4/v6
    for ip, target in (("10.96.20.2", "test-service-2.e2e.svc"),
                       ("10.96.0.1", "kubernetes.default.svc"),
                       ("fd00:10:96::3", "dual.e2e.svc"),
                       ("10.244.2.10", "web-0.web.e2e.svc"),
                       ("fd00:10:244::b", "web-1.web.e2e.svc")):
        for tcp in (False, True):
            expect(nd, rev(ip), "PTR", want=[fq(target)], tcp=tcp, what="PTR of %s" % ip)
    m = expect(nd, rev("10.244.1.10"), "PTR")
    check(fq("dns-querier-1.dns-test-service.e2e.svc") in m.answers("PTR"),
          "PTR of the probe pod 10.244.1.10 lacks dns-querier-1.dns-test-service:\n  %s"
          % show(m))
    # PTR of an IP unknown to the cluster goes upstream
    before = counter(nd, "nodedns_upstream_requests_total")
    q(nd, rev("192.0.2.123"), "PTR")
    check(counter(nd, "nodedns_upstream_requests_total") == before + 1,
          "PTR of 192.0.2.123 (not a cluster IP) was not forwarded upstream")

    # ExternalName: CNAME; A query chased upstream (CNAME then A)
    expect(nd, fq("dns-test-service-3.e2e.svc"), "CNAME", want=["foo.example.com"])
    m = q(nd, fq("ext-upstream.e2e.svc"), "A")
    check(m.rcode_name == "NOERROR" and [(r.tname, str(r.data)) for r in m.answer] ==
          [("CNAME", "www.example.test"), ("A", "192.0.2.10")],
          "ExternalName A: want CNAME www.example.test then A 192.0.2.10, got\n  %s" % show(m))
    # update the externalName, then turn it into a ClusterIP service
    name3 = fq("dns-test-service-3.e2e.svc")
    api.update(service("e2e", "dns-test-service-3", external="bar.example.com"))
    _, dt = wait_for("externalName update", is_answer(nd, name3, "CNAME", ["bar.example.com"]),
                     CHANGE_DEADLINE_S, nd)
    t0 = time.monotonic()
    api.update(service("e2e", "dns-test-service-3", ["10.96.20.33"]))
    wait_for("ExternalName -> ClusterIP", is_answer(nd, name3, "A", ["10.96.20.33"]),
             CHANGE_DEADLINE_S, nd)
    dt2 = time.monotonic() - t0
    m = q(nd, name3, "A")
    check(not [r for r in m.answer if r.type == 5], "CNAME still in the answer after the "
          "type change:\n  %s" % show(m))
    print("# externalName update %.0f ms, ExternalName->ClusterIP %.0f ms"
          % (dt * 1000, dt2 * 1000))

    # negative answers
    expect(nd, fq("nosuch.e2e.svc"), "A", "NXDOMAIN", what="unknown service")
    expect(nd, fq("nosuch.e2e.svc"), "AAAA", "NXDOMAIN", what="unknown service AAAA")
    expect(nd, fq("kubernetes.nosuchns.svc"), "A", "NXDOMAIN", what="unknown namespace")
    expect(nd, fq("nosuchns.svc"), "A", "NXDOMAIN", what="unknown namespace (N.svc.Z)")
    expect(nd, fq("e2e.svc"), "A", want=[], what="existing namespace name (NODATA)")
    expect(nd, fq("test-service-2.e2e.svc"), "TXT", want=[], what="service TXT (NODATA)")
    expect(nd, fq("dual.e2e.svc"), "MX", want=[], what="service MX (NODATA)")
    expect(nd, fq("foo"), "A", "NXDOMAIN")
    expect(nd, ZONE, "A", want=[], what="zone apex A (NODATA)")
    m = expect(nd, ZONE, "SOA", want=None)
    check(len(m.answers("SOA")) == 1, "apex SOA: want one SOA answer\n  %s" % show(m))
    # search-path expansions are negative locally, no upstream query
    before = counter(nd, "nodedns_upstream_requests_total")
    for n in ("www.example.com.default.svc", "www.example.com.svc", "www.example.com",
              "_http._tcp.dns-test-service.e2e.svc.e2e.svc",
              "_http._tcp.dns-test-service.e2e.svc.svc",
              "kubernetes.default.default.svc"):
        for t in ("A", "AAAA"):
            expect(nd, fq(n), t, "NXDOMAIN", what="search expansion %s %s" % (fq(n), t))
    after = counter(nd, "nodedns_upstream_requests_total")
    check(after == before, "search-path expansions in cluster.local went upstream "
          "(nodedns_upstream_requests_total %d -> %d)" % (before, after))

    # e2e probe style: dig +notcp / +tcp, answer section must be non-empty
    for name, t in ((fq("kubernetes.default.svc"), "A"),
                    (fq("dns-test-service.e2e.svc"), "A"),
                    (fq("_http._tcp.dns-test-service.e2e.svc"), "SRV"),
                    (fq("_http._tcp.test-service-2.e2e.svc"), "SRV"),
                    (fq("dns-querier-1.dns-test-service.e2e.svc"), "A"),
                    (rev("10.96.20.2"), "PTR")):
        for proto in ("+notcp", "+tcp"):
            d = harness.dig(nd.addr, name, t, proto)
            check(d.status == "NOERROR" and d.data(t),
                  "dig %s %s %s: empty or failed:\n%s" % (proto, name, t, d.out))
    nd.stop()


@test
def search_path_netns():
    """Partially qualified names through glibc and dig +search: nodedns on
    127.0.0.1:53 in a network namespace whose /etc/resolv.conf has the pod's
    search path (ip netns exec bind-mounts /etc/netns/NAME/resolv.conf)."""
    if os.geteuid() != 0:
        raise Skip("needs root for ip netns")
    netns = net.Netns("ndns-e2e-%d" % os.getpid())
    try:
        netns.create()
    except CheckFailed as e:
        raise Skip("cannot create a network namespace: %s" % e)
    CLEANUP.append(netns.destroy)
    ns = netns.name
    netns.resolv("nameserver 127.0.0.1\n"
                 "search default.svc.cluster.local svc.cluster.local cluster.local\n"
                 "options ndots:5 timeout:1 attempts:1\n")
    api = StandIn(fixture(), netns=ns)
    CLEANUP.append(api.remove)
    api.start()
    d = tempfile.mkdtemp(prefix="nodedns-e2e-netns-")
    CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    errp = os.path.join(d, "stderr")
    cmd = ["ip", "netns", "exec", ns, harness.nodedns_bin(), "--listen", "127.0.0.1:53",
           "--upstream", "127.0.0.1:5399", "--upstream-timeout", "300", "--threads", "1",
           "--metrics", "127.0.0.1:9253", "--health", "127.0.0.1:8080",
           "--log-level", "debug"] + api.kube_args()
    proc = procs.start(cmd, stdout=subprocess.DEVNULL, stderr=open(errp, "wb"),
                       env=harness.sanitizer_env())

    def kill():
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    CLEANUP.append(kill)

    def nx(*args, timeout=8):
        p = subprocess.run(["ip", "netns", "exec", ns] + list(args), capture_output=True,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def synced():
        if proc.poll() is not None:
            raise CheckFailed("nodedns in the netns exited with %s:\n%s"
                              % (proc.returncode, tail(errp)))
        rc, out = nx("dig", "+short", "+time=1", "+tries=1", "@127.0.0.1",
                     "kubernetes.default.svc.cluster.local", "A")
        return out.strip() == "10.96.0.1"
    wait_for("nodedns in the netns synced", synced, 10)

    for name, want in (("kubernetes.default", "10.96.0.1"),
                       ("kubernetes.default.svc", "10.96.0.1"),
                       ("kubernetes", "10.96.0.1"),
                       ("test-service-2.e2e", "10.96.20.2"),
                       ("dual.e2e.svc", "10.96.20.3"),
                       ("web-0.web.e2e", "10.244.2.10")):
        rc, out = nx("getent", "ahosts", name)
        check(rc == 0 and want in out.split(),
              "getent ahosts %s (search default.svc.cluster.local svc.cluster.local "
              "cluster.local, ndots:5): want %s, got rc=%d:\n%s" % (name, want, rc, out))
    rc, out = nx("getent", "ahosts", "dual.e2e")
    check(rc == 0 and "fd00:10:96::3" in out.split() and "10.96.20.3" in out.split(),
          "getent ahosts dual.e2e: want both families, got rc=%d:\n%s" % (rc, out))
    rc, out = nx("getent", "hosts", "dns-test-service.e2e")
    check(rc == 0 and out.split()[0] in ("10.244.1.10", "10.244.1.11"),
          "getent hosts dns-test-service.e2e: rc=%d:\n%s" % (rc, out))
    rc, out = nx("getent", "hosts", "nosuch.e2e")
    check(rc == 2, "getent hosts nosuch.e2e: want rc 2 (not found), got %d:\n%s" % (rc, out))
    # conformance "partial qualified names": dig +search (ndots from resolv.conf)
    for name, t in (("dns-test-service.e2e", "A"), ("dns-test-service.e2e.svc", "A"),
                    ("_http._tcp.dns-test-service.e2e.svc", "SRV"),
                    ("_http._tcp.test-service-2.e2e.svc", "SRV"),
                    ("kubernetes.default", "A"), ("kubernetes.default.svc", "A")):
        for proto in ("+notcp", "+tcp"):
            rc, out = nx("dig", proto, "+search", "+time=1", "+tries=1",
                         "+noall", "+answer", name, t)
            check(rc == 0 and out.strip() and " %s " % t in out.replace("\t", " "),
                  "dig %s +search %s %s in the netns: empty answer:\n%s" % (proto, name, t, out))
    rc, out = nx("dig", "+search", "+short", "-x", "10.96.20.2")
    check(out.strip() == "test-service-2.e2e.svc.cluster.local.",
          "dig -x 10.96.20.2 in the netns: %r" % out)
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(3)
    except subprocess.TimeoutExpired:
        raise CheckFailed("nodedns in the netns did not exit within 3 s of SIGTERM")
    with open(errp, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    for mk in harness.SANITIZER_MARKERS:
        check(mk not in text, "sanitizer report in nodedns stderr:\n%s" % text)
    check(rc == 0, "nodedns in the netns exited %d after SIGTERM:\n%s" % (rc, tail(errp)))


@test
def changes_within_1s():
    """Each change made through the API is answered within 1 s."""
    api = start_api()
    nd = nodedns(api)
    lat = []

    def change(what, fn, pred):
        t0 = time.monotonic()
        fn()
        wait_for(what, pred, CHANGE_DEADLINE_S + 1.0, nd)
        dt = time.monotonic() - t0
        lat.append((dt, what))
        check(dt <= CHANGE_DEADLINE_S, "%s: took %.0f ms, want <= %.0f ms"
              % (what, dt * 1000, CHANGE_DEADLINE_S * 1000))

    def holds(what, pred):
        check(pred(), "%s: not true right after the change it belongs to" % what)

    n_new = fq("newsvc.e2e.svc")
    expect(nd, n_new, "A", "NXDOMAIN")
    change("add a service", lambda: api.add(service("e2e", "newsvc", ["10.96.30.1"])),
           is_answer(nd, n_new, "A", ["10.96.30.1"]))
    change("change its ClusterIP", lambda: api.update(service("e2e", "newsvc", ["10.96.30.2"])),
           is_answer(nd, n_new, "A", ["10.96.30.2"]))
    holds("PTR follows the new ClusterIP", is_answer(nd, rev("10.96.30.2"), "PTR", [n_new]))
    check(q(nd, rev("10.96.30.1"), "PTR").answers("PTR") == [],
          "PTR of the old ClusterIP 10.96.30.1 still answered")
    hl = fq("dns-test-service.e2e.svc")
    base = [endpoint("10.244.1.10", hostname="dns-querier-1"),
            endpoint("10.244.1.11", pod="dns-test-7f9c"),
            endpoint("10.244.1.12", hostname="not-ready-pod", ready=False)]

    def sl(eps):
        return eslice("e2e", "dns-test-service", "dns-test-service-abcde", eps)
    change("add a ready endpoint",
           lambda: api.update(sl(base + [endpoint("10.244.1.13", hostname="new-pod")])),
           is_answer(nd, hl, "A", ["10.244.1.10", "10.244.1.11", "10.244.1.13"]))
    holds("endpoint hostname record appears",
          is_answer(nd, fq("new-pod.dns-test-service.e2e.svc"), "A", ["10.244.1.13"]))
    change("endpoint becomes not ready",
           lambda: api.update(sl(base + [endpoint("10.244.1.13", hostname="new-pod",
                                                  ready=False)])),
           is_answer(nd, hl, "A", ["10.244.1.10", "10.244.1.11"]))
    holds("hostname of the not-ready endpoint is gone",
          is_rcode(nd, fq("new-pod.dns-test-service.e2e.svc"), "A", "NXDOMAIN"))
    change("not-ready endpoint becomes ready",
           lambda: api.update(sl(base[:2] + [endpoint("10.244.1.12", hostname="not-ready-pod"),
                                             endpoint("10.244.1.13", hostname="new-pod",
                                                      ready=False)])),
           is_answer(nd, hl, "A", ["10.244.1.10", "10.244.1.11", "10.244.1.12"]))
    change("remove an endpoint", lambda: api.update(sl(base[:1])),
           is_answer(nd, hl, "A", ["10.244.1.10"]))
    change("add a second EndpointSlice",
           lambda: api.add(eslice("e2e", "dns-test-service", "dns-test-service-2nd",
                                  [endpoint("10.244.9.1")])),
           is_answer(nd, hl, "A", ["10.244.1.10", "10.244.9.1"]))
    change("delete the EndpointSlices (no ready endpoint: NXDOMAIN)",
           lambda: api.delete(sl([]), eslice("e2e", "dns-test-service",
                                             "dns-test-service-2nd", [])),
           is_rcode(nd, hl, "A", "NXDOMAIN"))
    change("delete a service", lambda: api.delete(service("e2e", "newsvc", ["10.96.30.2"])),
           is_rcode(nd, n_new, "A", "NXDOMAIN"))
    check(q(nd, rev("10.96.30.2"), "PTR").answers("PTR") == [],
          "PTR of a deleted service's ClusterIP still answered")
    change("add a namespace and a service in it",
           lambda: api.add(namespace("late"), service("late", "svc", ["10.96.31.1"])),
           is_answer(nd, fq("svc.late.svc"), "A", ["10.96.31.1"]))
    expect(nd, fq("late.svc"), "A", want=[], what="new namespace NODATA")
    change("delete the namespace's service",
           lambda: api.delete(service("late", "svc", ["10.96.31.1"])),
           is_rcode(nd, fq("svc.late.svc"), "A", "NXDOMAIN"))
    ms = sorted(d for d, _ in lat)
    worst = max(lat)
    print("# change latency over %d changes: median %.0f ms, max %.0f ms (%s)"
          % (len(ms), statistics.median(ms) * 1000, worst[0] * 1000, worst[1]))
    nd.stop()


def _recovery(action, bound, check_metric=None, bookmark_interval=600, extra_check=None):
    """Start fresh (backoff at its initial value), do @action(api, nd), then add a
    service and require it to be answered within @bound seconds."""
    api = start_api(bookmark_interval=bookmark_interval)
    nd = nodedns(api)
    time.sleep(1.2)   # the watches have run > SHORT_WATCH_MS
    before = metrics(nd)
    action(api, nd)
    name = "rec-%d" % int(time.monotonic() * 1000 % 100000)
    t0 = time.monotonic()
    api.add(service("e2e", name, ["10.96.40.7"]))
    _, _ = wait_for("new service after recovery", is_answer(nd, fq(name + ".e2e.svc"), "A",
                                                            ["10.96.40.7"]), bound, nd)
    dt = time.monotonic() - t0
    # the old data is intact
    expect(nd, fq("kubernetes.default.svc"), "A", want=["10.96.0.1"])
    expect(nd, fq("web.e2e.svc"), "A", want=["10.244.2.10", "10.244.2.11"])
    check(ready_status(nd) == 200, "/ready %s after the recovery" % ready_status(nd))
    after = metrics(nd)
    if check_metric:
        mname, at_least = check_metric
        b, a = before.sum(mname), after.sum(mname)
        check(a - b >= at_least, "%s went %d -> %d, want +%d" % (mname, b, a, at_least))
    if extra_check:
        extra_check(api, nd)
    print("# change seen %.2f s after the recovery action (bound %.1f s)" % (dt, bound))
    nd.stop()


@test
def recover_dropped_watch():
    def act(api, nd):
        r = api.ctl("drop-watches")
        check(r["dropped"] >= 3, "drop-watches cut %s watches, want 3 open" % r["dropped"])
    # resumes after a random delay under 1 s (the reconnect spread)
    _recovery(act, 2.5, ("nodedns_watch_restarts_total", 1))


@test
def recover_partial_event_cut():
    def act(api, nd):
        api.ctl("drop-watches", {"partial": True})
    _recovery(act, backoff_bound(1))


@test
def recover_410_relist():
    def act(api, nd):
        api.ctl("compact")
        api.ctl("drop-watches")
    _recovery(act, backoff_bound(1), ("nodedns_watch_relists_total", 1))


@test
def recover_429_throttle():
    def act(api, nd):
        api.ctl("throttle", {"count": 2, "retry_after": 1})
        api.ctl("drop-watches")
        wait_for("429s served", lambda: api.stats().get("status:429", 0) >= 2, 3)

    def extra(api, nd):
        st = api.stats()
        check(st.get("status:429", 0) == 2, "stand-in served %s 429s" % st.get("status:429"))
    _recovery(act, 1 + 1.5, ("nodedns_watch_throttled_total", 2), extra_check=extra)


@test
def recover_three_500s():
    def act(api, nd):
        api.ctl("fail", {"status": 500, "count": 3, "match": "services"})
        api.ctl("drop-watches")

    def extra(api, nd):
        reqs = [r for r in api.ctl("requests", method="GET")
                if "services" in r["path"] and r["status"] == 500]
        check(len(reqs) == 3, "want 3 injected 500s served, got %d" % len(reqs))
    _recovery(act, backoff_bound(3), ("nodedns_watch_errors_total", 3), extra_check=extra)


@test
def recover_rotated_token():
    def act(api, nd):
        new = "rotated-" + os.urandom(8).hex()
        api.ctl("rotate-token", {"token": new, "write_file": False, "drop_watches": True})
        # let nodedns meet the 401 with the old file, then rotate the file
        wait_for("401 after rotation", lambda: api.stats().get("auth_failures", 0) >= 1, 5)
        tmp = api.token_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(new + "\n")
        os.rename(tmp, api.token_file)
    _recovery(act, backoff_bound(3), ("nodedns_watch_unauthorized_total", 1))


@test
def stand_in_gone_keeps_data():
    """Kill the API server: the last good data is still served and /ready
    stays 200 (ready = synced once; see the module docstring)."""
    api = start_api()
    nd = nodedns(api)
    n_svc = len([o for o in fixture() if o["kind"] == "Service"])
    api.kill()
    time.sleep(2.5)   # several failed reconnects
    for _ in range(3):
        expect(nd, fq("kubernetes.default.svc"), "A", want=["10.96.0.1"])
        expect(nd, fq("web-0.web.e2e.svc"), "AAAA", want=["fd00:10:244::a"])
        expect(nd, fq("nosuch.e2e.svc"), "A", "NXDOMAIN",
               what="negative answers too (not SERVFAIL) while the API is down")
        check(ready_status(nd) == 200, "/ready %s while the API server is down after the "
              "sync, want 200 (ready = synced once)" % ready_status(nd))
        mt = metrics(nd)
        check(mt.sum("nodedns_cluster_synced") == 1, "nodedns_cluster_synced dropped to 0")
        check(mt.sum("nodedns_cluster_objects", kind="service") == n_svc,
              "nodedns_cluster_objects{kind=service} %s, want %d (kept)"
              % (mt.sum("nodedns_cluster_objects", kind="service"), n_svc))
        time.sleep(0.3)
    check(metrics(nd).sum("nodedns_watch_errors_total") >= 1,
          "nodedns_watch_errors_total did not count the failed reconnects")
    nd.stop()


@test
def big_headless_300():
    api = start_api(fixture() + big_headless(300))
    nd = nodedns(api)
    name = fq("big.e2e.svc")
    want = sorted("10.250.%d.%d" % (i // 250, i % 250 + 1) for i in range(300))
    for edns in (None, 1232, 4096):
        m = q(nd, name, "A", edns=edns)
        check(m.tc and m.rcode_name == "NOERROR",
              "300 A records over UDP (EDNS %s): want TC=1, got %s" % (edns, m.summary()))
        limit = 512 if edns is None else min(edns, 1232)
        check(m.size <= limit, "UDP answer %d bytes > limit %d" % (m.size, limit))
    for _ in range(2):
        m = q(nd, name, "A", tcp=True, timeout=5)
        check(m.rcode_name == "NOERROR" and not m.tc and m.aa,
              "300 A over TCP: %s" % m.summary())
        check(m.answers("A") == sorted(want),
              "300 A over TCP: got %d records (%d distinct), want the 300 ready endpoints"
              % (len(m.answer), len(set(m.answers("A")))))
    d = harness.dig(nd.addr, name, "A")   # dig retries over TCP on TC=1
    check(len(d.data("A")) == 300, "dig (UDP, then TCP on TC=1) got %d A records:\n%s"
          % (len(d.data("A")), d.out[-500:]))
    mt = metrics(nd)
    check(mt.sum("nodedns_cluster_objects", kind="endpointslice") ==
          api.stats()["objects"]["EndpointSlice"],
          "nodedns_cluster_objects{kind=endpointslice} %s, stand-in has %s"
          % (mt.sum("nodedns_cluster_objects", kind="endpointslice"),
             api.stats()["objects"]["EndpointSlice"]))
    nd.stop()


def peak_rss_mb(nd):
    with open("/proc/%d/status" % nd.pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def alive_within(nd, what, limit=1.0):
    """/health 200 and a cluster answer, each within @limit seconds."""
    t0 = time.monotonic()
    st = harness.http_get(LOCAL, nd.health_port, "/health", timeout=limit + 1)[0]
    th = time.monotonic() - t0
    check(st == 200 and th <= limit, "%s: /health %s after %.2f s" % (what, st, th))
    t0 = time.monotonic()
    m = q(nd, fq("kubernetes.default.svc"), timeout=limit + 1)
    td = time.monotonic() - t0
    check(m.rcode_name == "NOERROR" and td <= limit,
          "%s: DNS %s after %.2f s" % (what, m.rcode_name, td))
    return max(th, td)


@test
def admin_flood_metrics_port():
    """200 idle and slow clients on the metrics port, reconnecting: /health on
    its own port and DNS keep answering within 1 s; /metrics still serves."""
    api = start_api()
    nd = nodedns(api)
    worst = 0.0
    t_end = time.monotonic() + 6.0
    socks = []
    while time.monotonic() < t_end:
        for s in socks[:100]:   # the oldest half reconnect
            s.close()
        socks = socks[100:]
        while len(socks) < 200:
            try:
                s = socket.create_connection((LOCAL, nd.metrics_port), timeout=2)
            except OSError:
                break
            if len(socks) % 2:
                s.sendall(b"GET /metr")   # a slow client: the head never ends
            socks.append(s)
        worst = max(worst, alive_within(nd, "flood on the metrics port"))
        time.sleep(0.3)
    st = harness.http_get(LOCAL, nd.metrics_port, "/metrics", timeout=3)[0]
    check(st == 200, "/metrics during the flood: %s" % st)
    for s in socks:
        s.close()
    evicted = counter(nd, "nodedns_admin_evicted_clients_total")
    check(evicted > 0, "no client was closed to make room")
    print("# admin flood: slowest /health or DNS answer %.3f s, %d clients evicted, "
          "peak RSS %.0f MB" % (worst, evicted, peak_rss_mb(nd)))
    nd.stop()


@test
def external_name_loops_servfail():
    """ExternalName loops (itself, a->b->a) are SERVFAIL, without records."""
    def ext(name, target):
        return {"kind": "Service", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": "e2e"},
                "spec": {"type": "ExternalName", "externalName": target}}
    api = start_api(fixture() + [ext("self", fq("self.e2e.svc")), ext("la", fq("lb.e2e.svc")),
                                 ext("lb", fq("la.e2e.svc"))])
    nd = nodedns(api)
    for name in ("self", "la", "lb"):
        for qt in ("A", "AAAA"):
            for tcp in (False, True):
                m = q(nd, fq(name + ".e2e.svc"), qt, tcp=tcp)
                check(m.rcode_name == "SERVFAIL" and not m.answer,
                      "%s %s: want SERVFAIL without records\n  %s" % (name, qt, show(m)))
    expect(nd, fq("la.e2e.svc"), "CNAME", want=[fq("lb.e2e.svc")])
    nd.stop()


@test
def big_headless_5000_tcp():
    """5,000 ready endpoints (over 64 KiB): UDP TC=1, TCP as many as fit, no TC."""
    api = start_api(fixture() + big_headless(5000))
    nd = nodedns(api)
    name = fq("big.e2e.svc")
    m = q(nd, name, "A", edns=1232)
    check(m.tc and not m.answer, "UDP: want TC=1 without records, got %s" % m.summary())
    for edns in (None, 4096):
        m = q(nd, name, "A", tcp=True, timeout=5, edns=edns)
        n = len(m.answers("A"))
        check(m.rcode_name == "NOERROR" and not m.tc and 4000 < n < 5000
              and len(set(m.answers("A"))) == n and m.size <= 65535,
              "TCP (EDNS %s): want NOERROR, no TC, 4000-5000 distinct A, got %s with %d"
              % (edns, m.summary(), n))
    nd.stop()


@test
def hostile_api_lists_bounded():
    """Hostile Service lists (the stand-in's hostile modes) against nodedns:
    peak RSS stays far below the DaemonSet's 256 MiB, /health and DNS answer
    within 1 s throughout, the last good data stays served."""
    api = start_api()
    nd = nodedns(api)
    cases = [("20 MB of {}", {"mode": "empty_objects", "bytes": 20_000_000}),
             ("gzip bomb, 50 MB inflated", {"mode": "empty_objects", "bytes": 50_000_000,
                                             "gzip": True}),
             ("one 20 MB object", {"mode": "one_object", "bytes": 20_000_000})]
    # (costly objects, endless continue, drips: tests/apiserver/test_watch.py)
    def seen():
        mt = metrics(nd)
        return sum(mt.sum(n) for n in ("nodedns_watch_errors_total",
                                       "nodedns_watch_dropped_events_total",
                                       "nodedns_watch_list_loops_total"))

    for what, body in cases:
        before = seen()
        api.ctl("hostile", dict(body, kind="Service"))
        api.ctl("compact", {})
        api.ctl("drop-watches", {})      # relist now, from the hostile server
        t0 = time.monotonic()
        worst, last, since, first = 0.0, before, time.monotonic(), None
        while time.monotonic() - t0 < 20:  # until the counters settle (or 4 s of retries)
            worst = max(worst, alive_within(nd, what))
            v = seen()
            if v != last:
                last, since = v, time.monotonic()
                first = first or since
            elif v > before and time.monotonic() - since > 1.0:
                break
            if first and time.monotonic() - first > 4.0:
                break
            time.sleep(0.1)
        took = time.monotonic() - t0
        api.ctl("hostile", {"mode": None})
        print("# %s: peak RSS so far %.0f MB, slowest /health or DNS %.3f s, %.1f s"
              % (what, peak_rss_mb(nd), worst, took))
        # ASan keeps up to 256 MB of freed memory in quarantine, plus shadow.
        limit = 1500 if "asan" in harness.nodedns_bin() else 150
        check(peak_rss_mb(nd) < limit, "%s: peak RSS %.0f MB" % (what, peak_rss_mb(nd)))
    api.add(service("e2e", "after-hostile", ["10.96.77.7"]))
    wait_for("a change after the hostile lists", is_answer(
        nd, fq("after-hostile.e2e.svc"), "A", ["10.96.77.7"]), 40, nd)
    nd.stop()


@test
def metrics_cluster():
    api = start_api()
    nd = nodedns(api)
    st = api.stats()["objects"]
    mt = metrics(nd)
    check(mt.sum("nodedns_cluster_synced") == 1, "nodedns_cluster_synced %s, want 1"
          % mt.sum("nodedns_cluster_synced"))
    for kind, api_kind in (("service", "Service"), ("endpointslice", "EndpointSlice"),
                           ("namespace", "Namespace")):
        v = mt.sum("nodedns_cluster_objects", kind=kind)
        check(v == st[api_kind], "nodedns_cluster_objects{kind=%s} %s, stand-in has %d"
              % (kind, v, st[api_kind]))
    for n in ("nodedns_watch_restarts_total", "nodedns_watch_relists_total",
              "nodedns_watch_events_total", "nodedns_watch_errors_total",
              "nodedns_watch_throttled_total"):
        mt.require(n)
        check(mt.types.get(n) == "counter", "%s has TYPE %s, want counter"
              % (n, mt.types.get(n)))
    # counts follow changes
    api.add(service("e2e", "m1", ["10.96.50.1"]), service("e2e", "m2", ["10.96.50.2"]))
    wait_for("2 more services counted", lambda: metrics(nd).sum(
        "nodedns_cluster_objects", kind="service") == st["Service"] + 2, 2, nd)
    api.delete(service("e2e", "m1", ["10.96.50.1"]))
    wait_for("service deletion counted", lambda: metrics(nd).sum(
        "nodedns_cluster_objects", kind="service") == st["Service"] + 1, 2, nd)
    nd.stop()


def _refused(api, nd, what):
    t_end = time.monotonic() + 3.0
    while time.monotonic() < t_end:
        check(ready_status(nd) == 503, "%s: /ready %s, want 503" % (what, ready_status(nd)))
        m = q(nd, fq("kubernetes.default.svc"))
        check(m.rcode_name == "SERVFAIL", "%s: cluster name answered %s, want SERVFAIL\n  %s"
              % (what, m.rcode_name, show(m)))
        time.sleep(0.25)
    mt = metrics(nd)
    check(mt.sum("nodedns_cluster_synced") == 0, "%s: nodedns_cluster_synced 1" % what)
    check(mt.sum("nodedns_cluster_objects") == 0, "%s: objects in the store" % what)
    st = api.stats()
    check(st.get("requests", 0) == 0, "%s: %d HTTP requests reached the API server over an "
          "unverified connection" % (what, st.get("requests", 0)))
    err = nd.stderr_text()
    check(re.search(r"(?im)\b(warn|error)\b.*(certificate|ssl|tls)", err),
          "%s: no warning/error about TLS or the certificate in the log:\n%s"
          % (what, nd.stderr_tail(15)))
    nd.stop()


@test
def wrong_ca_refused():
    api = start_api()
    nd = nodedns(api, wait_synced=False, kube_args=api.kube_args(ca=api.other_ca))
    _refused(api, nd, "API certificate not signed by --kube-ca-file")


@test
def wrong_name_refused():
    """The server certificate names 127.0.0.1/localhost; reach it as 127.0.0.2."""
    api = start_api(host="127.0.0.2")
    nd = nodedns(api, wait_synced=False)
    _refused(api, nd, "API certificate for another name (SAN 127.0.0.1, URL 127.0.0.2)")


# ================================================================== runner

def _after_test():
    for fn in reversed(CLEANUP):
        try:
            fn()
        except Exception as e:  # pragma: no cover
            print("# cleanup: %s" % e)
    CLEANUP.clear()


def main(argv):
    return harness.run_suite(argv, TESTS, "cluster-e2e", "cluster e2e", TEST_TIMEOUT_S,
                             "cluster_e2e.py", frames=3, after_test=_after_test,
                             teardown=lambda: harness.cleanup_nsds(_nsd))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
