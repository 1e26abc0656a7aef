/* tests/fuzz/fuzz_upstream.c - libFuzzer target for src/upstream.c: what a hostile server sends.
 *
 * Build and run: tests/fuzz/run.sh (FUZZ_TARGETS=upstream for this one).
 * Reproduce a crash: build-fuzz/fuzz_upstream crash-<sha1>
 *
 * The real forwarder on a real libuv loop, talking over loopback to a
 * "server" this file plays by hand: a listening TCP socket and a UDP socket
 * on the same 127.0.0.1 port, driven without the loop (non-blocking
 * accept/recv/send), so the input decides every byte the forwarder reads:
 *
 *   input := hdr op*
 *   hdr   :  bit 0 UDP (else TCP), bits 1-2 queries at the start (1..4),
 *            bit 3 one connection per server (else 2), bit 4 one query in
 *            flight per connection (the backlog), bit 5 two servers in the
 *            group (same address: failover), bit 6 a callback asks a new
 *            question, bit 7 a short timeout (SHORT_TIMEOUT_MS, else 60 s)
 *   op    := tag ...; tag % 8 selects:
 *     0  a reply frame on TCP: sel, len16 bytes; the ID is set to that of
 *        the query sel picks among those the server received and its
 *        question spliced in after the header (sel bit 7: not spliced, the
 *        input's own question is checked); the 2-byte length prefix is the
 *        true length
 *     1  raw bytes on a TCP connection (sel picks it): len16 bytes, framing
 *        included, so prefixes may lie, split frames, be short
 *     2  the server closes a connection (sel bit 7: with RST)
 *     3  a UDP reply to a query received over UDP, built as in op 0
 *     4  one more question (at most MAX_QUERIES in all)
 *     5  let the loop run (nothing sent); tag bits 3-5, when not 0, first
 *        move the clock forward by g_steps_ms[tag >> 3 & 7] (see below)
 *     6  the server half-closes a connection (shutdown SHUT_WR)
 *     7  a reply frame on TCP for every query received, same bytes
 *   After every op the loop runs until it is idle, accepting connections and
 *   reading what the forwarder wrote.
 *
 * FUZZ_DEBUG=1 in the environment prints each query's outcome and the
 * forwarder's debug log.
 *
 * Time: the input moves the clock. clock_gettime() is replaced here (the
 * executable's definition comes first for libuv as well) and reads
 * CLOCK_MONOTONIC and its variants g_skew_ns ahead of the kernel's, so op 5
 * makes the loop's timers due without sleeping: the attempt deadline
 * (failover, -ETIMEDOUT), the stalled-frame timer of upstream_tcp.c, the
 * idle timer, the end of a server's backoff. Real time passes too, but
 * microseconds against timers of SHORT_TIMEOUT_MS / 4 and more, so the
 * outcome depends on the bytes only. At the end the server resets its
 * connections and upstream_close() cancels what is left.
 *
 * Checked, besides the sanitizers: every upstream_query() that returned 0
 * gets exactly one callback, never from inside upstream_query(); status 0
 * carries a message of at least a header with the ID we gave and our
 * question; errors are -ETIMEDOUT, -ECONNREFUSED, -EPROTO or -ECANCELED;
 * upstream_query() from a -ECANCELED callback returns -ECANCELED; what the
 * forwarder writes is framed DNS queries with our question.
 */
#include "nodedns/util/log.h"
#include "nodedns/io/upstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_check.h"

#define MAX_QUERIES 16
#define MAX_CONNS 16
#define MAX_SEEN 64 /* queries the server received, per input */

#define SHORT_TIMEOUT_MS 800u /* the stall timer: max(200, 800 / 4) ms */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* ------------------------------------------------------- the fake clock */

/* How far op 5 moves the clock, by tag bits 3-5: past the stalled-frame
 * timer, the short and the long attempt deadline, the idle timer, the
 * longest backoff. */
static const uint32_t g_steps_ms[8] = { 0, 10, 120, 260, 900, 5100, 31000, 61000 };
static uint64_t g_skew_ns;

