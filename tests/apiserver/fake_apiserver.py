#!/usr/bin/env python3
"""tests/apiserver/fake_apiserver.py - a Kubernetes API server stand-in for tests.

Usage:
    python3 tests/apiserver/fake_apiserver.py --port P --control-port C \\
        --token-file F --cert-dir D [--fixture deploy/examples/demo-cluster.json] \\
        [--host 127.0.0.1] [--bookmark-interval 5] [--watch-timeout 1800] \\
        [--rv0-ignores-limit] [--verbose]

    P or C may be 0 (an ephemeral port). When both servers listen, one JSON
    line goes to stdout, e.g.
        {"ready": true, "port": 40123, "control_port": 40124,
         "ca": "D/ca.crt", "token_file": "F", "cert_dir": "D"}
    SIGTERM / SIGINT stop it. Python 3.11 standard library + the openssl CLI.

What it serves (HTTPS only, HTTP/1.1, on --host:P):
    GET /api/v1/services
    GET /apis/discovery.k8s.io/v1/endpointslices
    GET /api/v1/namespaces
    GET /api/v1/pods            (fieldSelector=spec.nodeName=N, = == != terms,
                                 filters lists and watches by the object's
                                 current state, on any collection)
  as lists (limit/continue pagination from a consistent snapshot, kind
  ServiceList..., metadata.resourceVersion, items without kind/apiVersion as a
  real server sends them) or, with watch=1 (or true), as watches:
  resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=S, chunked, one
  {"type":...,"object":{...}} per line, BOOKMARK events every
  --bookmark-interval seconds carrying only metadata.resourceVersion, and an
  ERROR event with a 410 Expired Status (then the end of the response) when N
  is older than the compaction point. resourceVersion "" or "0" on a watch
  sends synthetic ADDED events for the current state first.
  List resourceVersion semantics: unset = latest; "0" = any (served as latest;
  with --rv0-ignores-limit the limit is ignored, as the real watch cache does);
  N with resourceVersionMatch=NotOlderThan (or without limit) = not older than
  (504 "Too large resource version" if N is in the future); N with
  resourceVersionMatch=Exact, or with limit and no match (the legacy rule) =
  exact: 410 Expired when N is older than the compaction point (the fake then
  serves the latest state: it keeps no history of full states). A continue
  token whose snapshot is older than the compaction point is 410 Expired.
  One global resourceVersion counter, incremented by every change.

Authentication: "Authorization: Bearer <token>" equal to the current token
(read from --token-file at start, or generated and written there), or a client
certificate signed by the test CA. Otherwise 401 with a Status body.

Certificates, generated at start with the openssl CLI into --cert-dir:
    ca.crt ca.key          the CA that signs everything below
    server.crt server.key  SAN IP:127.0.0.1, DNS:localhost
    client.crt client.key  a client certificate (CN=nodedns-test)
    other-ca.crt other-ca.key  an unrelated CA, for "wrong CA" tests

Control interface (plain HTTP on 127.0.0.1:C, JSON in and out):
    POST /control/add       an object, {"objects":[...]} or a List: ADDED
                            (409 if it exists). Objects need kind and
                            metadata.name (+ namespace for namespaced kinds).
    POST /control/update    same shapes: MODIFIED (404 if missing)
    POST /control/delete    same shapes (kind + metadata suffice): DELETED
    POST /control/compact   {"resourceVersion": N}; default: bump the counter
                            and compact there, so every client is now behind
    POST /control/fail      {"status":500,"count":3,"match":"services",
                            "watch":true|false,"retry_after":S}: the next
                            `count` API requests whose path?query contains
                            `match` (and are/aren't watches) get `status`
    POST /control/throttle  {"count":N,"retry_after":1}: 429 + Retry-After
    POST /control/clear-failures
    POST /control/rotate-token {"token":"...","write_file":true,
                            "drop_watches":false}: only the new token is
                            accepted from now on; written to --token-file
                            (atomically) unless write_file is false
    POST /control/inject    {"kind":"Service","raw":"not json"}: open and later
                            watches of that kind get this raw line (plus
                            "\n") as if it were an event (for bad-input tests)
    POST /control/drop-watches {"partial":false}: cut every open watch
                            connection (after half an event when partial);
                            with "kind":"Service" only the watches of that kind
    POST /control/stall     {"enabled":true}: open watches send nothing
    POST /control/drip      {"bytes":1,"delay_ms":2}: write responses in
                            tiny pieces; {"bytes":0} turns it off
    POST /control/hostile   {"mode":M,"kind":"Service",...}: lists of that kind
                            misbehave on purpose until {"mode":null}:
        empty_objects {"bytes":N,"gzip":false}: N bytes of "{}," before the
                      real items (gzip: Content-Encoding gzip when asked for,
                      so N inflated bytes from about N/1000 on the wire)
        one_object    {"bytes":N}: one item holding N bytes of "{},"
        named_objects {"bytes":N}: N bytes of {"metadata":{"name":"nI"},"a":{},"b":{}}
        deep          {"depth":N}: one item nested N arrays deep
        continue      {"same":true,"items":0}: every page (empty, or the
                      first `items` real objects) carries a continue token,
                      the same one each time, or a fresh one
        drip          {"delay_ms":1000}: the list, one byte per delay
    POST /control/watch-list {"mode":M,"expire":N,"endless":false}: streaming
                            lists (watch=1&sendInitialEvents=true): M is
        refuse     422 "sendInitialEvents is forbidden" (the default: a
                   server without the WatchList feature)
        refuse400  400, as a server that knows no such parameter
        ignore     the parameter is ignored: a plain watch (from rv 0: the
                   state as ADDED events, then bookmarks without the
                   annotation)
        serve      WatchList: needs resourceVersionMatch=NotOlderThan and
                   allowWatchBookmarks=true; every object as ADDED, then a
                   BOOKMARK annotated k8s.io/initial-events-end: "true" at
                   the list's resourceVersion, then the watch goes on.
                   expire: the next N streaming lists send half the objects
                   and a 410 Expired ERROR event instead; endless: the
                   initial events never end (ADDED every 10 ms)
    POST /control/keepalive {"interval": s}: open watches (past their initial
                            events) send only a "\n" every s seconds and
                            never end, past timeoutSeconds; 0 turns it off
    POST /control/restart   {"down_s": 2}: as an API server restart: every open
                            watch cut, new connections reset and requests on
                            kept-alive ones unanswered for down_s seconds,
                            history compacted at the current resourceVersion
                            (a watch from an older one gets 410 Expired)
    POST /control/bookmarks {"interval": seconds}
    POST /control/reset-stats
    GET  /control/stats     counters: requests by verb:resource, statuses,
                            auth failures, open watches, resourceVersion...
    GET  /control/requests  the last 500 API requests (path, query, status)
    GET  /control/objects   the current objects
"""

