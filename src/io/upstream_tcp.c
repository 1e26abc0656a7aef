/* src/io/upstream_tcp.c - upstream TCP connections: the per-server pool, pipelined writes, framed reads. */
#include "upstream_internal.h"

/*
 * A hostile or broken server (issue 11), rules on top of those in upstream.c:
 * - A frame that does not walk (dnsmsg_reply_edns), has QR=0, or carries an
 *   ID no query on this connection has (the last UP_RETIRED_IDS IDs whose
 *   queries left without a reply excepted: late replies) means the stream is
 *   out of step, e.g. after a lying length prefix: the connection is closed
 *   at once (-EPROTO) instead of reading garbage as lengths until it idles.
 * - A frame whose first byte has arrived must be complete within
 *   max(UP_FRAME_MIN_MS, timeout/4) (a dripping server), else the
 *   connection is closed (UV_ETIMEDOUT).
 * - After either (and after a wedged connection) every query that was on it
 *   is resent once on a fresh connection to the same server; the attempt
 *   deadline still bounds it.
 * - A connection with a partial frame, or silent for half an attempt since a
 *   write, is behind: new queries go to a healthy connection or a new one,
 *   and to it only when every connection is behind and the pool is full.
 * - A connection lost under several queries and no reply, where a query has
 *   no free resend left and no other server to go to: that query is a
 *   suspect, retried once alone on the server's isolation connection
 *   (s->solo, one query at a time, never picked for other queries, closed
 *   when no suspect is left). What fails there is that query's own failure.
 */

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);
static void on_connect(uv_connect_t *req, int status);

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
	upstream_handle_closed(u);
}

void upstream_conn_shutdown(struct up_conn *c)
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
	if (s->solo == c)
		s->solo = NULL;
	dl_remove(&c->link);
	dl_remove(&c->blink);
	c->state = C_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, on_conn_close);
	uv_close((uv_handle_t *)&c->idle, on_conn_close);
	uv_close((uv_handle_t *)&c->stall, on_conn_close);
}

/* A failure found where no queries may move (a write): handled from upstream_on_defer. */
static void conn_fail_later(struct up_conn *c, int err)
{
	if (c->err || c->state == C_CLOSING)
		return;
	c->err = err;
	dl_append(&c->u->broken, &c->blink);
	upstream_defer_start(c->u);
}

static void on_write(uv_write_t *req, int status)
{
	struct up_wreq *w = dl_entry(req, struct up_wreq, req);
	struct up_conn *c = req->handle->data;
	free(w);
	if (status < 0 && status != UV_ECANCELED && c->state == C_OPEN)
		upstream_conn_fail(c, status);
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
		c->silent_since_ms = upstream_now_ms(c->u);
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
	uint16_t id = upstream_idmap_fresh_id(c->u, &c->ids);
	int err = upstream_idmap_put(&c->ids, id, r);
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
	uv_timer_init(u->loop, &c->stall);
	c->stall.data = c;
	c->nhandles++;
	u->nhandles++;
	c->state = C_CONNECTING;
	c->creq.data = c;
	dl_append(&s->conns, &c->link);
	s->nconns++;
	s->nconnecting++;
	err = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&s->cfg->addr, on_connect);
	if (err) {
		upstream_conn_shutdown(c);
		upstream_srv_connect_failed(s, err, "connect failed");
		return err;
	}
	*out = c;
	return 0;
}

/* Whether @p c is behind: a reply frame has started and not completed, or
 * nothing was received for half an attempt since a query was written. New
 * queries go to a healthy connection (or a new one) while there is one. */
static bool conn_behind(const struct up_conn *c, uint64_t now)
{
	if (c->state != C_OPEN)
		return false;
	if (c->frame_since_ms)
		return true;
	return c->silent_since_ms && now - c->silent_since_ms >= c->u->cfg.timeout_ms / 2;
}

