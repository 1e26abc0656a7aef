"""bench/cluster/gen.py - a deterministic synthetic cluster for the cluster-zone bench.

Shared by fast_apiserver.py (which serves it) and clusterbench.py (which
changes it and queries it), so both sides agree on every name and address
without passing the cluster around.

Shape (defaults of the full run):
    namespaces   ns-000 .. ns-(K-1), plus default
    services     svc-NNNNN in ns-(i % K); every `headless_every`-th is headless
                 (clusterIP None), the others ClusterIP 10.96.0.0/12 + i + 1
    slices       one EndpointSlice per service, `eps` endpoints each, pod IPs
                 from 10.64.0.0/10 (pod p = i * eps + j), as the EndpointSlice
                 controller writes them (targetRef, nodeName, zone, conditions,
                 labels, annotations, ownerReferences); headless services'
                 endpoints carry a hostname (StatefulSet style)
"""
import ipaddress
import uuid

DOMAIN = "cluster.local"
SVC_NET = int(ipaddress.IPv4Address("10.96.0.0"))
ALT_NET = int(ipaddress.IPv4Address("10.100.0.0"))   # alternate ClusterIPs
POD_NET = int(ipaddress.IPv4Address("10.64.0.0"))
NEW_POD_NET = int(ipaddress.IPv4Address("10.128.0.0"))  # replacement pods
TS = "2025-11-20T10:00:00Z"


def ip(n):
    return str(ipaddress.IPv4Address(n))


def uid(kind, i):
    return str(uuid.UUID(int=(hash_kind(kind) << 64) | i))


def hash_kind(kind):
    return {"Namespace": 1, "Service": 2, "EndpointSlice": 3, "Pod": 4}[kind]


class Cluster:
    def __init__(self, services=10000, eps=10, namespaces=100, headless_every=10):
        self.n = services
        self.eps = eps
        self.k = namespaces
        self.headless_every = headless_every

    # -- names --
    def ns_of(self, i):
        return "ns-%03d" % (i % self.k)

    def svc_name(self, i):
        return "svc-%05d" % i

    def slice_name(self, i):
        return "svc-%05d-%05x" % (i, (i * 2654435761) & 0xfffff)

    def headless(self, i):
        return self.headless_every > 0 and i % self.headless_every == self.headless_every - 1

    def fqdn(self, i):
        return "%s.%s.svc.%s" % (self.svc_name(i), self.ns_of(i), DOMAIN)

    def cluster_ip(self, i, alt=False):
        return ip((ALT_NET if alt else SVC_NET) + i + 1)

    def pod_ip(self, i, j):
        return ip(POD_NET + i * self.eps + j)

    # -- objects --
    def namespace(self, name, n):
        return {"kind": "Namespace", "apiVersion": "v1",
                "metadata": {"name": name, "uid": uid("Namespace", n),
                             "creationTimestamp": TS,
                             "labels": {"kubernetes.io/metadata.name": name}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}}

    def namespaces(self):
        out = [self.namespace("default", 10 ** 6)]
        out += [self.namespace("ns-%03d" % n, n) for n in range(self.k)]
        return out

    def service(self, i, alt=False):
        name, ns = self.svc_name(i), self.ns_of(i)
        spec = {"ports": [{"name": "http", "protocol": "TCP", "port": 80,
                           "targetPort": 8080}],
                "selector": {"app": name},
                "type": "ClusterIP", "sessionAffinity": "None",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster"}
        if self.headless(i):
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
        else:
            cip = self.cluster_ip(i, alt)
            spec["clusterIP"] = cip
            spec["clusterIPs"] = [cip]
        return {"kind": "Service", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns, "uid": uid("Service", i),
                             "creationTimestamp": TS,
                             "labels": {"app": name, "team": "team-%d" % (i % 37)},
                             "annotations": {"bench/owner": "clusterbench"}},
                "spec": spec, "status": {"loadBalancer": {}}}

    def endpoint(self, i, j, addr=None, pod=None, ready=True):
        name = self.svc_name(i)
        p = i * self.eps + j
        pod = pod or "%s-%08x-%05d" % (name, (p * 40503) & 0xffffffff, j)
        ep = {"addresses": [addr or self.pod_ip(i, j)],
              "conditions": {"ready": ready, "serving": ready, "terminating": False},
              "nodeName": "node-%04d" % (p % 5000),
              "zone": "zone-%s" % "abc"[p % 3],
              "targetRef": {"kind": "Pod", "namespace": self.ns_of(i), "name": pod,
                            "uid": str(uuid.UUID(int=(4 << 64) | p))}}
        if self.headless(i):
            ep["hostname"] = "%s-%d" % (name, j)
        return ep

    def endpointslice(self, i, endpoints=None):
        name, ns = self.svc_name(i), self.ns_of(i)
        labels = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                  "kubernetes.io/service-name": name, "app": name}
        if self.headless(i):
            labels["service.kubernetes.io/headless"] = ""
        if endpoints is None:
            endpoints = [self.endpoint(i, j) for j in range(self.eps)]
        return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"name": self.slice_name(i), "namespace": ns,
                             "uid": uid("EndpointSlice", i), "creationTimestamp": TS,
                             "generation": 1, "generateName": name + "-",
                             "labels": labels,
                             "annotations": {"endpoints.kubernetes.io/last-change-trigger-time":
                                             TS},
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                                  "name": name, "uid": uid("Service", i),
                                                  "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}

    def objects(self):
        """Every object, namespaces first."""
        yield from self.namespaces()
        for i in range(self.n):
            yield self.service(i)
        for i in range(self.n):
            yield self.endpointslice(i)


class SliceEditor:
    """Keeps the current endpoints of the slices it changed, so each change
    is a full, consistent object (as the EndpointSlice controller writes)."""

    def __init__(self, cluster):
        self.c = cluster
        self.eps = {}      # i -> list of endpoints
        self.gen = {}      # i -> generation
        self.next_pod = 0

    def replace_endpoint(self, i, j):
        """A pod of service i replaced: endpoint j gets a new pod and a new
        IP. Returns (slice object, old ip, new ip)."""
        c = self.c
        eps = self.eps.get(i)
        if eps is None:
            eps = [c.endpoint(i, jj) for jj in range(c.eps)]
            self.eps[i] = eps
        old = eps[j]["addresses"][0]
        self.next_pod += 1
        new = ip(NEW_POD_NET + self.next_pod)
        eps[j] = c.endpoint(i, j, addr=new, pod="%s-r%07d" % (c.svc_name(i), self.next_pod))
        self.gen[i] = self.gen.get(i, 1) + 1
        obj = c.endpointslice(i, eps)
        obj["metadata"]["generation"] = self.gen[i]
        return obj, old, new


def main():
    """`gen.py --lines SERVICES EPS NAMESPACES`: every object, one JSON line each
    (the input of publish_bench)."""
    import json
    import sys
    if len(sys.argv) != 5 or sys.argv[1] != "--lines":
        sys.exit("usage: gen.py --lines SERVICES EPS NAMESPACES")
    c = Cluster(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    out = sys.stdout
    for o in c.objects():
        out.write(json.dumps(o, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
