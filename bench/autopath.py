#!/usr/bin/env python3
"""bench/autopath.py - the pod search-path workload with and without --autopath.

    NODEDNS_BIN=build/nodedns python3 bench/autopath.py [--lookups 300] [--out FILE]

A pod's lookups as glibc makes them (ndots:5, search
`<ns>.svc.cluster.local svc.cluster.local cluster.local corp.test`, A and
AAAA of each name until one of the pair has records, the name itself last),
sent by a stub in this script from 127.0.0.1 to nodedns, which runs against
NSD (zones example.test and corp.test) and the API stand-in
(tests/apiserver/fake_apiserver.py) holding 200 Services in 10 namespaces
and one Pod of the node whose address is 127.0.0.1 (so these lookups come
from a known pod when --autopath is on).

Four kinds of lookup (each `--lookups` distinct names): an external name
(hostN.example.test), a Service of another namespace (svc-N.team-M), a
Service of the pod's namespace (svc-N), a name under the node search domain
(hN -> hN.corp.test). Each runs cold (first time: upstream queries) and then
warm (the same names again, answered from the cache; the median of 7 passes). Per lookup: queries
the client sent, upstream queries nodedns sent (nodedns_upstream_requests_total),
and nodedns's CPU time (schedstat of its threads). Prints a Markdown table
and writes it to --out (default bench/results/autopath.md).
"""

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
from lib import dnswire, net, procs  # noqa: E402
from lib.metrics import Metrics  # noqa: E402
from integration.harness import NSD_CONF  # noqa: E402

BIN = os.path.abspath(os.environ.get("NODEDNS_BIN", os.path.join(REPO, "build", "nodedns")))
FAKE_API = os.path.join(REPO, "tests", "apiserver", "fake_apiserver.py")
LOCAL = "127.0.0.1"
NS = "team-00"
SEARCH = ["%s.svc.cluster.local" % NS, "svc.cluster.local", "cluster.local", "corp.test"]
N_NS, N_SVC = 10, 200
WARM_PASSES = 7  # the warm figures are the median pass



