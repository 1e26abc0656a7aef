/* src/io/upstream.c - forwarding to upstream servers over pooled, pipelined TCP (or UDP). */
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

/*
 * Shape of the module.
 *
 * A query (struct up_req) lives from upstream_query() to its callback. It
 * makes attempts, one per server of its group, each bounded by timeout_ms.
 * During an attempt it is bound to exactly one carrier: a TCP connection
 * (R_TCP), the server's UDP socket (R_UDP) or the server's backlog (R_BACKLOG,
 * waiting for room on a connection). A finished failure waits on u->done
 * (R_DONE) for the deferred-callback handle.
 *
 * Attempt deadlines all have the same length, so u->tq, ordered by insertion,
 * is ordered by deadline, and one uv_timer for the head serves every query.
 *
 * User callbacks run from exactly three places: the reply path (TCP read, UDP
 * recv), the deferred queue (on_defer) and upstream_close(). Everything else
 * only moves queries between carriers and never calls out, so internal state
 * is never seen half-updated by a reentrant upstream_query()/upstream_close().
 * Memory of handles is released only in close callbacks, so after a user
 * callback the reply path checks u->closing / the connection state and stops.
 *
 * Rules chosen here (the brief left them open):
 * - Pool full (every connection at max_inflight_conn and conns_per_server
 *   connections open): the query waits in the server's backlog, still under
 *   its attempt timer; it is drained as slots free. The backlog needs no bound
 *   of its own: it is bounded by max_inflight.
 * - Backoff: servers of the group not yet tried are taken in order, skipping a
 *   server in backoff (a failed connect less than its backoff ago, and no open
 *   connection). When only servers in backoff remain, the one whose backoff
 *   ends first is tried anyway, with at most one connect in flight to it. So a
 *   server that refuses fails its queries at once (SERVFAIL quickly) and one
 *   that comes back is used by the next query (recovery without waiting for
 *   the backoff); backoff only orders servers and limits connects.
 * - Final status when every server failed: -ETIMEDOUT if any attempt timed
 *   out without a bad reply, else -EPROTO if an attempt saw only bad replies
 *   (wrong question for its ID, broken framing), else -ECONNREFUSED.
 * - Resend on the same server (no new attempt, same deadline) when an
 *   established connection dies under a query: always when that connection
 *   answered some query after this one was bound to it (the server closes
 *   after a few answers, which RFC 7766 allows), and once per query when the
 *   query went out on a connection that was already open (a reused
 *   connection the server had closed). The resend goes to a fresh
 *   connection (one still connecting, or a new one; an idle open one is
 *   closed to make room, as the server has likely closed it too). Otherwise
 *   the query moves to the next server. The attempt deadline bounds resends.
 * - A connect that takes longer than timeout_ms counts as a failed connect.
 * - A connection is wedged when a query on it times out and nothing has been
 *   received on it for 2 x timeout_ms since a query was written; it is closed
 *   and the next query opens a fresh one.
 * - The UDP socket of a server lives as long as the upstream. ICMP port
 *   unreachable (ECONNREFUSED on the connected socket) fails over every query
 *   on it and puts the server in backoff.
 * - Only the first 64 servers of a group are used.
 * - upstream_query() during upstream_close() (from a -ECANCELED callback)
 *   returns -ECANCELED.
 */


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

#define DNS_FLAG_QR 0x80u /* in byte 2 */
#define DNS_FLAG_TC 0x02u /* in byte 2 */

#define STAT_INC(x) atomic_fetch_add_explicit(&(x), 1, memory_order_relaxed)

/* ---- Intrusive doubly linked lists ---- */

struct dlist {
	struct dlist *prev, *next;
};

#define dl_entry(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static void dl_init(struct dlist *l)
{
	l->prev = l->next = l;
}

static bool dl_empty(const struct dlist *l)
{
	return l->next == l;
}

static void dl_append(struct dlist *head, struct dlist *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}

/* Unlink @p n; safe on a node that is linked nowhere (self-linked). */
static void dl_remove(struct dlist *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	dl_init(n);
}

/* Move every node of @p src to the empty list @p dst. */
static void dl_move_all(struct dlist *dst, struct dlist *src)
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
	uint64_t nreplies;  /* matched replies received */
	uint64_t silent_since_ms; /* oldest write not followed by a receive, 0 if none */
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
	unsigned nconns;      /* not closing */
	unsigned nconnecting;
	unsigned nopen;
	uint64_t retry_at_ms; /* in backoff until then */
	uint32_t backoff_ms;
	struct up_udp *udp;
	struct log_limit ll_conn, ll_timeout;
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
	bool use_tcp;     /* TC=1 seen: TCP from now on */
	bool bad_attempt; /* this attempt saw a reply with its ID but a wrong question */
	bool f_timeout, f_proto;
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

static void req_next_server(struct up_req *r);
static int tcp_assign(struct up_req *r, struct up_srv *s);
static void conn_fail(struct up_conn *c, int err);
static void srv_pump(struct up_srv *s);

/* ---- Small helpers ---- */

static uint64_t now_ms(const struct upstream *u)
{
	return uv_now(u->loop);
}

static bool log_ok(struct log_limit *l, uint64_t now, uint64_t *suppressed)
{
	uint64_t before = l->suppressed;
	if (!log_ratelimited(l, now, UP_LOG_INTERVAL_MS))
		return false;
	*suppressed = before;
	l->suppressed = 0;
	return true;
}

static void set_inflight(struct upstream *u)
{
	atomic_store_explicit(&u->wstats.inflight, (int64_t)u->ninflight, memory_order_relaxed);
}

