/* src/cluster/k8s_objects.c - decode Services, EndpointSlices, Namespaces into compact structs.
 *
 * Every field read from an API object is type-checked; a malformed object is
 * rejected whole with a reason. Only ready endpoint addresses are kept:
 * nothing else is ever served.
 */
#include "k8s_objects_internal.h"

#include "nodedns/util/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SVC_NAME_LABEL "kubernetes.io/service-name"

size_t k8s_objects_key(char *buf, const char *ns, size_t ns_len, const char *name,
		       size_t name_len)
{
	memcpy(buf, ns, ns_len);
	buf[ns_len] = '/';
	memcpy(buf + ns_len + 1, name, name_len);
	buf[ns_len + 1 + name_len] = '\0';
	return ns_len + 1 + name_len;
}

/* ------------------------------------------------------------ decoding */

int k8s_objects_fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* The common case: a malformed object. */
#define fail(err, errlen, ...) k8s_objects_fail(-EINVAL, err, errlen, __VA_ARGS__)

int k8s_objects_opt_string(const json_t *obj, const char *key, const char *what, const char **s,
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

int k8s_objects_opt_member(const json_t *obj, const char *key, bool array, const char *what,
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

/* A DNS label (1..63 letters, digits, '-', '_'), copied lower-cased. */
int k8s_objects_copy_label(const char *s, size_t len, const char *what, char *out, uint8_t *outlen,
		      char *err, size_t errlen)
{
	if (len == 0 || len > K8S_LABEL_MAX)
		return fail(err, errlen, "%s: length %zu is not 1..%d", what, len, K8S_LABEL_MAX);
	for (size_t i = 0; i < len; i++) {
		if (!label_char((unsigned char)s[i]))
			return fail(err, errlen, "%s: invalid character in \"%.*s\"", what,
				    (int)len, s);
		out[i] = (char)wire_lower((uint8_t)s[i]);
	}
	if (outlen)
		*outlen = (uint8_t)len;
	return 0;
}

int k8s_objects_parse_ip(const char *s, size_t len, int fam, struct k8s_ip *ip)
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
			out[o++] = wire_lower((uint8_t)s[k]);
		}
		start = i + 1;
	}
	out[o++] = 0;
	*outlen = (uint8_t)o;
	return 0;
}

/* "<what>[<i>]" into @p out (for messages; on every element, so no printf). */
static void index_path(char *out, size_t cap, const char *what, size_t i)
{
	char digits[24];
	size_t n = 0, w = strlen(what);

	do {
		digits[n++] = (char)('0' + i % 10);
		i /= 10;
	} while (i);
	if (w + n + 3 > cap) {
		snprintf(out, cap, "%s", what);
		return;
	}
	memcpy(out, what, w);
	out[w++] = '[';
	while (n)
		out[w++] = digits[--n];
	out[w++] = ']';
	out[w] = '\0';
}

/* The endpoint name of an address without a hostname: the IP text with '.'
 * and ':' turned into '-', and a '0' added where that leaves a dash at either
 * end ("::1" -> "0--1", "fd00::" -> "fd00--0"), as CoreDNS does at the end. */
static void dashed_label(const struct k8s_ip *ip, char *out, uint8_t *outlen)
{
	char txt[INET6_ADDRSTRLEN];
	size_t n = 0;

	if (ip->fam == 4) {
		/* the common case, without printf */
		for (int k = 0; k < 4; k++) {
			unsigned v = ip->b[k];
			if (k)
				out[n++] = '-';
			if (v >= 100)
				out[n++] = (char)('0' + v / 100);
			if (v >= 10)
				out[n++] = (char)('0' + v / 10 % 10);
			out[n++] = (char)('0' + v % 10);
		}
		*outlen = (uint8_t)n;
		return;
	}
	inet_ntop(AF_INET6, ip->b, txt, sizeof(txt));
	if (txt[0] == ':')
		out[n++] = '0';
	for (const char *p = txt; *p; p++)
		out[n++] = (*p == '.' || *p == ':') ? '-' : *p;
	if (out[n - 1] == '-')
		out[n++] = '0';
	*outlen = (uint8_t)n;
}

