/* tests/unit/test_admin.c - the HTTP admin endpoints, over real loopback sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "nodedns/io/admin.h"
#include "nodedns/io/health.h"
#include "nodedns/util/log.h"

/*
 * Each test runs the admin and a fake DNS responder on a real libuv loop in
 * the main thread, and a blocking-socket HTTP client in a second thread. The
 * client records what it saw; the main thread asserts after joining it
 * (cmocka asserts must not run on another thread).
 */

#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define MAX_RESP 16

enum dns_mode {
	DNS_ANSWER,        /* echo the question, QR=1, NOERROR */
	DNS_UPPER_REFUSED, /* QR=1, REFUSED, question in upper case */
	DNS_SILENT,        /* never answer */
	DNS_WRONG_ID,
	DNS_WRONG_NAME,
	DNS_NO_QR, /* echo the query unchanged */
	DNS_CLOSED, /* nothing listens on the target port */
};

struct fake_dns {
	uv_udp_t udp;
	_Atomic int mode;
	int queries;     /* loop thread only */
	int bad_queries; /* queries not shaped like id.server. CH TXT, RD=0 */
	char buf[1024];
};

struct http_resp {
	char *raw;
	size_t len;
	int status; /* -1: no status line */
	long clen;  /* Content-Length, -1 if absent */
	const char *body;
	size_t body_len;
	char ctype[96];
	bool allow; /* "Allow: GET, HEAD" present */
	int err;    /* errno of a failed recv, 0 on clean EOF */
};

struct fixture {
	uv_loop_t loop;
	uv_async_t done;
	struct fake_dns dns;
	bool dns_running;
	struct sockaddr_in dns_addr;
	struct admin *admin;
	int port; /* admin port on 127.0.0.1 */
	_Atomic bool ready;
	_Atomic int metrics_calls;
	size_t metrics_fill; /* pad the /metrics body to at least this many bytes */
	bool metrics_oom;
	void (*client)(struct fixture *);
	_Atomic bool close_sent;
	pthread_t th;
	/* copied from admin_stats() just before admin_close() */
	uint64_t requests, health_failures, rejected, evicted;
	/* written by the client thread */
	struct http_resp r[MAX_RESP];
	double t[MAX_RESP];
	long v[MAX_RESP];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A port that was free a moment ago (bind to 0, read it, close). */
static int pick_port(int type, int family)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd = socket(family, type, 0), port = -1;

	if (fd < 0)
		return -1;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		s->sin6_addr = in6addr_loopback;
		len = sizeof(*s);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) == 0 &&
	    getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					       : ((struct sockaddr_in6 *)&ss)->sin6_port);
	close(fd);
	return port;
}

static struct sockaddr_in v4(int port)
{
	struct sockaddr_in s;
	memset(&s, 0, sizeof(s));
	s.sin_family = AF_INET;
	s.sin_port = htons((uint16_t)port);
	s.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return s;
}

/* ---- fake DNS responder (loop thread) ---- */

static void dns_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct fake_dns *d = h->data;
	(void)suggested;
	*buf = uv_buf_init(d->buf, sizeof(d->buf));
}

static void dns_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
		     unsigned flags)
{
	static const uint8_t question[] = { 0x02, 'i', 'd', 0x06, 's', 'e', 'r', 'v',
					    'e',  'r', 0x00, 0x00, 0x10, 0x00, 0x03 };
	static const uint8_t zeros[6];
	struct fake_dns *d = h->data;
	uint8_t *p = (uint8_t *)buf->base, r[64];
	uv_buf_t out;

	(void)flags;
	if (n <= 0 || !from)
		return;
	d->queries++;
	if (n != 27 || p[2] != 0 || p[3] != 0 || p[4] != 0 || p[5] != 1 ||
	    memcmp(p + 6, zeros, 6) != 0 || memcmp(p + 12, question, sizeof(question)) != 0) {
		d->bad_queries++;
		return;
	}
	memcpy(r, p, (size_t)n);
	switch (atomic_load(&d->mode)) {
	case DNS_ANSWER:
		r[2] = 0x84; /* QR AA */
		r[3] = 0x80; /* RA */
		break;
	case DNS_UPPER_REFUSED:
		r[2] = 0x80;
		r[3] = 0x05;
		for (int i = 12; i < 23; i++)
			if (r[i] >= 'a' && r[i] <= 'z')
				r[i] = (uint8_t)(r[i] - 'a' + 'A');
		break;
	case DNS_WRONG_ID:
		r[2] = 0x80;
		r[0] ^= 0x5a;
		break;
	case DNS_WRONG_NAME:
		r[2] = 0x80;
		r[13] = 'x';
		break;
	case DNS_NO_QR:
		break;
	default:
		return;
	}
	out = uv_buf_init((char *)r, (unsigned)n);
	uv_udp_try_send(h, &out, 1, from);
}

/* ---- handlers ---- */

static void metrics_cb(void *arg, struct mbuf *out)
{
	struct fixture *f = arg;
	int calls = atomic_fetch_add(&f->metrics_calls, 1) + 1;

	mbuf_printf(out, "# TYPE nodedns_test_total counter\nnodedns_test_total %d\n", calls);
	while (out->len < f->metrics_fill && !out->oom)
		mbuf_printf(out, "nodedns_pad{i=\"%zu\"} 1\n", out->len);
	if (f->metrics_oom)
		out->oom = true;
}

