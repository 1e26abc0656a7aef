/* src/dns/query_internal.h - what the query path shares with autopath (inside the dns layer).
 *
 * query.c owns struct query_worker and the path of one query; autopath.c
 * walks a pod's search path with the same primitives: answers from the
 * cluster snapshot, and sub-queries through the cache and the upstreams
 * (forward with an internal client). A sub-query's answer comes back through
 * struct query_sub: send_body() hands the body of a QUERY_INTERNAL client to
 * its done() instead of a socket, at once (a cache hit) or later (when the
 * upstream answers), so the walk resumes from its callback. Everything runs
 * on the worker's thread.
 */
#ifndef NODEDNS_DNS_QUERY_INTERNAL_H
#define NODEDNS_DNS_QUERY_INTERNAL_H

#include "nodedns/dns/query.h"
#include "nodedns/util/hash.h"
#include "nodedns/util/log.h"

#define PENDING_BUCKETS 4096 /* power of two; chains stay short under max_inflight */
#define REPLY_BUF_BYTES (DNS_MSG_MAX_BYTES + DNS_OPT_RR_BYTES + 16)

struct pending;
struct pod_table;
struct query_worker;

/** The completion of a sub-query: the first member of whoever waits for one
 * (an ExternalName chase, an autopath walk); a QUERY_INTERNAL client's conn
 * points at it. @p body (@p len bytes, a body: no OPT, not finalized) is
 * borrowed for the call and lies in w->buf, which done() may overwrite. */
struct query_sub {
	void (*done)(struct query_worker *w, struct query_sub *s, const uint8_t *body, size_t len);
};

struct query_worker {
	const struct query_env *env;
	struct query_upstream_ops up;
	struct query_io io;
	struct cluster_snapshot *snap;
	struct pod_table *pods; /* NULL: autopath off (or no pod known yet) */
	struct hash_key pending_key; /* random per worker: names come from clients */
	struct pending *buckets[PENDING_BUCKETS];
	size_t npending;
	struct query_stats stats;
	struct log_limit lim_fail;
	uint8_t zone[DNS_NAME_MAX_BYTES]; /* the cluster domain, wire form */
	size_t zone_len;
	uint8_t buf[REPLY_BUF_BYTES];  /* reply being built */
	uint8_t body[REPLY_BUF_BYTES]; /* prepared upstream body */
	uint16_t ttl_off[DNS_RECORDS_MAX]; /* every record: more than the cache holds */
};

/* query.c */
/** Finalize the body in w->buf (@p body_len bytes) for @p q and send it to
 * @p c (or to its query_sub when c is internal). @p rcode_ext > 15 sends an
 * extended rcode (BADVERS). @p source names the answer in the query log. */
void query_send_body(struct query_worker *w, const struct query_client *c,
		     const struct dnsmsg_query *q, size_t body_len, int rcode_ext,
		     const char *source, uint64_t start_ms);

/** Answer the question @p q for @p c from the cache, or send it upstream to
 * @p group and answer when it returns (joining the same question in flight). */
void query_forward(struct query_worker *w, const struct query_client *c,
		   const struct dnsmsg_query *q, const struct upstream_group *group,
		   bool use_cache, uint64_t now_ms);

/** The upstream group of @p q: its longest stub domain, or the default. */
const struct upstream_group *query_pick_group(const struct query_worker *w,
					      const struct dnsmsg_query *q);

/** Counters of one worker have one writer (its thread): a relaxed load and
 * store is enough for the control thread's relaxed reads, and avoids a
 * locked instruction per counter on the path of every query. */
static inline void query_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* autopath.c */
/**
 * The cluster zone answered @p q (from @p c) with NXDOMAIN. When autopath is
 * on, @p c is a known pod's address and the name is `X.<its ns>.svc.<zone>`,
 * walk the pod's search path for X and answer @p c (now or later).
 * @return true when the walk took the query over; false (nothing sent,
 * w->buf untouched) when it does not apply.
 */
bool autopath_start(struct query_worker *w, const struct dnsmsg_query *q,
		    const struct query_client *c, uint64_t now_ms);

#endif
