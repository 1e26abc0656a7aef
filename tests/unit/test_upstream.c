/* tests/unit/test_upstream.c - upstream forwarding against fake TCP/UDP DNS servers on 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "nodedns/util/log.h"
#include "nodedns/io/upstream.h"
#include "support/dnsname.h"

/* ---- Fake servers ---- */

enum fake_mode {
	FM_ANSWER,          /* answer at once */
	FM_REVERSE,         /* collect; answer in reverse after 20 ms without queries */
	FM_SILENT,          /* read, never answer */
	FM_DELAY,           /* answer after delay_ms */
	FM_BAD_THEN_GOOD,   /* several bad replies, then the right one (upper-cased name) */
	FM_WRONG_QUESTION,  /* only replies with the right ID and a wrong question */
	FM_CLOSE_AFTER,     /* answer, then close the connection */
	FM_CLOSE_SECOND,    /* answer the first query of a connection, close on the second */
	FM_SILENT_AFTER,    /* answer the first query of a connection, then nothing */
	FM_SILENT_SLOW,     /* a name starting "slow": nothing; others: the answer */
	FM_TRUNCATE,        /* half a frame, then close */
	FM_SHORT_FRAME,     /* a frame of length 5 */
	FM_GARBAGE,         /* random frames */
	FM_TC,              /* UDP: reply with TC=1 */
	FM_DRIBBLE,         /* a big answer, sent in pieces 5 ms apart */
	FM_PAUSED,          /* read nothing for pause_ms, then answer everything */
	FM_SERVFAIL,        /* the question back with rcode SERVFAIL */
	FM_REFUSED,         /* the question back with rcode REFUSED */
	FM_KILLER_ONCE,     /* first connection: one frame that breaks the stream
			     * (variant delay_ms: wrong ID, QR clear, bad pointer,
			     * cut question); later ones: the answer */
	FM_TC_TCP,          /* TCP: the question back with TC=1 */
	FM_BADVERS,         /* the question back with BADVERS in an OPT */
	FM_NO_EDNS,         /* FORMERR without OPT to a query with OPT, else the answer */
	FM_STALL_ONCE,      /* first connection: the first 5 bytes of the answer, then
			     * nothing (a drip); later ones: the answer */
	FM_POISON,          /* a name starting "poison": the connection closed under
			     * it, unanswered (with what was not read yet); others:
			     * the answer */
};

#define MAX_CLIENTS 256
#define MAX_PEND 256

struct fake;

struct fake_client {
	uv_tcp_t tcp;
	struct fake *f;
	uint8_t buf[70000];
	size_t len;
	unsigned nq;
	bool closing;
};

struct pend {
	struct fake_client *cl;
	uint8_t msg[600];
	size_t len;
};

struct fake {
	uv_loop_t *loop;
	uv_tcp_t listener;
	bool listening;
	uv_udp_t udp;
	bool udp_on;
	int port;
	enum fake_mode mode, udp_mode;
	uint8_t tag; /* last octet of the A record in answers */
	unsigned delay_ms;
	unsigned nconns, nqueries, nudp, max_pend, nshrunk;
	struct fake_client *clients[MAX_CLIENTS];
	struct pend pend[MAX_PEND];
	unsigned npend;
	uv_timer_t flush;
	bool flush_on;
	uint32_t rnd;
	unsigned pause_ms;
	struct fake_client *drib_cl;
	uint8_t drib[2 + 30000];
	size_t drib_len, drib_off;
	unsigned drib_step;
};

static uint32_t fake_rand(struct fake *f)
{
	f->rnd = f->rnd * 1103515245u + 12345u;
	return f->rnd >> 8;
}

struct wbuf {
	uv_write_t req;
	uint8_t data[];
};

static void on_fake_write(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
}

static void fake_send_raw(struct fake_client *cl, const uint8_t *p, size_t n)
{
	if (cl->closing)
		return;
	struct wbuf *w = malloc(sizeof(*w) + n);
	assert_non_null(w);
	memcpy(w->data, p, n);
	w->req.data = w;
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&cl->tcp, &b, 1, on_fake_write) != 0)
		free(w);
}

static void fake_send_frame(struct fake_client *cl, const uint8_t *msg, size_t n)
{
	uint8_t b[2 + 1024];
	assert_true(n <= 1024);
	b[0] = (uint8_t)(n >> 8);
	b[1] = (uint8_t)n;
	memcpy(b + 2, msg, n);
	fake_send_raw(cl, b, n + 2);
}

/* Answer to @p q: QR, RA, one A record 127.0.0.<tag>. @return its length. */
static size_t make_answer(const struct fake *f, const uint8_t *q, size_t n, uint8_t *out)
{
	static const uint8_t rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 0 };
	assert_true(n + sizeof(rr) <= 600);
	size_t qend = 12;
	while (qend < n && q[qend] != 0)
		qend += 1u + q[qend];
	if (qend + 5 <= n)
		n = qend + 5; /* header and question: no OPT (g_edns), no padding */
	memcpy(out, q, n);
	out[11] = 0;
	out[2] |= 0x80;
	out[3] |= 0x80;
	out[6] = 0;
	out[7] = 1;
	memcpy(out + n, rr, sizeof(rr));
	out[n + sizeof(rr) - 1] = f->tag;
	return n + sizeof(rr);
}

static void on_client_close(uv_handle_t *h)
{
	free(h->data);
}

static void client_close(struct fake_client *cl)
{
	if (cl->closing)
		return;
	cl->closing = true;
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		if (cl->f->clients[i] == cl)
			cl->f->clients[i] = NULL;
	}
	for (unsigned i = 0; i < cl->f->npend; i++) {
		if (cl->f->pend[i].cl == cl)
			cl->f->pend[i].cl = NULL;
	}
	if (cl->f->drib_cl == cl)
		cl->f->drib_cl = NULL;
	uv_close((uv_handle_t *)&cl->tcp, on_client_close);
}

static void on_flush(uv_timer_t *t)
{
	struct fake *f = t->data;
	uint8_t ans[700];
	unsigned n = f->npend;
	f->npend = 0;
	for (unsigned k = 0; k < n; k++) {
		struct pend *p = &f->pend[f->mode == FM_REVERSE ? n - 1 - k : k];
		if (!p->cl)
			continue;
		size_t al = make_answer(f, p->msg, p->len, ans);
		fake_send_frame(p->cl, ans, al);
	}
}

static void pend_add(struct fake_client *cl, const uint8_t *q, size_t n)
{
	struct fake *f = cl->f;
	assert_true(f->npend < MAX_PEND);
	assert_true(n <= sizeof(f->pend[0].msg));
	struct pend *p = &f->pend[f->npend++];
	p->cl = cl;
	memcpy(p->msg, q, n);
	p->len = n;
	if (f->npend > f->max_pend)
		f->max_pend = f->npend;
	if (f->mode == FM_REVERSE)
		uv_timer_start(&f->flush, on_flush, 20, 0);
	else if (f->npend == 1)
		uv_timer_start(&f->flush, on_flush, f->delay_ms, 0);
}

/* Frames after which the stream cannot be trusted (issue 11.1): a reply to
 * no query in flight, or one that does not walk as a DNS message. */
static void send_killer(struct fake_client *cl, const uint8_t *q, size_t n, unsigned which)
{
	uint8_t b[700];
	memcpy(b, q, n);
	b[2] |= 0x80;
	switch (which) {
	case 0: /* wrong ID */
		b[1] ^= 0x5a;
		fake_send_frame(cl, b, n);
		break;
	case 1: /* QR clear */
		fake_send_frame(cl, q, n);
		break;
	case 2: /* compression pointer (to itself) instead of the name */
		b[12] = 0xc0;
		b[13] = 12;
		memcpy(b + 14, q + n - 4, 4);
		fake_send_frame(cl, b, 18);
		break;
	default: /* question cut short */
		fake_send_frame(cl, b, n - 2);
		break;
	}
}

/* Replies with the right ID that are still not the answer (the stream stays
 * in step: they are counted and dropped). */
static void send_bad_replies(struct fake_client *cl, const uint8_t *q, size_t n)
{
	uint8_t b[700];
	/* wrong first letter of the name */
	memcpy(b, q, n);
	b[2] |= 0x80;
	b[13] ^= 0x01;
	fake_send_frame(cl, b, n);
	/* wrong type */
	memcpy(b, q, n);
	b[2] |= 0x80;
	b[n - 3] ^= 0x01;
	fake_send_frame(cl, b, n);
	/* wrong class */
	memcpy(b, q, n);
	b[2] |= 0x80;
	b[n - 1] ^= 0x02;
	fake_send_frame(cl, b, n);
	/* qdcount 0 */
	memcpy(b, q, n);
	b[2] |= 0x80;
	b[5] = 0;
	fake_send_frame(cl, b, n);
}

static void on_dribble(uv_timer_t *t)
{
	static const size_t steps[] = { 1, 1, 11, 3000 };
	struct fake *f = t->data;
	size_t k = f->drib_step < 4 ? steps[f->drib_step] : f->drib_len;
	f->drib_step++;
	if (k > f->drib_len - f->drib_off)
		k = f->drib_len - f->drib_off;
	if (f->drib_cl)
		fake_send_raw(f->drib_cl, f->drib + f->drib_off, k);
	f->drib_off += k;
	if (f->drib_off == f->drib_len)
		uv_timer_stop(t);
}