import argparse
import base64
import collections
import copy
import hmac
import http.server
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
import itertools
import zlib

RESOURCES = {
    "/api/v1/services": ("Service", "v1", "ServiceList", True, "services"),
    "/apis/discovery.k8s.io/v1/endpointslices": (
        "EndpointSlice", "discovery.k8s.io/v1", "EndpointSliceList", True, "endpointslices"),
    "/api/v1/namespaces": ("Namespace", "v1", "NamespaceList", False, "namespaces"),
    "/api/v1/pods": ("Pod", "v1", "PodList", True, "pods"),
}
# kind -> (path, kind, apiVersion, list kind, namespaced, resource name)
KINDS = {v[0]: (path,) + v for path, v in RESOURCES.items()}

def field_selector(q):
    """A predicate for the request's fieldSelector ("a.b=v", "a.b==v",
    "a.b!=v", comma-separated terms), or None without one."""
    sel = q.get("fieldSelector", "")
    if not sel:
        return None
    terms = []
    for term in sel.split(","):
        neg = "!=" in term
        path, _, want = term.partition("!=" if neg else "=")
        terms.append((path.split("."), want.lstrip("="), neg))

    def get(o, path):
        for k in path:
            o = o.get(k) if isinstance(o, dict) else None
        return "" if o is None else str(o)
    return lambda o: all((get(o, path) != want) == neg for path, want, neg in terms)


REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    409: "AlreadyExists", 410: "Expired", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


def status_obj(code, message, reason=None, details=None):
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
          "message": message, "reason": reason or REASONS.get(code, "Unknown"), "code": code}
    if details:
        st["details"] = details
    return st


