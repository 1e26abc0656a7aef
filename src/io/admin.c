/* src/io/admin.c - the HTTP endpoints /metrics, /health and /ready on the control loop. */
#include "nodedns/io/admin.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nodedns/io/health.h"
#include "nodedns/io/http_head.h"
#include "nodedns/util/log.h"
#include "nodedns/util/netaddr.h"
#include "nodedns/util/wire.h"

/*
 * One request per connection. A connection goes through these states:
 *
 *   READING  collect the request head into head[] (5 s deadline);
 *   HEALTH   /health only: wait for the DNS reply (1 s deadline);
 *   WRITING  the response is queued, then the write side is shut down
 *            (10 s deadline, so a client that never reads cannot pin us);
 *   LINGER   read and discard until the client closes (2 s deadline), so that
 *            close() never runs with unread bytes and resets the connection
 *            before the client has read the response;
 *   CLOSING  uv_close() was called on every handle; freed when all are closed.
 *
 * After the head is complete the socket keeps being read into a discard buffer
 * (at most ADMIN_DISCARD_MAX_BYTES), which is also how a client that resets
 * the connection during a health check is noticed.
 *
 * admin_stats.requests counts responses started (including 4xx), not
 * connections that timed out, were rejected, or closed before a full head.
 *
 * Each listener has its own budget of ADMIN_MAX_CONNS clients, so a flood on
 * the metrics port cannot starve /health on its own port. A listener at its
 * budget makes room by closing its oldest client that is not waiting for a
 * health check (idle or slow readers first, then slow writers), as the DNS
 * TCP path does, and refuses only when every one of them is in a health
 * check (each lasts at most ADMIN_HEALTH_TIMEOUT_MS).
 */

#define ADMIN_HEAD_MAX_BYTES 8192
#define ADMIN_MAX_CONNS 64 /* live clients per listener */
/* Allocated connections, closing ones included: evicted ones are freed on
 * the next turn of the loop, so this bounds memory during a flood. */
#define ADMIN_MAX_ALLOC (4 * ADMIN_MAX_CONNS)
#define ADMIN_BACKLOG 64
#define ADMIN_HEAD_TIMEOUT_MS 2000
#define ADMIN_HEALTH_TIMEOUT_MS 1000
#define ADMIN_WRITE_TIMEOUT_MS 10000
#define ADMIN_LINGER_MS 2000
#define ADMIN_DISCARD_MAX_BYTES (64 * 1024)
#define ADMIN_LOG_INTERVAL_MS 10000

static const char TAG[] = "admin";
static const char CT_METRICS[] = "text/plain; version=0.0.4; charset=utf-8";
static const char CT_TEXT[] = "text/plain; charset=utf-8";

enum conn_state { CONN_READING, CONN_HEALTH, CONN_WRITING, CONN_LINGER, CONN_CLOSING };

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer; /* the deadline of the current state */
	uv_write_t wr;
	uv_shutdown_t sh;
	struct admin *a;
	struct listener *l;	  /* the listener that accepted it */
	struct conn *prev, *next; /* in admin.conns while not CLOSING (newest first) */
	enum conn_state state;
	unsigned handles; /* initialised handles whose close callback is pending */
	bool line_done;   /* request line seen and parsed */
	bool head_only;   /* HEAD: no body */
	bool peer_eof;
	enum http_method method;
	enum http_path path;
	size_t len;  /* bytes in head[] */
	size_t scan; /* where to resume looking for the end of the head */
	size_t discarded;
	struct mbuf mb; /* /metrics body, owned until the write completes */
	struct health_probe probe; /* /health only; its handle counts in handles */
	char hdr[320];
	char body[160];
	char head[ADMIN_HEAD_MAX_BYTES]; /* request head, later a discard buffer */
};

struct listener {
	uv_tcp_t tcp;
	struct admin *a;
	bool inited;  /* uv handle initialised (needs uv_close) */
	bool stalled; /* a connection is waiting for uv_accept() */
	unsigned live; /* its connections that are not CLOSING */
};

struct admin {
	uv_loop_t *loop;
	struct admin_handlers h;
	struct sockaddr_storage target;
	bool have_target;
	struct admin_stats stats;
	struct listener lis[2];
	struct conn *conns; /* live connections (not CLOSING) */
	unsigned nconns;    /* allocated connections, closing ones included */
	unsigned refs;      /* open listeners + allocated conns + reject handles */
	bool closing;
	/* Used to reject a connection when malloc fails, so the listener never
	 * stalls on an unaccepted connection. */
	uv_tcp_t spare;
	bool spare_busy;
	struct log_limit lim_accept, lim_health;
};

