#!/usr/bin/env python3
"""bench/cluster/fast_apiserver.py - a lean Kubernetes API stand-in for the scale bench.

Why not tests/apiserver/fake_apiserver.py: that one deep-copies every object
on every list, keeps one history list that each watch rescans on every wake,
and serializes per request - fine for tests, but at 10,000 Services and
10,000 EndpointSlices (100,000 endpoints) the time to sync would measure
Python, not nodedns. This one keeps each object pre-serialized (list form and
event form), so a list page is a bytes join and a watch is an index into a
per-kind event log. Same wire contract as far as nodedns uses it:

  HTTPS (certificates from fake_apiserver.gen_certs), "Authorization: Bearer"
  equal to the token file's content, else 401 Status.
  GET /api/v1/services, /apis/discovery.k8s.io/v1/endpointslices,
      /api/v1/namespaces
    list: limit/continue pagination from a consistent snapshot, kind *List,
      metadata.resourceVersion (+ continue, remainingItemCount), items without
      kind/apiVersion; resourceVersion/Match accepted and served as latest
      (no history of full states; a future N is 504 as on a real server);
      --rv0-ignores-limit: resourceVersion=0 lists ignore limit (the watch
      cache does).
    watch=1: resourceVersion N -> every event after N, chunked, one JSON
      event per line, BOOKMARK every --bookmark-interval s; "" or "0" ->
      synthetic ADDED of the current state first; timeoutSeconds honoured;
      sendInitialEvents=true (a streaming list, as kube-apiserver's WatchList
      serves it): those ADDED events, then at once a BOOKMARK at the current
      resourceVersion annotated k8s.io/initial-events-end: "true"
      (--no-watch-list: ignored, as a server without WatchList does).
  Control (plain HTTP, 127.0.0.1:C): POST /control/add|update|delete with an
  object, {"objects":[...]} or a List (all or nothing), GET /control/stats.

The cluster is generated in-process (gen.py) from --services/--eps/...
(or --empty), so no 50 MB fixture file is needed.

Usage:
  fast_apiserver.py --port 0 --control-port 0 --token-file F --cert-dir D
      [--services 10000 --eps 10 --namespaces 100 --headless-every 10 | --empty]
      [--bookmark-interval 10] [--rv0-ignores-limit] [--no-watch-list]
  prints one JSON line {"ready":true,"port":P,"control_port":C,"ca":...,
  "objects":{...},"gen_seconds":...} once both servers listen.
"""
import argparse
import base64
import bisect
import collections
import http.server
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "apiserver"))
import gen  # noqa: E402
from fake_apiserver import gen_certs, write_token, status_obj  # noqa: E402

RESOURCES = {
    "/api/v1/services": ("Service", "v1", "ServiceList", True),
    "/apis/discovery.k8s.io/v1/endpointslices": (
        "EndpointSlice", "discovery.k8s.io/v1", "EndpointSliceList", True),
    "/api/v1/namespaces": ("Namespace", "v1", "NamespaceList", False),
}
KINDS = {v[0]: (p,) + v for p, v in RESOURCES.items()}


def dumps(o):
    return json.dumps(o, separators=(",", ":")).encode()


