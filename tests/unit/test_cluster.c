/* tests/unit/test_cluster.c - unit tests for the cluster store, snapshots and the cluster zone. */
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

/* ------------------------------------------------------------------ tests */

static void test_clusterip(void **state)
{
	(void)state;
	expect("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A,
	       "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n", NULL);
	assert_int_equal(g_info.rcode, 0);
	assert_int_equal(g_info.chase_len, 0);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_TXT);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_MX);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_CNAME);
	expect_nodata("kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SOA);
	/* a ClusterIP Service without endpoints still resolves; without
	 * Namespace object its namespace exists through the Service */
	expect("orphan.nonsobj.svc.cluster.local", LDNS_RR_TYPE_A,
	       "orphan.nonsobj.svc.cluster.local. 5 IN A 10.96.8.8\n", NULL);
	expect_nodata("nonsobj.svc.cluster.local", LDNS_RR_TYPE_A);
	/* ANY: what there is */
	expect("api.demo.svc.cluster.local", LDNS_RR_TYPE_ANY,
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n"
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n"
	       "api.demo.svc.cluster.local. 5 IN SRV 0 100 80 api.demo.svc.cluster.local.\n",
	       NULL);
}

static void test_dual_stack(void **state)
{
	(void)state;
	expect("api.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n", NULL);
	expect("api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n", NULL);
	/* endpoint names under a ClusterIP Service (CoreDNS): dashed IPs */
	expect("10-244-1-5.api.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-1-5.api.demo.svc.cluster.local. 5 IN A 10.244.1.5\n", NULL);
	expect("fd00-10-244-1--5.api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "fd00-10-244-1--5.api.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:1::5\n", NULL);
	expect_nodata("fd00-10-244-1--5.api.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("10-244-1-6.api.demo.svc.cluster.local", LDNS_RR_TYPE_A);
}

static void test_case(void **state)
{
	ldns_pkt *p;

	(void)state;
	/* owner as asked; object labels lower case; zone in targets as asked */
	expect("KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL", LDNS_RR_TYPE_A,
	       "KuBeRnEtEs.DeFaUlT.SvC.cLuStEr.LoCaL. 5 IN A 10.96.0.1\n", NULL);
	expect("_HTTPS._TCP.Kubernetes.DEFAULT.svc.Cluster.Local", LDNS_RR_TYPE_SRV,
	       "_HTTPS._TCP.Kubernetes.DEFAULT.svc.Cluster.Local. 5 IN SRV 0 100 443 "
	       "kubernetes.default.svc.Cluster.Local.\n",
	       "kubernetes.default.svc.Cluster.Local. 5 IN A 10.96.0.1\n");
	expect("WEB-0.Web.Demo.SVC.cluster.local", LDNS_RR_TYPE_A,
	       "WEB-0.Web.Demo.SVC.cluster.local. 5 IN A 10.244.1.10\n", NULL);
	p = ask("NOPE.default.svc.CLUSTER.local", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	check_sec(p, LDNS_SECTION_AUTHORITY,
		  "CLUSTER.local. 5 IN SOA ns.dns.CLUSTER.local. hostmaster.CLUSTER.local. 1 7200 "
		  "1800 86400 5\n");
	ldns_pkt_free(p);
	expect("10-244-1-2.DEFAULT.POD.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-1-2.DEFAULT.POD.cluster.local. 5 IN A 10.244.1.2\n", NULL);
}

static void test_headless(void **state)
{
	(void)state;
	/* ready endpoints only, deduplicated across slices */
	expect("web.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n"
	       "web.demo.svc.cluster.local. 5 IN A 10.244.1.12\n"
	       "web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n",
	       NULL);
	expect_nodata("web.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect("web-1.web.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "web-1.web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n", NULL);
	expect("web-2.web.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "web-2.web.demo.svc.cluster.local. 5 IN A 10.244.1.12\n", NULL);
	/* not ready: no name, no address */
	expect_nx("web-3.web.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("web-0.web.demo.svc.cluster.local", LDNS_RR_TYPE_TXT);
	/* dual family headless without hostnames: dashed names, 0 at the ends */
	expect("mixed.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n", NULL);
	expect("mixed.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "mixed.demo.svc.cluster.local. 5 IN AAAA ::5\n"
	       "mixed.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:3::\n",
	       NULL);
	expect("fd00-10-244-3--0.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "fd00-10-244-3--0.mixed.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:3::\n", NULL);
	expect("0--5.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "0--5.mixed.demo.svc.cluster.local. 5 IN AAAA ::5\n", NULL);
	expect("10-244-3-4.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-3-4.mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n", NULL);
}

static void test_headless_none_ready(void **state)
{
	(void)state;
	/* spec: SHOULD be NXDOMAIN, for the name and everything below */
	expect_nx("noready.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("noready.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nx("noready.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_http._tcp.noready.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("10-244-9-9.noready.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	/* a slice without its Service serves nothing */
	expect_nx("ghost.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_not_mine("8.8.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
}

static void test_srv(void **state)
{
	(void)state;
	expect("_https._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_https._tcp.kubernetes.default.svc.cluster.local. 5 IN SRV 0 100 443 "
	       "kubernetes.default.svc.cluster.local.\n",
	       "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n");
	/* headless: one per ready endpoint, ports from the slices */
	expect("_http._tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_http._tcp.web.demo.svc.cluster.local. 5 IN SRV 0 33 8080 web-0.web.demo.svc.cluster.local.\n"
	       "_http._tcp.web.demo.svc.cluster.local. 5 IN SRV 0 33 8080 web-1.web.demo.svc.cluster.local.\n"
	       "_http._tcp.web.demo.svc.cluster.local. 5 IN SRV 0 33 8080 web-2.web.demo.svc.cluster.local.\n",
	       "web-0.web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n"
	       "web-1.web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n"
	       "web-2.web.demo.svc.cluster.local. 5 IN A 10.244.1.12\n");
	/* dual-stack ClusterIP: both addresses in additional */
	expect("_http._tcp.api.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_http._tcp.api.demo.svc.cluster.local. 5 IN SRV 0 100 80 api.demo.svc.cluster.local.\n",
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n"
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n");
	/* protocol per port */
	expect("_dns._udp.kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_dns._udp.kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 100 53 "
	       "kube-dns.kube-system.svc.cluster.local.\n",
	       "kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10\n");
	expect_nx("_dns._tcp.kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_dns-tcp._udp.kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV);
	/* bare Service name: every numbered port, one record per port number */
	expect("kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 50 53 kube-dns.kube-system.svc.cluster.local.\n"
	       "kube-dns.kube-system.svc.cluster.local. 5 IN SRV 0 50 9153 kube-dns.kube-system.svc.cluster.local.\n",
	       "kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10\n");
	/* headless bare name and endpoint name: slice ports, unnamed included */
	expect("mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 53 0--5.mixed.demo.svc.cluster.local.\n"
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 53 10-244-3-4.mixed.demo.svc.cluster.local.\n"
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 7000 10-244-3-4.mixed.demo.svc.cluster.local.\n"
	       "mixed.demo.svc.cluster.local. 5 IN SRV 0 25 53 fd00-10-244-3--0.mixed.demo.svc.cluster.local.\n",
	       "0--5.mixed.demo.svc.cluster.local. 5 IN AAAA ::5\n"
	       "10-244-3-4.mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n"
	       "fd00-10-244-3--0.mixed.demo.svc.cluster.local. 5 IN AAAA fd00:10:244:3::\n");
	expect("_dns-tcp._tcp.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "_dns-tcp._tcp.mixed.demo.svc.cluster.local. 5 IN SRV 0 100 53 10-244-3-4.mixed.demo.svc.cluster.local.\n",
	       "10-244-3-4.mixed.demo.svc.cluster.local. 5 IN A 10.244.3.4\n");
	expect("web-0.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV,
	       "web-0.web.demo.svc.cluster.local. 5 IN SRV 0 100 8080 web-0.web.demo.svc.cluster.local.\n",
	       "web-0.web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n");
	/* names that do not exist, and names that exist without the type */
	expect_nx("_http._udp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_nope._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("https.tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_https._xyz.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_https._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("_https._tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nodata("orphan.nonsobj.svc.cluster.local", LDNS_RR_TYPE_SRV);
	/* empty non-terminals */
	expect_nodata("_tcp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_TCP.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("_udp.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nodata("_udp.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("_sctp.mixed.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("x._http._tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
}

static void test_ptr(void **state)
{
	(void)state;
	expect("1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR,
	       "1.0.96.10.in-addr.arpa. 5 IN PTR kubernetes.default.svc.cluster.local.\n", NULL);
	expect("11.2.244.10.IN-ADDR.ARPA", LDNS_RR_TYPE_PTR,
	       "11.2.244.10.IN-ADDR.ARPA. 5 IN PTR web-1.web.demo.svc.cluster.local.\n", NULL);
	expect("5.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR,
	       "5.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-5.api.demo.svc.cluster.local.\n", NULL);
	/* one address behind two Services: one PTR each */
	expect("10.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR,
	       "10.1.244.10.in-addr.arpa. 5 IN PTR 10-244-1-10.shared.demo.svc.cluster.local.\n"
	       "10.1.244.10.in-addr.arpa. 5 IN PTR web-0.web.demo.svc.cluster.local.\n",
	       NULL);
	/* IPv6, ClusterIP and endpoint */
	expect("c.0.d.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa",
	       LDNS_RR_TYPE_PTR,
	       "c.0.d.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN PTR "
	       "api.demo.svc.cluster.local.\n",
	       NULL);
	expect("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.4.2.0.0.1.0.0.0.0.D.F.ip6.arpa",
	       LDNS_RR_TYPE_PTR,
	       "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.4.2.0.0.1.0.0.0.0.D.F.ip6.arpa. 5 IN PTR "
	       "fd00-10-244-1--5.api.demo.svc.cluster.local.\n",
	       NULL);
	/* not ours: unknown addresses, partial and malformed reverse names */
	expect_not_mine("2.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("13.2.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR); /* not ready */
	expect_not_mine("10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("01.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("1.0.96.256.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("x.1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa", LDNS_RR_TYPE_PTR);
	expect_not_mine("c.0.d.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.g.ip6.arpa",
			LDNS_RR_TYPE_PTR);
	/* a known address, another type: NODATA with a reverse-zone SOA */
	ldns_pkt *p = ask("1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_true(g_info.nodata);
	assert_int_equal(ldns_pkt_ancount(p), 0);
	check_sec(p, LDNS_SECTION_AUTHORITY,
		  "in-addr.arpa. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 "
		  "1800 86400 5\n");
	ldns_pkt_free(p);
}

static void test_external_name(void **state)
{
	static const uint8_t www[] = "\003www\007example\003com";
	ldns_pkt *p;

	(void)state;
	expect("search.demo.svc.cluster.local", LDNS_RR_TYPE_CNAME,
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, 0);
	expect("search.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, sizeof(www));
	assert_memory_equal(g_info.chase_name, www, sizeof(www));
	expect("Search.Demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "Search.Demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, sizeof(www));
	/* other types: the CNAME, nothing to chase */
	expect("search.demo.svc.cluster.local", LDNS_RR_TYPE_TXT,
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n", NULL);
	assert_int_equal(g_info.chase_len, 0);
	/* nothing below an ExternalName */
	expect_nx("_http._tcp.search.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("www.search.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	/* in-zone target: resolved here */
	expect("alias.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "alias.demo.svc.cluster.local. 5 IN CNAME api.demo.svc.cluster.local.\n"
	       "api.demo.svc.cluster.local. 5 IN A 10.96.45.12\n",
	       NULL);
	assert_int_equal(g_info.chase_len, 0);
	expect("hop.demo.svc.cluster.local", LDNS_RR_TYPE_A,
	       "hop.demo.svc.cluster.local. 5 IN CNAME search.demo.svc.cluster.local.\n"
	       "search.demo.svc.cluster.local. 5 IN CNAME www.example.com.\n",
	       NULL);
	assert_int_equal(g_info.chase_len, sizeof(www));
	/* in-zone target that does not exist: NXDOMAIN after the CNAME */
	p = ask("dangling.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "dangling.demo.svc.cluster.local. 5 IN CNAME nothere.demo.svc.cluster.local.\n");
	check_sec(p, LDNS_SECTION_AUTHORITY, soa(1));
	ldns_pkt_free(p);
	expect("alias.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA,
	       "alias.demo.svc.cluster.local. 5 IN CNAME api.demo.svc.cluster.local.\n"
	       "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n",
	       NULL);
	/* in-zone target without the type: NODATA after the CNAME */
	p = ask("tov4.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_true(g_info.nodata);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "tov4.demo.svc.cluster.local. 5 IN CNAME kubernetes.default.svc.cluster.local.\n");
	check_sec(p, LDNS_SECTION_AUTHORITY, soa(1));
	ldns_pkt_free(p);
	/* a loop stops */
	p = ask("loop1.demo.svc.cluster.local", LDNS_RR_TYPE_A);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), 9);
	assert_int_equal(g_info.chase_len, 0);
	ldns_pkt_free(p);
	/* an IP literal is not a name: the Service exists without records */
	expect_nodata("iplit.demo.svc.cluster.local", LDNS_RR_TYPE_A);
}

static void test_pods(void **state)
{
	struct cluster_config off = cfg;
	ldns_pkt *p;

	(void)state;
	expect("10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_A,
	       "10-244-1-2.default.pod.cluster.local. 5 IN A 10.244.1.2\n", NULL);
	expect_nodata("10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_AAAA);
	expect("fd00--1.demo.pod.cluster.local", LDNS_RR_TYPE_AAAA,
	       "fd00--1.demo.pod.cluster.local. 5 IN AAAA fd00::1\n", NULL);
	expect_nodata("fd00--1.demo.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("10-244-1-2.nosuchns.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("blah.default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("10-244-1-256.default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("1-2-3-4-5-6-7-8-9.default.pod.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nodata("10-244--1.default.pod.cluster.local", LDNS_RR_TYPE_A); /* IPv6 10:244::1 */
	expect_nx("x.10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("default.pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("pod.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("nosuchns.pod.cluster.local", LDNS_RR_TYPE_A);
	/* disabled */
	off.pods_insecure = false;
	p = ask_full(snap, &off, "10-244-1-2.default.pod.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
	ldns_pkt_free(p);
	p = ask_full(snap, &off, "pod.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	ldns_pkt_free(p);
}

static void test_apex_and_version(void **state)
{
	(void)state;
	expect("dns-version.cluster.local", LDNS_RR_TYPE_TXT,
	       "dns-version.cluster.local. 5 IN TXT \"1.1.0\"\n", NULL);
	expect_nodata("dns-version.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("x.dns-version.cluster.local", LDNS_RR_TYPE_TXT);
	expect("cluster.local", LDNS_RR_TYPE_SOA,
	       "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 "
	       "1800 86400 5\n",
	       NULL);
	expect("Cluster.Local", LDNS_RR_TYPE_NS, "Cluster.Local. 5 IN NS ns.dns.Cluster.Local.\n",
	       NULL);
	expect_nodata("cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("cluster.local", LDNS_RR_TYPE_TXT);
	expect_nodata("dns.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("ns.dns.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("x.dns.cluster.local", LDNS_RR_TYPE_A);
}

static void test_negative(void **state)
{
	(void)state;
	expect_nodata("svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nodata("empty.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("nosuchns.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("kubernetes.nosuchns.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("nosuchsvc.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("nosuchsvc.default.svc.cluster.local", LDNS_RR_TYPE_TXT);
	expect_nx("foo.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("a.b.c.d.e.f.svc.cluster.local", LDNS_RR_TYPE_A);
	/* search-path expansions of names that live elsewhere */
	expect_nx("www.example.com.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("www.example.com.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("www.example.com.cluster.local", LDNS_RR_TYPE_AAAA);
	expect_nx("kubernetes.default.svc.cluster.local.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("_http._tcp.web.demo.svc.demo.svc.cluster.local", LDNS_RR_TYPE_SRV);
	expect_nx("kubernetes.default.default.svc.cluster.local", LDNS_RR_TYPE_A);
	expect_nx("x.y.kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A);
	/* not ours at all */
	expect_not_mine("www.example.com", LDNS_RR_TYPE_A);
	expect_not_mine("evilcluster.local", LDNS_RR_TYPE_A);
	expect_not_mine("local", LDNS_RR_TYPE_A);
	expect_not_mine(".", LDNS_RR_TYPE_NS);
	assert_true(cluster_in_zone(&cfg, (const uint8_t *)"\007cluster\005local", 15));
	assert_true(cluster_in_zone(&cfg, (const uint8_t *)"\001a\007CLUSTER\005local", 17));
	assert_false(cluster_in_zone(&cfg, (const uint8_t *)"\005local", 7));
	assert_false(cluster_in_zone(&cfg, (const uint8_t *)"\001a\001b", 5));
	assert_false(cluster_in_zone(&cfg, (const uint8_t *)"\007cluster\005local", 14));
	/* unsynced: nothing is answered */
	assert_int_equal(ask_raw(NULL, &cfg, "kubernetes.default.svc.cluster.local",
				 LDNS_RR_TYPE_A, 512),
			 CLUSTER_NOT_MINE);
}

static void test_malformed_qname(void **state)
{
	static const struct {
		const char *w;
		size_t len;
	} bad[] = {
		{ "", 0 },
		{ "\007cluster\005local", 14 },          /* no root */
		{ "\007cluster\005local\000\000", 17 },  /* trailing byte */
		{ "\300\014", 2 },                       /* compression pointer */
		{ "\100aaaa", 6 },                       /* label > 63 */
		{ "\010cluster\005local", 15 },          /* label runs past the end */
	};
	size_t len = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(cluster_answer(snap, &cfg, (const uint8_t *)bad[i].w, bad[i].len,
						LDNS_RR_TYPE_A, 1, g_wire, sizeof(g_wire), &len,
						&g_info),
				 CLUSTER_NOT_MINE);
		assert_int_equal(len, 0);
	}
	/* too long a name */
	uint8_t q[300];
	size_t o = 0;
	for (int i = 0; i < 4; i++) {
		q[o++] = 63;
		memset(q + o, 'a', 63);
		o += 63;
	}
	memcpy(q + o, "\007cluster\005local", 15);
	o += 15;
	assert_int_equal(cluster_answer(snap, &cfg, q, o, LDNS_RR_TYPE_A, 1, g_wire, sizeof(g_wire),
					&len, NULL),
			 CLUSTER_NOT_MINE);
	/* NULL info is fine */
	assert_int_equal(cluster_answer(snap, &cfg, (const uint8_t *)"\007cluster\005local", 15,
					LDNS_RR_TYPE_SOA, 1, g_wire, sizeof(g_wire), &len, NULL),
			 CLUSTER_ANSWERED);
	/* a malformed configured domain serves nothing */
	struct cluster_config bc = cfg;
	strcpy(bc.domain, "a..b");
	assert_int_equal(ask_raw(snap, &bc, "x.a..b", LDNS_RR_TYPE_A, 512), CLUSTER_NOT_MINE);
}

/* Random names must never crash and every answer must parse. */
static void test_random_names(void **state)
{
	static const char *parts[] = { "cluster", "local", "svc", "pod", "default", "demo", "web",
				       "web-0", "_http", "_tcp", "in-addr", "arpa", "ip6", "10", "96",
				       "0", "1", "dns", "ns", "dns-version", "kubernetes", "a", "_",
				       "mixed", "search", "alias", "loop1", "0--5", "CLUSTER", "Svc" };
	static const uint16_t types[] = { 1, 2, 5, 6, 12, 16, 28, 33, 255, 15 };
	unsigned seed = 12345;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		uint8_t q[256];
		size_t o = 0;
		int nl = (int)(rand_r(&seed) % 8);
		for (int k = 0; k < nl; k++) {
			const char *p = parts[rand_r(&seed) % (sizeof(parts) / sizeof(parts[0]))];
			size_t l = strlen(p);
			q[o++] = (uint8_t)l;
			memcpy(q + o, p, l);
			o += l;
		}
		if (rand_r(&seed) % 2) {
			memcpy(q + o, "\007cluster\005local", 14);
			o += 14;
		}
		q[o++] = 0;
		size_t cap = rand_r(&seed) % 3 ? 65535 : (size_t)(rand_r(&seed) % 600);
		size_t len;
		enum cluster_verdict v = cluster_answer(snap, &cfg, q, o,
							types[rand_r(&seed) % 10], 1, g_wire,
							cap, &len, &g_info);
		if (v == CLUSTER_ANSWERED && len >= 12 + o + 4) {
			ldns_pkt *p = NULL;
			assert_true(len <= cap);
			assert_int_equal(ldns_wire2pkt(&p, g_wire, len), LDNS_STATUS_OK);
			ldns_pkt_free(p);
		}
	}
}

static void test_truncation(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	struct cluster_snapshot *sn;
	char buf[100000];
	size_t o = 0;
	ldns_pkt *p;

	(void)state;
	ns(s, "big");
	put(s, K8S_SERVICE,
	    "{'metadata':{'name':'many','namespace':'big'},'spec':{'clusterIP':'None',"
	    "'ports':[{'name':'http','port':80}]}}");
	o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			      "{'metadata':{'name':'many-1','namespace':'big','labels':"
			      "{'kubernetes.io/service-name':'many'}},'addressType':'IPv4',"
			      "'ports':[{'name':'http','port':80}],'endpoints':[");
	for (int i = 0; i < 300; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s{'addresses':['10.1.%d.%d']}",
				      i ? "," : "", i / 200, i % 200 + 1);
	snprintf(buf + o, sizeof(buf) - o, "]}");
	put(s, K8S_ENDPOINTSLICE, buf);
	sn = publish_once(s);

	/* too big for 512: TC, no records */
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_true(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 0);
	assert_int_equal(ldns_pkt_nscount(p), 0);
	assert_int_equal(ldns_pkt_arcount(p), 0);
	assert_int_equal(g_len, 12 + 28 + 4);
	ldns_pkt_free(p);
	/* fits in 65535 */
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, 65535);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 300);
	ldns_pkt_free(p);
	/* exactly the size it needs: fits; one byte less: TC */
	size_t need = g_len;
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, need);
	assert_false(ldns_pkt_tc(p));
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, need - 1);
	assert_true(ldns_pkt_tc(p));
	ldns_pkt_free(p);
	/* SRV: the answers fit in 65535 with the additional addresses */
	p = ask_full(sn, &cfg, "_http._tcp.many.big.svc.cluster.local", LDNS_RR_TYPE_SRV, 65535);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 300);
	assert_int_equal(ldns_pkt_arcount(p), 300);
	size_t full = g_len;
	ldns_pkt_free(p);
	/* answers fit but the additional section does not: dropped, no TC */
	p = ask_full(sn, &cfg, "_http._tcp.many.big.svc.cluster.local", LDNS_RR_TYPE_SRV,
		     full - 1);
	assert_false(ldns_pkt_tc(p));
	assert_int_equal(ldns_pkt_ancount(p), 300);
	assert_int_equal(ldns_pkt_arcount(p), 0);
	ldns_pkt_free(p);
	/* a cap below the question: an empty truncated header, or nothing */
	size_t len;
	assert_int_equal(ask_raw(sn, &cfg, "many.big.svc.cluster.local", LDNS_RR_TYPE_A, 20),
			 CLUSTER_ANSWERED);
	assert_int_equal(g_len, 12);
	assert_true(g_wire[2] & 0x02);
	assert_int_equal(cluster_answer(sn, &cfg, (const uint8_t *)"\007cluster\005local", 15,
					LDNS_RR_TYPE_SOA, 1, g_wire, 5, &len, NULL),
			 CLUSTER_ANSWERED);
	assert_int_equal(len, 0);
	cluster_snapshot_unref(sn);
	k8s_store_free(s);
}

static void test_snapshots(void **state)
{
	struct cluster_snapshot *s1, *s2, *s3;
	struct k8s_store_stats st;
	struct pm_val *a1 = NULL, *a2 = NULL;
	ldns_pkt *p;
	int shared = 0;

	(void)state;
	s1 = snap;
	assert_int_equal(s1->serial, 1);
	/* nothing changed: the same snapshot */
	s2 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s2, s1);
	cluster_snapshot_unref(s2);

	/* change one Service: a new snapshot, the old one still answers */
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'kubernetes','namespace':'default'},"
	    "'spec':{'clusterIP':'10.96.0.2','ports':[{'name':'https','port':443}]}}");
	del(store, K8S_SERVICE, "{'metadata':{'name':'search','namespace':'demo'}}");
	s2 = cluster_publisher_publish(pub, store);
	assert_ptr_not_equal(s2, s1);
	assert_int_equal(s2->serial, 2);
	expect_neg_snap(s2, "search.demo.svc.cluster.local", LDNS_RR_TYPE_CNAME,
			LDNS_RCODE_NXDOMAIN);
	p = ask_full(s2, &cfg, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.2\n");
	ldns_pkt_free(p);
	p = ask_full(s1, &cfg, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n");
	ldns_pkt_free(p);
	p = ask_full(s1, &cfg, "search.demo.svc.cluster.local", LDNS_RR_TYPE_CNAME, 512);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_pkt_free(p);
	/* reverse entries moved with the ClusterIP */
	assert_int_equal(ask_raw(s2, &cfg, "1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	assert_int_equal(ask_raw(s2, &cfg, "2.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_ANSWERED);
	assert_int_equal(ask_raw(s1, &cfg, "1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_ANSWERED);
	/* the SOA serial is the generation */
	expect_neg_snap(s2, "nope.default.svc.cluster.local", LDNS_RR_TYPE_A, 3);

	/* unchanged records and most shards are shared */
	assert_true(cluster_pmap_get(&s1->svc, &s1->hkey, "demo/api", 8, &a1));
	assert_true(cluster_pmap_get(&s2->svc, &s2->hkey, "demo/api", 8, &a2));
	assert_ptr_equal(a1, a2);
	for (unsigned i = 0; i < PMAP_SHARDS; i++)
		shared += s1->svc.shard[i] == s2->svc.shard[i];
	assert_true(shared >= (int)PMAP_SHARDS - 2);

	/* a modification DNS cannot see shares everything */
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'web-a','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'web','extra':'x'}},'addressType':'IPv4',"
	    "'endpoints':["
	    "{'addresses':['10.244.1.10'],'hostname':'web-0','conditions':{'ready':true}},"
	    "{'addresses':['10.244.2.11'],'hostname':'web-1'},"
	    "{'addresses':['10.244.2.14'],'hostname':'web-4','conditions':{'ready':false}}],"
	    "'ports':[{'name':'http','port':8080,'protocol':'TCP'}]}");
	s3 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s3, s2);
	cluster_snapshot_unref(s3);

	/* a relist that brings back the same content: still the same snapshot */
	k8s_store_clear_kind(store, K8S_SERVICE);
	k8s_store_clear_kind(store, K8S_ENDPOINTSLICE);
	k8s_store_clear_kind(store, K8S_NAMESPACE);
	build_base(store);
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'kubernetes','namespace':'default'},"
	    "'spec':{'clusterIP':'10.96.0.2','ports':[{'name':'https','port':443}]}}");
	del(store, K8S_SERVICE, "{'metadata':{'name':'search','namespace':'demo'}}");
	s3 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s3, s2);
	cluster_snapshot_unref(s3);

	/* a relist that drops things */
	k8s_store_clear_kind(store, K8S_SERVICE);
	k8s_store_clear_kind(store, K8S_NAMESPACE);
	s3 = cluster_publisher_publish(pub, store);
	assert_ptr_not_equal(s3, s2);
	expect_neg_snap(s3, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	expect_neg_snap(s3, "default.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	assert_int_equal(ask_raw(s3, &cfg, "2.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	assert_int_equal(ask_raw(s3, &cfg, "10.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	for (unsigned i = 0; i < PMAP_SHARDS; i++) {
		assert_null(s3->svc.shard[i]);
		assert_null(s3->rev.shard[i]);
	}
	k8s_store_get_stats(store, &st);
	assert_int_equal(st.services, 0);
	assert_int_equal(st.namespaces, 0);
	assert_true(st.endpointslices > 0);
	assert_int_equal(cluster_publisher_count(pub), 3);

	/* the old ones still work after the store moved on, in any order */
	cluster_snapshot_unref(s2);
	p = ask_full(s1, &cfg, "web.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(ldns_pkt_ancount(p), 3);
	ldns_pkt_free(p);
	cluster_snapshot_ref(s3);
	cluster_snapshot_unref(s3);
	cluster_snapshot_unref(s3);
	cluster_snapshot_unref(NULL);
	/* s1 (snap) is released by teardown, after the store's own reference */
}

static void test_events(void **state)
{
	struct k8s_store_stats st;
	struct cluster_snapshot *s2;
	ldns_pkt *p;

	(void)state;
	/* a slice arrives before its Service: served once the Service exists */
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'ghost','namespace':'demo'},'spec':{'clusterIP':'None'}}");
	/* a slice moves to another Service (label change), another is deleted */
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'web-b','namespace':'demo',"
	    "'labels':{'kubernetes.io/service-name':'ghost'}},'addressType':'IPv4',"
	    "'endpoints':[{'addresses':['10.244.1.12'],'hostname':'web-2'}],"
	    "'ports':[{'name':'http','port':8080}]}");
	del(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'api-v6','namespace':'demo'},'addressType':'IPv6'}");
	del(store, K8S_ENDPOINTSLICE, "{'metadata':{'name':'never-was','namespace':'demo'}}");
	del(store, K8S_NAMESPACE, "{'metadata':{'name':'empty'}}");
	s2 = cluster_publisher_publish(pub, store);

	p = ask_full(s2, &cfg, "ghost.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "ghost.demo.svc.cluster.local. 5 IN A 10.244.1.12\n"
		  "ghost.demo.svc.cluster.local. 5 IN A 10.244.8.8\n");
	ldns_pkt_free(p);
	p = ask_full(s2, &cfg, "web.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "web.demo.svc.cluster.local. 5 IN A 10.244.1.10\n"
		  "web.demo.svc.cluster.local. 5 IN A 10.244.2.11\n");
	ldns_pkt_free(p);
	p = ask_full(s2, &cfg, "12.1.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "12.1.244.10.in-addr.arpa. 5 IN PTR web-2.ghost.demo.svc.cluster.local.\n");
	ldns_pkt_free(p);
	expect_neg_snap(s2, "fd00-10-244-1--5.api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA, 3);
	expect_neg_snap(s2, "empty.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	/* the namespace of a Service survives its Namespace object */
	del(store, K8S_NAMESPACE, "{'metadata':{'name':'demo'}}");
	cluster_snapshot_unref(s2);
	s2 = cluster_publisher_publish(pub, store);
	expect_neg_snap(s2, "demo.svc.cluster.local", LDNS_RR_TYPE_A, 0);
	/* deleting the last Service of a namespace removes it */
	del(store, K8S_SERVICE, "{'metadata':{'name':'orphan','namespace':'nonsobj'}}");
	cluster_snapshot_unref(s2);
	s2 = cluster_publisher_publish(pub, store);
	expect_neg_snap(s2, "nonsobj.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	cluster_snapshot_unref(s2);

	k8s_store_get_stats(store, &st);
	assert_int_equal(st.events_rejected, 0);
	assert_true(st.events_applied > 30);
	assert_int_equal(st.namespaces, 2);
}

/* Every malformed object is rejected with -EINVAL and a reason, and leaves
 * the store unchanged. */
static void test_malformed_objects(void **state)
{
	static const struct {
		enum k8s_kind kind;
		const char *json;
	} bad[] = {
		{ K8S_SERVICE, "[]" },
		{ K8S_SERVICE, "{'spec':{}}" },
		{ K8S_SERVICE, "{'metadata':[]}" },
		{ K8S_SERVICE, "{'metadata':{'namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':7,'namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':null}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'','namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a.b','namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x/y'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a\\u0000b','namespace':'x'}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',"
		  "'namespace':'x'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':[]}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':1}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIP':1}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIP':'10.0.0.256'}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':'10.0.0.1'}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':[1]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':"
			       "['10.0.0.1','fd00::1','10.0.0.2']}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'clusterIPs':['fe80::1%eth0']}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':'ExternalName',"
			       "'externalName':['x']}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':'ExternalName',"
			       "'externalName':'bad name.com'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'type':'ExternalName',"
			       "'externalName':'a..com'}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':{}}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[1]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':'80'}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':0}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':65536}]}}" },
		{ K8S_SERVICE,
		  "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':[{'port':1.5}]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':"
			       "[{'port':80,'name':5}]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':"
			       "[{'port':80,'name':'a b'}]}}" },
		{ K8S_SERVICE, "{'metadata':{'name':'a','namespace':'x'},'spec':{'ports':"
			       "[{'port':80,'protocol':6}]}}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'}}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':4}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s'},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x','labels':[]},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x','labels':"
				     "{'kubernetes.io/service-name':3}},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x','labels':"
				     "{'kubernetes.io/service-name':'a.b'}},'addressType':'IPv4'}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4','endpoints':{}}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4','endpoints':[1]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':'10.0.0.1'}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':[1]}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['fd00::1']}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv6',"
				     "'endpoints':[{'addresses':['10.0.0.1']}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'conditions':[]}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'conditions':"
				     "{'ready':'true'}}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'hostname':1}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'endpoints':[{'addresses':['10.0.0.1'],'hostname':'a.b'}]}" },
		{ K8S_ENDPOINTSLICE,
		  "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4','ports':{}}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'ports':[{'port':-1}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'ports':[{'port':'80'}]}" },
		{ K8S_ENDPOINTSLICE, "{'metadata':{'name':'s','namespace':'x'},'addressType':'IPv4',"
				     "'ports':[{'port':80,'name':[]}]}" },
		{ K8S_NAMESPACE, "{'metadata':{}}" },
		{ K8S_NAMESPACE, "{'metadata':{'name':false}}" },
		{ K8S_NAMESPACE, "{'metadata':{'name':'UPPER CASE'}}" },
		{ K8S_NAMESPACE, "'string'" },
		{ K8S_KIND_COUNT, "{'metadata':{'name':'a','namespace':'b'}}" },
	};
	struct k8s_store_stats before, after;
	struct cluster_snapshot *s2;
	char err[256];

	(void)state;
	k8s_store_get_stats(store, &before);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int ev = K8S_ADDED; ev <= K8S_MODIFIED; ev++) {
			err[0] = '\0';
			int rc = apply_rc(store, bad[i].kind, (enum k8s_event)ev, bad[i].json, err,
					  sizeof(err));
			if (rc != -EINVAL)
				fail_msg("case %zu accepted (%d): %s", i, rc, bad[i].json);
			assert_true(strlen(err) > 0);
		}
	}
	/* err may be NULL */
	assert_int_equal(apply_rc(store, K8S_NAMESPACE, K8S_ADDED, "{}", NULL, 0), -EINVAL);
	assert_int_equal(k8s_store_apply(store, K8S_NAMESPACE, K8S_ADDED, NULL, NULL, 0), -EINVAL);
	/* DELETED needs metadata only */
	assert_int_equal(apply_rc(store, K8S_SERVICE, K8S_DELETED, "{'spec':{}}", err, sizeof(err)),
			 -EINVAL);
	k8s_store_get_stats(store, &after);
	assert_int_equal(after.services, before.services);
	assert_int_equal(after.endpointslices, before.endpointslices);
	assert_int_equal(after.namespaces, before.namespaces);
	assert_int_equal(after.events_applied, before.events_applied);
	assert_int_equal(after.events_rejected,
			 before.events_rejected + 2 * sizeof(bad) / sizeof(bad[0]) + 3);
	s2 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s2, snap);
	cluster_snapshot_unref(s2);

	/* what is tolerated: unknown types and kinds, FQDN slices, nulls */
	put(store, K8S_SERVICE,
	    "{'metadata':{'name':'np','namespace':'demo'},'spec':{'type':'NodePort',"
	    "'clusterIP':'10.96.9.1','ports':[{'port':80,'protocol':'XYZ','nodePort':30080}],"
	    "'externalName':null,'selector':null}}");
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'fq','namespace':'demo','labels':"
	    "{'kubernetes.io/service-name':'np'}},'addressType':'FQDN',"
	    "'endpoints':[{'addresses':['example.com']}],'ports':null}");
	put(store, K8S_ENDPOINTSLICE,
	    "{'metadata':{'name':'nulls','namespace':'demo','labels':null},"
	    "'addressType':'IPv4','endpoints':null}");
	s2 = cluster_publisher_publish(pub, store);
	ldns_pkt *p = ask_full(s2, &cfg, "np.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "np.demo.svc.cluster.local. 5 IN A 10.96.9.1\n");
	ldns_pkt_free(p);
	/* a port of an unknown protocol: only in the bare-name SRV */
	p = ask_full(s2, &cfg, "np.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_pkt_free(p);
	expect_neg_snap(s2, "_tcp.np.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 3);
	cluster_snapshot_unref(s2);
}

static void test_load_file(void **state)
{
	struct k8s_store_stats st;
	struct cluster_snapshot *s2;
	char err[512];
	ldns_pkt *p;

	(void)state;
	/* a List replaces everything; other kinds are skipped */
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "list.json", err, sizeof(err)), 0);
	k8s_store_get_stats(store, &st);
	assert_int_equal(st.services, 1);
	assert_int_equal(st.endpointslices, 1);
	assert_int_equal(st.namespaces, 1);
	s2 = cluster_publisher_publish(pub, store);
	assert_int_equal(s2->serial, 2);
	p = ask_full(s2, &cfg, "cart.shop.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "cart.shop.svc.cluster.local. 5 IN A 10.0.0.50\n");
	ldns_pkt_free(p);
	p = ask_full(s2, &cfg, "10-1-0-5.cart.shop.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "10-1-0-5.cart.shop.svc.cluster.local. 5 IN A 10.1.0.5\n");
	ldns_pkt_free(p);
	expect_neg_snap(s2, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	assert_int_equal(ask_raw(s2, &cfg, "1.0.96.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);

	/* all or nothing: errors leave the store as it was */
	err[0] = '\0';
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "bad-item.json", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "items[2]"));
	assert_non_null(strstr(err, "port"));
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "bad-json.json", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "bad-json.json"));
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "wrong-kind.json", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "missing.json", err, sizeof(err)),
			 -ENOENT);
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "missing.json", NULL, 0), -ENOENT);
	k8s_store_get_stats(store, &st);
	assert_int_equal(st.services, 1);
	struct cluster_snapshot *s3 = cluster_publisher_publish(pub, store);
	assert_ptr_equal(s3, s2);
	cluster_snapshot_unref(s3);
	cluster_snapshot_unref(s2);

	/* a typed list (items without kind) and a single object */
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "services-typed.json", err,
					     sizeof(err)),
			 0);
	s2 = cluster_publisher_publish(pub, store);
	p = ask_full(s2, &cfg, "ledger.bank.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	check_sec(p, LDNS_SECTION_ANSWER,
		  "ledger.bank.svc.cluster.local. 5 IN SRV 0 100 443 ledger.bank.svc.cluster.local.\n");
	ldns_pkt_free(p);
	expect_neg_snap(s2, "vault.bank.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	expect_neg_snap(s2, "cart.shop.svc.cluster.local", LDNS_RR_TYPE_A, 3);
	cluster_snapshot_unref(s2);
	assert_int_equal(k8s_store_load_file(store, DATA_DIR "service.json", err, sizeof(err)), 0);
	s2 = cluster_publisher_publish(pub, store);
	p = ask_full(s2, &cfg, "_grpc._tcp.solo.one.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 1);
	ldns_pkt_free(p);
	cluster_snapshot_unref(s2);
}

static void test_demo_file(void **state)
{
	struct k8s_store *s = k8s_store_new(&cfg);
	struct cluster_snapshot *sn;
	char err[512];
	ldns_pkt *p;

	(void)state;
	if (k8s_store_load_file(s, DEMO_FILE, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	sn = publish_once(s);
	p = ask_full(sn, &cfg, "kubernetes.default.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1\n");
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "kube-dns.kube-system.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 2);
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "api.demo.svc.cluster.local", LDNS_RR_TYPE_AAAA, 512);
	check_sec(p, LDNS_SECTION_ANSWER, "api.demo.svc.cluster.local. 5 IN AAAA fd00:10:96::2d0c\n");
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "_http._tcp.web.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 512);
	assert_int_equal(ldns_pkt_ancount(p), 3);
	assert_int_equal(ldns_pkt_arcount(p), 3);
	ldns_pkt_free(p);
	p = ask_full(sn, &cfg, "search.demo.svc.cluster.local", LDNS_RR_TYPE_A, 512);
	assert_int_equal(g_info.chase_len, 17);
	ldns_pkt_free(p);
	assert_int_equal(ask_raw(sn, &cfg, "13.2.244.10.in-addr.arpa", LDNS_RR_TYPE_PTR, 512),
			 CLUSTER_NOT_MINE);
	cluster_snapshot_unref(sn);
	k8s_store_free(s);
}

/* Limits: too many endpoints, ports, addresses. */
static void test_limits(void **state)
{
	size_t cap = 200000, o = 0;
	char *buf = malloc(cap);
	char err[256];

	(void)state;
	o += (size_t)snprintf(buf + o, cap - o, "{'metadata':{'name':'s','namespace':'demo'},"
						 "'addressType':'IPv4','endpoints':[");
	for (int i = 0; i < K8S_MAX_ENDPOINTS + 1; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s{'addresses':['10.9.%d.%d']}",
				      i ? "," : "", i / 250, i % 250);
	snprintf(buf + o, cap - o, "]}");
	assert_int_equal(apply_rc(store, K8S_ENDPOINTSLICE, K8S_ADDED, buf, err, sizeof(err)),
			 -EINVAL);

	o = (size_t)snprintf(buf, cap, "{'metadata':{'name':'s','namespace':'demo'},"
				       "'spec':{'ports':[");
	for (int i = 0; i < K8S_MAX_PORTS + 1; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s{'port':%d}", i ? "," : "", i + 1);
	snprintf(buf + o, cap - o, "]}}");
	assert_int_equal(apply_rc(store, K8S_SERVICE, K8S_ADDED, buf, err, sizeof(err)), -EINVAL);

	o = (size_t)snprintf(buf, cap, "{'metadata':{'name':'s','namespace':'demo'},"
				       "'addressType':'IPv4','endpoints':[{'addresses':[");
	for (int i = 0; i < K8S_MAX_ADDRS_PER_ENDPOINT + 1; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s'10.8.0.%d'", i ? "," : "", i);
	snprintf(buf + o, cap - o, "]}]}");
	assert_int_equal(apply_rc(store, K8S_ENDPOINTSLICE, K8S_ADDED, buf, err, sizeof(err)),
			 -EINVAL);

	/* exactly at the limits is fine */
	o = (size_t)snprintf(buf, cap, "{'metadata':{'name':'s','namespace':'demo'},"
				       "'spec':{'ports':[");
	for (int i = 0; i < K8S_MAX_PORTS; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s{'port':%d,'name':'p%d'}", i ? "," : "",
				      i + 1, i);
	snprintf(buf + o, cap - o, "],'clusterIP':'10.96.99.99'}}");
	put(store, K8S_SERVICE, buf);
	free(buf);
	struct cluster_snapshot *s2 = cluster_publisher_publish(pub, store);
	ldns_pkt *p = ask_full(s2, &cfg, "s.demo.svc.cluster.local", LDNS_RR_TYPE_SRV, 65535);
	assert_int_equal(ldns_pkt_ancount(p), K8S_MAX_PORTS);
	ldns_pkt_free(p);
	cluster_snapshot_unref(s2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_clusterip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dual_stack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_case, setup, teardown),
		cmocka_unit_test_setup_teardown(test_headless, setup, teardown),
		cmocka_unit_test_setup_teardown(test_headless_none_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_srv, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ptr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_external_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pods, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apex_and_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_qname, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_demo_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
