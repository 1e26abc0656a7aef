/* include/nodedns/io/upstream.h - forwarding to upstream servers over pooled, pipelined TCP.
 *
 * One `struct upstream` per worker thread, on that worker's libuv loop. For
 * each server it keeps a small pool of persistent TCP connections and sends
 * many queries on each (RFC 7766 pipelining), with its own 16-bit ID per query
 * per connection. A reply is accepted only on the connection the query went
 * out on, and only when its ID and its question (name compared without case,
 * type, class) match; anything else is counted and dropped. Over TCP a frame
 * that does not walk as a DNS message, is no response or answers no query
 * sent on the connection closes it (the stream is out of step), and a reply
 * frame must complete within max(200 ms, timeout/4); the queries in flight
 * are then resent once on a new connection. TC=1 over TCP and an extended
 * rcode (BADVERS) are the server's failure; FORMERR/NOTIMP without OPT to a
 * query with our OPT is asked again without it, and that server is asked
 * without EDNS for 15 minutes (RFC 6891 6.2.2).
 *
 * Each query tries the servers of its group in order: a server gets one
 * attempt of cfg->timeout_ms; on timeout or a failed connection the query
 * moves to the next server; when every server has failed the callback gets an
 * error. A query written on a reused connection that the server had already
 * closed is resent once on a fresh connection to the same server without
 * counting as an attempt. Failed connects put the server in backoff
 * (100 ms doubling to 5 s); a server in backoff is skipped while another is
 * usable. So is a server set aside for timeouts: one whose attempts timed
 * out three times in a row with no timely reply from it in between (it
 * accepts connections and does not answer, or answers later than the
 * timeout); its queries in flight then move on to their next server at
 * once. When its period ends (100 ms, doubling on each failed probe to
 * 5 s), the next query that skips it sends a copy of itself to it as a
 * probe (no client waits on it; one at a time); a timely reply to any
 * attempt puts it back in use. When every server of a group is in backoff
 * or set aside, queries still go to them, the one due first first. This
 * state is per worker; nodedns_upstream_timeout_asides_total and
 * nodedns_upstream_set_aside count it per server.
 *
 * With cfg->proto == UPSTREAM_PROTO_UDP a query goes out over UDP (one socket per
 * server per worker, random IDs, replies only from the server's address) and is
 * retried over the TCP pool when the reply has TC=1.
 *
 * Everything here runs on the owning worker's loop thread only. Implemented
 * by src/io/upstream*.c (their shared types: upstream_internal.h).
 */
#ifndef NODEDNS_UPSTREAM_H
#define NODEDNS_UPSTREAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "nodedns/util/metrics.h"

/* Defaults (--upstream-timeout, --max-inflight; the last two have no option). */
#define UPSTREAM_TIMEOUT_MS_DEFAULT 2000
#define UPSTREAM_MAX_INFLIGHT_DEFAULT 10000
#define UPSTREAM_CONNS_PER_SERVER_DEFAULT 2
#define UPSTREAM_MAX_INFLIGHT_CONN_DEFAULT 256

/** Counters for one server, shared by all workers (relaxed atomics). */
struct upstream_stats {
	_Atomic uint64_t queries;       /* attempts sent to this server */
	_Atomic uint64_t replies;       /* matching replies received */
	_Atomic uint64_t timeouts;      /* attempts that timed out */
	_Atomic uint64_t conn_failures; /* connects refused/failed, resets with queries on them */
	_Atomic uint64_t bad_replies;   /* unmatched ID/question, malformed frames */
	_Atomic uint64_t tcp_connects;  /* TCP connections established */
	_Atomic uint64_t tc_retries;    /* UDP replies with TC=1 retried over TCP */
	_Atomic uint64_t rcode_failovers; /* SERVFAIL/REFUSED replies passed over for the next server */
	_Atomic uint64_t timeout_asides;  /* times a worker set it aside after timeouts in a row */
	_Atomic int64_t open_conns;     /* gauge */
	_Atomic int64_t aside_workers;  /* gauge: workers that have it set aside for timeouts */
	struct histogram latency;       /* per attempt, send to matching reply */
};

