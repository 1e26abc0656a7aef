#!/usr/bin/env python3
"""run.py - end-to-end tests of node setup and safe restarts.

Run as root: `make node` (NODEDNS_BIN=build/nodedns). Every test gets its own
network namespace (iptables, addresses and ports there are separate from the
host's, so nothing leaks), with a veth pair whose end `nd0` stands for the
interface nodedns puts its addresses on (this kernel may have no `dummy`
link type), NSD on 127.0.0.1:5300 inside it as the upstream, and
/etc/netns/NS/resolv.conf pointing glibc at 169.254.20.10. Namespaces,
processes and files are removed after each test, on Ctrl-C, and (stale ones
from a killed run) at the next start.

Prints PASS/FAIL per test, the measurements (DNS gap after kill -9 of the
resolver, queries lost in a rolling-update handover), and a closing line
"node: N passed, N failed".

NODE_VALGRIND=1 runs each supervisor under valgrind (the resolver it starts
runs natively, through NODEDNS_EXE); a valgrind error makes its exit status 99.
"""

import atexit
import json
import os
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
from lib.check import CheckFailed, Skip, check, wait_for  # noqa: E402
from lib.metrics import Metrics  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.abspath(os.environ.get("NODEDNS_BIN", os.path.join(REPO, "build", "nodedns")))
PROBE = os.path.join(HERE, "dnsprobe.py")
SNAPSHOT = os.path.join(REPO, "deploy", "examples", "demo-cluster.json")
PREFIX = "nddns-"
LL = "169.254.20.10"
CLUSTER_IP = "10.96.0.10"
V6 = "fd00:53::10"
NSD_PORT = 5300
VALGRIND = os.environ.get("NODE_VALGRIND") == "1"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "AddressSanitizer:DEADLYSIGNAL")

ZONE = """$ORIGIN node.test.
$TTL 300
@    3600 IN SOA ns1.node.test. hostmaster.node.test. 1 3600 900 604800 60
@    3600 IN NS  ns1.node.test.
ns1       IN A    127.0.0.1
www       IN A    192.0.2.10
www       IN AAAA 2001:db8::10
"""

RESULTS = {}


def _on_signal(signum, frame):
    net.cleanup()
    sys.exit(128 + signum)


# ------------------------------------------------------------------ netns

class Netns(net.Netns):
    def __init__(self, tag):
        super().__init__("%s%d-%s" % (PREFIX, os.getpid(), tag))

    def create(self):
        super().create()
        self.ip("link", "add", "nd0", "type", "veth", "peer", "name", "nd0p")
        self.ip("link", "set", "nd0", "up")
        self.ip("link", "set", "nd0p", "up")
        # The node's own address and default route live on the peer, so that
        # traffic to addresses that are not local has somewhere to go (and
        # meets the nat table, as on a real node).
        self.ip("addr", "add", "192.168.77.1/24", "dev", "nd0p")
        self.ip("route", "add", "default", "via", "192.168.77.2", "dev", "nd0p")
        self.resolv("nameserver %s\noptions timeout:1 attempts:1\n" % LL)

    def rules(self, cmd="iptables-save"):
        """Our rules, as iptables-save prints them, table-qualified."""
        out = self.x([cmd]).stdout
        table, res = "", []
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith("-A ") and "nodedns:" in line:
                res.append("%s %s" % (table, line))
        return res

    def addrs(self, dev="nd0"):
        out = self.ip("-o", "addr", "show", "dev", dev)
        return re.findall(r"inet6? (\S+)", out)

    def probe(self, *args, timeout=30):
        r = self.x(["python3", PROBE] + list(args), timeout=timeout)
        return r.stdout

    def query(self, server, name, qtype="A"):
        return json.loads(self.probe("query", server, name, qtype))

    def metrics(self, addr="127.0.0.1:9253"):
        return Metrics(self.probe("get", "http://%s/metrics" % addr)).series()


class Nsd:
    def __init__(self, ns, tmp):
        self.ns = ns
        self.dir = os.path.join(tmp, "nsd")
        self.proc = None

    def start(self):
        conf = nsd.write(self.dir, {"node.test": ZONE}, ["127.0.0.1@%d" % NSD_PORT])
        self.log = open(os.path.join(self.dir, "nsd.out"), "wb")
        self.proc = self.ns.popen(["nsd", "-d", "-c", conf], stdin=subprocess.DEVNULL,
                                  stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.ns.query("127.0.0.1:%d" % NSD_PORT, "www.node.test").get("answers"),
                 10, "NSD to answer")

    def stop(self):
        if self.proc:
            procs.kill_group(self.proc)
            self.log.close()


