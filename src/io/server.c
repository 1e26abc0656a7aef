/* src/io/server.c - UDP and TCP listeners of one worker. */
#include "nodedns/io/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nodedns/dns/dnsmsg.h"
#include "nodedns/util/log.h"

/* libuv 1.44 splits the receive buffer into 64 KiB slots and reads up to 20
 * datagrams per recvmmsg call into it; a smaller buffer spins (see the libuv
 * notes in the design research). */
#define UDP_SLOT_BYTES (64 * 1024)
#define UDP_SLOTS 20
#define TCP_READ_BYTES (64 * 1024)
/* UDP replies are collected per socket and sent with one sendmmsg() per loop
 * turn (or when the batch is full): under load a syscall per reply is most
 * of the CPU a cached answer costs. */
#define UDP_BATCH 64
#define UDP_BATCH_SLOT_BYTES 4096
#define TCP_FRAME_MAX (2 + DNS_MSG_MAX_BYTES)

struct udp_batch {
	unsigned n;
	struct mmsghdr msg[UDP_BATCH];
	struct iovec iov[UDP_BATCH];
	struct sockaddr_storage addr[UDP_BATCH];
	uint8_t data[UDP_BATCH][UDP_BATCH_SLOT_BYTES];
};

struct udp_sock {
	uv_udp_t h;
	struct server *s;
	unsigned queued; /* uv_udp_send requests not yet completed */
	struct udp_batch *batch;
};

struct tcp_listener {
	uv_tcp_t h;
	struct server *s;
};

struct tcp_conn {
	uv_tcp_t h;
	uv_timer_t idle;
	struct server *s;
	struct tcp_conn *prev, *next; /* the server's list, most recently active first */
	uint8_t *pend;                /* bytes of an incomplete frame */
	size_t pend_len, pend_cap;
	unsigned inflight;            /* queries held by the query worker */
	unsigned refs;                /* inflight + 1 while open */
	unsigned handles;             /* uv handles not yet closed */
	bool closing, paused;
	uint64_t last_ms;
};

struct server {
	uv_loop_t *loop;
	struct server_config cfg;
	struct query_worker *qw;
	struct udp_sock *udp;
	struct tcp_listener *tcp;
	size_t n;
	struct tcp_conn *conns; /* most recently active first */
	struct tcp_conn *conns_tail;
	unsigned nconns;
	unsigned handles; /* open uv handles owned directly by the server */
	uv_prepare_t flush; /* sends the UDP batches before the loop waits for I/O */
	bool stopping, closing;
	uint8_t *udp_buf;  /* in use by libuv while a recvmmsg batch is delivered */
	bool udp_buf_busy;
	uint8_t tcp_buf[TCP_READ_BYTES];
	bool tcp_buf_busy;
	struct server_stats stats;
	struct log_limit lim;
};

/* Counters of one worker have one writer (its thread): a relaxed load and
 * store is enough for the control thread's relaxed reads, and avoids a locked
 * instruction per counter on the path of every query. */
static inline void inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* ------------------------------------------------------------ sockets */

