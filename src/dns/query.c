/* src/dns/query.c - the path of one query through a worker. */
#include "nodedns/dns/query.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/dns/cache.h"
#include "nodedns/cluster/pod_table.h"
#include "query_internal.h"
#include "nodedns/util/hash.h"
#include "nodedns/util/log.h"
#include "nodedns/util/wire.h"

#define STALE_TTL_S 30       /* RFC 8767 4: TTL of a stale answer */

const char *const query_type_labels[8] = { "A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "other", "ANY" };
const char *const query_rcode_labels[QUERY_RCODE_SLOTS] = { "NOERROR", "FORMERR", "SERVFAIL",
							    "NXDOMAIN", "NOTIMP", "REFUSED",
							    "other" };

/* One client waiting for a question in flight. */
struct waiter {
	struct waiter *next;
	struct query_client client;
	struct dnsmsg_query q;
	uint64_t start_ms;
};

/* One question in flight upstream, with everyone waiting for it. */
struct pending {
	struct pending *next; /* hash chain */
	struct query_worker *w;
	uint64_t hash;
	uint16_t keylen;
	uint8_t key[CACHE_KEY_MAX];
	struct waiter *waiters, **tail;
	unsigned nwaiters;
	struct dnsmsg_query q; /* the first asker's question: template for errors */
	bool prefetch;         /* started by a prefetch: no waiter needed */
};

struct query_worker *query_worker_new(const struct query_env *env,
				      const struct query_upstream_ops *up,
				      const struct query_io *io)
{
	struct query_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->env = env;
	w->up = *up;
	w->io = *io;
	hash_key_random(&w->pending_key);
	w->zone_len = dnsmsg_name_from_text(env->cluster.domain, w->zone);
	return w;
}

void query_worker_free(struct query_worker *w)
{
	if (!w)
		return;
	cluster_snapshot_unref(w->snap);
	pod_table_unref(w->pods);
	free(w);
}

void query_worker_set_snapshot(struct query_worker *w, struct cluster_snapshot *snap)
{
	struct cluster_snapshot *old = w->snap;
	w->snap = snap;
	cluster_snapshot_unref(old);
}

void query_worker_set_pods(struct query_worker *w, struct pod_table *pods)
{
	struct pod_table *old = w->pods;
	w->pods = w->env->autopath ? pods : NULL;
	pod_table_unref(old);
	if (!w->pods)
		pod_table_unref(pods);
}

size_t query_pending(const struct query_worker *w)
{
	return w->npending;
}

const struct query_stats *query_worker_stats(const struct query_worker *w)
{
	return &w->stats;
}

static unsigned type_slot(uint16_t t)
{
	switch (t) {
	case DNS_TYPE_A: return 0;
	case DNS_TYPE_AAAA: return 1;
	case DNS_TYPE_SRV: return 2;
	case DNS_TYPE_PTR: return 3;
	case DNS_TYPE_TXT: return 4;
	case DNS_TYPE_CNAME: return 5;
	case DNS_TYPE_ANY: return 7;
	default: return 6;
	}
}

static void query_log(struct query_worker *w, const struct query_client *c,
		      const struct dnsmsg_query *q, int rcode, const char *source, uint64_t start_ms)
{
	char addr[INET6_ADDRSTRLEN] = "?";
	uint16_t port = 0;
	if (c->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&c->addr;
		inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
		port = ntohs(sin->sin_port);
	} else if (c->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&c->addr;
		inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
		port = ntohs(sin6->sin6_port);
	}
	char name[1024], type[16];
	uint64_t now = w->io.now_ms(w->io.arg);
	log_info("query", "%s:%u %s %s %s %s %s %llums", addr, port,
		 c->proto == QUERY_TCP ? "tcp" : "udp",
		 q->has_question ? dnsmsg_name_str(q->qname, q->qname_len, name, sizeof(name)) : "-",
		 q->has_question ? dnsmsg_type_str(q->qtype, type, sizeof(type)) : "-",
		 dnsmsg_rcode_str(rcode), source, (unsigned long long)(now - start_ms));
}

void query_send_body(struct query_worker *w, const struct query_client *c,
		     const struct dnsmsg_query *q, size_t body_len, int rcode_ext,
		     const char *source, uint64_t start_ms)
{
	if (c->proto == QUERY_INTERNAL) {
		struct query_sub *sub = c->conn;
		sub->done(w, sub, w->buf, body_len);
		return;
	}
	size_t limit = c->proto == QUERY_UDP ? dnsmsg_udp_limit(q) : DNS_MSG_MAX_BYTES;
	size_t n = rcode_ext > 15 ? dnsmsg_finalize_rcode(w->buf, body_len, sizeof(w->buf), q,
							  rcode_ext, limit)
				  : dnsmsg_finalize(w->buf, body_len, sizeof(w->buf), q, limit);
	if (n == 0)
		return;
	int rcode = dnsmsg_rcode(w->buf);
	query_inc(&w->stats.responses[rcode < QUERY_RCODE_SLOTS - 1 ? rcode : QUERY_RCODE_SLOTS - 1]);
	if (c->proto == QUERY_UDP && (w->buf[2] & 0x02))
		query_inc(&w->stats.truncated);
	w->io.reply(w->io.arg, c, w->buf, n);
	if (atomic_load_explicit(&w->env->query_log, memory_order_relaxed))
		query_log(w, c, q, rcode_ext > 15 ? rcode_ext : rcode, source, start_ms);
}

static void send_error(struct query_worker *w, const struct query_client *c,
		       const struct dnsmsg_query *q, int rcode, const char *source,
		       uint64_t start_ms)
{
	size_t len = dnsmsg_error_body(q, rcode, w->buf);
	query_send_body(w, c, q, len, rcode, source, start_ms);
}

/* Copy a body into w->buf and send it to one client. */
static void send_copy(struct query_worker *w, const struct query_client *c,
		      const struct dnsmsg_query *q, const uint8_t *body, size_t len,
		      const char *source, uint64_t start_ms)
{
	memcpy(w->buf, body, len);
	query_send_body(w, c, q, len, 0, source, start_ms);
}

/* ---------------------------------------------------------- pending table */

static uint64_t pending_hash(const struct query_worker *w, const uint8_t *key, size_t keylen)
{
	return hash_bytes(&w->pending_key, key, keylen);
}

static struct pending *pending_find(struct query_worker *w, const uint8_t *key, size_t keylen,
				    uint64_t hash)
{
	for (struct pending *p = w->buckets[hash & (PENDING_BUCKETS - 1)]; p; p = p->next)
		if (p->hash == hash && p->keylen == keylen && memcmp(p->key, key, keylen) == 0)
			return p;
	return NULL;
}

static void pending_unlink(struct query_worker *w, struct pending *p)
{
	struct pending **pp = &w->buckets[p->hash & (PENDING_BUCKETS - 1)];
	for (; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			w->npending--;
			atomic_fetch_sub_explicit(&w->stats.pending, 1, memory_order_relaxed);
			return;
		}
	}
}