class Nodedns(procs.LoggedProc):
    """The supervisor process (the resolver is its child)."""

    def __init__(self, ctx, args, env=None, name="nodedns"):
        super().__init__(None, os.path.join(ctx.tmp, "%s.log" % name), name="nodedns")
        self.ctx = ctx
        self.args = args
        self.env = dict(os.environ)
        self.env["NODEDNS_RUN_DIR"] = ctx.run_dir
        self.env.update(env or {})
        self.wrap = []  # a command that runs the binary (e.g. capsh to drop a capability)

    def start(self):
        self.logf = open(self.logpath, "wb")
        cmd = self.wrap + [BIN]
        if VALGRIND:
            self.env["NODEDNS_EXE"] = BIN
            cmd = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                   "--errors-for-leak-kinds=definite,indirect", "--trace-children=no", BIN]
        self.proc = self.ctx.ns.popen(cmd + self.args, env=self.env, stdin=subprocess.DEVNULL,
                                      stdout=self.logf, stderr=subprocess.STDOUT)
        return self

    def mem_kb(self, pid=None):
        """(RSS, private) in kB: RSS counts the shared libraries' pages."""
        res = {}
        try:
            with open("/proc/%d/smaps_rollup" % (pid or self.pid)) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("Rss", "Private_Clean", "Private_Dirty"):
                        res[k] = int(v.split()[0])
        except OSError:
            return None
        return res.get("Rss"), res.get("Private_Clean", 0) + res.get("Private_Dirty", 0)


class Ctx:
    def __init__(self, tag):
        self.tmp = tempfile.mkdtemp(prefix="nodedns-node-%s-" % tag)
        self.run_dir = os.path.join(self.tmp, "run")
        self.ns = Netns(tag)
        self.nsd = Nsd(self.ns, self.tmp)
        self.nodes = []

    def __enter__(self):
        self.ns.create()
        self.nsd.start()
        return self

    def nodedns(self, extra=(), env=None, name="nodedns", listen=(LL + ":53",), iface="nd0",
                iptables=True, snapshot=True):
        args = []
        for l in listen:
            args += ["--listen", l]
        if iface:
            args += ["--setup-interface", iface]
        if iptables:
            args += ["--setup-iptables"]
        args += ["--upstream", "127.0.0.1:%d" % NSD_PORT, "--threads", "2"]
        if snapshot:
            args += ["--kube-snapshot", SNAPSHOT]
        args += list(extra)
        n = Nodedns(self, args, env, name)
        self.nodes.append(n)
        return n

    def __exit__(self, *exc):
        for n in self.nodes:
            if n.proc:
                procs.kill_group(n.proc)
                n.close()
        self.nsd.stop()
        self.ns.destroy()
        for n in self.nodes:
            if n.proc:
                text = n.log()
                for m in SANITIZER_MARKERS:
                    if m in text and exc[0] is None:
                        raise CheckFailed("%s in %s:\n%s" % (m, n.logpath, text[-4000:]))
        if exc[0] is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def expected_rules(ip, port=53, health=8080, family=4):
    cidr = "%s/%d" % (ip, 32 if family == 4 else 128)
    ipport = "%s:%d" % (ip, port) if family == 4 else "[%s]:%d" % (ip, port)
    hp = "%s:%d" % (ip, health) if family == 4 else "[%s]:%d" % (ip, health)
    r = []
    for p in ("udp", "tcp"):
        d = "-d %s -p %s -m %s --dport %d" % (cidr, p, p, port)
        s = "-s %s -p %s -m %s --sport %d" % (cidr, p, p, port)
        r.append('raw -A PREROUTING %s -m comment --comment "nodedns: skip conntrack for %s to %s" -j NOTRACK' % (d, p, ipport))
        r.append('raw -A OUTPUT %s -m comment --comment "nodedns: skip conntrack for %s to %s" -j NOTRACK' % (d, p, ipport))
        r.append('filter -A INPUT %s -m comment --comment "nodedns: accept %s to %s" -j ACCEPT' % (d, p, ipport))
        r.append('raw -A OUTPUT %s -m comment --comment "nodedns: skip conntrack for %s from %s" -j NOTRACK' % (s, p, ipport))
        r.append('filter -A OUTPUT %s -m comment --comment "nodedns: accept %s from %s" -j ACCEPT' % (s, p, ipport))
    if health:
        r.append('raw -A OUTPUT -d %s -p tcp -m tcp --dport %d -m comment --comment "nodedns: skip conntrack for health checks to %s" -j NOTRACK' % (cidr, health, hp))
        r.append('raw -A OUTPUT -s %s -p tcp -m tcp --sport %d -m comment --comment "nodedns: skip conntrack for health checks from %s" -j NOTRACK' % (cidr, health, hp))
    return sorted(r)


def wait_rules(ns, n, cmd="iptables-save", timeout=10):
    return wait_for(lambda: len(ns.rules(cmd)) == n, timeout, "%d nodedns rules in %s" % (n, cmd))


