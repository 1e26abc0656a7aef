/* tests/fuzz/fuzz_cluster.h - shared by the cluster store fuzz targets.
 *
 * Collects the names of objects the store accepted, then asks a snapshot
 * about them (and about a few fixed names) with cluster_answer() under
 * several buffer sizes, checking every answer:
 *  - at most cap bytes; QR=1, AA=1, RA=1; rcode NOERROR or NXDOMAIN;
 *  - the question echoed exactly as asked (or a bare truncated header when
 *    not even the question fits);
 *  - ldns reads it (our own bodies must parse), with TC=1 only when the
 *    answer did not fit, and then no records;
 *  - a chase name is a lower-case wire name outside the zone;
 *  - with @p empty (the store was cleared), every Service, pod and namespace
 *    name is NXDOMAIN and every reverse name is not ours.
 * Header-only (static functions): each target is one translation unit.
 */
#ifndef NODEDNS_FUZZ_CLUSTER_H
#define NODEDNS_FUZZ_CLUSTER_H

#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/dns/dnsmsg.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#ifndef FUZZ_NAME
#define FUZZ_NAME "fuzz"
#endif

#include "fuzz_check.h"

#define FC_MAX_NAMES 24
#define FC_LABEL_MAX 63

/* Labels seen in accepted objects (lower-cased, as the store keeps them). */
struct fc_names {
	struct {
		char ns[FC_LABEL_MAX + 1], svc[FC_LABEL_MAX + 1], host[FC_LABEL_MAX + 1];
		char port[FC_LABEL_MAX + 1];
		struct in6_addr ip; /* IPv4-mapped for IPv4 */
		bool has_ip, v4;
	} n[FC_MAX_NAMES];
	size_t count;
};

static inline void fc_lower_copy(char *dst, const char *src)
{
	size_t i = 0;
	if (src)
		for (; src[i] && i < FC_LABEL_MAX; i++)
			dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32 : src[i]);
	dst[i] = '\0';
}

static inline const char *fc_str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static inline void fc_set_ip(struct fc_names *nm, size_t i, const char *s)
{
	struct in_addr a4;
	if (!s)
		return;
	if (inet_pton(AF_INET, s, &a4) == 1) {
		memset(&nm->n[i].ip, 0, sizeof(nm->n[i].ip));
		memcpy(&nm->n[i].ip.s6_addr[12], &a4, 4);
		nm->n[i].has_ip = nm->n[i].v4 = true;
	} else if (inet_pton(AF_INET6, s, &nm->n[i].ip) == 1) {
		nm->n[i].has_ip = true;
		nm->n[i].v4 = false;
	}
}

/* Remember the names of @p obj, an object of @p kind the store accepted. */
static inline void fc_add(struct fc_names *nm, enum k8s_kind kind, const json_t *obj)
{
	if (nm->count >= FC_MAX_NAMES)
		return;
	const json_t *meta = json_object_get(obj, "metadata");
	size_t i = nm->count;
	memset(&nm->n[i], 0, sizeof(nm->n[i]));
	switch (kind) {
	case K8S_NAMESPACE:
		fc_lower_copy(nm->n[i].ns, fc_str(meta, "name"));
		fc_lower_copy(nm->n[i].svc, "kubernetes");
		break;
	case K8S_SERVICE: {
		const json_t *spec = json_object_get(obj, "spec");
		const json_t *port = json_array_get(json_object_get(spec, "ports"), 0);
		fc_lower_copy(nm->n[i].ns, fc_str(meta, "namespace"));
		fc_lower_copy(nm->n[i].svc, fc_str(meta, "name"));
		fc_lower_copy(nm->n[i].port, fc_str(port, "name"));
		fc_set_ip(nm, i, fc_str(spec, "clusterIP"));
		break;
	}
	case K8S_ENDPOINTSLICE: {
		const json_t *ep = json_array_get(json_object_get(obj, "endpoints"), 0);
		const json_t *port = json_array_get(json_object_get(obj, "ports"), 0);
		fc_lower_copy(nm->n[i].ns, fc_str(meta, "namespace"));
		fc_lower_copy(nm->n[i].svc,
			      fc_str(json_object_get(meta, "labels"), "kubernetes.io/service-name"));
		fc_lower_copy(nm->n[i].host, fc_str(ep, "hostname"));
		fc_lower_copy(nm->n[i].port, fc_str(port, "name"));
		fc_set_ip(nm, i, json_string_value(json_array_get(json_object_get(ep, "addresses"),
								  0)));
		break;
	}
	default:
		return;
	}
	if (nm->n[i].ns[0])
		nm->count++;
}

