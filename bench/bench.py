#!/usr/bin/env python3
"""bench/bench.py - nodedns against unbound, kresd, pdns-recursor and dnsmasq.

Started by bench/run.sh (which `make bench` calls); see bench/README.md for
what is measured and how. Only loopback addresses, free ports, every process
we start is in its own session and is killed on exit, every wait is bounded.
"""
import argparse
import atexit
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import string
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
from lib import check, dnswire, procs  # noqa: E402
from lib.metrics import Metrics  # noqa: E402
from lib.net import free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers")
LOCAL = "127.0.0.1"
ZONE = "bench.example"
CLUSTER_DOMAIN = "cluster.local"
SERVER_CPUS = "1"   # the server under test
CLIENT_CPUS = "0"   # dnsperf (and NSD, the upstream)
CACHE_MB = 512      # cache size given to every server
N_ZONE_NAMES = 10000
N_SERVICES = 1000
N_NAMESPACES = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every process we started, each in its own session; run.sh kills what its
# pids file lists if we die hard.
PROCS = procs.Registry()


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ----------------------------------------------------------------- processes

def on_signal(sig, _frame):
    raise SystemExit(128 + sig)


def tail(path, n=8):
    """The last @n lines of a log, on one line."""
    return " | ".join(l.strip() for l in check.tail(path, n).splitlines())


