/* tests/fuzz/fuzz_query.c - libFuzzer target for the whole path of a query.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=query to run only this one).
 * Reproduce a crash: build-fuzz/fuzz_query crash-<sha1>
 *
 * Drives src/dns/query.c with a real cache (cache_new), a real cluster
 * snapshot (deploy/examples/demo-cluster.json through k8s_store_load_file and
 * cluster_publisher_publish) and the shared fake of struct query_upstream_ops
 * (tests/support/fake_upstream.c): no loop, no sockets. The fake records
 * every send() and the input completes it later, never from inside the call,
 * with bytes taken from the input or with an error status, so the input is a
 * small program:
 *
 *   input  := hdr0 hdr1 op*
 *   hdr0   :  bit 0 serve-stale, 1 prefetch, 2 snapshot loaded (else
 *             unsynced), 3 cluster fallback, 4 query log, 5 client ACL,
 *             6 default upstream group empty, 7 pod records
 *   hdr1   :  bit 0 max_waiters 2 (else 1000), 1 upstream accepts at most 2
 *             queries in flight (else 64), 2 cache of 16 KiB (else 1 MiB),
 *             3 autopath (search corp.example, example.test; IPv4 clients
 *             10.0.0.0-15 are pods of namespace demo, 16-31 of default)
 *   op     := tag ...; tag % 8 selects:
 *     0, 1  client query:  len16 bytes; tag bit 3 TCP, bit 4 IPv6 client
 *     2     repeat an earlier query (tag >> 3 picks it; tag bit 7 flips the
 *           protocol): the cache hit path
 *     3     upstream reply to one recorded call (selector byte): len16
 *           bytes; selector bit 7 splices the call's question after the
 *           first 12 bytes, so replies pass the question check
 *     4     fail one recorded call (selector byte; tag >> 3 picks -ETIMEDOUT,
 *           -ECONNREFUSED, -EPROTO or -ECANCELED)
 *     5     advance the clock: u16, in ms (tag bit 3) or in seconds
 *     6     snapshot on/off (query_worker_set_snapshot)
 *     7     reply to every pending call with the same len16 bytes (spliced)
 *
 * The fake enforces what src/io/upstream.c promises its callers: a status-0
 * reply is at least a header, has QR=1, the query's ID and its exact
 * question (name compared without case); anything else completes the call
 * with -EPROTO, as upstream.c does when only bad replies came.
 *
 * Checked (abort() on failure) besides the sanitizers:
 *  - every query we forward upstream parses as a query with one question;
 *  - every reply to a client is a DNS message ldns reads, with the ID, RD,
 *    CD of its query, QR=1 and RA=1, the question echoed in the case it was
 *    asked, an OPT (1232) when the query had one, within the UDP limit unless
 *    truncated to header + question (+ OPT);
 *  - every query that is not dropped gets exactly one reply once pending
 *    upstream calls are cancelled (as closing the upstream does), a dropped
 *    query none; hold() and release() balance; nothing stays pending.
 */
#include "nodedns/dns/autopath.h"
#include "nodedns/dns/cache.h"
#include "nodedns/cluster/pod_table.h"
#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/dns/dnsmsg.h"
#include "nodedns/util/log.h"
#include "nodedns/dns/query.h"
#include "nodedns/util/wire.h"
#include "support/dnsname.h"
#include "support/fake_upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#ifndef NODEDNS_SRCDIR
#define NODEDNS_SRCDIR "."
#endif
#define CLUSTER_FILE "deploy/examples/demo-cluster.json"

#define MAX_QUERIES 64 /* client queries per input; more are ignored */

#include "fuzz_check.h"

/* ------------------------------------------------------ fake upstream */

static struct fake_upstream g_up;

/* Complete call @p c with @p data as the server's reply (question spliced in
 * after the header when @p splice). */
static void call_reply(struct fake_upstream_call *c, const uint8_t *data, size_t len, bool splice)
{
	static uint8_t buf[DNS_MSG_MAX_BYTES];
	size_t n;
	if (splice && len >= DNS_HEADER_BYTES) {
		size_t qn = c->qend - DNS_HEADER_BYTES;
		n = len + qn;
		if (n > sizeof(buf))
			n = sizeof(buf);
		memcpy(buf, data, DNS_HEADER_BYTES);
		memcpy(buf + DNS_HEADER_BYTES, c->query + DNS_HEADER_BYTES, qn);
		memcpy(buf + c->qend, data + DNS_HEADER_BYTES, n - c->qend);
		buf[4] = 0;
		buf[5] = 1; /* QDCOUNT */
		/* A server may answer in another case (0x20): flip where the
		 * input's header says so. */
		if (data[0] & 0x80)
			for (size_t i = DNS_HEADER_BYTES; i < c->qend - 4; i++)
				if (buf[i] >= 'a' && buf[i] <= 'z')
					buf[i] = (uint8_t)(buf[i] - 32);
	} else {
		n = len < sizeof(buf) ? len : sizeof(buf);
		memcpy(buf, data, n);
	}
	fake_upstream_reply(&g_up, c, buf, n);
}

