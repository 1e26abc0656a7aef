#!/usr/bin/env python3
"""tests/image/run.py - the container image run as the DaemonSet runs it.

Run as root after `make image` (`make image-test` does both). For each mode,
deploy/overlays/link-local and deploy/overlays/transparent, the overlay is
rendered (tests/deploy/kustomize_lite.py) and the container of its DaemonSet
is started with podman the way a kubelet would start it:

  - the image the manifest names, its entrypoint, the manifest's args with
    $(VAR) expanded from the container's environment (kubelet's rules);
  - the manifest's env, plus what the kubelet adds: the Service variables of
    kube-system and of `kubernetes` (enableServiceLinks), with
    KUBERNETES_SERVICE_HOST/PORT naming the API server stand-in;
  - the ConfigMap volume (config.json as rendered), the hostPath volumes
    (a directory standing for the node's /run), the service account token
    and CA at /var/run/secrets/kubernetes.io/serviceaccount;
  - exactly the capabilities the manifest adds after dropping ALL,
    no-new-privileges, read-only root with no tmpfs, the user and group of
    the securityContext, the memory and CPU limits (not oom_score_adj -997,
    which some sandboxes do not let even root lower);
  - host network: a "node" network namespace holding the API stand-in
    (tests/apiserver/fake_apiserver.py), NSD as the node's resolver on
    127.0.0.1:53 (the pod's /etc/resolv.conf under dnsPolicy Default) and
    kube-proxy's KUBE-SERVICES chain: in iptables-legacy for link-local, in
    nft for transparent, so both backends of NODEDNS_IPTABLES_BACKEND=auto
    are taken.

First `--check-config` with the same flags must accept the configuration
(and refuse a broken one with exit 2). Then, from a "pod" network namespace
(veth to the node, /etc/resolv.conf as kubelet writes it, nameserver
169.254.20.10 or the kube-dns ClusterIP in transparent mode), glibc's
`getent ahosts` must resolve cluster names, names through the search path
and an external name (NSD); the probes of the manifest must pass from the
node; the NOTRACK rules must be in the backend that holds KUBE-SERVICES and
not in the other; `podman stop` (SIGTERM) must end the container with status
0 and leave the node clean: no nodedns rules in either backend, no nodedns
address, and the interface gone when nodedns created it. This kernel may
have no dummy link type; then the link is created beforehand as a veth and
only its addresses are nodedns's to remove.

The image is $NODEDNS_IMAGE when set, else the image the manifest names. A
missing image or podman is a failure, never a skip.
Closing line "image-test: N passed, N failed"; exit 1 on failure.
"""

import atexit
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "tests", "deploy"))
from lib import net, nsd  # noqa: E402
from lib.check import CheckFailed, check, run, tail, wait_for  # noqa: E402
import kustomize_lite  # noqa: E402
from kustomize_lite import dig  # noqa: E402

PROBE = os.path.join(REPO, "tests", "node", "dnsprobe.py")
FAKE_API = os.path.join(REPO, "tests", "apiserver", "fake_apiserver.py")
PREFIX = "ndimg-"
LL = "169.254.20.10"
KUBE_DNS_IP = "10.96.0.10"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RUNTIME = ["--runtime", "runc"] if shutil.which("runc") else []
# The defaults of podman exceed the hard limits of some sandboxes.
ULIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]

ZONE = """$ORIGIN example.test.
$TTL 300
@    3600 IN SOA ns1.example.test. hostmaster.example.test. 1 3600 900 604800 60
@    3600 IN NS  ns1.example.test.
ns1       IN A    127.0.0.1
www       IN A    192.0.2.80
www       IN AAAA 2001:db8::80
"""

KUBELET_RESOLV = ("nameserver %s\n"
                  "search %s.svc.cluster.local svc.cluster.local cluster.local\n"
                  "options ndots:5\n")

RESULTS = []
_TMP = []
_CONTAINERS = []