static bool ready_cb(void *arg)
{
	struct fixture *f = arg;
	return atomic_load(&f->ready);
}

/* ---- HTTP client (client thread, blocking sockets) ---- */

static int tcp_connect_to(const struct sockaddr *sa, socklen_t len)
{
	struct timeval tv = { .tv_sec = 10 };
	int fd = socket(sa->sa_family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, sa, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int tcp_connect(int port)
{
	struct sockaddr_in s = v4(port);
	return tcp_connect_to((struct sockaddr *)&s, sizeof(s));
}

static void send_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		c += w;
		n -= (size_t)w;
	}
}

static const char *find_header(const struct http_resp *r, const char *name)
{
	size_t nl = strlen(name);
	const char *end = r->body ? r->body : r->raw + r->len;

	for (const char *p = r->raw; p && p + nl + 2 < end; p++) {
		if (p[0] == '\r' && p[1] == '\n' && strncasecmp(p + 2, name, nl) == 0 &&
		    p[2 + nl] == ':') {
			p += 2 + nl + 1;
			while (*p == ' ')
				p++;
			return p;
		}
	}
	return NULL;
}

/* Read until EOF or error, then parse. */
static void read_resp(int fd, struct http_resp *r)
{
	size_t cap = 4096;
	const char *h;

	memset(r, 0, sizeof(*r));
	r->raw = malloc(cap + 1);
	for (;;) {
		if (r->len == cap) {
			cap *= 2;
			r->raw = realloc(r->raw, cap + 1);
		}
		ssize_t n = recv(fd, r->raw + r->len, cap - r->len, 0);
		if (n < 0) {
			r->err = errno;
			break;
		}
		if (n == 0)
			break;
		r->len += (size_t)n;
	}
	r->raw[r->len] = '\0';
	r->status = -1;
	r->clen = -1;
	if (sscanf(r->raw, "HTTP/1.1 %d ", &r->status) != 1)
		r->status = -1;
	char *sep = r->len ? memmem(r->raw, r->len, "\r\n\r\n", 4) : NULL;
	if (sep) {
		r->body = sep + 4;
		r->body_len = r->len - (size_t)(r->body - r->raw);
	}
	if ((h = find_header(r, "Content-Length")))
		r->clen = strtol(h, NULL, 10);
	if ((h = find_header(r, "Content-Type"))) {
		size_t n = strcspn(h, "\r");
		if (n >= sizeof(r->ctype))
			n = sizeof(r->ctype) - 1;
		memcpy(r->ctype, h, n);
	}
	h = find_header(r, "Allow");
	r->allow = h && strncmp(h, "GET, HEAD\r\n", 11) == 0;
}

static void http_raw(int port, const void *req, size_t len, struct http_resp *r)
{
	int fd = tcp_connect(port);
	memset(r, 0, sizeof(*r));
	r->status = -2;
	if (fd < 0)
		return;
	send_all(fd, req, len);
	read_resp(fd, r);
	close(fd);
}

static void http(int port, const char *req, struct http_resp *r)
{
	http_raw(port, req, strlen(req), r);
}

static void http_get(int port, const char *method, const char *path, struct http_resp *r)
{
	char req[512];
	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n",
		 method, path);
	http(port, req, r);
}

static void resp_free(struct http_resp *r)
{
	free(r->raw);
	memset(r, 0, sizeof(*r));
}

/* ---- fixture ---- */

static void on_done(uv_async_t *h)
{
	struct fixture *f = h->data;
	const struct admin_stats *st = admin_stats(f->admin);

	if (st) {
		f->requests = atomic_load(&st->requests);
		f->health_failures = atomic_load(&st->health_failures);
		f->rejected = atomic_load(&st->rejected_conns);
		f->evicted = atomic_load(&st->evicted_conns);
	}
	admin_close(f->admin);
	f->admin = NULL;
	if (f->dns_running)
		uv_close((uv_handle_t *)&f->dns.udp, NULL);
	uv_close((uv_handle_t *)&f->done, NULL);
}

/* Ask the loop to close everything; the first call wins. */
static void trigger_close(struct fixture *f)
{
	if (!atomic_exchange(&f->close_sent, true))
		uv_async_send(&f->done);
}

static void *client_main(void *arg)
{
	struct fixture *f = arg;
	f->client(f);
	trigger_close(f);
	return NULL;
}

static struct fixture *fx_new(enum dns_mode mode)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int port;

	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(uv_async_init(&f->loop, &f->done, on_done), 0);
	f->done.data = f;
	atomic_store(&f->dns.mode, mode);
	if (mode == DNS_CLOSED) {
		port = pick_port(SOCK_DGRAM, AF_INET);
		assert_true(port > 0);
		f->dns_addr = v4(port);
	} else {
		int len = sizeof(f->dns_addr);
		f->dns_addr = v4(0);
		assert_int_equal(uv_udp_init(&f->loop, &f->dns.udp), 0);
		f->dns.udp.data = &f->dns;
		f->dns_running = true;
		assert_int_equal(uv_udp_bind(&f->dns.udp, (struct sockaddr *)&f->dns_addr, 0), 0);
		assert_int_equal(uv_udp_getsockname(&f->dns.udp, (struct sockaddr *)&f->dns_addr,
						    &len), 0);
		assert_int_equal(uv_udp_recv_start(&f->dns.udp, dns_alloc, dns_recv), 0);
	}
	return f;
}

