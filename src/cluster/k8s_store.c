/* src/cluster/k8s_store.c - decode Services, EndpointSlices and Namespaces into the cluster store.
 *
 * The store is the control thread's private, mutable view: decoded objects in
 * hash maps keyed by namespace/name, plus the set of service keys and
 * namespaces that changed since the last publish (cluster_snapshot.c turns
 * those into a new snapshot). Every field read from an API object is
 * type-checked; a malformed object is rejected whole and the store is left as
 * it was. Only ready endpoint addresses are kept: nothing else is ever served.
 */
#include "nodedns/cluster/cluster.h"

#include "cluster_internal.h"
#include "nodedns/util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#define SVC_NAME_LABEL "kubernetes.io/service-name"
#define LOAD_FILE_MAX_BYTES (1024ull * 1024 * 1024) /* larger snapshot files are refused */

/* ------------------------------------------------------------ hash map */

uint64_t k8s_hash(uint64_t seed, const void *key, size_t klen)
{
	const uint8_t *p = key;
	uint64_t h = seed ^ 0xcbf29ce484222325ull;

	for (size_t i = 0; i < klen; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	/* murmur3 finalizer: FNV's low bits are weak, and we index with them */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

int k8s_hmap_init(struct k8s_hmap *m, uint64_t seed)
{
	m->nb = 16;
	m->n = 0;
	m->seed = seed;
	m->b = calloc(m->nb, sizeof(*m->b));
	return m->b ? 0 : -ENOMEM;
}

void k8s_hmap_clear(struct k8s_hmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->nb; i++) {
		struct k8s_hnode *n = m->b[i];
		while (n) {
			struct k8s_hnode *next = n->next;
			if (free_val)
				free_val(n->val);
			free(n);
			n = next;
		}
		m->b[i] = NULL;
	}
	m->n = 0;
}

void k8s_hmap_deinit(struct k8s_hmap *m, void (*free_val)(void *))
{
	if (!m->b)
		return;
	k8s_hmap_clear(m, free_val);
	free(m->b);
	m->b = NULL;
	m->nb = 0;
}

static struct k8s_hnode **hmap_find(const struct k8s_hmap *m, uint64_t h, const void *key,
				    size_t klen)
{
	struct k8s_hnode **pp = &m->b[h & (m->nb - 1)];

	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
			return pp;
	}
	return pp;
}

void *k8s_hmap_get(const struct k8s_hmap *m, const void *key, size_t klen)
{
	struct k8s_hnode **pp = hmap_find(m, k8s_hash(m->seed, key, klen), key, klen);

	return *pp ? (*pp)->val : NULL;
}

