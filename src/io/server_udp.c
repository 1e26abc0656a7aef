/* src/io/server_udp.c - DNS over UDP for clients: batched reads and batched sendmmsg replies. */
#include "server_internal.h"

/* --------------------------------------------------------------- UDP */

void server_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct udp_sock *u = h->data;
	struct server *s = u->s;
	(void)suggested;
	if (s->udp_buf_busy) {
		/* Another socket of this worker is mid-batch (cannot happen
		 * with one loop thread, but never hand out a shared buffer
		 * twice). */
		buf->base = NULL;
		buf->len = 0;
		return;
	}
	s->udp_buf_busy = true;
	buf->base = (char *)s->udp_buf;
	buf->len = UDP_SLOT_BYTES * UDP_SLOTS;
}

void server_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
		     unsigned flags)
{
	struct udp_sock *u = h->data;
	struct server *s = u->s;
	/* Also while stopping: the socket left its group (server_udp_leave_group), and
	 * what was queued on it before still deserves an answer. */
	if (nread > 0 && addr && s->qw) {
		struct query_client c;
		c.proto = QUERY_UDP;
		c.conn = u;
		c.addrlen = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							 : sizeof(struct sockaddr_in);
		memcpy(&c.addr, addr, c.addrlen);
		query_handle(s->qw, (const uint8_t *)buf->base, (size_t)nread, &c, uv_now(s->loop));
	}
	/* With recvmmsg, each datagram comes with UV_UDP_MMSG_CHUNK and the
	 * buffer is released by a last call with UV_UDP_MMSG_FREE; without
	 * it, every call owns the buffer. */
	if ((flags & UV_UDP_MMSG_CHUNK) == 0 || (flags & UV_UDP_MMSG_FREE))
		if (buf->base == (char *)s->udp_buf)
			s->udp_buf_busy = false;
}

struct udp_send_req {
	uv_udp_send_t req;
	struct udp_sock *u;
	uint8_t data[];
};

static void udp_sent(uv_udp_send_t *req, int status)
{
	struct udp_send_req *r = (struct udp_send_req *)req;
	r->u->queued--;
	if (status < 0)
		inc(&r->u->s->stats.udp_send_errors);
	free(r);
}

/* Send one datagram now, or queue a copy when the kernel buffer is full. */
static void udp_send_one(struct server *s, struct udp_sock *u, const struct sockaddr *addr,
			 const uint8_t *wire, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)wire, (unsigned)len);
	int rc = u->queued ? UV_EAGAIN : uv_udp_try_send(&u->h, &b, 1, addr);
	if (rc >= 0)
		return;
	if (rc != UV_EAGAIN) {
		inc(&s->stats.udp_send_errors);
		return;
	}
	/* The kernel buffer is full: queue a copy, up to a bound. */
	if (u->queued >= s->cfg.udp_max_queued_sends) {
		inc(&s->stats.udp_sends_dropped);
		return;
	}
	struct udp_send_req *r = malloc(sizeof(*r) + len);
	if (!r) {
		inc(&s->stats.udp_sends_dropped);
		return;
	}
	r->u = u;
	memcpy(r->data, wire, len);
	b = uv_buf_init((char *)r->data, (unsigned)len);
	if (uv_udp_send(&r->req, &u->h, &b, 1, addr, udp_sent) < 0) {
		free(r);
		inc(&s->stats.udp_send_errors);
		return;
	}
	u->queued++;
	inc(&s->stats.udp_sends_queued);
}

void server_udp_flush(struct server *s, struct udp_sock *u)
{
	struct udp_batch *b = u->batch;
	if (!b || b->n == 0)
		return;
	unsigned done = 0;
	uv_os_fd_t fd;
	if (u->queued == 0 && uv_fileno((uv_handle_t *)&u->h, &fd) == 0) {
		while (done < b->n) {
			int rc = sendmmsg(fd, b->msg + done, b->n - done, 0);
			if (rc <= 0) {
				if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
				    errno != EINTR) {
					/* A datagram the kernel refuses (e.g. an
					 * unreachable address): skip it. */
					inc(&s->stats.udp_send_errors);
					done++;
					continue;
				}
				break;
			}
			done += (unsigned)rc;
		}
	}
	for (unsigned i = done; i < b->n; i++)
		udp_send_one(s, u, (const struct sockaddr *)&b->addr[i], b->data[i],
			     b->iov[i].iov_len);
	b->n = 0;
}

void server_flush_all(uv_prepare_t *h)
{
	struct server *s = h->data;
	for (size_t i = 0; i < s->n; i++)
		if (s->udp[i].batch && s->udp[i].batch->n)
			server_udp_flush(s, &s->udp[i]);
}

void server_udp_reply(struct server *s, struct udp_sock *u, const struct query_client *c,
		      const uint8_t *wire, size_t len)
{
	if (s->closing)
		return;
	struct udp_batch *b = u->batch;
	if (!b || len > UDP_BATCH_SLOT_BYTES) {
		udp_send_one(s, u, (const struct sockaddr *)&c->addr, wire, len);
		return;
	}
	unsigned i = b->n++;
	memcpy(b->data[i], wire, len);
	memcpy(&b->addr[i], &c->addr, c->addrlen);
	b->iov[i].iov_base = b->data[i];
	b->iov[i].iov_len = len;
	memset(&b->msg[i], 0, sizeof(b->msg[i]));
	b->msg[i].msg_hdr.msg_name = &b->addr[i];
	b->msg[i].msg_hdr.msg_namelen = c->addrlen;
	b->msg[i].msg_hdr.msg_iov = &b->iov[i];
	b->msg[i].msg_hdr.msg_iovlen = 1;
	if (b->n == UDP_BATCH)
		server_udp_flush(s, u);
}

int server_udp_leave_group(struct udp_sock *u)
{
	uv_os_fd_t fd;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (uv_fileno((uv_handle_t *)&u->h, &fd) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -EBADF;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons(9);
	else if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(9);
	else
		return -EAFNOSUPPORT;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		log_warn("server", "cannot take a UDP socket out of its group (%s): "
			 "datagrams queued on it at exit are lost", strerror(e));
		return -e;
	}
	return 0;
}