/* splitmix64: only a fallback when getrandom() cannot fill the ID buffer. */
static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Unpredictable 16-bit values, refilled from getrandom() UP_RNG_WORDS at a time. */
static uint16_t rng16(struct upstream *u)
{
	if (u->rng_pos >= UP_RNG_WORDS) {
		ssize_t n = getrandom(u->rng_buf, sizeof(u->rng_buf), GRND_NONBLOCK);
		if (n != (ssize_t)sizeof(u->rng_buf)) {
			for (unsigned i = 0; i < UP_RNG_WORDS; i++)
				u->rng_buf[i] = (uint16_t)(splitmix(&u->rng_state) >> 48);
		}
		u->rng_pos = 0;
	}
	return u->rng_buf[u->rng_pos++];
}

/* Whether the reply @p p of @p n bytes carries exactly the question of @p r.
 * The query's name was validated, so walking its labels bounds the walk. */
static bool question_match(const struct up_req *r, const uint8_t *p, size_t n)
{
	if (n < r->qend || wire_get16(p + 4) != 1)
		return false;
	const uint8_t *a = r->q + DNS_HEADER_BYTES, *b = p + DNS_HEADER_BYTES;
	size_t i = 0;
	for (;;) {
		uint8_t l = a[i];
		if (b[i] != l) /* also rejects a pointer: the query's lengths are <= 63 */
			return false;
		if (l == 0)
			break;
		for (size_t k = 1; k <= l; k++) {
			if (wire_lower(a[i + k]) != wire_lower(b[i + k]))
				return false;
		}
		i += 1u + l;
	}
	i++;
	return memcmp(a + i, b + i, 4) == 0; /* type, class */
}

/* ---- ID maps ---- */

static struct up_req *idmap_get(const struct idmap *m, uint16_t id)
{
	if (m->cap == 0)
		return NULL;
	uint32_t mask = m->cap - 1, i = id & mask;
	while (m->slots[i].r) {
		if (m->slots[i].id == id)
			return m->slots[i].r;
		i = (i + 1) & mask;
	}
	return NULL;
}

static void idmap_insert(struct idslot *slots, uint32_t cap, uint16_t id, struct up_req *r)
{
	uint32_t mask = cap - 1, i = id & mask;
	while (slots[i].r)
		i = (i + 1) & mask;
	slots[i].r = r;
	slots[i].id = id;
}