static void fx_start_at(struct fixture *f, const struct sockaddr *m, const struct sockaddr *h)
{
	struct admin_handlers hd = { .metrics = metrics_cb, .ready = ready_cb, .arg = f };
	assert_int_equal(admin_start(&f->loop, m, h, (struct sockaddr *)&f->dns_addr, &hd,
				     &f->admin), 0);
	assert_non_null(f->admin);
}

/* Metrics and health on the same 127.0.0.1 port (one listener). */
static struct fixture *fx_start(enum dns_mode mode)
{
	struct fixture *f = fx_new(mode);
	struct sockaddr_in a;

	f->port = pick_port(SOCK_STREAM, AF_INET);
	assert_true(f->port > 0);
	a = v4(f->port);
	fx_start_at(f, (struct sockaddr *)&a, (struct sockaddr *)&a);
	return f;
}

static void fx_run(struct fixture *f, void (*client)(struct fixture *))
{
	f->client = client;
	assert_int_equal(pthread_create(&f->th, NULL, client_main, f), 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(pthread_join(f->th, NULL), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void fx_free(struct fixture *f)
{
	for (int i = 0; i < MAX_RESP; i++)
		resp_free(&f->r[i]);
	free(f);
}

static void assert_body(const struct http_resp *r, const char *body)
{
	assert_non_null(r->body);
	assert_int_equal(r->body_len, strlen(body));
	assert_memory_equal(r->body, body, strlen(body));
	assert_int_equal(r->clen, (long)strlen(body));
}

/* ---- /metrics ---- */

static void client_metrics(struct fixture *f)
{
	static const char *pieces[] = { "GET /met", "rics HTTP/1.1\r", "\nHost: x\r\n", "\r\n" };
	int fd;

	http_get(f->port, "GET", "/metrics", &f->r[0]);
	http_get(f->port, "GET", "/metrics?x=1&y=2", &f->r[1]);
	http(f->port, "GET /metrics HTTP/1.0\n\n", &f->r[2]);
	http(f->port, "GET http://localhost:9253/metrics?a HTTP/1.1\r\nHost: localhost\r\n\r\n",
	     &f->r[3]);
	/* A head that arrives in pieces. */
	fd = tcp_connect(f->port);
	for (size_t i = 0; fd >= 0 && i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		send_all(fd, pieces[i], strlen(pieces[i]));
		sleep_ms(30);
	}
	if (fd >= 0) {
		read_resp(fd, &f->r[4]);
		close(fd);
	}
	/* A request with a body and a half-closed write side still gets an answer. */
	fd = tcp_connect(f->port);
	if (fd >= 0) {
		const char *req = "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
		send_all(fd, req, strlen(req));
		shutdown(fd, SHUT_WR);
		read_resp(fd, &f->r[5]);
		close(fd);
	}
}

static void test_metrics(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_metrics);
	for (int i = 0; i < 6; i++) {
		char want[128];
		snprintf(want, sizeof(want),
			 "# TYPE nodedns_test_total counter\nnodedns_test_total %d\n", i + 1);
		assert_int_equal(f->r[i].status, 200);
		assert_string_equal(f->r[i].ctype, CT_METRICS);
		assert_body(&f->r[i], want);
		assert_non_null(strstr(f->r[i].raw, "\r\nConnection: close\r\n"));
		assert_int_equal(f->r[i].err, 0);
	}
	assert_int_equal(f->requests, 6);
	assert_int_equal(f->rejected, 0);
	fx_free(f);
}

static void client_metrics_large(struct fixture *f)
{
	http_get(f->port, "GET", "/metrics", &f->r[0]);
	http_get(f->port, "HEAD", "/metrics", &f->r[1]);
}

static void test_metrics_large(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	f->metrics_fill = 4u << 20;
	fx_run(f, client_metrics_large);
	assert_int_equal(f->r[0].status, 200);
	assert_true(f->r[0].body_len >= f->metrics_fill);
	assert_int_equal(f->r[0].clen, (long)f->r[0].body_len);
	assert_memory_equal(f->r[0].body, "# TYPE nodedns_test_total", 25);
	assert_memory_equal(f->r[0].body + f->r[0].body_len - 2, "1\n", 2);
	/* HEAD: same headers, no body. */
	assert_int_equal(f->r[1].status, 200);
	assert_string_equal(f->r[1].ctype, CT_METRICS);
	assert_int_equal(f->r[1].clen, (long)f->r[0].body_len);
	assert_int_equal(f->r[1].body_len, 0);
	fx_free(f);
}

static void client_one_metrics(struct fixture *f)
{
	http_get(f->port, "GET", "/metrics", &f->r[0]);
}

static void test_metrics_oom(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	f->metrics_oom = true;
	fx_run(f, client_one_metrics);
	assert_int_equal(f->r[0].status, 500);
	assert_int_equal(f->r[0].clen, (long)f->r[0].body_len);
	fx_free(f);
}

/* ---- /ready ---- */

static void client_ready(struct fixture *f)
{
	http_get(f->port, "GET", "/ready", &f->r[0]);
	atomic_store(&f->ready, true);
	http_get(f->port, "GET", "/ready", &f->r[1]);
	http_get(f->port, "HEAD", "/ready", &f->r[2]);
	atomic_store(&f->ready, false);
	http_get(f->port, "HEAD", "/ready", &f->r[3]);
}

static void test_ready(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_ready);
	assert_int_equal(f->r[0].status, 503);
	assert_body(&f->r[0], "not ready\n");
	assert_string_equal(f->r[0].ctype, "text/plain; charset=utf-8");
	assert_int_equal(f->r[1].status, 200);
	assert_body(&f->r[1], "ready\n");
	assert_int_equal(f->r[2].status, 200);
	assert_int_equal(f->r[2].clen, 6);
	assert_int_equal(f->r[2].body_len, 0);
	assert_int_equal(f->r[3].status, 503);
	assert_int_equal(f->r[3].clen, 10);
	assert_int_equal(f->r[3].body_len, 0);
	fx_free(f);
}

/* ---- /health ---- */

/* The probe's reply check on its own: ID, QR, opcode, QDCOUNT, question. */
static void test_health_reply_matches(void **state)
{
	(void)state;
	static const uint8_t q[HEALTH_QUERY_BYTES] = {
		0xab, 0xcd, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 'i', 'd', 0x06, 's', 'e', 'r', 'v', 'e', 'r', 0x00, 0x00, 0x10, 0x00, 0x03,
	};
	uint8_t r[64];

	memcpy(r, q, sizeof(q));
	r[2] = 0x80;
	r[3] = 0x05; /* REFUSED still counts as alive */
	assert_true(health_reply_matches(q, r, sizeof(q)));
	assert_true(health_reply_matches(q, r, sizeof(r)));
	assert_false(health_reply_matches(q, r, sizeof(q) - 1));
	r[14] = 'D'; /* case does not matter */
	assert_true(health_reply_matches(q, r, sizeof(q)));
	r[14] = 'x';
	assert_false(health_reply_matches(q, r, sizeof(q)));
	r[14] = 'd';
	r[1] ^= 1; /* ID */
	assert_false(health_reply_matches(q, r, sizeof(q)));
	r[1] ^= 1;
	r[2] = 0x00; /* QR=0 */
	assert_false(health_reply_matches(q, r, sizeof(q)));
	r[2] = 0x80 | (2 << 3); /* opcode STATUS */
	assert_false(health_reply_matches(q, r, sizeof(q)));
	r[2] = 0x80;
	r[5] = 2; /* QDCOUNT */
	assert_false(health_reply_matches(q, r, sizeof(q)));
	r[5] = 1;
	r[24] = 0x01; /* type A */
	assert_false(health_reply_matches(q, r, sizeof(q)));
}


static void client_health_ok(struct fixture *f)
{
	double t0 = now_s();
	http_get(f->port, "GET", "/health", &f->r[0]);
	f->t[0] = now_s() - t0;
	http_get(f->port, "HEAD", "/health", &f->r[1]);
	atomic_store(&f->dns.mode, DNS_UPPER_REFUSED);
	http_get(f->port, "GET", "/health?verbose", &f->r[2]);
}

static void test_health_ok(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_health_ok);
	assert_int_equal(f->r[0].status, 200);
	assert_body(&f->r[0], "ok\n");
	assert_true(f->t[0] < 0.5);
	assert_int_equal(f->r[1].status, 200);
	assert_int_equal(f->r[1].clen, 3);
	assert_int_equal(f->r[1].body_len, 0);
	assert_int_equal(f->r[2].status, 200);
	assert_int_equal(f->dns.queries, 3);
	assert_int_equal(f->dns.bad_queries, 0);
	assert_int_equal(f->health_failures, 0);
	fx_free(f);
}