def run(argv, timeout=30, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def proc_tree(root):
    """root and all its descendants (for multi-process servers)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            parent[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in parent or p == root:
            out.append(p)
            todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def cpu_sample(pids):
    """{pid: (schedstat ns summed over the live threads, utime ns, stime ns)}."""
    out = {}
    for pid in pids:
        sched = 0
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                try:
                    with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                        sched += int(f.read().split()[0])
                except (OSError, ValueError):
                    pass
            with open("/proc/%d/stat" % pid) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            utime, stime = int(fields[11]), int(fields[12])
            out[pid] = (sched, utime * 1e9 / CLK_TCK, stime * 1e9 / CLK_TCK)
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_delta(before, after):
    sched = usr = sys_ = 0.0
    for pid, (s1, u1, k1) in after.items():
        s0, u0, k0 = before.get(pid, (0, 0, 0))
        sched += s1 - s0
        usr += u1 - u0
        sys_ += k1 - k0
    return sched, usr, sys_


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            total += procs.status(pid).get("VmRSS", 0)
        except OSError:
            pass
    return total


# ----------------------------------------------------------------- DNS probe

def dns_query(port, name, qtype, timeout=1.0):
    """One UDP query; returns (rcode name, [(type, rdata bytes)]). Raises
    socket.timeout when no reply comes within @timeout s."""
    data = dnswire.udp_exchange((LOCAL, port), dnswire.build_query(name, qtype), timeout)
    if data is None:
        raise socket.timeout("no reply from %s:%d within %.1f s" % (LOCAL, port, timeout))
    m = dnswire.parse(data)
    return m.rcode_name, [(r.type, r.rdata) for r in m.answer]


# ----------------------------------------------------------------- data

def host_ip(i):
    return "10.1.%d.%d" % (i // 256, i % 256)


def host_ip6(i):
    return "fd00:1::%x" % i


def svc_ip(i):
    return "10.96.%d.%d" % (1 + i // 250, 1 + i % 250)


def generate(d, cfg):
    """Zone, cluster and query files under d. Returns the workload table."""
    rnd = random.Random(4242)
    # --- the upstream zone
    z = ["$TTL 3600",
         "%s. IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 3600" % (ZONE, ZONE, ZONE),
         "%s. IN NS ns.%s." % (ZONE, ZONE),
         "ns.%s. IN A 127.0.0.1" % ZONE]
    for i in range(N_ZONE_NAMES):
        z.append("host%d.%s. IN A %s" % (i, ZONE, host_ip(i)))
        z.append("host%d.%s. IN AAAA %s" % (i, ZONE, host_ip6(i)))
    # unique names for misses: every name under wild. exists (wildcard)
    z.append("*.wild.%s. IN A 10.2.0.1" % ZONE)
    z.append("*.wild.%s. IN AAAA fd00:2::1" % ZONE)
    # NXDOMAIN part: nothing exists under nxd.ZONE (no records at all there)
    with open(os.path.join(d, "zone.db"), "w") as f:
        f.write("\n".join(z) + "\n")

    # --- the cluster: kubectl List JSON (services, endpointslices, namespaces)
    namespaces = ["team-%02d" % n for n in range(N_NAMESPACES)]
    items = []
    for ns in ["default"] + namespaces:
        items.append({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns},
                                   "resourceVersion": "1", "uid": "ns-%s" % ns},
                      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    services = []
    for i in range(N_SERVICES):
        ns = namespaces[i % N_NAMESPACES]
        name = "svc-%04d" % i
        ip = svc_ip(i)
        services.append((name, ns, ip))
        items.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(100 + i),
                         "uid": "svc-uid-%d" % i, "labels": {"app": name}},
            "spec": {"clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack", "type": "ClusterIP",
                     "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
                     "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
            "status": {"loadBalancer": {}}})
        items.append({
            "addressType": "IPv4", "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "endpoints": [{"addresses": ["10.244.%d.%d" % (k, 1 + i % 250)],
                           "conditions": {"ready": True, "serving": True, "terminating": False}}
                          for k in (i // 250 * 2, i // 250 * 2 + 1)],
            "metadata": {"name": "%s-abcde" % name, "namespace": ns,
                         "generation": 1, "resourceVersion": str(5000 + i), "uid": "eps-uid-%d" % i,
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    with open(os.path.join(d, "cluster.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                   "items": items}, f)
    fq = ["%s.%s.svc.%s" % (n, ns, CLUSTER_DOMAIN) for n, ns, _ in services]
    # the same names as local data of each peer
    with open(os.path.join(d, "cluster-local-data.conf"), "w") as f:     # unbound
        f.write('    local-data: "%s. 5 IN SOA ns.dns.%s. hostmaster.%s. 1 7200 1800 86400 5"\n'
                % (CLUSTER_DOMAIN, CLUSTER_DOMAIN, CLUSTER_DOMAIN))
        for name, (_, _, ip) in zip(fq, services):
            f.write('    local-data: "%s. 5 IN A %s"\n' % (name, ip))
    with open(os.path.join(d, "cluster.lua"), "w") as f:                  # kresd
        f.write("return {\n")
        for name, (_, _, ip) in zip(fq, services):
            f.write("  ['%s.'] = '%s',\n" % (name, ip))
        f.write("}\n")
    with open(os.path.join(d, "cluster.local.zone"), "w") as f:          # pdns-recursor
        f.write("$TTL 5\n%s. IN SOA ns.dns.%s. hostmaster.%s. 1 7200 1800 86400 5\n"
                "%s. IN NS ns.dns.%s.\n" % ((CLUSTER_DOMAIN,) * 5))
        for name, (_, _, ip) in zip(fq, services):
            f.write("%s. IN A %s\n" % (name, ip))
    with open(os.path.join(d, "cluster.hosts"), "w") as f:               # dnsmasq
        for name, (_, _, ip) in zip(fq, services):
            f.write("%s %s\n" % (ip, name))

    # --- query files
    def write(fname, lines):
        path = os.path.join(d, fname)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def both(names):
        out = []
        for n in names:
            out += ["%s A" % n, "%s AAAA" % n]
        return out

    hits = both("host%d.%s" % (i, ZONE) for i in rnd.sample(range(N_ZONE_NAMES // 2), 1000))
    neg = both("nx%d.nxd.%s" % (i, ZONE) for i in range(1000))
    cluster = both(rnd.sample(fq, len(fq)))
    # search path: a pod in namespace NS looks up hostN.ZONE (2 dots < ndots:5):
    # glibc tries NAME.NS.svc.DOMAIN, NAME.svc.DOMAIN, NAME.DOMAIN, then NAME,
    # each A and AAAA (3 local NXDOMAIN pairs, then a cache hit pair).
    search = []
    for k, i in enumerate(range(N_ZONE_NAMES // 2, N_ZONE_NAMES // 2 + 250)):
        name = "host%d.%s" % (i, ZONE)
        ns = namespaces[k % N_NAMESPACES]
        search += both(["%s.%s.svc.%s" % (name, ns, CLUSTER_DOMAIN),
                        "%s.svc.%s" % (name, CLUSTER_DOMAIN),
                        "%s.%s" % (name, CLUSTER_DOMAIN), name])
    wl = [
        {"id": "hits", "title": "cache hits", "file": write("q-hits.txt", hits),
         "expect": {"NOERROR": 1.0}, "warm": True},
        {"id": "negative", "title": "negative hits (NXDOMAIN)", "file": write("q-negative.txt", neg),
         "expect": {"NXDOMAIN": 1.0}, "warm": True},
        {"id": "cluster", "title": "cluster names (local data)", "file": write("q-cluster.txt", cluster),
         "expect": {"NOERROR": 1.0}, "warm": True},
        {"id": "search", "title": "pod search path (ndots:5)", "file": write("q-search.txt", search),
         "expect": {"NXDOMAIN": 0.75, "NOERROR": 0.25}, "warm": True},
        {"id": "misses", "title": "misses (every query upstream)", "file": None,
         "expect": {"NOERROR": 1.0}, "warm": False},
    ]
    # misses: unique names under the wildcard, a fresh set per repetition and
    # per run kind, the same sets for every server (each has its own cache).
    files = {}
    for rep in range(cfg.reps):
        files[("sat", rep)] = write("q-misses-sat-%d.txt" % rep,
                                    ["s%d-%d.wild.%s A" % (rep, i, ZONE) for i in range(cfg.miss_sat_names)])
        n_fixed = int(cfg.rate["misses"] * cfg.fixed_secs * 1.2) + 1000
        files[("fixed", rep)] = write("q-misses-fixed-%d.txt" % rep,
                                      ["f%d-%d.wild.%s A" % (rep, i, ZONE) for i in range(n_fixed)])
    wl[-1]["files"] = files
    mem = write("q-memory.txt", ["m%d.wild.%s A" % (i, ZONE) for i in range(cfg.mem_entries)])
    return wl, mem, services


# ----------------------------------------------------------------- servers

class StartError(Exception):
    pass


def fill(template, d, **kw):
    with open(os.path.join(PEERS, template)) as f:
        text = string.Template(f.read()).substitute(**kw)
    out = os.path.join(d, template[:-3] if template.endswith(".in") else template)
    with open(out, "w") as f:
        f.write(text)
    return out


class Server:
    name = "?"
    binary = "?"

    def __init__(self, data_dir, upstream_port, base_dir):
        self.data = data_dir
        self.upstream_port = upstream_port
        self.base = base_dir
        self.proc = None
        self.port = None
        self.dir = None
        self.logpath = None
        self.threads = 1
        self.metrics_port = None
        self.wrapper = []           # e.g. valgrind (--profile)
        self.ready_timeout = 20.0

    def available(self):
        return shutil.which(self.binary) is not None or os.path.exists(self.binary)

    def copy_data(self, *names):
        for n in names:
            shutil.copy(os.path.join(self.data, n), os.path.join(self.dir, n))

    def argv(self):
        raise NotImplementedError

    def start(self, cpus=SERVER_CPUS, threads=1, metrics=False):
        if not self.available():
            raise StartError("%s not installed" % self.binary)
        self.threads = threads
        last = None
        for _attempt in range(2):   # a port taken between free_port() and bind: retry once
            self.port = free_port()
            self.metrics_port = free_port() if metrics else None
            self.dir = tempfile.mkdtemp(prefix="%s-" % self.name, dir=self.base)
            self.logpath = os.path.join(self.dir, "server.log")
            argv = self.argv()
            self.proc = PROCS.spawn(["taskset", "-c", cpus] + self.wrapper + argv, self.logpath, cwd=self.dir)
            try:
                self.wait_ready(self.ready_timeout)
                return
            except StartError as e:
                last = e
                PROCS.stop(self.proc)
                self.proc = None
        raise last

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError("exited with status %s: %s" % (self.proc.returncode, tail(self.logpath)))
            try:
                rcode, ans = dns_query(self.port, "host0.%s" % ZONE, "A", timeout=0.5)
                if rcode == "NOERROR" and ans:
                    return
                last = "answered %s" % rcode
            except (OSError, socket.timeout, struct.error, IndexError, dnswire.DNSError):
                pass
            time.sleep(0.2)
        raise StartError("not answering host0.%s A within %.0f s (%s): %s"
                         % (ZONE, timeout, last, tail(self.logpath)))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pids(self):
        return proc_tree(self.proc.pid) if self.alive() else []

    def stop(self):
        PROCS.stop(self.proc)
        self.proc = None

    def version(self):
        return "?"


class Nodedns(Server):
    name = "nodedns"

    def __init__(self, *a, binary=None, **kw):
        super().__init__(*a, **kw)
        self.binary = binary

    def argv(self):
        self.copy_data("cluster.json")
        return [self.binary, "--listen", "%s:%d" % (LOCAL, self.port),
                "--upstream", "%s:%d" % (LOCAL, self.upstream_port),
                "--threads", str(self.threads),
                "--kube-snapshot", os.path.join(self.dir, "cluster.json"),
                "--metrics", ("%s:%d" % (LOCAL, self.metrics_port)) if self.metrics_port else "none",
                "--health", "none", "--cache-memory", "%dM" % CACHE_MB,
                "--log-level", "warn"]

    def version(self):
        try:
            return run([self.binary, "--version"], timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    def metrics(self):
        if not self.metrics_port:
            return {}
        with urllib.request.urlopen("http://%s:%d/metrics" % (LOCAL, self.metrics_port), timeout=5) as r:
            return Metrics(r.read(), strict=False).totals()


class Unbound(Server):
    name = "unbound"
    binary = "unbound"

    def argv(self):
        self.copy_data("cluster-local-data.conf")
        conf = fill("unbound.conf.in", self.dir, port=self.port, dir=self.dir,
                    upstream_port=self.upstream_port, cache_mb=CACHE_MB // 2)
        return ["unbound", "-d", "-c", conf]

    def version(self):
        try:
            return run(["unbound", "-V"], timeout=5).stdout.splitlines()[0].replace("Version", "unbound").strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"


class Kresd(Server):
    name = "kresd"
    binary = "kresd"

    def start(self, *a, **kw):
        # the LMDB cache lives in the run directory: put it on tmpfs (as
        # Debian's systemd unit does with /var/cache/knot-resolver)
        base = self.base
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            self.base = tempfile.mkdtemp(prefix="nodedns-bench-kresd-", dir="/dev/shm")
        try:
            return super().start(*a, **kw)
        finally:
            self.shm = self.base if self.base != base else None
            self.base = base

    def stop(self):
        super().stop()
        if getattr(self, "shm", None):
            shutil.rmtree(self.shm, ignore_errors=True)
            self.shm = None

    def argv(self):
        self.copy_data("cluster.lua")
        conf = fill("kresd.conf.in", self.dir, port=self.port, dir=self.dir,
                    upstream_port=self.upstream_port, cache_mb=CACHE_MB)
        return ["kresd", "-n", "-q", "-c", conf, self.dir]

    def version(self):
        try:
            return run(["kresd", "--version"], timeout=5).stdout.strip().replace("Knot Resolver, version", "kresd")
        except (OSError, subprocess.SubprocessError):
            return "?"


class Recursor(Server):
    name = "pdns-recursor"
    binary = "pdns_recursor"

    def argv(self):
        self.copy_data("cluster.local.zone")
        fill("recursor.conf.in", self.dir, port=self.port, dir=self.dir,
             upstream_port=self.upstream_port)
        return ["pdns_recursor", "--config-dir=%s" % self.dir]

    def version(self):
        try:
            r = run(["pdns_recursor", "--version"], timeout=5)
            m = re.search(r"PowerDNS Recursor (\S+)", r.stdout + r.stderr)
            return "pdns-recursor " + (m.group(1) if m else "?")
        except (OSError, subprocess.SubprocessError):
            return "?"


class Dnsmasq(Server):
    name = "dnsmasq"
    binary = "dnsmasq"

    cache_entries = 1000000

    def argv(self):
        self.copy_data("cluster.hosts")
        conf = fill("dnsmasq.conf.in", self.dir, port=self.port, dir=self.dir,
                    upstream_port=self.upstream_port, cache_entries=self.cache_entries)
        return ["dnsmasq", "-k", "-C", conf]

    def version(self):
        try:
            return run(["dnsmasq", "--version"], timeout=5).stdout.splitlines()[0].split("  ")[0].replace(" version", "")
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"


class Nsd:
    def __init__(self, data_dir, base):
        self.data = data_dir
        self.base = base
        self.proc = None

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="nsd-", dir=self.base)
        shutil.copy(os.path.join(self.data, "zone.db"), os.path.join(self.dir, "zone.db"))
        self.port = free_port()
        conf = fill("nsd.conf.in", self.dir, port=self.port, dir=self.dir, zone=ZONE, zonefile="zone.db")
        chk = run(["nsd-checkconf", conf], timeout=10)
        if chk.returncode != 0:
            raise StartError("nsd-checkconf: %s %s" % (chk.stdout, chk.stderr))
        self.logpath = os.path.join(self.dir, "nsd.out")
        self.proc = PROCS.spawn(["taskset", "-c", CLIENT_CPUS, "nsd", "-d", "-c", conf], self.logpath, cwd=self.dir)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StartError("nsd exited: %s %s" % (tail(self.logpath), tail(os.path.join(self.dir, "nsd.log"))))
            try:
                rcode, ans = dns_query(self.port, "host0.%s" % ZONE, "A", timeout=0.5)
                if rcode == "NOERROR" and ans:
                    return
            except (OSError, socket.timeout):
                pass
            time.sleep(0.2)
        raise StartError("nsd not answering: %s" % tail(os.path.join(self.dir, "nsd.log")))


# ----------------------------------------------------------------- dnsperf

DNSPERF_LINE = re.compile(r"^> (\S+) (\S+) (\S+) ([0-9.]+)\s*$")


def dnsperf(port, qfile, outpath, secs=None, rate=None, runs=None, verbose=False,
            clients=16, outstanding=100, timeout_s=1):
    argv = ["taskset", "-c", CLIENT_CPUS, "dnsperf", "-s", LOCAL, "-p", str(port), "-d", qfile,
            "-c", str(clients), "-q", str(outstanding), "-t", str(timeout_s)]
    if secs:
        argv += ["-l", "%g" % secs]
    if rate:
        argv += ["-Q", str(int(rate))]
    if runs:
        argv += ["-n", str(runs)]
    if verbose:
        argv += ["-v"]
    limit = (secs or 60) + timeout_s + 30
    p = PROCS.spawn(argv, outpath)
    try:
        p.wait(limit)
    except subprocess.TimeoutExpired:
        log("dnsperf did not finish within %d s: stopped" % limit)
    PROCS.stop(p, grace=1)
    return parse_dnsperf(outpath)


def parse_dnsperf(path):
    r = {"sent": 0, "completed": 0, "lost": 0, "qps": 0.0, "rcodes": {}, "lat": []}
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith(">"):
                m = DNSPERF_LINE.match(line)
                if m:
                    r["lat"].append(float(m.group(4)))
                continue
            line = line.strip()
            for key, name in (("Queries sent:", "sent"), ("Queries completed:", "completed"),
                              ("Queries lost:", "lost")):
                if line.startswith(key):
                    r[name] = int(line.split()[2])
            if line.startswith("Queries per second:"):
                r["qps"] = float(line.split()[-1])
            elif line.startswith("Run time (s):"):
                r["runtime"] = float(line.split()[-1])
            elif line.startswith("Response codes:"):
                for code, n in re.findall(r"([A-Z0-9]+) (\d+) \(", line):
                    r["rcodes"][code] = int(n)
    if "runtime" not in r:
        r["error"] = "dnsperf gave no statistics: " + tail(path, 3)
    return r


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    # nearest rank
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def rcode_problem(expect, rcodes, completed):
    if completed == 0:
        return "no answers at all"
    bad = []
    for code, frac in expect.items():
        got = rcodes.get(code, 0) / completed
        if abs(got - frac) > 0.01:
            bad.append("%s %.1f%% (want %.0f%%)" % (code, 100 * got, 100 * frac))
    others = {c: n for c, n in rcodes.items() if c not in expect and n > completed * 0.01}
    for c, n in others.items():
        bad.append("%s %.1f%%" % (c, 100.0 * n / completed))
    return ", ".join(bad)


# ----------------------------------------------------------------- the bench

class Bench:
    def __init__(self, cfg):
        self.cfg = cfg
        self.base = tempfile.mkdtemp(prefix="nodedns-bench-")
        self.data = os.path.join(self.base, "data")
        os.makedirs(self.data)
        self.out = os.path.join(self.base, "out")
        os.makedirs(self.out)
        self.n = 0
        self.nsd = None

    def outfile(self, tag):
        self.n += 1
        return os.path.join(self.out, "%04d-%s.txt" % (self.n, tag))

    def make_servers(self, upstream_port, names=None):
        s = []
        for name in names or self.cfg.servers:
            cls = {"nodedns": Nodedns, "unbound": Unbound, "kresd": Kresd,
                   "pdns-recursor": Recursor, "dnsmasq": Dnsmasq}[name]
            kw = {"binary": self.cfg.nodedns} if cls is Nodedns else {}
            s.append(cls(self.data, upstream_port, self.base, **kw))
        return s

    def probe(self, srv, services):
        """A few answers checked by content, before measuring."""
        name, ns, ip = services[0]
        checks = [
            ("host1.%s" % ZONE, "A", "NOERROR", socket.inet_aton(host_ip(1))),
            ("host1.%s" % ZONE, "AAAA", "NOERROR", socket.inet_pton(socket.AF_INET6, host_ip6(1))),
            ("nx1.nxd.%s" % ZONE, "A", "NXDOMAIN", None),
            ("probe%d.wild.%s" % (random.randrange(1 << 30), ZONE), "A", "NOERROR", socket.inet_aton("10.2.0.1")),
            ("%s.%s.svc.%s" % (name, ns, CLUSTER_DOMAIN), "A", "NOERROR", socket.inet_aton(ip)),
            ("%s.%s.svc.%s" % (name, ns, CLUSTER_DOMAIN), "AAAA", "NOERROR", b""),
            ("host9.%s.%s.svc.%s" % (ZONE, ns, CLUSTER_DOMAIN), "A", "NXDOMAIN", None),
            ("host9.%s.svc.%s" % (ZONE, CLUSTER_DOMAIN), "AAAA", "NXDOMAIN", None),
            ("host9.%s.%s" % (ZONE, CLUSTER_DOMAIN), "A", "NXDOMAIN", None),
        ]
        bad = []
        for qname, qtype, want_rcode, want in checks:
            try:
                rcode, ans = dns_query(srv.port, qname, qtype, timeout=2.0)
            except (OSError, socket.timeout, dnswire.DNSError) as e:
                bad.append("%s %s: %s" % (qname, qtype, e.__class__.__name__))
                continue
            rdatas = [rd for t, rd in ans if t == dnswire.type_num(qtype)]
            if rcode != want_rcode:
                bad.append("%s %s: %s (want %s)" % (qname, qtype, rcode, want_rcode))
            elif want is not None and want != b"" and want not in rdatas:
                bad.append("%s %s: wrong data" % (qname, qtype))
            elif want == b"" and rdatas:
                bad.append("%s %s: want NODATA" % (qname, qtype))
        return "; ".join(bad)

    def measure(self, srv, qfile, tag, secs, rate=None, runs=None, verbose=False):
        pids = srv.pids()
        upids = proc_tree(self.nsd.proc.pid) if self.nsd else []
        u0 = cpu_sample(upids)
        c0 = cpu_sample(pids)
        r = dnsperf(srv.port, qfile, self.outfile("%s-%s" % (srv.name, tag)), secs=secs, rate=rate,
                    runs=runs, verbose=verbose)
        time.sleep(0.3)   # let the server finish what is in flight
        c1 = cpu_sample(set(pids) | set(srv.pids()))
        u1 = cpu_sample(upids)
        # the upstream's CPU: shows whether a "cached" workload went upstream
        r["upstream_cpu_us_per_q"] = cpu_delta(u0, u1)[0] / 1000.0 / r["completed"] if r["completed"] else None
        sched, usr, sys_ = cpu_delta(c0, c1)
        stat = usr + sys_
        r["cpu_sched_ns"] = sched
        r["cpu_stat_ns"] = stat
        # schedstat is exact (ns) but misses threads that exited during the
        # run; /proc/PID/stat has 10 ms ticks but includes them.
        cpu = sched if stat <= sched * 1.1 + 2e9 / CLK_TCK else stat
        r["cpu_us_per_q"] = cpu / 1000.0 / r["completed"] if r["completed"] else None
        # the user/system split (10 ms ticks), scaled to that total
        if r["completed"] and stat > 0:
            r["usr_us_per_q"] = r["cpu_us_per_q"] * usr / stat
            r["sys_us_per_q"] = r["cpu_us_per_q"] * sys_ / stat
        lat = sorted(r.pop("lat"))
        r["n_lat"] = len(lat)
        r["p50_ms"] = percentile(lat, 50) * 1000 if lat else None
        r["p99_ms"] = percentile(lat, 99) * 1000 if lat else None
        r["avg_ms"] = statistics.mean(lat) * 1000 if lat else None
        return r

    def warm(self, srv, wl):
        r = dnsperf(srv.port, wl["file"], self.outfile("%s-warm-%s" % (srv.name, wl["id"])),
                    rate=self.cfg.warm_rate, runs=2, secs=60)
        return r

    def run_server(self, srv, workloads, services, threads=1, cpus=SERVER_CPUS, only=None):
        """All workloads on one server instance. Returns {workload id: result}."""
        cfg = self.cfg
        res = {}
        try:
            srv.start(cpus=cpus, threads=threads)
        except StartError as e:
            log("%s failed to start: %s" % (srv.name, e))
            for wl in workloads:
                res[wl["id"]] = {"failed": "did not start: %s" % e}
            return res
        try:
            pr = self.probe(srv, services)
            if pr:
                log("%s: probe problems: %s" % (srv.name, pr))
            for wl in workloads:
                if only and wl["id"] not in only:
                    continue
                if not srv.alive():
                    res[wl["id"]] = {"failed": "server died: status %s: %s" % (srv.proc.returncode, tail(srv.logpath))}
                    continue
                log("%s (threads %d): %s" % (srv.name, threads, wl["title"]))
                entry = {"probe": pr, "reps": []}
                if wl["warm"]:
                    w = self.warm(srv, wl)
                    entry["warm"] = {k: w.get(k) for k in ("completed", "lost", "rcodes")}
                for rep in range(cfg.reps):
                    if wl["id"] == "misses":
                        fsat, ffix = wl["files"][("sat", rep)], wl["files"][("fixed", rep)]
                        runs = 1
                    else:
                        fsat = ffix = wl["file"]
                        runs = None
                    sat = self.measure(srv, fsat, "%s-sat-%d" % (wl["id"], rep), cfg.sat_secs, runs=runs)
                    fix = None
                    if not cfg.sat_only:
                        fix = self.measure(srv, ffix, "%s-fixed-%d" % (wl["id"], rep), cfg.fixed_secs,
                                           rate=cfg.rate[wl["id"]], runs=runs, verbose=True)
                    entry["reps"].append({"sat": sat, "fixed": fix})
                    if not srv.alive():
                        break
                if not srv.alive():
                    entry["failed"] = "server died during the run: status %s: %s" % (
                        srv.proc.returncode, tail(srv.logpath))
                res[wl["id"]] = summarize(entry, wl)
        finally:
            srv.stop()
        return res

    def memory(self, srv, memfile):
        """RSS after caching cfg.mem_entries distinct answers."""
        try:
            srv.start(metrics=isinstance(srv, Nodedns))
        except StartError as e:
            return {"failed": "did not start: %s" % e}
        try:
            log("%s: memory, %d distinct answers" % (srv.name, self.cfg.mem_entries))
            time.sleep(1.0)
            pids = srv.pids()
            rss0 = rss_kib(pids)
            m0 = srv.metrics() if isinstance(srv, Nodedns) else {}
            r = dnsperf(srv.port, memfile, self.outfile("%s-memory" % srv.name),
                        rate=self.cfg.mem_rate, runs=1, secs=120)
            time.sleep(1.0)
            if not srv.alive():
                return {"failed": "server died: %s" % tail(srv.logpath)}
            rss1 = rss_kib(srv.pids())
            m1 = srv.metrics() if isinstance(srv, Nodedns) else {}
            answered = r["rcodes"].get("NOERROR", 0)
            out = {"rss0_kib": rss0, "rss1_kib": rss1, "answered": answered, "lost": r["lost"],
                   "rcodes": r["rcodes"]}
            entries = answered
            if m1:
                entries = m1.get("nodedns_cache_entries", 0) - m0.get("nodedns_cache_entries", 0)
                cbytes = m1.get("nodedns_cache_bytes", 0) - m0.get("nodedns_cache_bytes", 0)
                out["cache_entries"] = m1.get("nodedns_cache_entries")
                out["cache_bytes"] = m1.get("nodedns_cache_bytes")
                out["cache_bytes_per_entry"] = cbytes / entries if entries > 0 else None
            out["entries"] = entries
            out["rss_per_entry"] = (rss1 - rss0) * 1024.0 / entries if entries > 0 else None
            if isinstance(srv, Dnsmasq):
                # its cache is allocated at start: measure that instead
                srv.stop()
                big = srv.cache_entries
                srv.cache_entries = 150
                try:
                    srv.start()
                    time.sleep(1.0)
                    small = rss_kib(srv.pids())
                    out["rss_small_cache_kib"] = small
                    out["rss_per_entry"] = (rss0 - small) * 1024.0 / (big - 150)
                    out["prealloc"] = True
                except StartError as e:
                    out["rss_per_entry"] = None
                    out["prealloc_error"] = str(e)
                finally:
                    srv.cache_entries = big
            return out
        except (OSError, ValueError) as e:
            return {"failed": "%s" % e}
        finally:
            srv.stop()


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(entry, wl):
    reps = entry["reps"]
    out = {"probe": entry.get("probe"), "warm": entry.get("warm"), "raw": reps}
    if entry.get("failed"):
        out["failed"] = entry["failed"]
    if not reps:
        out.setdefault("failed", "no measurement")
        return out
    for kind in ("sat", "fixed"):
        rs = [r[kind] for r in reps if r.get(kind)]
        if not rs:
            continue
        errors = [r["error"] for r in rs if r.get("error")]
        s = {
            "qps": med([r["qps"] for r in rs]),
            "cpu_us": med([r["cpu_us_per_q"] for r in rs]),
            "usr_us": med([r.get("usr_us_per_q") for r in rs]),
            "sys_us": med([r.get("sys_us_per_q") for r in rs]),
            "lost": med([r["lost"] for r in rs]),
            "sent": med([r["sent"] for r in rs]),
            "p50_ms": med([r["p50_ms"] for r in rs]),
            "p99_ms": med([r["p99_ms"] for r in rs]),
            "upstream_cpu_us": med([r.get("upstream_cpu_us_per_q") for r in rs]),
        }
        probs = [rcode_problem(wl["expect"], r["rcodes"], r["completed"]) for r in rs]
        probs = [p for p in probs if p]
        if probs:
            s["rcodes_bad"] = probs[0]
        if errors:
            s["error"] = errors[0]
        out[kind] = s
    return out


# ----------------------------------------------------------------- report

def machine():
    def first(argv, pat=None):
        try:
            r = run(argv, timeout=10)
            text = r.stdout + r.stderr
            if pat:
                m = re.search(pat, text, re.M)
                return m.group(1).strip() if m else "?"
            return text.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"
    try:
        with open("/etc/debian_version") as f:
            deb = f.read().strip()
    except OSError:
        deb = "?"
    return {
        "cpu": first(["lscpu"], r"^Model name:\s*(.*)$"),
        "cpus": os.cpu_count(),
        "kernel": first(["uname", "-sr"]),
        "debian": deb,
        "nsd": first(["nsd", "-v"], r"(NSD version \S+)"),
        "dnsperf": first(["dnsperf", "-h"], r"^(Version \S+)").replace("Version", "dnsperf"),
        "mem": first(["free", "-m"], r"^Mem:\s+(\d+)") + " MiB",
    }


def fmt(v, nd=1, dash="–"):
    if v is None:
        return dash
    if isinstance(v, float) and nd == 0:
        return "%d" % round(v)
    return ("%." + str(nd) + "f") % v


def cpu_cell(s):
    """CPU µs/query with its user/system split."""
    if not s or s.get("cpu_us") is None:
        return "–"
    if s.get("usr_us") is None:
        return fmt(s["cpu_us"], 2)
    return "%.2f (%.1f/%.1f)" % (s["cpu_us"], s["usr_us"], s["sys_us"])


def report(cfg, mach, versions, results, memory, threads, started, finished, load0, load1):
    L = []
    w = L.append
    w("# nodedns benchmark%s" % (" (quick)" if cfg.quick else ""))
    w("")
    w("Run %s – %s by `bench/run.sh%s`. Medians of %d repetition%s."
      % (started, finished, " --quick" if cfg.quick else "", cfg.reps, "s" if cfg.reps > 1 else ""))
    w("")
    w("## Machine")
    w("")
    w("- CPU: %s, %d CPUs; %s; Debian %s; memory %s" % (mach["cpu"], mach["cpus"], mach["kernel"], mach["debian"], mach["mem"]))
    w("- load average at start %s, at end %s (other work on the machine makes the numbers noisy)" % (load0, load1))
    w("- servers: %s" % "; ".join(versions[s] for s in cfg.servers))
    w("- upstream %s, load generator %s" % (mach["nsd"], mach["dnsperf"]))
    w("")
    w("## Method")
    w("")
    w("- Server under test pinned to CPU %s (`taskset`), dnsperf and the NSD upstream to CPU %s; "
      "every server has one worker thread and forwards everything to NSD on 127.0.0.1 "
      "(nodedns and unbound over TCP, kresd, pdns-recursor and dnsmasq over UDP)." % (SERVER_CPUS, CLIENT_CPUS))
    w("- **max**: dnsperf unthrottled (16 clients, 100 outstanding) for %g s: QPS, server CPU per answered query, lost queries." % cfg.sat_secs)
    w("- **@rate**: dnsperf at a fixed offered load below saturation (`-Q`, rate per workload in the table) "
      "for %g s: server CPU per answered query and latency percentiles from dnsperf `-v` (one line per query, µs resolution)." % cfg.fixed_secs)
    w("- CPU = user+system time of the server's processes (sum over all threads from `/proc/PID/task/*/schedstat`, "
      "checked against utime+stime of `/proc/PID/stat`), before and after the run, divided by answered queries.")
    w("- Caches warmed by two passes through the query file before measuring (not for misses: fresh unique names in every run).")
    w("")
    w("## Results")
    w("")
    w("CPU columns: µs of server CPU per answered query (user/system).")
    w("")
    w("| workload | server | max QPS | CPU µs/q @max | lost @max | rate | CPU µs/q @rate | p50 ms | p99 ms | lost @rate | notes |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for wl in WORKLOAD_ORDER:
        if wl not in cfg.workloads:
            continue
        for s in cfg.servers:
            r = results.get(s, {}).get(wl)
            if r is None:
                continue
            if "sat" not in r and r.get("failed"):
                w("| %s | %s | failed | | | | | | | | %s |" % (wl, s, r["failed"].replace("|", "/")[:300]))
                continue
            sat, fix = r.get("sat", {}), r.get("fixed") or {}
            notes = []
            if r.get("failed"):
                notes.append(r["failed"])
            if r.get("probe"):
                notes.append("probe: " + r["probe"])
            for k, s_ in (("max", sat), ("@rate", fix)):
                if s_.get("rcodes_bad"):
                    notes.append("%s rcodes: %s" % (k, s_["rcodes_bad"]))
                if s_.get("error"):
                    notes.append(s_["error"])
                # NSD answers a query in a few µs: more than 0.5 µs of its CPU
                # per query means a cached workload was (partly) forwarded
                if wl != "misses" and (s_.get("upstream_cpu_us") or 0) > 0.5:
                    notes.append("%s: upstream busy (%.1f µs NSD CPU/q): not all from cache"
                                 % (k, s_["upstream_cpu_us"]))
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                wl, s, fmt(sat.get("qps"), 0), cpu_cell(sat), fmt(sat.get("lost"), 0),
                cfg.rate[wl] if fix else "–", cpu_cell(fix), fmt(fix.get("p50_ms"), 3),
                fmt(fix.get("p99_ms"), 3), fmt(fix.get("lost"), 0),
                "; ".join(notes).replace("|", "/")[:400]))
    w("")
    w("Workloads: **hits** 1,000 names × A/AAAA; **negative** 1,000 NXDOMAIN names × A/AAAA; "
      "**cluster** %d Services × A/AAAA (AAAA is NODATA); **search** 250 external names, each as the "
      "4 ndots:5 expansions × A/AAAA (75%% NXDOMAIN from the cluster zone, 25%% cache hits); "
      "**misses** unique names under a wildcard, every query goes upstream." % N_SERVICES)
    w("")
    if memory:
        w("## Memory: %d distinct cached answers" % cfg.mem_entries)
        w("")
        w("| server | VmRSS before | VmRSS after | answers cached | RSS delta / entry | cache bytes / entry (metric) | notes |")
        w("|---|---:|---:|---:|---:|---:|---|")
        for s in cfg.servers:
            m = memory.get(s)
            if m is None:
                continue
            if m.get("failed"):
                w("| %s | failed | | | | | %s |" % (s, m["failed"].replace("|", "/")[:300]))
                continue
            note = []
            if m.get("lost"):
                note.append("%d lost" % m["lost"])
            if m.get("prealloc"):
                note.append("allocates its cache at start: per entry = (RSS with cache-size=%d − RSS with "
                            "cache-size=150 (%.1f MiB)) / %d" % (Dnsmasq.cache_entries,
                                                                   m["rss_small_cache_kib"] / 1024.0, Dnsmasq.cache_entries - 150))
            if s == "kresd":
                note.append("LMDB cache is a mapped file: RSS counts its touched pages")
            w("| %s | %.1f MiB | %.1f MiB | %d | %s B | %s | %s |" % (
                s, m["rss0_kib"] / 1024.0, m["rss1_kib"] / 1024.0, m["entries"],
                fmt(m.get("rss_per_entry"), 0),
                (fmt(m.get("cache_bytes_per_entry"), 0) + " B") if m.get("cache_bytes_per_entry") else "–",
                "; ".join(note)))
        w("")
    if threads:
        w("## nodedns --threads 2 vs 1")
        w("")
        w("`--threads 1` pinned to CPU %s (the table above); `--threads 2` pinned to CPUs 0,1 while "
          "dnsperf and NSD stay on CPU %s. Caveat: with 2 threads the server shares a core with the load "
          "generator and the upstream, so this shows scaling headroom on this 2-core machine, not a clean "
          "2× measurement." % (SERVER_CPUS, CLIENT_CPUS))
        w("")
        w("| workload | threads | max QPS | CPU µs/q @max | lost @max |")
        w("|---|---:|---:|---:|---:|")
        for wl in ("hits", "misses"):
            for t, res in ((1, results.get("nodedns", {})), (2, threads)):
                r = res.get(wl)
                if not r:
                    continue
                if "sat" not in r:
                    w("| %s | %d | failed | | %s |" % (wl, t, r.get("failed", "")[:200]))
                    continue
                w("| %s | %d | %s | %s | %s |" % (wl, t, fmt(r["sat"]["qps"], 0), fmt(r["sat"]["cpu_us"], 2),
                                                   fmt(r["sat"]["lost"], 0)))
        w("")
    w("## Targets")
    w("")
    w("Headline ratios use the @rate runs (fixed offered load); the @max column gives the same ratio "
      "at full load, where wake-up costs are amortised over batches.")
    w("")
    w("| target | nodedns | unbound | ratio | ratio @max | goal | verdict |")
    w("|---|---:|---:|---:|---:|---|---|")
    nd, ub = results.get("nodedns", {}), results.get("unbound", {})

    def get(res, wl, kind, key):
        try:
            return res[wl][kind][key]
        except (KeyError, TypeError):
            return None

    def verdict(ok):
        return "n/a" if ok is None else ("**met**" if ok else "**missed**")
    for wl, label in (("hits", "CPU/query, cache hits"), ("cluster", "CPU/query, cluster names"),
                      ("search", "CPU/query, search path")):
        a, b = get(nd, wl, "fixed", "cpu_us"), get(ub, wl, "fixed", "cpu_us")
        ratio = a / b if a is not None and b else None
        am, bm = get(nd, wl, "sat", "cpu_us"), get(ub, wl, "sat", "cpu_us")
        rmax = am / bm if am is not None and bm else None
        w("| %s (@rate) | %s µs | %s µs | %s | %s | ≤ 0.4 | %s |" % (
            label, fmt(a, 2), fmt(b, 2), fmt(ratio, 2), fmt(rmax, 2),
            verdict(None if ratio is None else ratio <= 0.4)))
    a, b = get(nd, "misses", "sat", "qps"), get(ub, "misses", "sat", "qps")
    ratio = a / b if a is not None and b else None
    w("| QPS, misses (max) | %s | %s | | %s | ≥ 1 | %s |" % (fmt(a, 0), fmt(b, 0), fmt(ratio, 2),
                                                           verdict(None if ratio is None else ratio >= 1)))
    a, b = get(nd, "misses", "fixed", "cpu_us"), get(ub, "misses", "fixed", "cpu_us")
    ratio = a / b if a is not None and b else None
    am, bm = get(nd, "misses", "sat", "cpu_us"), get(ub, "misses", "sat", "cpu_us")
    rmax = am / bm if am is not None and bm else None
    w("| CPU/query, misses (@rate) | %s µs | %s µs | %s | %s | ≤ 1 | %s |" % (
        fmt(a, 2), fmt(b, 2), fmt(ratio, 2), fmt(rmax, 2), verdict(None if ratio is None else ratio <= 1)))
    m = (memory or {}).get("nodedns") or {}
    for key, label in (("cache_bytes_per_entry", "cache bytes / entry (metric)"),
                       ("rss_per_entry", "RSS delta / entry")):
        v = m.get(key)
        ubm = ((memory or {}).get("unbound") or {}).get("rss_per_entry") if key == "rss_per_entry" else None
        w("| memory: %s | %s B | %s | | | < 250 B | %s |" % (label, fmt(v, 0), (fmt(ubm, 0) + " B") if ubm else "–",
                                                         verdict(None if v is None else v < 250)))
    w("")
    return "\n".join(L) + "\n"


# ----------------------------------------------------------------- profile

SYSCALLS = ["recvmmsg", "recvmsg", "recvfrom", "sendmmsg", "sendmsg", "sendto", "epoll_wait",
            "epoll_pwait", "epoll_ctl", "read", "write", "futex", "timerfd_settime", "io_uring_enter"]


def syscalls_per_query(srv, qfile, b, rate, secs=3.0):
    """perf stat on the server's syscalls over one dnsperf run: {name: calls
    per answered query}, 'total' for all syscalls."""
    avail = run(["perf", "list", "tracepoint"], timeout=30).stdout
    names = [n for n in SYSCALLS if "syscalls:sys_enter_%s " % n in avail]
    events = ["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_%s" % n for n in names]
    outp = b.outfile("perfstat-%s" % srv.name)
    st = PROCS.spawn(["perf", "stat", "-x", ",", "-o", outp, "-e", ",".join(events), "-p", str(srv.proc.pid),
                "--", "sleep", "%g" % (secs + 2.0)], outp + ".log")
    time.sleep(1.0)
    r = dnsperf(srv.port, qfile, b.outfile("perfstat-dnsperf-%s" % srv.name), secs=secs, rate=rate)
    try:
        st.wait(secs + 30)
    except subprocess.TimeoutExpired:
        pass
    PROCS.stop(st)
    out = {}
    try:
        with open(outp) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                    ev = parts[2]
                    key = "total" if ev == "raw_syscalls:sys_enter" else ev.split("sys_enter_")[-1]
                    out[key] = int(float(parts[0]))
    except OSError:
        pass
    if not out or not r["completed"]:
        return None, r
    return {k: v / r["completed"] for k, v in out.items()}, r


def profile(cfg, b, workloads, services, nsd):
    """Where nodedns spends CPU on cache hits: callgrind (user-space
    instructions per query, top functions; unbound for comparison), perf
    (user and kernel symbols at full load) and syscalls per query."""
    hits = [w for w in workloads if w["id"] == "hits"][0]
    L = []
    w = L.append
    w("nodedns profile: cache hits (%s)" % time.strftime("%Y-%m-%d %H:%M:%S"))
    w("Generated by bench/run.sh --profile. Workload: the cache-hit query file (1,000 names x A/AAAA),")
    w("warmed first; server pinned to CPU %s, dnsperf to CPU %s, one worker thread." % (SERVER_CPUS, CLIENT_CPUS))
    w("")

    def mk(name):
        return b.make_servers(nsd.port, [name])[0]
    ir_per_q = {}

    # 1. callgrind: instructions per query in user space, top functions
    if shutil.which("valgrind") and shutil.which("callgrind_annotate"):
        for name in [n for n in ("nodedns", "unbound") if n in cfg.servers]:
            srv = mk(name)
            cg = os.path.join(b.base, "callgrind.%s.out" % name)
            srv.wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           "--callgrind-out-file=%s" % cg]
            srv.ready_timeout = 90
            try:
                srv.start()
            except StartError as e:
                w("== callgrind %s: did not start: %s" % (name, e))
                continue
            try:
                log("profile: callgrind %s" % name)
                dnsperf(srv.port, hits["file"], b.outfile("cg-warm-%s" % name), rate=2000, runs=2, secs=60)
                on = run(["callgrind_control", "-i", "on", str(srv.proc.pid)], timeout=30)
                secs = 6 if cfg.quick else 10
                r = dnsperf(srv.port, hits["file"], b.outfile("cg-%s" % name), rate=2000, secs=secs)
                run(["callgrind_control", "-i", "off", str(srv.proc.pid)], timeout=30)
            finally:
                srv.stop()
            if on.returncode != 0 or not os.path.exists(cg):
                w("== callgrind %s: no profile (%s)" % (name, (on.stderr or on.stdout).strip()[-200:]))
                continue
            ann = run(["callgrind_annotate", "--inclusive=no", cg], timeout=120).stdout
            inc = run(["callgrind_annotate", "--inclusive=yes", cg], timeout=120).stdout
            total = re.search(r"^([0-9,]+) \(100.0%\)\s+PROGRAM TOTALS", ann, re.M)
            total = int(total.group(1).replace(",", "")) if total else None
            w("== callgrind, %s: %d queries answered at 2,000 qps while instrumented" % (name, r["completed"]))
            if total and r["completed"]:
                ir_per_q[name] = total / r["completed"]
                w("user-space instructions per query (Ir, all threads, incl. libc/libuv): %.0f"
                  % (total / r["completed"]))
            w("")
            for title, text in (("self cost, top 15 functions", ann), ("inclusive cost, top 15", inc)):
                w("-- %s" % title)
                lines = text.splitlines()
                try:
                    start = next(i for i, l in enumerate(lines) if "file:function" in l)
                except StopIteration:
                    start = None
                if start is None:
                    w(text[-2000:])
                else:
                    body = [l for l in lines[start + 1:] if l.strip() and not l.startswith("-")]
                    for l in body[:15]:
                        w(l.rstrip())
                w("")
    else:
        w("== callgrind: valgrind not installed")

    # 2. perf at full load (user + kernel), and syscalls per query
    for name in [n for n in ("nodedns", "unbound") if n in cfg.servers]:
        srv = mk(name)
        try:
            srv.start()
        except StartError as e:
            w("== perf %s: did not start: %s" % (name, e))
            continue
        try:
            log("profile: perf %s" % name)
            b.warm(srv, hits)
            secs = 3
            if shutil.which("perf"):
                data = os.path.join(b.base, "perf.%s.data" % name)
                rec = subprocess.Popen(["perf", "record", "-F", "1999", "-g", "-o", data, "-p",
                                        str(srv.proc.pid), "--", "sleep", str(secs)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
                PROCS.add(rec)
                dnsperf(srv.port, hits["file"], b.outfile("perf-%s" % name), secs=secs + 0.5)
                try:
                    rec.wait(30)
                except subprocess.TimeoutExpired:
                    pass
                PROCS.stop(rec)
                rep = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym",
                           "--percent-limit", "1", "-g", "none"], timeout=120).stdout
                dso = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso",
                           "-g", "none"], timeout=120).stdout
                shares = re.findall(r"^\s+([0-9.]+)%\s+(\S+)", dso, re.M)
                w("== perf, %s: dnsperf unthrottled for %d s, samples of the server (user and kernel)" % (name, secs))
                if shares:
                    w("by object: " + ", ".join("%s %s%%" % (d, pc) for pc, d in shares if float(pc) >= 0.5))
                for l in rep.splitlines():
                    if l.strip() and not l.startswith("#"):
                        w(l.rstrip())
                w("")
                # syscalls per query, at the fixed rate and at full load
                for label, rate in (("@%d qps" % cfg.rate["hits"], cfg.rate["hits"]), ("@max", None)):
                    per, r = syscalls_per_query(srv, hits["file"], b, rate)
                    if per is None:
                        w("== syscalls, %s %s: no data" % (name, label))
                        continue
                    tot = per.pop("total", 0)
                    top = sorted(((k, v) for k, v in per.items() if v >= 0.005), key=lambda kv: -kv[1])
                    w("== syscalls per answered query, %s %s (perf stat, %d queries at %.0f qps): %.2f; %s"
                      % (name, label, r["completed"], r["qps"], tot,
                         ", ".join("%s %.2f" % (k, v) for k, v in top)))
                w("")
        finally:
            srv.stop()
    if "nodedns" in ir_per_q and "unbound" in ir_per_q:
        L.insert(4, "Summary: user-space instructions per cache hit, nodedns %.0f vs unbound %.0f (ratio %.2f);"
                 % (ir_per_q["nodedns"], ir_per_q["unbound"], ir_per_q["nodedns"] / ir_per_q["unbound"]))
        L.insert(5, "the kernel (UDP receive/send on loopback, wake-ups) is most of every server's CPU: see the")
        L.insert(6, "'by object' lines of the perf sections and the user/system split in results/latest.md.")
        L.insert(7, "")
    return "\n".join(L) + "\n"


WORKLOAD_ORDER = ["hits", "negative", "cluster", "search", "misses"]
ALL_SERVERS = ["nodedns", "unbound", "kresd", "pdns-recursor", "dnsmasq"]


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition, short runs (about 2 minutes)")
    ap.add_argument("--servers", default=",".join(ALL_SERVERS))
    ap.add_argument("--workloads", default=",".join(WORKLOAD_ORDER))
    ap.add_argument("--nodedns", default=os.environ.get("NODEDNS_BIN", os.path.join(ROOT, "build", "nodedns")))
    ap.add_argument("--reps", type=int)
    ap.add_argument("--sat-secs", type=float)
    ap.add_argument("--fixed-secs", type=float)
    ap.add_argument("--rate", type=int, help="offered load of the @rate runs (misses: half of it)")
    ap.add_argument("--mem-entries", type=int)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-threads", action="store_true")
    ap.add_argument("--sat-only", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--pids-file")
    ap.add_argument("--profile", action="store_true",
                    help="profile nodedns on cache hits -> results/profile-cache-hit.txt")
    cfg = ap.parse_args()
    PROCS.pids_file = cfg.pids_file
    cfg.servers = [s for s in cfg.servers.split(",") if s]
    cfg.workloads = [w for w in cfg.workloads.split(",") if w]
    for s in cfg.servers:
        if s not in ALL_SERVERS:
            ap.error("unknown server %s" % s)
    for wl in cfg.workloads:
        if wl not in WORKLOAD_ORDER:
            ap.error("unknown workload %s" % wl)
    q = cfg.quick
    cfg.reps = cfg.reps or (1 if q else 3)
    cfg.sat_secs = cfg.sat_secs or (1.0 if q else 3.0)
    cfg.fixed_secs = cfg.fixed_secs or (1.5 if q else 3.0)
    rate = cfg.rate or 20000
    cfg.rate = {"hits": rate, "negative": rate, "cluster": rate, "search": rate, "misses": rate // 2}
    cfg.warm_rate = 20000
    cfg.mem_entries = cfg.mem_entries or (30000 if q else 100000)
    cfg.mem_rate = 20000
    # unique names for an unthrottled misses run: more than any server answers
    cfg.miss_sat_names = int(cfg.sat_secs * 100000) + 10000

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(PROCS.stop_all)
    for tool in ("dnsperf", "nsd", "taskset"):
        if not shutil.which(tool):
            sys.exit("bench: %s is not installed (scripts/deps.sh bench)" % tool)
    if "nodedns" in cfg.servers and not os.access(cfg.nodedns, os.X_OK):
        sys.exit("bench: %s not built (make)" % cfg.nodedns)
    if (os.cpu_count() or 1) < 2:
        log("only one CPU: server and dnsperf share it")
        globals()["SERVER_CPUS"] = globals()["CLIENT_CPUS"] = "0"

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t_start = time.monotonic()
    load0 = loadavg()
    b = Bench(cfg)
    log("work directory %s" % b.base)
    try:
        workloads, memfile, services = generate(b.data, cfg)
        workloads = [w for w in workloads if w["id"] in cfg.workloads]
        nsd = Nsd(b.data, b.base)
        nsd.start()
        b.nsd = nsd
        log("NSD on 127.0.0.1:%d" % nsd.port)
        if cfg.profile:
            # Paths relative to the checkout: the file says nothing of the machine.
            text = profile(cfg, b, workloads, services, nsd).replace(ROOT + os.sep, "")
            os.makedirs(cfg.out, exist_ok=True)
            path = os.path.join(cfg.out, "profile-cache-hit.txt")
            with open(path, "w") as f:
                f.write(text)
            print(text)
            log("written %s" % path)
            return
        mach = machine()
        servers = b.make_servers(nsd.port)
        versions = {s.name: ("%s (not installed)" % s.name if not s.available() else s.version()) for s in servers}
        results, memory, threads = {}, {}, {}
        for srv in servers:
            results[srv.name] = b.run_server(srv, workloads, services)
            if nsd.proc.poll() is not None:
                raise StartError("NSD died: %s" % tail(nsd.logpath))
        if not cfg.no_memory:
            for srv in servers:
                memory[srv.name] = b.memory(srv, memfile)
        if not cfg.no_threads and "nodedns" in cfg.servers and (os.cpu_count() or 1) >= 2:
            nd = [s for s in servers if s.name == "nodedns"][0]
            sel = [w for w in workloads if w["id"] in ("hits", "misses")]
            save = cfg.sat_only
            cfg.sat_only = True
            threads = b.run_server(nd, sel, services, threads=2, cpus="0,1")
            cfg.sat_only = save
        finished = time.strftime("%Y-%m-%d %H:%M:%S")
        md = report(cfg, mach, versions, results, memory, threads, started, finished, load0, loadavg())
        md += "_Total time %.0f s._\n" % (time.monotonic() - t_start)
        os.makedirs(cfg.out, exist_ok=True)
        name = "latest"
        with open(os.path.join(cfg.out, name + ".md"), "w") as f:
            f.write(md)
        with open(os.path.join(cfg.out, name + ".json"), "w") as f:
            json.dump({"machine": mach, "versions": versions, "config": {
                "quick": cfg.quick, "reps": cfg.reps, "sat_secs": cfg.sat_secs, "fixed_secs": cfg.fixed_secs,
                "rate": cfg.rate, "mem_entries": cfg.mem_entries},
                "results": results, "memory": memory, "threads2": threads}, f, indent=1, default=str)
        print(md)
        log("written %s" % os.path.join(cfg.out, name + ".md"))
    finally:
        PROCS.stop_all()
        if not cfg.keep:
            shutil.rmtree(b.base, ignore_errors=True)
        else:
            log("kept %s" % b.base)


if __name__ == "__main__":
    main()
