#!/usr/bin/env python3
"""bench/cluster/apicost.py - what nodedns's API watch costs the API server, per node and for a fleet.

Usage (from the repository root, after `make`):
    python3 bench/cluster/apicost.py [--clients 200] [--per-process 50]
        [--services 500] [--namespaces 20] [--out bench/results/apicost-latest.md]
        [--quick]

Runs the real watch code (src/io/k8s_watch*.c with the real store, built
into bench/cluster/apicost_driver.c, several clients per process) against
the test stand-in (tests/apiserver/fake_apiserver.py) on loopback, HTTP/1.1,
and reads the watch's own counters (requests and response bytes by
resource: nodedns_watch_requests_total / _bytes_total) and the stand-in's.

Per node (one client):
  - first sync, paginated lists and streaming lists (WatchList);
  - per change: a Service added, an EndpointSlice updated;
  - idle: bookmarks and watch restarts, measured over a short run with a
    1 s bookmark interval and 3 s watches, extrapolated to an hour at
    kube-apiserver's pace (a bookmark a minute per watch, watches ended at a
    random 300-600 s, so 8 per hour per resource);
  - an API server restart (/control/restart: watches cut, connections reset
    for 2 s, history compacted at the current resourceVersion), quiet (every
    watch at the latest resourceVersion) and just after a Service change
    (the other two watches behind until their next bookmark: 410, relist).
Fleet: --clients watch clients (--per-process per driver process) through an
API server restart 0.3 s after a Service change: requests/s at the stand-in
over time (the reconnect curve), time until every client watches all three
resources again, how many resource watches resumed and how many relisted.
The table extrapolates to 5,000 nodes with the objects of a larger cluster
(bytes scale per object) next to kube-proxy, which lists and watches
Services and EndpointSlices from every node the same way.

Writes --out (markdown), the same path with .json, and a PNG of the curve
next to it (bench/cluster/apicost_plot.py; needs matplotlib, e.g. Debian's
python3-matplotlib, else a text curve in the markdown only).
"""

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STANDIN = os.path.join(ROOT, "tests", "apiserver", "fake_apiserver.py")
KINDS = ("services", "endpointslices", "namespaces")

# kube-apiserver's pace, for the idle extrapolation.
BOOKMARKS_PER_HOUR = 60          # watch cache: a bookmark about every minute
RESTARTS_PER_HOUR = 3600 / 450.0  # timeoutSeconds random in [300, 600]


def build_driver(out_dir):
    """bench/cluster/apicost_driver.c against build/lib (make builds them)."""
    os.makedirs(out_dir, exist_ok=True)
    exe = os.path.join(out_dir, "apicost_driver")
    pkgs = "ldns libuv libcurl jansson yajl yaml-0.1".split()
    cflags = subprocess.check_output(["pkg-config", "--cflags"] + pkgs, text=True).split()
    libs = subprocess.check_output(["pkg-config", "--libs"] + pkgs, text=True).split()
    lib = os.path.join(ROOT, "build", "lib")
    cmd = (["cc", "-std=c11", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE",
            "-I" + os.path.join(ROOT, "include")] + cflags +
           ["-o", exe, os.path.join(ROOT, "bench", "cluster", "apicost_driver.c")] +
           [os.path.join(lib, "libnodedns_%s.a" % x) for x in ("io", "cluster", "util")] +
           libs + ["-lpthread", "-lm"])
    subprocess.run(cmd, check=True)
    return exe