/* --------------------------------------------------------- the clients */

struct tracked {
	const uint8_t *wire; /* into the input */
	size_t len;
	uint8_t proto;
	bool v6;
	struct dnsmsg_query q;
	enum dnsmsg_verdict v;
	unsigned replies;
	int holds;
};

static struct tracked g_q[MAX_QUERIES];
static size_t g_nq;

static void make_client(size_t idx, struct query_client *c)
{
	memset(c, 0, sizeof(*c));
	c->proto = g_q[idx].proto;
	c->conn = (void *)(uintptr_t)(idx + 1);
	if (g_q[idx].v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->addr;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)(idx + 1));
		s6->sin6_addr.s6_addr[0] = 0xfd;
		s6->sin6_addr.s6_addr[15] = (uint8_t)idx;
		c->addrlen = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&c->addr;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)(idx + 1));
		s4->sin_addr.s_addr = htonl(0x0a000000u | (uint32_t)idx);
		c->addrlen = sizeof(*s4);
	}
}

static size_t client_index(const struct query_client *c)
{
	size_t idx = (size_t)(uintptr_t)c->conn;
	CHECK(idx >= 1 && idx <= g_nq);
	idx--;
	uint16_t port = c->addr.ss_family == AF_INET6
				? ntohs(((const struct sockaddr_in6 *)&c->addr)->sin6_port)
				: ntohs(((const struct sockaddr_in *)&c->addr)->sin_port);
	CHECK(port == idx + 1);
	CHECK(c->proto == g_q[idx].proto);
	return idx;
}

static void check_reply(const struct tracked *t, const uint8_t *m, size_t len)
{
	const struct dnsmsg_query *q = &t->q;
	CHECK(len >= DNS_HEADER_BYTES);
	CHECK(wire_get16(m) == q->id);
	CHECK(m[2] & 0x80);                         /* QR */
	CHECK(m[3] & 0x80);                         /* RA */
	CHECK((m[2] & 0x01) == (q->rd ? 1 : 0));    /* RD */
	CHECK(((m[3] & 0x10) != 0) == q->cd);       /* CD */
	bool tc = m[2] & 0x02;
	size_t trunc_max = DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4 + DNS_OPT_RR_BYTES;
	if (t->proto == QUERY_UDP) {
		size_t limit = dnsmsg_udp_limit(q);
		CHECK(len <= limit || (tc && len <= trunc_max));
	} else {
		CHECK(len <= DNS_MSG_MAX_BYTES);
	}
	if (q->has_question && wire_get16(m + 4) == 1) {
		/* echoed as asked */
		CHECK(len >= DNS_HEADER_BYTES + q->qname_len + 4u);
		CHECK(memcmp(m + DNS_HEADER_BYTES, q->qname, q->qname_len) == 0);
		CHECK(wire_get16(m + DNS_HEADER_BYTES + q->qname_len) == q->qtype);
		CHECK(wire_get16(m + DNS_HEADER_BYTES + q->qname_len + 2) == q->qclass);
	}

	ldns_pkt *pkt = NULL;
	ldns_status st = ldns_wire2pkt(&pkt, m, len);
	if (st != LDNS_STATUS_OK) {
		fprintf(stderr, "fuzz_query: reply does not parse: %s\n",
			ldns_get_errorstr_by_id(st));
		CHECK(st == LDNS_STATUS_OK);
	}
	CHECK(ldns_pkt_id(pkt) == q->id);
	if (q->edns) {
		CHECK(ldns_pkt_edns(pkt));
		CHECK(ldns_pkt_edns_udp_size(pkt) == DNS_EDNS_PAYLOAD_BYTES);
		CHECK(ldns_pkt_edns_do(pkt) == q->do_bit);
	}
	ldns_pkt_free(pkt);
}

static void io_reply(void *arg, const struct query_client *c, const uint8_t *wire, size_t len)
{
	(void)arg;
	size_t idx = client_index(c);
	struct tracked *t = &g_q[idx];
	CHECK(t->v != DNSMSG_DROP);
	t->replies++;
	CHECK(t->replies == 1);
	check_reply(t, wire, len);
}

/* Our own sub-queries (ExternalName chase) are held and released too; the
 * server ignores them, we count them. */
static int g_internal_holds;

static void io_hold(void *arg, const struct query_client *c)
{
	(void)arg;
	if (c->proto == QUERY_INTERNAL) {
		CHECK(c->conn != NULL);
		g_internal_holds++;
		return;
	}
	g_q[client_index(c)].holds++;
}

