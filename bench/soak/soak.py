#!/usr/bin/env python3
"""bench/soak/soak.py - long-running mixed load against nodedns (run by bench/soak.sh).

    bench/soak.sh [--duration S] [--qps N] [--out DIR] ...   # default 600 s
    bench/soak.sh --ci                                        # 30 s, same checks

What runs, all on 127.0.0.1:
  - NSD serving soak.test (50 fixed names, a wildcard with TTL 60), stopped
    and started again on the same port every --restart-every seconds (60;
    down for 1 s each time);
  - the API server stand-in (tests/apiserver/fake_apiserver.py) serving
    deploy/examples/demo-cluster.json, with --churn changes per second (100)
    to Services and EndpointSlices of a namespace "churn" through its control
    port; nodedns watches it (--kube-api). When the stand-in cannot start,
    nodedns serves the same file with --kube-snapshot and there is no churn;
  - nodedns (NODEDNS_BIN, default build/nodedns; --threads 2, --cache-memory 8M,
    1M with --ci so that the cache fills during warm-up);
  - dnsperf at --qps for the whole run, from a file mixing cache hits, misses
    under the wildcard (unique names), cluster names of the snapshot (A, SRV,
    PTR, NXDOMAIN) and the search-path pattern of a pod with ndots:5;
  - a checker asking kubernetes.default.svc.cluster.local A every 100 ms: every
    answer must be NOERROR with the snapshot's ClusterIP;
  - a sampler every --sample seconds (5; 1 with --ci): VmRSS, open fds,
    nodedns metrics (CSV in the output directory).

Checks (each printed as ok/FAIL, then "soak: N passed, N failed"):
  nodedns never died and stops with exit 0 on SIGTERM; the checker never
  missed; RSS flat after warm-up (slope of the last half <= SLOPE_LIMIT_KIB_MIN,
  SLOPE_LIMIT_CI_KIB_MIN for runs under 300 s, and growth over the last half
  <= FLAT_LIMIT_MIB); fd count flat over the last
  half; cache bytes <= --cache-memory; dnsperf lost <= 0.5 %; the upstream
  answered again within 3 s after every NSD restart; the churn ran at >= 90 %
  of its rate and the cluster zone matches the stand-in's objects at the end.
Exit 1 when a check fails.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
from lib import dnswire, procs  # noqa: E402
from lib.check import CheckFailed, tail  # noqa: E402
from lib.net import free_port  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import harness  # noqa: E402  - the integration suite's NSD config and Nodedns

HERE = os.path.dirname(os.path.abspath(__file__))

LOCAL = "127.0.0.1"
SNAPSHOT = os.path.join(REPO, "deploy", "examples", "demo-cluster.json")
FAKE_API = os.path.join(REPO, "tests", "apiserver", "fake_apiserver.py")
STABLE = ("kubernetes", "default")
SLOPE_LIMIT_KIB_MIN = 256     # RSS slope over the last half, KiB per minute
SLOPE_LIMIT_CI_KIB_MIN = 2048  # --ci: 15 s of samples cannot resolve less
FLAT_LIMIT_MIB = 2.0          # RSS growth over the last half
FD_LIMIT = 8                  # fd count spread over the last half
CHURN_SLOTS = 200
RECOVER_LIMIT_S = 3.0


def log(msg):
    print("# " + msg, flush=True)


# ------------------------------------------------------------------ NSD on a fixed port

ZONE = """$ORIGIN soak.test.
$TTL 300
@        3600 IN SOA ns1.soak.test. hostmaster.soak.test. 1 3600 900 604800 60
@        3600 IN NS  ns1.soak.test.
ns1      3600 IN A   127.0.0.1
%s
*.wild     60 IN A   192.0.2.200
"""


class FixedNsd:
    def __init__(self, d):
        self.dir = d
        self.port = free_port()
        self.proc = None
        hosts = "\n".join("h%d 3600 IN A 192.0.2.%d" % (i, i + 1) for i in range(50))
        with open(os.path.join(d, "soak.test.zone"), "w") as f:
            f.write(ZONE % hosts)
        self.conf = os.path.join(d, "nsd.conf")
        zcfg = 'zone:\n    name: "soak.test"\n    zonefile: "soak.test.zone"\n'
        with open(self.conf, "w") as f:
            f.write(harness.NSD_CONF.format(port=self.port, dir=d, zones=zcfg))
        self.restarts = 0

    @property
    def addr_text(self):
        return "%s:%d" % (LOCAL, self.port)

    def start(self):
        self.proc = procs.start(["nsd", "-d", "-c", self.conf],
                                stdout=open(os.path.join(self.dir, "nsd.stderr"), "ab"),
                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nsd exited: %s" % tail(
                    os.path.join(self.dir, "nsd.stderr")))
            try:
                m = dnswire.query((LOCAL, self.port), "soak.test", "SOA", timeout=0.3)
                if m.rcode == 0:
                    return
            except (TimeoutError, OSError, dnswire.DNSError):
                pass
            time.sleep(0.05)
        raise RuntimeError("nsd did not answer on port %d" % self.port)

    def stop(self):
        procs.stop(self.proc, grace=5.0)
        self.proc = None


# ------------------------------------------------------------------ API stand-in

class FakeApi:
    def __init__(self, d):
        self.dir = d
        self.proc = None
        self.info = None
        self.conn = None

    def start(self):
        cmd = [sys.executable, FAKE_API, "--port", "0", "--control-port", "0",
               "--token-file", os.path.join(self.dir, "token"),
               "--cert-dir", os.path.join(self.dir, "certs"), "--fixture", SNAPSHOT]
        self.errf = open(os.path.join(self.dir, "fake_apiserver.stderr"), "wb")
        self.proc = procs.start(cmd, stdout=subprocess.PIPE, stderr=self.errf)
        line = procs.read_line(self.proc, 30)
        if not line.endswith(b"\n"):
            self.stop()
            raise RuntimeError("API stand-in did not start: %s" % tail(
                os.path.join(self.dir, "fake_apiserver.stderr"), 5))
        self.info = json.loads(line.decode())

    def kube_args(self):
        # The soak's own run dir: never the host's /run/nodedns.
        return ["--run-dir", self.dir,
                "--kube-api", "https://%s:%d" % (LOCAL, self.info["port"]),
                "--kube-token-file", self.info.get("token_file") or
                os.path.join(self.dir, "token"),
                "--kube-ca-file", self.info.get("ca") or os.path.join(self.dir, "certs", "ca.crt")]

    def ctl(self, path, body=None, method="POST"):
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(LOCAL, self.info["control_port"],
                                                       timeout=10)
            try:
                self.conn.request(method, "/control/" + path, body=data,
                                  headers={"Content-Type": "application/json"} if data else {})
                r = self.conn.getresponse()
                out = r.read().decode()
                return r.status, (json.loads(out) if out.strip() else {})
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        return None, None

    def stop(self):
        if self.conn:
            self.conn.close()
        if self.proc is None:
            return
        procs.stop(self.proc, grace=5.0, group=False)
        self.proc.stdout.close()
        self.errf.close()
        self.proc = None


def churn_objects(slot, gen):
    """The Service and EndpointSlice of churn slot @slot at generation @gen."""
    ip = "10.97.%d.%d" % (slot // 250, slot % 250 + 1)
    svc = {"kind": "Service", "apiVersion": "v1",
           "metadata": {"name": "c%d" % slot, "namespace": "churn"},
           "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "ports": [{"name": "http", "protocol": "TCP", "port": 80 + gen % 2,
                               "targetPort": 8080}]}}
    eps = {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
           "metadata": {"name": "c%d-x" % slot, "namespace": "churn",
                        "labels": {"kubernetes.io/service-name": "c%d" % slot}},
           "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.244.%d.%d" % (gen % 200, slot % 250 + 1)],
                          "conditions": {"ready": True}}],
           "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}
    return svc, eps


class Churn(threading.Thread):
    """@rate changes per second: per slot, in turn, add a Service, update it,
    add its EndpointSlice, update that, delete both. The changes go in
    batches of BATCH objects per control request (each object is its own
    change and watch event): the stand-in's HTTP server answers in two
    writes, so one request costs a delayed ACK (~40 ms) and single-object
    requests could not reach 100/s."""

    PHASES = ("add_svc", "upd_svc", "add_eps", "upd_eps", "del_eps", "del_svc")
    BATCH = 5   # divides CHURN_SLOTS: a batch never spans two phases

    def __init__(self, api, rate):
        super().__init__(daemon=True)
        self.api, self.rate = api, rate
        self.stop_ev = threading.Event()
        self.ok = self.failed = 0
        self.errors = []
        self.t0 = self.t1 = None

    def op(self, n):
        slot = n % CHURN_SLOTS
        phase = self.PHASES[(n // CHURN_SLOTS) % len(self.PHASES)]
        gen = n // (CHURN_SLOTS * len(self.PHASES))
        svc, eps = churn_objects(slot, gen)
        if phase == "upd_svc":
            svc["metadata"].setdefault("labels", {})["gen"] = str(gen)
        if phase == "upd_eps":
            eps["endpoints"][0]["addresses"] = ["10.245.%d.%d" % (gen % 200, slot % 250 + 1)]
        return {"add_svc": ("add", svc), "upd_svc": ("update", svc),
                "add_eps": ("add", eps), "upd_eps": ("update", eps),
                "del_eps": ("delete", eps), "del_svc": ("delete", svc)}[phase]

    def run(self):
        self.api.ctl("add", {"kind": "Namespace", "apiVersion": "v1",
                             "metadata": {"name": "churn"}})
        n = 0
        self.t0 = time.monotonic()
        last_compact, compact_rv = self.t0, None
        while not self.stop_ev.is_set():
            due = self.t0 + n / float(self.rate)
            now = time.monotonic()
            if due > now:
                self.stop_ev.wait(due - now)
                continue
            ops = [self.op(n + i) for i in range(self.BATCH)]
            path = ops[0][0]
            try:
                st, body = self.api.ctl(path, {"objects": [o for _, o in ops]})
            except (OSError, http.client.HTTPException) as e:
                st, body = None, str(e)
            if st == 200:
                self.ok += len(ops)
            else:
                self.failed += len(ops)
                if len(self.errors) < 5:
                    self.errors.append("%s: %s %s" % (path, st, body))
            n += len(ops)
            # Compact the stand-in's history to what it had 5 s ago: watchers
            # are past it, and its watch loop stays cheap.
            if now - last_compact >= 5:
                if compact_rv is not None:
                    self.api.ctl("compact", {"resourceVersion": compact_rv})
                try:
                    compact_rv = int(body.get("resourceVersion")) if isinstance(body, dict) \
                        else compact_rv
                except (TypeError, ValueError):
                    pass
                last_compact = now
        self.t1 = time.monotonic()

    def achieved(self):
        if self.t0 is None:
            return 0.0
        return self.ok / max(1e-9, (self.t1 or time.monotonic()) - self.t0)


# ------------------------------------------------------------------ load

def snapshot_names():
    with open(SNAPSHOT) as f:
        doc = json.load(f)
    names, stable_ip = [], None
    for item in doc.get("items", []):
        if item.get("kind") != "Service":
            continue
        md, spec = item["metadata"], item.get("spec", {})
        base = "%s.%s.svc.cluster.local" % (md["name"], md["namespace"])
        names.append((base, "A"))
        for p in spec.get("ports") or []:
            if p.get("name"):
                names.append(("_%s._%s.%s" % (p["name"], p.get("protocol", "TCP").lower(), base),
                              "SRV"))
        ip = spec.get("clusterIP")
        if ip and ip != "None":
            names.append((".".join(reversed(ip.split("."))) + ".in-addr.arpa", "PTR"))
        if (md["name"], md["namespace"]) == STABLE:
            stable_ip = ip
        names.append(("nope-%s.%s.svc.cluster.local" % (md["name"], md["namespace"]), "A"))
    return names, stable_ip


def write_queries(path, lines_wanted):
    """20-line blocks: 8 cache hits, 4 unique misses, 4 cluster names, 4 of a
    search-path walk (ndots:5, search default.svc.cluster.local svc.cluster.local
    cluster.local)."""
    cluster, _ = snapshot_names()
    tag = "%x" % random.getrandbits(24)
    n = 0
    with open(path, "w") as f:
        for b in range(lines_wanted // 20):
            for i in range(8):
                f.write("h%d.soak.test A\n" % ((b * 8 + i) % 50))
            for i in range(4):
                f.write("m%d-%s.wild.soak.test A\n" % (b * 4 + i, tag))
            for i in range(4):
                name, t = cluster[(b * 4 + i) % len(cluster)]
                f.write("%s %s\n" % (name, t))
            h = "h%d.soak.test" % (b % 50)
            for suffix in ("default.svc.cluster.local", "svc.cluster.local", "cluster.local"):
                f.write("%s.%s A\n" % (h, suffix))
            f.write("%s AAAA\n" % h)
            n += 20
    return n


class Checker(threading.Thread):
    """The stable cluster name every 100 ms: NOERROR with its ClusterIP."""

    def __init__(self, addr, ip):
        super().__init__(daemon=True)
        self.addr, self.ip = addr, ip
        self.stop_ev = threading.Event()
        self.asked = 0
        self.failures = []
        self.lat = []
        self.name = "%s.%s.svc.cluster.local" % STABLE

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))
            nxt += 0.1
            t0 = time.monotonic()
            self.asked += 1
            wire = dnswire.build_query(self.name, "A")
            try:
                data = dnswire.udp_exchange(self.addr, wire, 1.0, sock=sock)
                if data is None:
                    raise TimeoutError("no answer within 1 s")
                m = dnswire.parse(data)
                dnswire.check_reply(wire, m)
                if m.rcode != 0 or m.answers("A") != [self.ip]:
                    raise ValueError(m.summary())
                self.lat.append(time.monotonic() - t0)
            except Exception as e:
                self.failures.append("%s: %s" % (time.strftime("%H:%M:%S"), e))
        sock.close()


def read_status(pid):
    st = procs.status(pid)
    return {k: st[k] for k in ("VmRSS", "VmHWM", "Threads") if k in st}


SAMPLE_METRICS = [
    ("req", "nodedns_requests_total", {}),
    ("servfail", "nodedns_responses_total", {"rcode": "SERVFAIL"}),
    ("cache_bytes", "nodedns_cache_bytes", {}),
    ("cache_entries", "nodedns_cache_entries", {}),
    ("up_fail", "nodedns_upstream_failures_total", {}),
    ("stale", "nodedns_stale_answers_total", {}),
    ("watch_events", "nodedns_watch_events_total", {}),
    ("watch_restarts", "nodedns_watch_restarts_total", {}),
    ("cluster_objects", "nodedns_cluster_objects", {}),
    ("tcp_conns", "nodedns_tcp_connections", {}),
    ("up_conns", "nodedns_upstream_connections", {}),
]


class Sampler(threading.Thread):
    def __init__(self, nd, every, csv_path):
        super().__init__(daemon=True)
        self.nd, self.every = nd, every
        self.stop_ev = threading.Event()
        self.rows = []
        self.csv = open(csv_path, "w")
        self.csv.write("t,rss_kib,hwm_kib,fds,threads," +
                       ",".join(k for k, _, _ in SAMPLE_METRICS) + "\n")
        self.t0 = time.monotonic()

    def sample(self):
        pid = self.nd.pid
        st = read_status(pid)
        row = {"t": time.monotonic() - self.t0, "rss": st["VmRSS"], "hwm": st["VmHWM"],
               "fds": len(os.listdir("/proc/%d/fd" % pid)), "threads": st.get("Threads", 0)}
        try:
            m = self.nd.metrics()
            for k, name, labels in SAMPLE_METRICS:
                row[k] = m.sum(name, **labels) if m.has(name) else float("nan")
        except Exception:
            for k, _, _ in SAMPLE_METRICS:
                row[k] = float("nan")
        self.rows.append(row)
        self.csv.write("%.1f,%d,%d,%d,%d," % (row["t"], row["rss"], row["hwm"], row["fds"],
                                              row["threads"]) +
                       ",".join("%g" % row[k] for k, _, _ in SAMPLE_METRICS) + "\n")
        self.csv.flush()

    def run(self):
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            if not self.nd.alive():
                return
            try:
                self.sample()
            except (OSError, KeyError):
                return
            nxt += self.every
            self.stop_ev.wait(max(0.0, nxt - time.monotonic()))


class Restarter(threading.Thread):
    """Stop NSD, wait 1 s, start it again on the same port, every @every s;
    then a new name must be answered through nodedns within RECOVER_LIMIT_S."""

    def __init__(self, nsd, nd, every):
        super().__init__(daemon=True)
        self.nsd, self.nd, self.every = nsd, nd, every
        self.stop_ev = threading.Event()
        self.recoveries = []
        self.errors = []

    def run(self):
        while not self.stop_ev.wait(self.every):
            try:
                self.nsd.stop()
                time.sleep(1.0)
                self.nsd.start()
                self.nsd.restarts += 1
            except Exception as e:
                self.errors.append("restart: %s" % e)
                continue
            t0 = time.monotonic()
            ok = False
            while time.monotonic() - t0 < RECOVER_LIMIT_S + 2:
                name = "rec%x.wild.soak.test" % random.getrandbits(40)
                try:
                    m = dnswire.query(self.nd.addr, name, "A", timeout=1.0)
                    if m.rcode == 0 and m.answers("A") == ["192.0.2.200"]:
                        ok = True
                        break
                except (TimeoutError, OSError, dnswire.DNSError):
                    pass
                time.sleep(0.05)
            self.recoveries.append(time.monotonic() - t0 if ok else float("inf"))


def run_dnsperf(port, qfile, duration, qps, out_path):
    cmd = ["dnsperf", "-s", LOCAL, "-p", str(port), "-d", qfile, "-l", str(duration),
           "-Q", str(qps), "-c", "4", "-q", "500", "-t", "2", "-S", "10"]
    with open(out_path, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    return p


def parse_dnsperf(path):
    txt = open(path).read()
    out = {}
    for k, pat in (("sent", r"Queries sent:\s+(\d+)"), ("completed", r"Queries completed:\s+(\d+)"),
                   ("lost", r"Queries lost:\s+(\d+)"), ("qps", r"Queries per second:\s+([\d.]+)")):
        m = re.search(pat, txt)
        out[k] = float(m.group(1)) if m else None
    m = re.search(r"Response codes:\s+(.*)", txt)
    out["rcodes"] = m.group(1).strip() if m else "?"
    return out


# ------------------------------------------------------------------ analysis

def slope_kib_per_min(rows):
    if len(rows) < 2:
        return 0.0
    xs = [r["t"] for r in rows]
    ys = [r["rss"] for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60.0


def table(rows, max_rows=24):
    step = max(1, (len(rows) + max_rows - 1) // max_rows)
    pick = rows[::step]
    if rows and pick[-1] is not rows[-1]:
        pick.append(rows[-1])
    out = ["   t(s)  RSS(MiB)  fds   qps  cache(MiB) entries  SERVFAIL  up_fail  watch_ev  objects"]
    prev = None
    for r in pick:
        qps = ((r["req"] - prev["req"]) / (r["t"] - prev["t"])) if prev and r["t"] > prev["t"] \
            else float("nan")
        out.append("%7.0f  %8.2f  %3d  %5.0f  %10.2f  %7.0f  %8.0f  %7.0f  %8.0f  %7.0f" % (
            r["t"], r["rss"] / 1024.0, r["fds"], qps, r["cache_bytes"] / 1048576.0,
            r["cache_entries"], r["servfail"], r["up_fail"], r["watch_events"],
            r["cluster_objects"]))
        prev = r
    return "\n".join(out)


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ci", action="store_true", help="30 s run, same checks")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", "600")))
    ap.add_argument("--qps", type=int, default=int(os.environ.get("SOAK_QPS", "2000")))
    ap.add_argument("--sample", type=float, default=None, help="seconds (5; 1 with --ci)")
    ap.add_argument("--restart-every", type=float, default=None,
                    help="NSD restart period (60; 10 with --ci)")
    ap.add_argument("--churn", type=int, default=100, help="API changes per second")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-memory", default=None, help="8M (1M with --ci)")
    ap.add_argument("--out", default=None, help="results directory (default: a new /tmp dir)")
    ap.add_argument("--no-api", action="store_true", help="--kube-snapshot, no churn")
    a = ap.parse_args()
    if a.ci:
        a.duration = 30
    sample = a.sample or (1.0 if a.ci else 5.0)
    restart_every = a.restart_every or (10.0 if a.ci else 60.0)
    cache_mem = a.cache_memory or ("1M" if a.ci else "8M")
    cache_bytes = int(cache_mem[:-1]) << {"K": 10, "M": 20, "G": 30}[cache_mem[-1].upper()] \
        if cache_mem[-1].isalpha() else int(cache_mem)
    out = a.out or tempfile.mkdtemp(prefix="nodedns-soak-")
    os.makedirs(out, exist_ok=True)
    for tool in ("dnsperf", "nsd"):
        if not shutil.which(tool):
            print("soak: %s not found (apt-get install %s)" % (tool, tool))
            print("soak: 0 passed, 1 failed")
            return 1
    log("soak: %d s at %d qps, NSD restart every %.0f s, churn %d/s, %s, results in %s" % (
        a.duration, a.qps, restart_every, a.churn, harness.nodedns_bin(), out))

    results = []

    def result(ok, name, detail):
        results.append((ok, name))
        print("%s - %s: %s" % ("ok" if ok else "FAIL", name, detail), flush=True)

    nsd = FixedNsd(out)
    api = None
    nd = None
    threads = []
    try:
        nsd.start()
        kube = ["--kube-snapshot", SNAPSHOT]
        api_note = "--kube-snapshot (no API churn: --no-api)"
        if not a.no_api and os.path.exists(FAKE_API):
            try:
                api = FakeApi(out)
                api.start()
                kube = api.kube_args()
                api_note = "API stand-in on port %d" % api.info["port"]
            except Exception as e:
                api = None
                api_note = "--kube-snapshot (API stand-in unusable: %s)" % e
        log("cluster data: " + api_note)
        nd = harness.Nodedns(upstream=nsd.addr_text, threads=a.threads, timeout_ms=1000,
                             log_level="info", extra=["--cache-memory", cache_mem] + kube)
        nd.start()
        keep_log(nd, out)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if harness.http_get(LOCAL, nd.health_port, "/ready")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("nodedns /ready not 200 within 15 s")
        _, stable_ip = snapshot_names()
        qfile = os.path.join(out, "queries.txt")
        # one pass over the file for the whole run: the misses stay misses
        nlines = write_queries(qfile, min(1500000, a.qps * a.duration + 20000))
        log("query file: %d lines (8 hits, 4 unique misses, 4 cluster, 4 search-path per 20)"
            % nlines)

        sampler = Sampler(nd, sample, os.path.join(out, "samples.csv"))
        checker = Checker(nd.addr, stable_ip)
        restarter = Restarter(nsd, nd, restart_every)
        churn = Churn(api, a.churn) if api else None
        threads = [t for t in (sampler, checker, restarter, churn) if t]
        for t in threads:
            t.start()
        perf = run_dnsperf(nd.port, qfile, a.duration, a.qps, os.path.join(out, "dnsperf.txt"))
        t_end = time.monotonic() + a.duration
        while time.monotonic() < t_end and perf.poll() is None and nd.alive():
            time.sleep(0.5)
        try:
            perf.wait(a.duration + 30)
        except subprocess.TimeoutExpired:
            perf.kill()
        for t in (churn, restarter, checker):
            if t:
                t.stop_ev.set()
        for t in (churn, restarter, checker):
            if t:
                t.join(15)
        alive = nd.alive()
        if alive:
            sampler.sample()
        sampler.stop_ev.set()
        sampler.join(5)
        rows = sampler.rows

        # ---- report
        dp = parse_dnsperf(os.path.join(out, "dnsperf.txt"))
        print()
        print(table(rows))
        half = [r for r in rows if r["t"] >= rows[-1]["t"] / 2.0] if rows else []
        slope = slope_kib_per_min(half)
        print()
        log("dnsperf: sent %s, completed %s, lost %s, %s qps; rcodes %s" % (
            dp["sent"], dp["completed"], dp["lost"], dp["qps"], dp["rcodes"]))
        if churn:
            log("churn: %d changes ok (%.1f/s), %d failed %s" % (
                churn.ok, churn.achieved(), churn.failed, churn.errors[:2]))
        log("NSD restarts: %d, recovery %s s" % (
            nsd.restarts, ["%.2f" % x for x in restarter.recoveries]))
        lat = sorted(checker.lat)
        if lat:
            log("checker: %d asked, %d failed; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms"
                % (checker.asked, len(checker.failures), lat[len(lat) // 2] * 1e3,
                   lat[int(len(lat) * 0.99)] * 1e3, lat[-1] * 1e3))
        log("RSS slope over the last half (t >= %.0f s): %+.1f KiB/min" % (
            half[0]["t"] if half else 0, slope))

        # ---- checks
        result(alive, "no crash", "nodedns %s" % nd.describe_rc(nd.proc.poll()))
        result(checker.asked > 0 and not checker.failures, "cluster answers never lost",
               "%d queries for %s, %d failed %s" % (checker.asked, checker.name,
                                                    len(checker.failures),
                                                    checker.failures[:3]))
        if len(half) >= 3:
            grow = (max(r["rss"] for r in half[len(half) // 2:]) - half[0]["rss"]) / 1024.0
            lim = SLOPE_LIMIT_CI_KIB_MIN if a.duration < 300 else SLOPE_LIMIT_KIB_MIN
            result(slope <= lim and grow <= FLAT_LIMIT_MIB, "RSS flat",
                   "slope %+.1f KiB/min (limit %d), growth over the last half %+.2f MiB "
                   "(limit %.1f); %.1f -> %.1f MiB" % (
                       slope, lim, grow, FLAT_LIMIT_MIB,
                       rows[0]["rss"] / 1024.0, rows[-1]["rss"] / 1024.0))
            fds = [r["fds"] for r in half]
            result(max(fds) - min(fds) <= FD_LIMIT and rows[-1]["fds"] <= half[0]["fds"] + FD_LIMIT,
                   "fd count flat", "last half %d..%d, end %d (limit spread %d)" % (
                       min(fds), max(fds), rows[-1]["fds"], FD_LIMIT))
        else:
            result(False, "RSS flat", "only %d samples in the last half" % len(half))
        peak_cb = max((r["cache_bytes"] for r in rows), default=0)
        result(peak_cb <= cache_bytes, "cache bounded", "peak nodedns_cache_bytes %d, "
               "--cache-memory %s" % (peak_cb, cache_mem))
        lost_ok = dp["sent"] and dp["lost"] is not None and dp["lost"] <= dp["sent"] * 0.005
        result(bool(lost_ok), "dnsperf answered", "sent %s, lost %s (limit 0.5 %%)" % (
            dp["sent"], dp["lost"]))
        rec_ok = (nsd.restarts >= 1 and not restarter.errors and
                  all(x <= RECOVER_LIMIT_S for x in restarter.recoveries))
        result(rec_ok, "upstream recovers after NSD restarts", "%d restarts, recovery %s s %s" % (
            nsd.restarts, ["%.2f" % x for x in restarter.recoveries], restarter.errors[:2]))
        if churn:
            rate_ok = churn.achieved() >= 0.9 * a.churn and churn.failed == 0
            result(rate_ok, "API churn ran", "%d changes, %.1f/s (target %d), %d failed %s" % (
                churn.ok, churn.achieved(), a.churn, churn.failed, churn.errors[:2]))
            ok, detail = churn_consistent(api, nd)
            result(ok, "cluster zone matches the API at the end", detail)
        else:
            log("API churn: skipped (%s)" % api_note)
        if alive:
            if not os.path.exists(os.path.join(out, "nodedns.stderr")):
                shutil.copy(nd.stderr_path, os.path.join(out, "nodedns.stderr"))
            try:
                nd.stop()
                result(True, "graceful stop", "exit 0 after SIGTERM")
            except CheckFailed as e:
                result(False, "graceful stop", str(e).split("\n")[0])
    except Exception as e:
        result(False, "setup", "%s: %s" % (type(e).__name__, e))
    finally:
        for t in threads:
            if hasattr(t, "stop_ev"):
                t.stop_ev.set()
        if nd is not None:
            if not os.path.exists(os.path.join(out, "nodedns.stderr")):
                try:
                    shutil.copy(nd.stderr_path, os.path.join(out, "nodedns.stderr"))
                except OSError:
                    pass
            nd.kill()
        if api:
            api.stop()
        nsd.stop()
    try:
        os.unlink(os.path.join(out, "queries.txt"))   # tens of MB, made again each run
    except OSError:
        pass
    passed = sum(1 for ok, _ in results if ok)
    failed = len(results) - passed
    log("results in %s (samples.csv, dnsperf.txt, nodedns.stderr)" % out)
    print("soak: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def keep_log(nd, out):
    """nodedns' stderr as out/nodedns.stderr: a hard link, so that it keeps
    the last lines and survives harness' clean-up after a good stop."""
    dst = os.path.join(out, "nodedns.stderr")
    try:
        os.link(nd.stderr_path, dst)
    except OSError:
        pass   # another file system: copied at the end instead


