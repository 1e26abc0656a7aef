/* tests/unit/cluster_fixture.h - the test cluster and the helpers of the cluster unit tests.
 *
 * Included by test_cluster.c (the zone's answers) and test_cluster_store.c
 * (store, publisher and snapshots). setup() builds the base cluster into
 * `store`, publishes it with `pub` into `snap`; teardown() frees them.
 * Each test file uses a part of the helpers (hence no unused-function warning).
 */
#ifndef NODEDNS_TEST_CLUSTER_FIXTURE_H
#define NODEDNS_TEST_CLUSTER_FIXTURE_H

#pragma GCC diagnostic ignored "-Wunused-function"

#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"

#include "cluster/cluster_snapshot_internal.h"

#include <errno.h>
#include <jansson.h>
#include <ldns/ldns.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DATA_DIR "tests/unit/data/cluster/"
#define DEMO_FILE "deploy/examples/demo-cluster.json"

static struct cluster_config cfg = { .domain = "cluster.local", .ttl_s = 5, .pods_insecure = true };
static struct k8s_store *store;
static struct cluster_publisher *pub; /* publishes store */
static struct cluster_snapshot *snap;

/* the last answer */
static uint8_t g_wire[65535];
static size_t g_len;
static struct cluster_answer_info g_info;

/* ---------------------------------------------------------------- helpers */

/* One snapshot of @p s from a publisher of its own (it outlives the publisher). */
static struct cluster_snapshot *publish_once(struct k8s_store *s)
{
	struct cluster_publisher *p = cluster_publisher_new();
	struct cluster_snapshot *sn;

	assert_non_null(p);
	sn = cluster_publisher_publish(p, s);
	cluster_publisher_free(p);
	return sn;
}

/* JSON with ' for " so the objects below stay readable. */
static json_t *jq(const char *s)
{
	char *c = strdup(s);
	json_error_t e;
	json_t *j;

	for (char *p = c; *p; p++)
		if (*p == '\'')
			*p = '"';
	j = json_loads(c, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	if (!j)
		fail_msg("bad test JSON at %d: %s: %s", e.position, e.text, c);
	free(c);
	return j;
}

static int apply_rc(struct k8s_store *s, enum k8s_kind kind, enum k8s_event ev, const char *json,
		    char *err, size_t errlen)
{
	json_t *j = jq(json);
	int rc = k8s_store_apply(s, kind, ev, j, err, errlen);

	json_decref(j);
	return rc;
}

static void put(struct k8s_store *s, enum k8s_kind kind, const char *json)
{
	char err[256];
	int rc = apply_rc(s, kind, K8S_ADDED, json, err, sizeof(err));

	if (rc != 0)
		fail_msg("apply failed (%d): %s: %s", rc, err, json);
}

static void del(struct k8s_store *s, enum k8s_kind kind, const char *json)
{
	char err[256];

	assert_int_equal(apply_rc(s, kind, K8S_DELETED, json, err, sizeof(err)), 0);
}

static void ns(struct k8s_store *s, const char *name)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "{'kind':'Namespace','metadata':{'name':'%s'}}", name);
	put(s, K8S_NAMESPACE, buf);
}

/* presentation name (no escapes) to wire */
static size_t wire_of(const char *name, uint8_t *out)
{
	size_t o = 0, len = strlen(name);
	const char *p = name;

	if (len && name[len - 1] == '.')
		len--;
	while (len && p < name + len) {
		const char *dot = memchr(p, '.', (size_t)(name + len - p));
		size_t l = dot ? (size_t)(dot - p) : (size_t)(name + len - p);
		out[o++] = (uint8_t)l;
		memcpy(out + o, p, l);
		o += l;
		p += l + 1;
	}
	out[o++] = 0;
	return o;
}

static enum cluster_verdict ask_raw(const struct cluster_snapshot *sn,
				    const struct cluster_config *c, const char *name,
				    uint16_t type, size_t cap)
{
	uint8_t q[300];
	size_t ql = wire_of(name, q);

	return cluster_answer(sn, c, q, ql, type, LDNS_RR_CLASS_IN, g_wire, cap, &g_len, &g_info);
}

/* Ask and parse; checks the header and that the question is echoed byte for byte. */
static ldns_pkt *ask_full(const struct cluster_snapshot *sn, const struct cluster_config *c,
			  const char *name, uint16_t type, size_t cap)
{
	uint8_t q[300];
	size_t ql = wire_of(name, q);
	ldns_pkt *p = NULL;

	assert_int_equal(ask_raw(sn, c, name, type, cap), CLUSTER_ANSWERED);
	assert_true(g_len <= cap);
	assert_int_equal(ldns_wire2pkt(&p, g_wire, g_len), LDNS_STATUS_OK);
	assert_int_equal(ldns_pkt_id(p), 0);
	assert_true(ldns_pkt_qr(p));
	assert_true(ldns_pkt_aa(p));
	assert_true(ldns_pkt_ra(p));
	assert_false(ldns_pkt_rd(p));
	assert_int_equal(ldns_pkt_qdcount(p), 1);
	assert_memory_equal(g_wire + 12, q, ql);
	assert_int_equal(ldns_pkt_get_rcode(p), g_info.rcode);
	return p;
}