static int add_waiter(struct query_worker *w, struct pending *p, const struct query_client *c,
		      const struct dnsmsg_query *q, uint64_t now_ms)
{
	struct waiter *wt = malloc(sizeof(*wt));
	if (!wt)
		return -ENOMEM;
	wt->next = NULL;
	wt->client = *c;
	wt->q = *q;
	wt->start_ms = now_ms;
	*p->tail = wt;
	p->tail = &wt->next;
	p->nwaiters++;
	if (w->io.hold)
		w->io.hold(w->io.arg, c);
	return 0;
}

const struct upstream_group *query_pick_group(const struct query_worker *w,
					      const struct dnsmsg_query *q)
{
	const struct query_env *env = w->env;
	const struct upstream_group *best = env->upstreams;
	size_t best_len = 0;
	for (size_t i = 0; i < env->nstubs; i++) {
		const struct query_stub *s = &env->stubs[i];
		if (s->name_len <= best_len ||
		    !dnsmsg_name_under(q->lname, q->qname_len, s->name, s->name_len))
			continue;
		best = s->group;
		best_len = s->name_len;
	}
	return best;
}

static void upstream_done(void *arg, int status, const uint8_t *reply, size_t len,
			  const struct upstream_server *server);

/* Send the pending question upstream to @p group. @return 0 or -errno. */
static int pending_start(struct query_worker *w, struct pending *p,
			 const struct upstream_group *group)
{
	if (!group)
		return -ENOENT;
	uint8_t qbuf[DNS_HEADER_BYTES + DNS_NAME_MAX_BYTES + 4 + DNS_OPT_RR_BYTES];
	size_t qlen = dnsmsg_upstream_query(&p->q, qbuf);
	return w->up.send(w->up.ctx, group, qbuf, qlen, upstream_done, p);
}