static int open_one(const struct netaddr *a, int type, char *err, size_t errlen)
{
	const char *proto = type == SOCK_DGRAM ? "udp" : "tcp";
	int fd = socket(a->sa.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "listen %s/%s: socket: %s", a->text, proto, strerror(e));
		return -e;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		int e = errno;
		snprintf(err, errlen, "listen %s/%s: SO_REUSEPORT: %s", a->text, proto, strerror(e));
		close(fd);
		return -e;
	}
	if (a->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	else
		setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
	if (a->sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof(one));
	if (type == SOCK_DGRAM) {
		/* A deep receive queue rides out a moment without CPU (or a
		 * burst of garbage) without dropping good queries. Past
		 * rmem_max only with CAP_NET_ADMIN (we bind before dropping
		 * it); else the kernel caps the plain request. */
		int size = 8 << 20;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	} else {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&a->sa, a->salen) < 0) {
		int e = errno;
		snprintf(err, errlen, "listen %s/%s: %s", a->text, proto, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

int server_bind(const struct netaddr *addrs, size_t n, struct server_fds *fds, char *err,
		size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		fds[i].udp = fds[i].tcp = -1;
	for (size_t i = 0; i < n; i++) {
		int fd = open_one(&addrs[i], SOCK_DGRAM, err, errlen);
		if (fd < 0) {
			server_close_fds(fds, n);
			return fd;
		}
		fds[i].udp = fd;
		fd = open_one(&addrs[i], SOCK_STREAM, err, errlen);
		if (fd < 0) {
			server_close_fds(fds, n);
			return fd;
		}
		fds[i].tcp = fd;
	}
	return 0;
}

void server_close_fds(struct server_fds *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (fds[i].udp >= 0)
			close(fds[i].udp);
		if (fds[i].tcp >= 0)
			close(fds[i].tcp);
		fds[i].udp = fds[i].tcp = -1;
	}
}

/* --------------------------------------------------------------- UDP */

static void udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
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

static void udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
		     unsigned flags)
{
	struct udp_sock *u = h->data;
	struct server *s = u->s;
	/* Also while stopping: the socket left its group (udp_leave_group), and
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

/* Send what the batch of @p u holds with sendmmsg(); what the kernel does not
 * take at once goes through udp_send_one() (queued sends). */
static void udp_flush(struct server *s, struct udp_sock *u)
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

static void flush_all(uv_prepare_t *h)
{
	struct server *s = h->data;
	for (size_t i = 0; i < s->n; i++)
		if (s->udp[i].batch && s->udp[i].batch->n)
			udp_flush(s, &s->udp[i]);
}

static void udp_reply(struct server *s, struct udp_sock *u, const struct query_client *c,
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
		udp_flush(s, u);
}

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

static void conn_maybe_free(struct tcp_conn *c)
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
	conn_maybe_free(c);
}

static void conn_close(struct tcp_conn *c)
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
		conn_close(c);
	conn_maybe_free(c);
}

static void tcp_reply(struct server *s, struct tcp_conn *c, const uint8_t *wire, size_t len)
{
	if (c->closing)
		return;
	uint8_t prefix[2] = { (uint8_t)(len >> 8), (uint8_t)len };
	uv_buf_t bufs[2] = { uv_buf_init((char *)prefix, 2), uv_buf_init((char *)wire, (unsigned)len) };
	size_t total = len + 2;
	size_t done = 0;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) == 0) {
		int n = uv_try_write((uv_stream_t *)&c->h, bufs, 2);
		if (n == (int)total)
			return;
		if (n < 0 && n != UV_EAGAIN) {
			conn_close(c);
			return;
		}
		done = n > 0 ? (size_t)n : 0;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->h) + total - done >
	    s->cfg.tcp_max_unsent_bytes) {
		/* A client that does not read its answers: drop it rather
		 * than buffer without bound. */
		inc(&s->stats.tcp_slow_closed);
		conn_close(c);
		return;
	}
	struct tcp_write_req *r = malloc(sizeof(*r) + total);
	if (!r) {
		conn_close(c);
		return;
	}
	memcpy(r->data, prefix, 2);
	memcpy(r->data + 2, wire, len);
	r->c = c;
	r->len = total - done;
	uv_buf_t b = uv_buf_init((char *)r->data + done, (unsigned)(total - done));
	if (uv_write(&r->req, (uv_stream_t *)&c->h, &b, 1, tcp_written) < 0) {
		free(r);
		conn_close(c);
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

static void tcp_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* Hand complete frames of @p data to the query worker; return how many bytes
 * were consumed (the rest is an incomplete frame, or waits for room). */
static size_t consume_frames(struct tcp_conn *c, const uint8_t *data, size_t len, bool *bad)
{
	struct server *s = c->s;
	size_t off = 0;
	while (!c->closing && len - off >= 2) {
		size_t flen = ((size_t)data[off] << 8) | data[off + 1];
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
			conn_close(c);
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
		conn_close(c);
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
		conn_close(c);
		return;
	}
	if (nread == 0 || c->closing)
		return;
	process(c, (const uint8_t *)buf->base, (size_t)nread);
}

static void conn_resume(struct tcp_conn *c)
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
			conn_close(c);
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
		conn_close(c);
		return;
	}
	uint64_t due = c->last_ms + s->cfg.tcp_idle_timeout_ms;
	uv_timer_start(&c->idle, idle_fire, due > now ? due - now : s->cfg.tcp_idle_timeout_ms, 0);
}