/* The clock every caller in this process sees (libuv's loop time, libFuzzer,
 * the sanitizers): the kernel's, the monotonic clocks moved by g_skew_ns.
 * By system call, so the C library's own entry is not needed. */
int clock_gettime(clockid_t id, struct timespec *ts)
{
	long rc = syscall(SYS_clock_gettime, id, ts);
	if (rc != 0)
		return -1;
	if (g_skew_ns && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE ||
			  id == CLOCK_MONOTONIC_RAW || id == CLOCK_BOOTTIME)) {
		uint64_t ns = (uint64_t)ts->tv_nsec + g_skew_ns % 1000000000u;
		ts->tv_sec += (time_t)(g_skew_ns / 1000000000u + ns / 1000000000u);
		ts->tv_nsec = (long)(ns % 1000000000u);
	}
	return 0;
}

static void clock_advance(uint32_t ms)
{
	g_skew_ns += (uint64_t)ms * 1000000u;
}

/* ------------------------------------------------------ the fake server */

static uv_loop_t g_loop;
static int g_listen_fd = -1, g_udp_fd = -1;
static struct upstream_server g_srv[2];
static struct upstream_server *g_list[2] = { &g_srv[0], &g_srv[1] };

struct conn {
	int fd; /* -1: closed */
	uint8_t buf[65537 + 2];
	size_t len;
};

/* A query as the server received it. */
struct seen {
	int conn; /* -1: over UDP */
	uint16_t id;
	uint8_t q[12 + 255 + 4];
	size_t qend;
	struct sockaddr_storage from; /* UDP */
	socklen_t fromlen;
};

static struct conn g_conns[MAX_CONNS];
static size_t g_nconns;
static struct seen g_seen[MAX_SEEN];
static size_t g_nseen;

/* ------------------------------------------------------ the client side */

struct ask {
	uint16_t id;
	uint8_t q[12 + 255 + 4 + 11];
	size_t len, qend;
	unsigned calls;
};

static struct ask g_asks[MAX_QUERIES];
static size_t g_nasks;
static struct upstream *g_up;
static struct upstream_group g_group;
static bool g_in_query, g_closing, g_reask;
static bool g_debug; /* FUZZ_DEBUG=1: print each outcome */

static void done(void *arg, int status, const uint8_t *reply, size_t len,
		 const struct upstream_server *server);

/* Ask question number g_nasks: "q<n>.fuzz.example A" with EDNS. */
static void ask(void)
{
	if (g_nasks >= MAX_QUERIES)
		return;
	struct ask *a = &g_asks[g_nasks];
	static const uint8_t tail[] = "\4fuzz\7example";
	uint8_t *p = a->q;
	memset(a, 0, sizeof(*a));
	a->id = (uint16_t)(0x5a00 + g_nasks);
	p[0] = (uint8_t)(a->id >> 8);
	p[1] = (uint8_t)a->id;
	p[2] = 0x01; /* RD */
	p[5] = 1;    /* QDCOUNT */
	p[11] = 1;   /* ARCOUNT */
	size_t o = 12;
	p[o++] = 2;
	p[o++] = 'q';
	p[o++] = (uint8_t)('a' + g_nasks);
	memcpy(p + o, tail, sizeof(tail)); /* with the root label */
	o += sizeof(tail);
	p[o++] = 0;
	p[o++] = 1; /* A */
	p[o++] = 0;
	p[o++] = 1; /* IN */
	a->qend = o;
	static const uint8_t opt[11] = { 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0 };
	memcpy(p + o, opt, sizeof(opt));
	a->len = o + sizeof(opt);

	g_in_query = true;
	int rc = upstream_query(g_up, &g_group, a->q, a->len, done, a);
	g_in_query = false;
	if (g_closing) {
		CHECK(rc == -ECANCELED);
		return;
	}
	CHECK(rc == 0);
	g_nasks++;
}

