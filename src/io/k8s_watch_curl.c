/* src/io/k8s_watch_curl.c - the API watch's transfers: curl multi on uv_poll/uv_timer, starting and ending requests. */
#include "k8s_watch_internal.h"

#include <poll.h>

static void drain(struct k8s_watch *w);
static int poll_sock(struct sock_ctx *c);

/* -------------------------------------------------- curl <-> libuv glue */

static struct sock_ctx *find_sock(struct k8s_watch *w, curl_socket_t fd)
{
	for (struct sock_ctx *c = w->socks; c; c = c->next)
		if (c->fd == fd)
			return c;
	return NULL;
}

static void sock_free_cb(uv_handle_t *h)
{
	free(h->data);
}

void k8s_watch_sock_close(struct k8s_watch *w, struct sock_ctx *c)
{
	for (struct sock_ctx **pp = &w->socks; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, sock_free_cb);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct sock_ctx *c = h->data;
	struct k8s_watch *w = c->w;
	int flags = 0, running = 0;

	if (status < 0)
		flags |= CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(w->multi, c->fd, flags, &running);
	drain(w);
}

int k8s_watch_on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct k8s_watch *w = userp;
	struct sock_ctx *c = find_sock(w, fd);
	int events = 0, rc;

	(void)easy;
	(void)socketp; /* lost on REMOVE and re-add; the fd is the key */
	if (what == CURL_POLL_REMOVE) {
		if (c)
			k8s_watch_sock_close(w, c);
		return 0;
	}
	if (!c) {
		if (!(c = calloc(1, sizeof(*c))))
			return -1;
		if ((rc = uv_poll_init_socket(w->loop, &c->poll, fd)) < 0) {
			log_error(TAG, "uv_poll_init_socket(%d): %s", (int)fd, uv_strerror(rc));
			free(c);
			return -1;
		}
		c->poll.data = c;
		c->fd = fd;
		c->w = w;
		c->next = w->socks;
		w->socks = c;
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	c->events = events;
	if ((rc = poll_sock(c)) < 0) {
		log_error(TAG, "uv_poll_start(%d): %s", (int)fd, uv_strerror(rc));
		k8s_watch_sock_close(w, c);
		return -1;
	}
	return 0;
}

/* Poll @p c for what curl wants, less reading while reads are held. */
static int poll_sock(struct sock_ctx *c)
{
	int events = c->events & ~(c->w->reads_held ? UV_READABLE : 0);

	if (!events)
		return uv_poll_stop(&c->poll);
	return uv_poll_start(&c->poll, events, on_poll);
}

void k8s_watch_hold_reads(struct k8s_watch *w)
{
	if (w->reads_held || w->closing)
		return;
	w->reads_held = true;
	for (struct sock_ctx *c = w->socks; c; c = c->next)
		if (c->events & UV_READABLE)
			(void)poll_sock(c);
}

void k8s_watch_release_reads(struct k8s_watch *w)
{
	enum { MAX_FDS = 16 }; /* one per connection: 3 lists/watches (+ pods) on h1 */
	struct pollfd fds[MAX_FDS];
	nfds_t n = 0;
	int running = 0;

	if (!w->reads_held)
		return;
	w->reads_held = false;
	for (struct sock_ctx *c = w->socks; c; c = c->next) {
		int rc = poll_sock(c);
		if (rc < 0)
			log_error(TAG, "uv_poll_start(%d): %s", (int)c->fd, uv_strerror(rc));
		if ((c->events & UV_READABLE) && n < MAX_FDS)
			fds[n++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
	}
	/* What is waiting now; a socket past MAX_FDS is read when libuv
	 * polls it, like any other. The fds stay open: only curl closes
	 * them, and only from inside curl_multi_socket_action() below, so
	 * each is looked up again before use. */
	if (n && poll(fds, n, 0) > 0) {
		for (nfds_t i = 0; i < n; i++) {
			int flags = 0;
			if (fds[i].revents & POLLIN)
				flags |= CURL_CSELECT_IN;
			if (fds[i].revents & (POLLERR | POLLHUP | POLLNVAL))
				flags |= CURL_CSELECT_ERR;
			if (!flags || !find_sock(w, fds[i].fd))
				continue;
			curl_multi_socket_action(w->multi, fds[i].fd, flags, &running);
		}
		drain(w);
	}
}

/* libcurl is about to close @p fd: make sure no poll handle still watches
 * it (libuv must never poll a closed, possibly reused, fd). */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
	struct k8s_watch *w = clientp;
	struct sock_ctx *c = find_sock(w, fd);
	if (c)
		k8s_watch_sock_close(w, c);
	return close(fd);
}