static void admin_unref(struct admin *a)
{
	if (--a->refs == 0 && a->closing)
		free(a);
}

static void addr_str(const struct sockaddr *sa, char *out, size_t cap)
{
	char ip[64] = "?";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)sa;
		uv_ip4_name(s, ip, sizeof(ip));
		snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(s->sin_port));
	} else {
		const struct sockaddr_in6 *s = (const void *)sa;
		uv_ip6_name(s, ip, sizeof(ip));
		snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(s->sin6_port));
	}
}

/* ---- connection lifetime ---- */

static void conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct admin *a = c->a;

	if (--c->handles > 0 || c->state != CONN_CLOSING)
		return;
	mbuf_free(&c->mb);
	a->nconns--;
	free(c);
	admin_unref(a);
}

static void conn_close_udp(struct conn *c)
{
	health_probe_close(&c->probe, conn_handle_closed, c);
}

static void conn_close(struct conn *c)
{
	struct admin *a = c->a;

	if (c->state == CONN_CLOSING)
		return;
	c->state = CONN_CLOSING;
	c->l->live--;
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	conn_close_udp(c);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void conn_deadline(struct conn *c, uint64_t ms);

/* ---- responses ---- */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	if (c->state == CONN_CLOSING)
		return;
	if (status < 0 || c->peer_eof) {
		conn_close(c);
		return;
	}
	c->state = CONN_LINGER;
	conn_deadline(c, ADMIN_LINGER_MS);
}

static void write_cb(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	if (c->state == CONN_CLOSING)
		return;
	mbuf_free(&c->mb);
	if (status < 0) {
		conn_close(c);
		return;
	}
	c->sh.data = c;
	if (uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, shutdown_cb) < 0)
		conn_close(c);
}

/* Queue the response and move to WRITING. @p body must stay valid until the
 * write completes (a literal, c->body or c->mb). */
static void respond(struct conn *c, int status, const char *ctype, const char *body,
		    size_t body_len, const char *extra_headers)
{
	uv_buf_t bufs[2];
	unsigned nbufs = 1;
	int n;

	n = snprintf(c->hdr, sizeof(c->hdr),
		     "HTTP/1.1 %d %s\r\n"
		     "Content-Type: %s\r\n"
		     "Content-Length: %zu\r\n"
		     "%s"
		     "Cache-Control: no-store\r\n"
		     "Connection: close\r\n"
		     "\r\n",
		     status, reason_phrase(status), ctype, body_len,
		     extra_headers ? extra_headers : "");
	if (n < 0 || (size_t)n >= sizeof(c->hdr) || body_len > UINT_MAX) { /* cannot happen */
		conn_close(c);
		return;
	}
	bufs[0] = uv_buf_init(c->hdr, (unsigned)n);
	if (!c->head_only && body_len > 0) {
		/* libuv does not write through base; the cast only drops const. */
		bufs[1] = uv_buf_init((char *)(uintptr_t)body, (unsigned)body_len);
		nbufs = 2;
	}
	atomic_fetch_add_explicit(&c->a->stats.requests, 1, memory_order_relaxed);
	c->state = CONN_WRITING;
	conn_deadline(c, ADMIN_WRITE_TIMEOUT_MS);
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, nbufs, write_cb) < 0)
		conn_close(c);
}

static void respond_text(struct conn *c, int status, const char *text)
{
	respond(c, status, CT_TEXT, text, strlen(text), NULL);
}

/* ---- /health ---- */

static void health_done(struct conn *c, const char *why, int err)
{
	struct admin *a = c->a;

	uv_timer_stop(&c->timer);
	conn_close_udp(c);
	if (!why) {
		respond_text(c, 200, "ok\n");
		return;
	}
	atomic_fetch_add_explicit(&a->stats.health_failures, 1, memory_order_relaxed);
	if (err)
		snprintf(c->body, sizeof(c->body), "unhealthy: %s: %s\n", why, uv_strerror(err));
	else
		snprintf(c->body, sizeof(c->body), "unhealthy: %s\n", why);
	if (log_ratelimited(&a->lim_health, uv_now(a->loop), ADMIN_LOG_INTERVAL_MS))
		log_warn(TAG, "health check failed: %.*s", (int)(strlen(c->body) - 1), c->body);
	respond_text(c, 503, c->body);
}