static void client_health_timed(struct fixture *f);

/* A wildcard listen address as the target is queried through loopback. */
static void test_health_wildcard_target(void **state)
{
	struct fixture *f = fx_new(DNS_ANSWER);
	struct sockaddr_in a;
	(void)state;

	f->dns_addr.sin_addr.s_addr = htonl(INADDR_ANY);
	f->port = pick_port(SOCK_STREAM, AF_INET);
	a = v4(f->port);
	fx_start_at(f, NULL, (struct sockaddr *)&a);
	fx_run(f, client_health_timed);
	assert_int_equal(f->r[0].status, 200);
	assert_body(&f->r[0], "ok\n");
	assert_int_equal(f->dns.queries, 1);
	fx_free(f);
}

static void client_health_timed(struct fixture *f)
{
	double t0 = now_s();
	http_get(f->port, "GET", "/health", &f->r[0]);
	f->t[0] = now_s() - t0;
}

static void check_unhealthy(struct fixture *f, double tmin, double tmax, const char *reason)
{
	assert_int_equal(f->r[0].status, 503);
	assert_non_null(f->r[0].body);
	assert_int_equal(f->r[0].clen, (long)f->r[0].body_len);
	assert_true(f->r[0].body_len > 11);
	assert_memory_equal(f->r[0].body, "unhealthy: ", 11);
	assert_memory_equal(f->r[0].body + f->r[0].body_len - 1, "\n", 1);
	if (reason)
		assert_non_null(strstr(f->r[0].body, reason));
	assert_true(f->t[0] >= tmin);
	assert_true(f->t[0] < tmax);
	assert_int_equal(f->health_failures, 1);
}

