/* src/io/server_tcp.c - DNS over TCP for clients: accept, 2-byte framing, pipelined replies, idle and slow clients. */
#include "server_internal.h"

/* --------------------------------------------------------------- TCP */

static void conn_unlink(struct server *s, struct tcp_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (s->conns == c)
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else if (s->conns_tail == c)
		s->conns_tail = c->prev;
	c->prev = c->next = NULL;
}

static void conn_touch(struct server *s, struct tcp_conn *c)
{
	c->last_ms = uv_now(s->loop);
	if (s->conns == c)
		return;
	conn_unlink(s, c);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	if (!s->conns_tail)
		s->conns_tail = c;
}

void server_conn_maybe_free(struct tcp_conn *c)
{
	if (c->handles == 0 && c->refs == 0) {
		free(c->pend);
		free(c);
	}
}

static void conn_handle_closed(uv_handle_t *h)
{
	struct tcp_conn *c = h->data;
	c->handles--;
	server_conn_maybe_free(c);
}

void server_conn_close(struct tcp_conn *c)
{
	if (c->closing)
		return;
	struct server *s = c->s;
	c->closing = true;
	conn_unlink(s, c);
	s->nconns--;
	atomic_fetch_sub_explicit(&s->stats.tcp_open, 1, memory_order_relaxed);
	uv_close((uv_handle_t *)&c->h, conn_handle_closed);
	uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
	c->refs--; /* the reference of being open */
}

struct tcp_write_req {
	uv_write_t req;
	struct tcp_conn *c;
	size_t len;
	uint8_t data[];
};

static void tcp_written(uv_write_t *req, int status)
{
	struct tcp_write_req *r = (struct tcp_write_req *)req;
	struct tcp_conn *c = r->c;
	(void)status;
	c->refs--;
	free(r);
	if (status < 0 && !c->closing)
		server_conn_close(c);
	server_conn_maybe_free(c);
}

void server_tcp_reply(struct server *s, struct tcp_conn *c, const uint8_t *wire, size_t len)
{
	if (c->closing)
		return;
	uint8_t prefix[2];
	wire_put16(prefix, (uint16_t)len);
	uv_buf_t bufs[2] = { uv_buf_init((char *)prefix, 2), uv_buf_init((char *)wire, (unsigned)len) };
	size_t total = len + 2;
	size_t done = 0;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) == 0) {
		int n = uv_try_write((uv_stream_t *)&c->h, bufs, 2);
		if (n == (int)total)
			return;
		if (n < 0 && n != UV_EAGAIN) {
			server_conn_close(c);
			return;
		}
		done = n > 0 ? (size_t)n : 0;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) + total - done >
	    s->cfg.tcp_max_unsent_bytes) {
		/* A client that does not read its answers: drop it rather
		 * than buffer without bound. */
		inc(&s->stats.tcp_slow_closed);
		server_conn_close(c);
		return;
	}
	struct tcp_write_req *r = malloc(sizeof(*r) + total);
	if (!r) {
		server_conn_close(c);
		return;
	}
	memcpy(r->data, prefix, 2);
	memcpy(r->data + 2, wire, len);
	r->c = c;
	r->len = total - done;
	uv_buf_t b = uv_buf_init((char *)r->data + done, (unsigned)(total - done));
	if (uv_write(&r->req, (uv_stream_t *)&c->h, &b, 1, tcp_written) < 0) {
		free(r);
		server_conn_close(c);
		return;
	}
	c->refs++;
}

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct tcp_conn *c = h->data;
	struct server *s = c->s;
	(void)suggested;
	if (s->tcp_buf_busy) {
		buf->base = NULL;
		buf->len = 0;
		return;
	}
	s->tcp_buf_busy = true;
	buf->base = (char *)s->tcp_buf;
	buf->len = sizeof(s->tcp_buf);
}

static int pend_append(struct tcp_conn *c, const uint8_t *p, size_t n)
{
	if (c->pend_len + n > c->pend_cap) {
		size_t cap = c->pend_cap ? c->pend_cap : 512;
		while (cap < c->pend_len + n)
			cap *= 2;
		if (cap > TCP_FRAME_MAX + TCP_READ_BYTES)
			return -1;
		uint8_t *np = realloc(c->pend, cap);
		if (!np)
			return -1;
		c->pend = np;
		c->pend_cap = cap;
	}
	memcpy(c->pend + c->pend_len, p, n);
	c->pend_len += n;
	return 0;
}

/* Hand complete frames of @p data to the query worker; return how many bytes
 * were consumed (the rest is an incomplete frame, or waits for room). */