/* @return 0 or -ENOMEM. The caller keeps count below 65536 / 2. */
static int idmap_put(struct idmap *m, uint16_t id, struct up_req *r)
{
	if ((m->count + 1) * 2 > m->cap) {
		uint32_t ncap = m->cap ? m->cap * 2 : 16;
		struct idslot *ns = calloc(ncap, sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		for (uint32_t i = 0; i < m->cap; i++) {
			if (m->slots[i].r)
				idmap_insert(ns, ncap, m->slots[i].id, m->slots[i].r);
		}
		free(m->slots);
		m->slots = ns;
		m->cap = ncap;
	}
	idmap_insert(m->slots, m->cap, id, r);
	m->count++;
	return 0;
}

/* Whether @p k lies in the cyclic interval (i, j]. */
static bool cyc_in(uint32_t i, uint32_t k, uint32_t j)
{
	return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

static void idmap_del(struct idmap *m, uint16_t id)
{
	if (m->cap == 0)
		return;
	uint32_t mask = m->cap - 1, i = id & mask;
	while (m->slots[i].r && m->slots[i].id != id)
		i = (i + 1) & mask;
	if (!m->slots[i].r)
		return;
	/* Backward-shift deletion keeps every probe chain unbroken. */
	uint32_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!m->slots[j].r)
			break;
		uint32_t home = m->slots[j].id & mask;
		if (!cyc_in(i, home, j)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].r = NULL;
	m->count--;
}

/* A random ID not in use in @p m (count < 32768, so a few draws suffice). */
static uint16_t idmap_fresh_id(struct upstream *u, const struct idmap *m)
{
	for (int i = 0; i < 16; i++) {
		uint16_t id = rng16(u);
		if (!idmap_get(m, id))
			return id;
	}
	uint16_t id = rng16(u);
	while (idmap_get(m, id))
		id++;
	return id;
}

/* ---- Handle bookkeeping ---- */

static void up_free(struct upstream *u)
{
	for (size_t i = 0; i < u->nsrvs; i++)
		free(u->srvs[i]);
	free(u->srvs);
	free(u->udp_buf);
	free(u);
}

static void up_handle_closed(struct upstream *u)
{
	if (--u->nhandles == 0 && u->closing)
		up_free(u);
}

static void on_up_handle_close(uv_handle_t *h)
{
	up_handle_closed(h->data);
}

static void on_defer(uv_idle_t *h);

static void defer_start(struct upstream *u)
{
	if (!u->closing && !uv_is_active((uv_handle_t *)&u->defer))
		uv_idle_start(&u->defer, on_defer);
}

/* ---- Attempt timers ---- */

static void on_tq_timer(uv_timer_t *t);

static void tq_arm(struct upstream *u)
{
	if (u->closing)
		return;
	if (dl_empty(&u->tq)) {
		uv_timer_stop(&u->timer);
		return;
	}
	const struct up_req *r = dl_entry(u->tq.next, struct up_req, tlink);
	uint64_t now = now_ms(u);
	uv_timer_start(&u->timer, on_tq_timer, r->deadline_ms > now ? r->deadline_ms - now : 0, 0);
}

/* Start a new attempt deadline. Deadlines have one length, so appending keeps
 * tq sorted; the timer is re-armed only when tq was empty (it otherwise fires
 * for an earlier head and re-arms itself). */
static void tq_start(struct up_req *r)
{
	struct upstream *u = r->u;
	dl_remove(&r->tlink);
	r->deadline_ms = now_ms(u) + u->cfg.timeout_ms;
	bool was_empty = dl_empty(&u->tq);
	dl_append(&u->tq, &r->tlink);
	if (was_empty)
		tq_arm(u);
}

static void tq_remove(struct up_req *r)
{
	dl_remove(&r->tlink);
	if (dl_empty(&r->u->tq) && !r->u->closing)
		uv_timer_stop(&r->u->timer);
}

/* ---- Queries: binding and completion ---- */

static void on_conn_idle(uv_timer_t *t);

/* Detach @p r from its carrier (connection, UDP socket, backlog, done queue). */
static void req_unbind(struct up_req *r)
{
	switch (r->state) {
	case R_TCP: {
		struct up_conn *c = r->conn;
		idmap_del(&c->ids, r->wire_id);
		dl_remove(&r->link);
		if (--c->ninflight == 0 && c->state == C_OPEN && !r->u->closing)
			uv_timer_start(&c->idle, on_conn_idle, UP_IDLE_MS, 0);
		r->conn = NULL;
		break;
	}
	case R_UDP: {
		struct up_udp *ud = r->srv->udp;
		idmap_del(&ud->ids, r->wire_id);
		dl_remove(&r->link);
		ud->ninflight--;
		break;
	}
	case R_BACKLOG:
	case R_DONE:
		dl_remove(&r->link);
		break;
	default:
		break;
	}
	r->state = R_IDLE;
}

/* Final failure: the callback runs later from on_defer, never from here. */
static void req_fail_later(struct up_req *r, int status)
{
	struct upstream *u = r->u;
	tq_remove(r);
	req_unbind(r);
	r->status = status;
	r->state = R_DONE;
	dl_append(&u->done, &r->link);
	defer_start(u);
}

/* Remove @p r from every list and the in-flight count, before its callback. */
static void req_release(struct up_req *r)
{
	struct upstream *u = r->u;
	tq_remove(r);
	req_unbind(r);
	dl_remove(&r->all);
	u->ninflight--;
	set_inflight(u);
}

/* A matching reply for @p r in @p p (writable, borrowed): call back now. */
static void req_reply(struct up_req *r, uint8_t *p, size_t n)
{
	struct up_srv *s = r->srv;
	uint64_t us = (uv_hrtime() - r->sent_ns) / 1000u;
	histogram_observe(&s->cfg->stats.latency, us);
	STAT_INC(s->cfg->stats.replies);
	wire_put16(p, r->orig_id);
	bool was_tcp = r->state == R_TCP;
	upstream_done_cb cb = r->cb;
	void *arg = r->arg;
	req_release(r);
	free(r);
	if (was_tcp)
		srv_pump(s);
	cb(arg, 0, p, n, s->cfg);
}

static int final_status(const struct up_req *r)
{
	if (r->f_timeout)
		return -ETIMEDOUT;
	if (r->f_proto)
		return -EPROTO;
	return -ECONNREFUSED;
}

/* ---- Servers ---- */

static struct up_srv *srv_find(const struct upstream *u, const struct upstream_server *cfg)
{
	for (size_t i = 0; i < u->nsrvs; i++) {
		if (u->srvs[i]->cfg == cfg)
			return u->srvs[i];
	}
	return NULL;
}

static struct up_srv *srv_get(struct upstream *u, struct upstream_server *cfg)
{
	if (!cfg)
		return NULL;
	struct up_srv *s = srv_find(u, cfg);
	if (s)
		return s;
	if (u->nsrvs == u->srvs_cap) {
		size_t ncap = u->srvs_cap ? u->srvs_cap * 2 : 4;
		struct up_srv **n = realloc(u->srvs, ncap * sizeof(*n));
		if (!n)
			return NULL;
		u->srvs = n;
		u->srvs_cap = ncap;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = cfg;
	s->u = u;
	dl_init(&s->conns);
	dl_init(&s->backlog);
	u->srvs[u->nsrvs++] = s;
	return s;
}

/* Whether @p s should be skipped while a server out of backoff remains. */
static bool srv_in_backoff(const struct up_srv *s, bool tcp, uint64_t now)
{
	if (!s || s->retry_at_ms <= now)
		return false;
	return !(tcp && s->nopen > 0);
}

static void srv_backoff(struct up_srv *s, uint64_t now)
{
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : UP_BACKOFF_MIN_MS;
	if (s->backoff_ms > UP_BACKOFF_MAX_MS)
		s->backoff_ms = UP_BACKOFF_MAX_MS;
	s->retry_at_ms = now + s->backoff_ms;
}

static void srv_backoff_reset(struct up_srv *s)
{
	s->backoff_ms = 0;
	s->retry_at_ms = 0;
}

static void srv_connect_failed(struct up_srv *s, int err, const char *what)
{
	uint64_t now = now_ms(s->u), sup;
	STAT_INC(s->cfg->stats.conn_failures);
	srv_backoff(s, now);
	if (log_ok(&s->ll_conn, now, &sup))
		log_warn("upstream", "%s: %s: %s (backoff %" PRIu32 " ms, %" PRIu64 " similar suppressed)",
			 s->cfg->name, what, uv_strerror(err), s->backoff_ms, sup);
}

/* Move every backlogged query of @p s on to its next server. */
static void srv_fail_backlog(struct up_srv *s)
{
	while (!dl_empty(&s->backlog)) {
		struct up_req *r = dl_entry(s->backlog.next, struct up_req, link);
		req_unbind(r);
		req_next_server(r);
	}
}

/* The group index for the next attempt of @p r, or -1 when all were tried. */
static int pick_server(struct up_req *r, uint64_t now)
{
	const struct upstream_group *g = r->group;
	size_t n = g->nservers < UP_MAX_GROUP ? g->nservers : UP_MAX_GROUP;
	bool tcp = r->u->cfg.proto != UPSTREAM_PROTO_UDP || r->use_tcp;
	int cand = -1;
	uint64_t cand_at = 0;
	for (size_t i = 0; i < n; i++) {
		if (r->tried & (1ull << i))
			continue;
		const struct up_srv *s = srv_find(r->u, g->servers[i]);
		if (!srv_in_backoff(s, tcp, now))
			return (int)i;
		if (cand < 0 || s->retry_at_ms < cand_at) {
			cand = (int)i;
			cand_at = s->retry_at_ms;
		}
	}
	return cand;
}

static int udp_send(struct up_req *r, struct up_srv *s);

/* Start the next attempt of @p r, or fail it (deferred) when none is left. */
static void req_next_server(struct up_req *r)
{
	struct upstream *u = r->u;
	for (;;) {
		int i = pick_server(r, now_ms(u));
		if (i < 0) {
			req_fail_later(r, final_status(r));
			return;
		}
		r->tried |= 1ull << i;
		struct up_srv *s = srv_get(u, r->group->servers[i]);
		if (!s)
			continue;
		r->srv = s;
		r->bad_attempt = false;
		tq_start(r);
		STAT_INC(s->cfg->stats.queries);
		int rc;
		if (u->cfg.proto == UPSTREAM_PROTO_UDP && !r->use_tcp)
			rc = udp_send(r, s);
		else
			rc = tcp_assign(r, s);
		if (rc == 0)
			return;
	}
}

/* ---- TCP connections ---- */

static void on_conn_close(uv_handle_t *h)
{
	struct up_conn *c = h->data;
	struct upstream *u = c->u;
	if (--c->nhandles == 0) {
		free(c->rbuf);
		free(c->ids.slots);
		free(c);
	}
	up_handle_closed(u);
}

/* Close @p c's handles; its queries must be moved off by the caller. */
static void conn_shutdown(struct up_conn *c)
{
	struct up_srv *s = c->srv;
	if (c->state == C_CLOSING)
		return;
	if (c->state == C_OPEN) {
		s->nopen--;
		atomic_fetch_sub_explicit(&s->cfg->stats.open_conns, 1, memory_order_relaxed);
	} else {
		s->nconnecting--;
	}
	s->nconns--;
	dl_remove(&c->link);
	dl_remove(&c->blink);
	c->state = C_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, on_conn_close);
	uv_close((uv_handle_t *)&c->idle, on_conn_close);
}

/* A failure found where no queries may move (a write): handled from on_defer. */
static void conn_fail_later(struct up_conn *c, int err)
{
	if (c->err || c->state == C_CLOSING)
		return;
	c->err = err;
	dl_append(&c->u->broken, &c->blink);
	defer_start(c->u);
}

static void on_write(uv_write_t *req, int status)
{
	struct up_wreq *w = dl_entry(req, struct up_wreq, req);
	struct up_conn *c = req->handle->data;
	free(w);
	if (status < 0 && status != UV_ECANCELED && c->state == C_OPEN)
		conn_fail(c, status);
}

/* Write @p r's frame: 2-byte length, wire ID, rest of the query. */
static void tcp_write(struct up_conn *c, struct up_req *r)
{
	if (c->err)
		return; /* doomed: r fails over with the connection */
	size_t qlen = r->len, total = qlen + 2;
	wire_put16(r->hdr, (uint16_t)qlen);
	wire_put16(r->hdr + 2, r->wire_id);
	uv_buf_t b[2] = {
		uv_buf_init((char *)r->hdr, 4),
		uv_buf_init((char *)r->q + 2, (unsigned)(qlen - 2)),
	};
	r->sent_ns = uv_hrtime();
	if (!c->silent_since_ms)
		c->silent_since_ms = now_ms(c->u);
	int n = uv_try_write((uv_stream_t *)&c->tcp, b, 2);
	if (n >= 0 && (size_t)n == total)
		return;
	if (n < 0) {
		if (n != UV_EAGAIN && n != UV_ENOSYS) {
			conn_fail_later(c, n);
			return;
		}
		n = 0;
	}
	/* The rest, copied: r may be gone before libuv is done with it. */
	size_t done = (size_t)n, rest = total - done;
	struct up_wreq *w = malloc(sizeof(*w) + rest);
	if (!w) {
		conn_fail_later(c, -ENOMEM); /* a frame is half out: the stream is lost */
		return;
	}
	uint8_t *d = w->data;
	if (done < 4) {
		memcpy(d, r->hdr + done, 4 - done);
		d += 4 - done;
		done = 0;
	} else {
		done -= 4;
	}
	memcpy(d, r->q + 2 + done, qlen - 2 - done);
	uv_buf_t wb = uv_buf_init((char *)w->data, (unsigned)rest);
	int err = uv_write(&w->req, (uv_stream_t *)&c->tcp, &wb, 1, on_write);
	if (err) {
		free(w);
		conn_fail_later(c, err);
	}
}

/* Bind @p r to @p c (written now if open). @return 0 or -ENOMEM. */
static int conn_attach(struct up_conn *c, struct up_req *r)
{
	uint16_t id = idmap_fresh_id(c->u, &c->ids);
	int err = idmap_put(&c->ids, id, r);
	if (err)
		return err;
	r->conn = c;
	r->srv = c->srv;
	r->wire_id = id;
	r->state = R_TCP;
	r->rx_mark = c->nreplies;
	r->reused = c->state == C_OPEN;
	dl_append(&c->reqs, &r->link);
	if (c->ninflight++ == 0)
		uv_timer_stop(&c->idle);
	if (c->state == C_OPEN)
		tcp_write(c, r);
	return 0;
}

static void on_connect(uv_connect_t *req, int status);

/* Open a connection to @p s. @return 0 or an error (the server is then in backoff). */
static int conn_open(struct up_srv *s, struct up_conn **out)
{
	struct upstream *u = s->u;
	struct up_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->rbuf = malloc(UP_RBUF_INIT_BYTES);
	if (!c->rbuf) {
		free(c);
		return -ENOMEM;
	}
	c->rcap = UP_RBUF_INIT_BYTES;
	c->u = u;
	c->srv = s;
	dl_init(&c->link);
	dl_init(&c->blink);
	dl_init(&c->reqs);
	int err = uv_tcp_init(u->loop, &c->tcp);
	if (err) {
		free(c->rbuf);
		free(c);
		return err;
	}
	c->tcp.data = c;
	c->nhandles++;
	u->nhandles++;
	uv_timer_init(u->loop, &c->idle); /* cannot fail */
	c->idle.data = c;
	c->nhandles++;
	u->nhandles++;
	c->state = C_CONNECTING;
	c->creq.data = c;
	dl_append(&s->conns, &c->link);
	s->nconns++;
	s->nconnecting++;
	err = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&s->cfg->addr, on_connect);
	if (err) {
		conn_shutdown(c);
		srv_connect_failed(s, err, "connect failed");
		return err;
	}
	*out = c;
	return 0;
}