static void fake_handle(struct fake_client *cl, const uint8_t *q, size_t n)
{
	struct fake *f = cl->f;
	uint8_t ans[700], b[700];
	size_t al;
	f->nqueries++;
	cl->nq++;
	switch (f->mode) {
	case FM_ANSWER:
		al = make_answer(f, q, n, ans);
		fake_send_frame(cl, ans, al);
		break;
	case FM_REVERSE:
	case FM_DELAY:
		pend_add(cl, q, n);
		break;
	case FM_SILENT:
		break;
	case FM_BAD_THEN_GOOD:
		send_bad_replies(cl, q, n);
		al = make_answer(f, q, n, ans);
		for (size_t i = 13; i < n - 4; i++) { /* the name, upper-cased */
			if (ans[i] >= 'a' && ans[i] <= 'z')
				ans[i] = (uint8_t)(ans[i] - 32);
		}
		fake_send_frame(cl, ans, al);
		break;
	case FM_WRONG_QUESTION:
		memcpy(b, q, n);
		b[2] |= 0x80;
		b[n - 3] ^= 0x01;
		fake_send_frame(cl, b, n);
		break;
	case FM_CLOSE_AFTER:
		al = make_answer(f, q, n, ans);
		fake_send_frame(cl, ans, al);
		client_close(cl);
		break;
	case FM_CLOSE_SECOND:
		if (cl->nq >= 2) {
			client_close(cl);
			break;
		}
		al = make_answer(f, q, n, ans);
		fake_send_frame(cl, ans, al);
		break;
	case FM_SILENT_SLOW:
		if (n > 17 && memcmp(q + 13, "slow", 4) == 0)
			break;
		al = make_answer(f, q, n, ans);
		fake_send_frame(cl, ans, al);
		break;
	case FM_SILENT_AFTER:
		if (cl->nq == 1) {
			al = make_answer(f, q, n, ans);
			fake_send_frame(cl, ans, al);
		}
		break;
	case FM_TRUNCATE:
		al = make_answer(f, q, n, ans);
		b[0] = (uint8_t)(al >> 8);
		b[1] = (uint8_t)al;
		memcpy(b + 2, ans, 10);
		fake_send_raw(cl, b, 12);
		client_close(cl);
		break;
	case FM_KILLER_ONCE:
		if (f->nconns == 1) {
			send_killer(cl, q, n, f->delay_ms);
			break;
		}
		al = make_answer(f, q, n, ans);
		fake_send_frame(cl, ans, al);
		break;
	case FM_STALL_ONCE: {
		uint8_t fr[2 + 700];
		al = make_answer(f, q, n, ans);
		fr[0] = (uint8_t)(al >> 8);
		fr[1] = (uint8_t)al;
		memcpy(fr + 2, ans, al);
		fake_send_raw(cl, fr, f->nconns == 1 ? 5 : al + 2);
		break;
	}
	case FM_POISON:
		if (n > 19 && memcmp(q + 13, "poison", 6) == 0) {
			client_close(cl);
			break;
		}
		al = make_answer(f, q, n, ans);
		fake_send_frame(cl, ans, al);
		break;
	case FM_TC_TCP:
	case FM_BADVERS:
		memcpy(b, q, n);
		b[2] |= 0x80;
		if (f->mode == FM_TC_TCP)
			b[2] |= 0x02;
		else if (n >= 11 && b[11] == 1)
			b[n - 6] = 1; /* the OPT's extended rcode: BADVERS */
		fake_send_frame(cl, b, n);
		break;
	case FM_NO_EDNS:
		if (q[11] == 1) {
			memcpy(b, q, n);
			b[2] |= 0x80;
			b[3] = (uint8_t)((b[3] & 0xf0) | 1); /* FORMERR */
			b[11] = 0;
			fake_send_frame(cl, b, n - 11);
			break;
		}
		al = make_answer(f, q, n, ans);
		fake_send_frame(cl, ans, al);
		break;
	case FM_SHORT_FRAME: {
		static const uint8_t sf[] = { 0, 5, 1, 2, 3, 4, 5 };
		fake_send_raw(cl, sf, sizeof(sf));
		break;
	}
	case FM_GARBAGE:
		for (int k = 0; k < 20; k++) {
			size_t gl = 12 + fake_rand(f) % 500;
			for (size_t i = 0; i < gl; i++)
				b[i] = (uint8_t)fake_rand(f);
			if (k % 2 == 0) { /* the right ID and QR, a random rest */
				b[0] = q[0];
				b[1] = q[1];
				b[2] |= 0x80;
				b[4] = 0;
				b[5] = 1;
			}
			if (k % 4 == 1) /* the right question, random labels after it */
				memcpy(b, q, gl < n ? gl : n);
			fake_send_frame(cl, b, gl);
		}
		break;
	case FM_DRIBBLE: {
		/* The answer, then 25000 bytes of padding: a 0x2a-filled extra section. */
		al = make_answer(f, q, n, ans);
		size_t total = al + 25000;
		f->drib[0] = (uint8_t)(total >> 8);
		f->drib[1] = (uint8_t)total;
		memcpy(f->drib + 2, ans, al);
		memset(f->drib + 2 + al, 0x2a, 25000);
		f->drib_len = 2 + total;
		f->drib_off = 0;
		f->drib_step = 0;
		f->drib_cl = cl;
		uv_timer_start(&f->flush, on_dribble, 5, 5);
		break;
	}
	case FM_SERVFAIL:
	case FM_REFUSED:
		memcpy(b, q, n);
		b[2] |= 0x80;
		b[3] = (uint8_t)(0x80 | (f->mode == FM_SERVFAIL ? 2 : 5));
		fake_send_frame(cl, b, n);
		break;
	case FM_PAUSED:
	case FM_TC:
		break;
	}
}

static void fake_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
	struct fake_client *cl = h->data;
	(void)sugg;
	*buf = uv_buf_init((char *)cl->buf + cl->len, (unsigned)(sizeof(cl->buf) - cl->len));
}

static void fake_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct fake_client *cl = s->data;
	(void)buf;
	if (nread < 0) {
		client_close(cl);
		return;
	}
	cl->len += (size_t)nread;
	size_t off = 0;
	while (!cl->closing && cl->len - off >= 2) {
		size_t fl = (size_t)(cl->buf[off] << 8 | cl->buf[off + 1]);
		if (cl->len - off < 2 + fl)
			break;
		uint8_t q[600];
		size_t ql = fl;
		if (ql > sizeof(q)) { /* a padded query: keep header and question */
			const uint8_t *m = cl->buf + off + 2;
			ql = 12;
			while (ql < fl && m[ql] != 0)
				ql += 1u + m[ql];
			ql += 5;
			assert_true(ql <= sizeof(q) && ql <= fl);
		}
		memcpy(q, cl->buf + off + 2, ql);
		off += 2 + fl;
		fake_handle(cl, q, ql);
	}
	if (cl->closing)
		return;
	memmove(cl->buf, cl->buf + off, cl->len - off);
	cl->len -= off;
}

static void on_unpause(uv_timer_t *t)
{
	struct fake *f = t->data;
	f->mode = FM_ANSWER;
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		if (f->clients[i])
			uv_read_start((uv_stream_t *)&f->clients[i]->tcp, fake_alloc, fake_read);
	}
}

static void fake_accept(uv_stream_t *l, int status)
{
	struct fake *f = l->data;
	assert_int_equal(status, 0);
	struct fake_client *cl = calloc(1, sizeof(*cl));
	assert_non_null(cl);
	cl->f = f;
	uv_tcp_init(f->loop, &cl->tcp);
	cl->tcp.data = cl;
	assert_int_equal(uv_accept(l, (uv_stream_t *)&cl->tcp), 0);
	unsigned i;
	for (i = 0; i < MAX_CLIENTS && f->clients[i]; i++)
		;
	assert_true(i < MAX_CLIENTS);
	f->clients[i] = cl;
	f->nconns++;
	if (f->mode == FM_PAUSED) {
		uv_timer_start(&f->flush, on_unpause, f->pause_ms, 0);
		return;
	}
	uv_read_start((uv_stream_t *)&cl->tcp, fake_alloc, fake_read);
}

static void fake_listen(struct fake *f)
{
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", f->port, &sa);
	assert_int_equal(uv_tcp_init(f->loop, &f->listener), 0);
	f->listener.data = f;
	assert_int_equal(uv_tcp_bind(&f->listener, (const struct sockaddr *)&sa, 0), 0);
	if (f->mode == FM_PAUSED) { /* a small window, inherited by accepted sockets */
		uv_os_fd_t fd;
		int small = 4096;
		assert_int_equal(uv_fileno((uv_handle_t *)&f->listener, &fd), 0);
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	}
	assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 128, fake_accept), 0);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	assert_int_equal(uv_tcp_getsockname(&f->listener, (struct sockaddr *)&ss, &len), 0);
	f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	f->listening = true;
}

/* Stop listening and drop every client connection. */
static void fake_stop(struct fake *f)
{
	if (f->listening) {
		uv_close((uv_handle_t *)&f->listener, NULL);
		f->listening = false;
	}
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		if (f->clients[i])
			client_close(f->clients[i]);
	}
}