def now_rfc3339():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class BadRequest(Exception):
    def __init__(self, code, message, details=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class State:
    """Everything shared by the handler threads, under one condition."""

    def __init__(self, token, token_file, bookmark_interval, watch_timeout, rv0_ignores_limit):
        self.cond = threading.Condition()
        self.rv = 100
        self.compacted = 0
        self.objects = {k: {} for k in KINDS}     # kind -> {(ns, name): obj}
        self.history = []                         # (rv, kind, type, obj)
        self.token = token
        self.token_file = token_file
        self.bookmark_interval = bookmark_interval
        self.watch_timeout = watch_timeout
        self.rv0_ignores_limit = rv0_ignores_limit
        self.failures = []
        self.throttle = {"count": 0, "retry_after": 1}
        self.drop_gen = 0
        self.drop_partial = False
        self.kind_drops = collections.Counter()   # kind -> drop-watches of that kind
        self.stall = False
        self.drip = (0, 0.0)
        self.hostile = None
        self.snapshots = collections.OrderedDict()  # id -> (kind, rv, items)
        self.stats = collections.Counter()
        self.requests = collections.deque(maxlen=500)
        self.open_watches = 0
        self.stopping = False
        self.watch_list = {"mode": "refuse"}
        self.down_until = 0.0
        self.keepalive = 0.0

    def is_down(self):
        with self.cond:
            return time.monotonic() < self.down_until

    # -- objects (call with the lock held) --

    def key_of(self, obj):
        kind = obj.get("kind")
        if kind not in KINDS:
            raise BadRequest(400, "unknown kind %r" % (kind,))
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise BadRequest(400, "metadata.name is required")
        namespaced = KINDS[kind][4]
        ns = meta.get("namespace", "default" if namespaced else "")
        if not namespaced:
            ns = ""
        return kind, (ns, meta["name"])

    def _record(self, kind, etype, obj):
        self.history.append((self.rv, kind, etype, copy.deepcopy(obj)))
        self.stats["events:" + etype] += 1
        self.cond.notify_all()

    def add(self, obj, update=False):
        kind, key = self.key_of(obj)
        exists = key in self.objects[kind]
        if exists and not update:
            raise BadRequest(409, "%s %s/%s already exists" % (kind, key[0], key[1]))
        if update and not exists:
            raise BadRequest(404, "%s %s/%s not found" % (kind, key[0], key[1]))
        obj = copy.deepcopy(obj)
        _, _, apiv, _, namespaced, _ = KINDS[kind]
        obj["kind"] = kind
        obj["apiVersion"] = apiv
        meta = obj["metadata"]
        if namespaced:
            meta["namespace"] = key[0]
        else:
            meta.pop("namespace", None)
        old = self.objects[kind].get(key)
        meta["uid"] = old["metadata"]["uid"] if old else meta.get("uid") or str(uuid.uuid4())
        meta.setdefault("creationTimestamp", now_rfc3339())
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[kind][key] = obj
        self._record(kind, "MODIFIED" if exists else "ADDED", obj)
        return self.rv

    def delete(self, obj):
        kind, key = self.key_of(obj)
        old = self.objects[kind].pop(key, None)
        if old is None:
            raise BadRequest(404, "%s %s/%s not found" % (kind, key[0], key[1]))
        self.rv += 1
        old["metadata"]["resourceVersion"] = str(self.rv)
        self._record(kind, "DELETED", old)
        return self.rv

    def compact(self, rv=None):
        if rv is None:
            self.rv += 1
            rv = self.rv
        self.compacted = max(self.compacted, min(int(rv), self.rv))
        self.history = [e for e in self.history if e[0] > self.compacted]
        # Snapshots stay: an old continue token must get 410, not "invalid".
        self.cond.notify_all()
        return self.compacted


def load_objects(doc):
    """Objects from an object, a List, or {"objects": [...]}."""
    if isinstance(doc, dict) and isinstance(doc.get("objects"), list):
        return doc["objects"]
    if isinstance(doc, dict) and isinstance(doc.get("items"), list):
        return doc["items"]
    if isinstance(doc, list):
        return doc
    return [doc]


def gen_certs(d):
    os.makedirs(d, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def ca(name, cn):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", os.path.join(d, name + ".key"),
            "-out", os.path.join(d, name + ".crt"), "-days", "7", "-subj", "/CN=" + cn,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, cn, ext):
        key = os.path.join(d, name + ".key")
        csr = os.path.join(d, name + ".csr")
        extf = os.path.join(d, name + ".ext")
        with open(extf, "w") as f:
            f.write(ext)
        run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + cn)
        run("x509", "-req", "-in", csr, "-CA", os.path.join(d, "ca.crt"),
            "-CAkey", os.path.join(d, "ca.key"), "-CAcreateserial",
            "-out", os.path.join(d, name + ".crt"), "-days", "7", "-extfile", extf)
        os.unlink(csr)
        os.unlink(extf)

    ca("ca", "nodedns-fake-apiserver-ca")
    ca("other-ca", "some-other-ca")
    leaf("server", "fake-apiserver",
         "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
         "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    leaf("client", "nodedns-test",
         "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
         "extendedKeyUsage=clientAuth\n")


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # hundreds of clients reconnect at once in bench/cluster/apicost

    def __init__(self, addr, handler, ctx, state):
        self.ctx = ctx
        self.state = state
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.state.is_down():
            # Restarting (/control/restart): the connection is reset.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            sock.close()
            raise OSError("restarting")
        # The handshake happens in the handler thread, on first read, so a
        # slow or broken client cannot block accept().
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        with self.state.cond:
            if isinstance(exc, ssl.SSLError):
                self.state.stats["tls_errors"] += 1
            else:
                self.state.stats["handler_errors"] += 1
        if VERBOSE:
            super().handle_error(request, client_address)


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, state):
        self.state = state
        super().__init__(addr, handler)


VERBOSE = False