/* The least-loaded connection of @p s with room, opening one when every
 * connection is busy and the pool has room. NULL when the pool is full.
 * @p fresh (a resend): only a connection still connecting or a new one; an
 * idle open connection is closed to make room for it, as it is likely to
 * have been closed by the server as well. */
static struct up_conn *pick_conn(struct up_srv *s, bool fresh, int *err)
{
	struct upstream *u = s->u;
	struct up_conn *best = NULL, *idle = NULL;
	for (struct dlist *n = s->conns.next; n != &s->conns; n = n->next) {
		struct up_conn *c = dl_entry(n, struct up_conn, link);
		if (fresh && c->state == C_OPEN && c->ninflight == 0)
			idle = c;
		if (c->err || c->ninflight >= u->cfg.max_inflight_conn || (fresh && c->state != C_CONNECTING))
			continue;
		if (!best || c->ninflight < best->ninflight)
			best = c;
	}
	if (fresh && !best && idle && s->nconns >= u->cfg.conns_per_server)
		conn_shutdown(idle);
	bool probing = s->retry_at_ms > now_ms(u) && s->nconnecting > 0;
	if (s->nconns < u->cfg.conns_per_server && (!best || best->ninflight > 0) && !probing) {
		struct up_conn *c = NULL;
		int e = conn_open(s, &c);
		if (e == 0)
			return c;
		*err = e;
	}
	return best;
}