static void fake_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
			  unsigned flags)
{
	struct fake *f = h->data;
	uint8_t ans[700];
	(void)flags;
	if (nread <= 0 || !addr)
		return;
	f->nudp++;
	const uint8_t *q = (const uint8_t *)buf->base;
	size_t n = (size_t)nread, al;
	if (f->udp_mode == FM_TC) {
		memcpy(ans, q, n);
		ans[2] |= 0x82;
		al = n;
	} else if (f->udp_mode == FM_ANSWER) {
		al = make_answer(f, q, n, ans);
	} else {
		return;
	}
	uv_buf_t b = uv_buf_init((char *)ans, (unsigned)al);
	assert_true(uv_udp_try_send(h, &b, 1, addr) == (int)al);
}

static void fake_udp_alloc(uv_handle_t *h, size_t sugg, uv_buf_t *buf)
{
	static char mem[65536];
	(void)h;
	(void)sugg;
	*buf = uv_buf_init(mem, sizeof(mem));
}

static void fake_start(struct fake *f, uv_loop_t *loop, enum fake_mode mode, uint8_t tag)
{
	memset(f, 0, sizeof(*f));
	f->loop = loop;
	f->mode = mode;
	f->tag = tag;
	f->delay_ms = 200;
	f->rnd = 12345u + tag;
	uv_timer_init(loop, &f->flush);
	f->flush.data = f;
	f->flush_on = true;
	fake_listen(f);
}

/* Also serve UDP on the TCP port. */
static void fake_start_udp(struct fake *f, enum fake_mode mode)
{
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", f->port, &sa);
	assert_int_equal(uv_udp_init(f->loop, &f->udp), 0);
	f->udp.data = f;
	assert_int_equal(uv_udp_bind(&f->udp, (const struct sockaddr *)&sa, 0), 0);
	assert_int_equal(uv_udp_recv_start(&f->udp, fake_udp_alloc, fake_udp_recv), 0);
	f->udp_mode = mode;
	f->udp_on = true;
}

static void fake_close(struct fake *f)
{
	fake_stop(f);
	if (f->flush_on)
		uv_close((uv_handle_t *)&f->flush, NULL);
	f->flush_on = false;
	if (f->udp_on)
		uv_close((uv_handle_t *)&f->udp, NULL);
	f->udp_on = false;
}

