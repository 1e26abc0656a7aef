/* src/io/server.c - the listeners of one worker: sockets, the query worker's hooks, start and stop. */
#include "server_internal.h"

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

/* --------------------------------------------------- query worker hooks */

static void io_reply(void *arg, const struct query_client *c, const uint8_t *wire, size_t len)
{
	struct server *s = arg;
	if (c->proto == QUERY_UDP)
		server_udp_reply(s, c->conn, c, wire, len);
	else
		server_tcp_reply(s, c->conn, wire, len);
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
		server_conn_resume(tc);
	server_conn_maybe_free(tc);
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
	uv_prepare_start(&s->flush, server_flush_all);
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
		rc = uv_udp_recv_start(&u->h, server_udp_alloc, server_udp_recv);
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
		rc = uv_listen((uv_stream_t *)&l->h, 1024, server_tcp_accept);
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

void server_stop_listening(struct server *s)
{
	if (!s || s->stopping)
		return;
	s->stopping = true;
	for (size_t i = 0; i < s->n; i++) {
		if (s->udp[i].s && uv_is_active((uv_handle_t *)&s->udp[i].h) &&
		    server_udp_leave_group(&s->udp[i]) < 0)
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
			server_udp_flush(s, &s->udp[i]); /* answers of the last loop turn */
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
		server_conn_close(c);
	}
	server_maybe_free(s);
}