static ldns_pkt *ask(const char *name, uint16_t type)
{
	return ask_full(snap, &cfg, name, type, 65535);
}

/* A section as text, one RR a line, fields separated by single spaces. */
static char *section(const ldns_pkt *p, ldns_pkt_section sec)
{
	ldns_rr_list *l = ldns_pkt_get_section_clone(p, sec);
	size_t cap = 64, len = 0;
	char *out = calloc(1, cap);

	for (size_t i = 0; l && i < ldns_rr_list_rr_count(l); i++) {
		char *s = ldns_rr2str(ldns_rr_list_rr(l, i));
		size_t n = strlen(s);
		while (len + n + 1 > cap)
			out = realloc(out, cap *= 2);
		for (char *c = s; *c; c++)
			out[len++] = *c == '\t' ? ' ' : *c;
		out[len] = '\0';
		free(s);
	}
	ldns_rr_list_deep_free(l);
	return out;
}

static void check_sec(const ldns_pkt *p, ldns_pkt_section sec, const char *want)
{
	char *got = section(p, sec);

	if (strcmp(got, want) != 0)
		fail_msg("section %d:\n got: [%s]\nwant: [%s]", (int)sec, got, want);
	free(got);
}

/* Ask @p name and expect exactly @p answer (and @p additional, may be NULL:
 * none) with NOERROR. */
static void expect(const char *name, uint16_t type, const char *answer, const char *additional)
{
	ldns_pkt *p = ask(name, type);

	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_false(g_info.nodata);
	check_sec(p, LDNS_SECTION_ANSWER, answer);
	check_sec(p, LDNS_SECTION_AUTHORITY, "");
	check_sec(p, LDNS_SECTION_ADDITIONAL, additional ? additional : "");
	ldns_pkt_free(p);
}

static char soa_line[256];

static const char *soa(uint32_t serial)
{
	snprintf(soa_line, sizeof(soa_line),
		 "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. %u 7200 "
		 "1800 86400 5\n",
		 serial);
	return soa_line;
}

/* A negative answer: no records, the zone's SOA in authority. */
static void expect_neg_snap(const struct cluster_snapshot *sn, const char *name, uint16_t type,
			    int rcode)
{
	ldns_pkt *p = ask_full(sn, &cfg, name, type, 65535);

	if ((int)ldns_pkt_get_rcode(p) != rcode)
		fail_msg("%s type %u: rcode %d, want %d", name, type, ldns_pkt_get_rcode(p), rcode);
	assert_int_equal(g_info.rcode, rcode);
	assert_int_equal(g_info.nodata, rcode == 0);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(ldns_pkt_arcount(p), 0);
	check_sec(p, LDNS_SECTION_AUTHORITY, soa(sn->serial));
	ldns_pkt_free(p);
}

static void expect_nx(const char *name, uint16_t type)
{
	expect_neg_snap(snap, name, type, LDNS_RCODE_NXDOMAIN);
}

static void expect_nodata(const char *name, uint16_t type)
{
	expect_neg_snap(snap, name, type, LDNS_RCODE_NOERROR);
}

static void expect_not_mine(const char *name, uint16_t type)
{
	assert_int_equal(ask_raw(snap, &cfg, name, type, 65535), CLUSTER_NOT_MINE);
	assert_int_equal(g_len, 0);
}

/* -------------------------------------------------------- the test cluster */