/* A port on which nothing listens (TCP connects are refused, UDP gets ICMP). */
static int dead_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t len = sizeof(sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* ---- Harness ---- */

struct env {
	uv_loop_t loop;
	uv_timer_t guard;
	struct upstream *u;
	struct upstream_server srv[3];
	struct upstream_server *list[3];
	struct upstream_group group;
	unsigned ndone;
};

struct rec {
	struct env *e;
	int n;
	int status;
	uint16_t id;
	uint8_t reply[1024];
	size_t len;
	const struct upstream_server *srv;
	uint64_t done_ns;
	unsigned order;
};

static bool g_in_query;

static void on_done(void *arg, int status, const uint8_t *reply, size_t len, const struct upstream_server *srv)
{
	struct rec *r = arg;
	assert_false(g_in_query); /* never from inside upstream_query() */
	r->n++;
	r->status = status;
	r->srv = srv;
	r->done_ns = uv_hrtime();
	r->order = r->e->ndone++;
	if (status == 0) {
		assert_non_null(reply);
		assert_true(len >= 12 && len <= sizeof(r->reply));
		memcpy(r->reply, reply, len);
		r->len = len;
		assert_non_null(srv);
	} else {
		assert_null(reply);
	}
}

static void on_guard(uv_timer_t *t)
{
	(void)t;
}

static void server_set(struct upstream_server *s, int port)
{
	memset(s, 0, sizeof(*s));
	struct sockaddr_in *sa = (struct sockaddr_in *)&s->addr;
	uv_ip4_addr("127.0.0.1", port, sa);
	s->addrlen = sizeof(*sa);
	snprintf(s->name, sizeof(s->name), "127.0.0.1:%d", port);
}

/* The loop and the guard timer; fakes are started next, then env_upstream(). */
static void env_init(struct env *e)
{
	memset(e, 0, sizeof(*e));
	assert_int_equal(uv_loop_init(&e->loop), 0);
	assert_int_equal(uv_timer_init(&e->loop, &e->guard), 0);
}

static void env_upstream(struct env *e, enum upstream_proto proto, uint32_t timeout_ms, unsigned conns, unsigned per_conn,
			 unsigned max_inflight, const int *ports, size_t nports)
{
	for (size_t i = 0; i < nports; i++) {
		server_set(&e->srv[i], ports[i]);
		e->list[i] = &e->srv[i];
	}
	e->group.servers = e->list;
	e->group.nservers = nports;
	struct upstream_config cfg = {
		.proto = proto,
		.timeout_ms = timeout_ms,
		.conns_per_server = conns,
		.max_inflight_conn = per_conn,
		.max_inflight = max_inflight,
	};
	assert_int_equal(upstream_new(&e->loop, &cfg, &e->u), 0);
}

/* Run until *@p count reaches @p want (NULL: never) or @p max_ms pass. */
static void run_until(struct env *e, const unsigned *count, unsigned want, unsigned max_ms)
{
	uint64_t end = uv_hrtime() + (uint64_t)max_ms * 1000000u;
	uv_timer_start(&e->guard, on_guard, 5, 5);
	while ((!count || *count < want) && uv_hrtime() < end)
		uv_run(&e->loop, UV_RUN_ONCE);
	uv_timer_stop(&e->guard);
}

static void run_for(struct env *e, unsigned ms)
{
	run_until(e, NULL, 0, ms);
}

/* Close the upstream and @p fakes, run the loop dry, and check no handle is left. */
static void env_finish(struct env *e, struct fake **fakes, size_t nfakes)
{
	upstream_close(e->u);
	for (size_t i = 0; i < nfakes; i++)
		fake_close(fakes[i]);
	uv_close((uv_handle_t *)&e->guard, NULL);
	while (uv_run(&e->loop, UV_RUN_DEFAULT) != 0)
		;
	assert_int_equal(uv_loop_close(&e->loop), 0);
}

static size_t build_query(uint8_t *b, uint16_t id, const char *name, uint16_t qtype)
{
	size_t n = 12;
	memset(b, 0, 12);
	b[0] = (uint8_t)(id >> 8);
	b[1] = (uint8_t)id;
	b[2] = 0x01; /* RD */
	b[5] = 1;
	n += dnsname_to_wire(name, b + n);
	b[n++] = (uint8_t)(qtype >> 8);
	b[n++] = (uint8_t)qtype;
	b[n++] = 0;
	b[n++] = 1;
	return n;
}

static bool g_edns; /* queries carry an OPT record, as the query module's do */

static int query(struct env *e, uint16_t id, const char *name, struct rec *r)
{
	static const uint8_t opt[] = { 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0 };
	uint8_t b[300];
	size_t n = build_query(b, id, name, 1);
	if (g_edns) {
		memcpy(b + n, opt, sizeof(opt));
		n += sizeof(opt);
		b[11] = 1;
	}
	memset(r, 0, sizeof(*r));
	r->e = e;
	r->id = id;
	g_in_query = true;
	int rc = upstream_query(e->u, &e->group, b, n, on_done, r);
	g_in_query = false;
	return rc;
}

static uint64_t sv(_Atomic uint64_t *v)
{
	return atomic_load(v);
}

static double ms_since(uint64_t t0)
{
	return (double)(uv_hrtime() - t0) / 1e6;
}

/* The reply is an answer from @p tag for @p name with our ID. */
static void check_answer(const struct rec *r, const char *name, uint8_t tag)
{
	uint8_t q[300];
	size_t n = build_query(q, r->id, name, 1);
	assert_int_equal(r->n, 1);
	assert_int_equal(r->status, 0);
	assert_true(r->len >= n);
	assert_int_equal(r->reply[0], q[0]);
	assert_int_equal(r->reply[1], q[1]);
	assert_true(r->reply[2] & 0x80);
	assert_int_equal(r->reply[r->len - 1], tag);
	for (size_t i = 12; i < n; i++) { /* the question, without case */
		uint8_t a = r->reply[i], b = q[i];
		a = (a >= 'A' && a <= 'Z') ? (uint8_t)(a + 32) : a;
		b = (b >= 'A' && b <= 'Z') ? (uint8_t)(b + 32) : b;
		assert_int_equal(a, b);
	}
}

/* ---- Test helpers ---- */

#define TCP UPSTREAM_PROTO_TCP
#define UDP UPSTREAM_PROTO_UDP

/* A loop and one fake on TCP (@p mode, @p tag) as the only upstream server. */
static void env_one(struct env *e, struct fake *f, enum fake_mode mode, uint8_t tag, uint32_t timeout_ms,
		    unsigned conns, unsigned per_conn, unsigned max_inflight)
{
	env_init(e);
	fake_start(f, &e->loop, mode, tag);
	env_upstream(e, TCP, timeout_ms, conns, per_conn, max_inflight, &f->port, 1);
}

/* One fake answering on TCP (tag @p tag) and UDP (@p udp_mode); the upstream speaks UDP. */
static void env_udp(struct env *e, struct fake *f, uint8_t tag, enum fake_mode udp_mode)
{
	env_init(e);
	fake_start(f, &e->loop, FM_ANSWER, tag);
	fake_start_udp(f, udp_mode);
	env_upstream(e, UDP, 1000, 2, 256, 100, &f->port, 1);
}

/* Two fakes, tags 1 and 2, as the servers of one group in that order; the
 * upstream speaks @p proto (over UDP each fake also takes datagrams, in its mode). */
static void env_two_proto(struct env *e, struct fake f[2], enum upstream_proto proto,
			  enum fake_mode mode0, enum fake_mode mode1, uint32_t timeout_ms)
{
	env_init(e);
	fake_start(&f[0], &e->loop, mode0, 1);
	if (proto == UDP)
		fake_start_udp(&f[0], mode0);
	fake_start(&f[1], &e->loop, mode1, 2);
	if (proto == UDP)
		fake_start_udp(&f[1], mode1);
	int ports[] = { f[0].port, f[1].port };
	env_upstream(e, proto, timeout_ms, 2, 256, 100, ports, 2);
}

/* The same over TCP. */
static void env_two(struct env *e, struct fake f[2], enum fake_mode mode0, enum fake_mode mode1,
		    uint32_t timeout_ms)
{
	env_two_proto(e, f, TCP, mode0, mode1, timeout_ms);
}

/* A single server on a port where nothing listens. */
static void env_dead(struct env *e, enum upstream_proto proto)
{
	int port = dead_port();
	env_init(e);
	env_upstream(e, proto, 1000, 2, 256, 100, &port, 1);
}

static void finish_one(struct env *e, struct fake *f)
{
	struct fake *fs[] = { f };
	env_finish(e, fs, 1);
}

static void finish_two(struct env *e, struct fake f[2])
{
	struct fake *fs[] = { &f[0], &f[1] };
	env_finish(e, fs, 2);
}

/* Send one query and run until its callback (the next one due) has run. */
static void ask(struct env *e, uint16_t id, const char *name, struct rec *r)
{
	unsigned want = e->ndone + 1;
	assert_int_equal(query(e, id, name, r), 0);
	run_until(e, &e->ndone, want, 2000);
}

/* The name of query @p i of a batch: "<prefix><i>.<domain>". */
static const char *batch_name(char *buf, size_t len, const char *prefix, int i, const char *domain)
{
	snprintf(buf, len, "%s%d.%s", prefix, i, domain);
	return buf;
}

/* Send @p n queries (IDs @p id0 + i) at once, then run until all are called back. */
static void ask_batch(struct env *e, struct rec *r, int n, uint16_t id0, const char *prefix, const char *domain,
		      unsigned max_ms)
{
	char name[64];
	unsigned want = e->ndone + (unsigned)n;
	for (int i = 0; i < n; i++)
		assert_int_equal(query(e, (uint16_t)(id0 + i), batch_name(name, sizeof(name), prefix, i, domain),
				       &r[i]),
				 0);
	run_until(e, &e->ndone, want, max_ms);
}

/* Each of the @p n queries of a batch got its answer from @p tag. */
static void check_batch(const struct rec *r, int n, const char *prefix, const char *domain, uint8_t tag)
{
	char name[64];
	for (int i = 0; i < n; i++)
		check_answer(&r[i], batch_name(name, sizeof(name), prefix, i, domain), tag);
}

#define STAT(e, i, field) sv(&(e).srv[i].stats.field)

/* ---- Tests ---- */

static void test_tcp_forward(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r;
	env_one(&e, &f, FM_ANSWER, 7, 1000, 2, 256, 100);

	assert_int_equal(query(&e, 0x1234, "www.example.com", &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(atomic_load(&upstream_worker_stats(e.u)->inflight), 1);
	run_until(&e, &e.ndone, 1, 2000);
	check_answer(&r, "www.example.com", 7);
	assert_ptr_equal(r.srv, &e.srv[0]);
	assert_int_equal(STAT(e, 0, queries), 1);
	assert_int_equal(STAT(e, 0, replies), 1);
	assert_int_equal(STAT(e, 0, tcp_connects), 1);
	assert_int_equal(STAT(e, 0, latency.count), 1);
	assert_int_equal(atomic_load(&e.srv[0].stats.open_conns), 1);
	assert_int_equal(atomic_load(&upstream_worker_stats(e.u)->inflight), 0);

	/* A second query reuses the idle connection. */
	ask(&e, 0x4321, "two.example.com", &r);
	check_answer(&r, "two.example.com", 7);
	assert_int_equal(STAT(e, 0, tcp_connects), 1);
	assert_int_equal(f.nconns, 1);

	finish_one(&e, &f);
	assert_int_equal(atomic_load(&e.srv[0].stats.open_conns), 0);
}

static void test_invalid(void **state)
{
	(void)state;
	struct env e;
	struct rec r = { .e = &e };
	uint8_t b[300];
	env_dead(&e, TCP);

	struct upstream_group empty = { .servers = e.list, .nservers = 0 };
	size_t n = build_query(b, 1, "a.example", 1);
	assert_int_equal(upstream_query(e.u, &empty, b, n, on_done, &r), -EINVAL);
	assert_int_equal(upstream_query(e.u, &e.group, b, 5, on_done, &r), -EINVAL);
	assert_int_equal(upstream_query(e.u, &e.group, b, n - 1, on_done, &r), -EINVAL);
	b[5] = 0; /* no question */
	assert_int_equal(upstream_query(e.u, &e.group, b, n, on_done, &r), -EINVAL);
	b[5] = 2; /* two */
	assert_int_equal(upstream_query(e.u, &e.group, b, n, on_done, &r), -EINVAL);
	b[5] = 1;
	b[12] = 0xc0; /* compressed */
	assert_int_equal(upstream_query(e.u, &e.group, b, n, on_done, &r), -EINVAL);
	b[12] = 70; /* label too long for the message */
	assert_int_equal(upstream_query(e.u, &e.group, b, n, on_done, &r), -EINVAL);
	assert_int_equal(r.n, 0);
	env_finish(&e, NULL, 0);
	assert_int_equal(r.n, 0);
}

static void test_pipelining_reverse(void **state)
{
	(void)state;
	enum { N = 50 };
	struct env e;
	struct fake f;
	static struct rec r[N];
	env_one(&e, &f, FM_REVERSE, 3, 2000, 1, 256, 1000);
	ask_batch(&e, r, N, 1000, "q", "example.org", 3000);
	check_batch(r, N, "q", "example.org", 3);
	for (int i = 0; i < N; i++)
		assert_int_equal(r[i].order, N - 1 - i); /* answered in reverse */
	assert_int_equal(f.nconns, 1);
	assert_int_equal(STAT(e, 0, tcp_connects), 1);
	assert_int_equal(STAT(e, 0, replies), N);
	assert_int_equal(STAT(e, 0, bad_replies), 0);
	finish_one(&e, &f);
}

static void test_pipelining_pool(void **state)
{
	(void)state;
	enum { N = 50 };
	struct env e;
	struct fake f;
	static struct rec r[N];
	env_one(&e, &f, FM_REVERSE, 4, 2000, 2, 256, 1000);
	ask_batch(&e, r, N, 0, "p", "example.org", 3000);
	check_batch(r, N, "p", "example.org", 4);
	assert_true(STAT(e, 0, tcp_connects) <= 2);
	assert_true(f.nconns <= 2);
	finish_one(&e, &f);
}

/* max_inflight_conn 4 with a pool of 1: the rest wait in the backlog. */
static void test_backlog(void **state)
{
	(void)state;
	enum { N = 30 };
	struct env e;
	struct fake f;
	static struct rec r[N];
	env_one(&e, &f, FM_REVERSE, 5, 2000, 1, 4, 1000);
	ask_batch(&e, r, N, 0, "b", "example.org", 3000);
	check_batch(r, N, "b", "example.org", 5);
	assert_true(f.max_pend <= 4);
	assert_int_equal(f.nconns, 1);
	finish_one(&e, &f);
}

static void test_bad_replies_ignored(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r;
	env_one(&e, &f, FM_BAD_THEN_GOOD, 9, 2000, 2, 256, 100);
	ask(&e, 0xbeef, "mixed.example.net", &r);
	check_answer(&r, "mixed.example.net", 9);
	assert_int_equal(STAT(e, 0, bad_replies), 4);
	assert_int_equal(STAT(e, 0, replies), 1);
	assert_int_equal(STAT(e, 0, tcp_connects), 1); /* the stream stayed in step */
	run_for(&e, 50);
	assert_int_equal(r.n, 1);
	finish_one(&e, &f);
}

/* Issue 11.1: a frame that matches nothing in flight or does not walk closes
 * the connection at once; what was in flight is resent on a new one. */
static void test_stream_killer_resent(void **state)
{
	(void)state;
	for (unsigned k = 0; k < 4; k++) {
		struct env e;
		struct fake f;
		struct rec r;
		env_one(&e, &f, FM_KILLER_ONCE, 9, 2000, 2, 256, 100);
		f.delay_ms = k;
		uint64_t t0 = uv_hrtime();
		ask(&e, 0x4242, "killer.example.net", &r);
		check_answer(&r, "killer.example.net", 9);
		assert_true((double)(r.done_ns - t0) / 1e6 < 500); /* not the 2 s timeout */
		assert_int_equal(STAT(e, 0, bad_replies), 1);
		assert_int_equal(STAT(e, 0, tcp_connects), 2);
		assert_int_equal(STAT(e, 0, timeouts), 0);
		finish_one(&e, &f);
	}
}

/* Issue 11.2: a reply that has started must complete within max(200 ms,
 * timeout/4); the connection is then closed, its queries resent on a new
 * one, long before the attempt's timeout. */
static void test_stalled_frame_resent(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r;
	env_one(&e, &f, FM_STALL_ONCE, 9, 2000, 2, 256, 100);
	uint64_t t0 = uv_hrtime();
	ask(&e, 0x77, "drip.example.net", &r);
	check_answer(&r, "drip.example.net", 9);
	double ms = ms_since(t0);
	assert_true(ms >= 450 && ms < 1500);
	assert_int_equal(STAT(e, 0, tcp_connects), 2);
	assert_int_equal(STAT(e, 0, timeouts), 0);
	finish_one(&e, &f);
}

/* Issue 11.3/11.4: BADVERS and TC=1 over TCP are failures, never answers;
 * FORMERR without OPT is asked again without EDNS, remembered. */
static void test_badvers_tc_failover(void **state)
{
	(void)state;
	static const enum fake_mode modes[] = { FM_TC_TCP, FM_BADVERS };
	g_edns = true;
	for (unsigned k = 0; k < 2; k++) {
		struct env e;
		struct fake f[2];
		struct rec r;
		env_two(&e, f, modes[k], FM_ANSWER, 1000);
		ask(&e, 82, "bv.example", &r);
		check_answer(&r, "bv.example", 2);
		assert_ptr_equal(r.srv, &e.srv[1]);
		assert_int_equal(STAT(e, 0, bad_replies), 1);
		finish_two(&e, f);
	}
	g_edns = false;
}

static void test_no_edns_fallback(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r[2];
	g_edns = true;
	env_one(&e, &f, FM_NO_EDNS, 9, 2000, 2, 256, 100);
	ask(&e, 1, "old.example", &r[0]);
	check_answer(&r[0], "old.example", 9);
	ask(&e, 2, "old2.example", &r[1]);
	check_answer(&r[1], "old2.example", 9);
	assert_int_equal(f.nqueries, 3); /* with EDNS once, then without */
	finish_one(&e, &f);
	g_edns = false;
}

static void test_only_wrong_question_eproto(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r;
	env_one(&e, &f, FM_WRONG_QUESTION, 1, 80, 2, 256, 100);
	ask(&e, 1, "x.example", &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.status, -EPROTO);
	assert_int_equal(STAT(e, 0, bad_replies), 1);
	finish_one(&e, &f);
}

static void test_timeout_failover(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	env_two(&e, f, FM_SILENT, FM_ANSWER, 100);
	uint64_t t0 = uv_hrtime();
	ask(&e, 77, "slow.example", &r);
	check_answer(&r, "slow.example", 2);
	assert_ptr_equal(r.srv, &e.srv[1]);
	double ms = (double)(r.done_ns - t0) / 1e6;
	assert_true(ms >= 90 && ms < 1000);
	assert_int_equal(STAT(e, 0, timeouts), 1);
	assert_int_equal(STAT(e, 0, queries), 1);
	assert_int_equal(STAT(e, 1, queries), 1);
	finish_two(&e, f);
}

/* Issue 10.6: an upstream's SERVFAIL or REFUSED sends the query on to the
 * next server; only when every one failed is the last such reply passed on. */
static void test_rcode_failover(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	env_two(&e, f, FM_SERVFAIL, FM_ANSWER, 1000);
	ask(&e, 81, "sf.example", &r);
	check_answer(&r, "sf.example", 2);
	assert_ptr_equal(r.srv, &e.srv[1]);
	assert_int_equal(STAT(e, 0, rcode_failovers), 1);
	assert_int_equal(STAT(e, 0, replies), 1);
	finish_two(&e, f);

	env_two(&e, f, FM_REFUSED, FM_ANSWER, 1000);
	ask(&e, 82, "ref.example", &r);
	check_answer(&r, "ref.example", 2);
	assert_int_equal(STAT(e, 0, rcode_failovers), 1);
	finish_two(&e, f);
}

static void test_rcode_all_fail(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	/* Both fail: the last reply (REFUSED, from the second) is passed on. */
	env_two(&e, f, FM_SERVFAIL, FM_REFUSED, 1000);
	ask(&e, 83, "bad.example", &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.status, 0);
	assert_ptr_equal(r.srv, &e.srv[1]);
	assert_int_equal(r.reply[3] & 0x0f, 5);
	assert_int_equal(r.reply[0] << 8 | r.reply[1], 83);
	assert_int_equal(STAT(e, 0, rcode_failovers), 1);
	assert_int_equal(STAT(e, 1, rcode_failovers), 0);
	finish_two(&e, f);

	/* SERVFAIL, then a timeout: the kept SERVFAIL is passed on (deferred). */
	env_two(&e, f, FM_SERVFAIL, FM_SILENT, 100);
	ask(&e, 84, "half.example", &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.status, 0);
	assert_ptr_equal(r.srv, &e.srv[0]);
	assert_int_equal(r.reply[3] & 0x0f, 2);
	assert_int_equal(r.reply[0] << 8 | r.reply[1], 84);
	assert_int_equal(STAT(e, 1, timeouts), 1);
	finish_two(&e, f);
}

/* A reply after the timeout is dropped; the callback runs once. */
static void test_late_reply_dropped(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	env_two(&e, f, FM_DELAY, FM_ANSWER, 100);
	f[0].delay_ms = 200;
	ask(&e, 78, "late.example", &r);
	check_answer(&r, "late.example", 2);
	run_for(&e, 150);
	assert_int_equal(r.n, 1);
	assert_int_equal(STAT(e, 0, bad_replies), 1);
	assert_int_equal(STAT(e, 0, replies), 0);
	finish_two(&e, f);
}

#define ASIDE(e, i) ((int)atomic_load(&(e).srv[i].stats.aside_workers))

/* Ask @p name and check that server 1 (tag 2) answered it without the
 * client paying an attempt of @p timeout_ms on server 0 first. */
static void ask_fast_from_second(struct env *e, uint16_t id, const char *name, struct rec *r,
				 unsigned timeout_ms)
{
	uint64_t t0 = uv_hrtime();
	ask(e, id, name, r);
	check_answer(r, name, 2);
	assert_ptr_equal(r->srv, &e->srv[1]);
	assert_true((double)(r->done_ns - t0) / 1e6 < timeout_ms);
}

/* The set-aside fixture: two servers over @p proto, the first silent, the
 * second @p mode1, attempts of @p timeout_ms; then three queries
 * "<prefix><i>.example" (IDs 1 to 3, records @p r[0..2]) one after the other,
 * each paying the first server's attempt, and answered by the second (tag 2)
 * or, with the second silent too, timed out. After them the first is set aside. */
static void env_first_set_aside(struct env *e, struct fake f[2], enum upstream_proto proto,
				enum fake_mode mode1, uint32_t timeout_ms, const char *prefix,
				struct rec r[3])
{
	char name[32];
	env_two_proto(e, f, proto, FM_SILENT, mode1, timeout_ms);
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = uv_hrtime();
		ask(e, (uint16_t)(1 + i), batch_name(name, sizeof(name), prefix, i, "example"), &r[i]);
		if (mode1 == FM_SILENT)
			assert_int_equal(r[i].status, -ETIMEDOUT);
		else
			check_answer(&r[i], name, 2);
		assert_true(ms_since(t0) >= timeout_ms - 10); /* paid the first server's attempt */
	}
	assert_int_equal(ASIDE(*e, 0), 1);
}

/* A first server that accepts and never answers: after three timeouts in a
 * row it is set aside, and new queries go straight to the second. */
static void test_timeouts_set_aside(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r[8];
	char name[32];
	env_first_set_aside(&e, f, TCP, FM_ANSWER, 200, "t", r);
	assert_int_equal(STAT(e, 0, timeouts), 3);
	assert_int_equal(STAT(e, 0, timeout_asides), 1);
	for (int i = 3; i < 8; i++)
		ask_fast_from_second(&e, (uint16_t)(1 + i), batch_name(name, sizeof(name), "t", i, "example"),
				     &r[i], 200);
	assert_int_equal(STAT(e, 0, timeouts), 3);
	finish_two(&e, f);
	assert_int_equal(ASIDE(e, 0), 0); /* the gauge counts live upstreams only */
}

/* Queries in flight on a server when it is set aside move on at once
 * instead of waiting out their attempts. */
static void test_set_aside_moves_inflight_on(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r[8];
	env_two(&e, f, FM_SILENT, FM_ANSWER, 400);
	uint64_t t0 = uv_hrtime();
	ask_batch(&e, r, 3, 1, "first", "example", 0); /* sent, not waited for */
	run_for(&e, 150);
	ask_batch(&e, r + 3, 5, 10, "second", "example", 0);
	run_until(&e, &e.ndone, 8, 2000);
	check_batch(r, 3, "first", "example", 2);
	check_batch(r + 3, 5, "second", "example", 2);
	assert_int_equal(STAT(e, 0, timeouts), 3);
	assert_int_equal(ASIDE(e, 0), 1);
	for (int i = 3; i < 8; i++) /* at the verdict (400 ms), not their deadline (550 ms) */
		assert_true((double)(r[i].done_ns - t0) / 1e6 < 500);
	finish_two(&e, f);
}

/* The same over UDP: a first server that takes datagrams and never answers. */
static void test_timeouts_set_aside_udp(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r[5];
	char name[32];
	env_first_set_aside(&e, f, UDP, FM_ANSWER, 200, "u", r);
	assert_int_equal(f[0].nudp, 3);
	for (int i = 3; i < 5; i++)
		ask_fast_from_second(&e, (uint16_t)(1 + i), batch_name(name, sizeof(name), "u", i, "example"),
				     &r[i], 200);
	assert_true(f[0].nudp <= 4); /* a probe at most, on a slow machine */
	finish_two(&e, f);
}

/* When the period ends, the next query goes to the second server as before
 * and a copy probes the first; a timely reply to it puts the first back in
 * use, a timeout sets it aside again. */
static void test_set_aside_probe(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r[8];
	env_first_set_aside(&e, f, TCP, FM_ANSWER, 200, "p", r);
	assert_int_equal(STAT(e, 0, queries), 3);

	/* Period over (100 ms), still silent: the probe costs the client nothing. */
	run_for(&e, 150);
	ask_fast_from_second(&e, 4, "p4.example", &r[3], 200);
	assert_int_equal(STAT(e, 0, queries), 4); /* the probe */
	ask_fast_from_second(&e, 5, "p5.example", &r[4], 200);
	assert_int_equal(STAT(e, 0, queries), 4); /* one probe at a time */
	run_for(&e, 250);                          /* the probe times out: aside again */
	assert_int_equal(STAT(e, 0, timeouts), 4);
	assert_int_equal(ASIDE(e, 0), 1);
	assert_int_equal(STAT(e, 0, timeout_asides), 1); /* still the same spell */
	ask_fast_from_second(&e, 6, "p6.example", &r[5], 200);
	assert_int_equal(STAT(e, 0, queries), 4); /* 200 ms now: no probe yet */

	/* The server answers again: the next probe brings it back. */
	f[0].mode = FM_ANSWER;
	run_for(&e, 250);
	ask_fast_from_second(&e, 7, "p7.example", &r[6], 200);
	assert_int_equal(STAT(e, 0, queries), 5);
	run_for(&e, 50);
	assert_int_equal(STAT(e, 0, replies), 1);
	assert_int_equal(ASIDE(e, 0), 0);
	ask(&e, 8, "p8.example", &r[7]);
	check_answer(&r[7], "p8.example", 1);
	assert_ptr_equal(r[7].srv, &e.srv[0]);
	finish_two(&e, f);
}

/* Replies after their attempt timed out do not count: a server slower than
 * the timeout is set aside all the same. */
static void test_late_replies_still_set_aside(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r[4];
	char name[32];
	env_two(&e, f, FM_DELAY, FM_ANSWER, 100);
	f[0].delay_ms = 130;
	for (int i = 0; i < 3; i++) {
		ask(&e, (uint16_t)(1 + i), batch_name(name, sizeof(name), "late", i, "example"), &r[i]);
		check_answer(&r[i], name, 2);
		run_for(&e, 60); /* the late reply arrives and is dropped */
	}
	assert_int_equal(STAT(e, 0, bad_replies), 3);
	assert_int_equal(STAT(e, 0, replies), 0);
	assert_int_equal(ASIDE(e, 0), 1);
	ask_fast_from_second(&e, 4, "late3.example", &r[3], 100);
	finish_two(&e, f);
}

/* Timeouts with timely replies in between are the names', not the
 * server's: it stays in use. */
static void test_some_names_slow_not_set_aside(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	char name[32];
	env_two(&e, f, FM_SILENT_SLOW, FM_ANSWER, 100);
	for (int i = 0; i < 4; i++) {
		ask(&e, (uint16_t)(10 + i), batch_name(name, sizeof(name), "slow", i, "example"), &r);
		check_answer(&r, name, 2);
		ask(&e, (uint16_t)(20 + i), batch_name(name, sizeof(name), "ok", i, "example"), &r);
		check_answer(&r, name, 1);
	}
	assert_int_equal(STAT(e, 0, timeouts), 4);
	assert_int_equal(STAT(e, 0, timeout_asides), 0);
	assert_int_equal(ASIDE(e, 0), 0);
	finish_two(&e, f);
}

/* Every server set aside: queries still go to them, nothing is refused. */
static void test_all_set_aside_still_tried(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r[4];
	env_first_set_aside(&e, f, TCP, FM_SILENT, 50, "void", r);
	assert_int_equal(ASIDE(e, 1), 1);
	f[1].mode = FM_ANSWER;
	ask(&e, 4, "back.example", &r[3]);
	check_answer(&r[3], "back.example", 2);
	assert_int_equal(ASIDE(e, 1), 0);
	finish_two(&e, f);
}

static void test_all_refused(void **state)
{
	(void)state;
	struct env e;
	struct rec r[3];
	int ports[] = { dead_port(), dead_port() };
	env_init(&e);
	env_upstream(&e, TCP, 2000, 2, 256, 100, ports, 2);
	uint64_t t0 = uv_hrtime();
	ask(&e, 1, "down.example", &r[0]);
	assert_int_equal(r[0].status, -ECONNREFUSED);
	assert_true(ms_since(t0) < 500);
	assert_true(STAT(e, 0, conn_failures) >= 1);
	assert_true(STAT(e, 1, conn_failures) >= 1);
	/* Both in backoff now: still refused quickly. */
	t0 = uv_hrtime();
	assert_int_equal(query(&e, 2, "down2.example", &r[1]), 0);
	assert_int_equal(query(&e, 3, "down3.example", &r[2]), 0);
	run_until(&e, &e.ndone, 3, 2000);
	assert_int_equal(r[1].status, -ECONNREFUSED);
	assert_int_equal(r[2].status, -ECONNREFUSED);
	assert_true(ms_since(t0) < 500);
	env_finish(&e, NULL, 0);
}

static void test_all_timeout(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	env_two(&e, f, FM_SILENT, FM_SILENT, 50);
	ask(&e, 1, "void.example", &r);
	assert_int_equal(r.status, -ETIMEDOUT);
	assert_int_equal(STAT(e, 0, timeouts), 1);
	assert_int_equal(STAT(e, 1, timeouts), 1);
	finish_two(&e, f);
}

/* A refused server and a live one: the live one answers; then the refused
 * one is skipped while in backoff. */
static void test_backoff_skips(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r[2];
	env_init(&e);
	fake_start(&f, &e.loop, FM_ANSWER, 2);
	int ports[] = { dead_port(), f.port };
	env_upstream(&e, TCP, 1000, 2, 256, 100, ports, 2);
	ask(&e, 1, "a.example", &r[0]);
	check_answer(&r[0], "a.example", 2);
	uint64_t fails = STAT(e, 0, conn_failures);
	assert_true(fails >= 1);
	ask(&e, 2, "b.example", &r[1]);
	check_answer(&r[1], "b.example", 2);
	assert_int_equal(STAT(e, 0, queries), 1); /* skipped */
	finish_one(&e, &f);
}

static void test_server_closes_after_each_answer(void **state)
{
	(void)state;
	enum { N = 20 };
	struct env e;
	struct fake f;
	static struct rec r[N];
	char name[64];
	env_one(&e, &f, FM_CLOSE_AFTER, 6, 2000, 2, 256, 100);
	ask_batch(&e, r, N, 500, "c", "example", 3000);
	check_batch(r, N, "c", "example", 6);
	assert_true(f.nconns >= 2);
	/* And sequentially: each query finds the previous connection closed. */
	for (int i = 0; i < 5; i++) {
		ask(&e, (uint16_t)(900 + i), batch_name(name, sizeof(name), "s", i, "example"), &r[i]);
		check_answer(&r[i], name, 6);
	}
	finish_one(&e, &f);
}

/* The second query on a connection is met with a close: resent once on a
 * fresh connection to the same (only) server. */
static void test_reused_conn_resent(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r[2];
	env_one(&e, &f, FM_CLOSE_SECOND, 8, 2000, 1, 256, 100);
	ask(&e, 10, "first.example", &r[0]);
	check_answer(&r[0], "first.example", 8);
	ask(&e, 11, "second.example", &r[1]);
	check_answer(&r[1], "second.example", 8);
	assert_int_equal(f.nconns, 2);
	assert_int_equal(STAT(e, 0, queries), 2); /* the resend is no new attempt */
	finish_one(&e, &f);
}

/* A query the server always drops the connection under (a query of death)
 * goes out before 8 others on one connection, and again with them on the
 * fresh one they are all resent on: the bystanders are each retried alone
 * and answered at once; only the poison fails. */
static void test_poison_isolated(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec warm, poison, r[8];
	env_one(&e, &f, FM_POISON, 6, 2000, 2, 256, 100);
	ask(&e, 1, "warm.example", &warm);
	check_answer(&warm, "warm.example", 6);
	uint64_t t0 = uv_hrtime();
	unsigned want = e.ndone + 9;
	char name[64];
	assert_int_equal(query(&e, 2, "poison.example", &poison), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(query(&e, (uint16_t)(100 + i),
				       batch_name(name, sizeof(name), "by", i, "example"), &r[i]),
				 0);
	run_until(&e, &e.ndone, want, 1500);
	assert_int_equal(poison.n, 1);
	assert_int_not_equal(poison.status, 0);
	check_batch(r, 8, "by", "example", 6);
	assert_true(ms_since(t0) < 500); /* no timeout in it */
	assert_int_equal(STAT(e, 0, timeouts), 0);
	finish_one(&e, &f);
}

/* The same with a second server: what the first cannot answer fails over
 * at once (no retries alone first), the poison included. */
static void test_poison_fails_over(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec warm, poison, r[8];
	env_two(&e, f, FM_POISON, FM_ANSWER, 2000);
	ask(&e, 1, "warm.example", &warm);
	check_answer(&warm, "warm.example", 1);
	uint64_t t0 = uv_hrtime();
	unsigned want = e.ndone + 9;
	char name[64];
	assert_int_equal(query(&e, 2, "poison.example", &poison), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(query(&e, (uint16_t)(100 + i),
				       batch_name(name, sizeof(name), "by", i, "example"), &r[i]),
				 0);
	run_until(&e, &e.ndone, want, 1500);
	check_answer(&poison, "poison.example", 2);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(r[i].n, 1);
		assert_int_equal(r[i].status, 0);
	}
	assert_true(ms_since(t0) < 500);
	assert_true(f[0].nconns <= 3); /* the first, the resend's, no isolation */
	finish_two(&e, f);
}

static void test_truncated_frame_failover(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	env_two(&e, f, FM_TRUNCATE, FM_ANSWER, 2000);
	uint64_t t0 = uv_hrtime();
	ask(&e, 5, "cut.example", &r);
	check_answer(&r, "cut.example", 2);
	assert_true(ms_since(t0) < 500);
	assert_true(STAT(e, 0, conn_failures) >= 1);
	finish_two(&e, f);
}

static void test_short_frame_failover(void **state)
{
	(void)state;
	struct env e;
	struct fake f[2];
	struct rec r;
	env_two(&e, f, FM_SHORT_FRAME, FM_ANSWER, 2000);
	ask(&e, 5, "short.example", &r);
	check_answer(&r, "short.example", 2);
	/* once on a fresh connection (issue 11.1), then the next server */
	assert_int_equal(STAT(e, 0, bad_replies), 2);
	assert_int_equal(STAT(e, 0, tcp_connects), 2);
	assert_int_equal(atomic_load(&e.srv[0].stats.open_conns), 0);
	finish_two(&e, f);
}

/* Hostile replies: random frames, some with the right ID or question prefix. */
static void test_garbage_replies(void **state)
{
	(void)state;
	enum { N = 20 };
	struct env e;
	struct fake f;
	static struct rec r[N];
	env_one(&e, &f, FM_GARBAGE, 1, 100, 2, 256, 100);
	ask_batch(&e, r, N, 0, "g", "example", 3000);
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].n, 1);
		assert_true(r[i].status == -EPROTO || r[i].status == -ETIMEDOUT);
	}
	assert_true(STAT(e, 0, bad_replies) > 0);
	finish_one(&e, &f);
}