static void on_curl_timeout(uv_timer_t *t)
{
	struct k8s_watch *w = t->data;
	int running = 0;
	curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain(w);
}

int k8s_watch_on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct k8s_watch *w = userp;
	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&w->curl_timer);
	else /* 0 means "soon", which must not be from inside this callback */
		uv_timer_start(&w->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

void k8s_watch_finish_transfer(struct res *r)
{
	if (r->easy && r->paused) {
		/* libcurl 7.88 leaks the data it held for a paused transfer
		 * that is removed (seen with HTTP/2 under LeakSanitizer when a
		 * list being decoded is ended): hand it over first, to be
		 * dropped unread. */
		r->discard = r->resuming = true;
		curl_easy_pause(r->easy, CURLPAUSE_CONT);
		r->discard = r->resuming = false;
	}
	if (r->easy) {
		curl_multi_remove_handle(r->w->multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	uv_timer_stop(&r->idle_timer);
	uv_timer_stop(&r->slice_timer);
	r->paused = false;
}

static void on_slice(uv_timer_t *t)
{
	struct res *r = t->data;

	if (!r->easy || !r->paused || r->w->closing)
		return;
	r->paused = false;
	/* Calls the write callback with the data libcurl held, which takes it
	 * whole (see k8s_watch_on_write): libcurl 7.88 leaks its held buffer when
	 * the callback pauses again from inside curl_easy_pause() (seen with
	 * HTTP/2 and gzip under LeakSanitizer). What it holds is one callback's
	 * worth, so the slice overruns by at most one chunk. */
	r->resuming = true;
	curl_easy_pause(r->easy, CURLPAUSE_CONT);
	r->resuming = false;
	drain(r->w);
}

void k8s_watch_pause_until_next_turn(struct res *r)
{
	r->paused = true;
	/* 1 ms, not 0: a 0 ms timer started from a timer would run again
	 * before the loop polls. */
	uv_timer_start(&r->slice_timer, on_slice, 1, 0);
}

/* How a request uses HTTP/2 and its connection, set on purpose rather than
 * left to libcurl's defaults (which change between versions):
 *  - CURL_HTTP_VERSION_2TLS: ask for h2 over TLS (ALPN) as kube-apiserver
 *    and client-go do, falling back to HTTP/1.1 when the server refuses it.
 *  - PIPEWAIT: a request waits for a connection that is still being set up
 *    and multiplexes on it instead of opening its own, so the three lists and
 *    watches share one TLS connection (with the multi handle's
 *    CURLMOPT_PIPELINING = CURLPIPE_MULTIPLEX, set in k8s_watch.c). With
 *    HTTP/1.1 each still gets its own connection.
 *  - TCP keepalive after 30 s idle, probes every 10 s: a peer or middlebox
 *    that vanished without a FIN or RST is noticed by the kernel even on a
 *    quiet connection (the idle watchdog covers a silent but live one).
 * Flow control has no option in libcurl 7.88 (CURLOPT_STREAM_WEIGHT is a
 * priority, not a window): it announces a 32 MiB stream window
 * (SETTINGS_INITIAL_WINDOW_SIZE) and raises the connection window to 32 MiB.
 * Our write callback never pauses a transfer, so the windows are handed back
 * as data is read and a list page (~120 KB per 500 Services) never waits on
 * them. No HTTP/2 PING: CURLOPT_UPKEEP_INTERVAL_MS acts only through
 * curl_easy_upkeep() calls; TCP keepalive does that job. */
static void set_http2_options(CURL *e)
{
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
}

/* The options of every request but the URL and TLS (which can fail). */
static void set_options(struct res *r, CURL *e)
{
	struct k8s_watch *w = r->w;

	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "nodedns");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, k8s_watch_on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, k8s_watch_on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	set_http2_options(e);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	/* The write callback counts the inflated bytes, so a gzip bomb meets
	 * LIST_MAX_BYTES and the decoding bounds like any other body. */
	if (r->phase == PH_LIST) {
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)w->list_deadline_ms);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_S);
	} else {
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
				 ((long)r->watch_timeout_s + WATCH_DEADLINE_MARGIN_S) * 1000L);
	}
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, w);
}

