#!/usr/bin/env python3
"""warm_e2e.py - end-to-end tests of the warm start: a restarted nodedns answers
cluster names from the file its predecessor wrote (--run-dir/cluster.warm)
until its own watch has synced.

Run (from the repository root):
    NODEDNS_BIN=build/nodedns python3 tests/integration/warm_e2e.py [filter ...]
Output as cluster_e2e.py (whose stand-in and helpers these tests use), closing
line "warm-e2e: N passed, N failed".

Decisions these tests pin down:
 - /ready stays 503 while the file is served: it means "the live data has
   synced once"; nodedns_cluster_source{source="file"} says what is served.
 - The file is written within 5 s of a change (coalesced) and on SIGTERM; a
   SIGKILL loses at most the last 5 s of changes.
 - An unusable file (corrupt, too old, another API server) is ignored with a
   warning naming the reason; the start goes on as without a file.
"""

import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

import cluster_e2e as ce  # noqa: E402
import harness  # noqa: E402
from lib.check import CheckFailed, check  # noqa: E402

TESTS = []
test = harness.collector(TESTS)

SAVE_DELAY_S = 5.0  # WARM_START_SAVE_DELAY_MS
KUBERNETES = ce.fq("kubernetes.default.svc")
LATE = ce.fq("late.e2e.svc")


def run_dir():
    d = tempfile.mkdtemp(prefix="nodedns-warm-")
    ce.CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def warm_file(d):
    return os.path.join(d, "cluster.warm")


def source(nd):
    mt = ce.metrics(nd)
    for s in ("none", "file", "live"):
        if mt.sum("nodedns_cluster_source", source=s) == 1:
            return s
    raise CheckFailed("no nodedns_cluster_source is 1")


def first_instance(api, kargs, d):
    """A nodedns that syncs, sees one more Service, and is left running."""
    nd = ce.nodedns(api, kube_args=kargs, extra=["--run-dir", d])
    check(source(nd) == "live", "synced, nodedns_cluster_source %s, want live" % source(nd))
    api.add(ce.service("e2e", "late", ["10.96.30.1"]))
    ce.wait_for("late service", ce.is_answer(nd, LATE, "A", ["10.96.30.1"]), 3, nd)
    return nd


def answers_from_file(nd, what):
    """Cluster names answered at once, /ready still 503, the file served."""
    ce.expect(nd, KUBERNETES, "A", want=["10.96.0.1"], what=what + ": " + KUBERNETES)
    ce.expect(nd, LATE, "A", want=["10.96.30.1"], what=what + ": " + LATE)
    ce.expect(nd, ce.fq("web.e2e.svc"), "A", want=["10.244.2.10", "10.244.2.11"],
              what=what + ": headless web")
    ce.expect(nd, ce.fq("nope.e2e.svc"), "A", rcode="NXDOMAIN", what=what + ": NXDOMAIN")
    check(ce.ready_status(nd) == 503, "%s: /ready %s while the file is served, want 503"
          % (what, ce.ready_status(nd)))
    check(source(nd) == "file", "%s: nodedns_cluster_source %s, want file" % (what, source(nd)))
    age = ce.metrics(nd).sum("nodedns_cluster_warm_start_age_seconds")
    check(0 <= age < 60, "%s: warm-start age %s s" % (what, age))
    check("loaded " in nd.stderr_text(), "%s: no 'loaded' line in the log\n%s"
          % (what, nd.stderr_tail(15)))


@test
def restart_while_api_down():
    """Stop (SIGTERM saves), the API server goes away, restart: the cluster
    names are still answered, from the file."""
    api = ce.start_api()
    gate = ce.Gate(api.port)
    gate.open()
    kargs = api.kube_args(port=gate.port)
    d = run_dir()
    nd1 = first_instance(api, kargs, d)
    nd1.stop()
    check(os.path.exists(warm_file(d)), "no %s after SIGTERM" % warm_file(d))
    gate.close()
    nd2 = ce.nodedns(api, kube_args=kargs, extra=["--run-dir", d], wait_synced=False)
    answers_from_file(nd2, "API down")
    # forwarding is not affected
    m = ce.q(nd2, "www.example.test")
    check(m.rcode_name == "NOERROR", "www.example.test: %s" % m.rcode_name)
    # the file is never rewritten from itself
    st = os.stat(warm_file(d))
    nd2.stop()
    check(os.stat(warm_file(d)).st_mtime_ns == st.st_mtime_ns,
          "the file was rewritten by an instance that never synced")