static void run_unhealthy(enum dns_mode mode, double tmin, double tmax, const char *reason)
{
	struct fixture *f = fx_start(mode);
	fx_run(f, client_health_timed);
	check_unhealthy(f, tmin, tmax, reason);
	if (mode != DNS_CLOSED)
		assert_int_equal(f->dns.queries, 1);
	fx_free(f);
}

static void test_health_silent(void **state)
{
	(void)state;
	run_unhealthy(DNS_SILENT, 0.95, 1.6, "timeout");
}

static void test_health_wrong_id(void **state)
{
	(void)state;
	run_unhealthy(DNS_WRONG_ID, 0.95, 1.6, "timeout");
}

static void test_health_wrong_name(void **state)
{
	(void)state;
	run_unhealthy(DNS_WRONG_NAME, 0.95, 1.6, "timeout");
}

static void test_health_no_qr(void **state)
{
	(void)state;
	run_unhealthy(DNS_NO_QR, 0.95, 1.6, "timeout");
}

static void test_health_refused(void **state)
{
	(void)state;
	/* ICMP port unreachable on the connected UDP socket fails it at once. */
	run_unhealthy(DNS_CLOSED, 0.0, 0.9, "refused");
}

static void client_health_gone(struct fixture *f)
{
	const char *req = "GET /health HTTP/1.1\r\n\r\n";
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int fd;

	/* Reset right after asking. */
	fd = tcp_connect(f->port);
	if (fd >= 0) {
		send_all(fd, req, strlen(req));
		sleep_ms(100);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
	}
	/* Orderly close right after asking: the answer goes nowhere. */
	fd = tcp_connect(f->port);
	if (fd >= 0) {
		send_all(fd, req, strlen(req));
		sleep_ms(100);
		close(fd);
	}
	sleep_ms(1300);
	http_get(f->port, "GET", "/ready", &f->r[0]);
}

static void test_health_client_gone(void **state)
{
	struct fixture *f = fx_start(DNS_SILENT);
	(void)state;

	fx_run(f, client_health_gone);
	assert_int_equal(f->r[0].status, 503);
	assert_body(&f->r[0], "not ready\n");
	assert_int_equal(f->dns.queries, 2);
	fx_free(f);
}

/* ---- errors and hostile input ---- */

static void client_errors(struct fixture *f)
{
	static const unsigned char garbage[] = { 0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0xff,
						 0x00, 0x0a, 0x0a, 0x80, 0x00, 0x0d, 0x0a };
	char big[9000];
	size_t n;

	http_get(f->port, "GET", "/nope", &f->r[0]);
	http_get(f->port, "GET", "/metrics/", &f->r[1]);
	http_get(f->port, "POST", "/metrics", &f->r[2]);
	http_get(f->port, "HEAD", "/nope", &f->r[3]);
	http_raw(f->port, garbage, sizeof(garbage), &f->r[4]);
	http(f->port, "GET /metrics HTTP/2.0\r\n\r\n", &f->r[5]);
	http(f->port, "GET /metrics\r\n\r\n", &f->r[6]);
	http(f->port, "GET  /metrics HTTP/1.1\r\n\r\n", &f->r[7]);
	http(f->port, "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", &f->r[8]);
	http_raw(f->port, "GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n", 33, &f->r[9]);
	http(f->port, "G(T /metrics HTTP/1.1\r\n\r\n", &f->r[10]);

	/* Exactly 8192 bytes of head: accepted. One more: 431. */
	n = (size_t)snprintf(big, sizeof(big), "GET /ready HTTP/1.1\r\nX-Pad: ");
	memset(big + n, 'a', 8192 - n - 4);
	memcpy(big + 8192 - 4, "\r\n\r\n", 4);
	http_raw(f->port, big, 8192, &f->r[11]);
	memmove(big + n + 1, big + n, 8192 - n);
	big[n] = 'a';
	http_raw(f->port, big, 8193, &f->r[12]);
	/* Much larger than the limit: 431 after 8 KiB, the rest discarded. */
	{
		char *huge = malloc(40000);
		memcpy(huge, "GET /metrics HTTP/1.1\r\nX: ", 26);
		memset(huge + 26, 'b', 40000 - 26 - 4);
		memcpy(huge + 40000 - 4, "\r\n\r\n", 4);
		http_raw(f->port, huge, 40000, &f->r[13]);
		free(huge);
	}
	http(f->port, "DELETE /health HTTP/1.1\r\n\r\n", &f->r[14]);
	http_get(f->port, "GET", "/ready", &f->r[15]);
}