int k8s_watch_start_request(struct res *r, const char *query)
{
	struct k8s_watch *w = r->w;
	char *url = NULL, *auth = NULL;
	CURL *e = NULL;
	int rc = -ENOMEM;

	k8s_watch_token_refresh(w, false);
	/* The pods of one node: their field selector goes on every request. */
	const char *sel = r->def->kind == RES_PODS ? w->pod_selector : NULL;
	size_t ulen = strlen(w->server) + strlen(r->def->path) + 1 + strlen(query) + 1 +
		      (sel ? strlen(sel) + 1 : 0);
	if (!(url = malloc(ulen)))
		goto fail;
	snprintf(url, ulen, "%s%s?%s%s%s", w->server, r->def->path, sel ? sel : "", sel ? "&" : "",
		 query);
	if (!(e = curl_easy_init()))
		goto fail;
	r->hdrs = curl_slist_append(NULL, "Accept: application/json");
	if (!r->hdrs)
		goto fail;
	if (w->token) {
		size_t alen = strlen(w->token) + sizeof("Authorization: Bearer ");
		struct curl_slist *l;
		if (!(auth = malloc(alen)))
			goto fail;
		snprintf(auth, alen, "Authorization: Bearer %s", w->token);
		l = curl_slist_append(r->hdrs, auth);
		explicit_bzero(auth, alen);
		if (!l)
			goto fail;
		r->hdrs = l;
	}
	rc = -EINVAL;
	if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
	    k8s_watch_set_tls(w, e) < 0)
		goto fail;
	set_options(r, e);

	r->errbuf[0] = '\0';
	r->http_code = 0;
	r->got_code = false;
	r->retry_after_s = -1;
	r->abort = AB_NONE;
	r->body.len = 0;
	r->body_truncated = false;
	k8s_stream_reset(&r->stream);
	r->start_ms = k8s_watch_now_ms(w);
	r->lines = 0;
	r->live = false;
	r->easy = e;
	if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
		r->easy = NULL;
		rc = -EIO;
		goto fail;
	}
	STAT_INC(w, res[r->def->kind].requests);
	uv_timer_start(&r->idle_timer, k8s_watch_on_idle, w->idle_ms, 0);
	free(url);
	free(auth);
	return 0;
fail:
	if (e)
		curl_easy_cleanup(e);
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	free(url);
	free(auth);
	return rc;
}

static void drain(struct k8s_watch *w)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(w->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *e = msg->easy_handle;
		CURLcode result = msg->data.result;
		char *priv = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
		struct res *r = (struct res *)(void *)priv;
		if (!r || r->easy != e) {
			curl_multi_remove_handle(w->multi, e);
			curl_easy_cleanup(e);
			continue;
		}
		k8s_watch_transfer_done(r, result);
	}
	k8s_watch_publish(w);
}

void k8s_watch_on_idle(uv_timer_t *t)
{
	struct res *r = t->data;
	struct k8s_watch *w = r->w;
	enum phase ph = r->phase;

	if (!r->easy || w->closing)
		return;
	bool initial = r->initial;
	log_warn(TAG, "%s: no data for %llu s, restarting the %s", r->def->name,
		 (unsigned long long)(w->idle_ms / 1000),
		 ph == PH_LIST ? "list" : initial ? "streaming list" : "watch");
	k8s_watch_finish_transfer(r);
	r->abort = AB_NONE;
	r->initial = false;
	if (initial) {
		/* A server that streams the initial events goes on to the
		 * initial-events-end bookmark at once; a silent one is taken for
		 * a plain watch that ignored sendInitialEvents. */
		k8s_watch_list_fallback(r, "no initial-events-end bookmark before the idle timeout");
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
	} else if (ph == PH_LIST) {
		STAT_INC(w, errors);
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
	} else {
		STAT_INC(w, interrupted);
		r->interrupted = true;
		k8s_watch_schedule(r, PH_WATCH, k8s_watch_rnd(w) % w->reconnect_spread_ms);
	}
	k8s_watch_publish(w);
}