@test
def rolling_update_answers_before_list():
    """The first instance is killed (no save on the way out: the timer's
    save within 5 s of the change must have happened); the new one answers
    cluster names while its own list is still dripping in, then goes live."""
    api = ce.start_api()
    d = run_dir()
    nd1 = first_instance(api, api.kube_args(), d)
    time.sleep(SAVE_DELAY_S + 1.5)
    check(ce.metrics(nd1).sum("nodedns_warm_start_saves_total") >= 1,
          "no save within %.0f s of a change" % (SAVE_DELAY_S + 1.5))
    nd1.proc.kill()
    nd1.proc.wait(5)
    nd1.stopped = True
    # a list of this cluster now takes seconds
    api.ctl("drip", {"bytes": 64, "delay_ms": 60})
    t0 = time.monotonic()
    nd2 = ce.nodedns(api, extra=["--run-dir", d], wait_synced=False)
    answers_from_file(nd2, "list in progress")
    t_answer = time.monotonic() - t0
    api.ctl("drip", {"bytes": 0, "delay_ms": 0})
    t_ready = ce.wait_ready(nd2, 30) + t_answer
    print("# answered %.2f s after the start, live data %.2f s after" % (t_answer, t_ready))
    check(t_answer < t_ready, "answered only after the list (%.2f s, ready %.2f s)"
          % (t_answer, t_ready))
    ce.wait_for("source live", lambda: source(nd2) == "live", 2, nd2)
    # the live data replaced the file's: a change made meanwhile shows
    api.delete(ce.service("e2e", "late", ["10.96.30.1"]))
    ce.wait_for("late deleted", ce.is_rcode(nd2, LATE, "A", "NXDOMAIN"), 3, nd2)
    check(ce.metrics(nd2).sum("nodedns_cluster_warm_start_age_seconds") == 0,
          "warm-start age not 0 with the live data")
    nd2.stop()


def _ignored(nd, reason):
    """Started, no cluster data, and a warning that says @reason."""
    m = ce.q(nd, KUBERNETES)
    check(m.rcode_name == "SERVFAIL", "file ignored: %s answered %s, want SERVFAIL"
          % (KUBERNETES, m.rcode_name))
    check(source(nd) == "none", "file ignored: nodedns_cluster_source %s" % source(nd))
    err = nd.stderr_text()
    check(any("warn" in line.lower() and "ignored" in line and reason in line
              for line in err.splitlines()),
          "no warning saying the file was ignored (%s):\n%s" % (reason, nd.stderr_tail(15)))
    nd.stop()


@test
def unusable_file_ignored():
    """Corrupt, too old, another API server: ignored with a warning, the
    process serves (forwarding works), nothing is answered from the file."""
    api = ce.start_api()
    gate = ce.Gate(api.port)
    gate.open()
    kargs = api.kube_args(port=gate.port)
    d = run_dir()
    first_instance(api, kargs, d).stop()
    gate.close()
    with open(warm_file(d), "rb") as f:
        good = f.read()

    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x10
    with open(warm_file(d), "wb") as f:
        f.write(bad)
    _ignored(ce.nodedns(api, kube_args=kargs, extra=["--run-dir", d], wait_synced=False),
             "checksum mismatch")
    with open(warm_file(d), "wb") as f:
        f.write(good[:len(good) - 7])
    _ignored(ce.nodedns(api, kube_args=kargs, extra=["--run-dir", d], wait_synced=False),
             "truncated")
    with open(warm_file(d), "wb") as f:
        f.write(good)
    time.sleep(2.1)
    _ignored(ce.nodedns(api, kube_args=kargs, wait_synced=False,
                        extra=["--run-dir", d, "--warm-start-max-age", "1"]), "old")
    _ignored(ce.nodedns(api, kube_args=api.kube_args(port=gate.port, ca=api.other_ca),
                        extra=["--run-dir", d], wait_synced=False), "API server")
    # and the good file is still good
    nd = ce.nodedns(api, kube_args=kargs, extra=["--run-dir", d], wait_synced=False)
    ce.expect(nd, KUBERNETES, "A", want=["10.96.0.1"], what="the intact file")
    nd.stop()


def main(argv):
    return harness.run_suite(argv, TESTS, "warm-e2e", "warm start e2e", ce.TEST_TIMEOUT_S,
                             "warm_e2e.py", frames=3, after_test=ce._after_test,
                             teardown=lambda: harness.cleanup_nsds(ce._nsd))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