/* Presentation name -> wire (labels up to 63 bytes, name up to 255; 0 when
 * it is not a name): the resolver's own conversion. */
static inline size_t fc_wire(const char *text, uint8_t *out)
{
	return dnsmsg_name_from_text(text, out);
}

static inline uint16_t fc_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* What an answer must be, beyond well formed. */
enum fc_expect { FC_ANY = 0, FC_NX, FC_NOT_MINE };

/* Ask @p snap one question and check the answer. */
static inline void fc_ask(const struct cluster_snapshot *snap, const struct cluster_config *cfg,
			  const char *text, uint16_t qtype, size_t cap, enum fc_expect expect)
{
	static uint8_t out[65535];
	uint8_t q[255];
	size_t qlen = fc_wire(text, q);
	if (qlen == 0 || cap > sizeof(out))
		return;
	/* Ask in mixed case: answers must echo it. */
	for (size_t i = 0; i < qlen; i++)
		if ((i & 1) && q[i] >= 'a' && q[i] <= 'z')
			q[i] = (uint8_t)(q[i] - 32);
	struct cluster_answer_info info;
	size_t n = (size_t)-1;
	enum cluster_verdict v =
		cluster_answer(snap, cfg, q, qlen, qtype, 1, out, cap, &n, &info);
	bool in_zone = cluster_in_zone(cfg, q, qlen);
	if (v == CLUSTER_NOT_MINE) {
		CHECK(n == 0);
		CHECK(!in_zone || !snap);
		CHECK(expect != FC_NX);
		return;
	}
	CHECK(v == CLUSTER_ANSWERED);
	CHECK(expect != FC_NOT_MINE);
	CHECK(n <= cap);
	if (cap < 12) {
		CHECK(n == 0);
		return;
	}
	CHECK(n >= 12);
	CHECK((out[2] & 0x84) == 0x84 && (out[3] & 0x80)); /* QR AA RA */
	CHECK(info.rcode == 0 || info.rcode == 3);
	CHECK((out[3] & 0x0f) == info.rcode);
	bool tc = out[2] & 0x02;
	if (fc_get16(out + 4) == 0) {
		/* not even the question fitted */
		CHECK(tc && n == 12 && cap < 12 + qlen + 4);
		return;
	}
	CHECK(fc_get16(out + 4) == 1);
	CHECK(memcmp(out + 12, q, qlen) == 0);
	CHECK(fc_get16(out + 12 + qlen) == qtype && fc_get16(out + 14 + qlen) == 1);
	if (tc)
		CHECK(n == 12 + qlen + 4 && fc_get16(out + 6) == 0 && fc_get16(out + 8) == 0 &&
		      fc_get16(out + 10) == 0);
	if (expect == FC_NX)
		CHECK(in_zone && info.rcode == 3);
	if (info.chase_len) {
		CHECK(info.chase_len <= 255);
		CHECK(!cluster_in_zone(cfg, info.chase_name, info.chase_len));
		size_t p = 0;
		while (info.chase_name[p]) {
			CHECK(info.chase_name[p] <= 63);
			for (size_t k = 1; k <= info.chase_name[p]; k++)
				CHECK(!(info.chase_name[p + k] >= 'A' && info.chase_name[p + k] <= 'Z'));
			p += 1u + info.chase_name[p];
			CHECK(p < info.chase_len);
		}
		CHECK(p + 1 == info.chase_len);
	}
	ldns_pkt *pkt = NULL;
	ldns_status st = ldns_wire2pkt(&pkt, out, n);
	if (st != LDNS_STATUS_OK) {
		fprintf(stderr, FUZZ_NAME ": answer to %s/%u does not parse: %s\n", text, qtype,
			ldns_get_errorstr_by_id(st));
		CHECK(st == LDNS_STATUS_OK);
	}
	ldns_pkt_free(pkt);
}

