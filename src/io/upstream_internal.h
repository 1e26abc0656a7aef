/* src/io/upstream_internal.h - what the files of the upstream forwarder share (not a public header).
 *
 * The forwarder (include/nodedns/io/upstream.h) is three files around one
 * struct upstream per worker:
 *  - upstream.c      queries (struct up_req) from upstream_query() to their
 *                    callback, ID maps, attempt timers, the servers of a group
 *                    (struct up_srv), backoff and the choice of the next one;
 *  - upstream_tcp.c  the per-server TCP pool (struct up_conn): connect,
 *                    pipelined writes, framed reads, resend and failure;
 *  - upstream_udp.c  the per-server UDP socket (struct up_udp).
 * struct upstream owns every up_srv, up_conn, up_udp, up_req and request
 * struct in it (freed in libuv close callbacks); the upstream_server and
 * upstream_group structs are borrowed from main. Everything runs on the
 * owning worker's loop thread.
 */
#ifndef NODEDNS_IO_UPSTREAM_INTERNAL_H
#define NODEDNS_IO_UPSTREAM_INTERNAL_H

#include "nodedns/io/upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <netinet/in.h>

#include "nodedns/dns/dnsmsg.h"
#include "nodedns/util/log.h"
#include "nodedns/util/netaddr.h"
#include "nodedns/util/wire.h"

#define UP_DEFAULT_TIMEOUT_MS 2000u
#define UP_DEFAULT_CONNS 2u
#define UP_MAX_CONNS 64u
#define UP_DEFAULT_INFLIGHT_CONN 256u
#define UP_MAX_INFLIGHT_CONN 16384u
#define UP_DEFAULT_INFLIGHT 10000u
#define UP_MAX_INFLIGHT 1000000u
#define UP_IDLE_MS 30000u
#define UP_BACKOFF_MIN_MS 100u
#define UP_BACKOFF_MAX_MS 5000u
#define UP_LOG_INTERVAL_MS 10000u
#define UP_KEEPALIVE_S 60u
#define UP_RBUF_INIT_BYTES 4096u
#define UP_FRAME_MAX_BYTES 65535u
#define UP_UDP_BUF_BYTES 65536u
#define UP_UDP_MAX_INFLIGHT 32768u /* per socket: half the ID space */
#define UP_MAX_GROUP 64u
#define UP_RNG_WORDS 256u
#define UP_FRAME_MIN_MS 200u     /* a started reply frame completes within max(this, timeout/4) */
#define UP_RETIRED_IDS 32u       /* IDs of a connection whose queries left it, for late replies */
#define UP_NO_EDNS_MS 900000u    /* how long a server that failed EDNS is asked without it */
#define UP_ASIDE_TIMEOUTS 3u     /* attempts timed out in a row, no timely reply: set aside */
#define UP_ASIDE_MIN_MS 100u     /* first set-aside period, doubled on each failed probe */
#define UP_ASIDE_MAX_MS 5000u

#define DNS_FLAG_QR 0x80u /* in byte 2 */
#define DNS_FLAG_TC 0x02u /* in byte 2 */

#define STAT_INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)

/* ---- Intrusive doubly linked lists ---- */

struct dlist {
	struct dlist *prev, *next;
};

#define dl_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void dl_init(struct dlist *l)
{
	l->prev = l->next = l;
}

static inline bool dl_empty(const struct dlist *l)
{
	return l->next == l;
}