static void hmap_grow(struct k8s_hmap *m)
{
	size_t nb = m->nb * 2;
	struct k8s_hnode **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* keep the longer chains */
	for (size_t i = 0; i < m->nb; i++) {
		struct k8s_hnode *n = m->b[i];
		while (n) {
			struct k8s_hnode *next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
			n = next;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

int k8s_hmap_put(struct k8s_hmap *m, const void *key, size_t klen, void *val, void **old)
{
	uint64_t h = k8s_hash(m->seed, key, klen);
	struct k8s_hnode **pp = hmap_find(m, h, key, klen);

	if (*pp) {
		if (old)
			*old = (*pp)->val;
		(*pp)->val = val;
		return 0;
	}
	if (klen > UINT16_MAX)
		return -EINVAL;
	struct k8s_hnode *n = malloc(sizeof(*n) + klen);
	if (!n)
		return -ENOMEM;
	n->hash = h;
	n->val = val;
	n->klen = (uint16_t)klen;
	memcpy(n->key, key, klen);
	n->next = NULL;
	*pp = n;
	m->n++;
	if (old)
		*old = NULL;
	if (m->n > m->nb)
		hmap_grow(m);
	return 0;
}

void *k8s_hmap_del(struct k8s_hmap *m, const void *key, size_t klen, bool *found)
{
	struct k8s_hnode **pp = hmap_find(m, k8s_hash(m->seed, key, klen), key, klen);
	struct k8s_hnode *n = *pp;
	void *val;

	if (found)
		*found = n != NULL;
	if (!n)
		return NULL;
	*pp = n->next;
	val = n->val;
	free(n);
	m->n--;
	return val;
}

size_t k8s_svc_key(char *buf, const char *ns, size_t ns_len, const char *name, size_t name_len)
{
	memcpy(buf, ns, ns_len);
	buf[ns_len] = '/';
	memcpy(buf + ns_len + 1, name, name_len);
	buf[ns_len + 1 + name_len] = '\0';
	return ns_len + 1 + name_len;
}

/* ------------------------------------------------------------ decoding */

/* Say why in @p err (may be NULL) and return @p rc. */
__attribute__((format(printf, 4, 5))) static int fail_rc(int rc, char *err, size_t errlen,
							  const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

#define fail(err, errlen, ...) fail_rc(-EINVAL, err, errlen, __VA_ARGS__)

/* An optional string member: absent or null gives *s = NULL. */
static int opt_string(const json_t *obj, const char *key, const char *what, const char **s,
		      size_t *len, char *err, size_t errlen)
{
	const json_t *v = json_object_get(obj, key);

	*s = NULL;
	*len = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return fail(err, errlen, "%s: not a string", what);
	*s = json_string_value(v);
	*len = json_string_length(v);
	if (strlen(*s) != *len)
		return fail(err, errlen, "%s: contains a NUL byte", what);
	return 0;
}

/* An optional object (or array) member: absent or null gives NULL. */
static int opt_member(const json_t *obj, const char *key, bool array, const char *what,
		      const json_t **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (array ? !json_is_array(v) : !json_is_object(v))
		return fail(err, errlen, "%s: not an %s", what, array ? "array" : "object");
	*out = v;
	return 0;
}

static bool label_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* A DNS label (1..63 letters, digits, '-', '_'), copied lower-cased. */
static int copy_label(const char *s, size_t len, const char *what, char *out, uint8_t *outlen,
		      char *err, size_t errlen)
{
	if (len == 0 || len > K8S_LABEL_MAX)
		return fail(err, errlen, "%s: length %zu is not 1..%d", what, len, K8S_LABEL_MAX);
	for (size_t i = 0; i < len; i++) {
		if (!label_char((unsigned char)s[i]))
			return fail(err, errlen, "%s: invalid character in \"%.*s\"", what,
				    (int)len, s);
		out[i] = lower(s[i]);
	}
	if (outlen)
		*outlen = (uint8_t)len;
	return 0;
}

static int parse_ip(const char *s, size_t len, int fam, struct k8s_ip *ip)
{
	char buf[INET6_ADDRSTRLEN + 1];

	if (len == 0 || len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(ip, 0, sizeof(*ip));
	if (fam != 6 && inet_pton(AF_INET, buf, ip->b) == 1) {
		ip->fam = 4;
		return 0;
	}
	if (fam != 4 && inet_pton(AF_INET6, buf, ip->b) == 1) {
		ip->fam = 6;
		return 0;
	}
	return -EINVAL;
}

/* A domain name in presentation form (one optional trailing dot) to lower-case
 * wire form. */
static int name_to_wire(const char *s, size_t len, uint8_t *out, uint8_t *outlen)
{
	size_t o = 0, start = 0;

	if (len && s[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return -EINVAL;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		size_t ll = i - start;
		if (ll == 0 || ll > K8S_LABEL_MAX)
			return -EINVAL;
		out[o++] = (uint8_t)ll;
		for (size_t k = start; k < i; k++) {
			if (!label_char((unsigned char)s[k]))
				return -EINVAL;
			out[o++] = (uint8_t)lower(s[k]);
		}
		start = i + 1;
	}
	out[o++] = 0;
	*outlen = (uint8_t)o;
	return 0;
}

/* The endpoint name of an address without a hostname: the IP text with '.'
 * and ':' turned into '-', and a '0' added where that leaves a dash at either
 * end ("::1" -> "0--1", "fd00::" -> "fd00--0"), as CoreDNS does at the end. */
static void dashed_label(const struct k8s_ip *ip, char *out, uint8_t *outlen)
{
	char txt[INET6_ADDRSTRLEN];
	size_t n = 0;

	inet_ntop(ip->fam == 4 ? AF_INET : AF_INET6, ip->b, txt, sizeof(txt));
	if (txt[0] == ':')
		out[n++] = '0';
	for (const char *p = txt; *p; p++)
		out[n++] = (*p == '.' || *p == ':') ? '-' : *p;
	if (out[n - 1] == '-')
		out[n++] = '0';
	*outlen = (uint8_t)n;
}

static int parse_proto(const char *s, size_t len)
{
	if (!s)
		return K8S_PROTO_TCP; /* the API default */
	if (len == 3 && strncasecmp(s, "tcp", 3) == 0)
		return K8S_PROTO_TCP;
	if (len == 3 && strncasecmp(s, "udp", 3) == 0)
		return K8S_PROTO_UDP;
	if (len == 4 && strncasecmp(s, "sctp", 4) == 0)
		return K8S_PROTO_SCTP;
	return K8S_PROTO_OTHER;
}

/* metadata.name (and .namespace when @p namespaced) */
static int decode_meta(const json_t *obj, bool namespaced, bool label_name, char *ns, char *name,
		       const json_t **labels, char *err, size_t errlen)
{
	const json_t *meta;
	const char *s;
	size_t len;
	int rc;

	if (!json_is_object(obj))
		return fail(err, errlen, "not an object");
	if ((rc = opt_member(obj, "metadata", false, "metadata", &meta, err, errlen)) < 0)
		return rc;
	if (!meta)
		return fail(err, errlen, "metadata: missing");
	if ((rc = opt_string(meta, "name", "metadata.name", &s, &len, err, errlen)) < 0)
		return rc;
	if (!s)
		return fail(err, errlen, "metadata.name: missing");
	if (label_name) {
		if ((rc = copy_label(s, len, "metadata.name", name, NULL, err, errlen)) < 0)
			return rc;
		name[len] = '\0';
	} else {
		if (len == 0 || len > K8S_SLICE_NAME_MAX)
			return fail(err, errlen, "metadata.name: length %zu is not 1..%d", len,
				    K8S_SLICE_NAME_MAX);
		memcpy(name, s, len + 1);
	}
	if (namespaced) {
		if ((rc = opt_string(meta, "namespace", "metadata.namespace", &s, &len, err,
				     errlen)) < 0)
			return rc;
		if (!s)
			return fail(err, errlen, "metadata.namespace: missing");
		if ((rc = copy_label(s, len, "metadata.namespace", ns, NULL, err, errlen)) < 0)
			return rc;
		ns[len] = '\0';
	}
	if (labels)
		return opt_member(meta, "labels", false, "metadata.labels", labels, err, errlen);
	return 0;
}

static int decode_ports(const json_t *arr, const char *what, bool service,
			struct k8s_port **out, uint16_t *nout, char *err, size_t errlen)
{
	size_t n = arr ? json_array_size(arr) : 0;
	struct k8s_port *ports;
	char path[64];
	int rc = 0;

	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	if (n > K8S_MAX_PORTS)
		return fail(err, errlen, "%s: %zu ports, at most %d", what, n, K8S_MAX_PORTS);
	ports = calloc(n, sizeof(*ports));
	if (!ports)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *p = json_array_get(arr, i);
		const json_t *num;
		const char *s;
		size_t len;

		snprintf(path, sizeof(path), "%s[%zu]", what, i);
		if (!json_is_object(p)) {
			rc = fail(err, errlen, "%s: not an object", path);
			goto out;
		}
		if ((rc = opt_string(p, "name", path, &s, &len, err, errlen)) < 0)
			goto out;
		if (s && len && (rc = copy_label(s, len, path, ports[i].name, &ports[i].name_len,
						 err, errlen)) < 0)
			goto out;
		if ((rc = opt_string(p, "protocol", path, &s, &len, err, errlen)) < 0)
			goto out;
		ports[i].proto = (uint8_t)parse_proto(s, len);
		num = json_object_get(p, "port");
		if ((!num || json_is_null(num)) && !service)
			continue; /* "all ports": no SRV */
		if (!json_is_integer(num) || json_integer_value(num) < (service ? 1 : 0) ||
		    json_integer_value(num) > 65535) {
			rc = fail(err, errlen, "%s.port: not an integer in %d..65535", path,
				  service ? 1 : 0);
			goto out;
		}
		ports[i].port = (uint16_t)json_integer_value(num);
	}
out:
	if (rc < 0) {
		free(ports);
		return rc;
	}
	*out = ports;
	*nout = (uint16_t)n;
	return 0;
}

static void service_free(void *p)
{
	struct k8s_service *svc = p;

	if (svc)
		free(svc->ports);
	free(svc);
}

static void slice_free(void *p)
{
	struct k8s_slice *sl = p;

	if (sl) {
		free(sl->ports);
		free(sl->addrs);
	}
	free(sl);
}

/* One ClusterIP entry: "None" marks a headless Service, "" is no address. */
static int add_cluster_ip(struct k8s_service *svc, const char *s, size_t len, bool *headless,
			  const char *what, char *err, size_t errlen)
{
	if (len == 0)
		return 0;
	if (len == 4 && strcmp(s, "None") == 0) {
		*headless = true;
		return 0;
	}
	if (svc->n_ips >= K8S_MAX_CLUSTER_IPS)
		return fail(err, errlen, "%s: more than %d addresses", what, K8S_MAX_CLUSTER_IPS);
	if (parse_ip(s, len, 0, &svc->ips[svc->n_ips]) < 0)
		return fail(err, errlen, "%s: \"%.*s\" is not an IP address", what,
			    (int)(len > 64 ? 64 : len), s);
	svc->n_ips++;
	return 0;
}

static int decode_service(const json_t *obj, struct k8s_service *svc, char *err, size_t errlen)
{
	const json_t *spec, *ips, *ports;
	const char *s;
	size_t len;
	bool headless = false;
	int rc;

	if ((rc = decode_meta(obj, true, true, svc->ns, svc->name, NULL, err, errlen)) < 0)
		return rc;
	if ((rc = opt_member(obj, "spec", false, "spec", &spec, err, errlen)) < 0)
		return rc;
	svc->kind = K8S_SVC_CLUSTERIP;
	if (!spec)
		return 0;
	if ((rc = opt_string(spec, "type", "spec.type", &s, &len, err, errlen)) < 0)
		return rc;
	if (s && strcmp(s, "ExternalName") == 0)
		svc->kind = K8S_SVC_EXTERNAL;

	/* clusterIPs (dual-stack) wins over clusterIP, which is clusterIPs[0] */
	if ((rc = opt_member(spec, "clusterIPs", true, "spec.clusterIPs", &ips, err, errlen)) < 0)
		return rc;
	if ((rc = opt_string(spec, "clusterIP", "spec.clusterIP", &s, &len, err, errlen)) < 0)
		return rc;
	if (ips) {
		char path[40];
		if (json_array_size(ips) > K8S_MAX_CLUSTER_IPS)
			return fail(err, errlen, "spec.clusterIPs: more than %d addresses",
				    K8S_MAX_CLUSTER_IPS);
		for (size_t i = 0; i < json_array_size(ips); i++) {
			const json_t *v = json_array_get(ips, i);
			snprintf(path, sizeof(path), "spec.clusterIPs[%zu]", i);
			if (!json_is_string(v) ||
			    strlen(json_string_value(v)) != json_string_length(v))
				return fail(err, errlen, "%s: not a string", path);
			if ((rc = add_cluster_ip(svc, json_string_value(v), json_string_length(v),
						 &headless, path, err, errlen)) < 0)
				return rc;
		}
	} else if (s) {
		if ((rc = add_cluster_ip(svc, s, len, &headless, "spec.clusterIP", err, errlen)) < 0)
			return rc;
	}

	if ((rc = opt_string(spec, "externalName", "spec.externalName", &s, &len, err, errlen)) <
	    0)
		return rc;
	if (svc->kind == K8S_SVC_EXTERNAL) {
		struct k8s_ip ip;
		svc->n_ips = 0;
		/* An IP literal is not a name: such a Service gets no CNAME (CoreDNS
		 * does not serve it either). */
		if (s && len && parse_ip(s, len, 0, &ip) < 0 &&
		    name_to_wire(s, len, svc->ext, &svc->ext_len) < 0)
			return fail(err, errlen, "spec.externalName: \"%.*s\" is not a domain name",
				    (int)(len > 64 ? 64 : len), s);
	} else if (headless) {
		svc->kind = K8S_SVC_HEADLESS;
		svc->n_ips = 0;
	}

	if ((rc = opt_member(spec, "ports", true, "spec.ports", &ports, err, errlen)) < 0)
		return rc;
	return decode_ports(ports, "spec.ports", true, &svc->ports, &svc->n_ports, err, errlen);
}

static int slice_add_addr(struct k8s_slice *sl, uint32_t *cap, const struct k8s_addr *a)
{
	if (sl->n_addrs == *cap) {
		uint32_t ncap = *cap ? *cap * 2 : 8;
		struct k8s_addr *v;
		if (ncap > K8S_MAX_ADDRS_PER_SLICE)
			ncap = K8S_MAX_ADDRS_PER_SLICE;
		v = realloc(sl->addrs, ncap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		sl->addrs = v;
		*cap = ncap;
	}
	sl->addrs[sl->n_addrs++] = *a;
	return 0;
}

static int decode_endpoint(struct k8s_slice *sl, int fam, const json_t *ep, size_t i,
			   uint32_t *cap, char *err, size_t errlen)
{
	const json_t *addrs, *cond, *ready = NULL;
	struct k8s_addr a;
	char path[64];
	const char *hn;
	size_t hnlen;
	int rc;

	snprintf(path, sizeof(path), "endpoints[%zu]", i);
	if (!json_is_object(ep))
		return fail(err, errlen, "%s: not an object", path);
	if ((rc = opt_member(ep, "addresses", true, path, &addrs, err, errlen)) < 0)
		return rc;
	if (addrs && json_array_size(addrs) > K8S_MAX_ADDRS_PER_ENDPOINT)
		return fail(err, errlen, "%s.addresses: more than %d", path,
			    K8S_MAX_ADDRS_PER_ENDPOINT);
	if ((rc = opt_member(ep, "conditions", false, path, &cond, err, errlen)) < 0)
		return rc;
	if (cond) {
		ready = json_object_get(cond, "ready");
		if (ready && !json_is_null(ready) && !json_is_boolean(ready))
			return fail(err, errlen, "%s.conditions.ready: not a boolean", path);
	}
	memset(&a, 0, sizeof(a));
	if ((rc = opt_string(ep, "hostname", path, &hn, &hnlen, err, errlen)) < 0)
		return rc;
	if (hn && hnlen && (rc = copy_label(hn, hnlen, "hostname", a.label, &a.label_len, err,
					    errlen)) < 0)
		return rc;

	for (size_t k = 0; k < json_array_size(addrs); k++) {
		const json_t *v = json_array_get(addrs, k);
		const char *s = json_string_value(v);

		if (!json_is_string(v) || strlen(s) != json_string_length(v))
			return fail(err, errlen, "%s.addresses[%zu]: not a string", path, k);
		if (fam == 0)
			continue; /* FQDN slice: not served */
		if (parse_ip(s, json_string_length(v), fam, &a.ip) < 0)
			return fail(err, errlen, "%s.addresses[%zu]: \"%.*s\" is not an IPv%d address",
				    path, k, (int)(strlen(s) > 64 ? 64 : strlen(s)), s, fam);
		/* absent or null "ready" means ready */
		if (ready && json_is_false(ready))
			continue;
		if (sl->n_addrs >= K8S_MAX_ADDRS_PER_SLICE)
			return fail(err, errlen, "endpoints: more than %d ready addresses",
				    K8S_MAX_ADDRS_PER_SLICE);
		if (!hn || !hnlen)
			dashed_label(&a.ip, a.label, &a.label_len);
		if ((rc = slice_add_addr(sl, cap, &a)) < 0)
			return rc;
	}
	return 0;
}

static int decode_slice(const json_t *obj, struct k8s_slice *sl, char *err, size_t errlen)
{
	const json_t *labels, *eps, *ports;
	const char *s;
	size_t len;
	uint32_t cap = 0;
	int fam = 0, rc;

	if ((rc = decode_meta(obj, true, false, sl->ns, sl->name, &labels, err, errlen)) < 0)
		return rc;
	if (labels) {
		if ((rc = opt_string(labels, SVC_NAME_LABEL, "metadata.labels[" SVC_NAME_LABEL "]",
				     &s, &len, err, errlen)) < 0)
			return rc;
		if (s && len) {
			if ((rc = copy_label(s, len, "metadata.labels[" SVC_NAME_LABEL "]",
					     sl->svc, NULL, err, errlen)) < 0)
				return rc;
			sl->svc[len] = '\0';
		}
	}
	if ((rc = opt_string(obj, "addressType", "addressType", &s, &len, err, errlen)) < 0)
		return rc;
	if (!s)
		return fail(err, errlen, "addressType: missing");
	if (strcmp(s, "IPv4") == 0)
		fam = 4;
	else if (strcmp(s, "IPv6") == 0)
		fam = 6; /* anything else ("FQDN") is kept but not served */

	if ((rc = opt_member(obj, "ports", true, "ports", &ports, err, errlen)) < 0)
		return rc;
	if ((rc = decode_ports(ports, "ports", false, &sl->ports, &sl->n_ports, err, errlen)) < 0)
		return rc;
	if ((rc = opt_member(obj, "endpoints", true, "endpoints", &eps, err, errlen)) < 0)
		return rc;
	if (eps && json_array_size(eps) > K8S_MAX_ENDPOINTS)
		return fail(err, errlen, "endpoints: %zu, at most %d", json_array_size(eps),
			    K8S_MAX_ENDPOINTS);
	for (size_t i = 0; eps && i < json_array_size(eps); i++) {
		if ((rc = decode_endpoint(sl, fam, json_array_get(eps, i), i, &cap, err,
					  errlen)) < 0)
			return rc;
	}
	return 0;
}

/* ---------------------------------------------------------------- store */

static void list_free(void *p)
{
	struct k8s_slice_list *l = p;

	if (l)
		free(l->v);
	free(l);
}

struct k8s_store *k8s_store_new(const struct cluster_config *cfg)
{
	struct k8s_store *s = calloc(1, sizeof(*s));
	struct k8s_hmap *maps[7];

	if (!s)
		return NULL;
	if (cfg)
		s->cfg = *cfg;
	if (getrandom(&s->seed, sizeof(s->seed), GRND_NONBLOCK) != sizeof(s->seed))
		s->seed = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ull;
	maps[0] = &s->svcs;
	maps[1] = &s->slices;
	maps[2] = &s->nss;
	maps[3] = &s->svc_slices;
	maps[4] = &s->ns_svcs;
	maps[5] = &s->dirty_svc;
	maps[6] = &s->dirty_ns;
	for (size_t i = 0; i < 7; i++) {
		if (k8s_hmap_init(maps[i], s->seed + i) < 0) {
			k8s_store_free(s);
			return NULL;
		}
	}
	return s;
}

static void free_maps(struct k8s_store *s)
{
	k8s_hmap_deinit(&s->svcs, service_free);
	k8s_hmap_deinit(&s->slices, slice_free);
	k8s_hmap_deinit(&s->nss, NULL);
	k8s_hmap_deinit(&s->svc_slices, list_free);
	k8s_hmap_deinit(&s->ns_svcs, NULL);
	k8s_hmap_deinit(&s->dirty_svc, NULL);
	k8s_hmap_deinit(&s->dirty_ns, NULL);
}

void k8s_store_free(struct k8s_store *s)
{
	if (!s)
		return;
	free_maps(s);
	cluster_snapshot_unref(s->last);
	free(s);
}

static uint64_t n_objects(const struct k8s_store *s)
{
	return s->svcs.n + s->slices.n + s->nss.n;
}

static int mark(struct k8s_hmap *dirty, const char *key, size_t klen)
{
	return k8s_hmap_put(dirty, key, klen, (void *)1, NULL);
}

static int apply_service(struct k8s_store *s, enum k8s_event ev, const json_t *obj, char *err,
			 size_t errlen)
{
	struct k8s_service *svc = calloc(1, sizeof(*svc)), *old;
	char key[K8S_KEY_MAX];
	size_t klen, nslen;
	uintptr_t cnt;
	int rc;

	if (!svc)
		return -ENOMEM;
	rc = ev == K8S_DELETED ? decode_meta(obj, true, true, svc->ns, svc->name, NULL, err, errlen)
			       : decode_service(obj, svc, err, errlen);
	if (rc < 0)
		goto out;
	nslen = strlen(svc->ns);
	klen = k8s_svc_key(key, svc->ns, nslen, svc->name, strlen(svc->name));
	old = k8s_hmap_get(&s->svcs, key, klen);
	if (ev != K8S_DELETED && !old && n_objects(s) >= K8S_MAX_OBJECTS) {
		rc = fail_rc(-ENOSPC, err, errlen, "store full: %u objects", K8S_MAX_OBJECTS);
		goto out;
	}
	if ((rc = mark(&s->dirty_svc, key, klen)) < 0 || (rc = mark(&s->dirty_ns, key, nslen)) < 0)
		goto out;
	cnt = (uintptr_t)k8s_hmap_get(&s->ns_svcs, key, nslen);
	if (ev == K8S_DELETED) {
		if (!old)
			goto out;
		k8s_hmap_del(&s->svcs, key, klen, NULL);
		if (cnt <= 1)
			k8s_hmap_del(&s->ns_svcs, key, nslen, NULL);
		else
			k8s_hmap_put(&s->ns_svcs, key, nslen, (void *)(cnt - 1), NULL);
		service_free(old);
		goto out;
	}
	if ((rc = k8s_hmap_put(&s->svcs, key, klen, svc, NULL)) < 0)
		goto out;
	if (!old && (rc = k8s_hmap_put(&s->ns_svcs, key, nslen, (void *)(cnt + 1), NULL)) < 0) {
		k8s_hmap_del(&s->svcs, key, klen, NULL);
		goto out;
	}
	service_free(old);
	return 0;
out:
	service_free(svc);
	return rc;
}

static void list_remove(struct k8s_store *s, struct k8s_slice *sl)
{
	char key[K8S_KEY_MAX];
	size_t klen;
	struct k8s_slice_list *l;

	if (!sl->svc[0])
		return;
	klen = k8s_svc_key(key, sl->ns, strlen(sl->ns), sl->svc, strlen(sl->svc));
	l = k8s_hmap_get(&s->svc_slices, key, klen);
	if (!l)
		return;
	for (uint32_t i = 0; i < l->n; i++) {
		if (l->v[i] == sl) {
			l->v[i] = l->v[--l->n];
			break;
		}
	}
	if (l->n == 0)
		list_free(k8s_hmap_del(&s->svc_slices, key, klen, NULL));
}

/* Make room for one more slice in the list of @p key (creating it). */
static int list_reserve(struct k8s_store *s, const char *key, size_t klen,
			struct k8s_slice_list **out)
{
	struct k8s_slice_list *l = k8s_hmap_get(&s->svc_slices, key, klen);
	int rc;

	if (!l) {
		l = calloc(1, sizeof(*l));
		if (!l || !(l->v = malloc(4 * sizeof(*l->v)))) {
			free(l);
			return -ENOMEM;
		}
		l->cap = 4;
		if ((rc = k8s_hmap_put(&s->svc_slices, key, klen, l, NULL)) < 0) {
			list_free(l);
			return rc;
		}
	}
	if (l->n == l->cap) {
		struct k8s_slice **v = realloc(l->v, 2 * l->cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap *= 2;
	}
	*out = l;
	return 0;
}

static int apply_slice(struct k8s_store *s, enum k8s_event ev, const json_t *obj, char *err,
		       size_t errlen)
{
	struct k8s_slice *sl = calloc(1, sizeof(*sl)), *old;
	struct k8s_slice_list *l = NULL;
	char key[K8S_KEY_MAX + K8S_SLICE_NAME_MAX], skey[K8S_KEY_MAX];
	size_t klen, sklen;
	int rc;

	if (!sl)
		return -ENOMEM;
	rc = ev == K8S_DELETED ? decode_meta(obj, true, false, sl->ns, sl->name, NULL, err, errlen)
			       : decode_slice(obj, sl, err, errlen);
	if (rc < 0)
		goto out;
	klen = k8s_svc_key(key, sl->ns, strlen(sl->ns), sl->name, strlen(sl->name));
	old = k8s_hmap_get(&s->slices, key, klen);
	if (old && old->svc[0]) {
		sklen = k8s_svc_key(skey, old->ns, strlen(old->ns), old->svc, strlen(old->svc));
		if ((rc = mark(&s->dirty_svc, skey, sklen)) < 0)
			goto out;
	}
	if (ev == K8S_DELETED) {
		if (old) {
			k8s_hmap_del(&s->slices, key, klen, NULL);
			list_remove(s, old);
			s->n_addrs -= old->n_addrs;
			slice_free(old);
		}
		goto out;
	}
	if ((!old && n_objects(s) >= K8S_MAX_OBJECTS) ||
	    s->n_addrs - (old ? old->n_addrs : 0) + sl->n_addrs > K8S_MAX_ADDRS_TOTAL) {
		rc = fail_rc(-ENOSPC, err, errlen, "store full: %u objects or %u addresses",
			     K8S_MAX_OBJECTS, K8S_MAX_ADDRS_TOTAL);
		goto out;
	}
	if (sl->svc[0]) {
		sklen = k8s_svc_key(skey, sl->ns, strlen(sl->ns), sl->svc, strlen(sl->svc));
		if ((rc = mark(&s->dirty_svc, skey, sklen)) < 0 ||
		    (rc = list_reserve(s, skey, sklen, &l)) < 0)
			goto out;
	}
	if ((rc = k8s_hmap_put(&s->slices, key, klen, sl, NULL)) < 0)
		goto out;
	if (l)
		l->v[l->n++] = sl; /* before list_remove(old) can free this list */
	if (old) {
		list_remove(s, old);
		s->n_addrs -= old->n_addrs;
		slice_free(old);
	}
	s->n_addrs += sl->n_addrs;
	return 0;
out:
	slice_free(sl);
	return rc;
}

static int apply_namespace(struct k8s_store *s, enum k8s_event ev, const json_t *obj, char *err,
			   size_t errlen)
{
	char name[K8S_LABEL_MAX + 1];
	size_t len;
	int rc;

	if ((rc = decode_meta(obj, false, true, NULL, name, NULL, err, errlen)) < 0)
		return rc;
	len = strlen(name);
	if (ev != K8S_DELETED && !k8s_hmap_get(&s->nss, name, len) &&
	    n_objects(s) >= K8S_MAX_OBJECTS) {
		return fail_rc(-ENOSPC, err, errlen, "store full: %u objects", K8S_MAX_OBJECTS);
	}
	if ((rc = mark(&s->dirty_ns, name, len)) < 0)
		return rc;
	if (ev == K8S_DELETED) {
		k8s_hmap_del(&s->nss, name, len, NULL);
		return 0;
	}
	return k8s_hmap_put(&s->nss, name, len, (void *)1, NULL);
}

int k8s_store_apply(struct k8s_store *s, enum k8s_kind kind, enum k8s_event ev,
		    const struct json_t *obj, char *err, size_t errlen)
{
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!obj || ev > K8S_DELETED) {
		rc = fail(err, errlen, "no object or bad event");
	} else {
		switch (kind) {
		case K8S_SERVICE:
			rc = apply_service(s, ev, obj, err, errlen);
			break;
		case K8S_ENDPOINTSLICE:
			rc = apply_slice(s, ev, obj, err, errlen);
			break;
		case K8S_NAMESPACE:
			rc = apply_namespace(s, ev, obj, err, errlen);
			break;
		default:
			rc = fail(err, errlen, "unknown kind %d", (int)kind);
		}
	}
	if (rc == -ENOMEM)
		fail_rc(rc, err, errlen, "out of memory");
	if (rc < 0)
		s->stats.events_rejected++;
	else
		s->stats.events_applied++;
	return rc;
}

void k8s_store_clear_kind(struct k8s_store *s, enum k8s_kind kind)
{
	switch (kind) {
	case K8S_SERVICE:
		k8s_hmap_clear(&s->svcs, service_free);
		k8s_hmap_clear(&s->ns_svcs, NULL);
		break;
	case K8S_ENDPOINTSLICE:
		k8s_hmap_clear(&s->svc_slices, list_free);
		k8s_hmap_clear(&s->slices, slice_free);
		s->n_addrs = 0;
		break;
	case K8S_NAMESPACE:
		k8s_hmap_clear(&s->nss, NULL);
		break;
	default:
		return;
	}
	/* The next publish compares every record with the last snapshot and
	 * still shares what did not change. */
	s->all_dirty = true;
}

void k8s_store_get_stats(const struct k8s_store *s, struct k8s_store_stats *out)
{
	*out = s->stats;
	out->services = s->svcs.n;
	out->endpointslices = s->slices.n;
	out->namespaces = s->nss.n;
}

/* ------------------------------------------------------------ load file */

static int kind_of(const char *k, enum k8s_kind *out)
{
	if (!k)
		return -1;
	if (strcmp(k, "Service") == 0)
		*out = K8S_SERVICE;
	else if (strcmp(k, "EndpointSlice") == 0)
		*out = K8S_ENDPOINTSLICE;
	else if (strcmp(k, "Namespace") == 0)
		*out = K8S_NAMESPACE;
	else
		return 1;
	return 0;
}

/* Apply a List (or one object) to the fresh store @p t. */
static int load_doc(struct k8s_store *t, const json_t *doc, uint64_t *skipped, char *err,
		    size_t errlen)
{
	const json_t *items;
	const char *kind, *item_kind = NULL;
	char ikind[64];
	size_t len;
	enum k8s_kind k;
	int rc;

	if (!json_is_object(doc))
		return fail(err, errlen, "top level: not an object");
	if ((rc = opt_string(doc, "kind", "kind", &kind, &len, err, errlen)) < 0)
		return rc;
	if (!kind)
		return fail(err, errlen, "kind: missing");
	if (kind_of(kind, &k) == 0) {
		return k8s_store_apply(t, k, K8S_ADDED, doc, err, errlen);
	}
	if (len < 4 || strcmp(kind + len - 4, "List") != 0)
		return fail(err, errlen, "kind: \"%.40s\" is neither a List nor a Service, "
				    "EndpointSlice or Namespace", kind);
	/* "ServiceList" from the API: its items carry no kind of their own */
	if (len > 4 && len - 4 < sizeof(ikind)) {
		memcpy(ikind, kind, len - 4);
		ikind[len - 4] = '\0';
		item_kind = ikind;
	}
	if ((rc = opt_member(doc, "items", true, "items", &items, err, errlen)) < 0)
		return rc;
	for (size_t i = 0; items && i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		const char *ik = item_kind;
		char ierr[200];

		if (!json_is_object(it))
			return fail(err, errlen, "items[%zu]: not an object", i);
		if ((rc = opt_string(it, "kind", "kind", &kind, &len, ierr, sizeof(ierr))) < 0)
			return fail(err, errlen, "items[%zu]: %s", i, ierr);
		if (kind)
			ik = kind;
		if (!ik)
			return fail(err, errlen, "items[%zu]: kind missing", i);
		rc = kind_of(ik, &k);
		if (rc > 0) {
			(*skipped)++;
			continue;
		}
		rc = k8s_store_apply(t, k, K8S_ADDED, it, ierr, sizeof(ierr));
		if (rc < 0)
			return fail_rc(rc, err, errlen, "items[%zu] (%s): %s", i, ik, ierr);
	}
	return 0;
}

int k8s_store_load_file(struct k8s_store *s, const char *path, char *err, size_t errlen)
{
	struct k8s_store *t;
	json_error_t jerr;
	uint64_t skipped = 0;
	struct stat st;
	json_t *doc;
	FILE *f;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	f = fopen(path, "r");
	if (!f) {
		rc = -errno;
		return fail_rc(rc, err, errlen, "%s: %s", path, strerror(-rc));
	}
	if (fstat(fileno(f), &st) == 0 && (uint64_t)st.st_size > LOAD_FILE_MAX_BYTES) {
		fclose(f);
		return fail_rc(-EFBIG, err, errlen, "%s: larger than %llu bytes", path,
			       (unsigned long long)LOAD_FILE_MAX_BYTES);
	}
	doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (!doc)
		return fail(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
	t = k8s_store_new(&s->cfg);
	if (!t) {
		json_decref(doc);
		return -ENOMEM;
	}
	rc = load_doc(t, doc, &skipped, err, errlen);
	json_decref(doc);
	if (rc < 0) {
		k8s_store_free(t);
		return rc;
	}

	/* Swap the object maps: s gets the file's content, t the old one. */
	struct k8s_hmap tmp;
#define SWAP(field) (tmp = s->field, s->field = t->field, t->field = tmp)
	SWAP(svcs);
	SWAP(slices);
	SWAP(nss);
	SWAP(svc_slices);
	SWAP(ns_svcs);
#undef SWAP
	uint64_t n = s->n_addrs;
	s->n_addrs = t->n_addrs;
	t->n_addrs = n;
	s->all_dirty = true;
	s->stats.events_applied += t->stats.events_applied;
	k8s_store_free(t);
	if (skipped)
		log_info("cluster", "%s: skipped %llu objects of other kinds", path,
			 (unsigned long long)skipped);
	return 0;
}
