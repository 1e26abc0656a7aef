/* src/io/upstream_udp.c - upstream over UDP: one connected socket per server, TC=1 falls back to TCP. */
#include "upstream_internal.h"

/* ---- UDP ---- */

void upstream_on_udp_close(uv_handle_t *h)
{
	struct up_udp *ud = h->data;
	struct upstream *u = ud->srv->u;
	free(ud->ids.slots);
	free(ud);
	upstream_handle_closed(u);
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
	upstream_srv_connect_failed(s, err, "udp");
	while (!dl_empty(&ud->reqs)) {
		struct up_req *r = dl_entry(ud->reqs.next, struct up_req, link);
		upstream_req_unbind(r);
		upstream_req_next_server(r);
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
	struct up_req *r = (p[2] & DNS_FLAG_QR) ? upstream_idmap_get(&ud->ids, wire_get16(p)) : NULL;
	if (!r) {
		STAT_INC(s->cfg->stats.bad_replies);
		return;
	}
	if (!upstream_reply_question_ok(s, r, p, n))
		return;
	upstream_srv_backoff_reset(s);
	if (p[2] & DNS_FLAG_TC) {
		histogram_observe(&s->cfg->stats.latency, (uv_hrtime() - r->sent_ns) / 1000u);
		STAT_INC(s->cfg->stats.replies);
		STAT_INC(s->cfg->stats.tc_retries);
		upstream_srv_answered(s); /* in time: only too big for UDP */
		upstream_req_unbind(r);
		r->use_tcp = true;
		r->bad_attempt = false;
		upstream_tq_start(r);
		STAT_INC(s->cfg->stats.queries);
		if (upstream_tcp_assign(r, s) != 0)
			upstream_req_next_server(r);
		return;
	}
	upstream_req_reply(r, p, n);
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
		uv_close((uv_handle_t *)&ud->h, upstream_on_udp_close);
		return NULL;
	}
	s->udp = ud;
	return ud;
}

int upstream_udp_send(struct up_req *r, struct up_srv *s)
{
	int err = 0;
	struct up_udp *ud = udp_get(s, &err);
	if (!ud) {
		upstream_srv_connect_failed(s, err, "udp socket");
		return err;
	}
	if (ud->ninflight >= UP_UDP_MAX_INFLIGHT)
		return -ENOBUFS;
	uint16_t id = upstream_idmap_fresh_id(s->u, &ud->ids);
	err = upstream_idmap_put(&ud->ids, id, r);
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
			upstream_req_unbind(r);
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
	upstream_req_unbind(r);
	if (n == UV_ECONNREFUSED)
		upstream_srv_connect_failed(s, n, "udp");
	return n;
}