class Bad(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code, self.msg = code, msg


class State:
    def __init__(self, token, bookmark_interval, rv0_ignores_limit):
        self.cond = threading.Condition()
        self.rv = 100
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.rv0_ignores_limit = rv0_ignores_limit
        self.watch_list = True
        # kind -> {(ns, name): (obj, list_item_bytes)}; sorted keys kept lazily
        self.objects = {k: {} for k in KINDS}
        self.sorted_keys = {k: None for k in KINDS}
        # kind -> ([rv...], [event_line_bytes...]), append-only
        self.log = {k: ([], []) for k in KINDS}
        self.snapshots = collections.OrderedDict()
        self.stats = collections.Counter()
        self.stopping = False

    def key_of(self, o):
        kind = o.get("kind")
        if kind not in KINDS:
            raise Bad(400, "unknown kind %r" % (kind,))
        meta = o.get("metadata") or {}
        if not meta.get("name"):
            raise Bad(400, "metadata.name is required")
        ns = meta.get("namespace", "default") if KINDS[kind][4] else ""
        return kind, (ns, meta["name"])

    def apply(self, o, etype, record=True):
        """Lock held. etype ADDED/MODIFIED/DELETED."""
        kind, key = self.key_of(o)
        objs = self.objects[kind]
        self.rv += 1
        if etype == "DELETED":
            o = objs.pop(key)[0]
            self.sorted_keys[kind] = None
        else:
            _, _, apiv, _, namespaced = KINDS[kind]
            o["kind"], o["apiVersion"] = kind, apiv
            if namespaced:
                o["metadata"]["namespace"] = key[0]
            else:
                o["metadata"].pop("namespace", None)
            if key not in objs:
                self.sorted_keys[kind] = None
        o["metadata"]["resourceVersion"] = str(self.rv)
        whole = dumps(o)
        if etype != "DELETED":
            item = dict(o)
            item.pop("kind")
            item.pop("apiVersion")
            # (object, as a list item, as an ADDED event): a streaming list
            # then only joins bytes, as a list page does
            objs[key] = (o, dumps(item), b'{"type":"ADDED","object":' + whole + b"}\n")
        if record:
            rvs, lines = self.log[kind]
            rvs.append(self.rv)
            lines.append(b'{"type":"' + etype.encode() + b'","object":' + whole + b"}\n")
            self.stats["events:" + etype] += 1
            self.cond.notify_all()

    def items(self, kind, form=1):
        """Lock held: the objects in key order, as list items (form 1) or as
        ADDED event lines (form 2), pre-serialized bytes."""
        if self.sorted_keys[kind] is None:
            self.sorted_keys[kind] = sorted(self.objects[kind])
        objs = self.objects[kind]
        return [objs[k][form] for k in self.sorted_keys[kind]]


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, ctx, st):
        self.ctx, self.st = ctx, st
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        self.st.stats["handler_errors"] += 1


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, st):
        self.st = st
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120

    def log_message(self, *a):
        pass

    def send_body(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_status(self, code, msg, reason=None):
        self.send_body(code, dumps(status_obj(code, msg, reason)) + b"\n")

    def do_GET(self):
        st = self.server.st
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        res = RESOURCES.get(url.path)
        watch = q.get("watch") in ("1", "true")
        st.stats[("watch:" if watch else "list:") + url.path] += 1
        h = self.headers.get("Authorization", "")
        if not (h.startswith("Bearer ") and h[7:] == st.token):
            st.stats["auth_failures"] += 1
            return self.send_status(401, "Unauthorized")
        if not res:
            return self.send_status(404, "the server could not find the requested resource")
        try:
            if watch:
                self.watch(res, q)
            else:
                self.list(res, q)
        except Bad as e:
            self.send_status(e.code, e.msg)

    def list(self, res, q):
        st = self.server.st
        kind, apiv, list_kind, _ = res
        limit = int(q.get("limit") or 0)
        cont = q.get("continue", "")
        rv = q.get("resourceVersion", "")
        with st.cond:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()))
                    sid, off = tok["id"], int(tok["off"])
                    skind, list_rv, items = st.snapshots[sid]
                except Exception:
                    raise Bad(400, "continue key is not valid")
                if skind != kind:
                    raise Bad(400, "continue key is not valid")
            else:
                if rv not in ("", "0") and int(rv) > st.rv:
                    raise Bad(504, "Too large resource version: %s, current: %d" % (rv, st.rv))
                if rv == "0" and st.rv0_ignores_limit:
                    limit = 0
                sid, off, list_rv, items = None, 0, st.rv, st.items(kind)
            page = items[off:off + limit] if limit else items[off:]
            meta = {"resourceVersion": str(list_rv)}
            if limit and off + limit < len(items):
                if sid is None:
                    sid = "%d-%d" % (list_rv, len(st.snapshots))
                    st.snapshots[sid] = (kind, list_rv, items)
                    while len(st.snapshots) > 20:
                        st.snapshots.popitem(last=False)
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"id": sid, "off": off + limit}).encode()).decode()
                meta["remainingItemCount"] = len(items) - off - limit
        st.stats["list_pages"] += 1
        body = (b'{"kind":"' + list_kind.encode() + b'","apiVersion":"' + apiv.encode() +
                b'","metadata":' + dumps(meta) + b',"items":[' + b",".join(page) + b"]}\n")
        self.send_body(200, body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def watch(self, res, q):
        st = self.server.st
        kind, apiv, _, _ = res
        rv = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(q.get("timeoutSeconds") or 1800)
        initial = []
        send_initial = (q.get("sendInitialEvents") in ("true", "1") and bookmarks and
                        st.watch_list)
        with st.cond:
            rvs, lines = st.log[kind]
            initial_rv = st.rv
            if rv in ("", "0") or send_initial:
                initial = st.items(kind, 2)
                idx = len(rvs)
            else:
                idx = bisect.bisect_right(rvs, int(rv))
            st.stats["open_watches"] += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if send_initial:
                initial.append(b'{"type":"BOOKMARK","object":{"kind":"' + kind.encode() +
                               b'","apiVersion":"' + apiv.encode() +
                               b'","metadata":{"resourceVersion":"' + str(initial_rv).encode() +
                               b'","annotations":{"k8s.io/initial-events-end":"true"}}}}\n')
            # In chunks of about 256 KiB, so the client decodes while the
            # rest is still being encrypted and sent, as from a real server.
            part, size = [], 0
            for line in initial:
                part.append(line)
                size += len(line)
                if size >= 1 << 18:
                    self.chunk(b"".join(part))
                    part, size = [], 0
            if part:
                self.chunk(b"".join(part))
            deadline = time.monotonic() + timeout
            next_bm = time.monotonic() + st.bookmark_interval
            while True:
                with st.cond:
                    while True:
                        now = time.monotonic()
                        if st.stopping or now >= deadline:
                            out = None
                            break
                        if len(lines) > idx:
                            out = lines[idx:]
                            idx = len(lines)
                            break
                        if bookmarks and now >= next_bm:
                            out = [b'{"type":"BOOKMARK","object":{"kind":"' + kind.encode() +
                                   b'","apiVersion":"' + apiv.encode() +
                                   b'","metadata":{"resourceVersion":"' +
                                   str(st.rv).encode() + b'"}}}\n']
                            next_bm = now + st.bookmark_interval
                            break
                        st.cond.wait(min(deadline, next_bm if bookmarks else deadline) - now)
                if out is None:
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.chunk(b"".join(out))
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            with st.cond:
                st.stats["open_watches"] -= 1


class Control(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120

    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        body = dumps(obj) + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.server.st
        if self.path == "/control/stats":
            with st.cond:
                out = dict(st.stats)
                out["resourceVersion"] = st.rv
                out["objects"] = {k: len(v) for k, v in st.objects.items()}
            return self.reply(200, out)
        self.reply(404, {"error": "unknown path"})

    def do_POST(self):
        st = self.server.st
        n = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(n) if n else b"{}")
        except ValueError as e:
            return self.reply(400, {"error": "bad JSON: %s" % e})
        if isinstance(body, dict) and isinstance(body.get("objects"), list):
            objs = body["objects"]
        elif isinstance(body, dict) and isinstance(body.get("items"), list):
            objs = body["items"]
        else:
            objs = body if isinstance(body, list) else [body]
        verb = {"/control/add": "ADDED", "/control/update": "MODIFIED",
                "/control/delete": "DELETED"}.get(self.path)
        if verb is None:
            return self.reply(404, {"error": "unknown control path"})
        try:
            with st.cond:
                for o in objs:
                    kind, key = st.key_of(o)
                    exists = key in st.objects[kind]
                    if verb == "ADDED" and exists:
                        raise Bad(409, "%s %s/%s already exists" % (kind, *key))
                    if verb != "ADDED" and not exists:
                        raise Bad(404, "%s %s/%s not found" % (kind, *key))
                for o in objs:
                    st.apply(o, verb)
                rv = st.rv
        except Bad as e:
            return self.reply(e.code, {"error": e.msg})
        self.reply(200, {"resourceVersion": str(rv), "count": len(objs)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--cert-dir", required=True)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--eps", type=int, default=10)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--headless-every", type=int, default=10)
    ap.add_argument("--empty", action="store_true")
    ap.add_argument("--bookmark-interval", type=float, default=10.0)
    ap.add_argument("--rv0-ignores-limit", action="store_true")
    ap.add_argument("--no-watch-list", action="store_true",
                    help="ignore sendInitialEvents (a server without WatchList)")
    a = ap.parse_args()

    if not os.path.exists(os.path.join(a.cert_dir, "ca.crt")):
        gen_certs(a.cert_dir)
    if os.path.exists(a.token_file):
        with open(a.token_file) as f:
            token = f.read().strip()
    else:
        token = base64.urlsafe_b64encode(os.urandom(24)).decode()
        write_token(a.token_file, token)

    st = State(token, a.bookmark_interval, a.rv0_ignores_limit)
    st.watch_list = not a.no_watch_list
    t0 = time.monotonic()
    if not a.empty:
        c = gen.Cluster(a.services, a.eps, a.namespaces, a.headless_every)
        with st.cond:
            for o in c.objects():
                st.apply(o, "ADDED", record=False)
            for k in KINDS:
                st.items(k)
    gen_s = time.monotonic() - t0

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(a.cert_dir, "server.crt"),
                        os.path.join(a.cert_dir, "server.key"))
    api = TLSServer((a.host, a.port), Api, ctx, st)
    ctl = ControlServer(("127.0.0.1", a.control_port), Control, st)
    for s in (api, ctl):
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps({"ready": True, "port": api.server_address[1],
                      "control_port": ctl.server_address[1],
                      "ca": os.path.join(a.cert_dir, "ca.crt"), "token_file": a.token_file,
                      "objects": {k: len(v) for k, v in st.objects.items()},
                      "gen_seconds": round(gen_s, 2)}), flush=True)
    while not stop.wait(0.5):
        pass
    with st.cond:
        st.stopping = True
        st.cond.notify_all()
    api.shutdown()
    ctl.shutdown()


if __name__ == "__main__":
    main()
