#!/usr/bin/env python3
"""tests/deploy/check_manifests.py - check the Kubernetes manifests in deploy/.

Reads deploy/base/kustomization.yaml, every file it lists and
deploy/base/config.json, and checks what the DaemonSet needs to work on a node and what the README
promises about it: RBAC limited to get/list/watch on services, endpointslices
and namespaces; host network, dnsPolicy Default, system-node-critical; the
capability set; probes aimed at the health address of config.json; the
surge update strategy and what it needs (no host ports, the /run/nodedns
hostPath for the instance lock); Guaranteed QoS; the metrics port and its
annotations; the xtables lock; the Dockerfile's packages; config keys that are
real nodedns options (from `nodedns --help`).

Then it renders each mode, deploy/overlays/link-local and
deploy/overlays/transparent (and deploy/overlays/cilium-lrp, whose
CiliumLocalRedirectPolicy it checks by hand, and deploy/monitoring), with `kubectl kustomize`
when kubectl is installed, else with kustomize_lite.py (and checks that the
two agree when both can run), checks what each mode must hold, and validates
every rendered object against the Kubernetes OpenAPI schemas with the npm
package kubernetes-models (validate_schemas.js; `make manifests` runs
`npm ci` here first). A DaemonSet with a boolean written as a string must be
refused, so a validator that accepts anything fails the check.

Needs python3-yaml and node with tests/deploy/node_modules. The binary is
$NODEDNS_BIN, else build/nodedns.
Prints "deploy: N passed, N failed"; exits 1 on any failure.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
BASE = os.path.join(DEPLOY, "base")
OVERLAYS = ("link-local", "transparent")
# A third mode for Cilium clusters, not tested on a cluster here: rendered,
# its Kubernetes objects validated against the schemas, its
# CiliumLocalRedirectPolicy (a CRD the validator has no model for) checked
# by hand below.
CILIUM = "cilium-lrp"

try:
    import yaml
except ImportError:
    print("deploy: python3-yaml is missing (apt-get install python3-yaml)", file=sys.stderr)
    print("deploy: 0 passed, 1 failed")
    sys.exit(1)

sys.path.insert(0, HERE)
from kustomize_lite import dig  # noqa: E402


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)
    return bool(cond)


def load_yaml_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]


def split_addr(text):
    """'IPv4[:PORT]' or '[IPv6][:PORT]' -> (ip, port or None)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?", text)
    if m:
        return m.group(1), int(m.group(2)) if m.group(2) else None
    m = re.fullmatch(r"([0-9.]+)(?::(\d+))?", text)
    if m:
        return m.group(1), int(m.group(2)) if m.group(2) else None
    return text, None


def nodedns_options():
    """Long options listed by `nodedns --help` -> {name: takes_value}, or None."""
    binary = os.environ.get("NODEDNS_BIN", os.path.join(ROOT, "build", "nodedns"))
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as e:
        print("deploy: cannot run %s --help: %s (build it first)" % (binary, e), file=sys.stderr)
        return None
    opts = {}
    for m in re.finditer(r"^\s+--([a-z0-9-]+)(?:[ =](\S+))?", out, re.M):
        opts[m.group(1)] = m.group(2) is not None
    return opts


# ---- kustomization: every manifest listed, every listed file present ----

kust_path = os.path.join(BASE, "kustomization.yaml")
try:
    kust = (load_yaml_docs(kust_path) or [{}])[0]
except (OSError, yaml.YAMLError) as e:
    kust = {}
    check(False, "kustomization.yaml: %s" % e)
if not check(isinstance(kust, dict) and kust.get("kind") == "Kustomization",
             "kustomization.yaml: kind Kustomization"):
    kust = {}
