#!/usr/bin/env python3
"""autopath_e2e.py - node-scoped autopath end to end, glibc clients in pod namespaces.

Run as root: `make node` (NODEDNS_BIN=build/nodedns). One "node" namespace
runs NSD (127.0.0.1:5300, zones example.test and corp.test: the upstream),
the API stand-in (tests/apiserver/fake_apiserver.py) with Pods, and nodedns on
169.254.20.10:53 (the address put on a veth by hand: no node setup here).
Three "pod" namespaces hang off the node by veth pairs, each with the
/etc/resolv.conf kubelet writes (the node search domain corp.test last):
  p1  namespace default, a Pod of this node (node-a) in the stand-in
  p2  namespace other,   a Pod of this node
  p3  namespace default, a Pod of another node (node-b): the field selector
      keeps it away from nodedns, so it is never autopathed

The same lookups run twice through glibc (`getent ahosts`, getaddrinfo with
AF_UNSPEC: A and AAAA), against nodedns without and then with --autopath:
an external name (www.example.test, through NSD), a service of the pod's
namespace, a service of another namespace, a name under the node search
domain (intranet -> intranet.corp.test), and one whose name is also a
namespace's (other: other.svc.cluster.local exists but is empty, and glibc
goes on to other.corp.test). For each: the addresses (must be the
same with and without), the queries on the wire from the pod (nodedns's
query log), the upstream queries (nodedns_upstream_requests_total) of the
first (cold) lookup, and the wall time of warm lookups (median of 30).
With --autopath, Pods are first forbidden (403 from the stand-in): /ready
must still turn 200 and nothing is autopathed until they may be listed.
Then a Pod deleted from the stand-in stops being
autopathed, and added back is autopathed again, each within the propagation
time (bounded here at 3 s; measured and printed).

Closing line "autopath-e2e: N passed, N failed"; exit 1 on failure.
"""

import atexit
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
from lib import net, nsd, procs  # noqa: E402
from lib.check import CheckFailed, check, wait_for  # noqa: E402
from lib.metrics import Metrics  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(os.environ.get("NODEDNS_BIN", os.path.join(REPO, "build", "nodedns")))
PROBE = os.path.join(HERE, "dnsprobe.py")
FAKE_API = os.path.join(REPO, "tests", "apiserver", "fake_apiserver.py")
PREFIX = "ndap-"
LL = "169.254.20.10"
NSD_PORT = 5300
NODE = "node-a"
PROPAGATION_S = 3.0

ZONES = {
    "example.test": """$ORIGIN example.test.
$TTL 300
@    3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 900 604800 60
@    3600 IN NS  ns1.example.test.
ns1       IN A    127.0.0.1
www       IN A    192.0.2.80
www       IN AAAA 2001:db8::80
api       IN A    192.0.2.81
""",
    "corp.test": """$ORIGIN corp.test.
$TTL 300
@    3600 IN SOA ns1.corp.test. hostmaster.corp.test. 1 3600 900 604800 60
@    3600 IN NS  ns1.corp.test.
ns1       IN A    127.0.0.1
intranet  IN A    192.0.2.90
other     IN A    192.0.2.91
""",
}


KUBELET_RESOLV = ("nameserver %s\n"
                  "search %%s.svc.cluster.local svc.cluster.local cluster.local corp.test\n"
                  "options ndots:5\n" % LL)

# Inside a pod: one cold getaddrinfo, then `warm` more; prints JSON.
TIMED = r"""
import json, socket, statistics, sys, time
name, warm = sys.argv[1], int(sys.argv[2])
def one():
    t = time.perf_counter()
    try:
        addrs = sorted({a[4][0] for a in socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)})
    except OSError as e:
        addrs = ["error: %s" % e]
    return (time.perf_counter() - t) * 1000, addrs
cold, addrs = one()
lat = [one()[0] for _ in range(warm)]
print(json.dumps({"cold_ms": cold, "warm_ms": statistics.median(lat) if lat else 0, "addrs": addrs}))
"""

# In the node namespace: POST one JSON body to the stand-in's control port.
POST = r"""
import sys, urllib.request
r = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST",
                           headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(r, timeout=10).read().decode())
"""

_TMP = []


def cleanup_all():
    net.cleanup()
    for d in _TMP:
        shutil.rmtree(d, ignore_errors=True)
    _TMP.clear()


def _on_signal(signum, frame):
    cleanup_all()
    sys.exit(128 + signum)


class Ns(net.Netns):
    def __init__(self, base, tag):
        super().__init__("%s-%s" % (base, tag))

    def probe(self, *args, timeout=30):
        return self.x(["python3", PROBE] + list(args), timeout=timeout).stdout

    def getent(self, name):
        r = self.x(["getent", "ahosts", name], check_rc=False, timeout=30)
        return sorted({l.split()[0] for l in r.stdout.splitlines() if l.strip()})

    def timed(self, name, warm):
        return json.loads(self.x(["python3", "-c", TIMED, name, str(warm)], timeout=60).stdout)


