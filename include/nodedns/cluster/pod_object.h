/* include/nodedns/cluster/pod_object.h - a Pod as autopath needs it: namespace, IPs, search path.
 *
 * Autopath (src/dns/autopath.c) answers a search-path expansion in one round
 * trip when it knows the pod that asked: its namespace, and that its
 * /etc/resolv.conf carries the search path kubelet writes for the cluster
 * (`<ns>.svc.<zone> svc.<zone> <zone> <node's search domains>`). This module
 * decodes one Pod from the API server's JSON (jansson) into that much and
 * nothing else, and says whether the pod is eligible:
 *  - not hostNetwork (its source address is the node's, shared by every
 *    hostNetwork pod, whatever their namespace);
 *  - dnsPolicy ClusterFirst (the default when absent) or
 *    ClusterFirstWithHostNet: the two policies that give a pod network pod
 *    the cluster search path (Default and None do not);
 *  - no spec.dnsConfig.searches: kubelet appends them to the search list,
 *    so the path is no longer the one autopath walks. dnsConfig.options
 *    (ndots, timeout, attempts, ...) and nameservers do not change the
 *    list and are allowed;
 *  - not finished (status.phase Succeeded or Failed): its IPs may already
 *    belong to another pod.
 * Every field read is type-checked; a malformed Pod is rejected whole
 * (-EINVAL, err says why).
 */
#ifndef NODEDNS_CLUSTER_POD_OBJECT_H
#define NODEDNS_CLUSTER_POD_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POD_LABEL_MAX 63   /* a namespace is a DNS label */
#define POD_NAME_MAX 253   /* a Pod name is a DNS subdomain */
#define POD_MAX_IPS 4      /* status.podIPs: the API allows one per family */

struct json_t;

struct pod_ip {
	uint8_t fam; /* 4 or 6 */
	uint8_t b[16];
};

/** Why a decoded pod is not autopathed (POD_ELIGIBLE: it is). */
enum pod_verdict {
	POD_ELIGIBLE = 0,
	POD_HOST_NETWORK,
	POD_DNS_POLICY,
	POD_CUSTOM_SEARCH,
	POD_FINISHED,
	POD_OTHER_NODE, /* spec.nodeName is not the node we serve */
};

struct pod_object {
	char ns[POD_LABEL_MAX + 1];  /* lower case */
	char name[POD_NAME_MAX + 1];
	uint8_t verdict;             /* enum pod_verdict */
	uint8_t nips;
	struct pod_ip ips[POD_MAX_IPS]; /* status.podIPs (or status.podIP), distinct */
};

/**
 * Decode @p obj (a Pod, borrowed) into @p out. @p node (may be NULL) is the
 * node served: a pod whose spec.nodeName differs gets POD_OTHER_NODE (the
 * field selector should have left it out). Unparsable addresses in podIPs
 * are skipped; more than POD_MAX_IPS are ignored.
 * @return 0, or -EINVAL with @p err set (metadata.name or .namespace missing
 * or not a name, a field of the wrong type).
 */
int pod_object_decode(const struct json_t *obj, const char *node, struct pod_object *out,
		      char *err, size_t errlen);

/** The key of a pod in a set: "<ns>/<name>" into @p key (>= POD_KEY_MAX).
 * @return its length. */
#define POD_KEY_MAX (POD_LABEL_MAX + 1 + POD_NAME_MAX + 1)
size_t pod_object_key(const struct pod_object *p, char *key);

/** A short word for @p v, for logs ("eligible", "hostNetwork", ...). */
const char *pod_verdict_str(enum pod_verdict v);

#endif
