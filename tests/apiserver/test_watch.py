#!/usr/bin/env python3
"""tests/apiserver/test_watch.py - k8s_watch end to end against the fake API server.

Usage (from the repository root):
    tests/apiserver/build_driver.sh plain        # or asan
    python3 tests/apiserver/test_watch.py [--driver build/apiserver/watch_driver]
                                          [--valgrind] [-k NAME] [--proto h1|h2|both]

Starts tests/apiserver/fake_apiserver.py on ephemeral loopback ports, then
tests/apiserver/watch_driver (k8s_watch + a recording fake store) and drives
scenarios through the fake's control interface, reading the driver's store
dumps. With --valgrind every driver runs under valgrind and must exit clean.
--proto h2 runs the scenarios again through nghttpx as an HTTP/2 front end
(tests/apiserver/h2.py: the proxy plumbing, the h1-only table, the checks
only HTTP/2 has); "both" (the default) runs h1 and h2 side by side (--serial:
one after the other), each with its own stand-in and closing line ("watch:
..." and "watch-h2: ..."). A new scenario runs over both unless h2.H1_ONLY
names it, with the reason it cannot work through a proxy.
Exit status 0 when every scenario passed.
"""

import argparse
import re
import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
from lib import procs  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
IDLE_MS = 4000
MAX_EVENT = 65536


class Fail(Exception):
    pass