/* Send @p r over @p s's TCP pool (or its backlog). @return 0, or an error
 * when the server has no connection and none could be opened. */
static int tcp_assign(struct up_req *r, struct up_srv *s)
{
	int err = 0;
	if (s->u->closing)
		return -ECANCELED;
	struct up_conn *c = pick_conn(s, false, &err);
	if (c && conn_attach(c, r) == 0)
		return 0;
	if (!c && s->nconns > 0) {
		r->srv = s;
		r->state = R_BACKLOG;
		dl_append(&s->backlog, &r->link);
		return 0;
	}
	return err ? err : -ENOMEM;
}

/* Resend @p r to @p s on a fresh connection, or on any when the pool is busy. */
static int tcp_resend(struct up_req *r, struct up_srv *s)
{
	int err = 0;
	struct up_conn *c = pick_conn(s, true, &err);
	if (c && conn_attach(c, r) == 0)
		return 0;
	return tcp_assign(r, s);
}

/* Give backlogged queries of @p s the room that has freed up. */
static void srv_pump(struct up_srv *s)
{
	while (!s->u->closing && !dl_empty(&s->backlog)) {
		int err = 0;
		struct up_conn *c = pick_conn(s, false, &err);
		if (!c) {
			if (s->nconns == 0)
				srv_fail_backlog(s);
			return;
		}
		struct up_req *r = dl_entry(s->backlog.next, struct up_req, link);
		req_unbind(r);
		if (conn_attach(c, r) != 0)
			req_next_server(r);
	}
}

/* @p c is dead (connect failed, reset, EOF, broken frame, wedged): close it
 * and move its queries on, see the resend rule at the top. */
static void conn_fail(struct up_conn *c, int err)
{
	struct up_srv *s = c->srv;
	struct upstream *u = c->u;
	if (c->state == C_CLOSING)
		return;
	bool connecting = c->state == C_CONNECTING;
	bool had_reqs = !dl_empty(&c->reqs);
	uint64_t nreplies = c->nreplies, now = now_ms(u), sup;
	conn_shutdown(c);
	if (connecting) {
		srv_connect_failed(s, err, "connect failed");
	} else if (had_reqs) {
		STAT_INC(s->cfg->stats.conn_failures);
		if (nreplies == 0)
			srv_backoff(s, now);
		if ((nreplies == 0 || err != UV_EOF) && log_ok(&s->ll_conn, now, &sup))
			log_warn("upstream", "%s: connection lost with %u queries in flight: %s (%" PRIu64 " similar suppressed)",
				 s->cfg->name, c->ninflight, uv_strerror(err), sup);
		else
			log_debug("upstream", "%s: connection closed with %u queries in flight: %s",
				  s->cfg->name, c->ninflight, uv_strerror(err));
	} else {
		log_debug("upstream", "%s: idle connection closed: %s", s->cfg->name, uv_strerror(err));
	}
	while (!dl_empty(&c->reqs)) {
		struct up_req *r = dl_entry(c->reqs.next, struct up_req, link);
		req_unbind(r);
		if (!connecting) {
			bool progress = nreplies > r->rx_mark;
			if (progress || (r->reused && !r->resent)) {
				if (!progress)
					r->resent = true;
				if (tcp_resend(r, s) == 0)
					continue;
			}
		}
		if (err == -EPROTO)
			r->f_proto = true;
		else if (err == UV_ETIMEDOUT)
			r->f_timeout = true;
		req_next_server(r);
	}
	if (connecting && s->nconns == 0)
		srv_fail_backlog(s);
	srv_pump(s);
}