static void io_release(void *arg, const struct query_client *c)
{
	(void)arg;
	if (c->proto == QUERY_INTERNAL) {
		CHECK(g_internal_holds > 0);
		g_internal_holds--;
		return;
	}
	struct tracked *t = &g_q[client_index(c)];
	CHECK(t->holds > 0);
	t->holds--;
}

static uint64_t g_now;

static uint64_t io_now(void *arg)
{
	(void)arg;
	return g_now;
}

/* Refuse every client whose index is 5 mod 7. */
static bool acl(const void *arg, const struct sockaddr *sa)
{
	(void)arg;
	uint32_t last;
	if (sa->sa_family == AF_INET)
		last = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) & 0xff;
	else
		last = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[15];
	return last % 7 != 5;
}

/* ------------------------------------------------------------ fixtures */

static struct cluster_snapshot *g_snap;
/* Groups are opaque to the query path: tokens here. g_empty stands for the
 * default group without servers (the fake refuses it with -ENOENT). */
struct upstream_group {
	int id;
};
static const struct upstream_group g_dflt = { 0 };
static const struct upstream_group g_empty = { 1 };
static const struct upstream_group g_stub_group = { 2 };
static const struct upstream_group g_fallback = { 3 };
static struct query_stub g_stubs[2];
static struct autopath_config g_autopath;
static struct pod_table *g_pods;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOGL_ERROR, false);
	struct cluster_config cc = { .domain = "cluster.local", .ttl_s = 5, .pods_insecure = true };
	struct k8s_store *s = k8s_store_new(&cc);
	CHECK(s);
	const char *path = getenv("NODEDNS_FUZZ_CLUSTER");
	char buf[4096];
	if (!path) {
		snprintf(buf, sizeof(buf), "%s/%s", NODEDNS_SRCDIR, CLUSTER_FILE);
		path = buf;
	}
	char err[256];
	if (k8s_store_load_file(s, path, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_query: %s\n", err);
		abort();
	}
	struct cluster_publisher *pub = cluster_publisher_new();
	CHECK(pub);
	g_snap = cluster_publisher_publish(pub, s);
	CHECK(g_snap);
	cluster_publisher_free(pub);
	k8s_store_free(s); /* the snapshot holds its own references */

	const char *search[] = { "corp.example", "example.test" };
	if (autopath_config_init(&g_autopath, "cluster.local", search, 2, 5) < 0)
		abort();
	struct pod_table_pair pairs[32];
	for (unsigned i = 0; i < 32; i++) {
		memset(&pairs[i].ip, 0, sizeof(pairs[i].ip));
		pairs[i].ip.fam = 4;
		pairs[i].ip.b[0] = 10;
		pairs[i].ip.b[3] = (uint8_t)i;
		pairs[i].ns = i < 16 ? "demo" : "default";
	}
	g_pods = pod_table_new(pairs, 32);
	if (!g_pods)
		abort();
	g_stubs[0].name_len = dnsname_to_wire("corp.example", g_stubs[0].name);
	g_stubs[0].group = &g_stub_group;
	/* in.arpa, not in-addr.arpa: never matches */
	g_stubs[1].name_len = dnsname_to_wire("in.arpa", g_stubs[1].name);
	g_stubs[1].group = &g_stub_group;
	return 0;
}

/* --------------------------------------------------------------- input */

struct reader {
	const uint8_t *p;
	size_t left;
};

static bool rd_u8(struct reader *r, uint8_t *v)
{
	if (r->left < 1)
		return false;
	*v = *r->p++;
	r->left--;
	return true;
}

static bool rd_u16(struct reader *r, uint16_t *v)
{
	if (r->left < 2)
		return false;
	*v = wire_get16(r->p);
	r->p += 2;
	r->left -= 2;
	return true;
}

/* len16 then that many bytes (fewer at the end of the input). */
static void rd_blob(struct reader *r, const uint8_t **p, size_t *len)
{
	uint16_t n = 0;
	rd_u16(r, &n);
	if (n > r->left)
		n = (uint16_t)r->left;
	*p = r->p;
	*len = n;
	r->p += n;
	r->left -= n;
}