static inline void fc_reverse(const struct fc_names *nm, size_t i, char *buf, size_t cap)
{
	const uint8_t *b = nm->n[i].ip.s6_addr;
	if (nm->n[i].v4) {
		snprintf(buf, cap, "%u.%u.%u.%u.in-addr.arpa", b[15], b[14], b[13], b[12]);
		return;
	}
	size_t o = 0;
	for (int k = 15; k >= 0; k--)
		o += (size_t)snprintf(buf + o, cap - o, "%x.%x.", b[k] & 15, b[k] >> 4);
	snprintf(buf + o, cap - o, "ip6.arpa");
}

/* Ask @p snap about every collected name, several types and buffer sizes. */
static inline void fc_probe(const struct cluster_snapshot *snap, const struct cluster_config *cfg,
			    const struct fc_names *nm, bool empty)
{
	static const uint16_t types[] = { 1, 28, 33, 12, 255, 5, 16 };
	static const size_t caps[] = { 65535, 512 - 11, 60, 11 };
	char name[1100];
	const char *d = cfg->domain;
	enum fc_expect nx = empty ? FC_NX : FC_ANY;

	fc_ask(snap, cfg, d, 6, 512, FC_ANY);
	fc_ask(snap, cfg, d, 2, 512, FC_ANY);
	snprintf(name, sizeof(name), "dns-version.%s", d);
	fc_ask(snap, cfg, name, 16, 512, FC_ANY);
	snprintf(name, sizeof(name), "ns.dns.%s", d);
	fc_ask(snap, cfg, name, 1, 512, FC_ANY);
	for (size_t i = 0; i < nm->count; i++) {
		const char *ns = nm->n[i].ns, *svc = nm->n[i].svc, *host = nm->n[i].host;
		size_t cap = caps[i % 4];
		if (svc[0]) {
			snprintf(name, sizeof(name), "%s.%s.svc.%s", svc, ns, d);
			for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++)
				fc_ask(snap, cfg, name, types[t], caps[(i + t) % 4], nx);
			snprintf(name, sizeof(name), "_%s._tcp.%s.%s.svc.%s",
				 nm->n[i].port[0] ? nm->n[i].port : "http", svc, ns, d);
			fc_ask(snap, cfg, name, 33, cap, nx);
			snprintf(name, sizeof(name), "_tcp.%s.%s.svc.%s", svc, ns, d);
			fc_ask(snap, cfg, name, 33, cap, nx);
			if (host[0]) {
				snprintf(name, sizeof(name), "%s.%s.%s.svc.%s", host, svc, ns, d);
				fc_ask(snap, cfg, name, 1, cap, nx);
				fc_ask(snap, cfg, name, 28, 65535, nx);
			}
		}
		snprintf(name, sizeof(name), "%s.svc.%s", ns, d);
		fc_ask(snap, cfg, name, 1, cap, nx);
		if (nm->n[i].has_ip) {
			char rev[80], ip[INET6_ADDRSTRLEN];
			fc_reverse(nm, i, rev, sizeof(rev));
			/* an unknown address is not ours: forwarded */
			fc_ask(snap, cfg, rev, 12, cap, empty ? FC_NOT_MINE : FC_ANY);
			fc_ask(snap, cfg, rev, 1, 512, empty ? FC_NOT_MINE : FC_ANY);
			if (nm->n[i].v4)
				inet_ntop(AF_INET, nm->n[i].ip.s6_addr + 12, ip, sizeof(ip));
			else
				inet_ntop(AF_INET6, nm->n[i].ip.s6_addr, ip, sizeof(ip));
			for (char *c = ip; *c; c++)
				if (*c == '.' || *c == ':')
					*c = '-';
			if (ip[0] == '-' || ip[strlen(ip) - 1] == '-')
				continue; /* "::1" needs a 0 added; not worth it here */
			snprintf(name, sizeof(name), "%s.%s.pod.%s", ip, ns, d);
			fc_ask(snap, cfg, name, nm->n[i].v4 ? 1 : 28, cap, nx);
		}
	}
}

#endif