int k8s_objects_parse_proto(const char *s, size_t len)
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
	if ((rc = k8s_objects_opt_member(obj, "metadata", false, "metadata", &meta, err, errlen)) < 0)
		return rc;
	if (!meta)
		return fail(err, errlen, "metadata: missing");
	if ((rc = k8s_objects_opt_string(meta, "name", "metadata.name", &s, &len, err, errlen)) < 0)
		return rc;
	if (!s)
		return fail(err, errlen, "metadata.name: missing");
	if (label_name) {
		if ((rc = k8s_objects_copy_label(s, len, "metadata.name", name, NULL, err, errlen)) < 0)
			return rc;
		name[len] = '\0';
	} else {
		if (len == 0 || len > K8S_SLICE_NAME_MAX)
			return fail(err, errlen, "metadata.name: length %zu is not 1..%d", len,
				    K8S_SLICE_NAME_MAX);
		memcpy(name, s, len + 1);
	}
	if (namespaced) {
		if ((rc = k8s_objects_opt_string(meta, "namespace", "metadata.namespace", &s, &len, err,
				     errlen)) < 0)
			return rc;
		if (!s)
			return fail(err, errlen, "metadata.namespace: missing");
		if ((rc = k8s_objects_copy_label(s, len, "metadata.namespace", ns, NULL, err, errlen)) < 0)
			return rc;
		ns[len] = '\0';
	}
	if (labels)
		return k8s_objects_opt_member(meta, "labels", false, "metadata.labels", labels, err, errlen);
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

		index_path(path, sizeof(path), what, i);
		if (!json_is_object(p)) {
			rc = fail(err, errlen, "%s: not an object", path);
			goto out;
		}
		if ((rc = k8s_objects_opt_string(p, "name", path, &s, &len, err, errlen)) < 0)
			goto out;
		if (s && len && (rc = k8s_objects_copy_label(s, len, path, ports[i].name, &ports[i].name_len,
						 err, errlen)) < 0)
			goto out;
		if ((rc = k8s_objects_opt_string(p, "protocol", path, &s, &len, err, errlen)) < 0)
			goto out;
		ports[i].proto = (uint8_t)k8s_objects_parse_proto(s, len);
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

void k8s_objects_service_free(void *p)
{
	struct k8s_service *svc = p;

	if (svc)
		free(svc->ports);
	free(svc);
}

