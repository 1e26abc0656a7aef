/* include/nodedns/dns/query.h - the path of one query through a worker.
 *
 *   parse -> FORMERR/NOTIMP/REFUSED
 *         -> cluster zone (snapshot)       -> reply (AA)
 *              NXDOMAIN from a known pod   -> autopath walk (dns/autopath.h)
 *         -> cache hit                     -> reply (ID, case, TTLs patched)
 *         -> same question already in flight -> wait with it
 *         -> upstream (TCP pool)           -> cache insert -> reply to every waiter
 *
 * One `struct query_worker` per worker thread; everything here runs on that
 * thread. The server hands in datagrams and TCP frames with an opaque client
 * handle; replies go back through the callbacks in `struct query_io`, and
 * questions go upstream through `struct query_upstream_ops`, which the worker
 * implements with the upstream module: this module does no I/O of its own
 * (no socket, no loop). Time comes in as now_ms.
 */
#ifndef NODEDNS_QUERY_H
#define NODEDNS_QUERY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/dns/dnsmsg.h"

/* Defaults (--max-waiters, --min-ttl, --max-ttl, --neg-ttl, --serve-stale;
 * SERVFAIL answers are cached this long, no option). */
#define QUERY_MAX_WAITERS_DEFAULT 1000
#define QUERY_MIN_TTL_S_DEFAULT 0
#define QUERY_MAX_TTL_S_DEFAULT 86400
#define QUERY_NEG_TTL_S_DEFAULT 300
#define QUERY_SERVE_STALE_S_DEFAULT 3600
#define QUERY_SERVFAIL_TTL_S_DEFAULT 2

struct cache;
struct autopath_config;
struct pod_table;
/* Opaque here: owned by main, handed back to query_upstream_ops.send(). */
struct upstream_group;
struct upstream_server;

enum query_proto { QUERY_UDP = 0, QUERY_TCP = 1, QUERY_INTERNAL = 2 /* our own sub-query */ };

/** Where a reply goes: a UDP socket and the client's address, or a TCP
 * connection. Owned by the server; query only copies it around. */
