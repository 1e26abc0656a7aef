#!/usr/bin/env python3
"""pods_e2e.py - a small node built from network namespaces, with pods.

Run as root: `make node` (NODEDNS_BIN=build/nodedns). One "node" namespace
runs NSD (127.0.0.1:5300, zone example.test: the upstream), the Kubernetes API
stand-in (tests/apiserver/fake_apiserver.py, on 127.0.0.1) and nodedns
(supervisor + resolver) with --listen 169.254.20.10:53 --setup-interface
--setup-iptables --kube-api; a veth `ndl0` in it stands for the nodelocaldns
link (this kernel may have no dummy link type). Two "pod" namespaces hang off
the node by veth pairs (10.123.N.2/30, default route via the node end
10.123.N.1) with /etc/netns/POD/resolv.conf exactly as kubelet writes it.
The node namespace has kube-proxy-like rules that need conntrack, so the
"no conntrack entries for DNS" check is not vacuous (a control query to NSD on
the node address must leave an entry).

Checks, from the pods through glibc (`getent ahosts`, getaddrinfo):
  1. short service names through the search path, a headless service, an
     external name (search expansions answered NXDOMAIN locally: at most 2
     upstream queries, A and AAAA of the final name);
  2. 2,000 lookups from both pods in parallel, none slower than 1 s;
  3. no conntrack entries for 169.254.20.10 port 53;
  4. lookups keep working through kill -9 of the resolver (none fails: each
     new resolver answers cluster names from the warm-start file before its
     own sync) and through a graceful handover to a second instance;
  5. after SIGTERM of the last instance, the rules and the address are gone.

Closing line "pods-e2e: N passed, N failed"; exit 1 on failure.
Namespaces are named ndpod-PID-RAND-*; stale ones (dead PID) are removed at
the next start; everything is removed on exit, Ctrl-C and SIGTERM.
"""

import atexit
import json
import os
import random
import re
import shutil
import signal
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
PREFIX = "ndpod-"
LL = "169.254.20.10"
NSD_PORT = 5300
IFACE = "ndl0"

ZONE = """$ORIGIN example.test.
$TTL 300
@    3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 900 604800 60
@    3600 IN NS  ns1.example.test.
ns1       IN A    127.0.0.1
www       IN A    192.0.2.80
www       IN AAAA 2001:db8::80
api       IN A    192.0.2.81
"""

# Runs inside a pod namespace: glibc lookups (getaddrinfo, AF_UNSPEC, as
# `getent ahosts` does) from several threads, until a count or a stop file.
LOOKUPS = r"""
import json, os, socket, sys, threading, time
names = sys.argv[1].split(",")
total = int(sys.argv[2]); threads = int(sys.argv[3]); stop = sys.argv[4] if len(sys.argv) > 4 else ""
lock = threading.Lock(); res = []; nxt = [0]; t0 = time.monotonic()
def work():
    while True:
        with lock:
            i = nxt[0]; nxt[0] += 1
        if total and i >= total: return
        if stop and os.path.exists(stop): return
        name = names[i % len(names)]
        s = time.monotonic()
        try:
            ok = bool(socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)); err = ""
        except OSError as e:
            ok = False; err = str(e)
        e = time.monotonic()
        with lock:
            res.append((s - t0, e - t0, ok, name, err))
        if stop: time.sleep(0.005)
ts = [threading.Thread(target=work) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
res.sort(key=lambda r: r[1])
lat = sorted(r[1] - r[0] for r in res)
okt = [r[1] for r in res if r[2]] + [time.monotonic() - t0]
gap = max((b - a for a, b in zip(okt, okt[1:])), default=0)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
print(json.dumps({"t0": t0, "n": len(res), "starts": [(r[0], r[1] - r[0], r[2]) for r in res], "fail": sum(1 for r in res if not r[2]),
                  "failures": [(round(r[0] * 1000), r[3], r[4]) for r in res if not r[2]][:10],
                  "p50_ms": q(0.5) * 1000, "p99_ms": q(0.99) * 1000, "max_ms": (lat[-1] if lat else 0) * 1000,
                  "max_gap_ms": gap * 1000, "lat": lat}))
"""