/* A connection that answers once and then never again is closed as wedged. */
static void test_wedged_conn_replaced(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r[4];
	env_one(&e, &f, FM_SILENT_AFTER, 4, 50, 1, 256, 100);
	ask(&e, 1, "w1.example", &r[0]);
	check_answer(&r[0], "w1.example", 4);
	ask(&e, 2, "w2.example", &r[1]);
	assert_int_equal(r[1].status, -ETIMEDOUT);
	assert_int_equal(f.nconns, 1);
	ask(&e, 3, "w3.example", &r[2]);
	assert_int_equal(r[2].status, -ETIMEDOUT);
	assert_int_equal(atomic_load(&e.srv[0].stats.open_conns), 0); /* closed as wedged */
	ask(&e, 4, "w4.example", &r[3]);
	check_answer(&r[3], "w4.example", 4);
	assert_int_equal(f.nconns, 2);
	finish_one(&e, &f);
}

static void test_restart_recovery(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r[4];
	env_one(&e, &f, FM_ANSWER, 5, 1000, 2, 256, 100);
	ask(&e, 1, "up.example", &r[0]);
	check_answer(&r[0], "up.example", 5);

	fake_stop(&f);
	run_for(&e, 20); /* the upstream sees EOF on its idle connection */
	assert_int_equal(atomic_load(&e.srv[0].stats.open_conns), 0);
	uint64_t t0 = uv_hrtime();
	ask(&e, 2, "down.example", &r[1]);
	assert_int_equal(r[1].status, -ECONNREFUSED);
	assert_true(ms_since(t0) < 500);
	ask(&e, 3, "down.example", &r[2]);
	assert_int_equal(r[2].status, -ECONNREFUSED);

	fake_listen(&f); /* same port */
	t0 = uv_hrtime();
	ask(&e, 4, "back.example", &r[3]);
	check_answer(&r[3], "back.example", 5);
	assert_true(ms_since(t0) < 1000);
	finish_one(&e, &f);
}