static struct pending *pending_new(struct query_worker *w, const uint8_t *key, size_t keylen,
				   uint64_t hash, const struct dnsmsg_query *q)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->w = w;
	p->hash = hash;
	p->keylen = (uint16_t)keylen;
	memcpy(p->key, key, keylen);
	p->tail = &p->waiters;
	p->q = *q;
	return p;
}

static void pending_insert(struct query_worker *w, struct pending *p)
{
	struct pending **b = &w->buckets[p->hash & (PENDING_BUCKETS - 1)];
	p->next = *b;
	*b = p;
	w->npending++;
	atomic_fetch_add_explicit(&w->stats.pending, 1, memory_order_relaxed);
}

static void pending_free(struct query_worker *w, struct pending *p)
{
	struct waiter *wt = p->waiters;
	while (wt) {
		struct waiter *next = wt->next;
		if (w->io.release)
			w->io.release(w->io.arg, &wt->client);
		free(wt);
		wt = next;
	}
	free(p);
}

/* RFC 8767: the stale answer to @p key, if the cache still keeps one, into
 * w->buf (w->body is left alone). @return its length, or 0 for none. */
static size_t stale_lookup(struct query_worker *w, const uint8_t *key, size_t keylen,
			   uint64_t now_ms)
{
	const struct query_env *env = w->env;
	struct cache_hit hit;
	if (env->serve_stale_s == 0 ||
	    cache_lookup(env->cache, key, keylen, now_ms, (uint64_t)env->serve_stale_s * 1000,
			 STALE_TTL_S, w->buf, sizeof(w->buf), &hit) != 1)
		return 0;
	return hit.len;
}

/* Answer everyone waiting on @p p with the stale answer, if there is one.
 * @return whether there was one. */
static bool pending_stale(struct query_worker *w, struct pending *p, uint64_t now_ms)
{
	size_t n = stale_lookup(w, p->key, p->keylen, now_ms);
	if (n == 0)
		return false;
	memcpy(w->body, w->buf, n);
	for (struct waiter *wt = p->waiters; wt; wt = wt->next) {
		query_inc(&w->stats.stale_answers);
		send_copy(w, &wt->client, &wt->q, w->body, n, "stale", wt->start_ms);
	}
	return true;
}

/* Everyone waiting gets SERVFAIL, or a stale answer when there is one. */
static void pending_fail(struct query_worker *w, struct pending *p, uint64_t now_ms)
{
	if (pending_stale(w, p, now_ms))
		return;
	for (struct waiter *wt = p->waiters; wt; wt = wt->next) {
		query_inc(&w->stats.upstream_failures);
		send_error(w, &wt->client, &wt->q, DNS_RCODE_SERVFAIL, "upstream-failed",
			   wt->start_ms);
	}
}

static void log_failure(struct query_worker *w, const struct pending *p, int status,
			uint64_t now)
{
	if (status == -ECANCELED || !log_ratelimited(&w->lim_fail, now ? now : 1, 5000))
		return;
	char name[1024];
	log_warn("query", "%s: every upstream failed: %s",
		 dnsmsg_name_str(p->q.lname, p->q.qname_len, name, sizeof(name)),
		 strerror(-status));
}