static void on_conn_idle(uv_timer_t *t)
{
	struct up_conn *c = t->data;
	if (c->state != C_OPEN || c->ninflight > 0)
		return;
	log_debug("upstream", "%s: closing idle connection", c->srv->cfg->name);
	conn_shutdown(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct up_conn *c = h->data;
	(void)suggested;
	/* Never empty: a partial frame always has room to complete (see on_read). */
	*buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

/* One complete frame (DNS message) of @p n >= 12 bytes from @p c. */
static void tcp_frame(struct up_conn *c, uint8_t *p, size_t n)
{
	struct up_srv *s = c->srv;
	if (!(p[2] & DNS_FLAG_QR)) {
		STAT_INC(s->cfg->stats.bad_replies);
		return;
	}
	struct up_req *r = idmap_get(&c->ids, wire_get16(p));
	if (!r) { /* unknown or late */
		STAT_INC(s->cfg->stats.bad_replies);
		return;
	}
	if (!question_match(r, p, n)) {
		STAT_INC(s->cfg->stats.bad_replies);
		r->bad_attempt = true;
		return;
	}
	c->nreplies++;
	req_reply(r, p, n);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct up_conn *c = st->data;
	struct upstream *u = c->u;
	(void)buf;
	if (c->state != C_OPEN || nread == 0)
		return;
	if (nread < 0) {
		conn_fail(c, (int)nread);
		return;
	}
	c->rlen += (size_t)nread;
	size_t off = 0;
	while (c->rlen - off >= 2) {
		size_t flen = wire_get16(c->rbuf + off);
		if (flen < DNS_HEADER_BYTES) {
			STAT_INC(c->srv->cfg->stats.bad_replies);
			conn_fail(c, -EPROTO);
			return;
		}
		if (c->rlen - off < 2 + flen)
			break;
		uint8_t *f = c->rbuf + off + 2;
		off += 2 + flen;
		tcp_frame(c, f, flen); /* may call back the user */
		if (u->closing || c->state != C_OPEN)
			return;
	}
	c->silent_since_ms = c->ninflight ? now_ms(u) : 0;
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	if (c->rlen >= 2) {
		size_t need = 2 + (size_t)wire_get16(c->rbuf); /* <= 2 + UP_FRAME_MAX_BYTES */
		if (need > c->rcap) {
			uint8_t *nb = realloc(c->rbuf, need);
			if (!nb) {
				conn_fail(c, -ENOMEM);
				return;
			}
			c->rbuf = nb;
			c->rcap = need;
		}
	}
}

static void on_connect(uv_connect_t *req, int status)
{
	struct up_conn *c = req->data;
	struct up_srv *s = c->srv;
	struct upstream *u = c->u;
	if (c->state != C_CONNECTING)
		return; /* closed meanwhile: UV_ECANCELED */
	if (status < 0) {
		conn_fail(c, status);
		return;
	}
	c->state = C_OPEN;
	s->nconnecting--;
	s->nopen++;
	atomic_fetch_add_explicit(&s->cfg->stats.open_conns, 1, memory_order_relaxed);
	STAT_INC(s->cfg->stats.tcp_connects);
	srv_backoff_reset(s);
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, UP_KEEPALIVE_S);
	int err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (err) {
		conn_fail(c, err);
		return;
	}
	for (struct dlist *n = c->reqs.next; n != &c->reqs; n = n->next)
		tcp_write(c, dl_entry(n, struct up_req, link));
	if (c->ninflight == 0 && !u->closing)
		uv_timer_start(&c->idle, on_conn_idle, UP_IDLE_MS, 0);
	srv_pump(s);
}

/* ---- UDP ---- */

static void on_udp_close(uv_handle_t *h)
{
	struct up_udp *ud = h->data;
	struct upstream *u = ud->srv->u;
	free(ud->ids.slots);
	free(ud);
	up_handle_closed(u);
}

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct up_udp *ud = h->data;
	(void)suggested;
	*buf = uv_buf_init((char *)ud->srv->u->udp_buf, UP_UDP_BUF_BYTES);
}

/* ICMP unreachable on the connected socket: every query on it moves on. */
static void udp_refused(struct up_udp *ud, int err)
{
	struct up_srv *s = ud->srv;
	srv_connect_failed(s, err, "udp");
	while (!dl_empty(&ud->reqs)) {
		struct up_req *r = dl_entry(ud->reqs.next, struct up_req, link);
		req_unbind(r);
		req_next_server(r);
	}
}

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
		     unsigned flags)
{
	struct up_udp *ud = h->data;
	struct up_srv *s = ud->srv;
	struct upstream *u = s->u;
	if (u->closing)
		return;
	if (nread < 0) {
		if (nread == UV_ECONNREFUSED)
			udp_refused(ud, (int)nread);
		else
			log_debug("upstream", "%s: udp: %s", s->cfg->name, uv_strerror((int)nread));
		return;
	}
	if (nread == 0 && !addr)
		return; /* nothing more to read */
	if ((flags & UV_UDP_PARTIAL) || (size_t)nread < DNS_HEADER_BYTES ||
	    (addr && !netaddr_sa_equal(addr, (const struct sockaddr *)&s->cfg->addr))) {
		STAT_INC(s->cfg->stats.bad_replies);
		return;
	}
	uint8_t *p = (uint8_t *)buf->base;
	size_t n = (size_t)nread;
	struct up_req *r = (p[2] & DNS_FLAG_QR) ? idmap_get(&ud->ids, wire_get16(p)) : NULL;
	if (!r) {
		STAT_INC(s->cfg->stats.bad_replies);
		return;
	}
	if (!question_match(r, p, n)) {
		STAT_INC(s->cfg->stats.bad_replies);
		r->bad_attempt = true;
		return;
	}
	srv_backoff_reset(s);
	if (p[2] & DNS_FLAG_TC) {
		histogram_observe(&s->cfg->stats.latency, (uv_hrtime() - r->sent_ns) / 1000u);
		STAT_INC(s->cfg->stats.replies);
		STAT_INC(s->cfg->stats.tc_retries);
		req_unbind(r);
		r->use_tcp = true;
		r->bad_attempt = false;
		tq_start(r);
		STAT_INC(s->cfg->stats.queries);
		if (tcp_assign(r, s) != 0)
			req_next_server(r);
		return;
	}
	req_reply(r, p, n);
}