def zone(origin, names):
    z = ["$TTL 300", "%s. IN SOA ns.%s. h.%s. 1 3600 600 86400 60" % (origin, origin, origin),
         "%s. IN NS ns.%s." % (origin, origin), "ns.%s. IN A 127.0.0.1" % origin]
    for i, n in enumerate(names):
        z.append("%s.%s. IN A 10.9.%d.%d" % (n, origin, i // 250, 1 + i % 250))
    return "\n".join(z) + "\n"


def fixture():
    objs = [{"kind": "Namespace", "metadata": {"name": "team-%02d" % n}} for n in range(N_NS)]
    for i in range(N_SVC):
        ip = "10.96.%d.%d" % (i // 250, 1 + i % 250)
        objs.append({"kind": "Service", "metadata": {"name": "svc-%d" % i, "namespace": "team-%02d" % (i % N_NS)},
                     "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                              "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}})
    objs.append({"kind": "Pod", "metadata": {"name": "client", "namespace": NS},
                 "spec": {"nodeName": "bench-node", "dnsPolicy": "ClusterFirst"},
                 "status": {"phase": "Running", "podIP": LOCAL, "podIPs": [{"ip": LOCAL}]}})
    return objs


class Stub:
    """glibc's res_search for one lookup: A and AAAA per name."""

    def __init__(self, port):
        self.addr = (LOCAL, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.queries = 0

    def ask(self, name, qtype):
        self.queries += 1
        data = dnswire.udp_exchange(self.addr, dnswire.build_query(name, qtype, edns=None), 2.0,
                                    sock=self.sock)
        if data is None:
            raise RuntimeError("no answer for %s %s" % (name, qtype))
        m = dnswire.parse(data)
        return m.rcode == 0 and len(m.answer) > 0

    def lookup(self, name):
        names = [name + "." + s for s in SEARCH] + [name]
        if name.count(".") >= 5:
            names = [name] + names[:-1]
        for n in names:
            a, aaaa = self.ask(n, "A"), self.ask(n, "AAAA")
            if a or aaaa:
                return True
        return False


def cpu_ns(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            pass
    return total


def upstream_total(mport):
    with urllib.request.urlopen("http://%s:%d/metrics" % (LOCAL, mport), timeout=5) as r:
        return Metrics(r.read(), strict=False).totals().get("nodedns_upstream_requests_total", 0)


def run_one(tmp, nsd_port, api_args, autopath, kinds):
    port, mport = net.free_port(), net.free_port()
    args = [BIN, "--listen", "%s:%d" % (LOCAL, port), "--upstream", "%s:%d" % (LOCAL, nsd_port),
            "--threads", "1", "--metrics", "%s:%d" % (LOCAL, mport), "--health", "none",
            "--log-level", "warn"] + api_args
    if autopath:
        args += ["--autopath", "--node-name", "bench-node", "--autopath-search", "corp.test"]
    logpath = os.path.join(tmp, "nodedns-%s.log" % ("autopath" if autopath else "plain"))
    logf = open(logpath, "wb")
    p = procs.start(args, stdout=logf, stderr=subprocess.STDOUT,
                    env=dict(os.environ, NODEDNS_RUN_DIR=os.path.join(tmp, "run-%d" % autopath)))
    try:
        stub = Stub(port)
        deadline = time.monotonic() + 20
        while True:
            try:
                if stub.lookup("svc-0"):
                    break
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("nodedns did not answer: %s" % open(logpath).read()[-2000:])
            time.sleep(0.2)
        if autopath:  # the pod table reaches the workers after the first list
            while True:
                m = urllib.request.urlopen("http://%s:%d/metrics" % (LOCAL, mport), timeout=5).read()
                if Metrics(m, strict=False).totals().get("nodedns_autopath_pods_eligible", 0) == 1:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the pod never reached nodedns")
                time.sleep(0.1)
        out = {}
        for kind, names in kinds:
            for phase, passes in (("cold", 1), ("warm", WARM_PASSES)):
                runs = []
                for _ in range(passes):
                    stub.queries = 0
                    up0, cpu0 = upstream_total(mport), cpu_ns(p.pid)
                    found = sum(stub.lookup(n) for n in names)
                    cpu1, up1 = cpu_ns(p.pid), upstream_total(mport)
                    if found != len(names):
                        raise RuntimeError("%s: %d of %d names found" % (kind, found, len(names)))
                    runs.append({"q": stub.queries / len(names), "up": (up1 - up0) / len(names),
                                 "cpu_us": (cpu1 - cpu0) / 1000 / len(names)})
                runs.sort(key=lambda r: r["cpu_us"])
                out[(kind, phase)] = runs[len(runs) // 2]
        return out
    finally:
        procs.stop(p)
        logf.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lookups", type=int, default=300)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "autopath.md"))
    a = ap.parse_args()
    for tool in ("nsd", "openssl"):
        if not shutil.which(tool):
            sys.exit("bench/autopath.py: %s is missing" % tool)
    tmp = tempfile.mkdtemp(prefix="nodedns-apbench-")
    started = []
    try:
        n = a.lookups
        d = os.path.join(tmp, "nsd")
        os.makedirs(d)
        with open(os.path.join(d, "example.test.zone"), "w") as f:
            f.write(zone("example.test", ["host%d" % i for i in range(n)]))
        with open(os.path.join(d, "corp.test.zone"), "w") as f:
            f.write(zone("corp.test", ["h%d" % i for i in range(n)]))
        nsd_port = net.free_port()
        with open(os.path.join(d, "nsd.conf"), "w") as f:
            f.write(NSD_CONF.format(port=nsd_port, dir=d, zones="".join(
                'zone:\n    name: "%s"\n    zonefile: "%s.zone"\n' % (z, z) for z in ("example.test", "corp.test"))))
        started.append(procs.start(["nsd", "-d", "-c", os.path.join(d, "nsd.conf")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with open(os.path.join(tmp, "fixture.json"), "w") as f:
            json.dump({"objects": fixture()}, f)
        api = procs.start([sys.executable, FAKE_API, "--port", "0", "--control-port", "0",
                           "--token-file", os.path.join(tmp, "token"), "--cert-dir", os.path.join(tmp, "certs"),
                           "--fixture", os.path.join(tmp, "fixture.json")], stdout=subprocess.PIPE)
        started.append(api)
        info = json.loads(procs.read_line(api, 30))
        api_args = ["--kube-api", "https://127.0.0.1:%d" % info["port"], "--kube-token-file", info["token_file"],
                    "--kube-ca-file", info["ca"]]
        rnd = random.Random(15)
        own = [i for i in range(N_SVC) if i % N_NS == 0]
        kinds = [
            ("external name (hostN.example.test)", ["host%d.example.test" % i for i in range(n)]),
            ("Service of another namespace (svc.ns)",
             ["svc-%d.team-%02d" % (i, i % N_NS) for i in rnd.choices([i for i in range(N_SVC) if i % N_NS], k=n)]),
            ("Service of the pod's namespace (svc)", ["svc-%d" % i for i in rnd.choices(own, k=n)]),
            ("name under the node search domain (hN)", ["h%d" % i for i in range(n)]),
        ]
        res = {False: run_one(tmp, nsd_port, api_args, False, kinds),
               True: run_one(tmp, nsd_port, api_args, True, kinds)}
    finally:
        for p in reversed(started):
            procs.stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = ["# Autopath: the pod search-path workload",
             "",
             "`bench/autopath.py --lookups %d` on %s, nodedns --threads 1; a stub resolver doing what glibc "
             "does for one pod (ndots:5, search `%s`, A and AAAA per name). Per lookup: queries from the "
             "client, upstream queries from nodedns, nodedns CPU (schedstat). Cold: first lookup of each "
             "name; warm: the same names again (from the cache), the median of %d passes." % (n, time.strftime("%Y-%m-%d"), " ".join(SEARCH), WARM_PASSES),
             "",
             "| lookup | run | queries/lookup off → on | upstream/lookup off → on | CPU µs/lookup off → on |",
             "|---|---|---:|---:|---:|"]
    for kind, _ in kinds:
        for phase in ("cold", "warm"):
            o, w = res[False][(kind, phase)], res[True][(kind, phase)]
            lines.append("| %s | %s | %.1f → %.1f | %.2f → %.2f | %.1f → %.1f |" % (
                kind, phase, o["q"], w["q"], o["up"], w["up"], o["cpu_us"], w["cpu_us"]))
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