static void upstream_done(void *arg, int status, const uint8_t *reply, size_t len,
			  const struct upstream_server *server)
{
	struct pending *p = arg;
	struct query_worker *w = p->w;
	const struct query_env *env = w->env;
	uint64_t now = w->io.now_ms(w->io.arg);
	pending_unlink(w, p);
	(void)server;

	if (status < 0) {
		log_failure(w, p, status, now);
		pending_fail(w, p, now);
		pending_free(w, p);
		return;
	}

	struct dnsmsg_reply_info info;
	size_t blen = dnsmsg_prepare_reply(reply, len, &env->ttl, w->body, sizeof(w->body),
					   w->ttl_off, DNS_RECORDS_MAX, &info);
	/* Malformed, scrubbed to nothing, or TC=1 (the upstream module asks
	 * over TCP after TC over UDP, so TC here is a broken upstream): a
	 * failure, never passed on or cached. */
	if (blen == 0 || info.tc) {
		pending_fail(w, p, now);
		pending_free(w, p);
		return;
	}
	/* The key has DO=0: AD only for who asks about DNSSEC (RFC 6840 5.8). */
	if (!p->q.do_bit)
		dnsmsg_clear_ad(w->body);
	/* The upstream could not answer: a stale answer beats its failure
	 * (RFC 8767). Keep the stale entry: do not replace it with the
	 * SERVFAIL. */
	if (info.rcode == DNS_RCODE_SERVFAIL && pending_stale(w, p, now)) {
		pending_free(w, p);
		return;
	}
	/* Every upstream refused (the upstream module tried each): their
	 * policy, not ours. The client gets SERVFAIL (or stale data), as
	 * from unbound, never REFUSED. */
	if (info.rcode == DNS_RCODE_REFUSED) {
		pending_fail(w, p, now);
		pending_free(w, p);
		return;
	}
	/* An answer the cache cannot hold (more than CACHE_TTLS_MAX records,
	 * or bytes) is still passed on; the cache counts it (too_big). */
	if (info.cacheable)
		cache_insert(env->cache, p->key, p->keylen, w->body, blen, w->ttl_off, info.nttl,
			     info.ttl_s, (enum cache_kind)info.kind, now,
			     (uint64_t)env->serve_stale_s * 1000);
	for (struct waiter *wt = p->waiters; wt; wt = wt->next)
		send_copy(w, &wt->client, &wt->q, w->body, blen, "upstream", wt->start_ms);
	pending_free(w, p);
}

/* A cache hit in its prefetch window: refresh the entry now, before it
 * expires (once per entry), with nobody waiting. */
static void prefetch(struct query_worker *w, const struct dnsmsg_query *q,
		     const struct upstream_group *group, const uint8_t *key, size_t keylen)
{
	uint64_t h = pending_hash(w, key, keylen);
	if (pending_find(w, key, keylen, h))
		return;
	struct pending *p = pending_new(w, key, keylen, h, q);
	if (!p)
		return;
	p->prefetch = true;
	if (pending_start(w, p, group) < 0) {
		free(p);
		return;
	}
	pending_insert(w, p);
	query_inc(&w->stats.prefetches);
}

/* The question could not go upstream (rc from pending_start()): nothing to
 * ask (no upstream) or too much in flight. A stale answer if there is one,
 * else SERVFAIL. */
static void start_failed(struct query_worker *w, const struct query_client *c,
			 const struct dnsmsg_query *q, const uint8_t *key, size_t keylen, int rc,
			 uint64_t now_ms)
{
	if (rc == -ENOBUFS)
		query_inc(&w->stats.dropped_inflight);
	else
		query_inc(&w->stats.upstream_failures);
	size_t n = stale_lookup(w, key, keylen, now_ms);
	if (n) {
		query_inc(&w->stats.stale_answers);
		query_send_body(w, c, q, n, 0, "stale", now_ms);
		return;
	}
	send_error(w, c, q, DNS_RCODE_SERVFAIL, rc == -ENOBUFS ? "inflight-full" : "no-upstream",
		   now_ms);
}

