"""harness.py - processes and helpers for the nodedns integration tests.

 - Nsd: a real NSD authoritative server in the foreground, own process group
 - Relay: a Python TCP/UDP upstream in front of NSD that counts what it gets
   and can delay chosen names (to prove pipelining and coalescing)
 - Blackhole: an upstream that accepts TCP and never answers
 - Nodedns: the server under test (NODEDNS_BIN), stderr to a file
 - dig/kdig/drill wrappers, tiny HTTP GET, ss helper, the suite runner

Ports, process stopping, DNS wire format and /metrics parsing come from
tests/lib (net, procs, dnswire, metrics).
"""

import http.client
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
from lib import dnswire, procs  # noqa: E402
from lib.check import CheckFailed, Skip, check, tail  # noqa: E402,F401 - the suites' names
from lib.metrics import Metrics  # noqa: E402
from lib.net import LOCAL, free_port, wait_port_free  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ZONES = os.path.join(HERE, "zones")

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer", "ERROR: ThreadSanitizer",
    "WARNING: ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL",
)


# ------------------------------------------------------------------ ss

def tcp_conns_to(port, pid=None):
    """Established TCP connections to 127.0.0.1:@port (optionally only those
    owned by @pid), as a list of ss lines."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", "( dport = :%d )" % port],
        capture_output=True, text=True, timeout=5)
    if out.returncode != 0:
        raise RuntimeError("ss failed: %s" % out.stderr.strip())
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    if pid is not None:
        lines = [l for l in lines if ("pid=%d," % pid) in l]
    return lines


# ------------------------------------------------------------------ NSD

NSD_CONF = """\
server:
    ip-address: 127.0.0.1
    port: {port}
    do-ip4: yes
    do-ip6: no
    server-count: 1
    reuseport: no
    username: ""
    chroot: ""
    zonesdir: "{dir}"
    database: ""
    zonelistfile: "{dir}/zone.list"
    xfrdfile: "{dir}/xfrd.state"
    xfrdir: "{dir}"
    pidfile: "{dir}/nsd.pid"
    logfile: "{dir}/nsd.log"
    verbosity: 1
    hide-version: no
    tcp-count: 200
    tcp-timeout: 120
    round-robin: no
    minimal-responses: no
    refuse-any: no

remote-control:
    control-enable: no