static void test_errors(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_errors);
	assert_int_equal(f->r[0].status, 404);
	assert_body(&f->r[0], "not found\n");
	assert_int_equal(f->r[1].status, 404);
	assert_int_equal(f->r[2].status, 405);
	assert_true(f->r[2].allow);
	assert_int_equal(f->r[2].clen, (long)f->r[2].body_len);
	assert_int_equal(f->r[3].status, 404);
	assert_int_equal(f->r[3].body_len, 0);
	assert_int_equal(f->r[3].clen, 10);
	for (int i = 4; i <= 10; i++) {
		assert_int_equal(f->r[i].status, 400);
		assert_int_equal(f->r[i].clen, (long)f->r[i].body_len);
	}
	assert_int_equal(f->r[11].status, 503); /* /ready, not ready */
	assert_int_equal(f->r[12].status, 431);
	assert_int_equal(f->r[12].clen, (long)f->r[12].body_len);
	assert_int_equal(f->r[13].status, 431);
	assert_int_equal(f->r[14].status, 405);
	assert_true(f->r[14].allow);
	assert_int_equal(f->r[15].status, 503);
	assert_int_equal(f->metrics_calls, 0);
	assert_int_equal(f->requests, 16);
	fx_free(f);
}

static void client_hostile(struct fixture *f)
{
	unsigned char *junk = malloc(1 << 20);
	uint32_t x = 2463534242u;
	int fd;

	for (size_t i = 0; i < (1u << 20); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		junk[i] = (unsigned char)x;
	}
	/* Random bytes, a lot of them. */
	fd = tcp_connect(f->port);
	if (fd >= 0) {
		send_all(fd, junk, 1u << 20);
		read_resp(fd, &f->r[0]);
		close(fd);
	}
	/* No newline at all, past the limit, then stop sending and read. */
	memset(junk, 'A', 20000);
	http_raw(f->port, junk, 20000, &f->r[1]);
	/* A client that connects and leaves, repeatedly. */
	for (int i = 0; i < 100; i++) {
		fd = tcp_connect(f->port);
		if (fd >= 0) {
			if (i % 2)
				send_all(fd, "GET /metr", 9);
			close(fd);
		}
	}
	free(junk);
	sleep_ms(50);
	http_get(f->port, "GET", "/metrics", &f->r[2]);
}

static void test_hostile(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_hostile);
	/* The first may be cut short by a reset while we were still sending. */
	assert_true(f->r[0].status == 400 || f->r[0].status == 431 || f->r[0].status == -1);
	assert_int_equal(f->r[1].status, 431);
	assert_int_equal(f->r[2].status, 200);
	/* The connect/close burst may briefly exceed 64 (accepted faster than
	 * their EOFs are read), which rejects some; never more than the burst. */
	assert_true(f->rejected <= 100);
	fx_free(f);
}

/* ---- limits and deadlines ---- */

static void client_conn_limit(struct fixture *f)
{
	const char *req = "GET /metrics HTTP/1.1\r\n\r\n";
	int fds[64], extra;
	int ok = 0;

	for (int i = 0; i < 64; i++) {
		fds[i] = tcp_connect(f->port);
		ok += fds[i] >= 0;
	}
	f->v[0] = ok;
	sleep_ms(200);
	extra = tcp_connect(f->port);
	if (extra >= 0) {
		send_all(extra, req, strlen(req));
		read_resp(extra, &f->r[0]);
		close(extra);
	} else {
		f->r[0].status = -2;
	}
	/* The oldest idle one was closed to make room; the others are still
	 * served. */
	if (fds[0] >= 0) {
		read_resp(fds[0], &f->r[3]);
		f->v[1] = f->r[3].len == 0;
	}
	if (fds[1] >= 0) {
		const char *req = "GET /metrics HTTP/1.1\r\n\r\n";
		send_all(fds[1], req, strlen(req));
		read_resp(fds[1], &f->r[1]);
	}
	for (int i = 0; i < 64; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	sleep_ms(200);
	/* And once they are gone there is room again. */
	http_get(f->port, "GET", "/metrics", &f->r[2]);
}

static void test_conn_limit(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_conn_limit);
	assert_int_equal(f->v[0], 64);
	/* The 65th is served; the oldest idle one was closed without an answer. */
	assert_int_equal(f->r[0].status, 200);
	assert_int_equal(f->v[1], 1);
	assert_int_equal(f->r[1].status, 200);
	assert_int_equal(f->r[2].status, 200);
	assert_int_equal(f->rejected, 0);
	assert_int_equal(f->evicted, 1);
	assert_int_equal(f->requests, 3);
	fx_free(f);
}

static void client_head_timeout(struct fixture *f)
{
	int fd = tcp_connect(f->port);
	double t0 = now_s();

	if (fd < 0)
		return;
	send_all(fd, "GET /metrics HTTP/1.1\r\n", 23);
	read_resp(fd, &f->r[0]);
	f->t[0] = now_s() - t0;
	close(fd);
}

static void test_head_timeout(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_head_timeout);
	assert_int_equal(f->r[0].len, 0); /* closed without an answer */
	assert_true(f->t[0] >= 1.9);
	assert_true(f->t[0] < 3.5);
	assert_int_equal(f->requests, 0);
	fx_free(f);
}