class ApiHandler(http.server.BaseHTTPRequestHandler):
    # kube-apiserver sets TCP_NODELAY; without it headers and body sent in
    # separate writes wait ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver/1"
    timeout = 60

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("api: " + (fmt % args) + "\n")

    # -- output --

    def send_json(self, code, obj, headers=()):
        body = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.write_dripped(body, chunked=False)
        self.note(code)

    def send_status(self, code, message, headers=(), reason=None, details=None):
        self.send_json(code, status_obj(code, message, reason, details), headers)

    def write_dripped(self, data, chunked):
        n, delay = self.server.state.drip
        pieces = [data] if n <= 0 else [data[i:i + n] for i in range(0, len(data), n)]
        for p in pieces:
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            else:
                self.wfile.write(p)
            if n > 0:
                self.wfile.flush()
                time.sleep(delay)
        self.wfile.flush()

    def note(self, code):
        st = self.server.state
        with st.cond:
            st.stats["status:%d" % code] += 1
            st.requests.append({"path": self.path_only, "query": self.query_raw,
                                "status": code, "time": time.time()})

    # -- input --

    def authorized(self):
        st = self.server.state
        try:
            if self.connection.getpeercert():
                with st.cond:
                    st.stats["auth:client_cert"] += 1
                return True
        except (ValueError, AttributeError):
            pass
        h = self.headers.get("Authorization", "")
        with st.cond:
            token = st.token
        if h.startswith("Bearer ") and hmac.compare_digest(h[7:].encode(), token.encode()):
            return True
        with st.cond:
            st.stats["auth_failures"] += 1
        return False

    def injected_failure(self, is_watch):
        st = self.server.state
        target = self.path_only + "?" + self.query_raw
        with st.cond:
            if st.throttle["count"] > 0:
                st.throttle["count"] -= 1
                return 429, st.throttle.get("retry_after", 1)
            for rule in st.failures:
                if rule["count"] <= 0:
                    continue
                if rule.get("match") and rule["match"] not in target:
                    continue
                if rule.get("watch") is not None and bool(rule["watch"]) != is_watch:
                    continue
                rule["count"] -= 1
                return rule["status"], rule.get("retry_after")
        return None

    def do_GET(self):
        st = self.server.state
        if st.is_down():  # a kept-alive connection during a restart
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        self.path_only = url.path
        self.query_raw = url.query
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        res = RESOURCES.get(url.path)
        is_watch = q.get("watch") in ("1", "true")
        with st.cond:
            st.stats["requests"] += 1
            if res:
                st.stats[("watch:" if is_watch else "list:") + res[4]] += 1
        if not self.authorized():
            self.send_status(401, "Unauthorized")
            return
        fail = self.injected_failure(is_watch)
        if fail:
            code, retry = fail
            hdrs = [("Retry-After", str(retry))] if retry is not None else []
            if code == 429:
                self.send_status(429, "Too many requests, please try again later.", hdrs)
            elif code == 410:
                self.send_status(410, "The resourceVersion for the provided list is too old.",
                                 hdrs, reason="Expired")
            else:
                self.send_status(code, "injected failure", hdrs)
            return
        if not res:
            self.send_status(404, "the server could not find the requested resource")
            return
        try:
            if is_watch:
                self.serve_watch(res, q)
            else:
                self.serve_list(res, q)
        except BadRequest as e:
            self.send_status(e.code, e.message, details=e.details)

    def do_POST(self):
        self.path_only = self.path
        self.query_raw = ""
        self.send_status(405, "method not allowed")

    # -- list --

    def serve_list(self, res, q):
        st = self.server.state
        kind, apiv, list_kind, namespaced, name = res
        limit = q.get("limit", "")
        cont = q.get("continue", "")
        rv = q.get("resourceVersion", "")
        match = q.get("resourceVersionMatch", "")
        try:
            limit = int(limit) if limit else 0
            if limit < 0:
                raise ValueError
        except ValueError:
            raise BadRequest(400, "invalid limit")
        if match and not rv:
            raise BadRequest(422, "resourceVersionMatch is forbidden unless resourceVersion "
                             "is provided")
        if match and match not in ("NotOlderThan", "Exact"):
            raise BadRequest(422, "unknown resourceVersionMatch")
        if match == "Exact" and rv == "0":
            raise BadRequest(422, "resourceVersionMatch \"exact\" is forbidden for "
                             "resourceVersion \"0\"")
        if cont and rv and rv != "0":
            raise BadRequest(400, "specifying resource version is not allowed when using "
                             "continue")
        with st.cond:
            hostile = st.hostile if st.hostile and st.hostile.get("kind", kind) == kind else None
        if hostile:
            self.serve_hostile_list(res, hostile, cont)
            return
        with st.cond:
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont.encode()).decode())
                    sid, off = tok["id"], int(tok["off"])
                except Exception:
                    raise BadRequest(400, "continue key is not valid")
                snap = st.snapshots.get(sid)
                if snap is None or snap[0] != kind:
                    raise BadRequest(400, "continue key is not valid")
                if snap[1] < st.compacted:
                    raise BadRequest(410, "The provided continue parameter is too old to "
                                     "display a consistent list result. You can start a new "
                                     "list without the continue parameter.")
                _, list_rv, items = snap
            else:
                if rv and rv != "0":
                    try:
                        n = int(rv)
                    except ValueError:
                        raise BadRequest(400, "invalid resource version %r" % rv)
                    exact = match == "Exact" or (not match and limit > 0)
                    if n > st.rv:
                        raise BadRequest(504, "Too large resource version: %d, current: %d"
                                         % (n, st.rv),
                                         details={"causes": [{"reason": "ResourceVersionTooLarge",
                                                              "message": "Too large resource "
                                                              "version"}],
                                                  "retryAfterSeconds": 1})
                    if exact and n < st.compacted:
                        raise BadRequest(410, "The resourceVersion for the provided list is "
                                         "too old.")
                list_rv = st.rv
                items = [copy.deepcopy(o) for _, o in sorted(st.objects[kind].items())]
                sel = field_selector(q)
                if sel:
                    items = [o for o in items if sel(o)]
                for o in items:  # real lists carry no kind/apiVersion per item
                    o.pop("kind", None)
                    o.pop("apiVersion", None)
                sid = None
                off = 0
                if rv == "0" and st.rv0_ignores_limit:
                    limit = 0
            page = items[off:off + limit] if limit else items[off:]
            meta = {"resourceVersion": str(list_rv)}
            if limit and off + limit < len(items):
                if sid is None:
                    sid = uuid.uuid4().hex
                    st.snapshots[sid] = (kind, list_rv, items)
                    while len(st.snapshots) > 100:
                        st.snapshots.popitem(last=False)
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"id": sid, "off": off + limit}).encode()).decode()
                meta["remainingItemCount"] = len(items) - off - limit
        self.send_json(200, {"kind": list_kind, "apiVersion": apiv, "metadata": meta,
                             "items": page})

    # -- hostile lists --

    def write_chunks(self, chunks, gzip_it=False, delay=0.0):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        gz = gzip_it and "gzip" in (self.headers.get("Accept-Encoding") or "")
        if gz:
            self.send_header("Content-Encoding", "gzip")
            z = zlib.compressobj(9, zlib.DEFLATED, 31)
        self.end_headers()
        self.note(200)
        try:
            for c in chunks:
                if gz:
                    c = z.compress(c)
                if c:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                if delay:
                    self.wfile.flush()
                    time.sleep(delay)
            if gz:
                c = z.flush()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            self.close_connection = True

    def serve_hostile_list(self, res, h, cont):
        st = self.server.state
        kind, apiv, list_kind, namespaced, name = res
        with st.cond:
            st.stats["hostile_lists"] += 1
            rv = st.rv
            items = [copy.deepcopy(o) for _, o in sorted(st.objects[kind].items())]
        mode = h["mode"]
        head = ('{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"},"items":['
                % (list_kind, apiv, rv)).encode()
        real = b",".join(json.dumps(o, separators=(",", ":")).encode() for o in items)

        def repeat(unit, total):
            block = unit * (65536 // len(unit))
            sent = 0
            while sent < total:
                yield block
                sent += len(block)

        if mode == "empty_objects":
            self.write_chunks(itertools.chain([head], repeat(b"{},", int(h["bytes"])),
                                              [real, b"]}\n"]), gzip_it=h.get("gzip", False))
        elif mode == "one_object":
            self.write_chunks(itertools.chain(
                [head, b'{"metadata":{"name":"huge","namespace":"x"},"x":['],
                 repeat(b"{},", int(h["bytes"])), [b"{}]},", real, b"]}\n"]))
        elif mode == "named_objects":
            n = int(h["bytes"]) // 45
            gen = (b"".join(b'{"metadata":{"name":"n%d"},"a":{},"b":{}},' % (i * 1000 + j)
                            for j in range(1000)) for i in range(n // 1000 + 1))
            self.write_chunks(itertools.chain([head], gen, [real, b"]}\n"]))
        elif mode == "deep":
            d = int(h["depth"])
            self.write_chunks([head, b'{"metadata":{"name":"deep","namespace":"x"},"x":',
                               b"[" * d, b"]" * d, b"},", real, b"]}\n"])
        elif mode == "continue":
            tok = "same" if h.get("same", True) else uuid.uuid4().hex
            page = items[:int(h.get("items", 0))]
            self.send_json(200, {"kind": list_kind, "apiVersion": apiv,
                                 "metadata": {"resourceVersion": str(rv), "continue": tok},
                                 "items": page})
        elif mode == "drip":
            body = head + real + b"]}\n"
            delay = float(h.get("delay_ms", 1000)) / 1000.0
            self.write_chunks((body[i:i + 1] for i in range(len(body))), delay=delay)
        else:
            self.send_status(500, "unknown hostile mode")

    # -- watch --

    def write_event(self, ev):
        self.write_dripped((json.dumps(ev, separators=(",", ":")) + "\n").encode(), chunked=True)

    def serve_watch(self, res, q):
        st = self.server.state
        kind, apiv, list_kind, namespaced, name = res
        rv = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        with st.cond:
            wl = dict(st.watch_list)
        streaming = False
        if q.get("sendInitialEvents") in ("true", "1") and wl["mode"] != "ignore":
            with st.cond:
                st.stats["watchlist:" + wl["mode"]] += 1
            if wl["mode"] == "refuse":
                raise BadRequest(422, "sendInitialEvents is forbidden for watch unless the "
                                 "WatchList feature gate is enabled")
            if wl["mode"] == "refuse400":
                raise BadRequest(400, "unknown parameter sendInitialEvents")
            if q.get("resourceVersionMatch") != "NotOlderThan":
                raise BadRequest(422, "sendInitialEvents requires setting resourceVersionMatch "
                                 "to NotOlderThan")
            if not bookmarks:
                raise BadRequest(422, "sendInitialEvents requires allowWatchBookmarks=true")
            streaming = True
        elif q.get("sendInitialEvents"):
            with st.cond:
                st.stats["watchlist:ignored"] += 1
        try:
            timeout = float(q["timeoutSeconds"]) if "timeoutSeconds" in q else st.watch_timeout
        except ValueError:
            raise BadRequest(400, "invalid timeoutSeconds")
        initial = []
        expired = None
        sel = field_selector(q) or (lambda o: True)
        with st.cond:
            if streaming:
                # Not older than rv ("" and "0": any): the latest state here.
                if rv not in ("", "0"):
                    try:
                        n = int(rv)
                    except ValueError:
                        raise BadRequest(400, "invalid resource version %r" % rv)
                    if n > st.rv:
                        raise BadRequest(504, "Too large resource version: %d, current: %d"
                                         % (n, st.rv))
                last = st.rv
                for _, o in sorted(st.objects[kind].items()):
                    initial.append({"type": "ADDED", "object": copy.deepcopy(o)})
                if st.watch_list.get("expire", 0) > 0:
                    st.watch_list["expire"] -= 1
                    st.stats["watchlist:expired"] += 1
                    initial = initial[:len(initial) // 2]
                    expired = status_obj(410, "too old resource version: %s (%d)"
                                         % (rv or "0", st.compacted), "Expired")
                else:
                    initial.append({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": apiv, "metadata": {
                            "resourceVersion": str(last),
                            "annotations": {"k8s.io/initial-events-end": "true"}}}})
                endless = wl.get("endless", False)
            elif rv in ("", "0"):
                last = st.rv
                for _, o in sorted(st.objects[kind].items()):
                    if sel(o):
                        initial.append({"type": "ADDED", "object": copy.deepcopy(o)})
            else:
                try:
                    last = int(rv)
                except ValueError:
                    raise BadRequest(400, "invalid resource version %r" % rv)
                if last < st.compacted:
                    expired = status_obj(410, "too old resource version: %d (%d)"
                                         % (last, st.compacted), "Expired")
            drop_gen = st.drop_gen
            kind_drop = st.kind_drops[kind]
            st.open_watches += 1
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.note(200)
            if streaming and expired:
                for ev in initial:
                    self.write_event(ev)
            if streaming and endless:
                # Initial events that never reach initial-events-end.
                i = 0
                while not st.stopping:
                    o = {"kind": kind, "apiVersion": apiv, "metadata": {
                        "name": "endless-%d" % i, "namespace": "endless",
                        "resourceVersion": str(last)}}
                    self.write_event({"type": "ADDED", "object": o})
                    self.wfile.flush()
                    i += 1
                    time.sleep(0.01)
                return
            if expired:
                self.write_event({"type": "ERROR", "object": expired})
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return
            for ev in initial:
                self.write_event(ev)
            deadline = time.monotonic() + timeout
            next_bm = time.monotonic() + st.bookmark_interval
            self.wfile.flush()
            while True:
                out = []
                dropped = partial = False
                with st.cond:
                    while True:
                        now = time.monotonic()
                        # A shorter interval set meanwhile applies at once.
                        next_bm = min(next_bm, now + st.bookmark_interval)
                        if (st.stopping or st.drop_gen != drop_gen
                                or st.kind_drops[kind] != kind_drop):
                            dropped, partial = True, st.drop_partial
                            break
                        if st.keepalive > 0:
                            # Keep-alive bytes only, past any deadline.
                            st.cond.wait(st.keepalive)
                            break
                        if now >= deadline:
                            break
                        if not st.stall:
                            out = [e for e in st.history if e[1] == kind and e[0] > last
                                   and (e[2] == "RAW" or sel(e[3]))]
                            if out:
                                break
                            if bookmarks and now >= next_bm:
                                break
                        else:
                            next_bm = now + st.bookmark_interval
                        wake = min(deadline, next_bm if bookmarks else deadline, now + 0.5)
                        st.cond.wait(max(0.01, wake - now))
                    bm_rv = st.rv
                    bm_due = bookmarks and not st.stall and time.monotonic() >= next_bm
                if dropped:
                    if partial:
                        line = json.dumps({"type": "MODIFIED", "object": {"kind": kind}}).encode()
                        half = line[:len(line) // 2]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
                        self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    with st.cond:
                        st.stats["watches_dropped"] += 1
                    return
                if keepalive_now(st):
                    self.wfile.write(b"1\r\n\n\r\n")
                    self.wfile.flush()
                    with st.cond:
                        st.stats["keepalive_bytes"] += 1
                    continue
                for erv, _, etype, obj in out:
                    if etype == "RAW":
                        self.write_dripped(obj.encode() + b"\n", chunked=True)
                    else:
                        self.write_event({"type": etype, "object": obj})
                    last = max(last, erv)
                if bm_due and not out:
                    self.write_event({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": apiv,
                        "metadata": {"resourceVersion": str(bm_rv)}}})
                    with st.cond:
                        st.stats["bookmarks_sent"] += 1
                    last = max(last, bm_rv)
                    next_bm = time.monotonic() + st.bookmark_interval
                if time.monotonic() >= deadline and not out:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            with st.cond:
                st.open_watches -= 1


def keepalive_now(st):
    with st.cond:
        return st.keepalive > 0 and not st.stopping


class ControlHandler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, fmt, *args):
        if VERBOSE:
            sys.stderr.write("control: " + (fmt % args) + "\n")

    def reply(self, code, obj):
        body = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st = self.server.state
        with st.cond:
            if self.path == "/control/stats":
                out = dict(st.stats)
                out.update({"resourceVersion": st.rv, "compacted": st.compacted,
                            "open_watches": st.open_watches,
                            "objects": {k: len(v) for k, v in st.objects.items()}})
                return self.reply(200, out)
            if self.path == "/control/requests":
                return self.reply(200, list(st.requests))
            if self.path == "/control/objects":
                return self.reply(200, {"resourceVersion": st.rv, "items": [
                    o for objs in st.objects.values() for _, o in sorted(objs.items())]})
        self.reply(404, {"error": "unknown path"})

    def do_POST(self):
        st = self.server.state
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if n > 64 << 20:
                return self.reply(413, {"error": "too large"})
            raw = self.rfile.read(n) if n else b"{}"
            body = json.loads(raw or b"{}")
        except (ValueError, json.JSONDecodeError) as e:
            return self.reply(400, {"error": "bad JSON: %s" % e})
        try:
            return self.reply(200, self.dispatch(st, self.path, body))
        except BadRequest as e:
            return self.reply(e.code, {"error": e.message})
        except (KeyError, TypeError, ValueError) as e:
            return self.reply(400, {"error": "bad request: %r" % (e,)})

    def dispatch(self, st, path, body):
        if path in ("/control/add", "/control/update", "/control/delete"):
            objs = load_objects(body)
            with st.cond:
                for o in objs:  # validate all first: all or nothing
                    kind, key = st.key_of(o)
                    exists = key in st.objects[kind]
                    if path == "/control/add" and exists:
                        raise BadRequest(409, "%s %s/%s already exists" % (kind, *key))
                    if path != "/control/add" and not exists:
                        raise BadRequest(404, "%s %s/%s not found" % (kind, *key))
                rv = st.rv
                for o in objs:
                    if path == "/control/delete":
                        rv = st.delete(o)
                    else:
                        rv = st.add(o, update=(path == "/control/update"))
            return {"resourceVersion": str(rv), "count": len(objs)}
        if path == "/control/inject":
            kind, raw = body["kind"], body["raw"]
            if kind not in KINDS or not isinstance(raw, str):
                raise BadRequest(400, "need a known kind and a raw string")
            with st.cond:
                st.rv += 1
                st._record(kind, "RAW", raw)
                return {"resourceVersion": str(st.rv)}
        if path == "/control/compact":
            with st.cond:
                c = st.compact(body.get("resourceVersion"))
                return {"compacted": c, "resourceVersion": st.rv}
        if path == "/control/fail":
            rule = {"status": int(body.get("status", 500)), "count": int(body.get("count", 1)),
                    "match": body.get("match"), "watch": body.get("watch"),
                    "retry_after": body.get("retry_after")}
            with st.cond:
                st.failures.append(rule)
            return {"ok": True}
        if path == "/control/throttle":
            with st.cond:
                st.throttle = {"count": int(body.get("count", 1)),
                               "retry_after": int(body.get("retry_after", 1))}
            return {"ok": True}
        if path == "/control/clear-failures":
            with st.cond:
                st.failures = []
                st.throttle = {"count": 0, "retry_after": 1}
            return {"ok": True}
        if path == "/control/rotate-token":
            tok = body.get("token") or secrets.token_urlsafe(32)
            with st.cond:
                st.token = tok
                st.stats["token_rotations"] += 1
                if body.get("drop_watches"):
                    st.drop_gen += 1
                    st.drop_partial = False
                st.cond.notify_all()
            if body.get("write_file", True) and st.token_file:
                write_token(st.token_file, tok)
            return {"token": tok}
        if path == "/control/drop-watches":
            with st.cond:
                if body.get("kind"):
                    st.kind_drops[body["kind"]] += 1
                else:
                    st.drop_gen += 1
                st.drop_partial = bool(body.get("partial", False))
                n = st.open_watches
                st.cond.notify_all()
            return {"dropped": n}
        if path == "/control/stall":
            with st.cond:
                st.stall = bool(body.get("enabled", True))
                st.cond.notify_all()
            return {"ok": True}
        if path == "/control/drip":
            with st.cond:
                st.drip = (int(body.get("bytes", 0)), float(body.get("delay_ms", 0)) / 1000.0)
            return {"ok": True}
        if path == "/control/hostile":
            with st.cond:
                st.hostile = dict(body) if body.get("mode") else None
            return {"ok": True}
        if path == "/control/watch-list":
            mode = body.get("mode", "serve")
            if mode not in ("serve", "refuse", "refuse400", "ignore"):
                raise BadRequest(400, "unknown watch-list mode")
            with st.cond:
                st.watch_list = {"mode": mode, "expire": int(body.get("expire", 0)),
                                 "endless": bool(body.get("endless", False))}
            return {"ok": True}
        if path == "/control/restart":
            # As an API server restart: every watch cut, connections reset
            # for down_s, and the new watch cache starts at the current
            # resourceVersion (older ones get 410 Expired).
            with st.cond:
                st.down_until = time.monotonic() + float(body.get("down_s", 2))
                st.drop_gen += 1
                st.drop_partial = False
                st.compact(st.rv)
                st.stats["restarts"] += 1
                st.cond.notify_all()
                return {"resourceVersion": st.rv, "open_watches": st.open_watches}
        if path == "/control/keepalive":
            with st.cond:
                st.keepalive = float(body.get("interval", 0))
                st.cond.notify_all()
            return {"ok": True}
        if path == "/control/bookmarks":
            with st.cond:
                st.bookmark_interval = float(body["interval"])
                st.cond.notify_all()
            return {"ok": True}
        if path == "/control/reset-stats":
            with st.cond:
                st.stats.clear()
                st.requests.clear()
            return {"ok": True}
        raise BadRequest(404, "unknown control path")


def write_token(path, tok):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".token.")
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    os.rename(tmp, path)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description="Kubernetes API server stand-in for tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--cert-dir", required=True)
    ap.add_argument("--fixture")
    ap.add_argument("--bookmark-interval", type=float, default=5.0)
    ap.add_argument("--watch-timeout", type=float, default=1800.0,
                    help="watch duration when the client sends no timeoutSeconds")
    ap.add_argument("--rv0-ignores-limit", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    VERBOSE = a.verbose

    gen_certs(a.cert_dir)
    if os.path.exists(a.token_file):
        with open(a.token_file) as f:
            token = f.read().strip()
        if not token:
            sys.exit("fake_apiserver: empty token file %s" % a.token_file)
    else:
        token = secrets.token_urlsafe(32)
        write_token(a.token_file, token)

    st = State(token, a.token_file, a.bookmark_interval, a.watch_timeout, a.rv0_ignores_limit)
    if a.fixture:
        with open(a.fixture) as f:
            doc = json.load(f)
        with st.cond:
            for o in load_objects(doc):
                if isinstance(o, dict) and o.get("kind") in KINDS:
                    st.add(o, update=st.key_of(o)[1] in st.objects[o["kind"]])
                else:
                    sys.stderr.write("fake_apiserver: fixture object of kind %r ignored\n"
                                     % (o.get("kind") if isinstance(o, dict) else o,))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(a.cert_dir, "server.crt"),
                        os.path.join(a.cert_dir, "server.key"))
    ctx.load_verify_locations(os.path.join(a.cert_dir, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL

    api = TLSServer((a.host, a.port), ApiHandler, ctx, st)
    ctl = ControlServer(("127.0.0.1", a.control_port), ControlHandler, st)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                daemon=True) for s in (api, ctl)]
    for t in threads:
        t.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps({"ready": True, "port": api.server_address[1],
                      "control_port": ctl.server_address[1],
                      "ca": os.path.join(a.cert_dir, "ca.crt"),
                      "token_file": a.token_file, "cert_dir": a.cert_dir}), flush=True)
    while not stop.wait(0.5):
        pass
    with st.cond:
        st.stopping = True
        st.cond.notify_all()
    api.shutdown()
    ctl.shutdown()
    api.server_close()
    ctl.server_close()


if __name__ == "__main__":
    main()