/* Join the question in flight for @p key, or send it upstream and wait. */
static void wait_upstream(struct query_worker *w, const struct query_client *c,
			  const struct dnsmsg_query *q, const struct upstream_group *group,
			  const uint8_t *key, size_t keylen, uint64_t now_ms)
{
	uint64_t h = pending_hash(w, key, keylen);
	struct pending *p = pending_find(w, key, keylen, h);
	if (p) {
		if (p->nwaiters >= w->env->max_waiters) {
			query_inc(&w->stats.dropped_waiters);
			send_error(w, c, q, DNS_RCODE_SERVFAIL, "waiters-full", now_ms);
			return;
		}
		if (add_waiter(w, p, c, q, now_ms) < 0) {
			send_error(w, c, q, DNS_RCODE_SERVFAIL, "nomem", now_ms);
			return;
		}
		query_inc(&w->stats.coalesced);
		return;
	}

	p = pending_new(w, key, keylen, h, q);
	if (!p) {
		send_error(w, c, q, DNS_RCODE_SERVFAIL, "nomem", now_ms);
		return;
	}
	int rc = pending_start(w, p, group);
	if (rc < 0) {
		free(p);
		start_failed(w, c, q, key, keylen, rc, now_ms);
		return;
	}
	pending_insert(w, p);
	if (add_waiter(w, p, c, q, now_ms) < 0) {
		/* The question goes on (it will be cached); this client gets
		 * SERVFAIL now. */
		send_error(w, c, q, DNS_RCODE_SERVFAIL, "nomem", now_ms);
	}
}

void query_forward(struct query_worker *w, const struct query_client *c,
		   const struct dnsmsg_query *q, const struct upstream_group *group,
		   bool use_cache, uint64_t now_ms)
{
	const struct query_env *env = w->env;
	uint8_t key[CACHE_KEY_MAX];
	size_t keylen = dnsmsg_key(q, key);
	struct cache_hit hit;

	if (use_cache &&
	    cache_lookup(env->cache, key, keylen, now_ms, 0, 0, w->buf, sizeof(w->buf), &hit) == 1) {
		query_inc(&w->stats.cache_answers);
		query_send_body(w, c, q, hit.len, 0, "cache", now_ms);
		if (hit.prefetch && env->prefetch)
			prefetch(w, q, group, key, keylen);
		return;
	}
	wait_upstream(w, c, q, group, key, keylen, now_ms);
}

/* RD=0: the client asks what we hold, not for recursion (RFC 1034 4.3.1).
 * Answered from the cache only, as unbound does: a miss is REFUSED and
 * nothing goes upstream, so such a query never fills the cache. */
static void answer_norec(struct query_worker *w, const struct query_client *c,
			 const struct dnsmsg_query *q, uint64_t now_ms)
{
	uint8_t key[CACHE_KEY_MAX];
	size_t keylen = dnsmsg_key(q, key);
	struct cache_hit hit;
	if (cache_lookup(w->env->cache, key, keylen, now_ms, 0, 0, w->buf, sizeof(w->buf), &hit) ==
	    1) {
		query_inc(&w->stats.cache_answers);
		query_send_body(w, c, q, hit.len, 0, "cache", now_ms);
		return;
	}
	send_error(w, c, q, DNS_RCODE_REFUSED, "norec", now_ms);
}

/* ----------------------------------------------------- ExternalName chase
 *
 * A/AAAA for an ExternalName service: the cluster zone answers the CNAME, and
 * the target (outside the zone) goes through the cache and the upstreams like
 * any other name; the client gets the CNAME followed by the target's records
 * (merged by dnsmsg_merge_chase()).
 */