{zones}
"""


class Nsd:
    """An NSD instance serving @zones (list of (zone name, zone file)) on a
    fresh port. start() waits until it answers."""

    def __init__(self, zones, name="nsd"):
        self.zones = zones
        self.name = name
        self.proc = None
        self.port = None
        self.dir = None

    @property
    def addr(self):
        return (LOCAL, self.port)

    @property
    def addr_text(self):
        return "%s:%d" % (LOCAL, self.port)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if self.running():
            return
        self.dir = tempfile.mkdtemp(prefix="nodedns-it-%s-" % self.name)
        self.port = free_port()
        zcfg = []
        for zone, zfile in self.zones:
            shutil.copy(os.path.join(ZONES, zfile), os.path.join(self.dir, zfile))
            zcfg.append('zone:\n    name: "%s"\n    zonefile: "%s"\n' % (zone, zfile))
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as f:
            f.write(NSD_CONF.format(port=self.port, dir=self.dir, zones="\n".join(zcfg)))
        chk = subprocess.run(["nsd-checkconf", conf], capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError("nsd-checkconf: %s%s" % (chk.stdout, chk.stderr))
        self.stderr_path = os.path.join(self.dir, "nsd.stderr")
        self.proc = subprocess.Popen(
            ["nsd", "-d", "-c", conf], stdin=subprocess.DEVNULL,
            stdout=open(self.stderr_path, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        probe_zone = self.zones[0][0]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nsd exited with %s:\n%s\n%s" % (
                    self.proc.returncode, tail(self.stderr_path),
                    tail(os.path.join(self.dir, "nsd.log"))))
            try:
                m = dnswire.query(self.addr, probe_zone, "SOA", timeout=0.3)
                if m.rcode == 0 and m.answer:
                    return
            except (TimeoutError, OSError, dnswire.DNSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nsd did not answer for %s on port %d" % (probe_zone, self.port))

    def stop(self):
        """Stop NSD and all its children (its own process group)."""
        if self.proc is None:
            return
        # main process and any child still holding the port
        procs.stop(self.proc, grace=5.0)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if not wait_port_free(self.port, 3.0):
            raise RuntimeError("nsd port %d still in use after stop" % self.port)

    def cleanup(self):
        try:
            self.stop()
        finally:
            if self.dir:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None


def shared_nsd(pool, key, zones, name):
    """The NSD pool[key] serving @zones, made on first use and (re)started when
    a previous test stopped it. Shared by the tests of one suite run."""
    n = pool.get(key)
    if n is None:
        n = pool[key] = Nsd(zones, name)
    if not n.running():
        n.start()
    return n


def cleanup_nsds(pool):
    """Stop every NSD of @pool (a dict made by shared_nsd) and remove its files."""
    for n in pool.values():
        try:
            n.cleanup()
        except Exception as e:  # pragma: no cover
            print("# nsd cleanup: %s" % e)


# ------------------------------------------------------------------ relay upstream

class Relay:
    """An upstream on a fresh port in front of @target (an Nsd address).

    TCP: reads pipelined queries, forwards each to @target over its own TCP
    connection (in a thread, after delays[lowercased qname] seconds when set)
    and writes each reply as soon as it is ready (so replies may leave out of
    order). UDP: counts datagrams and, when udp_answer is set, forwards them.
    Counts queries per lower-cased qname in .tcp_queries / .udp_queries."""

    def __init__(self, target, delays=None, udp_answer=False):
        self.target = target
        self.delays = {k.lower().rstrip("."): v for k, v in (delays or {}).items()}
        self.udp_answer = udp_answer
        self.lock = threading.Lock()
        self.tcp_queries = {}
        self.udp_queries = {}
        self.tcp_conns = 0
        self.port = free_port()
        self.tsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tsock.bind((LOCAL, self.port))
        self.tsock.listen(64)
        self.usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.usock.bind((LOCAL, self.port))
        self.stopping = False
        self.conns = []
        self.threads = [threading.Thread(target=self._accept, daemon=True),
                        threading.Thread(target=self._udp, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def addr_text(self):
        return "%s:%d" % (LOCAL, self.port)

    def total_tcp(self, name=None):
        with self.lock:
            if name is None:
                return sum(self.tcp_queries.values())
            return self.tcp_queries.get(name.lower().rstrip("."), 0)

    def total_udp(self):
        with self.lock:
            return sum(self.udp_queries.values())

    @staticmethod
    def _qname(wire):
        try:
            return dnswire.decode_name(wire, 12)[0].lower().rstrip(".")
        except Exception:
            return "?"

    def _accept(self):
        while not self.stopping:
            try:
                r, _, _ = select.select([self.tsock], [], [], 0.2)
                if not r:
                    continue
                c, _ = self.tsock.accept()
            except OSError:
                return
            with self.lock:
                self.tcp_conns += 1
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        wlock = threading.Lock()
        while not self.stopping:
            try:
                q = dnswire.tcp_read_msg(c, time.monotonic() + 300)
            except (ConnectionError, TimeoutError, OSError):
                return
            name = self._qname(q)
            with self.lock:
                self.tcp_queries[name] = self.tcp_queries.get(name, 0) + 1
            threading.Thread(target=self._answer, args=(c, wlock, q, name),
                             daemon=True).start()

    def _answer(self, c, wlock, q, name):
        d = self.delays.get(name)
        if d:
            time.sleep(d)
        try:
            r = dnswire.tcp_exchange(self.target, q, 3.0)
        except Exception:
            return
        with wlock:
            try:
                c.sendall(struct.pack("!H", len(r)) + r)
            except OSError:
                pass

    def _udp(self):
        while not self.stopping:
            try:
                r, _, _ = select.select([self.usock], [], [], 0.2)
                if not r:
                    continue
                data, src = self.usock.recvfrom(65535)
            except OSError:
                return
            name = self._qname(data)
            with self.lock:
                self.udp_queries[name] = self.udp_queries.get(name, 0) + 1
            if self.udp_answer:
                reply = dnswire.udp_exchange(self.target, data, 2.0)
                if reply:
                    self.usock.sendto(reply, src)

    def close(self):
        self.stopping = True
        for t in self.threads:
            t.join(1)
        self.tsock.close()
        self.usock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


class Blackhole:
    """Accepts TCP connections and reads, never answers; UDP: swallows."""

    def __init__(self):
        self.port = free_port()
        self.tsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tsock.bind((LOCAL, self.port))
        self.tsock.listen(64)
        self.usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.usock.bind((LOCAL, self.port))
        self.conns = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def addr_text(self):
        return "%s:%d" % (LOCAL, self.port)

    def _run(self):
        while not self.stopping:
            try:
                socks = [self.tsock, self.usock] + self.conns
                r, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                return
            for s in r:
                try:
                    if s is self.tsock:
                        self.conns.append(s.accept()[0])
                    elif s is self.usock:
                        s.recvfrom(65535)
                    elif not s.recv(65535):
                        self.conns.remove(s)
                        s.close()
                except OSError:
                    pass

    def close(self):
        self.stopping = True
        self.thread.join(1)
        for s in [self.tsock, self.usock] + self.conns:
            s.close()


# ------------------------------------------------------------------ nodedns

def nodedns_bin():
    b = os.environ.get("NODEDNS_BIN", "build/nodedns")
    if not os.path.isabs(b) and not os.path.exists(b):
        b = os.path.join(REPO, b)
    return os.path.abspath(b)


def sanitizer_env():
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


def run_nodedns(args, timeout=5.0):
    """Run nodedns to completion (for flag errors). (rc, stdout, stderr)."""
    p = subprocess.run([nodedns_bin()] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=sanitizer_env(), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


ACTIVE = []   # Nodedns instances started by the current test (for failure reports)


class Nodedns:
    """The server under test on fresh ports. Use as a context manager: on a
    clean exit of the block it stops the server and checks the graceful exit."""

    def __init__(self, upstream=None, extra=(), threads=1, timeout_ms=500,
                 metrics=True, health=True, wait=True, log_level="debug"):
        self.upstream = upstream
        self.extra = list(extra)
        self.threads = threads
        self.timeout_ms = timeout_ms
        self.want_metrics = metrics
        self.want_health = health
        self.log_level = log_level
        self.dir = tempfile.mkdtemp(prefix="nodedns-it-srv-")
        self._pick_ports()
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.proc = None
        self.stopped = False
        self.wait = wait

    def _pick_ports(self):
        self.port = free_port()
        self.metrics_port = free_port() if self.want_metrics else None
        self.health_port = free_port() if self.want_health else None
        self.args = ["--listen", "%s:%d" % (LOCAL, self.port)]
        if self.upstream:
            ups = self.upstream if isinstance(self.upstream, (list, tuple)) else [self.upstream]
            for u in ups:
                self.args += ["--upstream", u]
        self.args += ["--threads", str(self.threads),
                      "--upstream-timeout", str(self.timeout_ms)]
        if self.log_level:
            self.args += ["--log-level", self.log_level]
        self.args += ["--metrics", ("%s:%d" % (LOCAL, self.metrics_port)
                                    if self.want_metrics else "none"),
                      "--health", ("%s:%d" % (LOCAL, self.health_port)
                                   if self.want_health else "none")]
        if not any(a.startswith("--run-dir") for a in self.extra):
            # the warm-start file: per server, never the host's /run/nodedns
            self.args += ["--run-dir", os.path.join(self.dir, "run")]
        self.args += self.extra

    @property
    def addr(self):
        return (LOCAL, self.port)

    @property
    def pid(self):
        return self.proc.pid

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.stop()
        else:
            self.kill()
        return False

    def cmdline(self):
        return " ".join([nodedns_bin()] + self.args)

    def start(self):
        b = nodedns_bin()
        if not os.path.exists(b):
            raise CheckFailed("NODEDNS_BIN %s does not exist (build it first)" % b)
        if self not in ACTIVE:
            ACTIVE.append(self)
        for attempt in range(3):
            self.proc = subprocess.Popen([b] + self.args, stdin=subprocess.DEVNULL,
                                         stdout=open(os.path.join(self.dir, "stdout"), "wb"),
                                         stderr=open(self.stderr_path, "wb"),
                                         env=sanitizer_env(), start_new_session=True)
            if not self.wait:
                return
            try:
                self.wait_ready()
                return
            except CheckFailed:
                # Another program may have taken one of our ports between
                # free_port() and the bind: pick new ones and try again.
                rc = self.proc.poll()
                if (rc == 1 and attempt < 2 and "in use" in self.stderr_text().lower()
                        and not self.sanitizer_report()):
                    self._pick_ports()
                    continue
                raise

    def wait_ready(self, timeout=5.0):
        """Poll with UDP queries (one socket, a new query every 0.2 s) until
        any reply arrives."""
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise CheckFailed("nodedns exited early with %s\n  cmd: %s\n%s" % (
                        self.describe_rc(self.proc.returncode), self.cmdline(),
                        self.stderr_tail()))
                try:
                    sock.sendto(dnswire.build_query("startup-probe.example.test", "A"),
                                self.addr)
                    if dnswire.udp_recv_any(sock, 0.2) is not None:
                        return
                except OSError:
                    time.sleep(0.2)
        finally:
            sock.close()
        raise CheckFailed("nodedns did not answer a UDP query on port %d within %.0fs\n"
                          "  cmd: %s\n%s" % (self.port, timeout, self.cmdline(),
                                             self.stderr_tail()))

    describe_rc = staticmethod(procs.describe_rc)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=40):
        return "  --- nodedns stderr (last %d lines) ---\n%s" % (n, tail(self.stderr_path, n))

    def sanitizer_report(self):
        text = self.stderr_text()
        for m in SANITIZER_MARKERS:
            if m in text:
                return m
        return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self, what=""):
        if not self.alive():
            raise CheckFailed("nodedns died%s: %s\n%s" % (
                (" " + what) if what else "", self.describe_rc(self.proc.returncode),
                self.stderr_tail()))
        rep = self.sanitizer_report()
        if rep:
            raise CheckFailed("sanitizer report (%s) in nodedns stderr\n%s" % (
                rep, self.stderr_tail(80)))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        """SIGTERM; the exit must be code 0 within 3 s with no sanitizer report."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is not None:
            raise CheckFailed("nodedns was already dead before SIGTERM: %s\n%s" % (
                self.describe_rc(self.proc.returncode), self.stderr_tail()))
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(3.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise CheckFailed("nodedns did not exit within 3 s of SIGTERM\n%s"
                              % self.stderr_tail())
        rep = self.sanitizer_report()
        if rep:
            raise CheckFailed("sanitizer report (%s) in nodedns stderr\n%s"
                              % (rep, self.stderr_tail(80)))
        if rc != 0:
            raise CheckFailed("nodedns stopped with %s after SIGTERM (want exit code 0)\n%s"
                              % (self.describe_rc(rc), self.stderr_tail()))
        shutil.rmtree(self.dir, ignore_errors=True)

    def remove_files(self):
        """Delete the log directory unless NODEDNS_KEEP_LOGS is set."""
        if not os.environ.get("NODEDNS_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self):
        """Cleanup after a failed test: SIGTERM, then SIGKILL. Keeps the log
        (the runner prints its tail, then calls remove_files())."""
        if self.stopped or self.proc is None:
            return
        self.stopped = True
        procs.stop(self.proc, grace=3.0, group=False)

    # --- DNS helpers bound to this server
    def q(self, name, qtype="A", **kw):
        return dnswire.query(self.addr, name, qtype, **kw)

    # --- HTTP helpers
    def http_get(self, path, port=None):
        return http_get(LOCAL, port or self.metrics_port, path)

    def metrics(self):
        st, body = self.http_get("/metrics")
        check(st == 200, "GET /metrics returned HTTP %d" % st)
        return Metrics(body)


# ------------------------------------------------------------------ HTTP / metrics

def http_get(host, port, path, timeout=3.0):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


# ------------------------------------------------------------------ real clients

def _run(cmd, timeout=8):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


class ClientAnswer:
    def __init__(self, tool, out):
        self.tool = tool
        self.out = out
        self.status = None
        self.flags = set()
        self.answer = []    # [(name, ttl, type, rdata)]
        self.authority = []

    def data(self, rtype):
        return sorted(r[3] for r in self.answer if r[2] == rtype)

    def __repr__(self):
        return "<%s %s flags=%s answer=%s>" % (self.tool, self.status, sorted(self.flags),
                                             self.answer)


def _parse_presentation(out, tool):
    """Parse dig/kdig/drill text output."""
    a = ClientAnswer(tool, out)
    m = re.search(r"->>HEADER<<-\s*opcode:\s*\w+[,;]\s*(?:status|rcode):\s*(\w+)", out)
    if m:
        a.status = m.group(1).upper()
    m = re.search(r"^;;\s*[Ff]lags:\s*([a-z ]*?)\s*;", out, re.M)
    if m:
        a.flags = set(m.group(1).split())
    section = None
    for line in out.splitlines():
        s = line.strip()
        low = s.lower()
        if low.startswith(";; answer section") or low.startswith(";;answer section"):
            section = a.answer
            continue
        if low.startswith(";; authority section") or low.startswith(";;authority section"):
            section = a.authority
            continue
        if s.startswith(";;") or not s:
            if s.startswith(";;") and section is not None and "section" in low:
                section = None
            if not s and tool != "drill":
                section = None
            continue
        if s.startswith(";"):
            continue
        if section is None:
            continue
        parts = s.split(None, 4)
        if len(parts) == 5 and parts[1].isdigit():
            section.append((parts[0].rstrip(".").lower(), int(parts[1]),
                            parts[3].upper(), parts[4]))
    return a


def dig(addr, name, qtype="A", *opts):
    cmd = ["dig", "@%s" % addr[0], "-p", str(addr[1]), name, qtype,
           "+tries=1", "+time=2"] + list(opts)
    rc, out = _run(cmd)
    a = _parse_presentation(out, "dig")
    a.rc = rc
    return a


def kdig(addr, name, qtype="A", *opts):
    cmd = ["kdig", "@%s" % addr[0], "-p", str(addr[1]), name, qtype,
           "+retry=0", "+time=2"] + list(opts)
    rc, out = _run(cmd)
    a = _parse_presentation(out, "kdig")
    a.rc = rc
    return a


def drill(addr, name, qtype="A", tcp=False):
    cmd = ["drill", "-p", str(addr[1])] + (["-t"] if tcp else []) + \
          [name, "@%s" % addr[0], qtype]
    rc, out = _run(cmd)
    a = _parse_presentation(out, "drill")
    a.rc = rc
    return a


# ------------------------------------------------------------------ suite runner

def collector(tests):
    """A decorator that registers a test function: appends it to @tests."""
    def test(fn):
        tests.append(fn)
        return fn
    return test


class TestTimeout(Exception):
    pass


def report_processes():
    """State, command line and stderr tail of each nodedns the current test
    started (for a failure report); "" when there is none."""
    out = []
    for nd in ACTIVE:
        if nd.proc is None:
            continue
        state = nd.describe_rc(nd.proc.poll())
        out.append("  nodedns pid %d (%s): %s" % (nd.proc.pid, state, nd.cmdline()))
        out.append(nd.stderr_tail(25 if not nd.sanitizer_report() else 80))
        if os.environ.get("NODEDNS_KEEP_LOGS"):
            out.append("  (log kept: %s)" % nd.stderr_path)
    return "\n".join(out)


def _failure_reason(e, script, frames):
    if isinstance(e, (CheckFailed, TestTimeout)):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = ["%s:%d" % (os.path.basename(f.filename), f.lineno) for f in tb
             if os.path.basename(f.filename) == script]
    return "%s: %s (at %s)" % (type(e).__name__, e, ", ".join(where[-frames:]))


def run_suite(argv, tests, suite, title, timeout_s, script, frames=2,
              setup=None, after_test=None, teardown=None):
    """Run a suite's tests and return the exit code (0: none failed).

    argv: "--list" prints the test names; other words not starting with "-"
    select the tests whose name contains one of them (all when there is none).
    Prints "# nodedns <title>: <binary>, N tests", a line per test
    ("ok - name (1.2s)", "FAIL - name: reason" with details, "skip - name: why")
    and last "<suite>: N passed, N failed[, N skipped]", the line CI reads.
    Each test runs under a SIGALRM timeout of timeout_s; an unexpected
    exception is located by its last @frames frames in the file @script.
    setup() runs before the first test and returns an error text or None;
    after_test() runs after each test, once its nodedns instances are stopped;
    teardown() runs at the end (also after a failed setup)."""
    if "--list" in argv:
        for t in tests:
            print(t.__name__)
        return 0
    filters = [a for a in argv if not a.startswith("-")]
    selected = [t for t in tests if not filters or any(f in t.__name__ for f in filters)]
    binary = nodedns_bin()
    print("# nodedns %s: %s, %d tests" % (title, binary, len(selected)))
    if not selected:
        print("%s: 0 passed, 0 failed" % suite)
        return 1 if filters else 0
    if not os.path.exists(binary):
        setup_error = "NODEDNS_BIN %s does not exist (build it first)" % binary
    else:
        setup_error = setup() if setup else None
    if setup_error:
        print("FAIL - setup: %s" % setup_error)
        print("%s: 0 passed, 1 failed" % suite)
        if teardown:
            teardown()
        return 1

    def alarm(signum, frame):
        raise TestTimeout("test did not finish within %d s" % timeout_s)

    passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, alarm)
    t_start = time.monotonic()
    try:
        for t in selected:
            name = t.__name__
            ACTIVE.clear()
            t0 = time.monotonic()
            signal.alarm(timeout_s)
            try:
                t()
                signal.alarm(0)
                print("ok - %s (%.1fs)" % (name, time.monotonic() - t0))
                passed += 1
            except Skip as e:
                signal.alarm(0)
                print("skip - %s: %s" % (name, e))
                skipped += 1
            except BaseException as e:
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                first, _, rest = _failure_reason(e, script, frames).partition("\n")
                print("FAIL - %s: %s" % (name, first))
                if rest:
                    print(rest)
                procs = report_processes()
                if procs and "--- nodedns stderr" not in rest:
                    print(procs)
                failed += 1
            finally:
                for nd in ACTIVE:
                    try:
                        nd.kill()
                    except Exception:
                        pass
                    nd.remove_files()
                if after_test:
                    after_test()
            sys.stdout.flush()
    finally:
        signal.alarm(0)
        if teardown:
            teardown()
    print("# %.1f s" % (time.monotonic() - t_start))
    line = "%s: %d passed, %d failed" % (suite, passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 1 if failed else 0
