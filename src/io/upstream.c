/* src/io/upstream.c - forwarding to upstream servers over pooled, pipelined TCP (or UDP). */
#include "upstream_internal.h"

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
 * - Set aside for timeouts: a server whose attempts time out
 *   UP_ASIDE_TIMEOUTS (3) times in a row, with no timely reply from it in
 *   between, is set aside for UP_ASIDE_MIN_MS, doubling on each failed probe
 *   up to UP_ASIDE_MAX_MS (the connect backoff's schedule). A server that
 *   accepts connections and then does not answer (overloaded, black-holed,
 *   slower than the timeout) never fails a connect, so without this every
 *   query would pay a full attempt on it first. Picking treats a server set
 *   aside as one in backoff (skipped while another is usable, tried anyway
 *   when only such servers are left, so nothing is refused for it), even
 *   with its connections open.
 *   Why "in a row, no reply in between" and not a count in a window: the
 *   timeouts must be the server's, not the names'. A recursive upstream that
 *   answers most names and times out on a few (a slow or dead domain
 *   behind it) keeps answering in between and stays in use: moving its
 *   queries elsewhere would not make that domain faster. Three, not one: a
 *   lost UDP datagram or one stuck connection is no verdict on the server.
 *   Only replies matched to a running attempt count; a reply after its
 *   attempt timed out does not clear anything (the server is still slower
 *   than the timeout).
 *   Coming back: when the period ends, the next query that skips the server
 *   sends a copy of itself to it as a probe, a query of its own with that
 *   server alone and no client (its reply is dropped; it goes through the
 *   normal reply and timeout paths, which keep the state). The client's
 *   query still goes to the next server, so a probe costs no client a
 *   timeout, and only one is out per server (the period is extended by one
 *   attempt while it is). A timely reply to the probe, or to any attempt
 *   (such as one that went to the server because nothing else was left),
 *   puts the server back in use at once; a probe that times out sets it
 *   aside again for twice as long. Timeouts of other attempts while it is
 *   set aside change nothing (a burst in flight when it was set aside would
 *   otherwise double the period many times). When it is set aside, its
 *   queries in flight that have another server to try move on at once
 *   instead of waiting out their attempts (on a busy node a timeout's worth
 *   of queries went to it before the verdict). State is per worker, like
 *   everything here; entering and leaving are logged (rate-limited) and
 *   counted per server (timeout_asides, aside_workers).
 * - A SERVFAIL or REFUSED reply is the server's failure: the query moves on
 *   to the next server not tried yet, as after a timeout, and the reply is
 *   kept; when no server is left it is passed on (the last one received)
 *   instead of a failure status. The last server's own reply is passed on
 *   at once.
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
 * - A connection that dies (reset, broken frame, stall) under several
 *   queries and no reply says nothing about which query the server could
 *   not take (a "query of death", or a middlebox resetting connections that
 *   carry a given name). A query with no free resend left (or none: a fresh
 *   connection) moves to the next server as usual; when none is left, it is
 *   retried once more alone, on the server's isolation connection, which
 *   carries one query at a time. Only the query the server fails there
 *   fails; the others are answered. Same deadline.
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

static void on_tq_timer(uv_timer_t *t);
static int pick_server(struct up_req *r, uint64_t now);

/* ---- Small helpers ---- */

uint64_t upstream_now_ms(const struct upstream *u)
{
	return uv_now(u->loop);
}

bool upstream_log_ok(struct log_limit *l, uint64_t now, uint64_t *suppressed)
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

bool upstream_reply_question_ok(struct up_srv *s, struct up_req *r, const uint8_t *p, size_t n)
{
	if (dnsmsg_question_match(r->q, r->qend, p, n))
		return true;
	STAT_INC(s->cfg->stats.bad_replies);
	r->bad_attempt = true;
	return false;
}

/* ---- ID maps ---- */

struct up_req *upstream_idmap_get(const struct idmap *m, uint16_t id)
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

int upstream_idmap_put(struct idmap *m, uint16_t id, struct up_req *r)
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

uint16_t upstream_idmap_fresh_id(struct upstream *u, const struct idmap *m)
{
	for (int i = 0; i < 16; i++) {
		uint16_t id = rng16(u);
		if (!upstream_idmap_get(m, id))
			return id;
	}
	uint16_t id = rng16(u);
	while (upstream_idmap_get(m, id))
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

void upstream_handle_closed(struct upstream *u)
{
	if (--u->nhandles == 0 && u->closing)
		up_free(u);
}

static void on_up_handle_close(uv_handle_t *h)
{
	upstream_handle_closed(h->data);
}

void upstream_defer_start(struct upstream *u)
{
	if (!u->closing && !uv_is_active((uv_handle_t *)&u->defer))
		uv_idle_start(&u->defer, upstream_on_defer);
}

/* ---- Attempt timers ---- */

static void tq_arm(struct upstream *u)
{
	if (u->closing)
		return;
	if (dl_empty(&u->tq)) {
		uv_timer_stop(&u->timer);
		return;
	}
	const struct up_req *r = dl_entry(u->tq.next, struct up_req, tlink);
	uint64_t now = upstream_now_ms(u);
	uv_timer_start(&u->timer, on_tq_timer, r->deadline_ms > now ? r->deadline_ms - now : 0, 0);
}

void upstream_tq_start(struct up_req *r)
{
	struct upstream *u = r->u;
	dl_remove(&r->tlink);
	r->deadline_ms = upstream_now_ms(u) + u->cfg.timeout_ms;
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

void upstream_req_unbind(struct up_req *r)
{
	switch (r->state) {
	case R_TCP: {
		struct up_conn *c = r->conn;
		idmap_del(&c->ids, r->wire_id);
		upstream_conn_retire_id(c, r->wire_id);
		dl_remove(&r->link);
		if (--c->ninflight == 0 && c->state == C_OPEN && !r->u->closing)
			uv_timer_start(&c->idle, upstream_on_conn_idle, UP_IDLE_MS, 0);
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

/* A new query for @p query (checked by upstream_query), whose question ends
 * at @p qend, counted in flight, before its first attempt; NULL when out of
 * memory. */
static struct up_req *req_new(struct upstream *u, const struct upstream_group *group,
			      const uint8_t *query, size_t len, size_t qend, upstream_done_cb cb,
			      void *arg)
{
	struct up_req *r = calloc(1, sizeof(*r) + len);
	if (!r)
		return NULL;
	memcpy(r->q, query, len);
	r->len = len;
	r->qend = qend;
	/* Our own query: one OPT record right after the question (dnsmsg_upstream_query). */
	if (wire_get16(query + 6) == 0 && wire_get16(query + 8) == 0 && wire_get16(query + 10) == 1 &&
	    len == r->qend + DNS_OPT_RR_BYTES && wire_get16(query + r->qend + 1) == DNS_TYPE_OPT)
		r->full_len = (uint16_t)len;
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
	return r;
}

/* Final failure: the callback runs later from upstream_on_defer, never from here. */
static void req_fail_later(struct up_req *r, int status)
{
	struct upstream *u = r->u;
	tq_remove(r);
	upstream_req_unbind(r);
	r->status = status;
	r->state = R_DONE;
	dl_append(&u->done, &r->link);
	upstream_defer_start(u);
}

/* Remove @p r from every list and the in-flight count, before its callback. */
static void req_release(struct up_req *r)
{
	struct upstream *u = r->u;
	tq_remove(r);
	upstream_req_unbind(r);
	dl_remove(&r->all);
	u->ninflight--;
	set_inflight(u);
}

/* Keep @p p (a SERVFAIL or REFUSED reply of @p n bytes for @p r, ID
 * restored) in case no other server does better. @return 0 or -ENOMEM. */
static int req_keep_reply(struct up_req *r, const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, p, n);
	free(r->last_reply);
	r->last_reply = copy;
	r->last_len = n;
	r->last_srv = r->srv->cfg;
	return 0;
}

/* Whether the reply @p p to @p r is a server failure to pass over: SERVFAIL
 * or REFUSED while a server of the group is left to try. */
static bool req_pass_over(struct up_req *r, const uint8_t *p, size_t n)
{
	int rcode = dnsmsg_rcode(p);
	if (rcode != DNS_RCODE_SERVFAIL && rcode != DNS_RCODE_REFUSED)
		return false;
	return pick_server(r, upstream_now_ms(r->u)) >= 0 && req_keep_reply(r, p, n) == 0;
}

void upstream_req_set_edns(struct up_req *r, bool on)
{
	if (!r->full_len)
		return;
	r->len = on ? r->full_len : r->qend;
	wire_put16(r->q + 10, on ? 1 : 0);
}

/* Send @p r again to its server within the same attempt (after dropping EDNS). */
static void req_resend_same(struct up_req *r, bool was_tcp)
{
	struct up_srv *s = r->srv;
	upstream_req_unbind(r);
	int rc = r->u->cfg.proto == UPSTREAM_PROTO_UDP && !r->use_tcp ? upstream_udp_send(r, s)
								      : upstream_tcp_assign(r, s);
	if (rc != 0) {
		tq_remove(r);
		upstream_req_next_server(r);
	}
	if (was_tcp)
		upstream_srv_pump(s);
}

/* This attempt got a reply that is no answer (TC=1 over TCP, BADVERS):
 * counted as a bad reply, the query moves on to the next server. */
static void req_bad_reply(struct up_req *r, bool was_tcp, const char *what)
{
	struct up_srv *s = r->srv;
	uint64_t now = upstream_now_ms(r->u), sup;
	STAT_INC(s->cfg->stats.bad_replies);
	if (upstream_log_ok(&s->ll_conn, now, &sup))
		log_warn("upstream", "%s: %s, trying the next server (%" PRIu64 " similar suppressed)",
			 s->cfg->name, what, sup);
	r->f_proto = true;
	tq_remove(r);
	upstream_req_unbind(r);
	upstream_req_next_server(r); /* never calls back from here */
	if (was_tcp)
		upstream_srv_pump(s);
}

/* Whether the reply @p p to @p r calls for something other than passing it
 * on: FORMERR/NOTIMP without OPT to our EDNS query (RFC 6891 6.2.2: resend
 * once without EDNS, remembered for the server), an extended rcode
 * (BADVERS: we send version 0) or TC=1 over TCP (RFC 1035 4.2.2: a broken
 * server). @return whether it was handled here. */
static bool req_reply_special(struct up_req *r, const uint8_t *p, size_t n, bool was_tcp)
{
	uint8_t ext = 0;
	int edns = dnsmsg_reply_edns(p, n, &ext);
	int rcode = dnsmsg_rcode(p);
	if (was_tcp && (p[2] & DNS_FLAG_TC)) {
		req_bad_reply(r, was_tcp, "TC=1 over TCP");
		return true;
	}
	if (edns == 1 && ext != 0) {
		req_bad_reply(r, was_tcp, "extended rcode (BADVERS) to an EDNS version 0 query");
		return true;
	}
	if ((rcode == DNS_RCODE_FORMERR || rcode == DNS_RCODE_NOTIMP) && edns == 0 &&
	    r->full_len && r->len == r->full_len && !r->edns_dropped) {
		struct up_srv *s = r->srv;
		s->no_edns_until_ms = upstream_now_ms(r->u) + UP_NO_EDNS_MS;
		log_info("upstream", "%s: %s to EDNS without OPT, asking without EDNS",
			 s->cfg->name, dnsmsg_rcode_str(rcode));
		r->edns_dropped = true;
		upstream_req_set_edns(r, false);
		req_resend_same(r, was_tcp);
		return true;
	}
	return false;
}

void upstream_req_reply(struct up_req *r, uint8_t *p, size_t n)
{
	struct up_srv *s = r->srv;
	uint64_t us = (uv_hrtime() - r->sent_ns) / 1000u;
	histogram_observe(&s->cfg->stats.latency, us);
	STAT_INC(s->cfg->stats.replies);
	upstream_srv_answered(s);
	wire_put16(p, r->orig_id);
	bool was_tcp = r->state == R_TCP;
	if (req_reply_special(r, p, n, was_tcp))
		return;
	if (req_pass_over(r, p, n)) {
		STAT_INC(s->cfg->stats.rcode_failovers);
		tq_remove(r);
		upstream_req_unbind(r);
		upstream_req_next_server(r); /* never calls back from here */
		if (was_tcp)
			upstream_srv_pump(s);
		return;
	}
	upstream_done_cb cb = r->cb;
	void *arg = r->arg;
	req_release(r);
	free(r->last_reply);
	free(r);
	if (was_tcp)
		upstream_srv_pump(s);
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
	dl_init(&s->suspects);
	s->self[0] = cfg;
	s->self_group.servers = s->self;
	s->self_group.nservers = 1;
	u->srvs[u->nsrvs++] = s;
	return s;
}

/* Whether @p s is set aside for timeouts (a probe may be due). */
static bool srv_aside(const struct up_srv *s)
{
	return s && s->aside_ms != 0;
}

/* Whether @p s should be skipped while a server out of backoff remains:
 * a failed connect less than its backoff ago (and no open connection), or
 * set aside for timeouts. *@p until: when it is next worth trying. */
static bool srv_in_backoff(const struct up_srv *s, bool tcp, uint64_t now, uint64_t *until)
{
	*until = 0;
	if (!s)
		return false;
	bool conn = s->retry_at_ms > now && !(tcp && s->nopen > 0);
	if (conn)
		*until = s->retry_at_ms;
	if (srv_aside(s) && s->aside_until_ms > *until)
		*until = s->aside_until_ms;
	return conn || srv_aside(s);
}

void upstream_srv_backoff(struct up_srv *s, uint64_t now)
{
	s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : UP_BACKOFF_MIN_MS;
	if (s->backoff_ms > UP_BACKOFF_MAX_MS)
		s->backoff_ms = UP_BACKOFF_MAX_MS;
	s->retry_at_ms = now + s->backoff_ms;
}

void upstream_srv_backoff_reset(struct up_srv *s)
{
	s->backoff_ms = 0;
	s->retry_at_ms = 0;
}

void upstream_srv_answered(struct up_srv *s)
{
	uint64_t now, sup;
	s->timeouts_in_row = 0;
	if (!s->aside_ms)
		return;
	s->aside_ms = 0;
	s->aside_until_ms = 0;
	atomic_fetch_sub_explicit(&s->cfg->stats.aside_workers, 1, memory_order_relaxed);
	now = upstream_now_ms(s->u);
	if (upstream_log_ok(&s->ll_back, now, &sup))
		log_info("upstream", "%s: answering in time again, back in use (%" PRIu64 " similar suppressed)",
			 s->cfg->name, sup);
}

/* An attempt to @p s timed out at @p now: set it aside after
 * UP_ASIDE_TIMEOUTS in a row, or again (twice as long) when the period,
 * and with it the probe's attempt, has ended. @return whether it was. */
static bool srv_timed_out(struct up_srv *s, uint64_t now)
{
	uint64_t sup;
	if (s->timeouts_in_row < UP_ASIDE_TIMEOUTS)
		s->timeouts_in_row++;
	if (s->timeouts_in_row < UP_ASIDE_TIMEOUTS || s->aside_until_ms > now)
		return false;
	bool entering = s->aside_ms == 0;
	s->aside_ms = entering ? UP_ASIDE_MIN_MS : s->aside_ms * 2;
	if (s->aside_ms > UP_ASIDE_MAX_MS)
		s->aside_ms = UP_ASIDE_MAX_MS;
	s->aside_until_ms = now + s->aside_ms;
	if (!entering) {
		log_debug("upstream", "%s: probe timed out, set aside for %" PRIu32 " ms", s->cfg->name,
			  s->aside_ms);
		return true;
	}
	STAT_INC(s->cfg->stats.timeout_asides);
	atomic_fetch_add_explicit(&s->cfg->stats.aside_workers, 1, memory_order_relaxed);
	if (upstream_log_ok(&s->ll_aside, now, &sup))
		log_warn("upstream", "%s: %u queries in a row timed out, set aside: other upstreams first until it answers a probe in time (%" PRIu64 " similar suppressed)",
			 s->cfg->name, UP_ASIDE_TIMEOUTS, sup);
	return true;
}

void upstream_srv_connect_failed(struct up_srv *s, int err, const char *what)
{
	uint64_t now = upstream_now_ms(s->u), sup;
	STAT_INC(s->cfg->stats.conn_failures);
	upstream_srv_backoff(s, now);
	if (upstream_log_ok(&s->ll_conn, now, &sup))
		log_warn("upstream", "%s: %s: %s (backoff %" PRIu32 " ms, %" PRIu64 " similar suppressed)",
			 s->cfg->name, what, uv_strerror(err), s->backoff_ms, sup);
}

void upstream_srv_fail_backlog(struct up_srv *s)
{
	while (!dl_empty(&s->backlog)) {
		struct up_req *r = dl_entry(s->backlog.next, struct up_req, link);
		upstream_req_unbind(r);
		upstream_req_next_server(r);
	}
}

/* The group index for the next attempt of @p r, or -1 when all were tried. */
static int pick_server(struct up_req *r, uint64_t now)
{
	const struct upstream_group *g = r->group;
	size_t n = g->nservers < UP_MAX_GROUP ? g->nservers : UP_MAX_GROUP;
	bool tcp = r->u->cfg.proto != UPSTREAM_PROTO_UDP || r->use_tcp;
	int cand = -1;
	uint64_t cand_at = 0, at;
	for (size_t i = 0; i < n; i++) {
		if (r->tried & (1ull << i))
			continue;
		const struct up_srv *s = srv_find(r->u, g->servers[i]);
		if (!srv_in_backoff(s, tcp, now, &at))
			return (int)i;
		if (cand < 0 || at < cand_at) {
			cand = (int)i;
			cand_at = at;
		}
	}
	return cand;
}

static void on_probe_done(void *arg, int status, const uint8_t *reply, size_t len,
			  const struct upstream_server *server)
{
	(void)arg, (void)status, (void)reply, (void)len, (void)server;
}

/* @p r goes to group index @p pick: a server before it, not tried, set
 * aside and due a probe gets a copy of @p r of its own (see the rules). */
static void req_probe_skipped(struct up_req *r, size_t pick, uint64_t now)
{
	struct upstream *u = r->u;
	for (size_t i = 0; i < pick; i++) {
		struct up_srv *s = srv_find(u, r->group->servers[i]);
		if ((r->tried & (1ull << i)) || !srv_aside(s) || s->aside_until_ms > now)
			continue;
		s->aside_until_ms = now + u->cfg.timeout_ms; /* one probe at a time */
		if (u->ninflight >= u->cfg.max_inflight)
			continue;
		struct up_req *p = req_new(u, &s->self_group, r->q, r->len, r->qend, on_probe_done,
					   NULL);
		if (!p)
			continue;
		log_debug("upstream", "%s: probing", s->cfg->name);
		upstream_req_next_server(p); /* s alone, aside till after this attempt: no recursion */
	}
}

bool upstream_req_has_next_server(struct up_req *r)
{
	return pick_server(r, upstream_now_ms(r->u)) >= 0;
}

void upstream_req_next_server(struct up_req *r)
{
	struct upstream *u = r->u;
	for (;;) {
		uint64_t now = upstream_now_ms(u);
		int i = pick_server(r, now);
		if (i < 0) {
			req_fail_later(r, final_status(r));
			return;
		}
		req_probe_skipped(r, (size_t)i, now);
		r->tried |= 1ull << i;
		struct up_srv *s = srv_get(u, r->group->servers[i]);
		if (!s)
			continue;
		r->srv = s;
		r->bad_attempt = false;
		upstream_req_set_edns(r, s->no_edns_until_ms <= upstream_now_ms(u));
		upstream_tq_start(r);
		STAT_INC(s->cfg->stats.queries);
		int rc;
		if (u->cfg.proto == UPSTREAM_PROTO_UDP && !r->use_tcp)
			rc = upstream_udp_send(r, s);
		else
			rc = upstream_tcp_assign(r, s);
		if (rc == 0)
			return;
	}
}

/* ---- Loop callbacks ---- */

/* The attempt of @p r ends unanswered: a protocol failure when it had a bad
 * reply, a timeout otherwise (what final_status() reports if none is left). */
static void attempt_failed(struct up_req *r)
{
	if (r->bad_attempt)
		r->f_proto = true;
	else
		r->f_timeout = true;
}

/* Take the queries of @p reqs (a carrier's list) that have another server
 * to try off u->tq and onto @p moving, by their tlink. */
static void collect_movable(struct dlist *reqs, struct dlist *moving)
{
	for (struct dlist *n = reqs->next; n != reqs; n = n->next) {
		struct up_req *r = dl_entry(n, struct up_req, link);
		if (!upstream_req_has_next_server(r))
			continue;
		tq_remove(r);
		dl_append(moving, &r->tlink);
	}
}

/* @p s was just set aside: its queries waiting on an attempt there that
 * have another server to try move on now instead of waiting out their
 * attempts (a busy node sends a timeout's worth of queries before the
 * verdict). Collected first, then moved: moving never touches s's lists
 * (s is tried for each of them, and a probe goes to another server), and
 * a collected query that something else restarts or fails leaves the
 * list by its tlink. */
static void srv_move_on(struct up_srv *s)
{
	struct dlist moving;
	dl_init(&moving);
	for (struct dlist *n = s->conns.next; n != &s->conns; n = n->next)
		collect_movable(&dl_entry(n, struct up_conn, link)->reqs, &moving);
	collect_movable(&s->backlog, &moving);
	if (s->udp)
		collect_movable(&s->udp->reqs, &moving);
	while (!dl_empty(&moving)) {
		struct up_req *r = dl_entry(moving.next, struct up_req, tlink);
		dl_remove(&r->tlink);
		attempt_failed(r);
		upstream_req_unbind(r);
		upstream_req_next_server(r); /* never calls back from here */
	}
}

/* The attempt of @p r ran out of time. */
static void attempt_timeout(struct up_req *r, uint64_t now)
{
	struct up_srv *s = r->srv;
	struct upstream *u = r->u;
	struct up_conn *c = r->state == R_TCP ? r->conn : NULL;
	uint64_t sup;
	tq_remove(r);
	STAT_INC(s->cfg->stats.timeouts);
	bool aside = srv_timed_out(s, now);
	attempt_failed(r);
	if (upstream_log_ok(&s->ll_timeout, now, &sup))
		log_warn("upstream", "%s: query timed out after %" PRIu32 " ms (%" PRIu64 " similar suppressed)",
			 s->cfg->name, u->cfg.timeout_ms, sup);
	upstream_req_unbind(r);
	if (c && c->state == C_CONNECTING) {
		upstream_conn_fail(c, UV_ETIMEDOUT);
	} else if (c && c->state == C_OPEN && c->silent_since_ms &&
		   now - c->silent_since_ms >= 2ull * u->cfg.timeout_ms) {
		log_warn("upstream", "%s: nothing received for %" PRIu64 " ms, closing the connection",
			 s->cfg->name, now - c->silent_since_ms);
		upstream_conn_fail(c, UV_ETIMEDOUT);
	}
	upstream_req_next_server(r);
	if (aside)
		srv_move_on(s);
	upstream_srv_pump(s);
}

static void on_tq_timer(uv_timer_t *t)
{
	struct upstream *u = t->data;
	uint64_t now = upstream_now_ms(u);
	while (!dl_empty(&u->tq) && !u->closing) {
		struct up_req *r = dl_entry(u->tq.next, struct up_req, tlink);
		if (r->deadline_ms > now)
			break;
		attempt_timeout(r, now);
	}
	tq_arm(u);
}

void upstream_on_defer(uv_idle_t *h)
{
	struct upstream *u = h->data;
	struct dlist local;
	while (!dl_empty(&u->broken)) {
		struct up_conn *c = dl_entry(u->broken.next, struct up_conn, blink);
		dl_remove(&c->blink);
		upstream_conn_fail(c, c->err);
	}
	dl_move_all(&local, &u->done);
	while (!dl_empty(&local)) {
		struct up_req *r = dl_entry(local.next, struct up_req, link);
		int status = r->status;
		upstream_done_cb cb = r->cb;
		void *arg = r->arg;
		uint8_t *last = r->last_reply; /* every server failed: its failure, as it said it */
		size_t last_len = r->last_len;
		const struct upstream_server *last_srv = r->last_srv;
		req_release(r);
		free(r);
		if (last)
			cb(arg, 0, last, last_len, last_srv);
		else
			cb(arg, status, NULL, 0, NULL);
		free(last);
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
	struct up_req *r = req_new(u, group, query, len, DNS_HEADER_BYTES + nl + 4, cb, arg);
	if (!r)
		return -ENOMEM;
	upstream_req_next_server(r); /* failures are deferred: never calls back from here */
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
		free(r->last_reply);
		free(r);
		cb(arg, -ECANCELED, NULL, 0, NULL);
	}
	for (size_t i = 0; i < u->nsrvs; i++) {
		struct up_srv *s = u->srvs[i];
		if (s->aside_ms) /* the gauge counts live workers only */
			atomic_fetch_sub_explicit(&s->cfg->stats.aside_workers, 1, memory_order_relaxed);
		s->aside_ms = 0;
		while (!dl_empty(&s->conns))
			upstream_conn_shutdown(dl_entry(s->conns.next, struct up_conn, link));
		if (s->udp) {
			uv_close((uv_handle_t *)&s->udp->h, upstream_on_udp_close);
			s->udp = NULL;
		}
	}
	uv_close((uv_handle_t *)&u->timer, on_up_handle_close);
	uv_close((uv_handle_t *)&u->defer, on_up_handle_close);
}