static bool same_question(const uint8_t *a, const uint8_t *b, size_t qend)
{
	for (size_t i = 12; i < qend; i++) {
		uint8_t x = a[i], y = b[i];
		if (x >= 'A' && x <= 'Z')
			x = (uint8_t)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (uint8_t)(y + 32);
		if (x != y)
			return false;
	}
	return true;
}

static void done(void *arg, int status, const uint8_t *reply, size_t len,
		 const struct upstream_server *server)
{
	struct ask *a = arg;
	CHECK(a >= g_asks && a < g_asks + g_nasks);
	CHECK(!g_in_query);
	CHECK(++a->calls == 1);
	if (g_debug)
		fprintf(stderr, "fuzz_upstream: query %zu: status %d, %zu bytes\n",
			(size_t)(a - g_asks), status, len);
	if (status == 0) {
		CHECK(reply && len >= 12 && server);
		CHECK(get16(reply) == a->id);
		CHECK(reply[2] & 0x80);
		CHECK(len >= a->qend && get16(reply + 4) == 1);
		CHECK(same_question(reply, a->q, a->qend));
	} else {
		CHECK(status == -ETIMEDOUT || status == -ECONNREFUSED || status == -EPROTO ||
		      status == -ECANCELED);
		CHECK(!reply && len == 0);
		CHECK(status == -ECANCELED || !g_closing);
	}
	/* A new question from inside a callback. */
	if (g_reask || status == -ECANCELED)
		ask();
}