resources = kust.get("resources") or []
generated = [f for g in kust.get("configMapGenerator") or [] for f in g.get("files") or []]
listed = set(resources) | set(generated)
on_disk = {f for f in os.listdir(BASE)
           if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml"}
check(on_disk <= set(resources),
      "kustomization.yaml: resources miss %s" % sorted(on_disk - set(resources)))
for f in sorted(listed):
    check(os.path.isfile(os.path.join(BASE, f)), "kustomization.yaml lists missing file %s" % f)
check("config.json" in generated, "kustomization.yaml: a configMapGenerator holds config.json")

objs = []
for f in resources:
    path = os.path.join(BASE, f)
    if not os.path.isfile(path):
        continue
    try:
        docs = load_yaml_docs(path)
    except yaml.YAMLError as e:
        check(False, "%s: %s" % (f, e))
        continue
    for d in docs:
        ok = check(isinstance(d, dict) and d.get("apiVersion") and d.get("kind")
                   and dig(d, "metadata", "name"), "%s: object without apiVersion/kind/name" % f)
        if ok:
            objs.append(d)

by_kind = {}
for o in objs:
    by_kind.setdefault(o["kind"], []).append(o)
for kind, n in (("ServiceAccount", 1), ("ClusterRole", 1), ("ClusterRoleBinding", 1),
                ("DaemonSet", 1), ("Service", 2)):
    check(len(by_kind.get(kind, [])) == n, "want %d %s, have %d" % (n, kind, len(by_kind.get(kind, []))))
names = [(o["kind"], dig(o, "metadata", "namespace"), o["metadata"]["name"]) for o in objs]
check(len(names) == len(set(names)), "duplicate objects: %s" % names)
NAMESPACED = {"ServiceAccount", "ConfigMap", "DaemonSet", "Service"}
for o in objs:
    if o["kind"] in NAMESPACED:
        check(dig(o, "metadata", "namespace") == "kube-system",
              "%s/%s: namespace kube-system" % (o["kind"], o["metadata"]["name"]))

sa = (by_kind.get("ServiceAccount") or [{}])[0]
role = (by_kind.get("ClusterRole") or [{}])[0]
binding = (by_kind.get("ClusterRoleBinding") or [{}])[0]
ds = (by_kind.get("DaemonSet") or [{}])[0]
services = {dig(s, "metadata", "name"): s for s in by_kind.get("Service", [])}
sa_name = dig(sa, "metadata", "name")

# ---- config.json: valid, real options, the addresses the manifests rely on ----

dup_keys = []


def _no_dups(pairs):
    keys = [k for k, _ in pairs]
    dup_keys.extend(k for k in set(keys) if keys.count(k) > 1)
    return dict(pairs)


try:
    with open(os.path.join(BASE, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f, object_pairs_hook=_no_dups)
except (OSError, ValueError) as e:
    cfg = {}
    check(False, "config.json: %s" % e)
if not check(isinstance(cfg, dict), "config.json: a JSON object"):
    cfg = {}
check(not dup_keys, "config.json: keys given twice: %s" % dup_keys)

options = nodedns_options()
if check(options, "nodedns --help lists the options"):
    for key, val in cfg.items():
        check(key in options and key not in ("config", "help", "version"),
              "config.json: %r is not a nodedns option usable in a file" % key)
        if key in options and not options[key]:
            check(isinstance(val, bool), "config.json: %r is a switch, wants true/false" % key)
check(isinstance(cfg.get("listen"), list) and "169.254.20.10:53" in cfg.get("listen", []),
      "config.json: listen is a list holding 169.254.20.10:53")
check(cfg.get("setup-interface") == "nodedns", "config.json: setup-interface nodedns")
check(cfg.get("setup-iptables") is True, "config.json: setup-iptables true")
check(cfg.get("metrics") == "0.0.0.0:9253", "config.json: metrics 0.0.0.0:9253")
health_ip, health_port = split_addr(cfg.get("health", ""))
listen_ips = [split_addr(a)[0] for a in cfg.get("listen", []) if isinstance(a, str)]
check(health_ip in listen_ips and health_port, "config.json: health on a listen IP with a port")
metrics_port = split_addr(cfg.get("metrics", ""))[1]

# ---- RBAC: get/list/watch on services, endpointslices, namespaces; nothing else ----

want = {("", "services"), ("", "namespaces"), ("discovery.k8s.io", "endpointslices"), ("", "pods")}
have = set()
for rule in role.get("rules") or []:
    # pods (--autopath, the node's own): list and watch only
    check(sorted(rule.get("verbs") or []) == (["list", "watch"] if rule.get("resources") == ["pods"]
                                              else ["get", "list", "watch"]),
          "ClusterRole: verbs exactly get/list/watch, have %s" % rule.get("verbs"))
    check(not rule.get("nonResourceURLs") and not rule.get("resourceNames"),
          "ClusterRole: no nonResourceURLs/resourceNames")
    for g in rule.get("apiGroups") or []:
        for r in rule.get("resources") or []:
            have.add((g, r))
check(have == want, "ClusterRole: resources %s, want %s" % (sorted(have), sorted(want)))
check(dig(binding, "roleRef", "kind") == "ClusterRole"
      and dig(binding, "roleRef", "name") == dig(role, "metadata", "name"),
      "ClusterRoleBinding: refers to the ClusterRole")
check({"kind": "ServiceAccount", "name": sa_name, "namespace": "kube-system"}
      in (binding.get("subjects") or []), "ClusterRoleBinding: binds the ServiceAccount")
check(sa.get("automountServiceAccountToken") is not False, "ServiceAccount: token automounted")

# ---- DaemonSet ----

pod = dig(ds, "spec", "template", "spec", default={})
labels = dig(ds, "spec", "template", "metadata", "labels", default={})
selector = dig(ds, "spec", "selector", "matchLabels", default={})
check(selector and all(labels.get(k) == v for k, v in selector.items()),
      "DaemonSet: selector matches the pod labels")
check(pod.get("hostNetwork") is True, "DaemonSet: hostNetwork true")
check(pod.get("dnsPolicy") == "Default", "DaemonSet: dnsPolicy Default")
check(pod.get("priorityClassName") == "system-node-critical", "DaemonSet: system-node-critical")
check(pod.get("serviceAccountName") == sa_name, "DaemonSet: runs as the ServiceAccount")
check(pod.get("automountServiceAccountToken") is not False, "DaemonSet: token automounted")
check(pod.get("enableServiceLinks") is not False, "DaemonSet: service links (env) enabled")
check(any(t.get("operator") == "Exists" and not t.get("key") and not t.get("effect")
          for t in pod.get("tolerations") or []),
      "DaemonSet: a toleration with operator Exists and no key/effect (every node)")

annotations = dig(ds, "spec", "template", "metadata", "annotations", default={})
check(annotations.get("prometheus.io/scrape") == "true", "DaemonSet: prometheus.io/scrape \"true\"")
check(annotations.get("prometheus.io/port") == str(metrics_port),
      "DaemonSet: prometheus.io/port is the metrics port of config.json")

# Surge: the new pod serves next to the old one (SO_REUSEPORT), so a node
# never goes without DNS during an update.
strategy = dig(ds, "spec", "updateStrategy", default={})
surge = dig(strategy, "rollingUpdate", "maxSurge", default=0)
unavailable = dig(strategy, "rollingUpdate", "maxUnavailable", default=1)
check(strategy.get("type") == "RollingUpdate", "DaemonSet: RollingUpdate")
check(surge not in (None, 0, "0", "0%"), "DaemonSet: maxSurge > 0 (have %r)" % (surge,))
check(unavailable in (0, "0", "0%"), "DaemonSet: maxUnavailable 0 (have %r)" % (unavailable,))
min_ready = dig(ds, "spec", "minReadySeconds")
check(isinstance(min_ready, int) and min_ready > 0,
      "DaemonSet: minReadySeconds > 0 (the old pod stops once the new one has served that long)")
containers = pod.get("containers") or []
check(len(containers) == 1, "DaemonSet: one container")
c = containers[0] if containers else {}
ports = c.get("ports") or []
# With hostNetwork every container port is a host port: the surging pod would
# land on a node whose old pod holds the same ones, and the scheduler refuses
# it (kubernetes/kubernetes#106417).
check(not ports, "container: no ports (host ports block the surge pod), have %s" % ports)
check(not any(p.get("hostPort") for ct in (pod.get("initContainers") or []) + containers
              for p in ct.get("ports") or []), "DaemonSet: no hostPort anywhere")
# Host ports used to keep nodedns off nodes where NodeLocal DNSCache runs; a
# required anti-affinity does it now.
anti = dig(pod, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", default=[])
check(any(t.get("topologyKey") == "kubernetes.io/hostname"
          and dig(t, "labelSelector", "matchLabels", "k8s-app") == "node-local-dns" for t in anti),
      "DaemonSet: required anti-affinity against k8s-app: node-local-dns per node")

sc = c.get("securityContext") or {}
caps = sc.get("capabilities") or {}
check(caps.get("drop") == ["ALL"], "container: capabilities drop ALL")
# NET_ADMIN: interface and iptables; NET_RAW: iptables-legacy's tables (a raw
# socket); NET_BIND_SERVICE: port 53 once ALL is dropped.
check(sorted(caps.get("add") or []) == ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"],
      "container: capabilities add exactly NET_ADMIN, NET_BIND_SERVICE and NET_RAW, have %s"
      % caps.get("add"))
check(sc.get("readOnlyRootFilesystem") is True, "container: readOnlyRootFilesystem true")
check(sc.get("allowPrivilegeEscalation") is False, "container: allowPrivilegeEscalation false")
check(not sc.get("privileged"), "container: not privileged")

for kind, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"),
                   ("startupProbe", "/health")):
    probe = c.get(kind)
    if kind == "startupProbe" and probe is None:
        continue
    get = dig(probe, "httpGet", default={})
    port = get.get("port")
    check(get.get("path") == path, "container: %s GET %s" % (kind, path))
    check(port == health_port, "container: %s on the health port %s" % (kind, health_port))
    check(get.get("host") == health_ip,
          "container: %s host %s (the pod IP is the node's; health listens on %s only)"
          % (kind, health_ip, health_ip))

check("SYS_RESOURCE" not in (caps.get("add") or []), "container: no SYS_RESOURCE")

# Guaranteed QoS: requests == limits for cpu and memory (a request left out
# defaults to the limit), so the kubelet sets oom_score_adj -997.
UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3}


def quantity(q):
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T|m|)", str(q)) if q is not None else None
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