static void tcp_accept(uv_stream_t *ls, int status)
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
			conn_close(victim);
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

/* --------------------------------------------------- query worker hooks */

static void io_reply(void *arg, const struct query_client *c, const uint8_t *wire, size_t len)
{
	struct server *s = arg;
	if (c->proto == QUERY_UDP)
		udp_reply(s, c->conn, c, wire, len);
	else
		tcp_reply(s, c->conn, wire, len);
}

static void io_hold(void *arg, const struct query_client *c)
{
	(void)arg;
	if (c->proto != QUERY_TCP)
		return;
	struct tcp_conn *tc = c->conn;
	tc->inflight++;
	tc->refs++;
}

static void io_release(void *arg, const struct query_client *c)
{
	(void)arg;
	if (c->proto != QUERY_TCP)
		return;
	struct tcp_conn *tc = c->conn;
	tc->inflight--;
	tc->refs--;
	if (tc->paused && tc->inflight < tc->s->cfg.tcp_max_inflight)
		conn_resume(tc);
	conn_maybe_free(tc);
}

static uint64_t io_now(void *arg)
{
	struct server *s = arg;
	return uv_now(s->loop);
}

void server_query_io(struct server *s, struct query_io *io)
{
	io->reply = io_reply;
	io->hold = io_hold;
	io->release = io_release;
	io->now_ms = io_now;
	io->arg = s;
}

void server_set_query(struct server *s, struct query_worker *qw)
{
	s->qw = qw;
}

const struct server_stats *server_stats(const struct server *s)
{
	return &s->stats;
}

/* ------------------------------------------------------------ lifecycle */

static void server_maybe_free(struct server *s)
{
	if (s->closing && s->handles == 0 && s->nconns == 0) {
		for (size_t i = 0; i < s->n; i++)
			free(s->udp[i].batch);
		free(s->udp);
		free(s->tcp);
		free(s->udp_buf);
		free(s);
	}
}

static void check_closed(uv_handle_t *h)
{
	struct server *s = h->data;
	s->handles--;
	server_maybe_free(s);
}

static void udp_closed(uv_handle_t *h)
{
	struct udp_sock *u = h->data;
	struct server *s = u->s;
	s->handles--;
	server_maybe_free(s);
}

static void listener_closed(uv_handle_t *h)
{
	struct tcp_listener *l = h->data;
	struct server *s = l->s;
	s->handles--;
	server_maybe_free(s);
}