static void test_udp_answer(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r;
	env_udp(&e, &f, 3, FM_ANSWER);
	ask(&e, 0x0102, "udp.example", &r);
	check_answer(&r, "udp.example", 3);
	assert_int_equal(f.nudp, 1);
	assert_int_equal(f.nconns, 0);
	assert_int_equal(STAT(e, 0, tcp_connects), 0);
	assert_int_equal(STAT(e, 0, replies), 1);
	finish_one(&e, &f);
}

static void test_udp_tc_retries_tcp(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r;
	env_udp(&e, &f, 4, FM_TC);
	ask(&e, 0x0a0b, "big.example", &r);
	check_answer(&r, "big.example", 4);
	assert_false(r.reply[2] & 0x02);
	assert_int_equal(f.nudp, 1);
	assert_int_equal(f.nqueries, 1);
	assert_int_equal(STAT(e, 0, tc_retries), 1);
	assert_int_equal(STAT(e, 0, tcp_connects), 1);
	finish_one(&e, &f);
}

static void test_udp_refused(void **state)
{
	(void)state;
	struct env e;
	struct rec r;
	env_dead(&e, UDP);
	uint64_t t0 = uv_hrtime();
	ask(&e, 1, "nobody.example", &r);
	assert_int_equal(r.status, -ECONNREFUSED);
	assert_true(ms_since(t0) < 500);
	env_finish(&e, NULL, 0);
}