res = c.get("resources") or {}
for r in ("cpu", "memory"):
    lim = quantity(dig(res, "limits", r))
    req = quantity(dig(res, "requests", r, default=dig(res, "limits", r)))
    check(lim and req == lim, "container: Guaranteed QoS needs %s requests == limits, have %s / %s"
          % (r, dig(res, "requests", r), dig(res, "limits", r)))
mem = quantity(dig(res, "limits", "memory")) or 0
cache = quantity(str(cfg.get("cache-memory", "0")).replace("K", "k")) or 0
check(mem >= cache + 64 * 2**20,
      "container: memory limit %s covers cache-memory %s plus 64Mi" % (dig(res, "limits", "memory"),
                                                                        cfg.get("cache-memory")))

env = {e.get("name"): e.get("value") for e in c.get("env") or []}
check(env.get("NODEDNS_IPTABLES_BACKEND", "auto") in ("auto", "plain", "legacy", "nft"),
      "container: NODEDNS_IPTABLES_BACKEND auto|plain|legacy|nft")
# The resolver's score must be above the supervisor's -997 (the OOM killer
# takes the resolver, which the supervisor restarts) and below zero.
oom = env.get("NODEDNS_OOM_SCORE_ADJ")
check(oom is not None and oom.lstrip("-").isdigit() and -997 < int(oom) < 0,
      "container: NODEDNS_OOM_SCORE_ADJ between -997 and 0 (got %r)" % oom)
