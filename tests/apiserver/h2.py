"""tests/apiserver/h2.py - the watch scenarios over HTTP/2: nghttpx in front of the stand-in.

test_watch.py --proto h2 (or both) runs every scenario of its ORDER through
ProxiedApi: nghttpx (tests/lib/nghttpx.py) terminates TLS with ALPN h2 on its
own port, with a certificate from the stand-in's CA, and proxies each HTTP/2
stream to fake_apiserver.py over HTTP/1.1 + TLS. The control interface is still
the stand-in's. H1_ONLY lists the scenarios that cannot work through a proxy;
Scenarios adds the checks that only mean something over HTTP/2:

  h2_one_connection       lists and watches of one driver share one TLS
                          connection (distinct client ports in the proxy's
                          access log, ESTABLISHED sockets in /proc/net/tcp)
  h2_stream_reset_one     the backend cuts one watch mid-event: nghttpx
                          resets that stream (RST_STREAM INTERNAL_ERROR); that
                          watch alone resumes from its resourceVersion, on
                          the same connection, without a relist
  h2_proxy_restart        nghttpx killed and restarted on its port: the one
                          connection dies, all three watches resume from
                          their resourceVersions on a new one, no relist
  h2_goaway               a GOAWAY from the server (h2frames.FrameMitm
                          between the watch and nghttpx), then the connection
                          closed: all three watches resume on a new connection
                          from their resourceVersions, no relist
  h2_rst_frame            an RST_STREAM on the Services watch: that watch
                          alone resumes, on the same connection
  h2_truncated_frame      a DATA frame cut in half, then the connection
                          closed: the half event is not decoded, all resume
  h2_every_request_h2     every request the proxy served in the run (all
                          scenarios above) was HTTP/2 (ALPN h2)
Each bad-frame scenario also wants its log line and nodedns_watch_interrupted
(stats "interrupted") and the last good data served throughout.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from lib.check import CheckFailed  # noqa: E402
from lib.nghttpx import Nghttpx  # noqa: E402
from h2frames import FrameMitm  # noqa: E402

# Scenarios that run over HTTP/1.1 only, and why.
H1_ONLY = {
    "kubeconfig_client_cert":
        "the client certificate ends at the proxy's TLS; nghttpx does not pass it on",
    "kubeconfig_client_cert_files":
        "the client certificate ends at the proxy's TLS; nghttpx does not pass it on",
}

# (name, needs the main driver), run after the common ones over HTTP/2.
ORDER = [("h2_one_connection", False), ("h2_stream_reset_one", True),
         ("h2_proxy_restart", True), ("h2_goaway", False), ("h2_rst_frame", False),
         ("h2_truncated_frame", False), ("h2_every_request_h2", False)]

WATCH_PATHS = {"services": "/api/v1/services",
               "endpointslices": "/apis/discovery.k8s.io/v1/endpointslices",
               "namespaces": "/api/v1/namespaces"}


class ProxiedApi:
    """The stand-in (a test_watch.FakeApi) seen through nghttpx: url is the
    proxy's; tls_errors in stats() are the proxy's (it does the handshakes);
    the rest is the stand-in's."""

    def __init__(self, api, tmp):
        self.api = api
        try:
            self.proxy = Nghttpx(api.cert_dir, api.port, tmp)
        except Exception:
            api.stop()
            raise
        self.url = self.proxy.url
        self._mitm = None

    def mitm(self):
        """The frame-level misbehaving server in front of the proxy."""
        if self._mitm is None:
            self._mitm = FrameMitm(self.proxy.crt, self.proxy.key, self.proxy.port)
        return self._mitm

    def __getattr__(self, name):
        return getattr(self.api, name)

    def stats(self):
        s = self.api.stats()
        s["tls_errors"] = self.proxy.tls_errors()
        return s

    def stop(self):
        if self._mitm:
            self._mitm.stop()
        if self.proxy.p is not None:
            self.proxy.stop()
        self.api.stop()


def order(common, proto):
    """The scenario list of @proto: @common less H1_ONLY, plus ORDER, for h2."""
    if proto != "h2":
        return list(common)
    return [(n, m) for n, m in common if n not in H1_ONLY] + ORDER