static void client_query(struct query_worker *w, const uint8_t *wire, size_t len, uint8_t proto,
			 bool v6)
{
	if (g_nq >= MAX_QUERIES)
		return;
	size_t idx = g_nq++;
	struct tracked *t = &g_q[idx];
	memset(t, 0, sizeof(*t));
	t->wire = wire;
	t->len = len;
	t->proto = proto;
	t->v6 = v6;
	t->v = dnsmsg_parse_query(wire, len, &t->q);
	struct query_client c;
	make_client(idx, &c);
	query_handle(w, wire, len, &c, g_now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct reader r = { data + 2, size - 2 };
	uint8_t h0 = data[0], h1 = data[1];

	struct query_env env;
	memset(&env, 0, sizeof(env));
	env.cache = cache_new(h1 & 4 ? 16 * 1024 : 1024 * 1024, 2);
	CHECK(env.cache);
	strcpy(env.cluster.domain, "cluster.local");
	env.cluster.ttl_s = 5;
	env.cluster.pods_insecure = h0 & 0x80;
	env.upstreams = h0 & 0x40 ? &g_empty : &g_dflt;
	env.fallback = h0 & 0x08 ? &g_fallback : NULL;
	env.stubs = g_stubs;
	env.nstubs = 2;
	env.ttl = (struct dnsmsg_ttl_policy){ .min_ttl_s = 0, .max_ttl_s = 86400,
					      .neg_ttl_s = 300, .servfail_ttl_s = 2 };
	env.serve_stale_s = h0 & 0x01 ? 3600 : 0;
	env.prefetch = h0 & 0x02;
	env.max_waiters = h1 & 1 ? 2 : 1000;
	atomic_store(&env.query_log, (h0 & 0x10) != 0);
	env.version = "nodedns-fuzz";
	env.ident = "fuzz-node";
	env.allowed = h0 & 0x20 ? acl : NULL;
	env.autopath = h1 & 8 ? &g_autopath : NULL;

	fake_upstream_init(&g_up, h1 & 2 ? 2 : 64);
	g_up.empty = &g_empty;
	g_nq = 0;
	g_internal_holds = 0;
	g_now = 1000000;

	const struct query_io io = { io_reply, io_hold, io_release, io_now, NULL };
	struct query_worker *w = query_worker_new(&env, &g_up.ops, &io);
	CHECK(w);
	pod_table_ref(g_pods);
	query_worker_set_pods(w, g_pods);
	bool snap_on = h0 & 0x04;
	if (snap_on) {
		cluster_snapshot_ref(g_snap);
		query_worker_set_snapshot(w, g_snap);
	}

	uint8_t tag;
	while (rd_u8(&r, &tag)) {
		const uint8_t *p;
		size_t n;
		uint8_t sel;
		uint16_t v;
		switch (tag & 7) {
		case 0:
		case 1:
			rd_blob(&r, &p, &n);
			client_query(w, p, n, tag & 0x08 ? QUERY_TCP : QUERY_UDP, tag & 0x10);
			break;
		case 2:
			if (g_nq > 0) {
				const struct tracked *t = &g_q[(tag >> 3) % g_nq];
				uint8_t proto = t->proto;
				if (tag & 0x80)
					proto = proto == QUERY_TCP ? QUERY_UDP : QUERY_TCP;
				client_query(w, t->wire, t->len, proto, t->v6);
			}
			break;
		case 3:
			if (!rd_u8(&r, &sel))
				break;
			rd_blob(&r, &p, &n);
			struct fake_upstream_call *c = fake_upstream_pick(&g_up, sel);
			if (c)
				call_reply(c, p, n, sel & 0x80);
			break;
		case 4: {
			static const int st[4] = { -ETIMEDOUT, -ECONNREFUSED, -EPROTO, -ECANCELED };
			if (!rd_u8(&r, &sel))
				break;
			struct fake_upstream_call *fc = fake_upstream_pick(&g_up, sel);
			if (fc)
				fake_upstream_finish(&g_up, fc, st[(tag >> 3) & 3], NULL, 0);
			break;
		}
		case 5:
			if (rd_u16(&r, &v))
				g_now += tag & 0x08 ? v : (uint64_t)v * 1000;
			break;
		case 6:
			snap_on = !snap_on;
			if (snap_on)
				cluster_snapshot_ref(g_snap);
			query_worker_set_snapshot(w, snap_on ? g_snap : NULL);
			break;
		case 7: {
			rd_blob(&r, &p, &n);
			/* Calls started by these completions are answered too,
			 * up to the call limit. */
			for (size_t i = 0; i < g_up.ncalls; i++)
				if (g_up.calls[i].live)
					call_reply(&g_up.calls[i], p, n, true);
			break;
		}
		}
	}

	/* Closing the upstream: every pending call fails with -ECANCELED. */
	fake_upstream_cancel_all(&g_up);
	CHECK(g_up.inflight == 0);
	CHECK(query_pending(w) == 0);
	CHECK(g_internal_holds == 0);
	for (size_t i = 0; i < g_nq; i++) {
		const struct tracked *t = &g_q[i];
		CHECK(t->holds == 0);
		CHECK(t->replies == (t->v == DNSMSG_DROP ? 0u : 1u));
	}
	query_worker_free(w);
	cache_free(env.cache);
	return 0;
}