struct query_client {
	uint8_t proto;  /* enum query_proto */
	void *conn;     /* server's socket (UDP) or connection (TCP) */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

/** The server's side of a reply. */
struct query_io {
	/** Send @p wire (borrowed for the call) to @p c. */
	void (*reply)(void *arg, const struct query_client *c, const uint8_t *wire, size_t len);
	/** Keep @p c->conn alive while a reply is pending (TCP); called when a
	 * query starts waiting, released exactly once with release(). */
	void (*hold)(void *arg, const struct query_client *c);
	void (*release)(void *arg, const struct query_client *c);
	/** The loop's clock in milliseconds (for work that completes later). */
	uint64_t (*now_ms)(void *arg);
	void *arg;
};

/**
 * Called exactly once per send() that returned 0, never from inside send().
 * @p status 0: @p reply (borrowed for the call) is a complete DNS message with
 * the ID and the question of the query given to send(); @p server (opaque,
 * may be NULL) answered it. <0: -ETIMEDOUT, -ECONNREFUSED, -EPROTO or
 * -ECANCELED (the worker is closing); @p reply is NULL.
 * The same shape as the upstream module's upstream_done_cb.
 */
typedef void (*query_upstream_done_cb)(void *arg, int status, const uint8_t *reply, size_t len,
				       const struct upstream_server *server);

/** The worker's side of a question sent upstream. */
struct query_upstream_ops {
	/** Send @p query (a complete one-question query, borrowed for the
	 * call) to the servers of @p group (borrowed; never NULL).
	 * @return 0 (@p cb will be called with @p arg), -ENOENT when @p group
	 * has no servers, -ENOBUFS when too much is in flight, or another
	 * negative errno (then @p cb is not called). */
	int (*send)(void *ctx, const struct upstream_group *group, const uint8_t *query, size_t len,
		    query_upstream_done_cb cb, void *arg);
	void *ctx;
};

/** A stub domain and the servers it forwards to. */
struct query_stub {
	uint8_t name[DNS_NAME_MAX_BYTES]; /* lower-case wire form */
	size_t name_len;
	const struct upstream_group *group;
};

/** Shared, read-only after start (all workers point at one). */
struct query_env {
	struct cache *cache;
	struct cluster_config cluster;
	const struct upstream_group *upstreams;   /* default; may have no servers */
	const struct upstream_group *fallback;    /* cluster fallback, or NULL */
	const struct query_stub *stubs;
	size_t nstubs;
	struct dnsmsg_ttl_policy ttl;
	uint32_t serve_stale_s;
	bool prefetch;
	unsigned max_waiters;   /* clients waiting on one question */
	_Atomic bool query_log; /* may change on SIGHUP */
	const char *version;    /* CH version.bind */
	const char *ident;      /* CH id.server */
	/** --autopath: the search path of the node's pods; NULL: off. */
	const struct autopath_config *autopath;
	/** Client ACL; NULL allows all. */
	bool (*allowed)(const void *arg, const struct sockaddr *sa);
	const void *allowed_arg;
};

#define QUERY_RCODE_SLOTS 7 /* NOERROR..REFUSED, other */

/** Per-worker counters (relaxed atomics: the control thread reads them). */
struct query_stats {
	_Atomic uint64_t requests[2];          /* by enum query_proto */
	_Atomic uint64_t by_type[8];           /* A AAAA SRV PTR TXT CNAME other, ANY */
	_Atomic uint64_t by_zone[2];           /* 0 cluster, 1 forward */
	_Atomic uint64_t responses[QUERY_RCODE_SLOTS];
	_Atomic uint64_t cluster_answers;
	_Atomic uint64_t cache_answers;        /* served from the cache */
	_Atomic uint64_t stale_answers;        /* RFC 8767 */
	_Atomic uint64_t coalesced;            /* joined a question in flight */
	_Atomic uint64_t prefetches;
	_Atomic uint64_t upstream_failures;    /* SERVFAIL because every upstream failed */
	_Atomic uint64_t truncated;            /* TC=1 over UDP */
	_Atomic uint64_t dropped_malformed;    /* no header / QR set */
	_Atomic uint64_t dropped_waiters;      /* over max_waiters: answered SERVFAIL */
	_Atomic uint64_t dropped_inflight;     /* upstream refused: answered SERVFAIL */
	_Atomic uint64_t refused_acl;
	_Atomic uint64_t fallback_queries;     /* cluster zone sent to --cluster-fallback */
	_Atomic uint64_t unsynced_servfail;    /* cluster zone not synced, no fallback */
	_Atomic uint64_t autopath_walks;       /* search-path walks started */
	_Atomic uint64_t autopath_answers;     /* walks that found a name: CNAME + its records */
	_Atomic uint64_t autopath_root;        /* walks that ended at X. (found there or nowhere) */
	_Atomic uint64_t autopath_steps;       /* names the walks looked up */
	_Atomic int64_t pending;               /* gauge: questions in flight */
};

/** Indices of query_stats.by_type, .by_zone and .responses (the labels of
 * their metrics are in src/dns/query_metrics.c, indexed by these). */
enum query_type_slot {
	QUERY_TYPE_A = 0, QUERY_TYPE_AAAA, QUERY_TYPE_SRV, QUERY_TYPE_PTR, QUERY_TYPE_TXT,
	QUERY_TYPE_CNAME, QUERY_TYPE_OTHER, QUERY_TYPE_ANY, QUERY_TYPE_SLOTS
};
enum query_zone_slot { QUERY_ZONE_CLUSTER = 0, QUERY_ZONE_FORWARD, QUERY_ZONE_SLOTS };
enum query_rcode_slot {
	QUERY_RCODE_NOERROR = 0, QUERY_RCODE_FORMERR, QUERY_RCODE_SERVFAIL, QUERY_RCODE_NXDOMAIN,
	QUERY_RCODE_NOTIMP, QUERY_RCODE_REFUSED, QUERY_RCODE_OTHER /* = QUERY_RCODE_SLOTS - 1 */
};

struct mbuf;
/** Render the query counters summed over @p n workers' stats (borrowed), for
 * /metrics; query_metrics_render_dropped() adds only the samples of
 * nodedns_dropped_total, whose header the caller writes (src/dns/query_metrics.c). */
void query_metrics_render(struct mbuf *b, const struct query_stats *const *per_worker, size_t n);
void query_metrics_render_dropped(struct mbuf *b, const struct query_stats *const *per_worker,
				  size_t n);

extern const char *const query_type_labels[8];
extern const char *const query_rcode_labels[QUERY_RCODE_SLOTS];

struct query_worker;

/** Create the per-worker query state. @p env is borrowed for its life; @p up
 * and @p io are copied (what their ctx/arg point at is borrowed for its life). */
struct query_worker *query_worker_new(const struct query_env *env,
				      const struct query_upstream_ops *up,
				      const struct query_io *io);

/** Free it. Pending questions must have completed (their upstream callbacks
 * ran, e.g. when the worker closed its upstreams). NULL is fine. */
void query_worker_free(struct query_worker *w);

/** Replace the worker's cluster snapshot, taking ownership of one reference of
 * @p snap (may be NULL) and dropping the old one. */
void query_worker_set_snapshot(struct query_worker *w, struct cluster_snapshot *snap);

/** Replace the worker's table of the node's pods (autopath), taking
 * ownership of one reference of @p pods (may be NULL) and dropping the old
 * one. Without env->autopath the table is dropped at once. */
void query_worker_set_pods(struct query_worker *w, struct pod_table *pods);

/** Handle one query from @p c (@p wire borrowed for the call). */
void query_handle(struct query_worker *w, const uint8_t *wire, size_t len,
		  const struct query_client *c, uint64_t now_ms);

/** Questions still waiting for an upstream. */
size_t query_pending(const struct query_worker *w);

const struct query_stats *query_worker_stats(const struct query_worker *w);

#endif