static size_t consume_frames(struct tcp_conn *c, const uint8_t *data, size_t len, bool *bad)
{
	struct server *s = c->s;
	size_t off = 0;
	while (!c->closing && len - off >= 2) {
		size_t flen = wire_get16(data + off);
		if (flen < DNS_HEADER_BYTES) {
			*bad = true;
			return off;
		}
		if (len - off < 2 + flen)
			break;
		if (c->inflight >= s->cfg.tcp_max_inflight) {
			/* RFC 7766 6.2.1.1: stop reading until answers go out. */
			if (!c->paused) {
				c->paused = true;
				inc(&s->stats.tcp_paused);
				uv_read_stop((uv_stream_t *)&c->h);
			}
			break;
		}
		struct query_client qc;
		qc.proto = QUERY_TCP;
		qc.conn = c;
		qc.addrlen = sizeof(qc.addr);
		if (uv_tcp_getpeername(&c->h, (struct sockaddr *)&qc.addr, (int *)&qc.addrlen) < 0)
			memset(&qc.addr, 0, sizeof(qc.addr));
		conn_touch(s, c);
		if (s->qw && !s->stopping)
			query_handle(s->qw, data + off + 2, flen, &qc, uv_now(s->loop));
		off += 2 + flen;
	}
	return off;
}

static void process(struct tcp_conn *c, const uint8_t *data, size_t len)
{
	bool bad = false;
	if (c->pend_len) {
		if (pend_append(c, data, len) < 0) {
			server_conn_close(c);
			return;
		}
		size_t used = consume_frames(c, c->pend, c->pend_len, &bad);
		memmove(c->pend, c->pend + used, c->pend_len - used);
		c->pend_len -= used;
	} else {
		size_t used = consume_frames(c, data, len, &bad);
		if (!bad && !c->closing && used < len && pend_append(c, data + used, len - used) < 0)
			bad = true;
	}
	if (bad && !c->closing) {
		inc(&c->s->stats.tcp_bad_frames);
		server_conn_close(c);
	}
}

static void tcp_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct tcp_conn *c = st->data;
	struct server *s = c->s;
	if (buf->base == (char *)s->tcp_buf)
		s->tcp_buf_busy = false;
	if (nread < 0) {
		/* EOF or error. Answers still owed go nowhere: the client
		 * closed (a half-close with queries in flight is rare and
		 * RFC 7766 lets us close). */
		server_conn_close(c);
		return;
	}
	if (nread == 0 || c->closing)
		return;
	process(c, (const uint8_t *)buf->base, (size_t)nread);
}

void server_conn_resume(struct tcp_conn *c)
{
	if (!c->paused || c->closing || c->s->stopping)
		return;
	c->paused = false;
	if (c->pend_len) {
		bool bad = false;
		size_t used = consume_frames(c, c->pend, c->pend_len, &bad);
		memmove(c->pend, c->pend + used, c->pend_len - used);
		c->pend_len -= used;
		if (bad) {
			inc(&c->s->stats.tcp_bad_frames);
			server_conn_close(c);
			return;
		}
		if (c->paused)
			return;
	}
	uv_read_start((uv_stream_t *)&c->h, tcp_alloc, tcp_read);
}

static void idle_fire(uv_timer_t *t)
{
	struct tcp_conn *c = t->data;
	struct server *s = c->s;
	uint64_t now = uv_now(s->loop);
	if (c->closing)
		return;
	if (c->inflight == 0 && now - c->last_ms >= s->cfg.tcp_idle_timeout_ms) {
		inc(&s->stats.tcp_idle_closed);
		server_conn_close(c);
		return;
	}
	uint64_t due = c->last_ms + s->cfg.tcp_idle_timeout_ms;
	uv_timer_start(&c->idle, idle_fire, due > now ? due - now : s->cfg.tcp_idle_timeout_ms, 0);
}

void server_tcp_accept(uv_stream_t *ls, int status)
{
	struct tcp_listener *l = ls->data;
	struct server *s = l->s;
	if (status < 0 || s->stopping)
		return;
	if (s->nconns >= s->cfg.tcp_max_clients) {
		/* Make room by closing the least recently active idle
		 * connection; if every one is busy, refuse the new one. */
		struct tcp_conn *victim = s->conns_tail;
		while (victim && victim->inflight)
			victim = victim->prev;
		if (victim) {
			inc(&s->stats.tcp_evicted);
			server_conn_close(victim);
		}
	}
	struct tcp_conn *c = calloc(1, sizeof(*c));
	if (!c)
		goto reject;
	c->s = s;
	if (uv_tcp_init(s->loop, &c->h) < 0) {
		free(c);
		goto reject;
	}
	c->h.data = c;
	c->handles = 1;
	c->refs = 1;
	if (uv_accept(ls, (uv_stream_t *)&c->h) < 0 || s->nconns >= s->cfg.tcp_max_clients) {
		inc(&s->stats.tcp_rejected);
		c->closing = true;
		c->refs = 0;
		uv_close((uv_handle_t *)&c->h, conn_handle_closed);
		return;
	}
	uv_timer_init(s->loop, &c->idle);
	c->idle.data = c;
	c->handles = 2;
	s->nconns++;
	atomic_fetch_add_explicit(&s->stats.tcp_open, 1, memory_order_relaxed);
	inc(&s->stats.tcp_accepted);
	conn_touch(s, c);
	uv_timer_start(&c->idle, idle_fire, s->cfg.tcp_idle_timeout_ms, 0);
	uv_read_start((uv_stream_t *)&c->h, tcp_alloc, tcp_read);
	return;
reject:
	/* Out of memory: the connection stays in the backlog until a later
	 * accept succeeds or the kernel drops it. */
	inc(&s->stats.tcp_rejected);
}