class StandIn:
    def __init__(self, tmp, bookmark_interval):
        self.tmp = tmp
        self.log = open(os.path.join(tmp, "standin.log"), "w")
        self.p = subprocess.Popen(
            [sys.executable, STANDIN, "--port", "0", "--control-port", "0",
             "--token-file", os.path.join(tmp, "token"), "--cert-dir",
             os.path.join(tmp, "certs"), "--bookmark-interval", str(bookmark_interval),
             "--rv0-ignores-limit"],  # as the watch cache answers resourceVersion=0
            stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        info = json.loads(self.p.stdout.readline())
        self.url = "https://127.0.0.1:%d" % info["port"]
        self.cport = info["control_port"]
        self.ca, self.token_file = info["ca"], info["token_file"]

    def ctl(self, path, body=None, get=False):
        data = None if get else json.dumps(body or {}).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/control/%s" % (self.cport, path),
                                     data=data, method="GET" if get else "POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def stats(self):
        return self.ctl("stats", get=True)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.log.close()


class Driver:
    def __init__(self, exe, api, n, extra=(), name="d"):
        self.err = open(os.path.join(api.tmp, "driver-%s.log" % name), "w")
        self.p = subprocess.Popen(
            [exe, "--api", api.url, "--token-file", api.token_file, "--ca-file", api.ca,
             "--clients", str(n), "--log-level", "warn"] + list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
            start_new_session=True)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.q.get(timeout=60)
        if not first or "started" not in first:
            raise RuntimeError("driver did not start: %s" % first)

    def _read(self):
        for line in self.p.stdout:
            self.q.put(json.loads(line))
        self.q.put(None)

    def dump(self):
        self.p.stdin.write("dump\n")
        self.p.stdin.flush()
        while True:
            m = self.q.get(timeout=120)
            if m is None:
                raise RuntimeError("driver exited")
            if "dump" in m:
                return m["dump"]["clients"]

    def wait(self, pred, what, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            c = self.dump()
            if pred(c):
                return c
            time.sleep(0.1)
        raise RuntimeError("timed out waiting for %s" % what)

    def quit(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(60)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait()
        self.err.close()


def fixture(n_svc, n_ns):
    objs = [{"kind": "Namespace", "metadata": {"name": "ns%d" % i}} for i in range(n_ns)]
    for i in range(n_svc):
        ns, name = "ns%d" % (i % n_ns), "svc%d" % i
        objs.append({"kind": "Service", "metadata": {"name": name, "namespace": ns,
                                                     "labels": {"app": name}},
                     "spec": {"clusterIP": "10.96.%d.%d" % (i // 250, i % 250 + 1),
                              "type": "ClusterIP", "selector": {"app": name},
                              "ports": [{"name": "http", "port": 80, "protocol": "TCP",
                                         "targetPort": 8080}]}})
        objs.append(slice_obj(ns, name, i, 0))
    return objs


def slice_obj(ns, name, i, gen):
    """An EndpointSlice of 3 ready endpoints (gen changes the last one)."""
    eps = [{"addresses": ["10.244.%d.%d" % (i % 250, (j + gen) % 250 + 1)],
            "conditions": {"ready": True}, "nodeName": "node-%d" % ((i + j) % 97),
            "targetRef": {"kind": "Pod", "name": "%s-%d" % (name, j), "namespace": ns}}
           for j in range(3)]
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name + "-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "endpoints": eps, "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def resynced(b, c):
    """Every resource of client @c (before: @b) has a watch the server took
    since: resumed, or relisted and watching."""
    return all(c["res"][k]["established"] > b["res"][k]["established"] for k in KINDS)


def res_of(c):
    return {k: dict(c["res"][k]) for k in KINDS}


def delta(a, b):
    """b - a of two per-resource dicts of one client."""
    return {k: {f: b[k][f] - a[k][f] for f in ("requests", "bytes", "relists", "reconnects")}
            for k in KINDS}


def total(d, f):
    return sum(d[k][f] for k in KINDS)


# ------------------------------------------------------------------ per node

def per_node(exe, tmp, a):
    out = {}
    api = StandIn(tmp, bookmark_interval=1.0)
    try:
        objs = fixture(a.services, a.namespaces)
        for i in range(0, len(objs), 2000):
            api.ctl("add", {"objects": objs[i:i + 2000]})
        out["objects"] = api.stats()["objects"]

        # First sync, both ways (a fresh client each).
        for mode, extra in (("paginated", ["--watch-list", "off"]), ("streaming", [])):
            api.ctl("watch-list", {"mode": "serve" if mode == "streaming" else "refuse"})
            d = Driver(exe, api, 1, extra, "sync-" + mode)
            c = d.wait(lambda c: c[0]["synced"] and c[0]["watches"] >= 3, "sync")[0]
            out["sync_" + mode] = res_of(c)
            d.quit()

        # Per change, idle and restart, with the streaming client.
        api.ctl("watch-list", {"mode": "serve"})
        d = Driver(exe, api, 1, [], "node")
        c = d.wait(lambda c: c[0]["synced"] and c[0]["watches"] >= 3, "sync")[0]
        time.sleep(1.5)
        api.ctl("bookmarks", {"interval": 1000})  # quiet while changes are counted
        time.sleep(1.5)
        n = 50
        r0 = res_of(d.dump()[0])
        e0 = d.dump()[0]["events"]
        api.ctl("add", {"objects": [
            {"kind": "Service", "metadata": {"name": "chg%d" % i, "namespace": "ns0"},
             "spec": {"clusterIP": "10.97.0.%d" % (i + 1), "type": "ClusterIP",
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}
            for i in range(n)]})
        d.wait(lambda c: c[0]["events"] >= e0 + n, "service events")
        r1 = res_of(d.dump()[0])
        api.ctl("update", {"objects": [slice_obj("ns%d" % (i % a.namespaces), "svc%d" % i, i, 1)
                                       for i in range(n)]})
        d.wait(lambda c: c[0]["events"] >= e0 + 2 * n, "slice events")
        r2 = res_of(d.dump()[0])
        out["change_service_bytes"] = delta(r0, r1)["services"]["bytes"] / n
        out["change_slice_bytes"] = delta(r1, r2)["endpointslices"]["bytes"] / n

        # Idle: bookmarks alone (1 s), then watch restarts alone.
        api.ctl("bookmarks", {"interval": 1.0})
        c0 = d.dump()[0]
        time.sleep(a.idle_s)
        c1 = d.dump()[0]
        bm = c1["bookmarks"] - c0["bookmarks"]
        dd = delta(res_of(c0), res_of(c1))
        out["idle_run"] = {"seconds": a.idle_s, "bookmarks": bm, "requests": total(dd, "requests"),
                           "bytes": total(dd, "bytes")}
        out["bookmark_bytes"] = total(dd, "bytes") / max(bm, 1)
        d.quit()

        api.ctl("bookmarks", {"interval": 1000})
        d = Driver(exe, api, 1, ["--watch-timeout-s", "3"], "restarts")
        d.wait(lambda c: c[0]["synced"] and c[0]["watches"] >= 3, "sync")
        c0 = d.dump()[0]
        time.sleep(a.idle_s)
        c1 = d.dump()[0]
        dd = delta(res_of(c0), res_of(c1))
        restarts = c1["watches"] - c0["watches"]
        out["restart_run"] = {"seconds": a.idle_s, "watch_restarts": restarts,
                              "requests": total(dd, "requests"), "bytes": total(dd, "bytes")}
        out["watch_restart_bytes"] = total(dd, "bytes") / max(restarts, 1)
        d.quit()
        per_hour_req = 3 * RESTARTS_PER_HOUR
        per_hour_bytes = (3 * BOOKMARKS_PER_HOUR * out["bookmark_bytes"] +
                          per_hour_req * out["watch_restart_bytes"])
        out["idle_hour"] = {"requests": per_hour_req, "bytes": per_hour_bytes}

        # API server restarts, one node: quiet, then right after a change.
        api.ctl("bookmarks", {"interval": 1.0})
        d = Driver(exe, api, 1, [], "restart")
        d.wait(lambda c: c[0]["synced"] and c[0]["watches"] >= 3, "sync")
        time.sleep(2.5)  # bookmarks: every watch at the latest resourceVersion
        for case in ("quiet", "after_change"):
            if case == "after_change":
                api.ctl("bookmarks", {"interval": 1000})
                time.sleep(1.2)
                api.ctl("add", {"kind": "Service", "metadata": {"name": "r1", "namespace": "ns0"},
                                "spec": {"clusterIP": "10.97.1.1", "ports": [{"port": 80}]}})
                time.sleep(0.3)
            c0 = d.dump()[0]
            api.ctl("restart", {"down_s": 2})
            api.ctl("bookmarks", {"interval": 1.0})  # resumed watches show they live
            d.wait(lambda c: resynced(c0, c[0]), "resync", timeout=120)
            c1 = d.dump()[0]
            dd = delta(res_of(c0), res_of(c1))
            out["restart_" + case] = {
                "requests": total(dd, "requests"), "bytes": total(dd, "bytes"),
                "relisted": [k for k in KINDS if dd[k]["relists"]],
                "resumed": [k for k in KINDS if not dd[k]["relists"]]}
            api.ctl("bookmarks", {"interval": 1.0})
            time.sleep(2.5)
        d.quit()
    finally:
        api.stop()
    return out


# ------------------------------------------------------------------ fleet

def fleet(exe, tmp, a):
    api = StandIn(tmp, bookmark_interval=2.0)
    out = {"clients": a.clients}
    drivers = []
    try:
        objs = fixture(a.fleet_services, a.namespaces)
        api.ctl("add", {"objects": objs})
        api.ctl("watch-list", {"mode": "serve"})
        t0 = time.time()
        left = a.clients
        while left > 0:
            n = min(a.per_process, left)
            drivers.append(Driver(exe, api, n, ["--idle-ms", "60000"], "fleet%d" % len(drivers)))
            left -= n
        for d in drivers:
            d.wait(lambda c: all(x["synced"] and x["watches"] >= 3 for x in c), "fleet sync",
                   timeout=600)
        out["first_sync_s"] = time.time() - t0
        time.sleep(5)  # a couple of bookmarks everywhere
        before = [c for d in drivers for c in d.dump()]
        s0 = api.stats()
        # The restart, 0.3 s after a Service change: the Service watches are
        # at the latest resourceVersion, the other two behind (410 follows).
        api.ctl("add", {"kind": "Service", "metadata": {"name": "fleet-chg", "namespace": "ns0"},
                        "spec": {"clusterIP": "10.97.2.1", "ports": [{"port": 80}]}})
        time.sleep(0.3)
        t_restart = time.time()
        api.ctl("restart", {"down_s": a.down_s})
        curve = []
        synced_at = {}
        last = s0["requests"]
        t_last = t_restart
        while time.time() - t_restart < a.fleet_s:
            time.sleep(0.25)
            st = api.stats()
            now = time.time()
            curve.append((now - t_restart, (st["requests"] - last) / (now - t_last)))
            last, t_last = st["requests"], now
            if len(synced_at) < a.clients and int((now - t_restart) * 4) % 2 == 0:
                cur = [c for d in drivers for c in d.dump()]
                for i, (b, c) in enumerate(zip(before, cur)):
                    if i not in synced_at and resynced(b, c):
                        synced_at[i] = time.time() - t_restart
            if len(synced_at) == a.clients and now - t_restart > max(synced_at.values()) + 5:
                break
        after = [c for d in drivers for c in d.dump()]
        s1 = api.stats()
        relisted = {k: 0 for k in KINDS}
        for b, c in zip(before, after):
            for k in KINDS:
                if c["res"][k]["relists"] > b["res"][k]["relists"]:
                    relisted[k] += 1
        out["curve"] = curve
        out["down_s"] = a.down_s
        out["all_resynced_s"] = max(synced_at.values()) if len(synced_at) == a.clients else None
        out["resynced"] = len(synced_at)
        times = sorted(synced_at.values())
        out["resync_p50_s"] = times[len(times) // 2] if times else None
        out["relisted"] = relisted
        out["resumed"] = {k: a.clients - relisted[k] for k in KINDS}
        out["requests"] = s1["requests"] - s0["requests"]
        out["bytes"] = sum(c["bytes"] - b["bytes"] for b, c in zip(before, after))
        out["peak_rps"] = max(r for _, r in curve) if curve else 0
        out["standin_watch_requests"] = {k: s1.get("watch:" + k, 0) - s0.get("watch:" + k, 0)
                                         for k in KINDS}
    finally:
        for d in drivers:
            d.quit()
        api.stop()
    return out


# ------------------------------------------------------------------ report

def human(b):
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= f:
            return "%.1f %s" % (b / f, unit)
    return "%d B" % b


def report(node, fl, a, png):
    o = node["objects"]
    nobj = {"services": o["Service"], "endpointslices": o["EndpointSlice"],
            "namespaces": o["Namespace"]}
    per_obj = {k: node["sync_streaming"][k]["bytes"] / max(nobj[k], 1) for k in KINDS}
    # The 5,000-node cluster of the table: kube-proxy's scale tests' shape.
    big = {"services": a.big_services, "endpointslices": a.big_services,
           "namespaces": a.big_namespaces}
    sync_big = {k: per_obj[k] * big[k] for k in KINDS}
    N = 5000
    lines = []
    w = lines.append
    w("# API server cost of nodedns's watch (bench/cluster/apicost.py)")
    w("")
    w("Generated %s on %s. Real watch code and store (bench/cluster/apicost_driver.c), "
      "test stand-in over HTTP/1.1 on loopback; bytes are response bytes (headers and "
      "inflated body) as the watch counts them (nodedns_watch_bytes_total)." %
      (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.uname().nodename))
    w("")
    w("## Per node, measured (%d Services, %d EndpointSlices of 3 endpoints, %d Namespaces)"
      % (nobj["services"], nobj["endpointslices"], nobj["namespaces"]))
    w("")
    w("| | requests | bytes |")
    w("|---|---:|---:|")
    for mode in ("paginated", "streaming"):
        r = node["sync_" + mode]
        w("| first sync, %s lists (+ the 3 watches) | %d | %s |" %
          (mode, total(r, "requests"), human(total(r, "bytes"))))
    w("| per change: a Service added | 0 | %s |" % human(node["change_service_bytes"]))
    w("| per change: an EndpointSlice updated | 0 | %s |" % human(node["change_slice_bytes"]))
    ir, rr = node["idle_run"], node["restart_run"]
    w("| idle, per hour (extrapolated: %d bookmarks x %s, %.0f watch restarts x %s) | %.0f | %s |"
      % (3 * BOOKMARKS_PER_HOUR, human(node["bookmark_bytes"]), 3 * RESTARTS_PER_HOUR,
         human(node["watch_restart_bytes"]), node["idle_hour"]["requests"],
         human(node["idle_hour"]["bytes"])))
    for case in ("quiet", "after_change"):
        r = node["restart_" + case]
        w("| API server restart, %s (resumed: %s; relisted: %s) | %d | %s |" %
          ("all watches current" if case == "quiet" else "0.3 s after a Service change",
           ", ".join(r["resumed"]) or "-", ", ".join(r["relisted"]) or "-",
           r["requests"], human(r["bytes"])))
    w("")
    w("Idle runs: %d bookmarks in %d s (1 s interval) -> %s each; %d watch restarts in "
      "%d s (3 s watches, no bookmarks) -> %s each (request and response headers, the end "
      "of the stream). First-sync bytes per object (streaming): %s." %
      (ir["bookmarks"], ir["seconds"], human(node["bookmark_bytes"]), rr["watch_restarts"],
       rr["seconds"], human(node["watch_restart_bytes"]),
       ", ".join("%s %s" % (k, human(per_obj[k])) for k in KINDS)))
    w("")
    w("## %d clients through an API server restart" % fl["clients"])
    w("")
    w("%d watch clients (%d per process), %d Services/EndpointSlices, synced in %.1f s. "
      "A Service change, 0.3 s later the restart: watches cut, connections reset for "
      "%.0f s, history compacted at the current resourceVersion." %
      (fl["clients"], a.per_process, a.fleet_services, fl["first_sync_s"], fl["down_s"]))
    w("")
    w("- resynced (all three watches running again): %d of %d; median %.1f s, all by %s s "
      "after the restart" % (fl["resynced"], fl["clients"], fl["resync_p50_s"] or -1,
                             "%.1f" % fl["all_resynced_s"] if fl["all_resynced_s"] else "n/a"))
    w("- resumed from their resourceVersion: %s" %
      ", ".join("%s %d" % (k, fl["resumed"][k]) for k in KINDS))
    w("- relisted (410 Expired: behind the new watch cache): %s" %
      ", ".join("%s %d" % (k, fl["relisted"][k]) for k in KINDS))
    w("- requests in the window: %d (%.1f per client), response bytes %s; peak %.0f requests/s"
      % (fl["requests"], fl["requests"] / fl["clients"], human(fl["bytes"]), fl["peak_rps"]))
    w("")
    if png:
        w("![reconnect curve](%s)" % os.path.basename(png))
        w("")
    w("Reconnect curve (requests/s at the stand-in, 0.5 s bins):")
    w("")
    w("```")
    bins = {}
    for t, r in fl["curve"]:
        bins.setdefault(int(t * 2), []).append(r)
    peak = max((sum(v) / len(v) for v in bins.values()), default=1) or 1
    for b in sorted(bins)[:60]:
        r = sum(bins[b]) / len(bins[b])
        w("%5.1f s %6.0f/s %s" % (b / 2, r, "#" * int(50 * r / peak)))
    w("```")
    w("")
    w("## Extrapolated to %d nodes" % N)
    w("")
    w("A cluster of %d Services, %d EndpointSlices, %d Namespaces; bytes scale per object "
      "from the measured sync, changes per event; kube-proxy lists and watches Services and "
      "EndpointSlices (not Namespaces) from every node with client-go informers: the same "
      "objects and events, so its column is the same model without Namespaces (its Node "
      "watch, one object, left out)." % (big["services"], big["endpointslices"],
                                         big["namespaces"]))
    w("")
    sync_req_stream = total(node["sync_streaming"], "requests")
    # resourceVersion=0 lists come from the watch cache, which ignores limit:
    # one page per resource, then the watch.
    sync_req_pag = total(node["sync_paginated"], "requests")
    kp_sync = sync_big["services"] + sync_big["endpointslices"]
    hour = node["idle_hour"]
    kp_hour_req = hour["requests"] * 2 / 3
    kp_hour_bytes = hour["bytes"] * 2 / 3
    w("| %d nodes | nodedns | kube-proxy (same model) |" % N)
    w("|---|---:|---:|")
    w("| first sync of every node, requests | %d (streaming) / %d (paginated, rv=0) | %d |" %
      (N * sync_req_stream, N * sync_req_pag, N * 4))
    w("| first sync of every node, bytes | %s | %s |" %
      (human(N * sum(sync_big.values())), human(N * kp_sync)))
    w("| one EndpointSlice change, fan-out bytes | %s | %s |" %
      (human(N * node["change_slice_bytes"]), human(N * node["change_slice_bytes"])))
    w("| one Service change, fan-out bytes | %s | %s |" %
      (human(N * node["change_service_bytes"]), human(N * node["change_service_bytes"])))
    w("| idle hour, requests (watch restarts) | %.0f | %.0f |" % (N * hour["requests"],
                                                                 N * kp_hour_req))
    w("| idle hour, bytes (bookmarks, restarts) | %s | %s |" % (human(N * hour["bytes"]),
                                                              human(N * kp_hour_bytes)))
    fr = fl["requests"] / fl["clients"]
    relist_frac = {k: fl["relisted"][k] / fl["clients"] for k in KINDS}
    restart_bytes = sum(relist_frac[k] * sync_big[k] for k in KINDS)
    kp_restart_bytes = sum(relist_frac[k] * sync_big[k] for k in ("services", "endpointslices"))
    w("| API server restart, requests (as the %d-client run, scaled) | %.0f | %.0f |" %
      (fl["clients"], N * fr, N * fr * 2 / 3))
    w("| API server restart, relist bytes (as the run's relist share) | %s | %s |" %
      (human(N * restart_bytes), human(N * kp_restart_bytes)))
    w("")
    w("Namespaces add %.1f%% to the first sync and a third to the idle requests: nodedns's "
      "API load is kube-proxy's plus a small collection. A restart spreads its resumes over "
      "the reconnect spread (a random delay under 1 s) and its retries over the backoff "
      "(full jitter, 0.8 s doubling to 30 s); relists come from watches behind the new watch "
      "cache and stream (WatchList) where the server offers it, from the watch cache "
      "(resourceVersion=0 or NotOlderThan) otherwise." %
      (100.0 * sync_big["namespaces"] / max(sum(sync_big.values()), 1)))
    return "\n".join(lines) + "\n"


def plot(fl, path):
    """The curve as a PNG through apicost_plot.py (matplotlib, here or in
    the system's python3); None when neither has it."""
    data = path + ".curve.json"
    with open(data, "w") as f:
        json.dump({"curve": fl["curve"], "down_s": fl["down_s"], "clients": fl["clients"],
                   "all_resynced_s": fl["all_resynced_s"]}, f)
    script = os.path.join(ROOT, "bench", "cluster", "apicost_plot.py")
    try:
        for py in (sys.executable, "/usr/bin/python3"):
            if os.path.exists(py) and subprocess.run([py, script, data, path]).returncode == 0:
                return path
        return None
    finally:
        os.unlink(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--per-process", type=int, default=50)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--fleet-services", type=int, default=200)
    ap.add_argument("--namespaces", type=int, default=20)
    ap.add_argument("--big-services", type=int, default=10000)
    ap.add_argument("--big-namespaces", type=int, default=200)
    ap.add_argument("--idle-s", type=int, default=12)
    ap.add_argument("--fleet-s", type=float, default=60)
    ap.add_argument("--down-s", type=float, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "apicost-latest.md"))
    a = ap.parse_args()
    if a.quick:
        a.clients, a.per_process, a.services, a.idle_s = 20, 10, 200, 5
    tmp = tempfile.mkdtemp(prefix="nodedns-apicost-")
    try:
        exe = build_driver(os.path.join(tmp, "bin"))
        node = per_node(exe, tmp, a)
        print("per node: %s" % json.dumps({k: v for k, v in node.items()}), flush=True)
        fl = fleet(exe, tmp, a)
        png = plot(fl, os.path.splitext(a.out)[0] + ".png")
        md = report(node, fl, a, png)
        with open(a.out, "w") as f:
            f.write(md)
        with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
            json.dump({"node": node, "fleet": fl}, f, indent=1)
        sys.stdout.write(md)
    finally:
        if a.keep:
            print("logs kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