RESULTS = {}


# ------------------------------------------------------------ cleanup

_TMP = []


def cleanup_all(keep_tmp=False):
    net.cleanup()
    if not keep_tmp:
        for d in _TMP:
            shutil.rmtree(d, ignore_errors=True)
    _TMP.clear()


def _on_signal(signum, frame):
    cleanup_all()
    sys.exit(128 + signum)


# ------------------------------------------------------------ namespaces

class Ns(net.Netns):
    def __init__(self, base, tag):
        super().__init__("%s-%s" % (base, tag))

    def x(self, args, check_rc=True, timeout=60):
        return super().x(args, check_rc=check_rc, timeout=timeout)

    def probe(self, *args, timeout=30):
        return self.x(["python3", PROBE] + list(args), timeout=timeout).stdout

    def metrics(self):
        return Metrics(self.probe("get", "http://127.0.0.1:9253/metrics")).series()

    def getent(self, name):
        r = self.x(["getent", "ahosts", name], check_rc=False, timeout=30)
        return sorted({l.split()[0] for l in r.stdout.splitlines() if l.strip()})

    def lookups(self, names, total, threads, stop="", timeout=120):
        args = ["python3", "-c", LOOKUPS, ",".join(names), str(total), str(threads)] + ([stop] if stop else [])
        if stop:
            return self.popen(args, stdout=subprocess.PIPE, text=True)
        return json.loads(self.x(args, timeout=timeout).stdout)


def nodedns_rules(node):
    out = node.x(["iptables-save"]).stdout
    return [l for l in out.splitlines() if l.startswith("-A ") and "nodedns" in l]


def metric_sum(m, prefix):
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


# ------------------------------------------------------------ cluster objects

def service(ns, name, ip=None, headless=False):
    spec = {"type": "ClusterIP", "sessionAffinity": "None",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}]}
    if headless:
        spec.update({"clusterIP": "None", "clusterIPs": ["None"], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack"})
    else:
        spec.update({"clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack"})
    return {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def eslice(ns, svc, eps):
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": svc + "-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": r, "serving": r, "terminating": False},
                           "targetRef": {"kind": "Pod", "namespace": ns, "name": "pod-" + ip.replace(".", "-")}}
                          for ip, r in eps],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}