static void test_max_inflight(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	struct rec r[4];
	env_one(&e, &f, FM_SILENT, 1, 5000, 2, 256, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(query(&e, (uint16_t)i, "m.example", &r[i]), 0);
	assert_int_equal(query(&e, 3, "m.example", &r[3]), -ENOBUFS);
	assert_int_equal(atomic_load(&upstream_worker_stats(e.u)->dropped_inflight), 1);
	assert_int_equal(atomic_load(&upstream_worker_stats(e.u)->inflight), 3);
	run_for(&e, 30);
	for (int i = 0; i < 4; i++)
		assert_int_equal(r[i].n, 0);
	finish_one(&e, &f);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].n, 1);
		assert_int_equal(r[i].status, -ECANCELED);
	}
	assert_int_equal(r[3].n, 0);
}

/* upstream_close() with queries in every state: connected, connecting,
 * backlogged and failed-but-not-yet-called-back. */
static struct env *g_close_env;
static int g_close_reentry;

static void on_cancel_reenter(void *arg, int status, const uint8_t *reply, size_t len,
			      const struct upstream_server *srv)
{
	on_done(arg, status, reply, len, srv);
	uint8_t b[64];
	size_t n = build_query(b, 1, "again.example", 1);
	/* Calls from inside a -ECANCELED callback are refused. */
	g_close_reentry = upstream_query(g_close_env->u, &g_close_env->group, b, n, on_done, arg);
	upstream_close(g_close_env->u); /* a nested close is a no-op */
}

static void test_close_cancels_pending(void **state)
{
	(void)state;
	enum { N = 6 };
	struct env e;
	struct fake f;
	struct rec r[N + 1];
	uint8_t b[64];
	env_one(&e, &f, FM_SILENT, 1, 5000, 1, 2, 100);
	for (int i = 0; i < N; i++)
		assert_int_equal(query(&e, (uint16_t)i, "pending.example", &r[i]), 0);
	run_for(&e, 30); /* connected: 2 on the connection, 4 backlogged */
	/* One more in the connecting state, to a second group. */
	e.list[1] = &e.srv[1];
	server_set(&e.srv[1], dead_port());
	struct upstream_group g2 = { .servers = &e.list[1], .nservers = 1 };
	memset(&r[N], 0, sizeof(r[N]));
	r[N].e = &e;
	size_t n = build_query(b, 99, "other.example", 1);
	g_close_env = &e;
	assert_int_equal(upstream_query(e.u, &g2, b, n, on_cancel_reenter, &r[N]), 0);
	for (int i = 0; i <= N; i++)
		assert_int_equal(r[i].n, 0);
	upstream_close(e.u);
	for (int i = 0; i <= N; i++) {
		assert_int_equal(r[i].n, 1);
		assert_int_equal(r[i].status, -ECANCELED);
	}
	assert_int_equal(g_close_reentry, -ECANCELED);
	e.u = NULL; /* env_finish's close is then a no-op */
	finish_one(&e, &f);
	for (int i = 0; i <= N; i++)
		assert_int_equal(r[i].n, 1);
}