int server_start(uv_loop_t *loop, const struct server_config *cfg, struct server_fds *fds,
		 size_t n, struct server **out)
{
	struct server *s = calloc(1, sizeof(*s));
	if (!s)
		return UV_ENOMEM;
	s->loop = loop;
	s->cfg = *cfg;
	s->n = n;
	s->udp = calloc(n, sizeof(*s->udp));
	s->tcp = calloc(n, sizeof(*s->tcp));
	s->udp_buf = malloc(UDP_SLOT_BYTES * UDP_SLOTS);
	if (!s->udp || !s->tcp || !s->udp_buf) {
		free(s->udp);
		free(s->tcp);
		free(s->udp_buf);
		free(s);
		return UV_ENOMEM;
	}
	int rc = uv_prepare_init(loop, &s->flush);
	if (rc < 0) {
		free(s->udp);
		free(s->tcp);
		free(s->udp_buf);
		free(s);
		return rc;
	}
	s->flush.data = s;
	s->handles++;
	uv_prepare_start(&s->flush, flush_all);
	uv_unref((uv_handle_t *)&s->flush);
	for (size_t i = 0; i < n; i++) {
		struct udp_sock *u = &s->udp[i];
		u->s = s;
		u->batch = malloc(sizeof(*u->batch));
		if (!u->batch) {
			rc = UV_ENOMEM;
			break;
		}
		u->batch->n = 0;
		rc = uv_udp_init_ex(loop, &u->h, AF_UNSPEC | UV_UDP_RECVMMSG);
		if (rc < 0)
			break;
		u->h.data = u;
		s->handles++;
		rc = uv_udp_open(&u->h, fds[i].udp);
		if (rc < 0)
			break;
		fds[i].udp = -1;
		rc = uv_udp_recv_start(&u->h, udp_alloc, udp_recv);
		if (rc < 0)
			break;

		struct tcp_listener *l = &s->tcp[i];
		l->s = s;
		rc = uv_tcp_init(loop, &l->h);
		if (rc < 0)
			break;
		l->h.data = l;
		s->handles++;
		rc = uv_tcp_open(&l->h, fds[i].tcp);
		if (rc < 0)
			break;
		fds[i].tcp = -1;
		rc = uv_listen((uv_stream_t *)&l->h, 1024, tcp_accept);
		if (rc < 0)
			break;
	}
	if (rc < 0) {
		server_close_fds(fds, n);
		server_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Take a UDP socket out of its SO_REUSEPORT group without closing it:
 * connect it to a port nobody sends from (discard, on its own address). Linux
 * then steers every new datagram to the group's unconnected sockets (those of
 * the other workers or of the nodedns taking over during a rolling update),
 * while this socket still delivers what was already queued on it and can send
 * the answers still owed (sendto() on a connected UDP socket is allowed).
 * Closing it instead would drop what the kernel queued on it meanwhile.
 * @return 0, or -errno when the socket stays in the group. */
static int udp_leave_group(struct udp_sock *u)
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

void server_stop_listening(struct server *s)
{
	if (!s || s->stopping)
		return;
	s->stopping = true;
	for (size_t i = 0; i < s->n; i++) {
		if (s->udp[i].s && uv_is_active((uv_handle_t *)&s->udp[i].h) &&
		    udp_leave_group(&s->udp[i]) < 0)
			uv_udp_recv_stop(&s->udp[i].h);
		if (s->tcp[i].s && !uv_is_closing((uv_handle_t *)&s->tcp[i].h) &&
		    s->tcp[i].h.data) {
			/* The socket may be shared with a node-setup supervisor
			 * that outlives us: shutdown() stops it listening (and
			 * leaves its reuseport group) for every holder, where
			 * close() would only drop our reference. */
			uv_os_fd_t fd;
			if (uv_fileno((uv_handle_t *)&s->tcp[i].h, &fd) == 0)
				shutdown(fd, SHUT_RDWR);
			uv_close((uv_handle_t *)&s->tcp[i].h, listener_closed);
		}
	}
	for (struct tcp_conn *c = s->conns; c; c = c->next)
		uv_read_stop((uv_stream_t *)&c->h);
}

void server_close(struct server *s)
{
	if (!s || s->closing)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (s->udp[i].h.data)
			udp_flush(s, &s->udp[i]); /* answers of the last loop turn */
	s->closing = true;
	if (s->flush.data && !uv_is_closing((uv_handle_t *)&s->flush))
		uv_close((uv_handle_t *)&s->flush, check_closed);
	for (size_t i = 0; i < s->n; i++) {
		if (s->udp[i].h.data && !uv_is_closing((uv_handle_t *)&s->udp[i].h))
			uv_close((uv_handle_t *)&s->udp[i].h, udp_closed);
		if (s->tcp[i].h.data && !uv_is_closing((uv_handle_t *)&s->tcp[i].h))
			uv_close((uv_handle_t *)&s->tcp[i].h, listener_closed);
	}
	while (s->conns) {
		struct tcp_conn *c = s->conns;
		conn_close(c);
	}
	server_maybe_free(s);
}