static void on_udp_send(uv_udp_send_t *req, int status)
{
	(void)status; /* a lost datagram is a timeout */
	free(dl_entry(req, struct up_sreq, req));
}

static struct up_udp *udp_get(struct up_srv *s, int *err)
{
	struct upstream *u = s->u;
	if (s->udp)
		return s->udp;
	struct up_udp *ud = calloc(1, sizeof(*ud));
	if (!ud) {
		*err = -ENOMEM;
		return NULL;
	}
	ud->srv = s;
	dl_init(&ud->reqs);
	*err = uv_udp_init(u->loop, &ud->h);
	if (*err) {
		free(ud);
		return NULL;
	}
	ud->h.data = ud;
	u->nhandles++;
	*err = uv_udp_connect(&ud->h, (const struct sockaddr *)&s->cfg->addr);
	if (!*err)
		*err = uv_udp_recv_start(&ud->h, udp_alloc, udp_recv);
	if (*err) {
		uv_close((uv_handle_t *)&ud->h, on_udp_close);
		return NULL;
	}
	s->udp = ud;
	return ud;
}

/* Send @p r to @p s over UDP. @return 0, or an error for this attempt. */
static int udp_send(struct up_req *r, struct up_srv *s)
{
	int err = 0;
	struct up_udp *ud = udp_get(s, &err);
	if (!ud) {
		srv_connect_failed(s, err, "udp socket");
		return err;
	}
	if (ud->ninflight >= UP_UDP_MAX_INFLIGHT)
		return -ENOBUFS;
	uint16_t id = idmap_fresh_id(s->u, &ud->ids);
	err = idmap_put(&ud->ids, id, r);
	if (err)
		return err;
	r->wire_id = id;
	r->state = R_UDP;
	dl_append(&ud->reqs, &r->link);
	ud->ninflight++;
	wire_put16(r->hdr + 2, id);
	uv_buf_t b[2] = {
		uv_buf_init((char *)r->hdr + 2, 2),
		uv_buf_init((char *)r->q + 2, (unsigned)(r->len - 2)),
	};
	r->sent_ns = uv_hrtime();
	int n = uv_udp_try_send(&ud->h, b, 2, NULL);
	if (n >= 0)
		return 0;
	if (n == UV_EAGAIN || n == UV_ENOSYS) {
		struct up_sreq *w = malloc(sizeof(*w) + r->len);
		if (!w) {
			req_unbind(r);
			return -ENOMEM;
		}
		memcpy(w->data, r->hdr + 2, 2);
		memcpy(w->data + 2, r->q + 2, r->len - 2);
		uv_buf_t wb = uv_buf_init((char *)w->data, (unsigned)r->len);
		n = uv_udp_send(&w->req, &ud->h, &wb, 1, NULL, on_udp_send);
		if (n == 0)
			return 0;
		free(w);
	}
	req_unbind(r);
	if (n == UV_ECONNREFUSED)
		srv_connect_failed(s, n, "udp");
	return n;
}

/* ---- Loop callbacks ---- */

/* The attempt of @p r ran out of time. */
static void attempt_timeout(struct up_req *r, uint64_t now)
{
	struct up_srv *s = r->srv;
	struct upstream *u = r->u;
	struct up_conn *c = r->state == R_TCP ? r->conn : NULL;
	uint64_t sup;
	tq_remove(r);
	STAT_INC(s->cfg->stats.timeouts);
	if (r->bad_attempt)
		r->f_proto = true;
	else
		r->f_timeout = true;
	if (log_ok(&s->ll_timeout, now, &sup))
		log_warn("upstream", "%s: query timed out after %" PRIu32 " ms (%" PRIu64 " similar suppressed)",
			 s->cfg->name, u->cfg.timeout_ms, sup);
	req_unbind(r);
	if (c && c->state == C_CONNECTING) {
		conn_fail(c, UV_ETIMEDOUT);
	} else if (c && c->state == C_OPEN && c->silent_since_ms &&
		   now - c->silent_since_ms >= 2ull * u->cfg.timeout_ms) {
		log_warn("upstream", "%s: nothing received for %" PRIu64 " ms, closing the connection",
			 s->cfg->name, now - c->silent_since_ms);
		conn_fail(c, UV_ETIMEDOUT);
	}
	req_next_server(r);
	srv_pump(s);
}

static void on_tq_timer(uv_timer_t *t)
{
	struct upstream *u = t->data;
	uint64_t now = now_ms(u);
	while (!dl_empty(&u->tq) && !u->closing) {
		struct up_req *r = dl_entry(u->tq.next, struct up_req, tlink);
		if (r->deadline_ms > now)
			break;
		attempt_timeout(r, now);
	}
	tq_arm(u);
}

/* Deferred work: connections that failed inside a write, then the failures
 * queued by req_fail_later (only those present on entry, so a callback that
 * retries cannot keep the loop here). */