def serving(node, rules=12, ns=None):
    node.wait_log(r"resolver \(pid \d+\) is serving")
    if rules:
        wait_rules(ns or node.ctx.ns, rules)


# ------------------------------------------------------------------ tests

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def setup_query_teardown(ctx):
    ns = ctx.ns
    # Someone else's rule at the top of raw PREROUTING: ours must go above it.
    ns.x(["iptables", "-t", "raw", "-A", "PREROUTING", "-m", "comment", "--comment", "other", "-j", "ACCEPT"])
    n = ctx.nodedns(env={"NODEDNS_REENSURE_MS": "200"}).start()
    serving(n)
    check(LL + "/32" in ns.addrs(), "address on nd0: %s" % ns.addrs())
    got = sorted(ns.rules())
    check(got == expected_rules(LL), "rules:\n%s\nwanted:\n%s" % ("\n".join(got), "\n".join(expected_rules(LL))))
    pre = ns.x(["iptables", "-t", "raw", "-S", "PREROUTING"]).stdout.splitlines()
    check(pre[-1].endswith("--comment other -j ACCEPT") and "nodedns" in pre[1],
          "ours not at the top of PREROUTING: %s" % pre)
    # glibc through /etc/netns/NS/resolv.conf: forwarded and cluster names.
    r = ns.x(["getent", "ahosts", "www.node.test"], check_rc=False)
    check("192.0.2.10" in r.stdout, "getent www.node.test: %r %r" % (r.stdout, r.stderr))
    r = ns.x(["getent", "ahosts", "kubernetes.default.svc.cluster.local"], check_rc=False)
    check("10.96.0.1" in r.stdout, "getent kubernetes.default: %r" % r.stdout)
    # The node's own queries went through the raw OUTPUT NOTRACK rule.
    out = ns.x(["iptables", "-t", "raw", "-L", "OUTPUT", "-v", "-n", "-x"]).stdout
    hit = [l for l in out.splitlines() if "skip conntrack for udp to" in l]
    check(hit and int(hit[0].split()[0]) > 0, "NOTRACK counter for the node's queries: %s" % hit)
    # Re-ensured five times a second: still exactly one copy of each rule.
    time.sleep(1.0)
    check(sorted(ns.rules()) == expected_rules(LL), "rules changed after re-ensures")
    m = ns.metrics()
    check(m.get("nodedns_node_setup_ok") == 1 and m.get("nodedns_node_setup_rules") == 12, "metrics: %s" %
          {k: v for k, v in m.items() if "node_setup" in k})
    check(m.get("nodedns_node_setup_ensures_total", 0) >= 4, "ensures: %s" % m.get("nodedns_node_setup_ensures_total"))
    check(sum(v for k, v in m.items() if k.startswith("nodedns_node_setup_errors_total")) == 0, "errors counted")
    check(m.get('nodedns_node_setup_repairs_total{kind="rule"}') == 0, "repairs counted without a cause")
    child = n.child()
    RESULTS["memory"] = "supervisor RSS/private %s kB, resolver (2 threads, demo snapshot) %s kB" % (
        n.mem_kb(), n.mem_kb(child))
    # SIGHUP goes to the resolver, which keeps running.
    n.signal(signal.SIGHUP)
    n.wait_log(r"SIGHUP: reloaded")
    check(n.child() == child, "SIGHUP restarted the resolver")
    t0 = time.monotonic()
    rc = n.stop()
    RESULTS["sigterm_exit_ms"] = round((time.monotonic() - t0) * 1000)
    check(rc == 0, "exit status %s after SIGTERM:\n%s" % (rc, n.log()[-2000:]))
    check(ns.rules() == [], "rules left after SIGTERM: %s" % ns.rules())
    check(LL + "/32" not in ns.addrs(), "address left after SIGTERM")
    check(ns.link_exists("nd0"), "nd0 (not created by nodedns) was deleted")
    check("--comment other" in ns.x(["iptables", "-t", "raw", "-S"]).stdout, "someone else's rule removed")
    check(not os.path.exists("/proc/%d" % child), "resolver still running")
    log = n.log()
    check(log.index("removed 12 rules") < log.index("removed %s from nd0" % LL), "teardown order: rules first")


@test
def teardown_of_what_is_gone(ctx):
    """Someone removed part of the setup before the exit: teardown removes
    the rest, reports no error, exits 0."""
    ns = ctx.ns
    n = ctx.nodedns().start()
    serving(n)
    ns.x(["iptables", "-t", "raw", "-F"])
    ns.ip("addr", "del", LL + "/32", "dev", "nd0")
    check(n.stop() == 0, "exit status")
    log = n.log()
    check("node setup removed" in log and " error " not in log, "teardown:\n%s" % log[-1500:])
    check(ns.rules() == [], "filter rules left")