/* A failure known inside upstream_query() is still reported later. */
static void test_sync_failure_deferred(void **state)
{
	(void)state;
	struct env e;
	struct rec r;
	env_dead(&e, TCP);
	e.srv[0].addr.ss_family = AF_UNSPEC; /* uv_tcp_connect() fails at once */
	assert_int_equal(query(&e, 1, "bad.example", &r), 0);
	assert_int_equal(r.n, 0);
	run_until(&e, &e.ndone, 1, 2000);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.status, -ECONNREFUSED);
	env_finish(&e, NULL, 0);
}

/* Reset @p r and send a query for @p name with callback @p cb; @return the query's length. */
static size_t query_cb(struct env *e, uint16_t id, const char *name, upstream_done_cb cb, struct rec *r)
{
	uint8_t b[64];
	size_t n = build_query(b, id, name, 1);
	memset(r, 0, sizeof(*r));
	r->e = e;
	assert_int_equal(upstream_query(e->u, &e->group, b, n, cb, r), 0);
	return n;
}

/* A reply callback that closes the upstream: the rest of the read is dropped. */
static void on_done_close(void *arg, int status, const uint8_t *reply, size_t len,
			  const struct upstream_server *srv)
{
	struct rec *r = arg;
	on_done(arg, status, reply, len, srv);
	if (status == 0)
		upstream_close(r->e->u);
}

static void test_close_from_callback(void **state)
{
	(void)state;
	enum { N = 10 };
	struct env e;
	struct fake f;
	struct rec r[N];
	env_one(&e, &f, FM_REVERSE, 1, 2000, 1, 256, 100);
	for (int i = 0; i < N; i++)
		query_cb(&e, (uint16_t)i, "cb.example", on_done_close, &r[i]);
	run_until(&e, &e.ndone, N, 2000);
	int ok = 0, canceled = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].n, 1);
		ok += r[i].status == 0;
		canceled += r[i].status == -ECANCELED;
	}
	assert_int_equal(ok, 1);
	assert_int_equal(canceled, N - 1);
	e.u = NULL;
	finish_one(&e, &f);
}

static void on_done_big(void *arg, int status, const uint8_t *reply, size_t len,
			const struct upstream_server *srv)
{
	struct rec *r = arg;
	assert_false(g_in_query);
	(void)srv;
	r->n++;
	r->status = status;
	r->len = len;
	r->e->ndone++;
	if (status == 0) {
		memcpy(r->reply, reply, 12);
		for (size_t i = len - 25000; i < len; i++)
			assert_int_equal(reply[i], 0x2a);
	}
}

/* A 25 KB answer arriving in pieces (1, 1, 11, ... bytes): reassembled. */
static void test_split_big_reply(void **state)
{
	(void)state;
	struct env e;
	struct fake f;
	static struct rec r;
	env_one(&e, &f, FM_DRIBBLE, 6, 3000, 1, 256, 100);
	size_t n = query_cb(&e, 0x7777, "big.example", on_done_big, &r);
	run_until(&e, &e.ndone, 1, 3000);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.status, 0);
	assert_int_equal(r.len, n + 16 + 25000);
	assert_int_equal(r.reply[0], 0x77);
	assert_int_equal(r.reply[1], 0x77);
	assert_int_equal(STAT(e, 0, bad_replies), 0);
	finish_one(&e, &f);
}

/* Shrink the send buffer of every TCP handle that is not the fake's. */
static void shrink_sndbuf(uv_handle_t *h, void *arg)
{
	struct fake *f = arg;
	if (h->type != UV_TCP || h == (uv_handle_t *)&f->listener || uv_is_closing(h))
		return;
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		if (f->clients[i] && h == (uv_handle_t *)&f->clients[i]->tcp)
			return;
	}
	int v = 4096;
	assert_int_equal(uv_send_buffer_size(h, &v), 0);
	f->nshrunk++;
}

/* Thousands of queries to a server that reads nothing for a while: writes
 * back up in libuv (partial try_write, queued uv_write), then all complete. */
static void test_write_backpressure(void **state)
{
	(void)state;
	enum { N = 6000 };
	struct env e;
	struct fake f;
	static struct rec r[N];
	static char name[N][260];
	env_one(&e, &f, FM_PAUSED, 2, 10000, 1, 16384, N);
	f.pause_ms = 200; /* read when the upstream connects */
	for (int i = 0; i < N; i++) {
		if (i == 1) { /* connected by now: make the upstream's writes back up */
			run_until(&e, &f.nconns, 1, 1000);
			run_for(&e, 10);
			uv_walk(&e.loop, shrink_sndbuf, &f);
			assert_int_equal(f.nshrunk, 1);
		}
		/* Names of varying length so partial writes stop at varying offsets. */
		int len = snprintf(name[i], sizeof(name[i]), "n%d.", i);
		int labels = 1 + i % 3;
		for (int l = 0; l < labels; l++)
			len += snprintf(name[i] + len, sizeof(name[i]) - (size_t)len, "%.*s.", 20 + (i * 7 + l) % 43,
					"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk");
		snprintf(name[i] + len, sizeof(name[i]) - (size_t)len, "example");
		if (i % 10 != 5) {
			assert_int_equal(query(&e, (uint16_t)i, name[i], &r[i]), 0);
			continue;
		}
		/* Every tenth: opaque padding after the question, up to 20 KB. */
		static uint8_t pb[21000];
		size_t n = build_query(pb, (uint16_t)i, name[i], 1);
		size_t pad = 1 + (size_t)(i * 7919) % 20000;
		memset(pb + n, 0x55, pad);
		memset(&r[i], 0, sizeof(r[i]));
		r[i].e = &e;
		r[i].id = (uint16_t)i;
		g_in_query = true;
		assert_int_equal(upstream_query(e.u, &e.group, pb, n + pad, on_done, &r[i]), 0);
		g_in_query = false;
	}
	run_until(&e, &e.ndone, N, 20000);
	for (int i = 0; i < N; i++)
		check_answer(&r[i], name[i], 2);
	assert_int_equal(f.nconns, 1);
	assert_int_equal(STAT(e, 0, bad_replies), 0);
	finish_one(&e, &f);
}

int main(void)
{
	log_setup(getenv("TEST_DEBUG") ? LOGL_DEBUG : LOGL_ERROR, false);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_forward),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_pipelining_reverse),
		cmocka_unit_test(test_pipelining_pool),
		cmocka_unit_test(test_backlog),
		cmocka_unit_test(test_bad_replies_ignored),
		cmocka_unit_test(test_stream_killer_resent),
		cmocka_unit_test(test_stalled_frame_resent),
		cmocka_unit_test(test_badvers_tc_failover),
		cmocka_unit_test(test_no_edns_fallback),
		cmocka_unit_test(test_only_wrong_question_eproto),
		cmocka_unit_test(test_timeout_failover),
		cmocka_unit_test(test_rcode_failover),
		cmocka_unit_test(test_rcode_all_fail),
		cmocka_unit_test(test_late_reply_dropped),
		cmocka_unit_test(test_all_refused),
		cmocka_unit_test(test_all_timeout),
		cmocka_unit_test(test_backoff_skips),
		cmocka_unit_test(test_timeouts_set_aside),
		cmocka_unit_test(test_timeouts_set_aside_udp),
		cmocka_unit_test(test_set_aside_moves_inflight_on),
		cmocka_unit_test(test_set_aside_probe),
		cmocka_unit_test(test_late_replies_still_set_aside),
		cmocka_unit_test(test_some_names_slow_not_set_aside),
		cmocka_unit_test(test_all_set_aside_still_tried),
		cmocka_unit_test(test_server_closes_after_each_answer),
		cmocka_unit_test(test_reused_conn_resent),
		cmocka_unit_test(test_poison_isolated),
		cmocka_unit_test(test_poison_fails_over),
		cmocka_unit_test(test_truncated_frame_failover),
		cmocka_unit_test(test_short_frame_failover),
		cmocka_unit_test(test_garbage_replies),
		cmocka_unit_test(test_wedged_conn_replaced),
		cmocka_unit_test(test_restart_recovery),
		cmocka_unit_test(test_udp_answer),
		cmocka_unit_test(test_udp_tc_retries_tcp),
		cmocka_unit_test(test_udp_refused),
		cmocka_unit_test(test_max_inflight),
		cmocka_unit_test(test_close_cancels_pending),
		cmocka_unit_test(test_sync_failure_deferred),
		cmocka_unit_test(test_close_from_callback),
		cmocka_unit_test(test_split_big_reply),
		cmocka_unit_test(test_write_backpressure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