run_dir = env.get("NODEDNS_RUN_DIR", "/run/nodedns")

args = c.get("args") or []
flags = [a.split("=", 1)[0][2:] for a in args if a.startswith("--")]
if options:
    for fl in flags:
        check(fl in options, "container: args: --%s is not a nodedns option" % fl)
config_arg = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
mounts = {m.get("name"): m for m in c.get("volumeMounts") or []}
volumes = {v.get("name"): v for v in pod.get("volumes") or []}
cm_vol = next((v for v in volumes.values() if v.get("configMap")), {})
cm_mount = mounts.get(cm_vol.get("name"), {})
gen_names = [g.get("name") for g in kust.get("configMapGenerator") or []]
check(dig(cm_vol, "configMap", "name") in gen_names, "DaemonSet: mounts the generated ConfigMap")
check(config_arg and cm_mount.get("mountPath")
      and config_arg == cm_mount["mountPath"].rstrip("/") + "/config.json",
      "container: --config=<ConfigMap mount>/config.json")
xt = [v for v in volumes.values() if dig(v, "hostPath", "path") == "/run/xtables.lock"]
check(xt and dig(xt[0], "hostPath", "type") == "FileOrCreate", "DaemonSet: hostPath /run/xtables.lock FileOrCreate")
check(xt and dig(mounts.get(xt[0].get("name")), "mountPath") == "/run/xtables.lock",
      "container: /run/xtables.lock mounted")
# The instance lock and the state file, shared with the other pod of a surge
# update: without them the pod that stops tears down what the new one uses.
rd = [v for v in volumes.values() if dig(v, "hostPath", "path") == "/run/nodedns"]
check(rd and dig(rd[0], "hostPath", "type") == "DirectoryOrCreate",
      "DaemonSet: hostPath /run/nodedns DirectoryOrCreate")
rd_mount = mounts.get(rd[0].get("name")) if rd else None
check(rd_mount and rd_mount.get("mountPath") == run_dir and not rd_mount.get("readOnly"),
      "container: /run/nodedns mounted writable at NODEDNS_RUN_DIR (%s)" % run_dir)

# ---- Services ----

metrics_svc = next((s for s in services.values() if dig(s, "spec", "clusterIP") == "None"), {})
check(metrics_svc, "a headless Service (clusterIP None) for metrics")
check(dig(metrics_svc, "spec", "selector") == selector, "metrics Service: selects the nodedns pods")
check([(p.get("port"), p.get("targetPort", p.get("port"))) for p in dig(metrics_svc, "spec", "ports", default=[])]
      == [(metrics_port, metrics_port)], "metrics Service: port and targetPort %s (a number: no named "
      "container port exists)" % metrics_port)

fallback = [a.split("=", 1)[1] for a in args if a.startswith("--cluster-fallback=")]
check(len(fallback) == 1, "container: one --cluster-fallback")
m = re.fullmatch(r"\$\(([A-Z0-9_]+)_SERVICE_HOST\)", fallback[0] if fallback else "")
fb_name = m.group(1).lower().replace("_", "-") if m else None
fb_svc = services.get(fb_name, {})
check(fb_svc, "--cluster-fallback names the $(<SERVICE>_SERVICE_HOST) of a Service here")
check(dig(fb_svc, "spec", "selector") == {"k8s-app": "kube-dns"},
      "fallback Service: selector k8s-app: kube-dns")
check(dig(fb_svc, "spec", "clusterIP") in (None, "") and dig(fb_svc, "spec", "type", default="ClusterIP") == "ClusterIP",
      "fallback Service: a ClusterIP Service")