static inline void dl_append(struct dlist *head, struct dlist *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

/* Unlink @p n; safe on a node that is linked nowhere (self-linked). */
static inline void dl_remove(struct dlist *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	dl_init(n);
}

/* Move every node of @p src to the empty list @p dst. */
static inline void dl_move_all(struct dlist *dst, struct dlist *src)
{
	dl_init(dst);
	if (dl_empty(src))
		return;
	dst->next = src->next;
	dst->prev = src->prev;
	dst->next->prev = dst;
	dst->prev->next = dst;
	dl_init(src);
}

/* ---- Types ---- */

struct up_req;

/* 16-bit DNS ID -> query, open addressing with linear probing, load <= 1/2. */
struct idslot {
	struct up_req *r; /* NULL: empty */
	uint16_t id;
};

struct idmap {
	struct idslot *slots;
	uint32_t cap; /* 0 or a power of two */
	uint32_t count;
};

enum { R_IDLE, R_TCP, R_UDP, R_BACKLOG, R_DONE };
enum { C_CONNECTING, C_OPEN, C_CLOSING };

struct up_srv;

struct up_conn {
	uv_tcp_t tcp;
	uv_timer_t idle;
	uv_timer_t stall;   /* a started reply frame must complete in time */
	uv_connect_t creq;
	struct upstream *u;
	struct up_srv *srv;
	struct dlist link;  /* srv->conns, while not closing */
	struct dlist blink; /* u->broken, while a deferred failure is pending */
	struct dlist reqs;  /* bound queries, in write order */
	struct idmap ids;
	unsigned ninflight;
	unsigned nhandles; /* handles not yet closed */
	int state;
	int err;            /* deferred failure (write error), 0 if none */
	bool solo;          /* the server's isolation connection: one suspect at a time */
	uint64_t nreplies;  /* matched replies received */
	uint64_t silent_since_ms; /* oldest write not followed by a receive, 0 if none */
	uint64_t frame_since_ms;  /* first byte of the partial frame in rbuf, 0 if none */
	uint16_t retired[UP_RETIRED_IDS]; /* IDs that left without a reply (late replies) */
	unsigned nretired;
	uint8_t *rbuf;
	size_t rlen, rcap;
};

struct up_udp {
	uv_udp_t h;
	struct up_srv *srv;
	struct dlist reqs;
	struct idmap ids;
	unsigned ninflight;
};

struct up_srv {
	struct upstream_server *cfg; /* the key; borrowed */
	struct upstream *u;
	struct dlist conns;
	struct dlist backlog;
	struct dlist suspects; /* queries waiting for the isolation connection */
	struct up_conn *solo;  /* the isolation connection, or NULL */
	unsigned nconns;      /* not closing */
	unsigned nconnecting;
	unsigned nopen;
	uint64_t retry_at_ms; /* in backoff until then */
	uint32_t backoff_ms;
	uint64_t no_edns_until_ms; /* FORMERR/NOTIMP to EDNS: asked without it until then */
	struct up_udp *udp;
	/* Set aside for timeouts (upstream.c): skipped like a server in backoff. */
	unsigned timeouts_in_row;  /* attempts timed out since its last timely reply */
	uint32_t aside_ms;         /* current set-aside period; 0: in use */
	uint64_t aside_until_ms;   /* no probe before then */
	struct upstream_server *self[1];  /* a probe's group: this server alone */
	struct upstream_group self_group;
	struct log_limit ll_conn, ll_timeout, ll_aside, ll_back;
};

struct up_req {
	struct dlist all;   /* u->reqs until the callback */
	struct dlist link;  /* the carrier's list, see R_* */
	struct dlist tlink; /* u->tq while an attempt runs */
	struct upstream *u;
	const struct upstream_group *group;
	upstream_done_cb cb;
	void *arg;
	struct up_srv *srv;   /* server of the current attempt */
	struct up_conn *conn; /* when R_TCP */
	uint64_t deadline_ms;
	uint64_t sent_ns;
	uint64_t tried; /* bit i: group->servers[i] had its attempt */
	uint64_t rx_mark; /* conn->nreplies when bound */
	int status;       /* when R_DONE */
	uint16_t orig_id;
	uint16_t wire_id;
	uint8_t state;
	bool reused;      /* bound to a connection that was already open */
	bool resent;      /* the one free resend was used */
	bool isolated;    /* the retry alone on the isolation connection was used */
	bool use_tcp;     /* TC=1 seen: TCP from now on */
	bool bad_attempt; /* this attempt saw a reply with its ID but a wrong question */
	bool f_timeout, f_proto;
	bool edns_dropped; /* resent without EDNS after FORMERR/NOTIMP */
	uint16_t full_len; /* len with our OPT record, 0 when the query has none */
	uint8_t *last_reply; /* owned: the last SERVFAIL/REFUSED passed over, or NULL */
	size_t last_len;
	const struct upstream_server *last_srv; /* who sent last_reply (borrowed) */
	size_t qend; /* end of the question section */
	size_t len;
	uint8_t hdr[4]; /* TCP length prefix and wire ID, sent before q + 2 */
	uint8_t q[];
};

struct up_wreq {
	uv_write_t req;
	uint8_t data[];
};

struct up_sreq {
	uv_udp_send_t req;
	uint8_t data[];
};

struct upstream {
	uv_loop_t *loop;
	struct upstream_config cfg;
	struct upstream_worker_stats wstats;
	uv_timer_t timer; /* head of tq */
	uv_idle_t defer;  /* drains done and broken */
	struct dlist reqs, tq, done, broken;
	struct up_srv **srvs;
	size_t nsrvs, srvs_cap;
	unsigned nhandles;
	unsigned ninflight;
	bool closing;
	uint8_t *udp_buf;
	uint64_t rng_state;
	unsigned rng_pos;
	uint16_t rng_buf[UP_RNG_WORDS];
};

/* upstream.c: queries, ID maps, attempt timers, servers and their selection, the public API */
/* The loop's time in ms. */
uint64_t upstream_now_ms(const struct upstream *u);

/* Whether to log now; *suppressed: lines held back since the last one. */
bool upstream_log_ok(struct log_limit *l, uint64_t now, uint64_t *suppressed);

/* Whether the reply @p p (@p n bytes, with @p r's ID) carries exactly the
 * question of @p r; if not, count it as a bad reply of @p s and mark the
 * attempt (a spoofing try, or a broken server). */
bool upstream_reply_question_ok(struct up_srv *s, struct up_req *r, const uint8_t *p, size_t n);


/* Send @p r with its OPT record (@p on) or without; a query without one is
 * left alone. */
void upstream_req_set_edns(struct up_req *r, bool on);

/* The query with @p id in @p m, or NULL. */
struct up_req *upstream_idmap_get(const struct idmap *m, uint16_t id);

/* @return 0 or -ENOMEM. The caller keeps count below 65536 / 2. */
int upstream_idmap_put(struct idmap *m, uint16_t id, struct up_req *r);

/* A random ID not in use in @p m (count < 32768, so a few draws suffice). */
uint16_t upstream_idmap_fresh_id(struct upstream *u, const struct idmap *m);

/* One of @p u's handles has closed; frees @p u after the last one. */
void upstream_handle_closed(struct upstream *u);

/* Run upstream_on_defer() on the next loop turn. */
void upstream_defer_start(struct upstream *u);

/* Start a new attempt deadline. Deadlines have one length, so appending keeps
 * tq sorted; the timer is re-armed only when tq was empty (it otherwise fires
 * for an earlier head and re-arms itself). */
void upstream_tq_start(struct up_req *r);

/* Detach @p r from its carrier (connection, UDP socket, backlog, done queue). */
void upstream_req_unbind(struct up_req *r);

/* A matching reply for @p r in @p p (writable, borrowed): call back now. */
void upstream_req_reply(struct up_req *r, uint8_t *p, size_t n);

/* A connect to @p s failed at @p now: double its backoff. */
void upstream_srv_backoff(struct up_srv *s, uint64_t now);

/* @p s answered: no backoff. */
void upstream_srv_backoff_reset(struct up_srv *s);

/* @p s answered an attempt in time: it is no longer set aside for timeouts. */
void upstream_srv_answered(struct up_srv *s);

/* Count, log (rate-limited) and back off a failed connect to @p s. */
void upstream_srv_connect_failed(struct up_srv *s, int err, const char *what);

/* Move every backlogged query of @p s on to its next server. */
void upstream_srv_fail_backlog(struct up_srv *s);

/* Start the next attempt of @p r, or fail it (deferred) when none is left. */
void upstream_req_next_server(struct up_req *r);
/* Whether @p r has a server of its group left to try. */
bool upstream_req_has_next_server(struct up_req *r);

/* Deferred work: connections that failed inside a write, then the failures
 * queued by req_fail_later (only those present on entry, so a callback that
 * retries cannot keep the loop here). */
void upstream_on_defer(uv_idle_t *h);

/* upstream_tcp.c: the TCP pool */
/* Close @p c's handles; its queries must be moved off by the caller. */
void upstream_conn_shutdown(struct up_conn *c);

/* Send @p r over @p s's TCP pool (or its backlog). @return 0, or an error
 * when the server has no connection and none could be opened. */
int upstream_tcp_assign(struct up_req *r, struct up_srv *s);

/* Give backlogged queries of @p s the room that has freed up. */
void upstream_srv_pump(struct up_srv *s);

/* @p c is dead (connect failed, reset, EOF, broken frame, wedged): close it
 * and move its queries on, see the resend rule at the top. */
void upstream_conn_fail(struct up_conn *c, int err);

/* A connection without queries for UP_IDLE_MS: close it. */
void upstream_on_conn_idle(uv_timer_t *t);

/* @p r's query left @p c without a reply: a late reply with its ID is then
 * dropped instead of taken for a broken stream. */
void upstream_conn_retire_id(struct up_conn *c, uint16_t id);

/* upstream_udp.c: UDP */
/* Close callback of a server's UDP socket. */
void upstream_on_udp_close(uv_handle_t *h);

/* Send @p r to @p s over UDP. @return 0, or an error for this attempt. */
int upstream_udp_send(struct up_req *r, struct up_srv *s);

#endif