static void build_base(struct k8s_store *s)
{
	ns(s, "default");
	ns(s, "kube-system");
	ns(s, "demo");
	ns(s, "empty");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'kubernetes','namespace':'default'},"
	    "'spec':{'type':'ClusterIP','clusterIP':'10.96.0.1','clusterIPs':['10.96.0.1'],"
	    "'ports':[{'name':'https','port':443,'protocol':'TCP','targetPort':6443}]}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'kube-dns','namespace':'kube-system'},"
	    "'spec':{'clusterIP':'10.96.0.10','ports':[{'name':'dns','port':53,'protocol':'UDP'},"
	    "{'name':'dns-tcp','port':53,'protocol':'TCP'},{'name':'metrics','port':9153}]}}");
	/* dual-stack ClusterIP with endpoints in two families */
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'api','namespace':'demo'},"
	    "'spec':{'clusterIP':'10.96.45.12','clusterIPs':['10.96.45.12','fd00:10:96::2d0c'],"
	    "'ports':[{'name':'http','port':80,'protocol':'TCP'}]}}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'api-v4','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'api'}},'addressType':'IPv4',"
	    "'endpoints':[{'addresses':['10.244.1.5'],'conditions':{'ready':true}},"
	    "{'addresses':['10.244.2.7']}],"
	    "'ports':[{'name':'http','port':8080,'protocol':'TCP'}]}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'api-v6','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'api'}},'addressType':'IPv6',"
	    "'endpoints':[{'addresses':['fd00:10:244:1::5'],'conditions':{'ready':null}}],"
	    "'ports':[{'name':'http','port':8080,'protocol':'TCP'}]}");
	/* headless StatefulSet-style, split over two overlapping slices */
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'web','namespace':'demo'},"
	    "'spec':{'clusterIP':'None','clusterIPs':['None'],"
	    "'ports':[{'name':'http','port':80,'protocol':'TCP'}]}}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'web-a','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'web'}},'addressType':'IPv4',"
	    "'endpoints':["
	    "{'addresses':['10.244.1.10'],'hostname':'web-0','conditions':{'ready':true}},"
	    "{'addresses':['10.244.2.11'],'hostname':'web-1','conditions':{'ready':true}},"
	    "{'addresses':['10.244.2.13'],'hostname':'web-3','conditions':{'ready':false}}],"
	    "'ports':[{'name':'http','port':8080,'protocol':'TCP'}]}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'web-b','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'web'}},'addressType':'IPv4',"
	    "'endpoints':["
	    "{'addresses':['10.244.2.11'],'hostname':'web-1','conditions':{'ready':true}},"
	    "{'addresses':['10.244.1.12'],'hostname':'web-2'}],"
	    "'ports':[{'name':'http','port':8080,'protocol':'TCP'}]}");
	/* headless without any ready endpoint */
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'noready','namespace':'demo'},"
	    "'spec':{'clusterIP':'None','ports':[{'name':'http','port':80}]}}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'noready-1','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'noready'}},'addressType':'IPv4',"
	    "'endpoints':[{'addresses':['10.244.9.9'],'conditions':{'ready':false}}],"
	    "'ports':[{'name':'http','port':80,'protocol':'TCP'}]}");
	/* headless without hostnames, IPv4 and IPv6, several ports */
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'mixed','namespace':'demo'},"
	    "'spec':{'clusterIP':'None'}}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'mixed-4','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'mixed'}},'addressType':'IPv4',"
	    "'endpoints':[{'addresses':['10.244.3.4']}],"
	    "'ports':[{'name':'dns','port':53,'protocol':'UDP'},{'name':'dns-tcp','port':53,"
	    "'protocol':'TCP'},{'port':7000},{'name':'all','port':null}]}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'mixed-6','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'mixed'}},'addressType':'IPv6',"
	    "'endpoints':[{'addresses':['fd00:10:244:3::']},{'addresses':['::5']}],"
	    "'ports':[{'name':'dns','port':53,'protocol':'UDP'}]}");
	/* an IP that is also an endpoint of web */
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'shared','namespace':'demo'},"
	    "'spec':{'clusterIP':'10.96.7.7','ports':[{'name':'http','port':80}]}}");
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'shared-1','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'shared'}},'addressType':'IPv4',"
	    "'endpoints':[{'addresses':['10.244.1.10']}],'ports':[{'name':'http','port':8080}]}");
	/* ExternalNames */
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'search','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'WWW.Example.com.'}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'alias','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'api.demo.svc.cluster.local'}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'hop','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'search.demo.svc.cluster.local'}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'tov4','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'kubernetes.default.svc.cluster.local'}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'loop1','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'loop2.demo.svc.cluster.local'}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'loop2','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'loop1.demo.svc.cluster.local'}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'dangling','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'nothere.demo.svc.cluster.local'}}");
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'iplit','namespace':'demo'},"
	    "'spec':{'type':'ExternalName','externalName':'192.0.2.1'}}");
	/* a slice whose Service does not exist (yet) */
	put(s, K8S_ENDPOINTSLICE,
	    "{'kind':'EndpointSlice','metadata':{'name':'ghost-1','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'ghost'}},'addressType':'IPv4',"
	    "'endpoints':[{'addresses':['10.244.8.8']}],'ports':[]}");
	/* a namespace with a Service but no Namespace object */
	put(s, K8S_SERVICE,
	    "{'kind':'Service','metadata':{'name':'orphan','namespace':'nonsobj'},"
	    "'spec':{'clusterIP':'10.96.8.8'}}");
}

static int setup(void **state)
{
	(void)state;
	store = k8s_store_new(&cfg);
	pub = cluster_publisher_new();
	assert_non_null(store);
	assert_non_null(pub);
	build_base(store);
	snap = cluster_publisher_publish(pub, store);
	assert_non_null(snap);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cluster_snapshot_unref(snap);
	cluster_publisher_free(pub);
	k8s_store_free(store);
	snap = NULL;
	pub = NULL;
	store = NULL;
	return 0;
}

#endif
