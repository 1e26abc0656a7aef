/* tests/unit/test_query.c - the path of one query, with a link-time fake upstream.
 *
 * query.c reaches the network only through struct query_upstream_ops (the
 * shared fake in tests/support/fake_upstream.c) and the query_io callbacks
 * (implemented here), so every branch of the path
 * (cache, coalescing, serve-stale, bounds, cluster zone, stubs, prefetch,
 * ExternalName chase) runs deterministically, with time passed in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <jansson.h>
#include <ldns/ldns.h>

#include "nodedns/dns/autopath.h"
#include "nodedns/dns/cache.h"
#include "nodedns/cluster/pod_table.h"
#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/dns/dnsmsg.h"
#include "nodedns/dns/query.h"
#include "support/dnsname.h"
#include "support/fake_upstream.h"

/* ------------------------------------------------------- fake upstream */

/* Groups are opaque to the query path; here they are tokens the fake records. */
struct upstream_group {
	int id;
};

static struct fake_upstream up;

/* Answer call @p i: an A record @p ip with TTL @p ttl, or @p rcode with an
 * SOA (minimum 60) when @p ip is NULL. */
static uint16_t g_reply_flags; /* header flags ORed into the next fake answers */

static void fake_answer(size_t i, const char *ip, uint32_t ttl, int rcode)
{
	struct fake_upstream_call *c = &up.calls[i];
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, c->query, c->len), LDNS_STATUS_OK);
	ldns_pkt *r = ldns_pkt_clone(q);
	ldns_pkt_set_qr(r, true);
	ldns_pkt_set_ra(r, true);
	ldns_pkt_set_rcode(r, (uint8_t)rcode);
	ldns_rr *qrr = ldns_rr_list_rr(ldns_pkt_question(q), 0);
	char *owner = ldns_rdf2str(ldns_rr_owner(qrr));
	char text[512];
	ldns_rr *rr = NULL;
	if (ip) {
		snprintf(text, sizeof(text), "%s %u IN A %s", owner, ttl, ip);
		assert_int_equal(ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, rr);
	} else {
		snprintf(text, sizeof(text), "example.test. %u IN SOA ns.example.test. h.example.test. 1 2 3 4 60",
			 ttl);
		assert_int_equal(ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(r, LDNS_SECTION_AUTHORITY, rr);
	}
	LDNS_FREE(owner);
	uint8_t *wire = NULL;
	size_t len = 0;
	assert_int_equal(ldns_pkt2wire(&wire, r, &len), LDNS_STATUS_OK);
	wire[2] |= (uint8_t)(g_reply_flags >> 8);
	wire[3] |= (uint8_t)g_reply_flags;
	fake_upstream_finish(&up, c, 0, wire, len);
	LDNS_FREE(wire);
	ldns_pkt_free(q);
	ldns_pkt_free(r);
}

static void fake_fail(size_t i, int status)
{
	fake_upstream_finish(&up, &up.calls[i], status, NULL, 0);
}

/* ---------------------------------------------------------- fake server */

#define MAX_REPLIES 256

struct reply {
	uint8_t proto;
	void *conn;
	uint8_t wire[DNS_MSG_MAX_BYTES + DNS_OPT_RR_BYTES];
	size_t len;
};

static struct reply replies[MAX_REPLIES];
static size_t nreplies;
static int holds;
static uint64_t now;
static struct sockaddr_storage g_src; /* the client's address (zero: none) */

static void io_reply(void *arg, const struct query_client *c, const uint8_t *wire, size_t len)
{
	(void)arg;
	assert_true(nreplies < MAX_REPLIES);
	assert_true(len <= sizeof(replies[0].wire));
	replies[nreplies].proto = c->proto;
	replies[nreplies].conn = c->conn;
	memcpy(replies[nreplies].wire, wire, len);
	replies[nreplies].len = len;
	nreplies++;
}

static void io_hold(void *arg, const struct query_client *c)
{
	(void)arg;
	if (c->proto == QUERY_TCP)
		holds++;
}

static void io_release(void *arg, const struct query_client *c)
{
	(void)arg;
	if (c->proto == QUERY_TCP)
		holds--;
}

static uint64_t io_now(void *arg)
{
	(void)arg;
	return now;
}

/* ------------------------------------------------------------ fixture */

struct fixture {
	struct cache *cache;
	struct query_env env;
	struct upstream_group def, fallback, stub_group;
	struct query_stub stub;
	struct k8s_store *store;
	struct query_worker *w;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->cache = cache_new(1 << 20, 4);
	f->def.id = 0;
	f->fallback.id = 1;
	f->stub_group.id = 2;
	f->stub.name_len = dnsname_to_wire("corp.example", f->stub.name);
	assert_int_equal(f->stub.name_len, 14);
	f->stub.group = &f->stub_group;

	struct query_env *e = &f->env;
	e->cache = f->cache;
	snprintf(e->cluster.domain, sizeof(e->cluster.domain), "cluster.local");
	e->cluster.ttl_s = 5;
	e->cluster.pods_insecure = true;
	e->upstreams = &f->def;
	e->stubs = &f->stub;
	e->nstubs = 1;
	e->ttl = (struct dnsmsg_ttl_policy){ 0, 86400, 300, 2 };
	e->serve_stale_s = 3600;
	e->prefetch = true;
	e->max_waiters = 3;
	e->version = "nodedns test";
	e->ident = "test-host";
	f->store = k8s_store_new(&e->cluster);

	struct query_io io = { io_reply, io_hold, io_release, io_now, NULL };
	fake_upstream_init(&up, FAKE_UPSTREAM_CALLS);
	f->w = query_worker_new(e, &up.ops, &io);
	nreplies = 0;
	holds = 0;
	memset(&g_src, 0, sizeof(g_src));
	now = 1000000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	fake_upstream_cancel_all(&up);
	assert_int_equal(query_pending(f->w), 0);
	assert_int_equal(holds, 0);
	query_worker_free(f->w);
	k8s_store_free(f->store);
	cache_free(f->cache);
	free(f);
	return 0;
}