/* Take what the forwarder wrote on @p c: framed queries. */
static void conn_parse(int ci)
{
	struct conn *c = &g_conns[ci];
	size_t off = 0;
	while (c->len - off >= 2) {
		size_t n = get16(c->buf + off);
		if (c->len - off < 2 + n)
			break;
		const uint8_t *m = c->buf + off + 2;
		CHECK(n >= 12 && get16(m + 4) == 1 && !(m[2] & 0x80));
		if (g_nseen < MAX_SEEN) {
			struct seen *s = &g_seen[g_nseen++];
			s->conn = ci;
			s->id = get16(m);
			/* The question is one of ours. */
			size_t qend = 0;
			for (size_t i = 0; i < g_nasks; i++)
				if (n >= g_asks[i].qend &&
				    memcmp(m + 12, g_asks[i].q + 12, g_asks[i].qend - 12) == 0)
					qend = g_asks[i].qend;
			CHECK(qend > 0);
			memcpy(s->q, m, qend);
			s->qend = qend;
		}
		off += 2 + n;
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
}

static void conn_close(int ci, bool rst)
{
	struct conn *c = &g_conns[ci];
	if (c->fd < 0)
		return;
	if (rst) {
		struct linger l = { 1, 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	}
	close(c->fd);
	c->fd = -1;
}

/* Accept, read and receive what there is. @return true if anything came. */
static bool server_poll(void)
{
	bool any = false;
	for (;;) {
		int fd = accept4(g_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			break;
		any = true;
		if (g_nconns >= MAX_CONNS) {
			struct linger l = { 1, 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			close(fd);
			continue;
		}
		/* Every send at once: with Nagle a second small frame waits for
		 * the forwarder's delayed ACK, longer than an input runs. */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		g_conns[g_nconns].fd = fd;
		g_conns[g_nconns].len = 0;
		g_nconns++;
	}
	for (size_t i = 0; i < g_nconns; i++) {
		struct conn *c = &g_conns[i];
		while (c->fd >= 0 && c->len < sizeof(c->buf)) {
			ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			if (r <= 0) {
				if (r == 0 || (errno != EAGAIN && errno != EINTR))
					conn_close((int)i, false);
				break;
			}
			any = true;
			c->len += (size_t)r;
			conn_parse((int)i);
		}
	}
	for (;;) {
		uint8_t m[4096];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t r = recvfrom(g_udp_fd, m, sizeof(m), 0, (struct sockaddr *)&from, &fl);
		if (r < 0)
			break;
		any = true;
		CHECK(r >= 12 && get16(m + 4) == 1 && !(m[2] & 0x80));
		if (g_nseen >= MAX_SEEN)
			continue;
		struct seen *s = &g_seen[g_nseen];
		size_t qend = 0;
		for (size_t i = 0; i < g_nasks; i++)
			if ((size_t)r >= g_asks[i].qend &&
			    memcmp(m + 12, g_asks[i].q + 12, g_asks[i].qend - 12) == 0)
				qend = g_asks[i].qend;
		CHECK(qend > 0);
		s->conn = -1;
		s->id = get16(m);
		memcpy(s->q, m, qend);
		s->qend = qend;
		s->from = from;
		s->fromlen = fl;
		g_nseen++;
	}
	return any;
}

/* Run the loop and the server until neither has anything to do. */
static void pump(void)
{
	int quiet = 0;
	for (int i = 0; i < 64 && quiet < 3; i++) {
		uv_run(&g_loop, UV_RUN_NOWAIT);
		if (server_poll())
			quiet = 0;
		else
			quiet++;
	}
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return; /* the peer went away */
		p += w;
		n -= (size_t)w;
	}
}

/* The reply to @p s from @p data: ID patched, question spliced in after the
 * header unless @p keep (then only the ID is patched: the question is the
 * input's, so mismatches are reachable). */
static size_t build_reply(const struct seen *s, const uint8_t *data, size_t len, bool keep,
			  uint8_t *out)
{
	if (keep || len < 12) {
		memcpy(out, data, len);
		if (len >= 2) {
			out[0] = (uint8_t)(s->id >> 8);
			out[1] = (uint8_t)s->id;
		}
		return len;
	}
	size_t qn = s->qend - 12, n = len + qn;
	if (n > 65535)
		n = 65535;
	memcpy(out, data, 12);
	out[0] = (uint8_t)(s->id >> 8);
	out[1] = (uint8_t)s->id;
	out[4] = 0;
	out[5] = 1;
	memcpy(out + 12, s->q + 12, qn);
	memcpy(out + s->qend, data + 12, n - s->qend);
	return n;
}

static const struct seen *pick_seen(uint8_t sel, bool udp)
{
	size_t cands = 0;
	for (size_t i = 0; i < g_nseen; i++)
		if ((g_seen[i].conn < 0) == udp)
			cands++;
	if (cands == 0)
		return NULL;
	size_t k = (sel & 0x7f) % cands;
	for (size_t i = 0; i < g_nseen; i++)
		if ((g_seen[i].conn < 0) == udp && k-- == 0)
			return &g_seen[i];
	return NULL;
}

static int pick_conn(uint8_t sel)
{
	size_t open = 0;
	for (size_t i = 0; i < g_nconns; i++)
		if (g_conns[i].fd >= 0)
			open++;
	if (open == 0)
		return -1;
	size_t k = (sel & 0x7f) % open;
	for (size_t i = 0; i < g_nconns; i++)
		if (g_conns[i].fd >= 0 && k-- == 0)
			return (int)i;
	return -1;
}

static void tcp_reply(const struct seen *s, const uint8_t *data, size_t len, bool keep)
{
	static uint8_t out[2 + 65535];
	if (!s || s->conn < 0 || g_conns[s->conn].fd < 0)
		return;
	size_t n = build_reply(s, data, len, keep, out + 2);
	out[0] = (uint8_t)(n >> 8);
	out[1] = (uint8_t)n;
	send_all(g_conns[s->conn].fd, out, n + 2);
}

/* ----------------------------------------------------------------- setup */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	g_debug = getenv("FUZZ_DEBUG") != NULL;
	/* As main() does: a write to a connection the server has reset must
	 * fail with EPIPE, not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	log_setup(g_debug ? LOGL_DEBUG : LOGL_ERROR, false);
	CHECK(uv_loop_init(&g_loop) == 0);

	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	g_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(g_listen_fd >= 0);
	int one = 1;
	setsockopt(g_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	CHECK(bind(g_listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	CHECK(listen(g_listen_fd, 128) == 0);
	socklen_t sl = sizeof(sin);
	CHECK(getsockname(g_listen_fd, (struct sockaddr *)&sin, &sl) == 0);
	/* UDP on the same port: one server address for both transports. */
	g_udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(g_udp_fd >= 0);
	CHECK(bind(g_udp_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);

	for (int i = 0; i < 2; i++) {
		memcpy(&g_srv[i].addr, &sin, sizeof(sin));
		g_srv[i].addrlen = sizeof(sin);
		snprintf(g_srv[i].name, sizeof(g_srv[i].name), "127.0.0.1:%u#%d",
			 ntohs(sin.sin_port), i);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t hdr = data[0];
	size_t pos = 1;

	struct upstream_config cfg = {
		.proto = hdr & 1 ? UPSTREAM_PROTO_UDP : UPSTREAM_PROTO_TCP,
		.timeout_ms = hdr & 128 ? SHORT_TIMEOUT_MS : 60000,
		.conns_per_server = hdr & 8 ? 1 : 2,
		.max_inflight_conn = hdr & 16 ? 1 : 256,
		.max_inflight = 64,
	};
	g_group.servers = g_list;
	g_group.nservers = hdr & 32 ? 2 : 1;
	g_reask = hdr & 64;
	g_nasks = g_nseen = g_nconns = 0;
	g_closing = false;
	CHECK(upstream_new(&g_loop, &cfg, &g_up) == 0);
	for (unsigned i = 0; i <= ((hdr >> 1) & 3u); i++)
		ask();
	pump();

	while (pos < size) {
		uint8_t tag = data[pos++], sel = 0;
		size_t len = 0;
		const uint8_t *blob = NULL;
		unsigned op = tag & 7;
		if (op != 4 && op != 5) {
			if (pos >= size)
				break;
			sel = data[pos++];
		}
		if (op == 0 || op == 1 || op == 3 || op == 7) {
			if (pos + 2 > size)
				break;
			len = get16(data + pos);
			pos += 2;
			if (len > size - pos)
				len = size - pos;
			blob = data + pos;
			pos += len;
		}
		switch (op) {
		case 0:
			tcp_reply(pick_seen(sel, false), blob, len, sel & 0x80);
			break;
		case 1: {
			int ci = pick_conn(sel);
			if (ci >= 0)
				send_all(g_conns[ci].fd, blob, len);
			break;
		}
		case 2: {
			int ci = pick_conn(sel);
			if (ci >= 0)
				conn_close(ci, sel & 0x80);
			break;
		}
		case 3: {
			static uint8_t out[65535];
			const struct seen *s = pick_seen(sel, true);
			if (!s)
				break;
			size_t n = build_reply(s, blob, len, sel & 0x80, out);
			sendto(g_udp_fd, out, n, 0, (const struct sockaddr *)&s->from, s->fromlen);
			break;
		}
		case 4:
			ask();
			break;
		case 5:
			if (tag >> 3 & 7)
				clock_advance(g_steps_ms[tag >> 3 & 7]);
			break;
		case 6: {
			int ci = pick_conn(sel);
			if (ci >= 0)
				shutdown(g_conns[ci].fd, SHUT_WR);
			break;
		}
		case 7:
			for (size_t i = 0; i < g_nseen; i++)
				tcp_reply(&g_seen[i], blob, len, false);
			break;
		}
		pump();
	}

	/* Reset every connection, then cancel before the loop sees the
	 * resets: no TIME_WAIT on either side, nothing resent. */
	for (size_t i = 0; i < g_nconns; i++)
		conn_close((int)i, true);
	g_closing = true;
	upstream_close(g_up);
	for (size_t i = 0; i < g_nasks; i++)
		CHECK(g_asks[i].calls == 1);
	/* upstream_close() frees once the loop has closed the handles. */
	CHECK(uv_run(&g_loop, UV_RUN_DEFAULT) == 0);
	/* Leave nothing for the next input: connections still in the listen
	 * backlog, datagrams sent last. */
	int fd;
	while ((fd = accept4(g_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct linger l = { 1, 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(fd);
	}
	uint8_t m[512];
	while (recv(g_udp_fd, m, sizeof(m), 0) >= 0)
		;
	g_up = NULL;
	return 0;
}