static void health_result(void *arg, const char *why, int err)
{
	struct conn *c = arg;

	if (c->state == CONN_HEALTH)
		health_done(c, why, err);
}

static void health_start(struct conn *c)
{
	struct admin *a = c->a;
	const char *why;
	int rc;

	c->state = CONN_HEALTH;
	if (!a->have_target) {
		health_done(c, "no DNS address to query", 0);
		return;
	}
	rc = health_probe_start(&c->probe, a->loop, (const struct sockaddr *)&a->target,
				health_result, c, &why);
	if (c->probe.open)
		c->handles++;
	if (rc < 0) {
		health_done(c, why, rc);
		return;
	}
	conn_deadline(c, ADMIN_HEALTH_TIMEOUT_MS);
}

static void serve_metrics(struct conn *c)
{
	struct admin *a = c->a;

	if (a->h.metrics)
		a->h.metrics(a->h.arg, &c->mb);
	if (c->mb.oom) {
		mbuf_free(&c->mb);
		respond_text(c, 500, "metrics rendering failed: out of memory\n");
		return;
	}
	respond(c, 200, CT_METRICS, c->mb.data ? c->mb.data : "", c->mb.len, NULL);
}

static void dispatch(struct conn *c)
{
	struct admin *a = c->a;

	if (c->path == HTTP_PATH_UNKNOWN) {
		respond_text(c, 404, "not found\n");
		return;
	}
	if (c->method == HTTP_METHOD_OTHER) {
		respond(c, 405, CT_TEXT, "method not allowed\n", strlen("method not allowed\n"),
			"Allow: GET, HEAD\r\n");
		return;
	}
	switch (c->path) {
	case HTTP_PATH_METRICS:
		serve_metrics(c);
		break;
	case HTTP_PATH_HEALTH:
		health_start(c);
		break;
	case HTTP_PATH_READY:
		if (a->h.ready && a->h.ready(a->h.arg))
			respond_text(c, 200, "ready\n");
		else
			respond_text(c, 503, "not ready\n");
		break;
	default:
		respond_text(c, 404, "not found\n");
		break;
	}
}

/* Called after each read while READING. */
static void head_progress(struct conn *c)
{
	size_t end;

	if (!c->line_done) {
		const char *nl = memchr(c->head, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->head);
			if (n > 0 && c->head[n - 1] == '\r')
				n--;
			c->line_done = true;
			if (http_head_parse_line(c->head, n, &c->method, &c->path) < 0) {
				c->head_only = false;
				respond_text(c, 400, "bad request\n");
				return;
			}
			c->head_only = c->method == HTTP_METHOD_HEAD;
		}
	}
	if (http_head_find_end(c->head, c->len, &c->scan, &end)) {
		const char *nl = memchr(c->head, '\n', end);
		if (!c->line_done || !nl || !http_head_headers_valid(nl + 1, c->head + end)) {
			c->head_only = false;
			respond_text(c, 400, "bad request\n");
			return;
		}
		dispatch(c);
		return;
	}
	if (c->len >= sizeof(c->head)) {
		c->head_only = false;
		respond_text(c, 431, "request header too large\n");
	}
}

/* ---- connection I/O ---- */

static void conn_timeout(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->state == CONN_HEALTH)
		health_done(c, "timeout", 0);
	else
		conn_close(c);
}

static void conn_deadline(struct conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, conn_timeout, ms, 0);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)suggested;
	if (c->state == CONN_READING)
		*buf = uv_buf_init(c->head + c->len, (unsigned)(sizeof(c->head) - c->len));
	else
		*buf = uv_buf_init(c->head, sizeof(c->head)); /* discard */
}

static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	(void)buf;
	if (c->state == CONN_CLOSING || nread == 0)
		return;
	if (nread < 0) {
		/* EOF after a full request is a half-close: answer anyway. */
		if (nread == UV_EOF && c->state != CONN_READING && c->state != CONN_LINGER) {
			c->peer_eof = true;
			return;
		}
		conn_close(c);
		return;
	}
	if (c->state != CONN_READING) {
		c->discarded += (size_t)nread;
		if (c->discarded > ADMIN_DISCARD_MAX_BYTES)
			conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	head_progress(c);
}

