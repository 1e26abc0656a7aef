/* src/cluster/pod_object.c - a Pod as autopath needs it: namespace, IPs, search path. */
#include "nodedns/cluster/pod_object.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Member @p key of @p obj when it is present and not null: *out (NULL when
 * absent). @return 0, or -EINVAL when it is there with another JSON type. */
static int member(const json_t *obj, const char *key, json_type type, const char *what,
		  const json_t **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (json_typeof(v) != type && !(type == JSON_TRUE && json_is_boolean(v)))
		return fail(err, errlen, "%s: wrong type", what);
	*out = v;
	return 0;
}

/* A DNS label (namespace) or subdomain (pod name): lower-case letters,
 * digits, '-' (and '.' for a subdomain), 1..max bytes. */
static bool valid_name(const char *s, size_t len, size_t max, bool dots)
{
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		      (dots && c == '.')))
			return false;
	}
	return true;
}

static int copy_name(const json_t *meta, const char *key, size_t max, bool dots, char *out,
		     char *err, size_t errlen)
{
	const json_t *v;
	int rc = member(meta, key, JSON_STRING, key, &v, err, errlen);
	if (rc < 0)
		return rc;
	if (!v)
		return fail(err, errlen, "metadata.%s: missing", key);
	size_t len = json_string_length(v);
	if (!valid_name(json_string_value(v), len, max, dots))
		return fail(err, errlen, "metadata.%s: not a DNS name", key);
	memcpy(out, json_string_value(v), len);
	out[len] = '\0';
	return 0;
}

static void add_ip(struct pod_object *p, const char *s)
{
	struct pod_ip ip;
	memset(&ip, 0, sizeof(ip));
	if (inet_pton(AF_INET, s, ip.b) == 1)
		ip.fam = 4;
	else if (inet_pton(AF_INET6, s, ip.b) == 1)
		ip.fam = 6;
	else
		return;
	for (unsigned i = 0; i < p->nips; i++)
		if (memcmp(&p->ips[i], &ip, sizeof(ip)) == 0)
			return;
	if (p->nips < POD_MAX_IPS)
		p->ips[p->nips++] = ip;
}

static int decode_ips(const json_t *status, struct pod_object *p, char *err, size_t errlen)
{
	const json_t *ips, *one, *v;
	size_t i;
	int rc;
	if ((rc = member(status, "podIPs", JSON_ARRAY, "status.podIPs", &ips, err, errlen)) < 0)
		return rc;
	json_array_foreach(ips, i, one) {
		if (!json_is_object(one))
			return fail(err, errlen, "status.podIPs[%zu]: not an object", i);
		if ((rc = member(one, "ip", JSON_STRING, "status.podIPs[].ip", &v, err, errlen)) < 0)
			return rc;
		if (v)
			add_ip(p, json_string_value(v));
	}
	if ((rc = member(status, "podIP", JSON_STRING, "status.podIP", &v, err, errlen)) < 0)
		return rc;
	if (v)
		add_ip(p, json_string_value(v));
	return 0;
}

/* The verdict from spec (and status.phase). */
static int judge(const json_t *spec, const json_t *status, const char *node,
		 struct pod_object *p, char *err, size_t errlen)
{
	const json_t *v, *dc, *searches;
	int rc;
	if ((rc = member(spec, "nodeName", JSON_STRING, "spec.nodeName", &v, err, errlen)) < 0)
		return rc;
	if (node && (!v || strcmp(json_string_value(v), node) != 0)) {
		p->verdict = POD_OTHER_NODE;
		return 0;
	}
	if ((rc = member(spec, "hostNetwork", JSON_TRUE, "spec.hostNetwork", &v, err, errlen)) < 0)
		return rc;
	if (v && json_is_true(v)) {
		p->verdict = POD_HOST_NETWORK;
		return 0;
	}
	if ((rc = member(spec, "dnsPolicy", JSON_STRING, "spec.dnsPolicy", &v, err, errlen)) < 0)
		return rc;
	if (v && strcmp(json_string_value(v), "ClusterFirst") != 0 &&
	    strcmp(json_string_value(v), "ClusterFirstWithHostNet") != 0) {
		p->verdict = POD_DNS_POLICY;
		return 0;
	}
	if ((rc = member(spec, "dnsConfig", JSON_OBJECT, "spec.dnsConfig", &dc, err, errlen)) < 0 ||
	    (rc = member(dc, "searches", JSON_ARRAY, "spec.dnsConfig.searches", &searches, err,
			 errlen)) < 0)
		return rc;
	if (json_array_size(searches) > 0) {
		p->verdict = POD_CUSTOM_SEARCH;
		return 0;
	}
	if ((rc = member(status, "phase", JSON_STRING, "status.phase", &v, err, errlen)) < 0)
		return rc;
	if (v && (strcmp(json_string_value(v), "Succeeded") == 0 ||
		  strcmp(json_string_value(v), "Failed") == 0)) {
		p->verdict = POD_FINISHED;
		return 0;
	}
	p->verdict = POD_ELIGIBLE;
	return 0;
}

int pod_object_decode(const json_t *obj, const char *node, struct pod_object *out, char *err,
		      size_t errlen)
{
	const json_t *meta, *spec, *status;
	int rc;
	memset(out, 0, sizeof(*out));
	if (!json_is_object(obj))
		return fail(err, errlen, "not an object");
	if ((rc = member(obj, "metadata", JSON_OBJECT, "metadata", &meta, err, errlen)) < 0 ||
	    (rc = member(obj, "spec", JSON_OBJECT, "spec", &spec, err, errlen)) < 0 ||
	    (rc = member(obj, "status", JSON_OBJECT, "status", &status, err, errlen)) < 0)
		return rc;
	if (!meta)
		return fail(err, errlen, "metadata: missing");
	if ((rc = copy_name(meta, "namespace", POD_LABEL_MAX, false, out->ns, err, errlen)) < 0 ||
	    (rc = copy_name(meta, "name", POD_NAME_MAX, true, out->name, err, errlen)) < 0)
		return rc;
	if ((rc = judge(spec, status, node, out, err, errlen)) < 0 ||
	    (rc = decode_ips(status, out, err, errlen)) < 0)
		return rc;
	return 0;
}

size_t pod_object_key(const struct pod_object *p, char *key)
{
	size_t a = strlen(p->ns), b = strlen(p->name);
	memcpy(key, p->ns, a);
	key[a] = '/';
	memcpy(key + a + 1, p->name, b);
	return a + 1 + b;
}

const char *pod_verdict_str(enum pod_verdict v)
{
	switch (v) {
	case POD_ELIGIBLE: return "eligible";
	case POD_HOST_NETWORK: return "hostNetwork";
	case POD_DNS_POLICY: return "dnsPolicy";
	case POD_CUSTOM_SEARCH: return "dnsConfig.searches";
	case POD_FINISHED: return "finished";
	case POD_OTHER_NODE: return "other node";
	}
	return "?";
}