/* The least-loaded connection of @p s with room, opening one when every
 * connection is busy and the pool has room. NULL when the pool is full.
 * @p fresh (a resend): only a connection still connecting or a new one; an
 * idle open connection is closed to make room for it, as it is likely to
 * have been closed by the server as well. */
static struct up_conn *pick_conn(struct up_srv *s, bool fresh, int *err)
{
	struct upstream *u = s->u;
	struct up_conn *best = NULL, *behind = NULL, *idle = NULL;
	uint64_t now = upstream_now_ms(u);
	for (struct dlist *n = s->conns.next; n != &s->conns; n = n->next) {
		struct up_conn *c = dl_entry(n, struct up_conn, link);
		if (c->solo)
			continue; /* the isolation connection: suspects only */
		if (fresh && c->state == C_OPEN && c->ninflight == 0)
			idle = c;
		if (c->err || c->ninflight >= u->cfg.max_inflight_conn || (fresh && c->state != C_CONNECTING))
			continue;
		if (conn_behind(c, now)) {
			if (!behind || c->ninflight < behind->ninflight)
				behind = c;
			continue;
		}
		if (!best || c->ninflight < best->ninflight)
			best = c;
	}
	if (fresh && !best && idle && s->nconns >= u->cfg.conns_per_server)
		upstream_conn_shutdown(idle);
	bool probing = s->retry_at_ms > now && s->nconnecting > 0;
	if (s->nconns < u->cfg.conns_per_server && (!best || best->ninflight > 0) && !probing) {
		struct up_conn *c = NULL;
		int e = conn_open(s, &c);
		if (e == 0)
			return c;
		*err = e;
	}
	return best ? best : behind; /* every connection behind: the least loaded */
}

int upstream_tcp_assign(struct up_req *r, struct up_srv *s)
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
	return upstream_tcp_assign(r, s);
}

/* Fail over every query waiting for @p s's isolation connection. */
static void srv_fail_suspects(struct up_srv *s)
{
	while (!dl_empty(&s->suspects)) {
		struct up_req *r = dl_entry(s->suspects.next, struct up_req, link);
		upstream_req_unbind(r);
		upstream_req_next_server(r);
	}
}

/* Send the next suspect on the isolation connection of @p s (opened when
 * needed) once it carries none; close it when no suspect is left. */
static void srv_pump_suspects(struct up_srv *s)
{
	struct upstream *u = s->u;
	while (!u->closing && !dl_empty(&s->suspects)) {
		struct up_conn *c = s->solo;
		if (c && c->ninflight > 0)
			return;
		if (!c) {
			if (conn_open(s, &c) != 0) {
				srv_fail_suspects(s);
				return;
			}
			c->solo = true;
			s->solo = c;
		}
		struct up_req *r = dl_entry(s->suspects.next, struct up_req, link);
		upstream_req_unbind(r);
		if (conn_attach(c, r) != 0)
			upstream_req_next_server(r);
	}
	if (s->solo && s->solo->ninflight == 0 && dl_empty(&s->suspects))
		upstream_conn_shutdown(s->solo);
}

void upstream_srv_pump(struct up_srv *s)
{
	srv_pump_suspects(s);
	while (!s->u->closing && !dl_empty(&s->backlog)) {
		int err = 0;
		struct up_conn *c = pick_conn(s, false, &err);
		if (!c) {
			if (s->nconns == 0)
				upstream_srv_fail_backlog(s);
			return;
		}
		struct up_req *r = dl_entry(s->backlog.next, struct up_req, link);
		upstream_req_unbind(r);
		if (conn_attach(c, r) != 0)
			upstream_req_next_server(r);
	}
}