def churn_consistent(api, nd, wait_s=3.0):
    """Every churn slot as the stand-in has it now: a Service -> its ClusterIP,
    none -> NXDOMAIN. Retried for @wait_s (the watch delivers in batches)."""
    st, body = api.ctl("objects", method="GET")
    want = {}
    for o in body.get("items", []):
        if o.get("kind") == "Service" and o["metadata"].get("namespace") == "churn":
            want[o["metadata"]["name"]] = o["spec"]["clusterIP"]
    deadline = time.monotonic() + wait_s
    while True:
        bad = []
        for slot in range(0, CHURN_SLOTS, 5):
            name = "c%d" % slot
            try:
                m = dnswire.query(nd.addr, "%s.churn.svc.cluster.local" % name, "A", timeout=1.0)
            except (TimeoutError, OSError, dnswire.DNSError) as e:
                bad.append("%s: %s" % (name, e))
                continue
            if name in want:
                if m.rcode != 0 or m.answers("A") != [want[name]]:
                    bad.append("%s: %s, want %s" % (name, m.summary(), want[name]))
            elif m.rcode_name != "NXDOMAIN":
                bad.append("%s: %s, want NXDOMAIN" % (name, m.summary()))
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return (not bad, "%d services in the stand-in, %d slots checked, %d wrong %s" % (
        len(want), len(range(0, CHURN_SLOTS, 5)), len(bad), bad[:3]))


if __name__ == "__main__":
    sys.exit(main())