def podman(*args, check_rc=True, timeout=120):
    return run(["podman"] + RUNTIME + list(args), check_rc=check_rc, timeout=timeout)


def cleanup_all():
    for name in list(_CONTAINERS):
        subprocess.run(["podman"] + RUNTIME + ["rm", "-f", "-t", "0", name], capture_output=True)
        _CONTAINERS.remove(name)
    net.cleanup()
    for d in _TMP:
        shutil.rmtree(d, ignore_errors=True)
    _TMP.clear()


def remove_stale_containers():
    """Containers of an earlier run that was killed before it cleaned up
    (named PREFIX + PID + "-...", PID dead)."""
    r = subprocess.run(["podman"] + RUNTIME + ["ps", "-a", "--format", "{{.Names}}"],
                       capture_output=True, text=True)
    for name in r.stdout.split():
        m = re.match(r"^%s(\d+)-" % re.escape(PREFIX), name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            subprocess.run(["podman"] + RUNTIME + ["rm", "-f", "-t", "0", name], capture_output=True)


def _on_signal(signum, frame):
    cleanup_all()
    sys.exit(128 + signum)


# ------------------------------------------------------------ the cluster

def service(ns, name, ip, ports):
    return {"kind": "Service", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                     "ipFamilyPolicy": "SingleStack",
                     "ports": [{"name": n, "protocol": p, "port": port, "targetPort": port}
                               for n, p, port in ports]}}


DNS_PORTS = [("dns", "UDP", 53), ("dns-tcp", "TCP", 53)]