static void accept_one(struct admin *a, struct listener *l);

static void reject_closed(uv_handle_t *h)
{
	struct admin *a = h->data;

	if (h != (uv_handle_t *)&a->spare) {
		free(h);
		admin_unref(a);
		return;
	}
	a->spare_busy = false;
	for (unsigned i = 0; i < 2 && !a->closing; i++) {
		if (a->lis[i].stalled) {
			a->lis[i].stalled = false;
			accept_one(a, &a->lis[i]);
		}
	}
	admin_unref(a);
}

/* Accept and close at once, with a best-effort 503. */
static void reject(struct admin *a, struct listener *l)
{
	static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\n"
				   "Content-Type: text/plain; charset=utf-8\r\n"
				   "Content-Length: 17\r\n"
				   "Connection: close\r\n"
				   "\r\n"
				   "too many clients\n";
	uv_tcp_t *t = malloc(sizeof(*t));
	uv_buf_t buf = uv_buf_init((char *)(uintptr_t)resp, sizeof(resp) - 1);

	if (!t) {
		if (a->spare_busy) {
			l->stalled = true; /* retried when the spare is closed */
			return;
		}
		t = &a->spare;
		a->spare_busy = true;
	}
	uv_tcp_init(a->loop, t);
	t->data = a;
	a->refs++;
	atomic_fetch_add_explicit(&a->stats.rejected_conns, 1, memory_order_relaxed);
	if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)t) == 0)
		(void)uv_try_write((uv_stream_t *)t, &buf, 1);
	uv_close((uv_handle_t *)t, reject_closed);
	if (log_ratelimited(&a->lim_accept, uv_now(a->loop), ADMIN_LOG_INTERVAL_MS))
		log_warn(TAG, "too many HTTP clients (%d per listener, all in a health check), "
			 "rejecting connections", ADMIN_MAX_CONNS);
}

/* How willing we are to close @p c to make room: 0 not at all (a health
 * check in flight), 1 a slow writer, 2 idle (reading a head, or lingering). */
static int evictable(const struct conn *c)
{
	switch (c->state) {
	case CONN_READING:
	case CONN_LINGER: return 2;
	case CONN_WRITING: return 1;
	default: return 0;
	}
}

/* @p l is at its budget: close its oldest most evictable client.
 * @return false when none may be closed. */
static bool make_room(struct admin *a, struct listener *l)
{
	struct conn *victim = NULL;
	int best = 0;

	for (struct conn *c = a->conns; c; c = c->next) {
		int e = c->l == l ? evictable(c) : 0;
		if (e && e >= best) { /* the list is newest first: the last is oldest */
			victim = c;
			best = e;
		}
	}
	if (!victim)
		return false;
	atomic_fetch_add_explicit(&a->stats.evicted_conns, 1, memory_order_relaxed);
	if (log_ratelimited(&a->lim_accept, uv_now(a->loop), ADMIN_LOG_INTERVAL_MS))
		log_warn(TAG, "%d HTTP clients on one listener: closing the oldest idle one",
			 ADMIN_MAX_CONNS);
	conn_close(victim);
	return true;
}

static void accept_one(struct admin *a, struct listener *l)
{
	struct conn *c = NULL;

	if ((l->live < ADMIN_MAX_CONNS || make_room(a, l)) && a->nconns < ADMIN_MAX_ALLOC)
		c = malloc(sizeof(*c));
	if (!c) {
		reject(a, l);
		return;
	}
	memset(c, 0, offsetof(struct conn, head));
	c->a = a;
	c->l = l;
	l->live++;
	c->state = CONN_READING;
	uv_tcp_init(a->loop, &c->tcp);
	uv_timer_init(a->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	c->next = a->conns;
	if (a->conns)
		a->conns->prev = c;
	a->conns = c;
	a->nconns++;
	a->refs++;
	if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read) < 0) {
		conn_close(c);
		return;
	}
	conn_deadline(c, ADMIN_HEAD_TIMEOUT_MS);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct admin *a = l->a;

	if (status < 0) {
		if (log_ratelimited(&a->lim_accept, uv_now(a->loop), ADMIN_LOG_INTERVAL_MS))
			log_warn(TAG, "accept: %s", uv_strerror(status));
		return;
	}
	accept_one(a, l);
}