/* ---- admin_close with work in flight ---- */

static void client_close_partial(struct fixture *f)
{
	int fd = tcp_connect(f->port);
	int fd2 = tcp_connect(f->port);

	if (fd < 0 || fd2 < 0)
		return;
	send_all(fd, "GET /metr", 9);
	sleep_ms(100);
	trigger_close(f);
	read_resp(fd, &f->r[0]);
	read_resp(fd2, &f->r[1]);
	close(fd);
	close(fd2);
	/* The listener is gone too. */
	f->v[0] = tcp_connect(f->port) < 0;
}

static void test_close_open_conn(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	fx_run(f, client_close_partial);
	assert_int_equal(f->r[0].len, 0);
	assert_int_equal(f->r[1].len, 0);
	assert_int_equal(f->v[0], 1);
	fx_free(f);
}

static void client_close_health(struct fixture *f)
{
	int fd = tcp_connect(f->port);
	const char *req = "GET /health HTTP/1.1\r\n\r\n";

	if (fd < 0)
		return;
	send_all(fd, req, strlen(req));
	sleep_ms(200);
	trigger_close(f);
	read_resp(fd, &f->r[0]);
	close(fd);
}

static void test_close_during_health(void **state)
{
	struct fixture *f = fx_start(DNS_SILENT);
	(void)state;

	fx_run(f, client_close_health);
	assert_int_equal(f->r[0].len, 0);
	assert_int_equal(f->dns.queries, 1);
	fx_free(f);
}

static void client_close_writing(struct fixture *f)
{
	int fd = tcp_connect(f->port);
	const char *req = "GET /metrics HTTP/1.1\r\n\r\n";
	int small = 4096;

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	send_all(fd, req, strlen(req));
	sleep_ms(300); /* never read: the write stays pending */
	trigger_close(f);
	sleep_ms(100);
	close(fd);
}

static void test_close_during_write(void **state)
{
	struct fixture *f = fx_start(DNS_ANSWER);
	(void)state;

	f->metrics_fill = 16u << 20;
	fx_run(f, client_close_writing);
	assert_int_equal(f->metrics_calls, 1);
	fx_free(f);
}

/* ---- listeners ---- */

static void client_two_ports(struct fixture *f)
{
	http_get(f->port, "GET", "/metrics", &f->r[0]);
	http_get((int)f->v[0], "GET", "/metrics", &f->r[1]);
	http_get((int)f->v[0], "GET", "/health", &f->r[2]);
	http_get(f->port, "GET", "/health", &f->r[3]);
}

static void test_two_listeners(void **state)
{
	struct fixture *f = fx_new(DNS_ANSWER);
	struct sockaddr_in m, h;
	(void)state;

	f->port = pick_port(SOCK_STREAM, AF_INET);
	do
		f->v[0] = pick_port(SOCK_STREAM, AF_INET);
	while (f->v[0] == f->port);
	m = v4(f->port);
	h = v4((int)f->v[0]);
	fx_start_at(f, (struct sockaddr *)&m, (struct sockaddr *)&h);
	fx_run(f, client_two_ports);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f->r[i].status, 200);
	fx_free(f);
}

/* 200 idle and slow clients on the metrics port, reconnecting: /health on
 * its own port answers every time, and a new metrics client gets in. */
static void client_flood(struct fixture *f)
{
	int fds[200];
	int hport = (int)f->v[0];
	double worst = 0;

	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 200; i++) {
			fds[i] = tcp_connect(f->port);
			if (fds[i] >= 0 && round == 0)
				f->v[1]++;
			if (fds[i] >= 0 && i % 2)
				send_all(fds[i], "GET /metr", 9); /* slow: never finishes */
		}
		double t0 = now_s();
		http_get(hport, "GET", "/health", &f->r[round]);
		if (now_s() - t0 > worst)
			worst = now_s() - t0;
		http_get(f->port, "GET", "/metrics", &f->r[3 + round]);
		for (int i = 0; i < 200; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
	f->t[0] = worst;
}

static void test_flood_metrics_port(void **state)
{
	struct fixture *f = fx_new(DNS_ANSWER);
	struct sockaddr_in m, h;
	(void)state;

	f->port = pick_port(SOCK_STREAM, AF_INET);
	do
		f->v[0] = pick_port(SOCK_STREAM, AF_INET);
	while (f->v[0] == f->port);
	m = v4(f->port);
	h = v4((int)f->v[0]);
	fx_start_at(f, (struct sockaddr *)&m, (struct sockaddr *)&h);
	fx_run(f, client_flood);
	for (int i = 0; i < 6; i++)
		assert_int_equal(f->r[i].status, 200);
	assert_true(f->t[0] < 1.0);
	/* The first round alone (all its clients connected) went over the budget
	 * by this much (connects can fail when the accept queue is full). */
	assert_true(f->v[1] > 64);
	assert_true(f->evicted >= (uint64_t)(f->v[1] - 64));
	fx_free(f);
}