def cluster(rendered):
    """The API stand-in's objects: namespaces, kubernetes, kube-dns, two
    application Services, and the Services of the rendered manifests (with
    ClusterIPs the apiserver would have given them)."""
    ns = lambda n: {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": n}}  # noqa: E731
    objs = [ns("default"), ns("kube-system"), ns("other"),
            service("default", "kubernetes", "10.96.0.1", [("https", "TCP", 443)]),
            service("kube-system", "kube-dns", KUBE_DNS_IP, DNS_PORTS),
            service("default", "frontend", "10.96.40.7", [("http", "TCP", 80)]),
            service("other", "web", "10.96.30.5", [("http", "TCP", 80)])]
    for i, o in enumerate(x for x in rendered if x.get("kind") == "Service"):
        svc = json.loads(json.dumps(o))
        if dig(svc, "spec", "clusterIP") != "None":
            ip = "10.96.0.%d" % (50 + i)
            svc["spec"].update({"clusterIP": ip, "clusterIPs": [ip]})
        objs.append(svc)
    return objs


def service_env(objs, namespace):
    """The variables kubelet gives a pod of @namespace with service links on:
    every Service of its namespace with a ClusterIP, and `kubernetes`."""
    env = {}
    for o in objs:
        if o.get("kind") != "Service":
            continue
        ns, name = o["metadata"]["namespace"], o["metadata"]["name"]
        ip = dig(o, "spec", "clusterIP")
        if ip in (None, "", "None") or not (ns == namespace or (ns, name) == ("default", "kubernetes")):
            continue
        base = name.upper().replace("-", "_")
        ports = dig(o, "spec", "ports", default=[])
        env[base + "_SERVICE_HOST"] = ip
        if ports:
            env[base + "_SERVICE_PORT"] = str(ports[0]["port"])
    return env


def expand(text, env):
    """Kubernetes' $(VAR) expansion of args: a defined variable is replaced,
    an undefined one stays as written, $$ is a literal $."""
    def one(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", one, text)


# ------------------------------------------------------------ the node

class Ns(net.Netns):
    def getent(self, name):
        r = self.x(["getent", "ahosts", name], check_rc=False, timeout=30)
        return sorted({l.split()[0] for l in r.stdout.splitlines() if l.strip()})

    def probe(self, *args, check_rc=True):
        return self.x(["python3", PROBE] + list(args), check_rc=check_rc, timeout=30)


def rules(node, save):
    out = node.x([save], check_rc=False).stdout
    return [l for l in out.splitlines() if l.startswith("-A ") and "nodedns" in l]


class Node:
    """A node: its network namespace, a directory standing for its file
    system (hostPath volumes), NSD, the API stand-in, and one pod."""

    def __init__(self, mode, kube_backend):
        self.mode = mode
        self.kube_backend = kube_backend
        self.base = "%s%d-%04x" % (PREFIX, os.getpid(), random.randrange(0x10000))
        self.tmp = tempfile.mkdtemp(prefix="nodedns-image-")
        _TMP.append(self.tmp)
        self.node = Ns(self.base + "-node")
        self.pod = Ns(self.base + "-pod")
        self.created_link = False

    def build(self, rendered, iface):
        n, p = self.node, self.pod
        n.create()
        # Without a dummy link type (some kernels), nodedns cannot create
        # its link; it is made here as an administrator would, as a veth.
        probe = "ndprobe%d" % (os.getpid() % 10000)
        r = subprocess.run(["ip", "-n", n.name, "link", "add", probe, "type", "dummy"], capture_output=True)
        if r.returncode == 0:
            n.ip("link", "del", probe)
            self.dummy = True
        else:
            self.dummy = False
            n.ip("link", "add", iface, "type", "veth", "peer", "name", iface + "p")
            n.ip("link", "set", iface + "p", "up")
        p.create()
        n.ip("link", "add", "veth1", "type", "veth", "peer", "name", "eth0", "netns", p.name)
        n.ip("addr", "add", "10.123.1.1/30", "dev", "veth1")
        n.ip("link", "set", "veth1", "up")
        p.ip("addr", "add", "10.123.1.2/30", "dev", "eth0")
        p.ip("link", "set", "eth0", "up")
        p.ip("route", "add", "default", "via", "10.123.1.1", "dev", "eth0")
        server = KUBE_DNS_IP if self.mode == "transparent" else LL
        p.resolv(KUBELET_RESOLV % (server, "default"))
        # kube-proxy's chain in the backend this node uses.
        n.x(["iptables-%s" % self.kube_backend, "-t", "nat", "-N", "KUBE-SERVICES"])
        # The node's resolver: NSD on 127.0.0.1:53 (the pod's resolv.conf
        # under dnsPolicy Default).
        d = os.path.join(self.tmp, "nsd")
        conf = nsd.write(d, {"example.test": ZONE}, ["127.0.0.1@53"])
        self.nsd_log = open(os.path.join(d, "nsd.out"), "wb")
        n.popen(["nsd", "-d", "-c", conf], stdout=self.nsd_log, stderr=subprocess.STDOUT)
        wait_for(lambda: json.loads(n.probe("query", "127.0.0.1:53", "www.example.test").stdout)
                 .get("answers"), 10, "NSD to answer")
        self.resolv = os.path.join(self.tmp, "resolv.conf")
        with open(self.resolv, "w") as f:
            f.write("nameserver 127.0.0.1\n")
        # The API stand-in.
        a = os.path.join(self.tmp, "api")
        os.makedirs(a)
        self.objects = cluster(rendered)
        with open(os.path.join(a, "fixture.json"), "w") as f:
            json.dump({"objects": self.objects}, f)
        self.api_err = open(os.path.join(a, "stderr"), "wb")
        api = n.popen([sys.executable, FAKE_API, "--port", "0", "--control-port", "0",
                       "--token-file", os.path.join(a, "token"), "--cert-dir", os.path.join(a, "certs"),
                       "--fixture", os.path.join(a, "fixture.json")],
                      stdout=subprocess.PIPE, stderr=self.api_err)
        line = api.stdout.readline()
        check(line, "the API stand-in did not start: %s" % tail(os.path.join(a, "stderr")))
        info = json.loads(line)
        self.api_port = info["port"]
        # The service account volume the kubelet projects.
        self.sa = os.path.join(self.tmp, "serviceaccount")
        os.makedirs(self.sa)
        shutil.copy(info["token_file"], os.path.join(self.sa, "token"))
        shutil.copy(info["ca"], os.path.join(self.sa, "ca.crt"))
        with open(os.path.join(self.sa, "namespace"), "w") as f:
            f.write("kube-system")

    def close(self):
        for f in (getattr(self, "nsd_log", None), getattr(self, "api_err", None)):
            if f:
                f.close()


# ------------------------------------------------------------ the pod, as kubelet starts it

class Container:
    def __init__(self, node, rendered, image):
        self.node = node
        ds = [o for o in rendered if o.get("kind") == "DaemonSet"]
        check(len(ds) == 1, "one DaemonSet in the rendered overlay")
        self.ds = ds[0]
        pod = dig(self.ds, "spec", "template", "spec")
        check(len(pod["containers"]) == 1 and not pod.get("initContainers"), "one container, no init containers")
        self.pod = pod
        self.c = c = pod["containers"][0]
        self.image = image or c["image"]
        self.name = "%s-%s" % (node.base, node.mode)
        self.namespace = self.ds["metadata"]["namespace"]
        self.cms = {o["metadata"]["name"]: o for o in rendered if o.get("kind") == "ConfigMap"}
        self.log_path = os.path.join(node.tmp, "container.log")

        env = {}
        if pod.get("enableServiceLinks", True):
            env.update(service_env(node.objects, self.namespace))
        # In a cluster the kubernetes Service's ClusterIP leads to the API
        # server; here the stand-in listens on the node's 127.0.0.1.
        env["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
        env["KUBERNETES_SERVICE_PORT"] = str(node.api_port)
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
            elif dig(e, "valueFrom", "fieldRef", "fieldPath") == "spec.nodeName":
                env[e["name"]] = "node-1"
            else:
                raise CheckFailed("env %s: only value and fieldRef spec.nodeName are handled here" % e["name"])
        self.env = env
        check(not c.get("command"), "the manifest keeps the image's entrypoint")
        self.args = [expand(a, env) for a in c.get("args") or []]
        unexpanded = [a for a in self.args if "$(" in a]
        check(not unexpanded, "args left unexpanded (a variable the kubelet would not set): %s" % unexpanded)

    def run_opts(self):
        node, pod, c = self.node, self.pod, self.c
        sc = c.get("securityContext") or {}
        caps = dig(sc, "capabilities", default={})
        opts = ["--name", self.name, "--network", "ns:/run/netns/%s" % node.node.name] + ULIMITS
        check(pod.get("hostNetwork") is True, "hostNetwork")
        check(caps.get("drop") == ["ALL"], "capabilities: drop ALL")
        opts += ["--cap-drop", "ALL"] + ["--cap-add=%s" % a for a in caps.get("add") or []]
        if sc.get("allowPrivilegeEscalation") is False:
            opts += ["--security-opt", "no-new-privileges"]
        check(not sc.get("privileged"), "not privileged")
        if sc.get("readOnlyRootFilesystem"):
            opts += ["--read-only", "--read-only-tmpfs=false"]
        opts += ["--user", "%s:%s" % (sc.get("runAsUser", 0), sc.get("runAsGroup", 0))]
        # Guaranteed QoS: the kubelet would set oom_score_adj -997. Not done
        # here: some sandboxes refuse lowering it even to root, and nodedns
        # then logs that it keeps the score it has (supervisor.c).
        limits = dig(c, "resources", "limits", default={})
        if "memory" in limits:
            opts += ["--memory", quantity_bytes(limits["memory"])]
        if "cpu" in limits:
            opts += ["--cpus", "%g" % quantity_cpu(limits["cpu"])]
        opts += ["--stop-timeout", str(pod.get("terminationGracePeriodSeconds", 30))]
        # dnsPolicy Default: the node's resolv.conf.
        check(pod.get("dnsPolicy") == "Default", "dnsPolicy Default")
        opts += ["-v", "%s:/etc/resolv.conf:ro" % node.resolv]
        if pod.get("automountServiceAccountToken", True):
            opts += ["-v", "%s:%s:ro" % (node.sa, SA_DIR)]
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for m in c.get("volumeMounts") or []:
            v = volumes[m["name"]]
            ro = ":ro" if m.get("readOnly") else ""
            if "configMap" in v:
                cm = self.cms[v["configMap"]["name"]]
                d = os.path.join(node.tmp, "cm-" + m["name"])
                os.makedirs(d, exist_ok=True)
                for it in v["configMap"].get("items") or [{"key": k, "path": k} for k in cm["data"]]:
                    with open(os.path.join(d, it["path"]), "w") as f:
                        f.write(cm["data"][it["key"]])
                opts += ["-v", "%s:%s:ro" % (d, m["mountPath"])]
            elif "hostPath" in v:
                host = os.path.join(node.tmp, "host", v["hostPath"]["path"].lstrip("/"))
                kind = v["hostPath"].get("type", "")
                if kind == "DirectoryOrCreate":
                    os.makedirs(host, exist_ok=True)
                elif kind == "FileOrCreate":
                    os.makedirs(os.path.dirname(host), exist_ok=True)
                    open(host, "a").close()
                else:
                    raise CheckFailed("hostPath type %r not handled here" % kind)
                opts += ["-v", "%s:%s%s" % (host, m["mountPath"], ro)]
            else:
                raise CheckFailed("volume %s: only configMap and hostPath are handled here" % m["name"])
        for k, v in sorted(self.env.items()):
            opts += ["-e", "%s=%s" % (k, v)]
        return opts

    def check_config(self, extra=()):
        """`nodedns ARGS --check-config` in the same container set-up."""
        r = podman("run", "--rm", *self.run_opts_for("check"), self.image, *self.args, *extra, "--check-config",
                   check_rc=False, timeout=60)
        return r.returncode, (r.stdout + r.stderr).strip()

    def run_opts_for(self, suffix):
        opts = self.run_opts()
        opts[1] = "%s-%s" % (self.name, suffix)
        return opts

    def start(self):
        self.logf = open(self.log_path, "wb")
        _CONTAINERS.append(self.name)
        argv = ["podman"] + RUNTIME + ["run", "--rm"] + self.run_opts() + [self.image] + self.args
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT)

    def log(self):
        return tail(self.log_path, 60)

    def wait_log(self, pattern, timeout):
        def seen():
            if self.proc.poll() is not None:
                raise CheckFailed("the container exited (%s):\n%s" % (self.proc.returncode, self.log()))
            with open(self.log_path, "rb") as f:
                return re.search(pattern, f.read().decode("utf-8", "replace"))
        wait_for(seen, timeout, "/%s/ in the container's log" % pattern, interval=0.1)

    def stop(self):
        """podman stop: SIGTERM, SIGKILL after the grace period. The exit status."""
        t0 = time.monotonic()
        podman("stop", self.name, timeout=60)
        rc = self.proc.wait(30)
        self.logf.close()
        if self.name in _CONTAINERS:
            _CONTAINERS.remove(self.name)
        return rc, time.monotonic() - t0


def quantity_bytes(q):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", str(q))
    check(m, "memory quantity %r" % q)
    mult = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[m.group(2)]
    return str(int(m.group(1)) * mult)


def quantity_cpu(q):
    q = str(q)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


# ------------------------------------------------------------ the test

def scenario(mode, kube_backend, image):
    rendered = kustomize_lite.render(os.path.join(REPO, "deploy", "overlays", mode))
    cfg = json.loads([o for o in rendered if o.get("kind") == "ConfigMap"][0]["data"]["config.json"])
    iface = cfg["setup-interface"]
    t = Node(mode, kube_backend)
    try:
        t.build(rendered, iface)
        c = Container(t, rendered, image)
        node, pod = t.node, t.pod
        other = "nft" if kube_backend == "legacy" else "legacy"

        rc, out = c.check_config()
        check(rc == 0, "%s: --check-config refused the rendered configuration (%d): %s" % (mode, rc, out))
        rc, bad = c.check_config(["--cache-memory=lots"])
        check(rc == 2 and "cache-memory" in bad, "%s: --check-config accepted --cache-memory=lots (%d): %s"
              % (mode, rc, bad))
        check(rules(node, "iptables-legacy-save") == rules(node, "iptables-nft-save") == [],
              "%s: --check-config changed the node" % mode)

        t0 = time.monotonic()
        c.start()
        c.wait_log(r"resolver \(pid \d+\) is serving", 60)
        # The manifest's probes, from the node as the kubelet sends them.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            g = dig(c.c, probe, "httpGet")
            check(g, "%s: %s is an httpGet" % (mode, probe))
            url = "http://%s:%s%s" % (g["host"], g["port"], g["path"])
            wait_for(lambda: node.probe("get", url, check_rc=False).returncode == 0, 30, "%s %s" % (probe, url),
                     interval=0.2)
        ready = time.monotonic() - t0
        listens = [a.split("=", 1)[1] for a in c.args if a.startswith("--listen=")] or cfg["listen"]
        ips = sorted({a.rsplit(":", 1)[0] for a in listens})

        # Names from the pod, through glibc.
        cases = [("kubernetes.default.svc.cluster.local", ["10.96.0.1"]),
                 ("kubernetes", ["10.96.0.1"]),
                 ("frontend", ["10.96.40.7"]),
                 ("web.other", ["10.96.30.5"]),
                 ("kube-dns.kube-system", [KUBE_DNS_IP]),
                 ("www.example.test", ["192.0.2.80", "2001:db8::80"])]
        for name, want in cases:
            got = pod.getent(name)
            check(got == want, "%s: getent ahosts %s: %s, wanted %s\n%s" % (mode, name, got, want, c.log()))
        check(pod.getent("web") == [], "%s: `web` resolved from a pod in default (it is in other)" % mode)

        # NOTRACK in the backend that holds kube-proxy's chain (installed once
        # the resolver serves; a loaded machine may take a while), nothing in
        # the other.
        def missing_notrack():
            notrack = [l for l in rules(node, "iptables-%s-save" % kube_backend) if "NOTRACK" in l]
            return ["%s %s/53" % (ip, proto) for ip in ips for proto in ("udp", "tcp")
                    if not any(ip in l and "-p %s" % proto in l and "--dport 53" in l for l in notrack)]
        try:
            wait_for(lambda: not missing_notrack(), 30, "NOTRACK rules", interval=0.2)
        except CheckFailed:
            check(False, "%s: no NOTRACK rule for %s in iptables-%s:\n%s\n%s" % (
                mode, missing_notrack(), kube_backend, "\n".join(rules(node, "iptables-%s-save" % kube_backend)),
                c.log()))
        check(rules(node, "iptables-%s-save" % other) == [],
              "%s: nodedns rules in iptables-%s too" % (mode, other))
        addrs = node.ip("-o", "addr", "show", "dev", iface)
        for ip in ips:
            check(ip + "/32" in addrs, "%s: %s not on %s: %s" % (mode, ip, iface, addrs))
        metrics = node.probe("get", "http://127.0.0.1:%s/metrics" % cfg["metrics"].rsplit(":", 1)[1]).stdout
        fallback = re.search(r"^nodedns_node_setup_backend_fallback(?:\{[^}]*\})?\s+(\S+)", metrics, re.M)
        check(fallback and float(fallback.group(1)) == 0,
              "%s: nodedns_node_setup_backend_fallback: %s" % (mode, fallback and fallback.group(0)))

        # --threads defaults to the CPU limit (the cgroup quota), rounded up.
        cpu = dig(c.c, "resources", "limits", "cpu")
        if cpu is not None and not any(a.startswith("--threads") for a in c.args) and "threads" not in cfg:
            want = min(os.cpu_count(), -(-int(quantity_cpu(cpu) * 1000) // 1000))
            workers = re.search(r"^nodedns_workers(?:\{[^}]*\})?\s+(\S+)", metrics, re.M)
            check(workers and float(workers.group(1)) == want, "%s: worker threads with a CPU limit of %s: %s, "
                  "wanted %d" % (mode, cpu, workers and workers.group(0), want))

        # SIGTERM: the node is left clean.
        rc, took = c.stop()
        check(rc == 0, "%s: exit status after podman stop: %s\n%s" % (mode, rc, c.log()))
        for save in ("iptables-legacy-save", "iptables-nft-save"):
            check(rules(node, save) == [], "%s: rules left in %s: %s" % (mode, save, rules(node, save)))
        if t.dummy:
            check(not node.link_exists(iface), "%s: the dummy link %s was left" % (mode, iface))
        else:
            addrs = node.ip("-o", "addr", "show", "dev", iface)
            check(not any(ip in addrs for ip in ips), "%s: addresses left on %s: %s" % (mode, iface, addrs))
        RESULTS.append("%s (kube-proxy in iptables-%s): serving and probes passing %.1f s after podman run; "
                       "%d names via glibc; NOTRACK for %s in %s; podman stop took %.1f s, status 0, node clean%s"
                       % (mode, kube_backend, ready, len(cases) + 1, ", ".join(ips), kube_backend, took,
                          "" if t.dummy else " (no dummy link type here: the link was a veth made beforehand)"))
    finally:
        t.close()
        cleanup_all()


def main():
    failed = []
    if os.geteuid() != 0:
        print("image-test: needs root (network namespaces, iptables, podman with host namespaces)")
        failed.append("root")
    for tool in ("podman", "ip", "iptables-legacy-save", "iptables-nft-save", "nsd", "getent", "openssl"):
        if not shutil.which(tool):
            print("image-test: missing %s (scripts/deps.sh test and image install it)" % tool)
            failed.append(tool)
    image = os.environ.get("NODEDNS_IMAGE", "")
    if not failed:
        want = image or dig([o for o in kustomize_lite.render(os.path.join(REPO, "deploy", "overlays", "link-local"))
                             if o.get("kind") == "DaemonSet"][0], "spec", "template", "spec", "containers", 0, "image")
        r = subprocess.run(["podman"] + RUNTIME + ["image", "inspect", "--format", "{{.Size}}", want],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("image-test: no image %s (make image builds it): %s" % (want, r.stderr.strip()))
            failed.append("image")
        else:
            RESULTS.append("image %s, %d MB" % (want, int(r.stdout.strip()) // 1000000))
    passed = 0
    if not failed:
        atexit.register(cleanup_all)
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        net.remove_stale(PREFIX)
        remove_stale_containers()
        for mode, backend in (("link-local", "legacy"), ("transparent", "nft")):
            t0 = time.monotonic()
            try:
                scenario(mode, backend, image)
                passed += 1
                print("PASS %s (%.1f s)" % (mode, time.monotonic() - t0), flush=True)
            except Exception as e:  # noqa: BLE001
                failed.append(mode)
                print("FAIL %s (%.1f s): %s" % (mode, time.monotonic() - t0, e), flush=True)
                if not isinstance(e, CheckFailed):
                    traceback.print_exc()
    for r in RESULTS:
        print("  " + r)
    print("image-test: %d passed, %d failed" % (passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