struct chase {
	struct query_sub sub; /* first: the internal client's conn points here */
	struct query_client client;
	struct dnsmsg_query q;
	uint64_t start_ms;
	size_t len;
	uint8_t body[]; /* the cluster zone's CNAME answer */
};

static void chase_complete(struct query_worker *w, struct query_sub *sub, const uint8_t *target,
			   size_t tlen)
{
	struct chase *ch = (struct chase *)sub;
	size_t n = dnsmsg_merge_chase(ch->body, ch->len, target, tlen, w->buf, sizeof(w->buf));
	if (n == 0) {
		/* Could not merge: the CNAME alone still lets the client chase. */
		memcpy(w->buf, ch->body, ch->len);
		n = ch->len;
	}
	query_send_body(w, &ch->client, &ch->q, n, 0, "cluster+chase", ch->start_ms);
	if (w->io.release)
		w->io.release(w->io.arg, &ch->client);
	free(ch);
}

/* w->buf holds the cluster zone's CNAME answer (@p n bytes) to @p q. */
static void chase_start(struct query_worker *w, const struct query_client *c,
			const struct dnsmsg_query *q, size_t n, const struct cluster_answer_info *info,
			uint64_t now_ms)
{
	struct chase *ch = malloc(sizeof(*ch) + n);
	if (!ch) {
		query_send_body(w, c, q, n, 0, "cluster", now_ms);
		return;
	}
	ch->sub.done = chase_complete;
	ch->client = *c;
	ch->q = *q;
	ch->start_ms = now_ms;
	ch->len = n;
	memcpy(ch->body, w->buf, n);
	if (w->io.hold)
		w->io.hold(w->io.arg, c);

	struct dnsmsg_query tq = *q;
	memcpy(tq.qname, info->chase_name, info->chase_len);
	wire_lower_copy(tq.lname, info->chase_name, info->chase_len);
	tq.qname_len = (uint8_t)info->chase_len;
	tq.edns = true;
	tq.udp_size = DNS_MSG_MAX_BYTES;
	struct query_client ic;
	memset(&ic, 0, sizeof(ic));
	ic.proto = QUERY_INTERNAL;
	ic.conn = ch;
	ic.addr = c->addr;
	ic.addrlen = c->addrlen;
	query_forward(w, &ic, &tq, query_pick_group(w, &tq), true, now_ms);
}

static bool is_reverse(const struct dnsmsg_query *q)
{
	static const uint8_t v4[] = "\7in-addr\4arpa";
	static const uint8_t v6[] = "\3ip6\4arpa";
	return (q->qname_len >= sizeof(v4) &&
		memcmp(q->lname + q->qname_len - sizeof(v4), v4, sizeof(v4)) == 0) ||
	       (q->qname_len >= sizeof(v6) &&
		memcmp(q->lname + q->qname_len - sizeof(v6), v6, sizeof(v6)) == 0);
}

/* Answer what is not an ordinary IN query: parse errors, the ACL, CHAOS,
 * other classes, zone transfers. @return true when @p q was handled (answered
 * or dropped). */
static bool handle_special(struct query_worker *w, enum dnsmsg_verdict v,
			   const struct dnsmsg_query *q, const struct query_client *c,
			   uint64_t now_ms)
{
	const struct query_env *env = w->env;
	if (v == DNSMSG_DROP) {
		query_inc(&w->stats.dropped_malformed);
		return true;
	}
	if (env->allowed && !env->allowed(env->allowed_arg, (const struct sockaddr *)&c->addr)) {
		query_inc(&w->stats.refused_acl);
		send_error(w, c, q, DNS_RCODE_REFUSED, "acl", now_ms);
		return true;
	}
	switch (v) {
	case DNSMSG_FORMERR:
		send_error(w, c, q, DNS_RCODE_FORMERR, "formerr", now_ms);
		return true;
	case DNSMSG_NOTIMP:
		send_error(w, c, q, DNS_RCODE_NOTIMP, "notimp", now_ms);
		return true;
	case DNSMSG_BADVERS:
		send_error(w, c, q, DNS_RCODE_BADVERS, "badvers", now_ms);
		return true;
	default:
		break;
	}
	query_inc(&w->stats.by_type[type_slot(q->qtype)]);

	if (q->qclass == DNS_CLASS_CH) {
		size_t n = dnsmsg_chaos_body(q, env->version, env->ident, w->buf, sizeof(w->buf));
		if (n)
			query_send_body(w, c, q, n, 0, "chaos", now_ms);
		else
			send_error(w, c, q, DNS_RCODE_REFUSED, "chaos", now_ms);
		return true;
	}
	if (q->qclass != DNS_CLASS_IN || q->qtype == DNS_TYPE_AXFR || q->qtype == DNS_TYPE_IXFR) {
		send_error(w, c, q, DNS_RCODE_REFUSED, "refused", now_ms);
		return true;
	}
	return false;
}