@test
def kill9_restart_gap(ctx):
    ns = ctx.ns
    n = ctx.nodedns().start()
    serving(n)
    stop = os.path.join(ctx.tmp, "probe.stop")
    probe = ns.popen(["python3", PROBE, "loop", LL, "www.node.test", "--interval-ms", "10",
                      "--timeout-ms", "1000", "--duration-s", "30", "--stop-file", stop],
                     stdout=subprocess.PIPE, text=True)
    pids = []
    for i in range(3):
        time.sleep(1.0)
        child = n.child()
        pids.append(child)
        os.kill(child, signal.SIGKILL)
        n.wait_log(r"restarted resolver \(pid \d+\) is serving", count=i + 1)
    time.sleep(1.0)
    open(stop, "w").close()
    res = json.loads(probe.communicate(timeout=30)[0])
    check(len(set(pids + [n.child()])) == 4, "resolver pids: %s + %s" % (pids, n.child()))
    check(sorted(ns.rules()) == expected_rules(LL), "rules changed across restarts")
    m = ns.metrics()
    check(m.get("nodedns_resolver_restarts_total") == 3, "restarts metric: %s" % m.get("nodedns_resolver_restarts_total"))
    restart_ms = [int(x) for x in re.findall(r"restarted resolver \(pid \d+\) is serving after (\d+) ms", n.log())]
    RESULTS["kill9"] = ("3 x kill -9 of the resolver, client every 10 ms: longest gap %.0f ms (top: %s), "
                        "%d sent, %d answered, %d refused (ICMP unreachable), %d lost; restart to serving: %s ms"
                        % (res["max_gap_ms"], [g[0] for g in res["top_gaps"]], res["sent"], res["ok"],
                           res["refused"], res["lost"], restart_ms))
    check(res["max_gap_ms"] < 1000, "gap of %.0f ms after kill -9" % res["max_gap_ms"])
    check(n.stop() == 0, "exit status")
    check(ns.rules() == [], "rules left")


@test
def reensure_repairs(ctx):
    ns = ctx.ns
    n = ctx.nodedns(env={"NODEDNS_REENSURE_MS": "300"}).start()
    serving(n)
    t0 = time.monotonic()
    ns.x(["iptables", "-t", "raw", "-F"])
    ns.x(["iptables", "-F", "INPUT"])
    wait_rules(ns, 12, timeout=3)
    RESULTS["reensure"] = "rules back %.0f ms after `iptables -t raw -F; iptables -F INPUT` (interval 300 ms)" % (
        (time.monotonic() - t0) * 1000)
    check(sorted(ns.rules()) == expected_rules(LL), "rules after repair")
    ns.ip("addr", "del", LL + "/32", "dev", "nd0")
    wait_for(lambda: LL + "/32" in ns.addrs(), 3, "address re-added")
    # A duplicate (two agents raced) is removed.
    dup = [r for r in ns.rules() if r.startswith("raw -A PREROUTING")][0].split(" ", 1)[1]
    ns.x(["sh", "-c", "iptables -t raw %s" % dup.replace("-A PREROUTING", "-I PREROUTING 1")])
    check(len(ns.rules()) == 13, "duplicate not inserted")
    wait_rules(ns, 12, timeout=3)
    m = ns.metrics()
    rep = m.get('nodedns_node_setup_repairs_total{kind="rule"}', 0)
    check(rep >= 10, "rule repairs (8 raw + 2 INPUT flushed): %s" % rep)
    check(m.get('nodedns_node_setup_repairs_total{kind="address"}', 0) >= 1, "address repairs")
    check(n.stop() == 0, "exit status")
    check(ns.rules() == [] and LL + "/32" not in ns.addrs(), "teardown after repairs")