class FakeApi:
    def __init__(self, tmp, bookmark_interval=1.0):
        self.tmp = tmp
        self.token_file = os.path.join(tmp, "token")
        self.cert_dir = os.path.join(tmp, "certs")
        self.log = open(os.path.join(tmp, "apiserver.log"), "w")
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fake_apiserver.py"), "--port", "0",
             "--control-port", "0", "--token-file", self.token_file, "--cert-dir",
             self.cert_dir, "--bookmark-interval", str(bookmark_interval)],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.p.stdout.readline()
        if not line:
            raise Fail("fake apiserver did not start (see %s)" % self.log.name)
        info = json.loads(line)
        self.port, self.cport, self.ca = info["port"], info["control_port"], info["ca"]
        self.url = "https://127.0.0.1:%d" % self.port

    def ctl(self, path, body=None, method="POST"):
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request("http://127.0.0.1:%d/control/%s" % (self.cport, path),
                                     data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise Fail("control %s: %d %s" % (path, e.code, e.read()[:300]))

    def stats(self):
        return self.ctl("stats", method="GET")

    def requests(self):
        return self.ctl("requests", method="GET")

    def stop(self):
        procs.stop(self.p, grace=10.0, group=False)
        self.log.close()


class Driver:
    def __init__(self, binary, args, tmp, name, valgrind=False):
        self.name = name
        self.errpath = os.path.join(tmp, "driver-%s.log" % name)
        self.err = open(self.errpath, "w")
        cmd = [binary] + args
        if valgrind:
            cmd = ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                   "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99"] + cmd
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, text=True)
        self.q = queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.first = self._next(30)

    def _read(self):
        for line in self.p.stdout:
            try:
                self.q.put(json.loads(line))
            except ValueError:
                self.q.put({"garbage": line})
        self.q.put(None)

    def _next(self, timeout):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise Fail("%s: no output for %ss" % (self.name, timeout))

    def dump(self, timeout=30):
        self.p.stdin.write("dump\n")
        self.p.stdin.flush()
        end = time.time() + timeout
        while True:
            m = self._next(max(0.1, end - time.time()))
            if m is None:
                raise Fail("%s exited (see %s)" % (self.name, self.errpath))
            if "dump" in m:
                return m["dump"]

    def wait(self, pred, what, timeout=30):
        end = time.time() + timeout
        d = None
        while time.time() < end:
            d = self.dump()
            if pred(d):
                return d
            time.sleep(0.2)
        raise Fail("%s: timed out waiting for %s; stats %s" % (self.name, what,
                                                               d and d.get("stats")))

    def quit(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        try:
            rc = self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise Fail("%s did not exit after quit" % self.name)
        msgs = []
        while True:
            try:
                m = self.q.get(timeout=5)
            except queue.Empty:
                break
            if m is None:
                break
            msgs.append(m)
        self.err.close()
        closed = [m for m in msgs if "closed" in m]
        if rc != 0 or not closed or closed[-1]["loop_close"] != 0:
            raise Fail("%s: exit %s, closed=%s (see %s)" % (self.name, rc, closed, self.errpath))


def svc(ns, name, labels=None, annotations=None):
    o = {"kind": "Service", "metadata": {"name": name, "namespace": ns},
         "spec": {"clusterIP": "10.0.9.9", "ports": [{"port": 80, "protocol": "TCP"}]}}
    if labels:
        o["metadata"]["labels"] = labels
    if annotations:
        o["metadata"]["annotations"] = annotations
    return o


class Suite(h2.Scenarios):
    Fail = Fail

    def __init__(self, args, proto="h1"):
        self.args = args
        self.proto = proto
        self.tmp = tempfile.mkdtemp(prefix="nodedns-watch-%s-" % proto)
        self.api = FakeApi(self.tmp)
        if proto == "h2":  # the same stand-in behind an HTTP/2 proxy
            self.api = h2.ProxiedApi(self.api, self.tmp)
        self.drivers = []
        self.d = None

    def driver(self, args, name):
        d = Driver(self.args.driver, args, self.tmp, name, self.args.valgrind)
        self.drivers.append(d)
        return d

    def main_args(self):
        return ["--api", self.api.url, "--token-file", self.api.token_file, "--ca-file",
                self.api.ca, "--idle-ms", str(IDLE_MS), "--max-event-bytes", str(MAX_EVENT)]

    def stat(self, name):
        return self.d.dump()["stats"][name]

    def wait_svc(self, key, pred=lambda o: True, what=None, timeout=30):
        return self.d.wait(lambda d: key in d["services"] and pred(d["services"][key]),
                           what or "service %s" % key, timeout)

    # ------------------------------------------------------------ scenarios

    def load_fixture(self):
        objs = [{"kind": "Namespace", "metadata": {"name": "ns%d" % i}} for i in range(3)]
        objs += [svc("ns%d" % (i % 3), "svc%d" % i) for i in range(1100)]
        objs += [{"kind": "EndpointSlice",
                  "metadata": {"name": "es%d" % i, "namespace": "ns0",
                               "labels": {"kubernetes.io/service-name": "svc0"}},
                  "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.0.%d" % i]}],
                  "ports": [{"port": 80}]} for i in range(3)]
        self.api.ctl("add", {"objects": objs})

    def start_main(self):
        self.api.ctl("reset-stats")
        self.d = self.driver(self.main_args(), "main")
        if "started" not in self.d.first:
            raise Fail("driver did not start: %s" % self.d.first)
        self.d.wait(lambda d: d["stats"]["synced"] == 1, "synced", timeout=60)

    def test_initial_sync_paginated(self):
        d = self.d.dump()
        o = self.api.stats()["objects"]
        want = (o["Service"], o["EndpointSlice"], o["Namespace"])
        got = (len(d["services"]), len(d["endpointslices"]), len(d["namespaces"]))
        if got != want or want[0] < 1100:
            raise Fail("counts %s, server has %s" % (got, want))
        if d["stats"]["lists"] != 3 or d["publishes"] < 1:
            raise Fail("stats %s" % d["stats"])
        reqs = [r for r in self.api.requests() if r["path"] == "/api/v1/services"]
        pages = [r for r in reqs if "continue=" in r["query"]]
        first = [r for r in reqs if "resourceVersion=0" in r["query"] and "limit=500" in r["query"]]
        if len(pages) != 2 or len(first) != 1:
            raise Fail("expected 1 first page + 2 continue pages, got %s" % reqs)

    def test_added_modified_deleted(self):
        lists = self.stat("lists")
        self.api.ctl("add", {"objects": [svc("ev", "amd-new"), svc("ev", "amd-gone")]})
        self.api.ctl("update", svc("ev", "amd-new", labels={"v": "2"}))
        self.api.ctl("delete", svc("ev", "amd-gone"))
        self.api.ctl("delete", svc("ns0", "svc3"))
        d = self.d.wait(lambda d: (d["services"].get("ev/amd-new", {}).get("labels") or {}).get("v") == "2"
                        and "ev/amd-gone" not in d["services"] and "ns0/svc3" not in d["services"],
                        "ADDED/MODIFIED/DELETED applied")
        if d["stats"]["lists"] != lists or d["stats"]["events"] < 5:
            raise Fail("stats %s" % d["stats"])

    def test_burst_read_between_publishes(self):
        """After a publish nodedns stops reading the API sockets until the
        publish interval (20 ms) is over and reads what came in one pass:
        a burst must still arrive whole, its last event soon after it is
        sent (not held until something else comes), in fewer publishes."""
        p0 = self.d.dump()["publishes"]
        n = 40
        for i in range(n):
            self.api.ctl("add", svc("burst", "b%d" % i))
        sent = time.monotonic()
        d = self.wait_svc("burst/b%d" % (n - 1), timeout=10)
        lag = time.monotonic() - sent
        missing = [i for i in range(n) if "burst/b%d" % i not in d["services"]]
        if missing:
            raise Fail("burst events lost: %s" % missing)
        if lag > 2.0:
            raise Fail("the burst's last event took %.2f s to be published" % lag)
        if d["publishes"] - p0 >= n:
            raise Fail("%d events took %d publishes" % (n, d["publishes"] - p0))
        # and a lone change after a quiet spell is read and published at once
        time.sleep(0.2)
        self.api.ctl("add", svc("burst", "lone"))
        sent = time.monotonic()
        self.wait_svc("burst/lone", timeout=10)
        if time.monotonic() - sent > 2.0:
            raise Fail("a lone change took %.2f s" % (time.monotonic() - sent))

    def test_bookmark_moves_rv(self):
        self.d.wait(lambda d: d["stats"]["bookmarks"] >= 6, "bookmarks")
        # A change to another kind; the slice watch only learns the RV from a bookmark.
        rv = self.api.ctl("add", {"kind": "Namespace", "metadata": {"name": "bm"}})["resourceVersion"]
        b = self.stat("bookmarks")
        self.d.wait(lambda d: d["stats"]["bookmarks"] >= b + 7 and "/bm" in d["namespaces"],
                    "bookmarks after the change")
        watches = self.stat("watches")
        self.api.ctl("drop-watches", {})
        self.d.wait(lambda d: d["stats"]["watches"] >= watches + 3, "re-watch")
        end = time.time() + 20
        while True:  # the driver counts a watch before the server logs it
            es = [r for r in self.api.requests()
                  if r["path"].endswith("/endpointslices") and "watch=1" in r["query"]]
            if len(es) >= 2 or time.time() > end:
                break
            time.sleep(0.1)
        got = int(es[-1]["query"].split("resourceVersion=")[1].split("&")[0])
        if got < int(rv):
            raise Fail("endpointslices re-watched at %d, before the bookmark RV %s: %s"
                       % (got, rv, [(r["time"], r["query"]) for r in es]))

    def test_dropped_watch_resumes(self):
        time.sleep(1.2)  # past SHORT_WATCH_MS: a cut now is an interruption
        s0 = self.d.dump()["stats"]
        self.api.ctl("drop-watches", {"partial": True})
        self.d.wait(lambda d: d["stats"]["watches"] >= s0["watches"] + 3, "re-watch after drop")
        self.api.ctl("add", svc("ev", "after-drop"))
        d = self.wait_svc("ev/after-drop")
        s = d["stats"]
        if s["lists"] != s0["lists"] or s["watch_restarts"] < s0["watch_restarts"] + 3:
            raise Fail("a dropped watch must resume without relisting: %s" % s)
        if s["bad_events"] != s0["bad_events"]:
            raise Fail("the half event of a cut stream must not be decoded: %s" % s)
        if s["interrupted"] < s0["interrupted"] + 3:
            raise Fail("the cuts must be counted as interruptions: %s" % s)
        if b"watch interrupted" not in self.driver_log():
            raise Fail("no log line for the cut")

    def test_410_relist(self):
        s0 = self.d.dump()["stats"]
        self.api.ctl("stall", {"enabled": True})
        self.api.ctl("add", svc("ev", "while-away"))
        self.api.ctl("delete", svc("ns0", "svc0"))
        self.api.ctl("compact", {})
        self.api.ctl("drop-watches", {})
        self.api.ctl("stall", {"enabled": False})
        d = self.d.wait(lambda d: "ev/while-away" in d["services"]
                        and "ns0/svc0" not in d["services"]
                        and d["stats"]["lists"] >= s0["lists"] + 3, "relist after 410")
        s = d["stats"]
        if s["relists_410"] < s0["relists_410"] + 3:
            raise Fail("expected three 410 relists: %s" % s)
        if d["clears"]["services"] < 2:
            raise Fail("relist must replace the set: %s" % d["clears"])
        # The relist asked for "not older than" the last RV, not for RV 0.
        rel = [r for r in self.api.requests() if r["path"] == "/api/v1/services"
               and "resourceVersionMatch=NotOlderThan" in r["query"]]
        if not rel:
            raise Fail("relist did not use resourceVersionMatch=NotOlderThan")

    def test_list_410_falls_back_to_latest(self):
        s0 = self.d.dump()["stats"]
        self.api.ctl("fail", {"status": 410, "count": 1, "match": "/api/v1/services?limit",
                              "watch": False})
        self.api.ctl("compact", {})
        self.api.ctl("drop-watches", {})
        self.d.wait(lambda d: d["stats"]["lists"] >= s0["lists"] + 3, "relist")
        latest = [r for r in self.api.requests() if r["path"] == "/api/v1/services"
                  and r["query"] == "limit=500"]
        if not latest:
            raise Fail("after a list 410 the relist must drop resourceVersion")
        self.api.ctl("add", svc("ev", "after-410"))
        self.wait_svc("ev/after-410")

    def test_refused_page_restarts_list(self):
        """A continue page answered 400 is not asked for again with its token:
        the list starts over from its first page."""
        s0 = self.d.dump()["stats"]
        self.api.ctl("fail", {"status": 400, "count": 1, "match": "continue=", "watch": False})
        self.api.ctl("compact", {})
        self.api.ctl("drop-watches", {})
        self.d.wait(lambda d: d["stats"]["lists"] >= s0["lists"] + 3, "relist")
        reqs = [r for r in self.svc_requests() if "watch=1" not in r["query"]]
        bad = [i for i, r in enumerate(reqs) if r["status"] == 400]
        if len(bad) != 1 or bad[0] + 1 >= len(reqs) or "continue=" in reqs[bad[0] + 1]["query"]:
            raise Fail("after a refused page the list must start over: %s"
                       % [(r["query"][:60], r["status"]) for r in reqs])
        self.check_counts(self.d.dump())

    def test_429_retry_after(self):
        s0 = self.d.dump()["stats"]
        self.api.ctl("throttle", {"count": 3, "retry_after": 1})
        t0 = time.time()
        self.api.ctl("drop-watches", {})
        self.d.wait(lambda d: d["stats"]["throttled_429"] >= s0["throttled_429"] + 3, "429s")
        self.api.ctl("add", svc("ev", "after-429"))
        d = self.wait_svc("ev/after-429")
        if time.time() - t0 < 0.9:
            raise Fail("Retry-After: 1 not honoured")
        if d["stats"]["lists"] != s0["lists"]:
            raise Fail("429 on a watch must not relist: %s" % d["stats"])

    def test_500s(self):
        s0 = self.d.dump()["stats"]
        self.api.ctl("fail", {"status": 500, "count": 4, "watch": True})
        self.api.ctl("drop-watches", {})
        self.d.wait(lambda d: d["stats"]["errors"] >= s0["errors"] + 4, "500s counted")
        self.api.ctl("add", svc("ev", "after-500"))
        d = self.wait_svc("ev/after-500", timeout=40)
        if d["stats"]["lists"] != s0["lists"]:
            raise Fail("500 on a watch must not relist: %s" % d["stats"])

    def test_idle_watchdog(self):
        s0 = self.d.dump()["stats"]
        self.api.ctl("stall", {"enabled": True})
        try:
            self.d.wait(lambda d: d["stats"]["watch_restarts"] >= s0["watch_restarts"] + 3,
                        "watchdog restarts", timeout=IDLE_MS / 1000 * 4 + 10)
        finally:
            self.api.ctl("stall", {"enabled": False})
        self.api.ctl("add", svc("ev", "after-stall"))
        self.wait_svc("ev/after-stall", timeout=IDLE_MS / 1000 * 2 + 20)

    def test_slow_drip(self):
        self.api.ctl("drip", {"bytes": 3, "delay_ms": 0.2})
        try:
            self.api.ctl("add", {"objects": [svc("drip", "d%d" % i, labels={"i": str(i)})
                                             for i in range(15)]})
            self.d.wait(lambda d: all("drip/d%d" % i in d["services"] for i in range(15)),
                        "dripped events", timeout=60)
        finally:
            self.api.ctl("drip", {"bytes": 0})

    def test_bad_lines_not_fatal(self):
        s0 = self.d.dump()["stats"]
        self.api.ctl("inject", {"kind": "Service", "raw": "this is not json"})
        self.api.ctl("inject", {"kind": "Service", "raw": '{"type":"ADDED","object":[]}'})
        self.api.ctl("inject", {"kind": "Service",
                                "raw": '{"type":"ADDED","object":{"kind":"Service","metadata":{}}}'})
        self.api.ctl("inject", {"kind": "Service",
                                "raw": '{"type":"ADDED","object":{"kind":"Pod","metadata":'
                                       '{"name":"p","namespace":"x"}}}'})
        self.api.ctl("add", svc("ev", "after-bad"))
        d = self.wait_svc("ev/after-bad")
        s = d["stats"]
        if s["bad_events"] < s0["bad_events"] + 4 or s["lists"] != s0["lists"]:
            raise Fail("bad lines must be counted, not fatal: %s" % s)
        if "x/p" in d["services"]:
            raise Fail("an object of another kind was applied")

    def test_oversized_event_relists(self):
        s0 = self.d.dump()["stats"]
        self.api.ctl("add", svc("ev", "big", annotations={"a": "x" * (MAX_EVENT * 2)}))
        d = self.wait_svc("ev/big", what="big object via relist")
        s = d["stats"]
        if s["oversized_events"] < s0["oversized_events"] + 1 or s["lists"] < s0["lists"] + 1:
            raise Fail("oversized event must be counted and trigger a relist: %s" % s)
        if b"relisting" not in self.driver_log():
            raise Fail("no log line for the oversized event")
        if len(d["services"]) < 1100:
            raise Fail("the last good data must stay: %d services" % len(d["services"]))

    def test_token_rotation(self):
        s0 = self.d.dump()["stats"]
        new = self.api.ctl("rotate-token", {"write_file": False, "drop_watches": True})["token"]
        self.d.wait(lambda d: d["stats"]["unauthorized_401"] >= s0["unauthorized_401"] + 1, "401")
        time.sleep(1)
        tmp = self.api.token_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(new + "\n")
        os.rename(tmp, self.api.token_file)
        self.api.ctl("add", svc("ev", "after-rotate"))
        d = self.wait_svc("ev/after-rotate", timeout=45)
        if d["stats"]["token_reloads"] < s0["token_reloads"] + 1:
            raise Fail("token not reloaded: %s" % d["stats"])
        # The kubelet way: the file changes and only then do old tokens fail.
        s1 = d["stats"]
        self.api.ctl("rotate-token", {"write_file": True, "drop_watches": True})
        self.api.ctl("add", svc("ev", "after-rotate-2"))
        d = self.wait_svc("ev/after-rotate-2", timeout=45)
        if d["stats"]["token_reloads"] < s1["token_reloads"] + 1:
            raise Fail("token not reloaded after the second rotation: %s" % d["stats"])

    # --------------------------------------------------- streaming lists

    def start_streaming(self, mode, extra=(), body=None, synced=True):
        """A driver against a stand-in whose streaming lists behave per @mode."""
        self.api.ctl("watch-list", dict(body or {}, mode=mode))
        self.api.ctl("reset-stats")
        self.d = self.driver(self.main_args() + list(extra), "main")
        if "started" not in self.d.first:
            raise Fail("driver did not start: %s" % self.d.first)
        if synced:
            self.d.wait(lambda d: d["stats"]["synced"] == 1, "synced", timeout=60)

    def force_relist(self):
        """Every watch behind the compaction point, then cut: all three relist
        (no bookmark may bring one up to date in between)."""
        self.api.ctl("stall", {"enabled": True})
        self.api.ctl("compact", {})
        self.api.ctl("drop-watches", {})
        self.api.ctl("stall", {"enabled": False})

    def check_counts(self, d):
        o = self.api.stats()["objects"]
        want = (o["Service"], o["EndpointSlice"], o["Namespace"])
        got = (len(d["services"]), len(d["endpointslices"]), len(d["namespaces"]))
        if got != want:
            raise Fail("counts %s, server has %s" % (got, want))

    def svc_requests(self):
        return [r for r in self.api.requests() if r["path"] == "/api/v1/services"]

    def test_watch_list_streams(self):
        """WatchList served: one streaming request per resource lists and then
        watches; no paginated list at all. An object over the watch event
        bound but within a listed item's (4x) is listed, as in a paginated
        list."""
        self.api.ctl("add", svc("ev", "wl-big", annotations={"a": "x" * (MAX_EVENT * 2)}))
        self.start_streaming("serve")
        d = self.d.dump()
        self.check_counts(d)
        if "ev/wl-big" not in d["services"] or d["stats"]["oversized_events"]:
            raise Fail("the big object must be listed: %s" % d["stats"])
        s = d["stats"]
        if s["watch_lists"] != 3 or s["lists"] != 3 or s["watch_list_fallbacks"]:
            raise Fail("stats %s" % s)
        reqs = self.svc_requests()
        if len(reqs) != 1 or "sendInitialEvents=true" not in reqs[0]["query"] \
                or "resourceVersionMatch=NotOlderThan" not in reqs[0]["query"] \
                or "resourceVersion=0" not in reqs[0]["query"]:
            raise Fail("expected one streaming list from resourceVersion 0: %s" % reqs)
        rv = self.api.ctl("add", svc("ev", "streamed"))["resourceVersion"]
        d = self.wait_svc("ev/streamed")
        if d["stats"]["watches"] != 3 or len(self.svc_requests()) != 1:
            raise Fail("the stream must go on as the watch: %s, %s"
                       % (d["stats"], self.svc_requests()))
        if d["stats"]["res"]["services"]["established"] != 1:
            raise Fail("one watch established by the stream: %s" % d["stats"]["res"])
        # A relist (410) streams again, not older than the last RV.
        self.force_relist()
        d = self.d.wait(lambda d: d["stats"]["watch_lists"] >= 6, "streaming relists")
        self.check_counts(d)
        q = [r["query"] for r in self.svc_requests()]
        if not any("sendInitialEvents=true" in x and "resourceVersion=%s" % rv in x
                   for x in q[1:]):
            raise Fail("the relist did not stream from a later resourceVersion: %s" % q)
        if d["stats"]["res"]["services"]["relists"] < 1:
            raise Fail("relist not counted: %s" % d["stats"]["res"])

    def fallback_check(self, mode, tag):
        self.start_streaming(mode)
        d = self.d.dump()
        self.check_counts(d)
        s = d["stats"]
        if s["watch_list_fallbacks"] < 1 or s["watch_lists"] != 0 or s["lists"] != 3:
            raise Fail("stats %s" % s)
        tried = self.api.stats().get("watchlist:" + tag, 0)
        if not 1 <= tried <= 3:
            raise Fail("%d streaming lists tried (%s), want 1..3" % (tried, tag))
        if b"does not serve streaming lists" not in self.driver_log():
            raise Fail("no log line for the fallback")
        # Remembered: a relist uses paginated lists without asking again.
        self.force_relist()
        d = self.d.wait(lambda d: d["stats"]["lists"] >= 6, "relist")
        self.check_counts(d)
        if self.api.stats().get("watchlist:" + tag, 0) != tried:
            raise Fail("streaming lists asked for again after the fallback")

    def test_watch_list_refused_422(self):
        self.fallback_check("refuse", "refuse")

    def test_watch_list_refused_400(self):
        self.fallback_check("refuse400", "refuse400")

    def test_watch_list_ignored(self):
        """A server that ignores sendInitialEvents (a plain watch): detected
        at its first bookmark without initial-events-end."""
        self.fallback_check("ignore", "ignored")
        if self.d.dump()["store_rejected"]:
            raise Fail("objects rejected")

    def test_watch_list_410_restarts(self):
        """A 410 in the initial stream starts it over (jittered), from the
        latest state; the half of the objects it sent is not applied alone."""
        self.start_streaming("serve", body={"expire": 1})
        d = self.d.dump()
        self.check_counts(d)
        s = d["stats"]
        if s["relists_410"] < 1 or s["watch_lists"] != 3 or s["watch_list_fallbacks"]:
            raise Fail("stats %s" % s)
        st = self.api.stats()
        if st.get("watchlist:expired") != 1:
            raise Fail("stand-in expired %s streams" % st.get("watchlist:expired"))
        streams = [r for r in self.api.requests() if "sendInitialEvents" in r["query"]]
        if len(streams) != 4 or not any("resourceVersion=" not in r["query"]
                                         for r in streams[1:]):
            raise Fail("expected one restart without resourceVersion: %s" % streams)
        if d["clears"]["services"] + d["clears"]["endpointslices"] + \
                d["clears"]["namespaces"] != 3:
            raise Fail("the expired stream must not be applied: clears %s" % d["clears"])

    def test_watch_list_never_ends(self):
        """Initial events that never reach initial-events-end: the streaming
        relist ends at the list deadline and starts over with backoff; the
        last good data stays."""
        self.start_streaming("serve", extra=["--list-deadline-ms", "2000"])
        self.api.ctl("add", svc("ev", "kept"))
        self.wait_svc("ev/kept")
        before = self.d.dump()
        self.api.ctl("watch-list", {"mode": "serve", "endless": True})
        self.force_relist()
        d = self.d.wait(lambda d: d["stats"]["list_timeouts"] >= 4, "streaming lists cut",
                        timeout=40)
        if set(d["services"]) != set(before["services"]) or d["stats"]["watch_lists"] != 3:
            raise Fail("the last good data must stay: %d -> %d services, %s"
                       % (len(before["services"]), len(d["services"]), d["stats"]))
        if any(k.startswith("endless/") for k in d["services"]):
            raise Fail("an unfinished streaming list was applied")
        if b"streaming list not complete" not in self.driver_log():
            raise Fail("no log line for the endless stream")
        self.api.ctl("watch-list", {"mode": "serve"})
        d = self.d.wait(lambda d: d["stats"]["watch_lists"] >= 6, "recovered", timeout=40)
        self.check_counts(d)

    def test_watch_deadline(self):
        """A watch that only gets keep-alive bytes is ended at timeoutSeconds +
        30 s (here 2 + 30) and resumed from its resourceVersion, not relisted."""
        self.start_streaming("refuse", extra=["--watch-timeout-s", "2"])
        self.d.wait(lambda d: d["stats"]["watches"] >= 3, "watches")
        s0 = self.d.dump()["stats"]
        self.api.ctl("keepalive", {"interval": 0.5})
        t0 = time.time()
        try:
            d = self.d.wait(lambda d: d["stats"]["watch_deadlines"] >= s0["watch_deadlines"] + 3,
                            "watch deadlines", timeout=60)
        finally:
            self.api.ctl("keepalive", {"interval": 0})
        took = time.time() - t0
        if took < 29:
            raise Fail("watches ended after %.1f s, before timeoutSeconds + 30 s" % took)
        if self.api.stats().get("keepalive_bytes", 0) < 20:
            raise Fail("the stand-in sent too few keep-alive bytes")
        self.api.ctl("add", svc("ev", "after-deadline"))
        d = self.wait_svc("ev/after-deadline")
        if d["stats"]["lists"] != s0["lists"] or d["stats"]["bad_events"] != s0["bad_events"]:
            raise Fail("a deadline must resume, not relist: %s" % d["stats"])
        if b"after its timeoutSeconds" not in self.driver_log():
            raise Fail("no log line for the deadline")

    def test_metrics_by_resource(self):
        """requests, bytes, relists and reconnects by resource."""
        d = self.d.dump()
        r0 = d["stats"]["res"]
        for k, v in r0.items():
            if v["requests"] < 2 or v["bytes"] < 200 or v["relists"] or v["reconnects"]:
                raise Fail("%s: %s" % (k, v))
        if r0["services"]["bytes"] < 20 * r0["namespaces"]["bytes"]:  # 1100 vs 3 objects
            raise Fail("services bytes %s against namespaces %s" % (r0["services"], r0["namespaces"]))
        time.sleep(1.2)  # past SHORT_WATCH_MS: a cut now is an interruption
        self.api.ctl("drop-watches", {})
        d = self.d.wait(lambda d: all(d["stats"]["res"][k]["reconnects"] >= 1 for k in r0),
                        "reconnects counted")
        if any(d["stats"]["res"][k]["relists"] for k in r0) or d["stats"]["interrupted"] < 3:
            raise Fail("a cut must resume: %s %s" % (d["stats"]["res"], d["stats"]))
        self.force_relist()
        d = self.d.wait(lambda d: all(d["stats"]["res"][k]["relists"] >= 1 for k in r0),
                        "relists counted")

    # ------------------------------------------------------ hostile server

    def peak_mb(self):
        with open("/proc/%d/status" % self.d.p.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def hostile_start(self, body, extra=()):
        """Start a driver against a server whose Service lists misbehave."""
        self.api.ctl("hostile", dict(body, kind="Service"))
        self.api.ctl("reset-stats")
        self.d = self.driver(self.main_args() + list(extra), "main")
        if "started" not in self.d.first:
            raise Fail("driver did not start: %s" % self.d.first)
        return time.time()

    def responsive_until(self, pred, what, timeout):
        """Poll the driver (its loop answers on stdin as /health does on the
        control loop) until pred; the slowest answer in seconds."""
        end, worst = time.time() + timeout, 0.0
        while time.time() < end:
            t0 = time.time()
            d = self.d.dump()
            worst = max(worst, time.time() - t0)
            if pred(d):
                return d, worst
            time.sleep(0.05)
        raise Fail("timed out waiting for %s" % what)

    def check_bounded(self, name, t0, worst, mb):
        asan = "asan" in os.path.basename(self.args.driver)
        print("     %s: peak RSS %.0f MB, slowest loop answer %.2f s, %.1f s" %
              (name, mb, worst, time.time() - t0))
        if mb > (1500 if asan else 150):
            raise Fail("%s: peak RSS %.0f MB" % (name, mb))
        if worst > (3.0 if asan else 1.0):
            raise Fail("%s: the loop did not answer for %.2f s" % (name, worst))

    def driver_log(self):
        with open(self.d.errpath, "rb") as f:
            return f.read()

    def test_hostile_empty_objects(self):
        # 20 MB of "{}," in the items: skipped one by one, the list completes.
        t0 = self.hostile_start({"mode": "empty_objects", "bytes": 20_000_000})
        d, worst = self.responsive_until(lambda d: d["stats"]["synced"] == 1, "synced", 120)
        self.check_bounded("20 MB of {}", t0, worst, self.peak_mb())
        if d["stats"]["bad_events"] < 6_000_000 or len(d["services"]) < 1100:
            raise Fail("{} items must be skipped, real ones kept: %s" % d)
        if not re.search(rb"services: listed 11\d\d objects at resourceVersion \d+ "
                         rb"\(\d{7} rejected\)", self.driver_log()):
            raise Fail("'listed N objects' must count only the accepted ones")

    def test_hostile_gzip_bomb(self):
        # ~50 kB on the wire, 50 MB inflated.
        t0 = self.hostile_start({"mode": "empty_objects", "bytes": 50_000_000, "gzip": True})
        d, worst = self.responsive_until(lambda d: d["stats"]["synced"] == 1, "synced", 300)
        self.check_bounded("gzip bomb, 50 MB inflated", t0, worst, self.peak_mb())
        if d["stats"]["bad_events"] < 16_000_000:
            raise Fail("the inflated items must be counted: %s" % d["stats"])

    def test_hostile_one_object(self):
        # One 20 MB item of "{}," (over the item bound): skipped, the rest kept.
        t0 = self.hostile_start({"mode": "one_object", "bytes": 20_000_000})
        d, worst = self.responsive_until(lambda d: d["stats"]["synced"] == 1, "synced", 120)
        self.check_bounded("one 20 MB object of {}", t0, worst, self.peak_mb())
        if d["stats"]["oversized_events"] < 1 or len(d["services"]) < 1100:
            raise Fail("the huge item must be skipped, the rest kept: %s" % d)

    def test_hostile_deep(self):
        # One item 100,000 arrays deep: over the cost bound, skipped.
        t0 = self.hostile_start({"mode": "deep", "depth": 100_000})
        d, worst = self.responsive_until(lambda d: d["stats"]["synced"] == 1, "synced", 60)
        self.check_bounded("100,000 deep", t0, worst, self.peak_mb())
        if d["stats"]["oversized_events"] < 1:
            raise Fail("the deep item must be skipped: %s" % d["stats"])

    def test_hostile_named_objects(self):
        # Small named objects with empty objects in them: ~30x their text to
        # decode. The list is abandoned at the cost bound and retried.
        t0 = self.hostile_start({"mode": "named_objects", "bytes": 8_000_000})
        d, worst = self.responsive_until(lambda d: d["stats"]["errors"] >= 2, "2 failed lists",
                                         120)
        self.check_bounded("8 MB of small objects", t0, worst, self.peak_mb())
        if d["stats"]["synced"]:
            raise Fail("the list must not be applied")
        if b"would take too much memory to decode" not in self.driver_log():
            raise Fail("no log line for the costly list")
        self.api.ctl("hostile", {"mode": None})
        self.d.wait(lambda d: d["stats"]["synced"] == 1, "synced after the server mended", 60)

    def test_hostile_endless_continue(self):
        t0 = self.hostile_start({"mode": "continue", "same": True})
        d, worst = self.responsive_until(lambda d: d["stats"]["list_loops"] >= 2, "2 loops", 60)
        self.check_bounded("endless continue", t0, worst, self.peak_mb())
        lists = self.api.stats().get("list:services", 0)
        if lists > 10:
            raise Fail("a repeated token must end the list at once: %d pages" % lists)
        if b"the same continue token twice" not in self.driver_log():
            raise Fail("no log line for the repeated token")
        self.api.ctl("hostile", {"mode": None})
        self.d.wait(lambda d: d["stats"]["synced"] == 1, "synced after the server mended", 60)

    def test_hostile_list_drip(self):
        # A list sent a byte every 0.2 s: ended by the deadline, retried.
        t0 = self.hostile_start({"mode": "drip", "delay_ms": 200}, ["--list-deadline-ms", "3000"])
        d, worst = self.responsive_until(lambda d: d["stats"]["list_timeouts"] >= 1, "deadline",
                                         30)
        self.check_bounded("dripped list", t0, worst, self.peak_mb())
        if time.time() - t0 > 10:
            raise Fail("the deadline did not end the list in time")
        self.api.ctl("hostile", {"mode": None})
        self.d.wait(lambda d: d["stats"]["synced"] == 1, "synced after the server mended", 60)

    def test_hostile_names(self):
        # A name with a newline and an escape sequence, in the list and in a
        # watch event: the real store rejects it, and the log line that says
        # so cannot forge another line.
        if not os.access(self.args.real_driver, os.X_OK):
            print("     (skipped: no %s)" % self.args.real_driver)
            return
        evil = "x\n2026-12-05T00:00:00Z error FAKE\x1b[2J"
        self.api.ctl("add", svc("ev", evil))
        d = Driver(self.args.real_driver, self.main_args(), self.tmp, "names", self.args.valgrind)
        self.drivers.append(d)
        self.d = d
        try:
            x = d.wait(lambda x: x["stats"]["synced"] == 1, "synced", timeout=60)
            self.api.ctl("add", svc("ev", evil + "2"))
            self.api.ctl("add", svc("real", "after-evil"))
            x = d.wait(lambda x: x["stats"]["bad_events"] >= 2, "both rejected")
        finally:
            self.api.ctl("delete", {"objects": [svc("ev", evil), svc("ev", evil + "2")]})
        log = self.driver_log()
        if b"\x1b" in log or re.search(rb"^2026-12-05T00:00:00Z", log, re.M):
            raise Fail("a hostile name forged a log line")
        if b"FAKE\\x1b[2J" not in log:
            raise Fail("the rejection was not logged escaped")

    def test_token_reload_resets_backoff(self):
        # 401s until the backoff would be long (5 per resource: 12.8-25.6 s
        # next); once the file holds the new token, every resource is back
        # within the 401 retry bound (5 s) and a backoff.
        s0 = self.d.dump()["stats"]
        new = self.api.ctl("rotate-token", {"write_file": False, "drop_watches": True})["token"]
        self.d.wait(lambda d: d["stats"]["unauthorized_401"] >= s0["unauthorized_401"] + 15,
                    "15 401s", timeout=60)
        tmp = self.api.token_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(new + "\n")
        os.rename(tmp, self.api.token_file)
        t0 = time.time()
        self.api.ctl("add", {"objects": [
            svc("ev", "after-reload"),
            {"kind": "Namespace", "metadata": {"name": "after-reload"}},
            {"kind": "EndpointSlice",
             "metadata": {"name": "after-reload", "namespace": "ev",
                          "labels": {"kubernetes.io/service-name": "x"}},
             "addressType": "IPv4", "endpoints": [], "ports": []}]})
        self.d.wait(lambda d: "ev/after-reload" in d["services"]
                    and "/after-reload" in d["namespaces"]
                    and "ev/after-reload" in d["endpointslices"], "all three kinds", timeout=40)
        took = time.time() - t0
        print("     all resources back %.1f s after the token file changed" % took)
        if took > 10:
            raise Fail("resources came back %.1f s after the reload" % took)

    def test_wrong_ca_refused(self):
        d = self.driver(["--api", self.api.url, "--token-file", self.api.token_file,
                         "--ca-file", os.path.join(self.api.cert_dir, "other-ca.crt"),
                         "--idle-ms", str(IDLE_MS)], "wrong-ca")
        tls0 = self.api.stats().get("tls_errors", 0)
        x = d.wait(lambda x: x["stats"]["errors"] >= 3, "TLS failures", timeout=40)
        if x["stats"]["synced"] or x["stats"]["lists"] or x["services"]:
            raise Fail("synced through an untrusted certificate: %s" % x["stats"])
        if self.api.stats().get("tls_errors", 0) <= tls0:
            raise Fail("the server saw no failed handshake")
        d.quit()
        self.drivers.remove(d)

    def test_no_ca_uses_system_store(self):
        # Our test CA is not in the system store: refused as well.
        d = self.driver(["--api", self.api.url, "--token-file", self.api.token_file,
                         "--idle-ms", str(IDLE_MS)], "system-ca")
        x = d.wait(lambda x: x["stats"]["errors"] >= 2, "TLS failures", timeout=40)
        if x["stats"]["lists"]:
            raise Fail("synced without a trusted CA")
        d.quit()
        self.drivers.remove(d)

    def kubeconfig(self, name, cluster, user):
        def block(d, indent):
            return "".join("%s%s: %s\n" % (" " * indent, k, json.dumps(v)) for k, v in d.items())
        text = ("apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                "contexts:\n- name: other\n  context: {cluster: nope, user: nope}\n"
                "- name: test\n  context:\n    cluster: c1\n    user: u1\n    namespace: x\n"
                "clusters:\n- name: c1\n  cluster:\n" + block(cluster, 4) +
                "users:\n- name: u1\n  user:\n" + (block(user, 4) if user else "    {}\n"))
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_kubeconfig_driver(self, path, name):
        d = self.driver(["--kubeconfig", path, "--idle-ms", str(IDLE_MS)], name)
        if "started" not in d.first:
            raise Fail("%s did not start: %s" % (name, d.first))
        x = d.wait(lambda x: x["stats"]["synced"] == 1, "synced via kubeconfig", timeout=40)
        if "ev/new" not in x["services"] or len(x["services"]) < 1100:
            raise Fail("store content missing")
        d.quit()
        self.drivers.remove(d)

    def test_kubeconfig_token_file_ca_data(self):
        ca = base64.b64encode(open(self.api.ca, "rb").read()).decode()
        shutil.copy(self.api.token_file, os.path.join(self.tmp, "kc-token"))
        path = self.kubeconfig("kc-token.yaml", {"server": self.api.url + "/",
                                                 "certificate-authority-data": ca},
                               {"tokenFile": "kc-token"})
        self.run_kubeconfig_driver(path, "kc-token")

    def test_kubeconfig_client_cert(self):
        cd = self.api.cert_dir
        b64 = lambda f: base64.b64encode(open(os.path.join(cd, f), "rb").read()).decode()
        before = self.api.stats().get("auth:client_cert", 0)
        path = self.kubeconfig("kc-cert.yaml",
                               {"server": self.api.url,
                                "certificate-authority": os.path.relpath(self.api.ca, self.tmp)},
                               {"client-certificate-data": b64("client.crt"),
                                "client-key-data": b64("client.key")})
        self.run_kubeconfig_driver(path, "kc-cert")
        if self.api.stats().get("auth:client_cert", 0) <= before:
            raise Fail("the client certificate was not used")

    def test_kubeconfig_client_cert_files(self):
        cd = self.api.cert_dir
        path = self.kubeconfig("kc-certfile.yaml",
                               {"server": self.api.url, "certificate-authority": self.api.ca},
                               {"client-certificate": os.path.join(cd, "client.crt"),
                                "client-key": os.path.join(cd, "client.key")})
        self.run_kubeconfig_driver(path, "kc-certfile")

    def expect_start_error(self, args, name, needle):
        d = self.driver(args, name)
        if "start_error" not in d.first or needle not in d.first["start_error"]:
            raise Fail("%s: expected a start error with %r, got %s" % (name, needle, d.first))
        rc = d.p.wait(60)
        d.err.close()
        self.drivers.remove(d)
        if rc != 2:
            raise Fail("%s: exit %d" % (name, rc))

    def test_refused_configs(self):
        ins = self.kubeconfig("kc-insecure.yaml", {"server": self.api.url,
                                                   "insecure-skip-tls-verify": True},
                              {"token": "x"})
        self.expect_start_error(["--kubeconfig", ins], "insecure", "insecure-skip-tls-verify")
        http = self.kubeconfig("kc-http.yaml", {"server": "http://127.0.0.1:1"}, {"token": "x"})
        self.expect_start_error(["--kubeconfig", http], "http-kc", "https")
        exe = self.kubeconfig("kc-exec.yaml", {"server": self.api.url},
                              {"exec": {"command": "x"}})
        self.expect_start_error(["--kubeconfig", exe], "exec", "exec")
        self.expect_start_error(["--api", "http://127.0.0.1:1"], "http", "https")
        self.expect_start_error(["--api", self.api.url, "--token-file",
                                 os.path.join(self.tmp, "missing")], "notoken", "missing")
        self.expect_start_error(["--kubeconfig", os.path.join(self.tmp, "nope.yaml")],
                                "nokc", "nope.yaml")
        bad = os.path.join(self.tmp, "kc-bad.yaml")
        with open(bad, "w") as f:
            f.write("current-context: [\n")
        self.expect_start_error(["--kubeconfig", bad], "badyaml", "YAML")

    def test_real_store(self):
        """The same watch linked with the real store (src/cluster/): counts only."""
        if not os.access(self.args.real_driver, os.X_OK):
            print("     (skipped: no %s; tests/apiserver/build_driver.sh real)"
                  % self.args.real_driver)
            return
        d = Driver(self.args.real_driver, self.main_args(), self.tmp, "real", self.args.valgrind)
        self.drivers.append(d)
        if "started" not in d.first:
            raise Fail("real driver did not start: %s" % d.first)

        def server_count():
            return self.api.stats()["objects"]["Service"]
        n = server_count()
        x = d.wait(lambda x: x["stats"]["synced"] == 1 and x["count_services"] == n, "synced",
                   timeout=60)
        if x["store_rejected"]:
            raise Fail("the real store rejected listed objects: %s" % x)
        self.api.ctl("add", svc("real", "one"))
        self.api.ctl("delete", svc("ns1", "svc1"))
        d.wait(lambda x: x["count_services"] == n, "add+delete applied")
        self.api.ctl("add", svc("real", "two"))
        self.api.ctl("compact", {})
        self.api.ctl("drop-watches", {})
        d.wait(lambda x: x["stats"]["relists_410"] >= 3 and x["count_services"] == n + 1
               and x["stats"]["lists"] >= 6, "relist into the real store")
        self.drivers.remove(d)
        d.quit()

    # (name, needs the main driver)
    ORDER = [("initial_sync_paginated", True), ("added_modified_deleted", True),
             ("burst_read_between_publishes", True),
             ("bookmark_moves_rv", True), ("dropped_watch_resumes", True),
             ("410_relist", True), ("list_410_falls_back_to_latest", True),
             ("refused_page_restarts_list", True), ("429_retry_after", True), ("500s", True), ("idle_watchdog", True),
             ("slow_drip", True), ("bad_lines_not_fatal", True), ("hostile_names", False),
             ("token_reload_resets_backoff", True), ("hostile_empty_objects", False),
             ("hostile_gzip_bomb", False), ("hostile_one_object", False), ("hostile_deep", False),
             ("hostile_named_objects", False), ("hostile_endless_continue", False),
             ("hostile_list_drip", False),
             ("oversized_event_relists", True), ("token_rotation", True),
             ("wrong_ca_refused", False), ("no_ca_uses_system_store", False),
             ("kubeconfig_token_file_ca_data", False), ("kubeconfig_client_cert", False),
             ("kubeconfig_client_cert_files", False), ("refused_configs", False),
             ("real_store", False), ("metrics_by_resource", True),
             ("watch_list_streams", False), ("watch_list_refused_422", False),
             ("watch_list_refused_400", False), ("watch_list_ignored", False),
             ("watch_list_410_restarts", False), ("watch_list_never_ends", False),
             ("watch_deadline", False)]

    def run(self):
        failed = 0
        self.passed = 0
        self.load_fixture()
        self.api.ctl("add", svc("ev", "new"))
        for name, main in h2.order(self.ORDER, self.proto):
            if self.args.k and self.args.k not in name:
                continue
            t0 = time.time()
            try:
                if main:
                    self.start_main()
                getattr(self, "test_" + name)()
                if self.d:
                    # Every scenario ends with a clean close (leak-free under valgrind).
                    d, self.d = self.d, None
                    self.drivers.remove(d)
                    d.quit()
                self.passed += 1
                print("PASS %-34s %5.1fs" % (name, time.time() - t0), flush=True)
            except Fail as e:
                failed += 1
                print("FAIL %-34s %5.1fs  %s" % (name, time.time() - t0, e), flush=True)
                if self.d:
                    d, self.d = self.d, None
                    self.drivers.remove(d)
                    try:
                        d.quit()
                    except Fail as e2:
                        print("     and: %s" % e2)
            finally:
                for rule in ("clear-failures",):
                    self.api.ctl(rule)
                self.api.ctl("stall", {"enabled": False})
                self.api.ctl("drip", {"bytes": 0})
                self.api.ctl("hostile", {"mode": None})
                self.api.ctl("watch-list", {"mode": "refuse"})
                self.api.ctl("keepalive", {"interval": 0})
        return failed

    def cleanup(self, keep):
        for d in self.drivers:
            try:
                d.quit()
            except Fail as e:
                print("FAIL cleanup: %s" % e)
        self.api.stop()
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("logs kept in %s" % self.tmp)


def run_side_by_side():
    """--proto both: h1 and h2 at the same time, each in a child process with
    its own stand-in (the scenarios mostly wait); their output in order."""
    kids = []
    for proto in ("h1", "h2"):
        out = tempfile.TemporaryFile(mode="w+")
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + sys.argv[1:] +
                             ["--proto", proto], stdout=out, stderr=subprocess.STDOUT, text=True)
        kids.append((p, out))
    rc = 0
    for p, out in kids:
        rc |= p.wait()
        out.seek(0)
        sys.stdout.write(out.read())
        sys.stdout.flush()
        out.close()
    return 1 if rc else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--driver", default=os.path.join(ROOT, "build/apiserver/watch_driver"))
    ap.add_argument("--real-driver",
                    default=os.path.join(ROOT, "build/apiserver/watch_driver_real"))
    ap.add_argument("--valgrind", action="store_true")
    ap.add_argument("-k", help="run only scenarios whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the logs")
    ap.add_argument("--proto", choices=("h1", "h2", "both"), default="both",
                    help="HTTP/1.1 straight to the stand-in, HTTP/2 through nghttpx, or both")
    ap.add_argument("--serial", action="store_true",
                    help="with --proto both: h1 then h2 in this process, not side by side")
    args = ap.parse_args()
    if not os.access(args.driver, os.X_OK):
        sys.exit("no driver at %s: run tests/apiserver/build_driver.sh" % args.driver)
    if args.proto == "both" and not args.serial:
        sys.exit(run_side_by_side())
    bad = 0
    for proto in (("h1", "h2") if args.proto == "both" else (args.proto,)):
        failed = 1
        s = None
        try:
            s = Suite(args, proto)
            failed = s.run()
        finally:
            if s:
                s.cleanup(args.keep or failed)
        print("%s: %d passed, %d failed" % ("watch" if proto == "h1" else "watch-h2",
                                             getattr(s, "passed", 0), failed), flush=True)
        bad += failed
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