/** One upstream server; owned by main, read-only but for stats. */
struct upstream_server {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char name[64]; /* "10.0.0.10:53", the metrics label */
	struct upstream_stats stats;
};
/** Render the per-server families, one sample per server of @p servers[0..n)
 * (borrowed) labelled upstream="name" (src/io/upstream_metrics.c). */
void upstream_metrics_render(struct mbuf *b, const struct upstream_server *servers, size_t n);

/** An ordered list of servers to try, e.g. the default upstreams or one stub
 * domain's servers. Owned by main; borrowed for the life of the upstream. */
struct upstream_group {
	struct upstream_server **servers;
	size_t nservers;
};

/** How queries go out. The configuration has its own enum config_proto;
 * main maps it to this one. */
enum upstream_proto {
	UPSTREAM_PROTO_TCP = 0, /* the TCP pool only */
	UPSTREAM_PROTO_UDP = 1, /* UDP first, the TCP pool when the reply has TC=1 */
};

struct upstream_config {
	enum upstream_proto proto;
	uint32_t timeout_ms;         /* per attempt */
	unsigned conns_per_server;   /* TCP pool size per server, default 2 */
	unsigned max_inflight_conn;  /* queries in flight per TCP connection, default 256 */
	unsigned max_inflight;       /* queries in flight in this upstream, default 10000 */
};

/** Per-worker totals not tied to one server. */
struct upstream_worker_stats {
	_Atomic uint64_t dropped_inflight; /* upstream_query() refused: max_inflight */
	_Atomic int64_t inflight;          /* gauge */
};
/** Render the per-worker upstream counters summed over @p n workers (borrowed);
 * ..._dropped() only the samples of METRICS_DROPPED_NAME (src/io/upstream_metrics.c). */
void upstream_worker_metrics_render(struct mbuf *b,
				    const struct upstream_worker_stats *const *per_worker, size_t n);
void upstream_worker_metrics_render_dropped(struct mbuf *b,
					    const struct upstream_worker_stats *const *per_worker,
					    size_t n);

struct upstream;

/**
 * Called exactly once per upstream_query() that returned 0, never from inside
 * upstream_query(), never after upstream_close() has returned.
 * @param status 0: @p reply (borrowed for the call) is a complete DNS message
 *        whose ID was restored to the ID of the query given to upstream_query()
 *        and whose question matches it; @p server is the one that answered.
 *        A SERVFAIL or REFUSED reply is passed on only when no server of the
 *        group is left to try (each other one failed); the last one received
 *        is then passed on, even when a later attempt timed out.
 *        <0: -ETIMEDOUT (every attempt timed out), -ECONNREFUSED (no server
 *        could be reached), -EPROTO (only bad replies), -ECANCELED (upstream
 *        closing); reply is NULL.
 */
typedef void (*upstream_done_cb)(void *arg, int status, const uint8_t *reply, size_t len,
				 const struct upstream_server *server);

/** Create the per-worker forwarder on @p loop. @return 0, -ENOMEM or a UV error. */
int upstream_new(uv_loop_t *loop, const struct upstream_config *cfg, struct upstream **out);

/**
 * Forward @p query (a complete DNS query in wire form, borrowed for the call;
 * one question; its ID is what @p cb will see in the reply) to @p group.
 * @return 0 (cb will be called), -ENOBUFS when max_inflight is reached,
 * -EINVAL for an empty group or a message without a question.
 */
int upstream_query(struct upstream *u, const struct upstream_group *group,
		   const uint8_t *query, size_t len, upstream_done_cb cb, void *arg);

/** Per-worker counters; borrowed for the life of @p u. */
const struct upstream_worker_stats *upstream_worker_stats(const struct upstream *u);

/**
 * Fail every pending query with -ECANCELED (their callbacks run inside this
 * call), close every handle, and free @p u once libuv has closed them; the
 * loop must keep running until then. NULL is fine.
 */
void upstream_close(struct upstream *u);

#endif