def service(ns, name, ip):
    return {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}


def pod(ns, name, node, ip, host_network=False):
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node, "dnsPolicy": "ClusterFirst", "hostNetwork": host_network,
                     "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


PODS = [("p1", "default", NODE), ("p2", "other", NODE), ("p3", "default", "node-b")]


def fixture():
    ns = lambda n: {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": n}}
    objs = [ns("default"), ns("other"),
            service("default", "kubernetes", "10.96.0.1"),
            service("default", "frontend", "10.96.40.7"),
            service("other", "web", "10.96.30.5"),
            # hostNetwork pods share the node's address: never autopathed.
            pod("kube-system", "kube-proxy-a", NODE, "10.123.0.1", host_network=True)]
    for i, (tag, kns, node) in enumerate(PODS, 1):
        objs.append(pod(kns, "pod-" + tag, node, "10.123.%d.2" % i))
    return objs


class Node:
    def __init__(self):
        self.base = "%s%d-%04x" % (PREFIX, os.getpid(), random.randrange(0x10000))
        self.tmp = tempfile.mkdtemp(prefix="nodedns-autopath-")
        _TMP.append(self.tmp)
        self.node = Ns(self.base, "node")
        self.pods = {tag: Ns(self.base, tag) for tag, _, _ in PODS}
        self.inst = None
        self.files = []

    def build(self):
        n = self.node
        n.create()
        n.ip("link", "add", "ndl0", "type", "veth", "peer", "name", "ndl0p")
        n.ip("link", "set", "ndl0", "up")
        n.ip("link", "set", "ndl0p", "up")
        n.ip("addr", "add", LL + "/32", "dev", "ndl0")
        for i, (tag, kns, _) in enumerate(PODS, 1):
            p = self.pods[tag]
            p.create()
            n.ip("link", "add", "veth%d" % i, "type", "veth", "peer", "name", "eth0", "netns", p.name)
            n.ip("addr", "add", "10.123.%d.1/30" % i, "dev", "veth%d" % i)
            n.ip("link", "set", "veth%d" % i, "up")
            p.ip("addr", "add", "10.123.%d.2/30" % i, "dev", "eth0")
            p.ip("link", "set", "eth0", "up")
            p.ip("route", "add", "default", "via", "10.123.%d.1" % i, "dev", "eth0")
            p.resolv(KUBELET_RESOLV % kns)
        d = os.path.join(self.tmp, "nsd")
        conf = nsd.write(d, ZONES, ["127.0.0.1@%d" % NSD_PORT])
        log = open(os.path.join(d, "nsd.out"), "wb")
        self.files.append(log)
        n.popen(["nsd", "-d", "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: json.loads(n.probe("query", "127.0.0.1:%d" % NSD_PORT, "intranet.corp.test"))
                 .get("answers"), 10, "NSD to answer")
        a = os.path.join(self.tmp, "api")
        os.makedirs(a)
        with open(os.path.join(a, "fixture.json"), "w") as f:
            json.dump({"objects": fixture()}, f)
        err = open(os.path.join(a, "stderr"), "wb")
        self.files.append(err)
        self.api = n.popen([sys.executable, FAKE_API, "--port", "0", "--control-port", "0",
                            "--token-file", os.path.join(a, "token"), "--cert-dir", os.path.join(a, "certs"),
                            "--fixture", os.path.join(a, "fixture.json"), "--bookmark-interval", "1"],
                           stdout=subprocess.PIPE, stderr=err)
        line = self.api.stdout.readline()
        check(line, "API stand-in did not start")
        info = json.loads(line)
        self.control = "http://127.0.0.1:%d" % info["control_port"]
        self.kube_args = ["--kube-api", "https://127.0.0.1:%d" % info["port"],
                          "--kube-token-file", info["token_file"], "--kube-ca-file", info["ca"]]

    def start(self, name, autopath):
        args = [BIN, "--listen", LL + ":53", "--upstream", "127.0.0.1:%d" % NSD_PORT, "--threads", "1",
                "--query-log", "--metrics", "127.0.0.1:9253", "--health", "127.0.0.1:8080"] + self.kube_args
        if autopath:
            args += ["--autopath", "--node-name", NODE, "--autopath-search", "corp.test"]
        logpath = os.path.join(self.tmp, name + ".log")
        logf = open(logpath, "wb")
        self.files.append(logf)
        env = dict(os.environ, NODEDNS_RUN_DIR=os.path.join(self.tmp, "run-" + name))
        p = self.node.popen(args, env=env, stdout=logf, stderr=subprocess.STDOUT)
        self.inst = procs.LoggedProc(p, logpath, logf, name="nodedns")
        self.inst.wait_log(r"serving on", 15)
        wait_for(lambda: self.pods["p1"].getent("kubernetes") == ["10.96.0.1"], 15, "the cluster from p1")

    def stop(self):
        check(self.inst.stop(15) == 0, "nodedns exit status")

    def metrics(self):
        return Metrics(self.node.probe("get", "http://127.0.0.1:9253/metrics")).series()

    def post(self, path, obj):
        return self.node.x(["python3", "-c", POST, self.control + path, json.dumps(obj)]).stdout

    def get(self, path):
        return json.loads(self.node.probe("get", self.control + path))

    def close(self):
        for f in self.files:
            f.close()


def metric_sum(m, prefix):
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


def pod_queries(t, tag, fn):
    """Run fn(); return (its result, query-log lines from pod @tag meanwhile)."""
    i = PODS.index(next(p for p in PODS if p[0] == tag)) + 1
    src = " 10.123.%d.2:" % i
    before = len(t.inst.log().splitlines())
    r = fn()
    time.sleep(0.05)
    lines = t.inst.log().splitlines()[before:]
    return r, sum(1 for l in lines if " query: " in l and src in l)


# (pod, name, expected addresses)
CASES = [
    ("p1", "www.example.test", ["192.0.2.80", "2001:db8::80"]),  # external, through NSD
    ("p1", "frontend", ["10.96.40.7"]),                           # the pod's own namespace
    ("p1", "web.other", ["10.96.30.5"]),                          # another namespace
    ("p1", "intranet", ["192.0.2.90"]),                           # under the node search domain
    ("p1", "other", ["192.0.2.91"]),   # a namespace's name in the zone (empty), a host of corp.test
    ("p2", "web", ["10.96.30.5"]),
    ("p2", "frontend.default", ["10.96.40.7"]),
    ("p3", "www.example.test", ["192.0.2.80", "2001:db8::80"]),  # not a pod of this node
    ("p3", "web.other", ["10.96.30.5"]),
]
WARM = 30


def run_cases(t):
    out = {}
    for tag, name, want in CASES:
        p = t.pods[tag]
        m0 = metric_sum(t.metrics(), "nodedns_upstream_requests_total")
        got, wire = pod_queries(t, tag, lambda: p.getent(name))
        up = metric_sum(t.metrics(), "nodedns_upstream_requests_total") - m0
        check(got == want, "getent ahosts %s in %s: %s, wanted %s" % (name, tag, got, want))
        tm = p.timed(name, WARM)
        check(tm["addrs"] == want, "getaddrinfo %s in %s: %s" % (name, tag, tm["addrs"]))
        out[(tag, name)] = {"wire": wire, "upstream": up, "warm_ms": tm["warm_ms"]}
    return out


def wait_autopath(t, tag, on, what):
    """Poll until a lookup of a fresh external name from @tag is (or is not)
    answered at its first question; return the seconds it took."""
    t0 = time.monotonic()
    k = [0]

    def probe():
        k[0] += 1
        _, wire = pod_queries(t, tag, lambda: t.pods[tag].getent("www.example.test"))
        return (wire == 2) == on
    wait_for(probe, PROPAGATION_S, what, interval=0.05)
    return time.monotonic() - t0


def scenario(t, results):
    t.start("plain", autopath=False)
    base = run_cases(t)
    t.stop()

    # Pods forbidden at first (RBAC without the pods rule): the cluster
    # zone syncs and /ready turns 200 all the same, nothing is autopathed;
    # once pods may be listed, autopath starts on its own.
    t.post("/control/fail", {"status": 403, "count": 1000000, "match": "pods"})
    t.start("autopath", autopath=True)
    t.node.probe("get", "http://127.0.0.1:8080/ready")  # exits 1 unless 200
    # (a name of its own, so that the cold lookups below stay cold)
    _, wire = pod_queries(t, "p1", lambda: t.pods["p1"].getent("api.example.test"))
    check(wire == 10, "autopath before the pods could be listed: %d queries" % wire)
    t0 = time.monotonic()
    t.post("/control/clear-failures", {})
    wait_for(lambda: metric_sum(t.metrics(), "nodedns_autopath_pods_eligible") == 2, 40,
             "the 2 eligible pods of node-a")
    results["forbidden"] = ("pods forbidden (403): /ready 200, lookups answered as without autopath; "
                            "allowed again: autopath after %.1f s (the watch's backoff)" % (time.monotonic() - t0))
    m = t.metrics()
    check(metric_sum(m, "nodedns_autopath_pods") == 3, "pods of node-a known: %s" %
          metric_sum(m, "nodedns_autopath_pods"))  # p1, p2, the hostNetwork one
    reqs = json.dumps(t.get("/control/requests"))
    check("fieldSelector=spec.nodeName%3Dnode-a" in reqs, "pods requested without the node's field selector")
    ap = run_cases(t)
    m = t.metrics()
    walks, answers = metric_sum(m, "nodedns_autopath_walks_total"), metric_sum(m, "nodedns_autopath_answers_total")

    rows = []
    for tag, name, _ in CASES:
        b, a = base[(tag, name)], ap[(tag, name)]
        rows.append("  %-3s %-18s queries/lookup %2d -> %2d   upstream (cold) %d -> %d   warm %.2f -> %.2f ms" % (
            tag, name, b["wire"], a["wire"], b["upstream"], a["upstream"], b["warm_ms"], a["warm_ms"]))
        if tag in ("p1", "p2"):
            check(a["wire"] == 2, "%s from %s: %d queries with autopath, wanted 2 (A and AAAA)" % (name, tag, a["wire"]))
        else:
            check(a["wire"] == b["wire"], "%s from %s (not of this node): %d queries, %d without autopath" % (
                name, tag, a["wire"], b["wire"]))
        check(a["upstream"] <= b["upstream"], "%s from %s: more upstream queries with autopath" % (name, tag))
    check(base[("p1", "www.example.test")]["wire"] == 10, "www.example.test without autopath: %d queries" %
          base[("p1", "www.example.test")]["wire"])
    check(base[("p1", "intranet")]["wire"] == 8, "intranet without autopath: %d queries" %
          base[("p1", "intranet")]["wire"])
    check(walks >= 10 and answers >= 10, "autopath counters: %d walks, %d answers" % (walks, answers))
    results["lookups"] = "\n" + "\n".join(rows)
    own = [k for k in CASES if k[0] != "p3"]
    results["total"] = ("pods of node-a, %d lookups: %d -> %d queries; warm wall time sum %.1f -> %.1f ms" % (
        len(own), sum(base[(k[0], k[1])]["wire"] for k in own), sum(ap[(k[0], k[1])]["wire"] for k in own),
        sum(base[(k[0], k[1])]["warm_ms"] for k in own), sum(ap[(k[0], k[1])]["warm_ms"] for k in own)))

    # Pods removed and added are picked up within the propagation time.
    p1 = pod("default", "pod-p1", NODE, "10.123.1.2")
    t.post("/control/delete", p1)
    gone = wait_autopath(t, "p1", False, "p1 to lose autopath after its Pod was deleted")
    check(metric_sum(t.metrics(), "nodedns_autopath_pods_eligible") == 1, "eligible pods after the delete")
    t.post("/control/add", p1)
    back = wait_autopath(t, "p1", True, "p1 to get autopath back after its Pod was added")
    custom = dict(p1, spec=dict(p1["spec"], dnsConfig={"searches": ["extra.test"]}))
    t.post("/control/update", custom)
    changed = wait_autopath(t, "p1", False, "p1 to lose autopath with a custom search path")
    results["propagation"] = ("Pod deleted -> not autopathed after %.2f s; added -> autopathed after %.2f s; "
                              "dnsConfig.searches set -> not autopathed after %.2f s (bound %.0f s)" % (
                                  gone, back, changed, PROPAGATION_S))
    t.stop()


def main():
    if os.geteuid() != 0:
        print("autopath-e2e: skipped: needs root (network namespaces)")
        print("autopath-e2e: 0 passed, 0 failed (skipped)")
        return 0
    for tool in ("ip", "nsd", "getent", "openssl"):
        if not shutil.which(tool):
            print("autopath-e2e: missing %s (scripts/deps.sh test installs it)" % tool)
            print("autopath-e2e: 0 passed, 1 failed")
            return 1
    atexit.register(cleanup_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    net.remove_stale(PREFIX)
    t0 = time.monotonic()
    t = Node()
    results = {}
    ok = False
    try:
        t.build()
        scenario(t, results)
        ok = True
        print("PASS autopath (%.1f s)" % (time.monotonic() - t0), flush=True)
    except Exception as e:  # noqa: BLE001
        print("FAIL autopath (%.1f s): %s" % (time.monotonic() - t0, e), flush=True)
        if not isinstance(e, CheckFailed):
            traceback.print_exc()
        if t.inst:
            print("--- %s (tail)\n%s" % (t.inst.logpath, t.inst.log()[-3000:]))
    finally:
        if t.inst and t.inst.proc.poll() is None:
            t.inst.stop(5)
        cleanup_all()
        t.close()
    for k, v in results.items():
        print("  %s: %s" % (k, v))
    print("autopath-e2e: %d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