check(sorted((p.get("port"), p.get("protocol", "TCP")) for p in dig(fb_svc, "spec", "ports", default=[]))
      == [(53, "TCP"), (53, "UDP")], "fallback Service: 53/UDP and 53/TCP")

# ---- Dockerfile ----

try:
    with open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
except OSError:
    dockerfile = ""
froms = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
check(froms and froms[0] == "debian:bookworm" and froms[-1] == "debian:bookworm-slim",
      "Dockerfile: builds on debian:bookworm, runs on debian:bookworm-slim")
build_stage = dockerfile.split(froms[-1])[0] if froms else ""
run_stage = dockerfile.split(froms[-1])[-1] if froms else ""
for p in ("libldns3", "libuv1", "libcurl4", "libjansson4", "libyajl2", "libyaml-0-2", "libmnl0",
          "ca-certificates", "iptables"):
    check(re.search(r"(?<![\w.-])%s(?![\w.-])" % re.escape(p), run_stage),
          "Dockerfile: runtime stage installs %s" % p)
# The build stage has scripts/deps.sh's build list (cmocka is for unit tests only).
try:
    with open(os.path.join(ROOT, "scripts", "deps.sh"), encoding="utf-8") as f:
        m = re.search(r'^build_pkgs="([^"]*)"', f.read(), re.M)
    deps = m.group(1).split() if m else []
except OSError:
    deps = []
check(deps, "scripts/deps.sh: a build_pkgs list")
for p in deps:
    if p != "libcmocka-dev":
        check(re.search(r"(?<![\w.-])%s(?![\w.-])" % re.escape(p), build_stage),
              "Dockerfile: build stage installs %s (scripts/deps.sh build list)" % p)

extra_objects = {}  # where -> object, validated with the overlays (monitoring)

# ---- the modes: each overlay rendered, checked and validated against the schemas ----

sys.path.insert(0, HERE)
import kustomize_lite  # noqa: E402

HASHED = re.compile(r"^(nodedns)-[a-z0-9]{10}$")


def normalised(objs):
    """Objects sorted by kind and name, with the generated ConfigMap's hash
    suffix cut everywhere (kubectl and kustomize_lite hash differently)."""
    def cut(v):
        if isinstance(v, dict):
            return {k: cut(x) for k, x in v.items()}
        if isinstance(v, list):
            return [cut(x) for x in v]
        if isinstance(v, str):
            return HASHED.sub(r"\1-HASH", v)
        return v
    return sorted((cut(o) for o in objs), key=lambda o: (o.get("kind", ""), dig(o, "metadata", "name", default="")))


def render(d, what):
    """The objects of kustomization directory @d, or None after a failed check."""
    try:
        lite = kustomize_lite.render(d)
    except (OSError, yaml.YAMLError, KeyError, ValueError, IndexError,
            kustomize_lite.Unsupported) as e:
        check(False, "%s: kustomize_lite: %s" % (what, e))
        return None
    if not shutil.which("kubectl"):
        return lite
    r = subprocess.run(["kubectl", "kustomize", d], capture_output=True, text=True, timeout=60)
    if not check(r.returncode == 0, "%s: kubectl kustomize: %s" % (what, r.stderr.strip())):
        return None
    ref = [o for o in yaml.safe_load_all(r.stdout) if o]
    check(normalised(ref) == normalised(lite),
          "%s: kubectl kustomize and kustomize_lite.py render different objects" % what)
    return ref


def the(objs, kind):
    found = [o for o in objs if o.get("kind") == kind]
    return found[0] if len(found) == 1 else {}


overlays_dir = os.path.join(DEPLOY, "overlays")
check(sorted(d for d in os.listdir(overlays_dir)) == sorted(OVERLAYS + (CILIUM,))
      if os.path.isdir(overlays_dir) else False, "deploy/overlays: exactly %s" % (OVERLAYS + (CILIUM,),))
rendered = {}
for ov in OVERLAYS:
    objs = render(os.path.join(overlays_dir, ov), "overlays/" + ov)
    if objs is None:
        continue
    rendered[ov] = objs
    cm = the(objs, "ConfigMap")
    try:
        check(json.loads(dig(cm, "data", "config.json", default="null")) == cfg,
              "%s: the ConfigMap holds config.json" % ov)
    except ValueError:
        check(False, "%s: the ConfigMap's config.json is not JSON" % ov)
    rds = the(objs, "DaemonSet")
    vol_names = [dig(v, "configMap", "name") for v in
                 dig(rds, "spec", "template", "spec", "volumes", default=[])]
    check(dig(cm, "metadata", "name") in vol_names and dig(cm, "metadata", "name") != "nodedns",
          "%s: the DaemonSet mounts the generated (hash-named) ConfigMap" % ov)
    check(normalised([o for o in objs if o.get("kind") != "DaemonSet"])
          == normalised([o for o in objs_base if o.get("kind") != "DaemonSet"])
          if (objs_base := rendered.get(OVERLAYS[0])) else True,
          "%s: the same objects as %s but the DaemonSet" % (ov, OVERLAYS[0]))