static void client_v6(struct fixture *f)
{
	struct sockaddr_in6 s;
	int fd;

	memset(&s, 0, sizeof(s));
	s.sin6_family = AF_INET6;
	s.sin6_addr = in6addr_loopback;
	s.sin6_port = htons((uint16_t)f->port);
	fd = tcp_connect_to((struct sockaddr *)&s, sizeof(s));
	if (fd >= 0) {
		const char *req = "GET /health HTTP/1.1\r\nHost: [::1]\r\n\r\n";
		send_all(fd, req, strlen(req));
		read_resp(fd, &f->r[0]);
		close(fd);
	}
	/* V6ONLY: the v4 address on the same port is not ours. */
	f->v[0] = tcp_connect(f->port);
	if (f->v[0] >= 0)
		close((int)f->v[0]);
}

static void test_ipv6(void **state)
{
	struct fixture *f;
	struct sockaddr_in6 a;
	int port = pick_port(SOCK_STREAM, AF_INET6);
	(void)state;

	if (port < 0) {
		skip();
		return;
	}
	f = fx_new(DNS_ANSWER);
	f->port = port;
	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	a.sin6_addr = in6addr_loopback;
	a.sin6_port = htons((uint16_t)port);
	fx_start_at(f, NULL, (struct sockaddr *)&a);
	fx_run(f, client_v6);
	assert_int_equal(f->r[0].status, 200);
	assert_body(&f->r[0], "ok\n");
	assert_true(f->v[0] < 0);
	fx_free(f);
}

static void test_start_errors(void **state)
{
	struct admin_handlers hd = { .metrics = metrics_cb, .ready = ready_cb };
	struct admin *a = NULL;
	struct sockaddr_in busy, dns = v4(53);
	struct sockaddr_un_like {
		sa_family_t family;
		char path[108];
	} un = { .family = AF_UNIX };
	socklen_t len = sizeof(busy);
	uv_loop_t loop;
	int fd;
	(void)state;

	assert_int_equal(uv_loop_init(&loop), 0);

	/* Port in use: error, nothing left open. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	busy = v4(0);
	assert_int_equal(bind(fd, (struct sockaddr *)&busy, sizeof(busy)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&busy, &len), 0);
	assert_int_equal(admin_start(&loop, (struct sockaddr *)&busy, NULL, (struct sockaddr *)&dns,
				     &hd, &a), UV_EADDRINUSE);
	assert_null(a);
	/* The second address fails after the first was bound: still clean. */
	{
		struct sockaddr_in free_addr = v4(pick_port(SOCK_STREAM, AF_INET));
		assert_int_equal(admin_start(&loop, (struct sockaddr *)&free_addr,
					     (struct sockaddr *)&busy, (struct sockaddr *)&dns, &hd,
					     &a), UV_EADDRINUSE);
		assert_null(a);
	}
	close(fd);

	assert_int_equal(admin_start(NULL, NULL, NULL, NULL, &hd, &a), UV_EINVAL);
	assert_int_equal(admin_start(&loop, NULL, NULL, NULL, NULL, &a), UV_EINVAL);
	assert_int_equal(admin_start(&loop, NULL, NULL, NULL, &hd, NULL), UV_EINVAL);
	assert_int_equal(admin_start(&loop, (struct sockaddr *)&un, NULL, NULL, &hd, &a),
			 UV_EAFNOSUPPORT);
	assert_null(a);

	/* Nothing to listen on is allowed; close frees at once. */
	assert_int_equal(admin_start(&loop, NULL, NULL, (struct sockaddr *)&dns, &hd, &a), 0);
	assert_non_null(a);
	assert_int_equal(atomic_load(&admin_stats(a)->requests), 0);
	admin_close(a);
	admin_close(NULL);
	assert_null(admin_stats(NULL));

	/* Start and close without ever running the loop in between. */
	a = NULL;
	{
		struct sockaddr_in s = v4(pick_port(SOCK_STREAM, AF_INET));
		assert_int_equal(admin_start(&loop, (struct sockaddr *)&s, NULL,
					     (struct sockaddr *)&dns, &hd, &a), 0);
		admin_close(a);
	}
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_errors),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_metrics_large),
		cmocka_unit_test(test_metrics_oom),
		cmocka_unit_test(test_ready),
		cmocka_unit_test(test_health_reply_matches),
		cmocka_unit_test(test_health_ok),
		cmocka_unit_test(test_health_wildcard_target),
		cmocka_unit_test(test_health_silent),
		cmocka_unit_test(test_health_wrong_id),
		cmocka_unit_test(test_health_wrong_name),
		cmocka_unit_test(test_health_no_qr),
		cmocka_unit_test(test_health_refused),
		cmocka_unit_test(test_health_client_gone),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_conn_limit),
		cmocka_unit_test(test_head_timeout),
		cmocka_unit_test(test_close_open_conn),
		cmocka_unit_test(test_close_during_health),
		cmocka_unit_test(test_close_during_write),
		cmocka_unit_test(test_two_listeners),
		cmocka_unit_test(test_flood_metrics_port),
		cmocka_unit_test(test_ipv6),
	};

	/* Writing to a client that went away must not kill the process; main.c
	 * ignores SIGPIPE the same way. */
	signal(SIGPIPE, SIG_IGN);
	log_setup(LOGL_ERROR, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