/* A name in the cluster zone or a reverse name. @return true when it was
 * answered here (from the snapshot, or SERVFAIL/fallback while unsynced);
 * false: it goes upstream like any other name. */
static bool handle_cluster(struct query_worker *w, const struct dnsmsg_query *q,
			   const struct query_client *c, bool in_zone, uint64_t now_ms)
{
	const struct query_env *env = w->env;
	if (in_zone && !w->snap) {
		query_inc(&w->stats.by_zone[0]);
		if (env->fallback) {
			query_inc(&w->stats.fallback_queries);
			query_forward(w, c, q, env->fallback, false, now_ms);
		} else {
			query_inc(&w->stats.unsynced_servfail);
			send_error(w, c, q, DNS_RCODE_SERVFAIL, "unsynced", now_ms);
		}
		return true;
	}
	if (!w->snap)
		return false;
	struct cluster_answer_info info;
	size_t cap = c->proto == QUERY_UDP ? dnsmsg_udp_limit(q) : DNS_MSG_MAX_BYTES;
	if (q->edns)
		cap -= DNS_OPT_RR_BYTES;
	size_t n = 0;
	if ((c->proto == QUERY_UDP ? cluster_answer : cluster_answer_stream)(
		    w->snap, &env->cluster, q->qname, q->qname_len, q->qtype, q->qclass, w->buf,
		    cap, &n, &info) != CLUSTER_ANSWERED)
		return false;
	query_inc(&w->stats.by_zone[0]);
	query_inc(&w->stats.cluster_answers);
	/* Autopath: one pointer test for every NXDOMAIN when it is off. */
	if (w->pods && info.rcode == DNS_RCODE_NXDOMAIN && autopath_start(w, q, c, now_ms))
		return true;
	if (info.chase_len > 0 && info.chase_len <= DNS_NAME_MAX_BYTES &&
	    (q->qtype == DNS_TYPE_A || q->qtype == DNS_TYPE_AAAA))
		chase_start(w, c, q, n, &info, now_ms);
	else
		query_send_body(w, c, q, n, 0, "cluster", now_ms);
	return true;
}

void query_handle(struct query_worker *w, const uint8_t *wire, size_t len,
		  const struct query_client *c, uint64_t now_ms)
{
	struct dnsmsg_query q;
	query_inc(&w->stats.requests[c->proto == QUERY_TCP ? 1 : 0]);

	enum dnsmsg_verdict v = dnsmsg_parse_query(wire, len, &q);
	if (handle_special(w, v, &q, c, now_ms))
		return;

	/* The zone test on the lower-cased name: a suffix compare, not a
	 * parse (this runs for every query). */
	bool in_zone = dnsmsg_name_under(q.lname, q.qname_len, w->zone, w->zone_len);
	if ((in_zone || is_reverse(&q)) && handle_cluster(w, &q, c, in_zone, now_ms))
		return;
	query_inc(&w->stats.by_zone[1]);
	if (!q.rd) {
		answer_norec(w, c, &q, now_ms);
		return;
	}
	query_forward(w, c, &q, query_pick_group(w, &q), true, now_ms);
}