def fixture():
    ns = lambda n: {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": n}}
    return [ns("default"), ns("kube-system"), ns("other"),
            service("default", "kubernetes", "10.96.0.1"),
            service("kube-system", "kube-dns", "10.96.0.10"),
            service("default", "frontend", "10.96.40.7"),
            service("other", "web", "10.96.30.5"),
            service("other", "db", headless=True),
            eslice("other", "db", [("10.244.5.1", True), ("10.244.5.2", True), ("10.244.5.3", False)]),
            service("default", "cache", headless=True),
            eslice("default", "cache", [("10.244.6.1", True)])]


KUBELET_RESOLV = ("nameserver 169.254.20.10\n"
                  "search %s.svc.cluster.local svc.cluster.local cluster.local\n"
                  "options ndots:5\n")


# ------------------------------------------------------------ the node

class Node:
    def __init__(self):
        self.base = "%s%d-%04x" % (PREFIX, os.getpid(), random.randrange(0x10000))
        self.tmp = tempfile.mkdtemp(prefix="nodedns-pods-")
        _TMP.append(self.tmp)
        self.run_dir = os.path.join(self.tmp, "run")
        self.node = Ns(self.base, "node")
        self.pods = [Ns(self.base, "p1"), Ns(self.base, "p2")]
        self.pod_ns = ["default", "other"]
        self.instances = []

    def build(self):
        n = self.node
        n.create()
        # The link nodedns puts 169.254.20.10 on (no dummy type on this kernel).
        n.ip("link", "add", IFACE, "type", "veth", "peer", "name", IFACE + "p")
        n.ip("link", "set", IFACE, "up")
        n.ip("link", "set", IFACE + "p", "up")
        for i, (pod, kns) in enumerate(zip(self.pods, self.pod_ns), 1):
            pod.create()
            n.ip("link", "add", "veth%d" % i, "type", "veth", "peer", "name", "eth0", "netns", pod.name)
            n.ip("addr", "add", "10.123.%d.1/30" % i, "dev", "veth%d" % i)
            n.ip("link", "set", "veth%d" % i, "up")
            pod.ip("addr", "add", "10.123.%d.2/30" % i, "dev", "eth0")
            pod.ip("link", "set", "eth0", "up")
            pod.ip("route", "add", "default", "via", "10.123.%d.1" % i, "dev", "eth0")
            pod.resolv(KUBELET_RESOLV % kns)
        n.x(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        # kube-proxy-like rules that need conntrack in the node namespace.
        n.x(["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.123.0.0/16", "!", "-d", "10.123.0.0/16",
             "-j", "MASQUERADE"])
        n.x(["iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"])
        # NSD
        d = os.path.join(self.tmp, "nsd")
        conf = nsd.write(d, {"example.test": ZONE},
                         ["127.0.0.1@%d" % NSD_PORT, "10.123.1.1@%d" % NSD_PORT])
        self.nsd_log = open(os.path.join(d, "nsd.out"), "wb")
        n.popen(["nsd", "-d", "-c", conf], stdin=subprocess.DEVNULL,
                stdout=self.nsd_log, stderr=subprocess.STDOUT)
        wait_for(lambda: json.loads(n.probe("query", "127.0.0.1:%d" % NSD_PORT, "www.example.test"))
                 .get("answers"), 10, "NSD to answer")
        # The API stand-in.
        a = os.path.join(self.tmp, "api")
        os.makedirs(a)
        with open(os.path.join(a, "fixture.json"), "w") as f:
            json.dump({"objects": fixture()}, f)
        self.api_err = open(os.path.join(a, "stderr"), "wb")
        self.api = n.popen([sys.executable, FAKE_API, "--port", "0", "--control-port", "0",
                            "--token-file", os.path.join(a, "token"), "--cert-dir", os.path.join(a, "certs"),
                            "--fixture", os.path.join(a, "fixture.json")],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.api_err)
        line = self.api.stdout.readline()
        check(line, "API stand-in did not start")
        info = json.loads(line)
        self.kube_args = ["--kube-api", "https://127.0.0.1:%d" % info["port"],
                          "--kube-token-file", info["token_file"], "--kube-ca-file", info["ca"]]

    def nodedns(self, name):
        args = [BIN, "--listen", LL + ":53", "--setup-interface", IFACE, "--setup-iptables",
                "--upstream", "127.0.0.1:%d" % NSD_PORT, "--threads", "2"] + self.kube_args
        env = dict(os.environ, NODEDNS_RUN_DIR=self.run_dir)
        logpath = os.path.join(self.tmp, name + ".log")
        logf = open(logpath, "wb")
        p = self.node.popen(args, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        inst = Instance(p, logpath, logf)
        self.instances.append(inst)
        return inst

    def close(self):
        for f in [i.logf for i in self.instances] + [getattr(self, "nsd_log", None),
                                                      getattr(self, "api_err", None)]:
            if f:
                f.close()


class Instance(procs.LoggedProc):
    def __init__(self, proc, logpath, logf):
        super().__init__(proc, logpath, logf, name="nodedns")

    def wait_log(self, pattern, timeout=15, count=1):
        super().wait_log(pattern, timeout, count)

    def stop(self, timeout=15):
        return super().stop(timeout)


def conntrack_dns(node):
    """Conntrack entries of the node namespace for 169.254.20.10 port 53."""
    found = []
    for extra in ([], ["-p", "udp"], ["-p", "tcp"]):
        r = node.x(["conntrack", "-L"] + extra, check_rc=False)
        for l in r.stdout.splitlines():
            if LL in l and re.search(r"\b[ds]port=53\b", l):
                found.append(l)
    return found


# ------------------------------------------------------------ the test

def scenario(t):
    node, (p1, p2) = t.node, t.pods
    a = t.nodedns("first")
    a.wait_log(r"resolver \(pid \d+\) is serving")
    wait_for(lambda: len(nodedns_rules(node)) == 12, 10, "12 nodedns rules")
    addrs = node.ip("-o", "addr", "show", "dev", IFACE)
    check(LL + "/32" in addrs, "address on %s: %s" % (IFACE, addrs))
    # Synced with the API stand-in.
    wait_for(lambda: p1.getent("kubernetes") == ["10.96.0.1"], 15, "kubernetes from pod 1")

    # (1) names through the search path, from both pods.
    cases = [
        (p1, "kubernetes", ["10.96.0.1"]),
        (p1, "frontend", ["10.96.40.7"]),
        (p1, "web.other", ["10.96.30.5"]),
        (p1, "web.other.svc", ["10.96.30.5"]),
        (p1, "db.other", ["10.244.5.1", "10.244.5.2"]),
        (p1, "cache", ["10.244.6.1"]),
        (p2, "web", ["10.96.30.5"]),
        (p2, "db", ["10.244.5.1", "10.244.5.2"]),
        (p2, "kubernetes.default", ["10.96.0.1"]),
        (p2, "frontend.default.svc.cluster.local", ["10.96.40.7"]),
    ]
    for pod, name, want in cases:
        got = pod.getent(name)
        check(got == want, "getent ahosts %s in %s: %s, wanted %s" % (name, pod.name, got, want))
    check(p1.getent("web") == [], "`web` from a pod in default resolved (it is in other)")
    before = metric_sum(node.metrics(), "nodedns_upstream_requests_total")
    got = p1.getent("www.example.test")
    check(got == ["192.0.2.80", "2001:db8::80"], "www.example.test: %s" % got)
    after = metric_sum(node.metrics(), "nodedns_upstream_requests_total")
    up = after - before
    check(0 < up <= 2, "upstream queries for www.example.test via 3 search expansions: %d" % up)
    RESULTS["search_path"] = ("%d names from 2 pods OK; www.example.test (3 expansions + final, A+AAAA): "
                              "%d upstream queries" % (len(cases) + 1, up))

    # Control: conntrack is active in the node namespace (a pod query to NSD
    # on the node address leaves an entry), so an empty list below means
    # something.
    json.loads(p1.probe("query", "10.123.1.1:%d" % NSD_PORT, "www.example.test"))
    ctl = [l for l in node.x(["conntrack", "-L", "-p", "udp"], check_rc=False).stdout.splitlines()
           if "dport=%d" % NSD_PORT in l]
    check(ctl, "conntrack seems inactive in the node namespace (no entry for the control query)")

    # (2) 2,000 lookups from both pods in parallel.
    names1 = ["kubernetes", "frontend", "web.other", "db.other", "cache", "www.example.test", "api.example.test"]
    names2 = ["web", "db", "kubernetes.default", "frontend.default", "www.example.test", "api.example.test"]
    args = lambda names: ["python3", "-c", LOOKUPS, ",".join(names), "1000", "4"]
    pr = [p1.popen(args(names1), stdout=subprocess.PIPE, text=True),
          p2.popen(args(names2), stdout=subprocess.PIPE, text=True)]
    res = [json.loads(p.communicate(timeout=90)[0]) for p in pr]
    lat = sorted(res[0]["lat"] + res[1]["lat"])
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    fails = res[0]["fail"] + res[1]["fail"]
    RESULTS["lookups"] = "%d getaddrinfo from 2 pods x 4 threads: p50 %.2f ms, p99 %.2f ms, max %.1f ms, %d failed" % (
        len(lat), q(0.5), q(0.99), lat[-1] * 1000, fails)
    check(len(lat) == 2000, "lookups done: %d" % len(lat))
    check(fails == 0, "failed lookups: %s %s" % (res[0]["failures"], res[1]["failures"]))
    check(lat[-1] < 1.0, "slowest lookup %.0f ms" % (lat[-1] * 1000))

    # (3) no conntrack entries for DNS to 169.254.20.10.
    ct = conntrack_dns(node)
    RESULTS["conntrack"] = "%d entries for %s:53 after the lookups (control entry to NSD: %d)" % (
        len(ct), LL, len(ctl))
    check(ct == [], "conntrack entries for %s:53:\n%s" % (LL, "\n".join(ct[:10])))

    # (4a) kill -9 of the resolver while pods loop lookups. The warm-start
    # file (written within 5 s of the sync) lets each new resolver answer
    # cluster names before its own sync: no lookup may fail.
    wait_for(lambda: metric_sum(node.metrics(), "nodedns_warm_start_saves_total") >= 1, 10,
             "the warm-start file to be written")
    stop = os.path.join(t.tmp, "stop1")
    loop = p2.lookups(["web", "db", "www.example.test"], 0, 1, stop=stop)
    udp = p1.popen(["python3", PROBE, "loop", LL, "kubernetes.default.svc.cluster.local", "--interval-ms", "10",
                    "--timeout-ms", "1000", "--duration-s", "30", "--stop-file", stop],
                   stdout=subprocess.PIPE, text=True)
    kills = []
    for k in range(3):
        time.sleep(1.0)
        child = a.child()
        check(child, "no resolver child of the supervisor")
        kills.append(time.monotonic())
        os.kill(child, signal.SIGKILL)
        a.wait_log(r"restarted resolver \(pid \d+\) is serving", count=k + 1)
        wait_for(lambda: a.child() not in (None, child), 5, "a new resolver")
    time.sleep(1.0)
    open(stop, "w").close()
    lr = json.loads(loop.communicate(timeout=30)[0])
    ur = json.loads(udp.communicate(timeout=30)[0])
    # A kill -9 takes the resolver's sockets with it: until the new one binds
    # (~15 ms) a query meets ICMP port unreachable, and glibc, with one
    # nameserver, fails the lookup at once (EAI_AGAIN); a datagram queued on
    # the dead socket is lost, and glibc (kubelet's resolv.conf has no timeout
    # option) resends it after 5 s. Measured and printed; failed only if a bad
    # lookup started away from a kill (more than 0.3 s after one).
    bad = [(st, d, ok) for st, d, ok in lr["starts"] if not ok or d >= 1.0]
    away = [(round(st * 1000), round(d * 1000), ok) for st, d, ok in bad
            if not any(-0.05 <= st - (k - lr["t0"]) <= 0.3 for k in kills)]
    RESULTS["kill9"] = ("3 x kill -9 of the resolver: glibc loop (1 thread) %d lookups: %d failed (EAI_AGAIN), "
                        "%d took >= 1 s (max %.0f ms: glibc's 5 s resend), longest gap between answers %.0f ms; "
                        "UDP probe every 10 ms (1 s timeout): longest gap %.0f ms (%d sent, %d lost, %d refused)" % (
                            lr["n"], lr["fail"], sum(1 for b in bad if b[1] >= 1.0), lr["max_ms"], lr["max_gap_ms"],
                            ur["max_gap_ms"], ur["sent"], ur["lost"], ur["refused"]))
    check(not away, "glibc lookups failed or slow away from the kills (start ms, took ms, ok): %s" % away)
    check(lr["fail"] == 0, "glibc lookups failed across the kills (the warm-start file should answer): %s"
          % lr["failures"])
    check(ur["max_gap_ms"] < 1000, "UDP gap %.0f ms" % ur["max_gap_ms"])
    check(p2.getent("db") == ["10.244.5.1", "10.244.5.2"], "lookups after the restarts")

    # (4b) graceful handover to a second instance.
    b = t.nodedns("second")
    b.wait_log(r"resolver \(pid \d+\) is serving")
    stop = os.path.join(t.tmp, "stop2")
    loop = p2.lookups(["web", "db", "www.example.test"], 0, 1, stop=stop)
    udp = p1.popen(["python3", PROBE, "loop", LL, "kubernetes.default.svc.cluster.local", "--interval-ms", "2",
                    "--timeout-ms", "1000", "--duration-s", "30", "--stop-file", stop],
                   stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    t0 = time.monotonic()
    check(a.stop() == 0, "first instance exit status")
    took = time.monotonic() - t0
    time.sleep(0.5)
    check(len(nodedns_rules(node)) == 12, "rules after the first instance left: %d" % len(nodedns_rules(node)))
    check(LL + "/32" in node.ip("-o", "addr", "show", "dev", IFACE), "address removed at handover")
    check(p1.getent("kubernetes") == ["10.96.0.1"], "second instance answers")
    open(stop, "w").close()
    lr = json.loads(loop.communicate(timeout=30)[0])
    ur = json.loads(udp.communicate(timeout=30)[0])
    lost = ur["lost"] + ur["refused"] + ur["bad"]
    RESULTS["handover"] = ("SIGTERM of the first (exit after %.0f ms): glibc loop %d lookups, %d failed, gap %.0f ms; "
                           "UDP probe every 2 ms %d sent, %d lost, gap %.0f ms" % (
                               took * 1000, lr["n"], lr["fail"], lr["max_gap_ms"], ur["sent"], lost,
                               ur["max_gap_ms"]))
    check(lr["fail"] == 0 and lr["max_ms"] < 1000, "glibc lookups across handover: %s" % lr["failures"])
    check(lost == 0, "UDP queries lost across handover: %s" % ur["failures"][:10])

    # (5) SIGTERM of the last instance: rules and address gone.
    check(b.stop() == 0, "second instance exit status:\n%s" % b.log()[-2000:])
    raw = node.x(["iptables", "-t", "raw", "-S"]).stdout
    check("nodedns" not in raw, "raw rules left:\n%s" % raw)
    check(nodedns_rules(node) == [], "rules left: %s" % nodedns_rules(node))
    addrs = node.ip("-o", "addr", "show", "dev", IFACE)
    check(LL not in addrs, "address left: %s" % addrs)
    check(conntrack_dns(node) == [], "conntrack entries at the end")
    RESULTS["teardown"] = "after SIGTERM of the last instance: no nodedns rules, %s removed from %s" % (LL, IFACE)


def main():
    if os.geteuid() != 0:
        print("pods-e2e: skipped: needs root (network namespaces, iptables, conntrack)")
        print("pods-e2e: 0 passed, 0 failed (skipped)")
        return 0
    for tool in ("ip", "iptables", "iptables-save", "nsd", "getent", "conntrack", "openssl"):
        if not shutil.which(tool):
            print("pods-e2e: missing %s (scripts/deps.sh test installs it)" % tool)
            print("pods-e2e: 0 passed, 1 failed")
            return 1
    if not os.access(BIN, os.X_OK):
        print("pods-e2e: no binary at %s" % BIN)
        print("pods-e2e: 0 passed, 1 failed")
        return 1
    atexit.register(cleanup_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    net.remove_stale(PREFIX)
    t0 = time.monotonic()
    t = Node()
    ok = False
    try:
        t.build()
        scenario(t)
        ok = True
        print("PASS pods (%.1f s)" % (time.monotonic() - t0), flush=True)
    except Exception as e:  # noqa: BLE001
        print("FAIL pods (%.1f s): %s" % (time.monotonic() - t0, e), flush=True)
        if not isinstance(e, CheckFailed):
            traceback.print_exc()
        for i in t.instances:
            print("--- %s (tail)\n%s" % (i.logpath, i.log()[-1500:]))
    finally:
        cleanup_all(keep_tmp=False)
        t.close()
    for k, v in RESULTS.items():
        print("  %s: %s" % (k, v))
    print("pods-e2e: %d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