ov_args = {ov: dig(the(objs, "DaemonSet"), "spec", "template", "spec", "containers", 0, "args", default=[])
           for ov, objs in rendered.items()}
if "link-local" in ov_args:
    check(ov_args["link-local"] == args and not any(a.startswith("--listen") for a in args),
          "link-local: the base's args, no --listen (config.json's 169.254.20.10:53 only)")
if "transparent" in ov_args:
    extra = ov_args["transparent"][len(args):]
    check(ov_args["transparent"][:len(args)] == args
          and extra == ["--listen=169.254.20.10:53", "--listen=$(KUBE_DNS_SERVICE_HOST)"],
          "transparent: adds --listen=169.254.20.10:53 (first: /health is there) and "
          "--listen=$(KUBE_DNS_SERVICE_HOST), have %s" % extra)
    tds = the(rendered["transparent"], "DaemonSet")
    check(dig(tds, "spec", "template", "spec", "enableServiceLinks") is not False
          and dig(tds, "metadata", "namespace") == "kube-system",
          "transparent: $(KUBE_DNS_SERVICE_HOST) needs service links in kube-system")
    strip = lambda o: {**o, "spec": {**o["spec"], "template": {**o["spec"]["template"], "spec": {
        **o["spec"]["template"]["spec"], "containers": [{**c, "args": None} for c in
                                                        o["spec"]["template"]["spec"]["containers"]]}}}}
    if "link-local" in rendered:
        check(normalised([strip(tds)]) == normalised([strip(the(rendered["link-local"], "DaemonSet"))]),
              "transparent: the DaemonSet differs from link-local's in the args only")

# ---- monitoring: rendered like the overlays, validated with them below ----

mon = render(os.path.join(DEPLOY, "monitoring"), "monitoring")
if mon is not None:
    kinds = sorted(o.get("kind") for o in mon)
    check(kinds == ["ConfigMap", "PrometheusRule", "ServiceMonitor"],
          "monitoring: a dashboard ConfigMap, a PrometheusRule and a ServiceMonitor, have %s" % kinds)
    for o in mon:
        extra_objects["monitoring: %s/%s" % (o.get("kind"), dig(o, "metadata", "name"))] = o
        check(dig(o, "metadata", "namespace") == "kube-system",
              "monitoring: %s in kube-system" % o.get("kind"))
    smon = the(mon, "ServiceMonitor")
    check(dig(smon, "spec", "selector", "matchLabels") == dig(metrics_svc, "metadata", "labels")
          or all(dig(metrics_svc, "metadata", "labels", k) == v
                 for k, v in (dig(smon, "spec", "selector", "matchLabels", default={}) or {}).items()),
          "ServiceMonitor: selects the nodedns-metrics Service by its labels")
    check([e.get("port") for e in dig(smon, "spec", "endpoints", default=[])]
          == [p.get("name") for p in dig(metrics_svc, "spec", "ports", default=[])],
          "ServiceMonitor: scrapes the metrics Service's named port")
    dash_cm = the(mon, "ConfigMap")
    try:
        dash = json.loads(dig(dash_cm, "data", "grafana-dashboard.json", default="null"))
        check(isinstance(dash, dict) and dash.get("panels"), "monitoring: the dashboard has panels")
    except ValueError as e:
        check(False, "monitoring: grafana-dashboard.json: %s" % e)
    check(dig(dash_cm, "metadata", "labels", "grafana_dashboard") == "1",
          "monitoring: the dashboard ConfigMap carries grafana_dashboard: \"1\" (Grafana's sidecar)")

# ---- Cilium: the Local Redirect Policy variant ----