void k8s_objects_slice_free(void *p)
{
	struct k8s_slice *sl = p;

	if (sl) {
		free(sl->ports);
		free(sl->addrs);
		free(sl->hosts);
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
	if (k8s_objects_parse_ip(s, len, 0, &svc->ips[svc->n_ips]) < 0)
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
	if ((rc = k8s_objects_opt_member(obj, "spec", false, "spec", &spec, err, errlen)) < 0)
		return rc;
	svc->kind = K8S_SVC_CLUSTERIP;
	if (!spec)
		return 0;
	if ((rc = k8s_objects_opt_string(spec, "type", "spec.type", &s, &len, err, errlen)) < 0)
		return rc;
	if (s && strcmp(s, "ExternalName") == 0)
		svc->kind = K8S_SVC_EXTERNAL;

	/* clusterIPs (dual-stack) wins over clusterIP, which is clusterIPs[0] */
	if ((rc = k8s_objects_opt_member(spec, "clusterIPs", true, "spec.clusterIPs", &ips, err, errlen)) < 0)
		return rc;
	if ((rc = k8s_objects_opt_string(spec, "clusterIP", "spec.clusterIP", &s, &len, err, errlen)) < 0)
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

	if ((rc = k8s_objects_opt_string(spec, "externalName", "spec.externalName", &s, &len, err, errlen)) <
	    0)
		return rc;
	if (svc->kind == K8S_SVC_EXTERNAL) {
		struct k8s_ip ip;
		svc->n_ips = 0;
		/* An IP literal is not a name: such a Service gets no CNAME (CoreDNS
		 * does not serve it either). */
		if (s && len && k8s_objects_parse_ip(s, len, 0, &ip) < 0 &&
		    name_to_wire(s, len, svc->ext, &svc->ext_len) < 0)
			return fail(err, errlen, "spec.externalName: \"%.*s\" is not a domain name",
				    (int)(len > 64 ? 64 : len), s);
	} else if (headless) {
		svc->kind = K8S_SVC_HEADLESS;
		svc->n_ips = 0;
	}

	if ((rc = k8s_objects_opt_member(spec, "ports", true, "spec.ports", &ports, err, errlen)) < 0)
		return rc;
	return decode_ports(ports, "spec.ports", true, &svc->ports, &svc->n_ports, err, errlen);
}

const char *k8s_objects_addr_label(const struct k8s_slice *sl, const struct k8s_addr *a,
				   char buf[K8S_LABEL_MAX], uint8_t *len)
{
	if (a->host_len) {
		*len = a->host_len;
		return sl->hosts + a->host_off;
	}
	dashed_label(&a->ip, buf, len);
	return buf;
}

/* Room for @p n more bytes of hostnames in @p sl. */
static int hosts_reserve(struct k8s_slice *sl, uint32_t *cap, size_t n)
{
	if (sl->hosts_len + n <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : 64;
	while (ncap < sl->hosts_len + n)
		ncap *= 2;
	char *v = realloc(sl->hosts, ncap);
	if (!v)
		return -ENOMEM;
	sl->hosts = v;
	*cap = (uint32_t)ncap;
	return 0;
}

int k8s_objects_addr_set(struct k8s_slice *sl, uint32_t *hosts_cap, const struct k8s_ip *ip,
			 const char *label, uint8_t len)
{
	struct k8s_addr *a = &sl->addrs[sl->n_addrs];
	char dashed[K8S_LABEL_MAX];
	uint8_t dlen;

	memset(a, 0, sizeof(*a));
	a->ip = *ip;
	dashed_label(ip, dashed, &dlen);
	if (len && (len != dlen || memcmp(label, dashed, len) != 0)) {
		/* the same hostname as the address before: share it */
		const struct k8s_addr *p = sl->n_addrs ? a - 1 : NULL;
		if (p && p->host_len == len && memcmp(sl->hosts + p->host_off, label, len) == 0) {
			a->host_off = p->host_off;
		} else {
			if (hosts_reserve(sl, hosts_cap, len) < 0)
				return -ENOMEM;
			a->host_off = sl->hosts_len;
			memcpy(sl->hosts + sl->hosts_len, label, len);
			sl->hosts_len += len;
		}
		a->host_len = len;
	}
	sl->n_addrs++;
	return 0;
}

int k8s_objects_slice_add_addr(struct k8s_slice *sl, struct k8s_slice_caps *caps,
			       const struct k8s_ip *ip, const char *host, uint8_t host_len)
{
	uint32_t *cap = &caps->addrs;

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
	return k8s_objects_addr_set(sl, &caps->hosts, ip, host, host_len);
}

static int decode_endpoint(struct k8s_slice *sl, int fam, const json_t *ep, size_t i,
			   struct k8s_slice_caps *cap, char *err, size_t errlen)
{
	const json_t *addrs, *cond, *ready = NULL;
	struct k8s_ip ip;
	char host[K8S_LABEL_MAX];
	uint8_t host_len = 0;
	char path[64];
	const char *hn;
	size_t hnlen;
	int rc;

	index_path(path, sizeof(path), "endpoints", i);
	if (!json_is_object(ep))
		return fail(err, errlen, "%s: not an object", path);
	if ((rc = k8s_objects_opt_member(ep, "addresses", true, path, &addrs, err, errlen)) < 0)
		return rc;
	if (addrs && json_array_size(addrs) > K8S_MAX_ADDRS_PER_ENDPOINT)
		return fail(err, errlen, "%s.addresses: more than %d", path,
			    K8S_MAX_ADDRS_PER_ENDPOINT);
	if ((rc = k8s_objects_opt_member(ep, "conditions", false, path, &cond, err, errlen)) < 0)
		return rc;
	if (cond) {
		ready = json_object_get(cond, "ready");
		if (ready && !json_is_null(ready) && !json_is_boolean(ready))
			return fail(err, errlen, "%s.conditions.ready: not a boolean", path);
	}
	memset(&ip, 0, sizeof(ip));
	if ((rc = k8s_objects_opt_string(ep, "hostname", path, &hn, &hnlen, err, errlen)) < 0)
		return rc;
	if (hn && hnlen && (rc = k8s_objects_copy_label(hn, hnlen, "hostname", host, &host_len, err,
					    errlen)) < 0)
		return rc;

	for (size_t k = 0; k < json_array_size(addrs); k++) {
		const json_t *v = json_array_get(addrs, k);
		const char *s = json_string_value(v);

		if (!json_is_string(v) || strlen(s) != json_string_length(v))
			return fail(err, errlen, "%s.addresses[%zu]: not a string", path, k);
		if (fam == 0)
			continue; /* FQDN slice: not served */
		if (k8s_objects_parse_ip(s, json_string_length(v), fam, &ip) < 0)
			return fail(err, errlen, "%s.addresses[%zu]: \"%.*s\" is not an IPv%d address",
				    path, k, (int)(strlen(s) > 64 ? 64 : strlen(s)), s, fam);
		/* absent or null "ready" means ready */
		if (ready && json_is_false(ready))
			continue;
		if (sl->n_addrs >= K8S_MAX_ADDRS_PER_SLICE)
			return fail(err, errlen, "endpoints: more than %d ready addresses",
				    K8S_MAX_ADDRS_PER_SLICE);
		if ((rc = k8s_objects_slice_add_addr(sl, cap, &ip, host, host_len)) < 0)
			return rc;
	}
	return 0;
}

static int decode_slice(const json_t *obj, struct k8s_slice *sl, char *err, size_t errlen)
{
	const json_t *labels, *eps, *ports;
	const char *s;
	size_t len;
	struct k8s_slice_caps cap = { 0, 0 };
	int fam = 0, rc;

	if ((rc = decode_meta(obj, true, false, sl->ns, sl->name, &labels, err, errlen)) < 0)
		return rc;
	if (labels) {
		if ((rc = k8s_objects_opt_string(labels, SVC_NAME_LABEL, "metadata.labels[" SVC_NAME_LABEL "]",
				     &s, &len, err, errlen)) < 0)
			return rc;
		if (s && len) {
			if ((rc = k8s_objects_copy_label(s, len, "metadata.labels[" SVC_NAME_LABEL "]",
					     sl->svc, NULL, err, errlen)) < 0)
				return rc;
			sl->svc[len] = '\0';
		}
	}
	if ((rc = k8s_objects_opt_string(obj, "addressType", "addressType", &s, &len, err, errlen)) < 0)
		return rc;
	if (!s)
		return fail(err, errlen, "addressType: missing");
	if (strcmp(s, "IPv4") == 0)
		fam = 4;
	else if (strcmp(s, "IPv6") == 0)
		fam = 6; /* anything else ("FQDN") is kept but not served */

	if ((rc = k8s_objects_opt_member(obj, "ports", true, "ports", &ports, err, errlen)) < 0)
		return rc;
	if ((rc = decode_ports(ports, "ports", false, &sl->ports, &sl->n_ports, err, errlen)) < 0)
		return rc;
	if ((rc = k8s_objects_opt_member(obj, "endpoints", true, "endpoints", &eps, err, errlen)) < 0)
		return rc;
	if (eps && json_array_size(eps) > K8S_MAX_ENDPOINTS)
		return fail(err, errlen, "endpoints: %zu, at most %d", json_array_size(eps),
			    K8S_MAX_ENDPOINTS);
	for (size_t i = 0; eps && i < json_array_size(eps); i++) {
		if ((rc = decode_endpoint(sl, fam, json_array_get(eps, i), i, &cap, err,
					  errlen)) < 0)
			return rc;
	}
	k8s_objects_slice_trim(sl, &cap);
	return 0;
}

void k8s_objects_slice_trim(struct k8s_slice *sl, const struct k8s_slice_caps *cap)
{
	/* The store keeps it: give back the unused ends. */
	if (sl->n_addrs == 0) {
		free(sl->addrs);
		sl->addrs = NULL;
	} else if (sl->n_addrs < cap->addrs) {
		struct k8s_addr *v = realloc(sl->addrs, sl->n_addrs * sizeof(*v));
		if (v)
			sl->addrs = v;
	}
	if (sl->hosts_len == 0) {
		free(sl->hosts);
		sl->hosts = NULL;
	} else if (sl->hosts_len < cap->hosts) {
		char *v = realloc(sl->hosts, sl->hosts_len);
		if (v)
			sl->hosts = v;
	}
}

/* ------------------------------------------------------------ entries */

int k8s_objects_service(const json_t *obj, bool meta_only, struct k8s_service *svc, char *err,
			size_t errlen)
{
	if (meta_only)
		return decode_meta(obj, true, true, svc->ns, svc->name, NULL, err, errlen);
	return decode_service(obj, svc, err, errlen);
}

int k8s_objects_slice(const json_t *obj, bool meta_only, struct k8s_slice *sl, char *err,
		      size_t errlen)
{
	if (meta_only)
		return decode_meta(obj, true, false, sl->ns, sl->name, NULL, err, errlen);
	return decode_slice(obj, sl, err, errlen);
}

int k8s_objects_namespace(const json_t *obj, char name[K8S_LABEL_MAX + 1], char *err,
			  size_t errlen)
{
	return decode_meta(obj, false, true, NULL, name, NULL, err, errlen);
}