static void on_defer(uv_idle_t *h)
{
	struct upstream *u = h->data;
	struct dlist local;
	while (!dl_empty(&u->broken)) {
		struct up_conn *c = dl_entry(u->broken.next, struct up_conn, blink);
		dl_remove(&c->blink);
		conn_fail(c, c->err);
	}
	dl_move_all(&local, &u->done);
	while (!dl_empty(&local)) {
		struct up_req *r = dl_entry(local.next, struct up_req, link);
		int status = r->status;
		upstream_done_cb cb = r->cb;
		void *arg = r->arg;
		req_release(r);
		free(r);
		cb(arg, status, NULL, 0, NULL);
		if (u->closing)
			return;
	}
	if (dl_empty(&u->done) && dl_empty(&u->broken))
		uv_idle_stop(&u->defer);
}

/* ---- Public API ---- */

int upstream_new(uv_loop_t *loop, const struct upstream_config *cfg, struct upstream **out)
{
	struct upstream *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->loop = loop;
	u->cfg = *cfg;
	if (u->cfg.timeout_ms == 0)
		u->cfg.timeout_ms = UP_DEFAULT_TIMEOUT_MS;
	if (u->cfg.conns_per_server == 0)
		u->cfg.conns_per_server = UP_DEFAULT_CONNS;
	if (u->cfg.conns_per_server > UP_MAX_CONNS)
		u->cfg.conns_per_server = UP_MAX_CONNS;
	if (u->cfg.max_inflight_conn == 0)
		u->cfg.max_inflight_conn = UP_DEFAULT_INFLIGHT_CONN;
	if (u->cfg.max_inflight_conn > UP_MAX_INFLIGHT_CONN)
		u->cfg.max_inflight_conn = UP_MAX_INFLIGHT_CONN;
	if (u->cfg.max_inflight == 0)
		u->cfg.max_inflight = UP_DEFAULT_INFLIGHT;
	if (u->cfg.max_inflight > UP_MAX_INFLIGHT)
		u->cfg.max_inflight = UP_MAX_INFLIGHT;
	dl_init(&u->reqs);
	dl_init(&u->tq);
	dl_init(&u->done);
	dl_init(&u->broken);
	if (u->cfg.proto == UPSTREAM_PROTO_UDP) {
		u->udp_buf = malloc(UP_UDP_BUF_BYTES);
		if (!u->udp_buf) {
			free(u);
			return -ENOMEM;
		}
	}
	if (getrandom(&u->rng_state, sizeof(u->rng_state), GRND_NONBLOCK) != sizeof(u->rng_state))
		u->rng_state = uv_hrtime() ^ (uint64_t)(uintptr_t)u;
	u->rng_pos = UP_RNG_WORDS;
	int err = uv_timer_init(loop, &u->timer);
	if (err) {
		free(u->udp_buf);
		free(u);
		return err;
	}
	u->timer.data = u;
	u->nhandles++;
	err = uv_idle_init(loop, &u->defer);
	if (err) {
		u->closing = true; /* freed by the timer's close callback */
		uv_close((uv_handle_t *)&u->timer, on_up_handle_close);
		return err;
	}
	u->defer.data = u;
	u->nhandles++;
	*out = u;
	return 0;
}

int upstream_query(struct upstream *u, const struct upstream_group *group, const uint8_t *query,
		   size_t len, upstream_done_cb cb, void *arg)
{
	if (!u || !group || !group->servers || group->nservers == 0 || !query || !cb)
		return -EINVAL;
	if (u->closing)
		return -ECANCELED;
	if (len < DNS_HEADER_BYTES || len > UP_FRAME_MAX_BYTES || wire_get16(query + 4) != 1)
		return -EINVAL;
	size_t nl = dnsmsg_plain_name_len(query, len, DNS_HEADER_BYTES);
	if (nl == 0 || DNS_HEADER_BYTES + nl + 4 > len)
		return -EINVAL;
	if (u->ninflight >= u->cfg.max_inflight) {
		STAT_INC(u->wstats.dropped_inflight);
		return -ENOBUFS;
	}
	struct up_req *r = calloc(1, sizeof(*r) + len);
	if (!r)
		return -ENOMEM;
	memcpy(r->q, query, len);
	r->len = len;
	r->qend = DNS_HEADER_BYTES + nl + 4;
	r->orig_id = wire_get16(query);
	r->u = u;
	r->group = group;
	r->cb = cb;
	r->arg = arg;
	dl_init(&r->link);
	dl_init(&r->tlink);
	dl_append(&u->reqs, &r->all);
	u->ninflight++;
	set_inflight(u);
	req_next_server(r); /* failures are deferred: never calls back from here */
	return 0;
}

const struct upstream_worker_stats *upstream_worker_stats(const struct upstream *u)
{
	return &u->wstats;
}

void upstream_close(struct upstream *u)
{
	if (!u || u->closing)
		return;
	u->closing = true;
	while (!dl_empty(&u->reqs)) {
		struct up_req *r = dl_entry(u->reqs.next, struct up_req, all);
		upstream_done_cb cb = r->cb;
		void *arg = r->arg;
		req_release(r);
		free(r);
		cb(arg, -ECANCELED, NULL, 0, NULL);
	}
	for (size_t i = 0; i < u->nsrvs; i++) {
		struct up_srv *s = u->srvs[i];
		while (!dl_empty(&s->conns))
			conn_shutdown(dl_entry(s->conns.next, struct up_conn, link));
		if (s->udp) {
			uv_close((uv_handle_t *)&s->udp->h, on_udp_close);
			s->udp = NULL;
		}
	}
	uv_close((uv_handle_t *)&u->timer, on_up_handle_close);
	uv_close((uv_handle_t *)&u->defer, on_up_handle_close);
}