LRP_KEYS = {
    (): {"apiVersion", "kind", "metadata", "spec"},
    ("spec",): {"redirectFrontend", "redirectBackend", "skipRedirectFromBackend", "description"},
    ("spec", "redirectFrontend"): {"serviceMatcher", "addressMatcher"},
    ("spec", "redirectFrontend", "serviceMatcher"): {"serviceName", "namespace", "toPorts"},
    ("spec", "redirectFrontend", "addressMatcher"): {"ip", "toPorts"},
    ("spec", "redirectBackend"): {"localEndpointSelector", "toPorts"},
    ("spec", "redirectBackend", "localEndpointSelector"): {"matchLabels", "matchExpressions"},
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def lrp_problems(o):
    """What is wrong with the shape of a CiliumLocalRedirectPolicy (cilium.io/v2):
    known keys only, one frontend matcher, ports as strings of 1-65535 with
    TCP/UDP and a name when there are several, string label maps."""
    bad = []
    if o.get("apiVersion") != "cilium.io/v2" or o.get("kind") != "CiliumLocalRedirectPolicy":
        bad.append("apiVersion/kind %s/%s" % (o.get("apiVersion"), o.get("kind")))
    for path, keys in LRP_KEYS.items():
        v = dig(o, *path) if path else o
        if v is None:
            continue
        if not isinstance(v, dict):
            bad.append("%s is not an object" % "/".join(path))
        elif set(v) - keys:
            bad.append("%s: unknown keys %s" % ("/".join(path) or "top", sorted(set(v) - keys)))
    meta = o.get("metadata") or {}
    if not (isinstance(meta.get("name"), str) and DNS_LABEL.match(meta["name"])
            and isinstance(meta.get("namespace"), str) and DNS_LABEL.match(meta["namespace"])):
        bad.append("metadata: name and namespace (DNS labels) required")
    fe = dig(o, "spec", "redirectFrontend", default={}) or {}
    if not isinstance(fe, dict) or len(fe) != 1:
        bad.append("redirectFrontend: exactly one of serviceMatcher, addressMatcher")
    sm = fe.get("serviceMatcher") if isinstance(fe, dict) else None
    if sm is not None and not (isinstance(sm, dict) and isinstance(sm.get("serviceName"), str)
                               and isinstance(sm.get("namespace"), str)):
        bad.append("serviceMatcher: serviceName and namespace strings")
    sel = dig(o, "spec", "redirectBackend", "localEndpointSelector")
    labels = dig(sel, "matchLabels", default={}) if isinstance(sel, dict) else None
    if not (isinstance(labels, dict) and labels and all(isinstance(k, str) and isinstance(v, str)
                                                        for k, v in labels.items())):
        bad.append("localEndpointSelector.matchLabels: a map of strings")
    for where, ports in (("frontend", dig(sm or fe.get("addressMatcher") or {}, "toPorts")),
                         ("backend", dig(o, "spec", "redirectBackend", "toPorts"))):
        if ports is None and where == "frontend":
            continue
        if not isinstance(ports, list) or not ports:
            bad.append("%s toPorts: a list" % where)
            continue
        for p in ports:
            if not isinstance(p, dict) or set(p) - {"port", "protocol", "name"}:
                bad.append("%s toPorts: entries of port, protocol, name: %r" % (where, p))
                continue
            port = p.get("port")
            if not (isinstance(port, str) and port.isdigit() and 1 <= int(port) <= 65535):
                bad.append("%s toPorts: port is a string of 1-65535: %r" % (where, port))
            if p.get("protocol") not in ("TCP", "UDP"):
                bad.append("%s toPorts: protocol TCP or UDP: %r" % (where, p.get("protocol")))
            if len(ports) > 1 and not (isinstance(p.get("name"), str) and DNS_LABEL.match(p["name"])):
                bad.append("%s toPorts: a name on each of several ports: %r" % (where, p))
    return bad


cil = render(os.path.join(overlays_dir, CILIUM), "overlays/" + CILIUM)
if cil is not None:
    lrps = [o for o in cil if o.get("kind") == "CiliumLocalRedirectPolicy"]
    check(len(lrps) == 1, "%s: one CiliumLocalRedirectPolicy, have %d" % (CILIUM, len(lrps)))
    lrp = lrps[0] if lrps else {}
    check(not lrp_problems(lrp), "%s: CiliumLocalRedirectPolicy: %s" % (CILIUM, lrp_problems(lrp)))
    # The hand check must refuse what Cilium's CRD schema refuses.
    import copy as _copy
    for name, spoil in (("numeric port", lambda x: x["spec"]["redirectBackend"]["toPorts"][0].update(port=53)),
                        ("both matchers", lambda x: x["spec"]["redirectFrontend"].update(addressMatcher={"ip": "1.2.3.4"})),
                        ("unknown key", lambda x: x["spec"]["redirectBackend"].update(endpointSelector={})),
                        ("bad protocol", lambda x: x["spec"]["redirectBackend"]["toPorts"][1].update(protocol="ANY"))):
        bad = _copy.deepcopy(lrp)
        try:
            spoil(bad)
        except (KeyError, IndexError, TypeError):
            continue
        check(lrp_problems(bad), "%s: the hand check of the policy accepted a %s" % (CILIUM, name))
    cds = the(cil, "DaemonSet")
    cpod = dig(cds, "spec", "template", "spec", default={})
    cc = dig(cpod, "containers", 0, default={})
    check(dig(lrp, "metadata", "namespace") == dig(cds, "metadata", "namespace"),
          "%s: the policy is in the DaemonSet's namespace (Cilium selects backends there)" % CILIUM)
    check(all(dig(cds, "spec", "template", "metadata", "labels", k) == v
              for k, v in (dig(lrp, "spec", "redirectBackend", "localEndpointSelector", "matchLabels") or {}).items()),
          "%s: the policy's localEndpointSelector selects the nodedns pods" % CILIUM)
    check(dig(lrp, "spec", "redirectFrontend", "serviceMatcher") == {"serviceName": "kube-dns", "namespace": "kube-system"},
          "%s: the policy redirects the kube-dns Service" % CILIUM)
    check(dig(fb_svc, "metadata", "name") != "kube-dns",
          "%s: nodedns reaches the cluster DNS through a Service the policy does not redirect" % CILIUM)
    cports = {(p.get("name"), str(p.get("containerPort")), p.get("protocol", "TCP")) for p in cc.get("ports") or []}
    for p in dig(lrp, "spec", "redirectBackend", "toPorts", default=[]) or []:
        check((p.get("name"), p.get("port"), p.get("protocol")) in cports,
              "%s: backend port %s is a named port of the container: %s" % (CILIUM, p, sorted(cports)))
    check(cpod.get("hostNetwork") is False, "%s: not host network (Cilium redirects to pods it manages)" % CILIUM)
    check(dig(cc, "securityContext", "capabilities") == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
          "%s: capabilities NET_BIND_SERVICE only" % CILIUM)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        check(dig(cc, probe, "httpGet") and not dig(cc, probe, "httpGet", "host"),
              "%s: %s to the pod IP (no host)" % (CILIUM, probe))
    try:
        ccfg = json.loads(dig(the(cil, "ConfigMap"), "data", "config.json", default="null"))
    except ValueError:
        ccfg = None
    if check(isinstance(ccfg, dict), "%s: the ConfigMap's config.json is a JSON object" % CILIUM):
        check(not ccfg.get("setup-interface") and not ccfg.get("setup-iptables"),
              "%s: no node setup in config.json" % CILIUM)
        check(ccfg.get("listen") == ["0.0.0.0:53"], "%s: listens on the pod's address" % CILIUM)
        if options:
            for key in ccfg:
                check(key in options, "%s: config.json: %r is not a nodedns option" % (CILIUM, key))
        binary = os.environ.get("NODEDNS_BIN", os.path.join(ROOT, "build", "nodedns"))
        r = subprocess.run([binary, "--config", os.path.join(overlays_dir, CILIUM, "config.json"), "--check-config"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, "%s: nodedns --check-config refuses config.json: %s" % (CILIUM, r.stderr.strip()))
    for o in cil:
        if o.get("kind") != "CiliumLocalRedirectPolicy":
            extra_objects["%s: %s/%s" % (CILIUM, o.get("kind"), dig(o, "metadata", "name"))] = o

# ---- schemas (npm kubernetes-models; validate_schemas.js) ----

items = []
for ov, objs in sorted(rendered.items()):
    for o in objs:
        items.append({"where": "%s: %s/%s" % (ov, o.get("kind"), dig(o, "metadata", "name")), "object": o})
for where, o in sorted(extra_objects.items()):
    items.append({"where": where, "object": o})
# Self-test: what the validator must refuse.
if rendered:
    import copy
    some = next(iter(rendered.values()))
    bad = copy.deepcopy(the(some, "DaemonSet"))
    if bad:
        bad["spec"]["template"]["spec"]["hostNetwork"] = "true"
        items.append({"where": "selftest-string-bool", "object": bad})
    bad = copy.deepcopy(next((o for o in some if o.get("kind") == "Service"), {}))
    if bad:
        bad["spec"]["ports"][0]["protocol"] = "QUIC"
        items.append({"where": "selftest-bad-enum", "object": bad})
node = shutil.which("node")
if check(node, "node is installed (scripts/deps.sh test)") and check(
        os.path.isdir(os.path.join(HERE, "node_modules", "kubernetes-models")),
        "tests/deploy/node_modules/kubernetes-models is installed (make manifests runs npm ci)"):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(items, f)
        objects_file = f.name
    try:
        r = subprocess.run([node, os.path.join(HERE, "validate_schemas.js"), objects_file],
                           capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(objects_file)
    results = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) >= 2 and f[0] in ("ok", "FAIL"):
            results[f[1]] = (f[0], f[2] if len(f) > 2 else "")
    check(r.returncode in (0, 1) and results, "validate_schemas.js ran: %s" % r.stderr.strip()[-300:])
    for it in items:
        status, why = results.get(it["where"], ("missing", "no result"))
        if it["where"].startswith("selftest-"):
            check(status == "FAIL", "schemas: %s was not refused" % it["where"])
        else:
            check(status == "ok", "schemas: %s: %s" % (it["where"], why))
    print("deploy: %d objects validated against the Kubernetes schemas (%s)"
          % (sum(1 for it in items if not it["where"].startswith("selftest-")),
             ", ".join(sorted(rendered) + ([CILIUM] if cil is not None else []) + ["monitoring"])))

print("deploy: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