/* ---- lifecycle ---- */

static void listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	admin_unref(l->a);
}

/* A wildcard DNS listen address (0.0.0.0, ::) is reached through loopback;
 * querying it by name would make replies come from an address we filter out. */
static void target_unspecified_to_loopback(struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		if (s->sin_addr.s_addr == htonl(INADDR_ANY))
			s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&s->sin6_addr))
			s->sin6_addr = in6addr_loopback;
	}
}

/* A bound, listening, non-blocking socket; errors come back before any libuv
 * handle exists, so a failed admin_start leaves nothing to close. */
static int listen_socket(const struct sockaddr *sa, int *out)
{
	socklen_t len = netaddr_sa_len(sa);
	int fd, on = 1, rc;

	if (len == 0)
		return UV_EAFNOSUPPORT;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0)
		goto fail;
	/* During a rolling update (surge) the new nodedns binds the same
	 * addresses while the old one drains, as the DNS sockets do. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
		goto fail;
	if (sa->sa_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
		goto fail;
	if (bind(fd, sa, len) < 0 || listen(fd, ADMIN_BACKLOG) < 0)
		goto fail;
	*out = fd;
	return 0;
fail:
	rc = -errno;
	close(fd);
	return rc;
}

int admin_start(uv_loop_t *loop, const struct sockaddr *metrics_addr,
		const struct sockaddr *health_addr, const struct sockaddr *dns_target,
		const struct admin_handlers *handlers, struct admin **out)
{
	const struct sockaddr *addrs[2];
	int fds[2] = { -1, -1 };
	unsigned n = 0, i;
	struct admin *a;
	int rc = 0;

	if (!loop || !handlers || !out)
		return UV_EINVAL;
	if (dns_target && netaddr_sa_len(dns_target) == 0)
		return UV_EAFNOSUPPORT;
	if (metrics_addr)
		addrs[n++] = metrics_addr;
	if (health_addr && !(metrics_addr && netaddr_sa_equal(metrics_addr, health_addr)))
		addrs[n++] = health_addr;

	a = calloc(1, sizeof(*a));
	if (!a)
		return UV_ENOMEM;
	a->loop = loop;
	a->h = *handlers;
	if (dns_target) {
		memcpy(&a->target, dns_target, netaddr_sa_len(dns_target));
		a->have_target = true;
		target_unspecified_to_loopback(&a->target);
	}
	for (i = 0; i < n; i++) {
		rc = listen_socket(addrs[i], &fds[i]);
		if (rc < 0)
			goto fail;
	}
	for (i = 0; i < n; i++) {
		struct listener *l = &a->lis[i];
		l->a = a;
		uv_tcp_init(loop, &l->tcp);
		l->tcp.data = l;
		l->inited = true;
		a->refs++;
		rc = uv_tcp_open(&l->tcp, fds[i]);
		if (rc < 0)
			goto fail;
		fds[i] = -1; /* owned by the handle now */
		rc = uv_listen((uv_stream_t *)&l->tcp, ADMIN_BACKLOG, on_connection);
		if (rc < 0)
			goto fail;
	}
	for (i = 0; i < n; i++) {
		char s[96];
		addr_str(addrs[i], s, sizeof(s));
		log_info(TAG, "serving /metrics, /health, /ready on http://%s", s);
	}
	*out = a;
	return 0;

fail:
	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	/* Only reached with initialised handles when uv_tcp_open/uv_listen
	 * fail, which they do not for a fresh listening socket; they close on
	 * the next loop turn and free @a. */
	a->closing = true;
	for (i = 0; i < n; i++)
		if (a->lis[i].inited)
			uv_close((uv_handle_t *)&a->lis[i].tcp, listener_closed);
	if (a->refs == 0)
		free(a);
	return rc;
}

const struct admin_stats *admin_stats(const struct admin *a)
{
	return a ? &a->stats : NULL;
}

void admin_close(struct admin *a)
{
	if (!a || a->closing)
		return;
	a->closing = true;
	for (unsigned i = 0; i < 2; i++)
		if (a->lis[i].inited)
			uv_close((uv_handle_t *)&a->lis[i].tcp, listener_closed);
	while (a->conns)
		conn_close(a->conns);
	if (a->refs == 0)
		free(a);
}