@test
def handover_two_instances(ctx):
    ns = ctx.ns
    a = ctx.nodedns(name="old").start()
    serving(a)
    b = ctx.nodedns(name="new").start()
    b.wait_log(r"resolver \(pid \d+\) is serving")
    time.sleep(0.3)
    check(sorted(ns.rules()) == expected_rules(LL), "two instances: rules %d" % len(ns.rules()))
    stop = os.path.join(ctx.tmp, "probe.stop")
    probes = [ns.popen(["python3", PROBE, "loop", LL, "www.node.test", "--interval-ms", iv,
                        "--timeout-ms", "1000", "--duration-s", "30", "--stop-file", stop],
                       stdout=subprocess.PIPE, text=True) for iv in ("10", "0.5")]
    time.sleep(1.0)
    t0 = time.monotonic()
    rc = a.stop()
    took = time.monotonic() - t0
    check(rc == 0, "old instance exit %s" % rc)
    check("another nodedns instance holds" in a.log(), "old instance did not see the new one:\n%s" % a.log()[-1500:])
    check("tearing down" not in a.log(), "old instance tore down")
    time.sleep(1.0)
    open(stop, "w").close()
    res, fast = (json.loads(p.communicate(timeout=30)[0]) for p in probes)
    check(sorted(ns.rules()) == expected_rules(LL), "rules after the old instance left: %d" % len(ns.rules()))
    check(LL + "/32" in ns.addrs(), "address gone after the old instance left")
    r = ns.query(LL, "www.node.test")
    check(r.get("answers") == ["192.0.2.10"], "new instance answers: %s" % r)
    RESULTS["handover"] = ("old+new instance, SIGTERM old (exit after %.0f ms), client every 10 ms with a "
                           "fresh source port: %d sent, %d answered, %d lost, %d refused, longest gap %.0f ms"
                           % (took * 1000, res["sent"], res["ok"], res["lost"], res["refused"],
                              res["max_gap_ms"] or -1))
    RESULTS["handover_fast"] = ("the same with a second client sending as fast as it can (0.5 ms "
                                "interval): %d sent, %d answered, %d lost, %d refused"
                                % (fast["sent"], fast["ok"], fast["lost"], fast["refused"]))
    RESULTS["handover_failures"] = (res["failures"] + fast["failures"])[:12]
    check(res["ok"] > res["sent"] // 2, "most queries lost in the handover: %s" % res)
    # The new instance tears everything down, the address the old one added included.
    check(b.stop() == 0, "new instance exit status")
    check(ns.rules() == [], "rules left after the last instance")
    check(LL + "/32" not in ns.addrs(), "address added by the old instance left behind")


BLACKHOLE = """import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 5399))
s.listen(64)
print("listening", flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)  # never read, never answer
"""


@test
def handover_with_queries_in_flight(ctx):
    """The same handover while the old instance has queries waiting on a
    slow upstream: it drains them (up to 2 s) before it closes its sockets."""
    ns = ctx.ns
    bh = ns.popen(["python3", "-c", BLACKHOLE], stdout=subprocess.PIPE, text=True)
    check(bh.stdout.readline().strip() == "listening", "blackhole upstream")
    extra = ("--stub", "slow.test=127.0.0.1:5399")
    a = ctx.nodedns(name="old", extra=extra).start()
    serving(a)
    b = ctx.nodedns(name="new", extra=extra).start()
    b.wait_log(r"resolver \(pid \d+\) is serving")
    stop = os.path.join(ctx.tmp, "probe.stop")
    probe = ns.popen(["python3", PROBE, "loop", LL, "www.node.test", "--interval-ms", "2",
                      "--timeout-ms", "1000", "--duration-s", "30", "--stop-file", stop],
                     stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    # Questions that hang upstream, from many source ports: both instances get some.
    slow = ns.popen(["python3", PROBE, "loop", LL, "hang.slow.test", "--interval-ms", "5",
                     "--timeout-ms", "3000", "--duration-s", "0.2"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.4)
    t0 = time.monotonic()
    check(a.stop() == 0, "old instance exit status")
    took = time.monotonic() - t0
    time.sleep(0.5)
    open(stop, "w").close()
    res = json.loads(probe.communicate(timeout=30)[0])
    slow.communicate(timeout=30)
    check(sorted(ns.rules()) == expected_rules(LL), "rules after the old instance left")
    lost_window = [f[0] for f in res["failures"]]
    RESULTS["handover_inflight"] = (
        "old instance with queries hanging upstream drains %.0f ms; client every 2 ms: %d sent, "
        "%d answered, %d lost%s" % (took * 1000, res["sent"], res["ok"], res["lost"] + res["refused"] + res["bad"],
                                    " (sent between %.0f and %.0f ms)" % (min(lost_window), max(lost_window))
                                    if lost_window else ""))
    check(b.stop() == 0, "new instance exit status")
    check(ns.rules() == [], "rules left")


@test
def crash_loop_removes_rules(ctx):
    ns = ctx.ns
    n = ctx.nodedns().start()
    serving(n)
    for i in range(5):
        child = wait_for(lambda: n.child(), 5, "a resolver")
        os.kill(child, signal.SIGKILL)
        if i < 4:
            n.wait_log(r"restarted resolver \(pid \d+\) is serving", count=i + 1)
            wait_for(lambda: n.child() not in (None, child), 5, "a new resolver")
    n.wait_log(r"died 5 times within 10 s")
    t0 = time.monotonic()
    wait_for(lambda: ns.rules() == [], 2, "rules removed during the backoff")
    removed_after = time.monotonic() - t0
    check(LL + "/32" in ns.addrs(), "the address is kept during the backoff")
    wait_rules(ns, 12, timeout=5)
    back_after = time.monotonic() - t0
    m = ns.metrics()
    check(m.get("nodedns_resolver_crash_loops_total") == 1, "crash loops metric")
    RESULTS["crash_loop"] = ("5 deaths in <10 s: rules removed %.0f ms after the 5th, back %.1f s later "
                             "(1 s backoff + start)" % (removed_after * 1000, back_after))
    check(n.stop() == 0, "exit status")


@test
def transparent_fallback(ctx):
    """Transparent (iptables kube-proxy) mode: nodedns also on the kube-dns
    ClusterIP; kube-proxy's DNAT stands in as a nat OUTPUT rule to NSD.
    NSD answers AA=1 RA=0, nodedns RA=1: the flags say who answered."""
    ns = ctx.ns
    for proto in ("udp", "tcp"):
        ns.x(["iptables", "-t", "nat", "-A", "OUTPUT", "-d", CLUSTER_IP, "-p", proto, "--dport", "53",
              "-j", "DNAT", "--to-destination", "127.0.0.1:%d" % NSD_PORT])

    def who():
        r = ns.query(CLUSTER_IP, "www.node.test")
        if r.get("answers") != ["192.0.2.10"]:
            return "none: %s" % r
        return "nodedns" if r["ra"] else "kube-dns" if r["aa"] else "?"
    check(who() == "kube-dns", "before nodedns: %s" % who())
    n = ctx.nodedns(listen=(LL + ":53", CLUSTER_IP + ":53"), env={"NODEDNS_REENSURE_MS": "500"}).start()
    serving(n, rules=24)
    check(who() == "nodedns", "with the rules: %s" % who())
    tcp = ns.x(["dig", "+tcp", "+short", "@" + CLUSTER_IP, "www.node.test"]).stdout.strip()
    check(tcp == "192.0.2.10", "TCP through the ClusterIP: %r" % tcp)
    # The address without the NOTRACK rules (what the crash-loop backoff
    # leaves) is harmless: kube-proxy's DNAT still applies. The supervisor is
    # stopped (SIGSTOP) for this step: its re-ensure (every 500 ms) would put
    # the rules back at any moment, often between the flush and the query,
    # which then met them again and was answered by nodedns. Stopped, it can
    # start no pass (a pass in flight computed nothing to insert: all 24 were
    # there); the resolver, a process of its own, keeps serving the address.
    # The raw rules are checked gone before and after the query, so the
    # answer is known to have come without them.
    def raw_rules():
        return [r for r in ns.rules() if r.startswith("raw ")]
    n.signal(signal.SIGSTOP)
    try:
        ns.x(["iptables", "-t", "raw", "-F"])
        check(raw_rules() == [], "raw rules left after the flush: %s" % raw_rules())
        got = who()
        check(raw_rules() == [], "raw rules back while the supervisor was stopped: %s" % raw_rules())
        check(got == "kube-dns", "address kept, rules gone: %s" % got)
    finally:
        n.signal(signal.SIGCONT)
    wait_rules(ns, 24, timeout=3)
    check(who() == "nodedns", "after the re-ensure: %s" % who())
    check(n.stop() == 0, "exit status")
    check(who() == "kube-dns", "after teardown: %s" % who())
    RESULTS["transparent"] = "ClusterIP answered by nodedns with the rules, by kube-dns (DNAT) without them and after exit"


@test
def startup_failure(ctx):
    ns = ctx.ns
    # Bad environment: exit 2, one line.
    n = ctx.nodedns(env={"NODEDNS_REENSURE_MS": "5"}, name="badenv").start()
    check(n.wait() == 2, "bad NODEDNS_REENSURE_MS: exit %s" % n.proc.returncode)
    check("NODEDNS_REENSURE_MS" in n.log(), "message: %s" % n.log())
    # Port taken by a socket without SO_REUSEPORT: the supervisor binds the
    # listening sockets itself (it hands them to every resolver), so it exits
    # 1 at once, naming the address, before any node setup; no rules.
    holder = ns.popen(["python3", "-c",
                       "import socket,time\n"
                       "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                       "s.setsockopt(socket.SOL_IP,15,1)\n"  # IP_FREEBIND
                       "s.bind(('%s',53))\nprint('bound',flush=True)\ntime.sleep(60)" % LL],
                      stdout=subprocess.PIPE, text=True)
    check(holder.stdout.readline().strip() == "bound", "port holder")
    n = ctx.nodedns(name="inuse").start()
    check(n.wait(10) == 1, "port in use: exit %s" % n.proc.returncode)
    check("169.254.20.10:53/udp: Address already in use" in n.log(), "log:\n%s" % n.log()[-1500:])
    check(ns.rules() == [], "rules installed for a resolver that never served")
    check(LL + "/32" not in ns.addrs(), "address left")
    procs.kill_group(holder)


@test
def legacy_backend_detected(ctx):
    ns = ctx.ns
    if not shutil.which("iptables-legacy") or not shutil.which("iptables-nft"):
        raise Skip("needs both iptables-legacy and iptables-nft")
    ns.x(["iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"])
    n = ctx.nodedns().start()
    n.wait_log(r"using iptables-legacy \(it holds kube-proxy's KUBE-\* chains\)")
    wait_rules(ns, 12, cmd="iptables-legacy-save")
    check(ns.rules("iptables-nft-save") == [], "rules in the nft backend too")
    check(n.stop() == 0, "exit status")
    check(ns.rules("iptables-legacy-save") == [], "legacy rules left")
    check("KUBE-SERVICES" in ns.x(["iptables-legacy-save", "-t", "nat"]).stdout, "kube chain touched")


@test
def legacy_backend_without_net_raw(ctx):
    """kube-proxy in iptables-legacy, nodedns without NET_RAW: legacy cannot
    be read, so the choice is a guess from /proc/net/ip_tables_names (legacy,
    not the system default nft), said loudly and counted."""
    ns = ctx.ns
    for tool in ("iptables-legacy", "iptables-nft", "capsh"):
        if not shutil.which(tool):
            raise Skip("needs iptables-legacy, iptables-nft and capsh")
    ns.x(["iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"])
    n = ctx.nodedns()
    n.wrap = ["capsh", "--drop=cap_net_raw", "--", "-c", 'exec "$0" "$@"']
    n.start()
    n.wait_log(r"iptables-legacy-save failed .*NET_RAW")
    n.wait_log(r"using iptables-legacy without seeing kube-proxy's KUBE-\* chains: a guess")
    wait_for(lambda: ns.query(LL, "www.node.test").get("answers"), 10, "an answer")
    m = ns.metrics()
    check(m.get("nodedns_node_setup_backend_fallback") == 1, "fallback gauge: %r"
          % m.get("nodedns_node_setup_backend_fallback"))
    check((m.get("nodedns_node_setup_backend_fallbacks_total") or 0) >= 1, "fallbacks counter")
    check(ns.rules("iptables-nft-save") == [], "rules went to nft, not kube-proxy's legacy")
    check(n.stop() == 0, "exit status")


@test
def xtables_lock_contention(ctx):
    """Another agent (kube-proxy) holds the xtables lock for 6 s: nodedns
    waits on it (iptables-restore -w 5), counts iptables_lock, retries; and
    meanwhile the supervisor still restarts a dead resolver at once, because
    node setup runs off its loop."""
    ns = ctx.ns
    if not shutil.which("iptables-legacy") or not shutil.which("flock"):
        raise Skip("needs iptables-legacy and flock")
    lock = os.path.join(ctx.tmp, "xtables.lock")
    holder = ns.popen(["flock", "-x", lock, "-c", "echo held; sleep 6"], stdout=subprocess.PIPE, text=True)
    check(holder.stdout.readline().strip() == "held", "lock holder")
    n = ctx.nodedns(env={"NODEDNS_IPTABLES_BACKEND": "legacy", "XTABLES_LOCKFILE": lock,
                         "NODEDNS_REENSURE_MS": "300"}).start()
    serving(n, rules=0)
    time.sleep(0.3)
    check(ns.rules("iptables-legacy-save") == [], "rules went in while the lock was held")
    t0 = time.monotonic()
    os.kill(n.child(), signal.SIGKILL)
    n.wait_log(r"restarted resolver \(pid \d+\) is serving")
    restart = time.monotonic() - t0
    check(restart < 1.0, "restart took %.1f s while iptables waited on the lock" % restart)
    n.wait_log(r"exit 4: .*xtables lock", timeout=10)
    holder.wait(timeout=10)
    wait_rules(ns, 12, cmd="iptables-legacy-save", timeout=8)
    m = ns.metrics()
    check(m.get('nodedns_node_setup_errors_total{kind="iptables_lock"}', 0) >= 1, "lock errors counted")
    RESULTS["xtables_lock"] = ("lock held 6 s: restore gave up after -w 5 (counted as iptables_lock), rules in "
                               "after release; resolver restart meanwhile took %.0f ms" % (restart * 1000))
    check(n.stop() == 0, "exit status")
    check(ns.rules("iptables-legacy-save") == [], "rules left")


@test
def ipv6_dual_stack(ctx):
    ns = ctx.ns
    n = ctx.nodedns(listen=(LL + ":53", "[%s]:53" % V6)).start()
    serving(n, rules=0)
    wait_rules(ns, 12, cmd="ip6tables-save")
    wait_rules(ns, 12)
    check(V6 + "/128" in ns.addrs(), "v6 address: %s" % ns.addrs())
    flags = ns.ip("-6", "-o", "addr", "show", "dev", "nd0")
    check("nodad" in flags, "IFA_F_NODAD: %s" % flags)
    got = sorted(ns.rules("ip6tables-save"))
    want = expected_rules(V6, family=6)
    check(got == want, "v6 rules:\n%s\nwanted:\n%s" % ("\n".join(got), "\n".join(want)))
    out = ns.x(["dig", "+short", "@" + V6, "www.node.test", "AAAA"]).stdout.strip()
    check(out == "2001:db8::10", "query over IPv6: %r" % out)
    check(ns.metrics().get("nodedns_node_setup_rules") == 24, "rules gauge")
    check(n.stop() == 0, "exit status")
    check(ns.rules("ip6tables-save") == [] and ns.rules() == [], "rules left")
    check(V6 + "/128" not in ns.addrs(), "v6 address left")


@test
def supervisor_killed_then_new_instance(ctx):
    """kill -9 of the supervisor itself (the one thing that still leaves the
    rules): the resolver follows it (PR_SET_PDEATHSIG), and the next
    instance adopts what was left and removes it at its own exit."""
    ns = ctx.ns
    a = ctx.nodedns(name="first").start()
    serving(a)
    child = a.child()
    a.signal(signal.SIGKILL)
    a.wait()
    wait_for(lambda: not os.path.exists("/proc/%d" % child), 5, "the orphaned resolver to exit")
    check(len(ns.rules()) == 12 and LL + "/32" in ns.addrs(), "left-overs expected")
    b = ctx.nodedns(name="second").start()
    serving(b)
    time.sleep(0.3)
    check(sorted(ns.rules()) == expected_rules(LL), "no duplicates after adoption: %d" % len(ns.rules()))
    check(b.stop() == 0, "exit status")
    check(ns.rules() == [] and LL + "/32" not in ns.addrs(), "left-overs not removed")


@test
def missing_link_without_dummy(ctx):
    ns = ctx.ns
    r = ns.x(["ip", "link", "add", "probe0", "type", "dummy"], check_rc=False)
    has_dummy = r.returncode == 0
    if has_dummy:
        ns.ip("link", "del", "probe0")
    # /health would bind the listen address, which is not there.
    n = ctx.nodedns(iface="nodelocaldns", extra=("--health", "127.0.0.1:8080")).start()
    n.wait_log(r"resolver \(pid \d+\) is serving")
    if has_dummy:
        wait_rules(ns, 12)
        check(ns.link_exists("nodelocaldns"), "dummy link created")
        check(n.stop() == 0, "exit status")
        check(not ns.link_exists("nodelocaldns"), "dummy link left")
        RESULTS["dummy"] = "dummy link created and deleted"
        return
    n.wait_log(r"cannot create dummy link nodelocaldns")
    time.sleep(0.5)
    # No interface, no rules: NOTRACK towards an address that is not local
    # would black-hole the node's DNS.
    check(ns.rules() == [], "rules installed without the interface")
    m = ns.metrics()
    check(m.get('nodedns_node_setup_errors_total{kind="interface"}', 0) >= 1, "interface error counted")
    check(m.get("nodedns_node_setup_ok") == 0, "ok gauge")
    check(n.stop() == 0, "exit status")
    RESULTS["dummy"] = "this kernel has no dummy link type: create error logged and counted, no rules installed"


def main():
    if os.geteuid() != 0:
        print("node: needs root (network namespaces, iptables)")
        print("node: 0 passed, 0 failed (skipped)")
        return 0
    for tool in ("ip", "iptables", "nsd", "dig", "getent"):
        if not shutil.which(tool):
            print("node: missing %s (scripts/deps.sh test installs it)" % tool)
            print("node: 0 passed, 1 failed")
            return 1
    if not os.access(BIN, os.X_OK):
        print("node: no binary at %s" % BIN)
        print("node: 0 passed, 1 failed")
        return 1
    atexit.register(net.cleanup)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    net.remove_stale(PREFIX)
    only = sys.argv[1:]
    passed = failed = skipped = 0
    for i, fn in enumerate(TESTS):
        if only and fn.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            with Ctx("t%d" % i) as ctx:
                fn(ctx)
            passed += 1
            print("PASS %s (%.1f s)" % (fn.__name__, time.monotonic() - t0), flush=True)
        except Skip as e:
            skipped += 1
            print("SKIP %s: %s" % (fn.__name__, e), flush=True)
        except Exception as e:  # noqa: BLE001 - any failure fails the test
            failed += 1
            print("FAIL %s (%.1f s): %s" % (fn.__name__, time.monotonic() - t0, e), flush=True)
            if not isinstance(e, CheckFailed):
                traceback.print_exc()
    net.cleanup()
    if RESULTS:
        print("measurements:")
        for k, v in RESULTS.items():
            print("  %s: %s" % (k, v))
    print("node: %d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