/* Send a query for @p name/@p type with @p id and header @p flags (LDNS_RD,
 * LDNS_CD) from a client. */
static void ask_flags(struct fixture *f, const char *name, ldns_rr_type type, uint16_t id,
		      uint8_t proto, bool edns, uint16_t flags)
{
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&q, name, type, LDNS_RR_CLASS_IN, flags),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(q, id);
	if (edns)
		ldns_pkt_set_edns_udp_size(q, 4096);
	uint8_t *wire = NULL;
	size_t len = 0;
	assert_int_equal(ldns_pkt2wire(&wire, q, &len), LDNS_STATUS_OK);
	struct query_client c;
	memset(&c, 0, sizeof(c));
	c.proto = proto;
	c.conn = (void *)(uintptr_t)(id + 1);
	c.addr = g_src;
	c.addrlen = sizeof(g_src);
	query_handle(f->w, wire, len, &c, now);
	LDNS_FREE(wire);
	ldns_pkt_free(q);
}

/* Send a query with RD=1 (what stub resolvers send). */
static void ask(struct fixture *f, const char *name, ldns_rr_type type, uint16_t id, uint8_t proto,
		bool edns)
{
	ask_flags(f, name, type, id, proto, edns, LDNS_RD);
}

/* Whether upstream call @p i was sent with CD=1. */
static bool call_cd(size_t i)
{
	return (up.calls[i].query[3] & 0x10) != 0;
}

static ldns_pkt *reply_pkt(size_t i)
{
	ldns_pkt *p = NULL;
	assert_true(i < nreplies);
	assert_int_equal(ldns_wire2pkt(&p, replies[i].wire, replies[i].len), LDNS_STATUS_OK);
	return p;
}

static void check_a(size_t i, uint16_t id, const char *owner_text, const char *ip, int rcode)
{
	ldns_pkt *p = reply_pkt(i);
	assert_int_equal(ldns_pkt_id(p), id);
	assert_true(ldns_pkt_qr(p));
	assert_true(ldns_pkt_ra(p));
	assert_int_equal(ldns_pkt_get_rcode(p), rcode);
	char *q = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
	assert_string_equal(q, owner_text);
	LDNS_FREE(q);
	if (ip) {
		ldns_rr_list *a = ldns_pkt_rr_list_by_type(p, LDNS_RR_TYPE_A, LDNS_SECTION_ANSWER);
		assert_non_null(a);
		char *t = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(a, 0), 0));
		assert_string_equal(t, ip);
		LDNS_FREE(t);
		ldns_rr_list_deep_free(a);
	}
	ldns_pkt_free(p);
}

static uint32_t answer_ttl(size_t i)
{
	ldns_pkt *p = reply_pkt(i);
	uint32_t ttl = ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_answer(p), 0));
	ldns_pkt_free(p);
	return ttl;
}

/* -------------------------------------------------------------- tests */

static void test_miss_then_hit(void **state)
{
	struct fixture *f = *state;
	ask(f, "WWW.Example.Test.", LDNS_RR_TYPE_A, 100, QUERY_UDP, true);
	assert_int_equal(up.ncalls, 1);
	assert_int_equal(nreplies, 0);
	assert_ptr_equal(up.calls[0].group, &f->def);
	/* Upstream gets the lower-cased name, RD=1, EDNS. */
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, up.calls[0].query, up.calls[0].len), LDNS_STATUS_OK);
	assert_true(ldns_pkt_rd(q));
	assert_int_equal(ldns_pkt_edns_udp_size(q), 1232);
	char *n = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(q), 0)));
	assert_string_equal(n, "www.example.test.");
	LDNS_FREE(n);
	ldns_pkt_free(q);

	fake_answer(0, "192.0.2.1", 300, 0);
	assert_int_equal(nreplies, 1);
	check_a(0, 100, "WWW.Example.Test.", "192.0.2.1", 0);

	now += 3500;
	ask(f, "www.example.test.", LDNS_RR_TYPE_A, 101, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 1); /* a hit: no upstream query */
	assert_int_equal(nreplies, 2);
	check_a(1, 101, "www.example.test.", "192.0.2.1", 0);
	assert_int_equal(answer_ttl(1), 297);
	assert_int_equal(query_worker_stats(f->w)->cache_answers, 1);
}

static void test_coalescing_and_waiter_bound(void **state)
{
	struct fixture *f = *state;
	for (uint16_t id = 1; id <= 4; id++)
		ask(f, "a.example.test.", LDNS_RR_TYPE_A, id, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 1);
	/* max_waiters 3: the 4th gets SERVFAIL at once. */
	assert_int_equal(nreplies, 1);
	check_a(0, 4, "a.example.test.", NULL, LDNS_RCODE_SERVFAIL);
	assert_int_equal(holds, 3);
	assert_int_equal(query_worker_stats(f->w)->coalesced, 2);
	assert_int_equal(query_worker_stats(f->w)->dropped_waiters, 1);
	fake_answer(0, "192.0.2.7", 60, 0);
	assert_int_equal(nreplies, 4);
	for (size_t i = 1; i < 4; i++)
		check_a(i, (uint16_t)i, "a.example.test.", "192.0.2.7", 0);
	assert_int_equal(holds, 0);
}