def watch_rvs(requests, path):
    """resourceVersion of each watch request on @path, oldest first."""
    out = []
    for r in requests:
        if r["path"] == path and "watch=1" in r["query"]:
            q = dict(kv.split("=", 1) for kv in r["query"].split("&") if "=" in kv)
            out.append(int(q.get("resourceVersion") or 0))
    return out


class Scenarios:
    """Mixed into test_watch.Suite (self.api, self.d, self.driver(), self.Fail)."""

    def _h2_requests_since(self, n):
        reqs = self.api.proxy.requests()[n:]
        not_h2 = [r for r in reqs if r[0] != "h2"]
        if not_h2:
            raise self.Fail("requests not over h2: %s" % not_h2[:5])
        return reqs

    def _one_connection(self, what, samples=5):
        seen = []
        for _ in range(samples):
            seen.append(self.api.proxy.established())
            time.sleep(0.2)
        if set(seen) != {1}:
            raise self.Fail("%s: expected 1 connection to the proxy, saw %s" % (what, seen))

    def test_h2_one_connection(self):
        n0 = len(self.api.proxy.requests())
        d = self.driver(self.main_args(), "h2conn")
        if "started" not in d.first:
            raise self.Fail("driver did not start: %s" % d.first)
        d.wait(lambda x: x["stats"]["synced"] == 1 and x["stats"]["watches"] >= 3, "synced",
               timeout=60)
        end = time.time() + 20
        while self.api.stats()["open_watches"] < 3 and time.time() < end:
            time.sleep(0.1)
        self._one_connection("three watches open")
        reqs = self._h2_requests_since(n0)
        ports = {r[2].split(" ", 1)[0] for r in reqs}
        lists = [r for r in reqs if "watch=1" not in r[2]]
        if len(ports) != 1 or len(lists) < 5:
            raise self.Fail("lists and watches came over %d connections (ports %s); %d lists"
                            % (len(ports), sorted(ports), len(lists)))
        self.drivers.remove(d)
        d.quit()

    def test_h2_stream_reset_one(self):
        s0 = self.d.dump()["stats"]
        r0 = self.api.requests()
        before = {k: watch_rvs(r0, p) for k, p in WATCH_PATHS.items()}
        self._one_connection("before the reset", samples=2)
        rv = self.api.ctl("add", svc_obj("ev", "before-reset"))["resourceVersion"]
        self.wait_svc("ev/before-reset")
        rst0 = self.api.proxy.rst_streams()
        self.api.ctl("drop-watches", {"partial": True, "kind": "Service"})
        self.d.wait(lambda d: d["stats"]["watches"] >= s0["watches"] + 1, "services re-watch")
        time.sleep(1.5)  # room for a wrong restart of the other two to show
        self.api.ctl("add", svc_obj("ev", "after-reset"))
        d = self.wait_svc("ev/after-reset")
        s = d["stats"]
        if s["watches"] != s0["watches"] + 1 or s["lists"] != s0["lists"]:
            raise self.Fail("one reset stream must resume that watch only: %s -> %s" % (s0, s))
        if s["bad_events"] != s0["bad_events"]:
            raise self.Fail("the half event of the reset stream was decoded: %s" % s)
        after = {k: watch_rvs(self.api.requests(), p) for k, p in WATCH_PATHS.items()}
        grown = {k: len(after[k]) - len(before[k]) for k in WATCH_PATHS}
        if grown != {"services": 1, "endpointslices": 0, "namespaces": 0}:
            raise self.Fail("new watch requests by resource: %s" % grown)
        if after["services"][-1] < int(rv):
            raise self.Fail("services resumed at %d, before %s" % (after["services"][-1], rv))
        if self.api.proxy.rst_streams() != rst0 + 1:
            raise self.Fail("the proxy sent %d RST_STREAM, not 1"
                            % (self.api.proxy.rst_streams() - rst0))
        self._one_connection("after the reset", samples=2)

    def test_h2_proxy_restart(self):
        s0 = self.d.dump()["stats"]
        r0 = self.api.requests()
        n0 = len(r0)
        rv = self.api.ctl("add", svc_obj("ev", "before-restart"))["resourceVersion"]
        self.wait_svc("ev/before-restart")
        time.sleep(2.5)  # bookmarks (every 1 s) carry the RV to the other two watches
        try:
            self.api.proxy.kill()
            self.d.wait(lambda d: d["stats"]["watch_restarts"] + d["stats"]["errors"]
                        >= s0["watch_restarts"] + s0["errors"] + 3, "the three watches cut")
            self.api.ctl("add", svc_obj("ev", "while-down"))
            self.api.proxy.restart(down_s=0.5)
        except CheckFailed as e:
            raise self.Fail(str(e))
        d = self.wait_svc("ev/while-down", timeout=60)
        d = self.d.wait(lambda d: d["stats"]["watches"] >= s0["watches"] + 3, "three re-watches")
        if d["stats"]["lists"] != s0["lists"]:
            raise self.Fail("a dropped connection must resume, not relist: %s" % d["stats"])
        end = time.time() + 20
        while True:  # the driver counts a watch before the server logs it
            reqs = self.api.requests()[n0:]
            rvs = {k: watch_rvs(reqs, p) for k, p in WATCH_PATHS.items()}
            if all(rvs.values()) or time.time() > end:
                break
            time.sleep(0.1)
        for k, got in rvs.items():
            if not got or min(got) < int(rv):
                raise self.Fail("%s re-watched at %s, not from its RV (>= %s)" % (k, got, rv))
        self._one_connection("after the restart")


    def _bad_frame(self, action, resumed):
        """Arm @action at the frame server, make a Service change go through
        it, and check that @resumed watches resume, nothing relists, the
        cut is logged and counted, and the data stays."""
        m = self.api.mitm()
        args = self.main_args()
        args[args.index("--api") + 1] = m.url
        self.api.ctl("reset-stats")
        self.d = self.driver(args, "main")
        if "started" not in self.d.first:
            raise self.Fail("driver did not start: %s" % self.d.first)
        self.d.wait(lambda d: d["stats"]["synced"] == 1 and d["stats"]["watches"] >= 3,
                    "synced", timeout=60)
        time.sleep(1.5)  # past SHORT_WATCH_MS, a bookmark or two
        s0 = self.d.dump()["stats"]
        n0 = len(self.d.dump()["services"])
        c0 = m.counts()["connections"]
        m.arm(action)
        self.api.ctl("add", svc_obj("ev", "frame-" + action))
        if not m.fired.wait(20):
            raise self.Fail("the %s was never sent" % action)
        d = self.wait_svc("ev/frame-" + action)
        d = self.d.wait(lambda d: d["stats"]["interrupted"] >= s0["interrupted"] + resumed,
                        "%d interrupted watches" % resumed)
        s = d["stats"]
        if s["lists"] != s0["lists"] or s["bad_events"] != s0["bad_events"]:
            raise self.Fail("%s must resume without relisting or decoding a half "
                            "event: %s -> %s" % (action, s0, s))
        if len(d["services"]) != n0 + 1:
            raise self.Fail("services %d -> %d" % (n0, len(d["services"])))
        with open(self.d.errpath, "rb") as f:
            if b"watch interrupted" not in f.read():
                raise self.Fail("no log line for the interrupted watch")
        end = time.time() + 10
        while resumed == 3 and m.counts()["connections"] <= c0:
            if time.time() > end:
                raise self.Fail("no new connection after the %s" % action)
            time.sleep(0.1)
        time.sleep(1.5)
        s = self.d.dump()["stats"]
        if s["watches"] != s0["watches"] + resumed:
            raise self.Fail("%d watches restarted, want %d" % (s["watches"] - s0["watches"],
                                                               resumed))
        self.api.ctl("add", svc_obj("ev", "after-" + action))
        self.wait_svc("ev/after-" + action)

    def test_h2_goaway(self):
        self._bad_frame("goaway", 3)

    def test_h2_rst_frame(self):
        self._bad_frame("rst", 1)

    def test_h2_truncated_frame(self):
        self._bad_frame("truncate", 3)

    def test_h2_every_request_h2(self):
        reqs = self._h2_requests_since(0)
        if len(reqs) < 10:
            raise self.Fail("only %d requests through the proxy" % len(reqs))


def svc_obj(ns, name):
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": "10.0.9.9", "ports": [{"port": 80, "protocol": "TCP"}]}}
