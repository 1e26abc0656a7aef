#!/usr/bin/env python3
"""tests/deploy/check_monitoring.py - deploy/monitoring against a running nodedns.

Checks that the Grafana dashboard JSON parses, that `promtool check rules`
(Debian's prometheus package; scripts/deps.sh test installs it) accepts the
PrometheusRule's groups, and that every nodedns_* metric the dashboard and
the rules name is served by nodedns's /metrics. Names of other exporters
(kube-state-metrics, cAdvisor) are listed, not checked.

nodedns runs as the DaemonSet runs it, a supervisor with node setup, so that
the supervisor's series (nodedns_node_setup_*, nodedns_resolver_*) are there
too. As root that happens in a network namespace of its own (`unshare -n`:
a dummy interface and iptables rules that vanish with it); without root,
nodedns runs without node setup and the supervisor's series count as
failures. It also watches an API server that is not there, so that the
nodedns_watch_* series exist.

Prints "monitoring: N passed, N failed"; exits 1 on any failure.
The binary is $NODEDNS_BIN, else build/nodedns.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MON = os.path.join(ROOT, "deploy", "monitoring")
BIN = os.environ.get("NODEDNS_BIN", os.path.join(ROOT, "build", "nodedns"))
LISTEN_IP = "169.254.20.10"
METRICS = "127.0.0.1:19253"
INSIDE = "--inside-netns"

sys.path.insert(0, os.path.join(ROOT, "tests"))
from lib.metrics import Metrics  # noqa: E402

import yaml  # noqa: E402  (python3-yaml, as check_manifests.py)

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)
    return bool(cond)


def exprs_of_dashboard(dash):
    out = []

    def walk(panels):
        for p in panels or []:
            out.extend(t["expr"] for t in p.get("targets") or [] if t.get("expr"))
            walk(p.get("panels"))
    walk(dash.get("panels"))
    for v in dig(dash, "templating", "list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        out.append(q.get("query", "") if isinstance(q, dict) else q or "")
    return out


def dig(obj, *path):
    for p in path:
        obj = obj.get(p) if isinstance(obj, dict) else None
    return obj


PROMQL_WORDS = {"sum", "by", "rate", "increase", "max", "min", "avg", "on", "ignoring", "without",
                "histogram_quantile", "label_values", "le", "and", "or", "unless", "count",
                "group_left", "group_right", "bool", "offset", "instance", "abs", "time"}


def metric_names(expr):
    """The metric names in a PromQL expression (label names inside {} and
    by (...) lists are dropped, and so are functions and keywords)."""
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", " ", expr)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        w = m.group(0)
        rest = expr[m.end():].lstrip()
        if w in PROMQL_WORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"\d+[smhdwy]", w):
            continue
        names.add(w)
    return names


def served(name, have):
    if name in have:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] + "_bucket" in have:
            return True
    return False


def get_metrics():
    with urllib.request.urlopen("http://%s/metrics" % METRICS, timeout=2) as r:
        return r.read().decode()


def scrape(tmp, node_setup):
    """Start nodedns, return its /metrics text (or None), stop it."""
    token = os.path.join(tmp, "token")
    with open(token, "w") as f:
        f.write("not-a-real-token\n")
    ca = os.path.join(tmp, "ca.crt")
    with open(ca, "w") as f:
        f.write("")
    listen = "%s:53" % LISTEN_IP if node_setup else "127.0.0.1:19053"
    args = [BIN, "--listen", listen, "--upstream", "127.0.0.1:9", "--threads", "1",
            "--metrics", METRICS, "--kube-api", "https://127.0.0.1:1",
            "--kube-token-file", token, "--kube-ca-file", ca, "--log-level", "warn"]
    if node_setup:
        args += ["--setup-interface", "ndmon0", "--setup-iptables"]
    else:
        args += ["--health", "none"]
    env = dict(os.environ, NODEDNS_RUN_DIR=os.path.join(tmp, "run"))
    log = open(os.path.join(tmp, "nodedns.log"), "wb")
    p = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    text = None
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline and p.poll() is None:
            try:
                text = get_metrics()
                if not node_setup or "nodedns_node_setup_ok 1" in text:
                    break
            except OSError:
                pass
            time.sleep(0.1)
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
    if text is None:
        with open(os.path.join(tmp, "nodedns.log"), errors="replace") as f:
            print("nodedns log:\n" + f.read()[-2000:])
    return text


def inside():
    """In the private network namespace: start nodedns, print /metrics."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # An existing link (not every kernel has the dummy type): nodedns adds
    # its address to it, and the rules, as on a node.
    subprocess.run(["ip", "link", "add", "ndmon0", "type", "veth", "peer", "name", "ndmon1"],
                   check=True)
    subprocess.run(["ip", "link", "set", "ndmon0", "up"], check=True)
    subprocess.run(["ip", "link", "set", "ndmon1", "up"], check=True)
    tmp = tempfile.mkdtemp(prefix="nodedns-mon-")
    try:
        text = scrape(tmp, True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if text is None:
        return 1
    sys.stdout.write(text)
    return 0


def main():
    with open(os.path.join(MON, "grafana-dashboard.json"), encoding="utf-8") as f:
        try:
            dash = json.load(f)
        except ValueError as e:
            check(False, "grafana-dashboard.json does not parse: %s" % e)
            dash = {}
    check(dash.get("panels"), "grafana-dashboard.json: panels")
    with open(os.path.join(MON, "prometheusrule.yaml"), encoding="utf-8") as f:
        rule = yaml.safe_load(f)
    groups = dig(rule, "spec", "groups") or []
    check(groups, "prometheusrule.yaml: spec.groups")

    promtool = shutil.which("promtool")
    if check(promtool, "promtool installed (Debian's prometheus package; scripts/deps.sh test)"):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump({"groups": groups}, f)
            rules_file = f.name
        try:
            r = subprocess.run([promtool, "check", "rules", rules_file], capture_output=True,
                               text=True, timeout=60)
        finally:
            os.unlink(rules_file)
        check(r.returncode == 0, "promtool check rules: %s" % (r.stdout + r.stderr).strip()[-500:])

    exprs = exprs_of_dashboard(dash)
    exprs += [r.get("expr", "") for g in groups for r in g.get("rules") or []]
    names = set()
    for e in exprs:
        names |= metric_names(str(e))
    ours = sorted(n for n in names if n.startswith("nodedns_"))
    others = sorted(names - set(ours))
    check(ours, "the dashboard and the rules name nodedns metrics")

    root = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")
    if root:
        r = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__), INSIDE],
                           capture_output=True, text=True, timeout=60)
        text = r.stdout if r.returncode == 0 else None
        if r.returncode != 0:
            print(r.stdout[-2000:] + r.stderr[-2000:])
    else:
        print("monitoring: not root: nodedns runs without node setup, so its supervisor's "
              "series are missing")
        tmp = tempfile.mkdtemp(prefix="nodedns-mon-")
        try:
            text = scrape(tmp, False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if check(text, "nodedns started and served /metrics"):
        have = {n for n, _, _ in Metrics(text).samples}
        for n in ours:
            check(served(n, have), "%s is named by deploy/monitoring but not in nodedns's /metrics" % n)
    print("monitoring: %d nodedns metrics checked against /metrics%s; other exporters' (not checked): %s"
          % (len(ours), " (supervisor with node setup, own netns)" if root else "",
             ", ".join(others) or "none"))
    print("monitoring: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:] == [INSIDE]:
        sys.exit(inside())
    sys.exit(main())