static void test_servfail_then_stale(void **state)
{
	struct fixture *f = *state;
	ask(f, "s.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	fake_fail(0, -ETIMEDOUT);
	check_a(0, 1, "s.example.test.", NULL, LDNS_RCODE_SERVFAIL);

	ask(f, "s.example.test.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	fake_answer(1, "192.0.2.9", 10, 0);
	now += 60 * 1000; /* expired 50 s ago */
	ask(f, "s.example.test.", LDNS_RR_TYPE_A, 3, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 3);
	fake_fail(2, -ECONNREFUSED);
	check_a(2, 3, "s.example.test.", "192.0.2.9", 0);
	assert_int_equal(answer_ttl(2), 30);
	assert_int_equal(query_worker_stats(f->w)->stale_answers, 1);
	/* An upstream SERVFAIL also prefers the stale answer. */
	ask(f, "s.example.test.", LDNS_RR_TYPE_A, 4, QUERY_UDP, false);
	fake_answer(3, NULL, 60, LDNS_RCODE_SERVFAIL);
	check_a(3, 4, "s.example.test.", "192.0.2.9", 0);
}

static void test_negative_cached(void **state)
{
	struct fixture *f = *state;
	ask(f, "nx.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	fake_answer(0, NULL, 3600, LDNS_RCODE_NXDOMAIN);
	check_a(0, 1, "nx.example.test.", NULL, LDNS_RCODE_NXDOMAIN);
	now += 1000;
	ask(f, "nx.example.test.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 1);
	check_a(1, 2, "nx.example.test.", NULL, LDNS_RCODE_NXDOMAIN);
	ldns_pkt *p = reply_pkt(1);
	/* SOA TTL: min(3600, minimum 60, neg cap 300) - 1 s. */
	assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(ldns_pkt_authority(p), 0)), 59);
	ldns_pkt_free(p);
}

static void test_inflight_full(void **state)
{
	struct fixture *f = *state;
	up.next_rc = -ENOBUFS;
	ask(f, "b.example.test.", LDNS_RR_TYPE_A, 9, QUERY_UDP, false);
	assert_int_equal(nreplies, 1);
	check_a(0, 9, "b.example.test.", NULL, LDNS_RCODE_SERVFAIL);
	assert_int_equal(query_worker_stats(f->w)->dropped_inflight, 1);
	assert_int_equal(query_pending(f->w), 0);
}

static void test_errors(void **state)
{
	struct fixture *f = *state;
	struct query_client c;
	memset(&c, 0, sizeof(c));
	uint8_t shortpkt[5] = { 0 };
	query_handle(f->w, shortpkt, sizeof(shortpkt), &c, now);
	assert_int_equal(nreplies, 0); /* no header: dropped */

	uint8_t notimp[] = { 0, 7, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1 };
	query_handle(f->w, notimp, sizeof(notimp), &c, now);
	assert_int_equal(nreplies, 1);
	assert_int_equal(replies[0].wire[3] & 0x0f, LDNS_RCODE_NOTIMPL);

	uint8_t formerr[] = { 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'a' };
	query_handle(f->w, formerr, sizeof(formerr), &c, now);
	assert_int_equal(replies[1].wire[3] & 0x0f, LDNS_RCODE_FORMERR);

	uint8_t chaos[] = { 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'v', 'e', 'r', 's', 'i', 'o', 'n',
			    4, 'b', 'i', 'n', 'd', 0, 0, 16, 0, 3 };
	query_handle(f->w, chaos, sizeof(chaos), &c, now);
	assert_int_equal(replies[2].wire[3] & 0x0f, 0);
	assert_int_equal(replies[2].wire[7], 1); /* one TXT answer */

	uint8_t hesiod[] = { 0, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 4 };
	query_handle(f->w, hesiod, sizeof(hesiod), &c, now);
	assert_int_equal(replies[3].wire[3] & 0x0f, LDNS_RCODE_REFUSED);
	assert_int_equal(up.ncalls, 0);
}

static void test_stub_routing(void **state)
{
	struct fixture *f = *state;
	ask(f, "host.CORP.example.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	ask(f, "xcorp.example.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 2);
	assert_ptr_equal(up.calls[0].group, &f->stub_group);
	assert_ptr_equal(up.calls[1].group, &f->def); /* not at a label boundary */
}

static const char *const svc_json =
	"{\"kind\":\"Service\",\"metadata\":{\"name\":\"api\",\"namespace\":\"demo\"},"
	"\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.0.5\",\"clusterIPs\":[\"10.96.0.5\"]}}";
static const char *const ext_json =
	"{\"kind\":\"Service\",\"metadata\":{\"name\":\"ext\",\"namespace\":\"demo\"},"
	"\"spec\":{\"type\":\"ExternalName\",\"externalName\":\"www.example.test\"}}";
static const char *const ns_json = "{\"kind\":\"Namespace\",\"metadata\":{\"name\":\"demo\"}}";

static void load_cluster(struct fixture *f)
{
	const char *objs[] = { ns_json, svc_json, ext_json };
	enum k8s_kind kinds[] = { K8S_NAMESPACE, K8S_SERVICE, K8S_SERVICE };
	for (size_t i = 0; i < 3; i++) {
		json_error_t e;
		json_t *o = json_loads(objs[i], 0, &e);
		assert_non_null(o);
		assert_int_equal(k8s_store_apply(f->store, kinds[i], K8S_ADDED, o, NULL, 0), 0);
		json_decref(o);
	}
	struct cluster_publisher *pub = cluster_publisher_new();
	assert_non_null(pub);
	query_worker_set_snapshot(f->w, cluster_publisher_publish(pub, f->store));
	cluster_publisher_free(pub); /* the snapshot lives on */
}

static void test_cluster_unsynced(void **state)
{
	struct fixture *f = *state;
	ask(f, "api.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 0);
	check_a(0, 1, "api.demo.svc.cluster.local.", NULL, LDNS_RCODE_SERVFAIL);
	f->env.fallback = &f->fallback;
	ask(f, "api.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 1);
	assert_ptr_equal(up.calls[0].group, &f->fallback);
	fake_answer(0, "10.96.0.99", 5, 0);
	check_a(1, 2, "api.demo.svc.cluster.local.", "10.96.0.99", 0);
	/* Fallback answers are not cached as cluster data. */
	load_cluster(f);
	ask(f, "api.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 3, QUERY_UDP, false);
	check_a(2, 3, "api.demo.svc.cluster.local.", "10.96.0.5", 0);
	f->env.fallback = NULL;
}

static void test_cluster_answers_and_chase(void **state)
{
	struct fixture *f = *state;
	load_cluster(f);
	ask(f, "API.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 1, QUERY_UDP, true);
	assert_int_equal(up.ncalls, 0);
	check_a(0, 1, "API.demo.svc.cluster.local.", "10.96.0.5", 0);
	ldns_pkt *p = reply_pkt(0);
	assert_true(ldns_pkt_aa(p));
	ldns_pkt_free(p);

	ask(f, "www.google.com.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 0);
	check_a(1, 2, "www.google.com.demo.svc.cluster.local.", NULL, LDNS_RCODE_NXDOMAIN);

	/* ExternalName: the CNAME, then the target through the upstream. */
	ask(f, "ext.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 3, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 1);
	assert_int_equal(nreplies, 2);
	assert_int_equal(holds, 1);
	fake_answer(0, "192.0.2.44", 300, 0);
	assert_int_equal(nreplies, 3);
	assert_int_equal(holds, 0);
	p = reply_pkt(2);
	assert_int_equal(ldns_pkt_id(p), 3);
	assert_int_equal(ldns_pkt_ancount(p), 2);
	assert_int_equal(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(p), 0)), LDNS_RR_TYPE_CNAME);
	assert_int_equal(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(p), 1)), LDNS_RR_TYPE_A);
	ldns_pkt_free(p);
	/* The target is now cached: the next chase needs no upstream. */
	ask(f, "ext.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 4, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 1);
	assert_int_equal(nreplies, 4);
	check_a(3, 4, "ext.demo.svc.cluster.local.", "192.0.2.44", 0);
}

static void test_prefetch(void **state)
{
	struct fixture *f = *state;
	ask(f, "p.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	fake_answer(0, "192.0.2.3", 100, 0);
	now += 95 * 1000; /* the last 10% of the TTL */
	ask(f, "p.example.test.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(nreplies, 2); /* answered from the cache at once */
	assert_int_equal(up.ncalls, 2);   /* and refreshed in the background */
	assert_int_equal(query_worker_stats(f->w)->prefetches, 1);
	fake_answer(1, "192.0.2.4", 100, 0);
	assert_int_equal(nreplies, 2); /* nobody waited on the prefetch */
	ask(f, "p.example.test.", LDNS_RR_TYPE_A, 3, QUERY_UDP, false);
	check_a(2, 3, "p.example.test.", "192.0.2.4", 0);
	assert_int_equal(answer_ttl(2), 100);
}

static void test_truncation(void **state)
{
	struct fixture *f = *state;
	ask(f, "t.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	/* A reply larger than 512 bytes: 40 A records. */
	struct fake_upstream_call *c = &up.calls[0];
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, c->query, c->len), LDNS_STATUS_OK);
	ldns_pkt *r = ldns_pkt_clone(q);
	ldns_pkt_set_qr(r, true);
	for (int i = 0; i < 40; i++) {
		char text[128];
		ldns_rr *rr = NULL;
		snprintf(text, sizeof(text), "t.example.test. 300 IN A 192.0.2.%d", i);
		assert_int_equal(ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, rr);
	}
	uint8_t *wire = NULL;
	size_t len = 0;
	assert_int_equal(ldns_pkt2wire(&wire, r, &len), LDNS_STATUS_OK);
	fake_upstream_finish(&up, c, 0, wire, len);
	LDNS_FREE(wire);
	ldns_pkt_free(q);
	ldns_pkt_free(r);
	assert_int_equal(nreplies, 1);
	assert_true(replies[0].len <= 512);
	assert_true(replies[0].wire[2] & 0x02); /* TC */
	/* Over TCP the whole answer comes from the cache. */
	ask(f, "t.example.test.", LDNS_RR_TYPE_A, 2, QUERY_TCP, false);
	ldns_pkt *p = reply_pkt(1);
	assert_int_equal(ldns_pkt_ancount(p), 40);
	assert_false(ldns_pkt_tc(p));
	ldns_pkt_free(p);
}

/* Issue 10.1: the CD bit is part of the cache key and of the in-flight key,
 * and goes upstream as the client set it. */
static void test_cd_bit_keys(void **state)
{
	struct fixture *f = *state;
	/* In flight: a CD=1 and a CD=0 asker of one name do not share a query. */
	ask_flags(f, "cd.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, true, LDNS_RD | LDNS_CD);
	ask_flags(f, "cd.example.test.", LDNS_RR_TYPE_A, 2, QUERY_UDP, true, LDNS_RD);
	assert_int_equal(up.ncalls, 2);
	assert_true(call_cd(0));
	assert_false(call_cd(1));
	/* The unchecked (CD=1) answer, e.g. bogus data a validator let through. */
	fake_answer(0, "192.0.2.66", 300, 0);
	check_a(0, 1, "cd.example.test.", "192.0.2.66", 0);
	/* The validator's answer to CD=0. */
	fake_answer(1, NULL, 300, LDNS_RCODE_SERVFAIL);
	check_a(1, 2, "cd.example.test.", NULL, LDNS_RCODE_SERVFAIL);
	/* From the cache, each gets its own. */
	ask_flags(f, "cd.example.test.", LDNS_RR_TYPE_A, 3, QUERY_UDP, true, LDNS_RD);
	ask_flags(f, "cd.example.test.", LDNS_RR_TYPE_A, 4, QUERY_UDP, true, LDNS_RD | LDNS_CD);
	assert_int_equal(up.ncalls, 2);
	check_a(2, 3, "cd.example.test.", NULL, LDNS_RCODE_SERVFAIL);
	check_a(3, 4, "cd.example.test.", "192.0.2.66", 0);
	ldns_pkt *p = reply_pkt(3);
	assert_true(ldns_pkt_cd(p));
	ldns_pkt_free(p);
	/* A cached CD=1 answer does not satisfy a later CD=0 asker either. */
	ask_flags(f, "cd2.example.test.", LDNS_RR_TYPE_A, 5, QUERY_UDP, false, LDNS_RD | LDNS_CD);
	fake_answer(2, "192.0.2.67", 300, 0);
	ask_flags(f, "cd2.example.test.", LDNS_RR_TYPE_A, 6, QUERY_UDP, false, LDNS_RD);
	assert_int_equal(up.ncalls, 4);
	assert_false(call_cd(3));
	fake_answer(3, "192.0.2.68", 300, 0);
	check_a(5, 6, "cd2.example.test.", "192.0.2.68", 0);
}

/* Finish upstream call @p i with a NOERROR reply holding @p n A records
 * (TTL 300) for the question, plus an NS record and its glue. */
static void fake_many(size_t i, unsigned n)
{
	struct fake_upstream_call *c = &up.calls[i];
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, c->query, c->len), LDNS_STATUS_OK);
	ldns_pkt *r = ldns_pkt_clone(q);
	ldns_pkt_set_qr(r, true);
	ldns_pkt_set_ra(r, true);
	char *owner = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(q), 0)));
	char text[512];
	for (unsigned k = 0; k < n; k++) {
		ldns_rr *rr = NULL;
		snprintf(text, sizeof(text), "%s 300 IN A 10.%u.%u.%u", owner, (k >> 16) & 255,
			 (k >> 8) & 255, k & 255);
		assert_int_equal(ldns_rr_new_frm_str(&rr, text, 0, NULL, NULL), LDNS_STATUS_OK);
		ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, rr);
	}
	ldns_rr *rr = NULL;
	assert_int_equal(ldns_rr_new_frm_str(&rr, "example.test. 300 IN NS ns.example.test.", 0,
					     NULL, NULL), LDNS_STATUS_OK);
	ldns_pkt_push_rr(r, LDNS_SECTION_AUTHORITY, rr);
	assert_int_equal(ldns_rr_new_frm_str(&rr, "ns.example.test. 300 IN A 192.0.2.53", 0, NULL,
					     NULL), LDNS_STATUS_OK);
	ldns_pkt_push_rr(r, LDNS_SECTION_ADDITIONAL, rr);
	LDNS_FREE(owner);
	uint8_t *wire = NULL;
	size_t len = 0;
	assert_int_equal(ldns_pkt2wire(&wire, r, &len), LDNS_STATUS_OK);
	fake_upstream_finish(&up, c, 0, wire, len);
	LDNS_FREE(wire);
	ldns_pkt_free(q);
	ldns_pkt_free(r);
}

/* Issue 10.2: a reply with more records than a cache entry may hold is passed
 * on as it is (uncached, counted), never turned into SERVFAIL. */
static void test_too_many_records_passed_on(void **state)
{
	struct fixture *f = *state;
	ask(f, "big.example.test.", LDNS_RR_TYPE_A, 1, QUERY_TCP, false);
	fake_many(0, CACHE_TTLS_MAX + 1); /* 513 A + NS + glue = 515 records */
	assert_int_equal(nreplies, 1);
	ldns_pkt *p = reply_pkt(0);
	assert_int_equal(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
	assert_int_equal(ldns_pkt_ancount(p), CACHE_TTLS_MAX + 1);
	assert_int_equal(ldns_pkt_nscount(p), 1);
	assert_int_equal(ldns_pkt_arcount(p), 1);
	ldns_pkt_free(p);
	assert_int_equal(atomic_load(&cache_stats(f->cache)->too_big), 1);
	assert_int_equal(query_worker_stats(f->w)->upstream_failures, 0);
	/* Not cached: the next asker goes upstream again. */
	ask(f, "big.example.test.", LDNS_RR_TYPE_A, 2, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 2);
	fake_many(1, 2000);
	p = reply_pkt(1);
	assert_int_equal(ldns_pkt_ancount(p), 2000);
	ldns_pkt_free(p);
	/* What the cache holds is still cached. */
	ask(f, "fits.example.test.", LDNS_RR_TYPE_A, 3, QUERY_TCP, false);
	fake_many(2, CACHE_TTLS_MAX - 2);
	ask(f, "fits.example.test.", LDNS_RR_TYPE_A, 4, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 3);
	p = reply_pkt(3);
	assert_int_equal(ldns_pkt_ancount(p), CACHE_TTLS_MAX - 2);
	ldns_pkt_free(p);
}

/* Issue 10.4: RD=0 is answered from the cache only; a miss is REFUSED and
 * nothing goes upstream or into the cache; the cluster zone answers as ever. */
static void test_rd0_cache_only(void **state)
{
	struct fixture *f = *state;
	ask_flags(f, "norec.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, true, 0);
	assert_int_equal(up.ncalls, 0);
	check_a(0, 1, "norec.example.test.", NULL, LDNS_RCODE_REFUSED);
	ldns_pkt *p = reply_pkt(0);
	assert_false(ldns_pkt_rd(p));
	assert_int_equal(ldns_pkt_edns_udp_size(p), DNS_EDNS_PAYLOAD_BYTES);
	ldns_pkt_free(p);
	/* It filled nothing: RD=1 goes upstream, and RD=0 then hits. */
	ask(f, "norec.example.test.", LDNS_RR_TYPE_A, 2, QUERY_UDP, true);
	assert_int_equal(up.ncalls, 1);
	fake_answer(0, "192.0.2.80", 300, 0);
	check_a(1, 2, "norec.example.test.", "192.0.2.80", 0);
	ask_flags(f, "norec.example.test.", LDNS_RR_TYPE_A, 3, QUERY_UDP, true, 0);
	assert_int_equal(up.ncalls, 1);
	check_a(2, 3, "norec.example.test.", "192.0.2.80", 0);
	p = reply_pkt(2);
	assert_false(ldns_pkt_rd(p));
	ldns_pkt_free(p);
	/* An expired entry is a miss for RD=0 (no stale, no refresh). */
	now += 301 * 1000;
	ask_flags(f, "norec.example.test.", LDNS_RR_TYPE_A, 4, QUERY_UDP, false, 0);
	assert_int_equal(up.ncalls, 1);
	check_a(3, 4, "norec.example.test.", NULL, LDNS_RCODE_REFUSED);
	/* The cluster zone answers RD=0 from the snapshot. */
	load_cluster(f);
	ask_flags(f, "api.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 5, QUERY_UDP, false, 0);
	check_a(4, 5, "api.demo.svc.cluster.local.", "10.96.0.5", 0);
	assert_int_equal(up.ncalls, 1);
}

/* Issue 10.6: an upstream's REFUSED (every upstream refused: the upstream
 * module tried each) reaches the client as SERVFAIL, or as stale data. */
static void test_upstream_refused_is_servfail(void **state)
{
	struct fixture *f = *state;
	ask(f, "r.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	fake_answer(0, NULL, 60, LDNS_RCODE_REFUSED);
	check_a(0, 1, "r.example.test.", NULL, LDNS_RCODE_SERVFAIL);
	assert_int_equal(query_worker_stats(f->w)->upstream_failures, 1);
	/* Not cached: the next asker goes upstream again. */
	ask(f, "r.example.test.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 2);
	fake_answer(1, "192.0.2.90", 10, 0);
	check_a(1, 2, "r.example.test.", "192.0.2.90", 0);
	/* Expired: a REFUSED then gets the stale answer. */
	now += 60 * 1000;
	ask(f, "r.example.test.", LDNS_RR_TYPE_A, 3, QUERY_UDP, false);
	fake_answer(2, NULL, 60, LDNS_RCODE_REFUSED);
	check_a(2, 3, "r.example.test.", "192.0.2.90", 0);
	assert_int_equal(query_worker_stats(f->w)->stale_answers, 1);
}

/* Issue 11.4/11.5: TC=1 reaching the query module (TCP: a broken upstream)
 * is a failure, never passed on or cached; the upstream's AD is cleared for
 * a client without DO (RFC 6840 5.8) and kept for one with DO. */
static void test_upstream_tc_and_ad(void **state)
{
	struct fixture *f = *state;
	ask(f, "tc.example.test.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	g_reply_flags = 0x0200; /* TC */
	fake_answer(0, "192.0.2.91", 60, 0);
	check_a(0, 1, "tc.example.test.", NULL, LDNS_RCODE_SERVFAIL);
	assert_false(replies[0].wire[2] & 0x02);
	ask(f, "tc.example.test.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 2); /* not cached */
	g_reply_flags = 0x0020; /* AD */
	fake_answer(1, "192.0.2.91", 60, 0);
	check_a(1, 2, "tc.example.test.", "192.0.2.91", 0);
	assert_false(replies[1].wire[3] & 0x20);
	/* From the cache: still no AD. */
	ask(f, "tc.example.test.", LDNS_RR_TYPE_A, 3, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 2);
	assert_false(replies[2].wire[3] & 0x20);

	/* DO=1: its own key, the upstream's AD passed on. */
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_pkt_query_new_frm_str(&q, "tc.example.test.", LDNS_RR_TYPE_A,
						    LDNS_RR_CLASS_IN, LDNS_RD),
			 LDNS_STATUS_OK);
	ldns_pkt_set_id(q, 4);
	ldns_pkt_set_edns_udp_size(q, 4096);
	ldns_pkt_set_edns_do(q, true);
	uint8_t *wire = NULL;
	size_t len = 0;
	assert_int_equal(ldns_pkt2wire(&wire, q, &len), LDNS_STATUS_OK);
	struct query_client c;
	memset(&c, 0, sizeof(c));
	c.proto = QUERY_UDP;
	c.conn = (void *)(uintptr_t)5;
	query_handle(f->w, wire, len, &c, now);
	LDNS_FREE(wire);
	ldns_pkt_free(q);
	assert_int_equal(up.ncalls, 3);
	fake_answer(2, "192.0.2.91", 60, 0);
	assert_true(replies[3].wire[3] & 0x20);
	g_reply_flags = 0;
}

/* ------------------------------------------------------------- autopath */

static struct autopath_config g_ap;

/* Autopath on, with the node search domain corp.example (a stub) and
 * example.test, and a pod of namespace "web" at 10.1.0.5. */
static void autopath_on(struct fixture *f)
{
	const char *search[] = { "corp.example", "Example.Test." };
	assert_int_equal(autopath_config_init(&g_ap, "cluster.local", search, 2, 5), 0);
	assert_int_equal(g_ap.nsteps, 5); /* svc.zone, zone, 2 searches, root */
	f->env.autopath = &g_ap;
	struct pod_table_pair pair = { { 4, { 10, 1, 0, 5 } }, "web" };
	query_worker_set_pods(f->w, pod_table_new(&pair, 1));
	load_cluster(f);
}

static void from(const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&g_src;
	memset(&g_src, 0, sizeof(g_src));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(40000);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

/* Reply @p i: its rcode, answer count, and the CNAME's target (text) when
 * @p target is set, then an A record @p ip when set. */
static void check_autopath(size_t i, uint16_t id, const char *qname, int rcode, const char *target,
			   const char *ip)
{
	check_a(i, id, qname, ip, rcode);
	ldns_pkt *p = reply_pkt(i);
	ldns_rr *first = ldns_rr_list_rr(ldns_pkt_answer(p), 0);
	if (target) {
		assert_non_null(first);
		assert_int_equal(ldns_rr_get_type(first), LDNS_RR_TYPE_CNAME);
		char *o = ldns_rdf2str(ldns_rr_owner(first));
		char *t = ldns_rdf2str(ldns_rr_rdf(first, 0));
		assert_string_equal(o, qname);
		assert_string_equal(t, target);
		LDNS_FREE(o);
		assert_int_equal(ldns_pkt_ancount(p), ip ? 2 : 1);
		if (ip) { /* the records of the name found, under its name */
			char *o2 = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_answer(p), 1)));
			assert_string_equal(o2, t);
			LDNS_FREE(o2);
		}
		LDNS_FREE(t);
	} else {
		assert_int_equal(ldns_pkt_ancount(p), 0);
	}
	ldns_pkt_free(p);
}

static bool call_is(size_t i, const char *name)
{
	ldns_pkt *q = NULL;
	assert_int_equal(ldns_wire2pkt(&q, up.calls[i].query, up.calls[i].len), LDNS_STATUS_OK);
	char *n = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(ldns_pkt_question(q), 0)));
	bool same = strcmp(n, name) == 0;
	LDNS_FREE(n);
	ldns_pkt_free(q);
	return same;
}

static void test_autopath_cluster_steps(void **state)
{
	struct fixture *f = *state;
	autopath_on(f);
	from("10.1.0.5");
	/* A service of another namespace: found at svc.<zone>, no upstream. */
	ask(f, "api.demo.web.svc.cluster.local.", LDNS_RR_TYPE_A, 1, QUERY_UDP, true);
	assert_int_equal(up.ncalls, 0);
	check_autopath(0, 1, "api.demo.web.svc.cluster.local.", 0, "api.demo.svc.cluster.local.",
		       "10.96.0.5");
	ldns_pkt *p = reply_pkt(0);
	assert_true(ldns_pkt_aa(p));
	ldns_pkt_free(p);
	/* AAAA missing there, but A exists: glibc stops at this name (it asks
	 * both), so the walk does too: the CNAME alone, NOERROR. */
	ask(f, "api.demo.web.svc.cluster.local.", LDNS_RR_TYPE_AAAA, 2, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 0);
	check_autopath(1, 2, "api.demo.web.svc.cluster.local.", 0, "api.demo.svc.cluster.local.",
		       NULL);
	const struct query_stats *st = query_worker_stats(f->w);
	assert_int_equal(st->autopath_walks, 2);
	assert_int_equal(st->autopath_answers, 2);
	assert_int_equal(st->autopath_root, 0);

	/* The same name from an unknown address, a name of another
	 * namespace's path, RD=0, autopath off: NXDOMAIN as before. */
	from("10.1.0.99");
	ask(f, "api.demo.web.svc.cluster.local.", LDNS_RR_TYPE_A, 3, QUERY_UDP, false);
	check_autopath(2, 3, "api.demo.web.svc.cluster.local.", LDNS_RCODE_NXDOMAIN, NULL, NULL);
	from("10.1.0.5");
	ask(f, "api.demo.other.svc.cluster.local.", LDNS_RR_TYPE_A, 4, QUERY_UDP, false);
	check_autopath(3, 4, "api.demo.other.svc.cluster.local.", LDNS_RCODE_NXDOMAIN, NULL, NULL);
	ask(f, "xweb.svc.cluster.local.", LDNS_RR_TYPE_A, 5, QUERY_UDP, false);
	check_autopath(4, 5, "xweb.svc.cluster.local.", LDNS_RCODE_NXDOMAIN, NULL, NULL);
	ask_flags(f, "api.demo.web.svc.cluster.local.", LDNS_RR_TYPE_A, 6, QUERY_UDP, false, 0);
	check_autopath(5, 6, "api.demo.web.svc.cluster.local.", LDNS_RCODE_NXDOMAIN, NULL, NULL);
	/* A name that exists as asked is answered as asked. */
	ask(f, "api.demo.svc.cluster.local.", LDNS_RR_TYPE_A, 7, QUERY_UDP, false);
	check_a(6, 7, "api.demo.svc.cluster.local.", "10.96.0.5", 0);
	assert_int_equal(st->autopath_walks, 2);
	/* An ExternalName on the way: the plain NXDOMAIN (no chase inside). */
	ask(f, "ext.demo.web.svc.cluster.local.", LDNS_RR_TYPE_A, 8, QUERY_UDP, false);
	check_autopath(7, 8, "ext.demo.web.svc.cluster.local.", LDNS_RCODE_NXDOMAIN, NULL, NULL);
	assert_int_equal(up.ncalls, 0);

	f->env.autopath = NULL;
	query_worker_set_pods(f->w, NULL);
	ask(f, "api.demo.web.svc.cluster.local.", LDNS_RR_TYPE_A, 9, QUERY_UDP, false);
	check_autopath(8, 9, "api.demo.web.svc.cluster.local.", LDNS_RCODE_NXDOMAIN, NULL, NULL);
	assert_int_equal(st->autopath_walks, 3);
}

static void test_autopath_upstream_steps(void **state)
{
	struct fixture *f = *state;
	autopath_on(f);
	from("10.1.0.5");
	/* An outside name: the cluster steps cost nothing, then each node
	 * search domain and the name itself go through the cache. */
	ask(f, "WWW.example.org.web.svc.cluster.local.", LDNS_RR_TYPE_A, 1, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 1);
	assert_true(call_is(0, "www.example.org.corp.example."));
	assert_ptr_equal(up.calls[0].group, &f->stub_group); /* the stub's servers */
	assert_int_equal(holds, 1);
	fake_answer(0, NULL, 60, LDNS_RCODE_NXDOMAIN);
	assert_int_equal(up.ncalls, 2);
	assert_true(call_is(1, "www.example.org.example.test."));
	assert_ptr_equal(up.calls[1].group, &f->def);
	fake_answer(1, NULL, 60, LDNS_RCODE_NXDOMAIN);
	assert_int_equal(up.ncalls, 3);
	assert_true(call_is(2, "www.example.org."));
	assert_int_equal(nreplies, 0);
	fake_answer(2, "192.0.2.80", 300, 0);
	assert_int_equal(nreplies, 1);
	assert_int_equal(holds, 0);
	/* The client's case is kept in the question; the CNAME points at the
	 * name as the records after it spell it (the cache's lower case). */
	check_autopath(0, 1, "WWW.example.org.web.svc.cluster.local.", 0, "www.example.org.",
		       "192.0.2.80");
	const struct query_stats *st = query_worker_stats(f->w);
	assert_int_equal(st->autopath_root, 1);
	assert_int_equal(st->autopath_answers, 1);

	/* Again: every step is cached now, answered at once. */
	ask(f, "www.example.org.web.svc.cluster.local.", LDNS_RR_TYPE_A, 2, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 3);
	check_autopath(1, 2, "www.example.org.web.svc.cluster.local.", 0, "www.example.org.",
		       "192.0.2.80");
	/* The client's own next questions (without autopath's help) hit the
	 * cache the walk filled. */
	ask(f, "www.example.org.corp.example.", LDNS_RR_TYPE_A, 3, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 3);
	check_a(2, 3, "www.example.org.corp.example.", NULL, LDNS_RCODE_NXDOMAIN);

	/* A namespace's name (an empty name in the zone: NODATA for A and
	 * AAAA) is passed over, as glibc does: "demo" under the node domain. */
	ask(f, "demo.web.svc.cluster.local.", LDNS_RR_TYPE_A, 5, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 4);
	assert_true(call_is(3, "demo.corp.example."));
	fake_answer(3, "10.20.0.2", 300, 0);
	check_autopath(3, 5, "demo.web.svc.cluster.local.", 0, "demo.corp.example.", "10.20.0.2");

	/* A name under a node search domain: found there. */
	ask(f, "host.web.svc.cluster.local.", LDNS_RR_TYPE_A, 4, QUERY_UDP, false);
	assert_int_equal(up.ncalls, 5);
	assert_true(call_is(4, "host.corp.example."));
	fake_answer(4, "10.20.0.1", 300, 0);
	check_autopath(4, 4, "host.web.svc.cluster.local.", 0, "host.corp.example.", "10.20.0.1");
	ldns_pkt *p = reply_pkt(4);
	assert_false(ldns_pkt_aa(p)); /* not our data */
	ldns_pkt_free(p);
}

static void test_autopath_nothing_and_failures(void **state)
{
	struct fixture *f = *state;
	autopath_on(f);
	from("10.1.0.5");
	/* Nowhere: the answer for X. (NXDOMAIN) behind the CNAME. */
	ask(f, "nope.invalid.web.svc.cluster.local.", LDNS_RR_TYPE_A, 1, QUERY_UDP, false);
	fake_answer(0, NULL, 60, LDNS_RCODE_NXDOMAIN);
	fake_answer(1, NULL, 60, LDNS_RCODE_NXDOMAIN);
	fake_answer(2, NULL, 60, LDNS_RCODE_NXDOMAIN);
	assert_int_equal(up.ncalls, 3);
	check_autopath(0, 1, "nope.invalid.web.svc.cluster.local.", LDNS_RCODE_NXDOMAIN,
		       "nope.invalid.", NULL);
	/* X.'s SOA comes along, its compressed names moved with it. */
	ldns_pkt *p = reply_pkt(0);
	assert_int_equal(ldns_pkt_nscount(p), 1);
	ldns_rr *soa = ldns_rr_list_rr(ldns_pkt_authority(p), 0);
	char *owner = ldns_rdf2str(ldns_rr_owner(soa)), *mname = ldns_rdf2str(ldns_rr_rdf(soa, 0));
	assert_string_equal(owner, "example.test.");
	assert_string_equal(mname, "ns.example.test.");
	LDNS_FREE(owner);
	LDNS_FREE(mname);
	ldns_pkt_free(p);
	const struct query_stats *st = query_worker_stats(f->w);
	assert_int_equal(st->autopath_root, 1);
	assert_int_equal(st->autopath_answers, 0);

	/* A step that fails ends the walk with SERVFAIL (glibc goes on). */
	ask(f, "slow.test.web.svc.cluster.local.", LDNS_RR_TYPE_A, 2, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 4);
	fake_fail(3, -ETIMEDOUT);
	assert_int_equal(up.ncalls, 4);
	check_autopath(1, 2, "slow.test.web.svc.cluster.local.", LDNS_RCODE_SERVFAIL, NULL, NULL);
	assert_int_equal(holds, 0);

	/* Two walks waiting on the same step share one upstream query; the
	 * worker closing cancels it and both clients get an answer. */
	ask(f, "same.test.web.svc.cluster.local.", LDNS_RR_TYPE_A, 3, QUERY_TCP, false);
	ask(f, "same.test.web.svc.cluster.local.", LDNS_RR_TYPE_A, 4, QUERY_TCP, false);
	assert_int_equal(up.ncalls, 5);
	assert_int_equal(holds, 2);
	fake_upstream_cancel_all(&up);
	assert_int_equal(nreplies, 4);
	assert_int_equal(holds, 0);
	check_autopath(2, 3, "same.test.web.svc.cluster.local.", LDNS_RCODE_SERVFAIL, NULL, NULL);
}

static void test_autopath_config(void **state)
{
	(void)state;
	struct autopath_config c;
	const char *bad[] = { "a..b" };
	assert_int_equal(autopath_config_init(&c, "cluster.local", bad, 1, 5), -EINVAL);
	assert_int_equal(autopath_config_init(&c, "", NULL, 0, 5), -EINVAL);
	assert_int_equal(autopath_config_init(&c, "Cluster.Local", NULL, 0, 5), 0);
	assert_int_equal(c.nsteps, 3);
	assert_memory_equal(c.steps[0].name, "\3svc\7cluster\5local", 19);
	assert_int_equal(c.steps[2].len, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_miss_then_hit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_coalescing_and_waiter_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_servfail_then_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negative_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inflight_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stub_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cluster_unsynced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cluster_answers_and_chase, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cd_bit_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_records_passed_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rd0_cache_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upstream_refused_is_servfail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upstream_tc_and_ad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_autopath_cluster_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_autopath_upstream_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_autopath_nothing_and_failures, setup, teardown),
		cmocka_unit_test(test_autopath_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