void upstream_conn_fail(struct up_conn *c, int err)
{
	struct up_srv *s = c->srv;
	struct upstream *u = c->u;
	if (c->state == C_CLOSING)
		return;
	bool connecting = c->state == C_CONNECTING;
	/* A broken frame or a stalled/wedged stream: the server is there but the
	 * stream is lost; what was in flight gets one resend on a new connection. */
	bool broken = err == -EPROTO || err == UV_ETIMEDOUT;
	bool had_reqs = !dl_empty(&c->reqs);
	/* Several queries and no reply: which one the server failed on is not
	 * known. On the isolation connection it is: the one it carried. */
	bool solo = c->solo, shared = c->ninflight > 1;
	uint64_t nreplies = c->nreplies, now = upstream_now_ms(u), sup;
	upstream_conn_shutdown(c);
	if (connecting) {
		upstream_srv_connect_failed(s, err, "connect failed");
	} else if (had_reqs) {
		STAT_INC(s->cfg->stats.conn_failures);
		if (nreplies == 0)
			upstream_srv_backoff(s, now);
		if ((nreplies == 0 || err != UV_EOF) && upstream_log_ok(&s->ll_conn, now, &sup))
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
		upstream_req_unbind(r);
		if (!connecting && !solo) {
			bool progress = nreplies > r->rx_mark;
			if (progress || ((r->reused || broken) && !r->resent)) {
				if (!progress)
					r->resent = true;
				if (tcp_resend(r, s) == 0)
					continue;
			} else if (shared && !r->isolated && !u->closing &&
				   !upstream_req_has_next_server(r)) {
				r->isolated = true;
				r->srv = s;
				r->state = R_BACKLOG;
				dl_append(&s->suspects, &r->link);
				continue;
			}
		}
		if (err == -EPROTO)
			r->f_proto = true;
		else if (err == UV_ETIMEDOUT)
			r->f_timeout = true;
		upstream_req_next_server(r);
	}
	if (connecting && s->nconns == 0)
		upstream_srv_fail_backlog(s);
	if (connecting && solo)
		srv_fail_suspects(s); /* the server is gone, not one query's doing */
	upstream_srv_pump(s);
}

void upstream_on_conn_idle(uv_timer_t *t)
{
	struct up_conn *c = t->data;
	if (c->state != C_OPEN || c->ninflight > 0)
		return;
	log_debug("upstream", "%s: closing idle connection", c->srv->cfg->name);
	upstream_conn_shutdown(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct up_conn *c = h->data;
	(void)suggested;
	/* Never empty: a partial frame always has room to complete (see on_read). */
	*buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

void upstream_conn_retire_id(struct up_conn *c, uint16_t id)
{
	c->retired[c->nretired++ % UP_RETIRED_IDS] = id;
}

static bool conn_id_retired(const struct up_conn *c, uint16_t id)
{
	unsigned n = c->nretired < UP_RETIRED_IDS ? c->nretired : UP_RETIRED_IDS;
	for (unsigned i = 0; i < n; i++) {
		if (c->retired[i] == id)
			return true;
	}
	return false;
}

/* One complete frame (DNS message) of @p n >= 12 bytes from @p c.
 * @return 0, or -EPROTO when the stream can no longer be trusted: a frame
 * that does not walk as a DNS message, not a response, or a reply to no
 * query sent on @p c (a lying length prefix desynchronises every later
 * frame, so the connection is closed at once). */
static int tcp_frame(struct up_conn *c, uint8_t *p, size_t n)
{
	struct up_srv *s = c->srv;
	uint8_t ext;
	uint16_t id = wire_get16(p);
	if (!(p[2] & DNS_FLAG_QR) || dnsmsg_reply_edns(p, n, &ext) < 0) {
		STAT_INC(s->cfg->stats.bad_replies);
		return -EPROTO;
	}
	struct up_req *r = upstream_idmap_get(&c->ids, id);
	if (!r) {
		STAT_INC(s->cfg->stats.bad_replies);
		return conn_id_retired(c, id) ? 0 : -EPROTO; /* late, or unknown */
	}
	if (!upstream_reply_question_ok(s, r, p, n))
		return 0;
	c->nreplies++;
	upstream_req_reply(r, p, n);
	return 0;
}

/* A reply frame started UP_FRAME_MIN_MS / timeout/4 ago and is not complete. */
static void on_stall(uv_timer_t *t)
{
	struct up_conn *c = t->data;
	uint64_t now = upstream_now_ms(c->u), sup;
	if (c->state != C_OPEN || !c->frame_since_ms)
		return;
	if (upstream_log_ok(&c->srv->ll_timeout, now, &sup))
		log_warn("upstream", "%s: reply frame incomplete after %" PRIu64 " ms, closing the connection (%" PRIu64 " similar suppressed)",
			 c->srv->cfg->name, now - c->frame_since_ms, sup);
	upstream_conn_fail(c, UV_ETIMEDOUT);
}

/* Arm the stall timer when a frame has started, stop it when none is pending. */
static void conn_frame_timer(struct up_conn *c)
{
	if (c->rlen == 0) {
		c->frame_since_ms = 0;
		uv_timer_stop(&c->stall);
		return;
	}
	if (c->frame_since_ms)
		return;
	uint32_t ms = c->u->cfg.timeout_ms / 4;
	c->frame_since_ms = upstream_now_ms(c->u);
	uv_timer_start(&c->stall, on_stall, ms > UP_FRAME_MIN_MS ? ms : UP_FRAME_MIN_MS, 0);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct up_conn *c = st->data;
	struct upstream *u = c->u;
	(void)buf;
	if (c->state != C_OPEN || nread == 0)
		return;
	if (nread < 0) {
		upstream_conn_fail(c, (int)nread);
		return;
	}
	c->rlen += (size_t)nread;
	size_t off = 0;
	while (c->rlen - off >= 2) {
		size_t flen = wire_get16(c->rbuf + off);
		if (flen < DNS_HEADER_BYTES) {
			STAT_INC(c->srv->cfg->stats.bad_replies);
			upstream_conn_fail(c, -EPROTO);
			return;
		}
		if (c->rlen - off < 2 + flen)
			break;
		uint8_t *f = c->rbuf + off + 2;
		off += 2 + flen;
		c->frame_since_ms = 0; /* this one completed; the next starts now */
		if (tcp_frame(c, f, flen) < 0) { /* may call back the user */
			upstream_conn_fail(c, -EPROTO);
			return;
		}
		if (u->closing || c->state != C_OPEN)
			return;
	}
	if (c->solo && c->ninflight == 0) {
		upstream_srv_pump(c->srv); /* the next suspect */
		if (u->closing || c->state != C_OPEN)
			return;
	}
	c->silent_since_ms = c->ninflight ? upstream_now_ms(u) : 0;
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	if (c->rlen >= 2) {
		size_t need = 2 + (size_t)wire_get16(c->rbuf); /* <= 2 + UP_FRAME_MAX_BYTES */
		if (need > c->rcap) {
			uint8_t *nb = realloc(c->rbuf, need);
			if (!nb) {
				upstream_conn_fail(c, -ENOMEM);
				return;
			}
			c->rbuf = nb;
			c->rcap = need;
		}
	}
	conn_frame_timer(c);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct up_conn *c = req->data;
	struct up_srv *s = c->srv;
	struct upstream *u = c->u;
	if (c->state != C_CONNECTING)
		return; /* closed meanwhile: UV_ECANCELED */
	if (status < 0) {
		upstream_conn_fail(c, status);
		return;
	}
	c->state = C_OPEN;
	s->nconnecting--;
	s->nopen++;
	atomic_fetch_add_explicit(&s->cfg->stats.open_conns, 1, memory_order_relaxed);
	STAT_INC(s->cfg->stats.tcp_connects);
	upstream_srv_backoff_reset(s);
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, UP_KEEPALIVE_S);
	int err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (err) {
		upstream_conn_fail(c, err);
		return;
	}
	for (struct dlist *n = c->reqs.next; n != &c->reqs; n = n->next)
		tcp_write(c, dl_entry(n, struct up_req, link));
	if (c->ninflight == 0 && !u->closing)
		uv_timer_start(&c->idle, upstream_on_conn_idle, UP_IDLE_MS, 0);
	upstream_srv_pump(s);
}
