/* src/io/k8s_watch.c - list+watch Services, EndpointSlices and Namespaces with libcurl on libuv.
 *
 * One state machine per resource, a port of client-go's Reflector:
 *
 *   LIST (pages of 500, "continue")  --all pages ok-->  swap into the store
 *        |                                              (clear_kind + apply)
 *        v                                                     |
 *   WATCH from the list's RV  <----------------------------------+
 *     events -> store, BOOKMARK -> RV, stream end -> WATCH again from the RV
 *     ERROR event / 410 / oversized event -> LIST again (NotOlderThan the RV)
 *     401 -> re-read the token; 429 -> Retry-After; other errors -> backoff
 *
 * The list in progress is kept aside (a jansson array) and only applied once
 * every page arrived, so a failed relist leaves the last good data in place.
 * libcurl's multi-socket API is driven by one uv_poll_t per curl socket and
 * one uv_timer_t, the wiring of curl's docs/examples/multi-uv.c (rewritten,
 * with its known pitfalls avoided: sockets are looked up by fd rather than
 * through socketp, POLLERR is passed on as CURL_CSELECT_ERR, info_read is
 * drained after every socket_action, and the poll is closed before curl
 * closes the fd). Everything runs on the control loop thread.
 */
#include "nodedns/io/k8s_watch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nodedns/io/k8s_kubeconfig.h"
#include "nodedns/cluster/k8s_stream.h"
#include "nodedns/util/log.h"

#define TAG "k8s"

#define PAGE_LIMIT 500
#define DEFAULT_EVENT_BYTES (4u << 20)
#define MIN_EVENT_BYTES 1024u
/* All pages of one list together. Real servers answering from the watch cache
 * (resourceVersion=0) ignore "limit" and send everything in one response; a
 * 10k-Service cluster is about 20 MB of JSON, so this leaves ample room while
 * still bounding what a broken or hostile server can make us hold. */
#define LIST_MAX_BYTES ((size_t)256 << 20)
#define ERROR_BODY_MAX_BYTES (64 * 1024)
#define CONTINUE_MAX_BYTES (64 * 1024)
#define TOKEN_MAX_BYTES (64 * 1024)
#define URL_MAX_BYTES 2048
#define TOKEN_CHECK_MS 10000
#define BACKOFF_INITIAL_MS 800
#define BACKOFF_MAX_MS 30000
#define BACKOFF_RESET_MS 120000
#define WATCH_TIMEOUT_MIN_S 300
#define WATCH_TIMEOUT_MAX_S 600
#define IDLE_DEFAULT_MS 150000
#define CONNECT_TIMEOUT_MS 10000
#define SHORT_WATCH_MS 1000
#define RETRY_AFTER_MAX_S 60
#define LOG_INTERVAL_MS 10000
#define PUBLISH_MIN_INTERVAL_MS 20 /* see publish() */

#define STAT_INC(w, f) atomic_fetch_add_explicit(&(w)->stats.f, 1, memory_order_relaxed)
#define STAT_ADD(w, f, n) atomic_fetch_add_explicit(&(w)->stats.f, (n), memory_order_relaxed)

struct res_def {
	enum k8s_kind kind;
	const char *name;     /* for logs */
	const char *path;     /* collection path below the server URL */
	const char *obj_kind; /* "kind" of the objects in watch events */
};

static const struct res_def res_defs[K8S_KIND_COUNT] = {
	[K8S_SERVICE] = {K8S_SERVICE, "services", "/api/v1/services", "Service"},
	[K8S_ENDPOINTSLICE] = {K8S_ENDPOINTSLICE, "endpointslices",
			       "/apis/discovery.k8s.io/v1/endpointslices", "EndpointSlice"},
	[K8S_NAMESPACE] = {K8S_NAMESPACE, "namespaces", "/api/v1/namespaces", "Namespace"},
};

enum phase { PH_IDLE = 0, PH_LIST, PH_WATCH };

/* How the first page of the next list asks for its resourceVersion. */
enum list_mode {
	LIST_ANY = 0,	/* resourceVersion=0: from the watch cache (first list) */
	LIST_NOT_OLDER, /* resourceVersion=<last>&resourceVersionMatch=NotOlderThan */
	LIST_LATEST,	/* no resourceVersion: a consistent read (after a 410) */
};

/* Why we ended a transfer ourselves. */
enum abort_reason { AB_NONE = 0, AB_RELIST, AB_NOMEM, AB_TOOBIG };

struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	struct k8s_watch *w;
	struct sock_ctx *next; /* in k8s_watch.socks while polled */
};

struct buf {
	char *p;
	size_t len, cap;
};

struct res {
	struct k8s_watch *w;
	const struct res_def *def;
	CURL *easy; /* the transfer in flight, or NULL */
	struct curl_slist *hdrs;
	enum phase phase, next; /* next: what retry_timer starts */
	uv_timer_t retry_timer, idle_timer;
	char rv[K8S_RV_MAX]; /* last resourceVersion seen ("" before the first list) */
	enum list_mode list_mode;
	bool listed;  /* at least one list applied */
	bool watched; /* a watch ran since the last list: the next one is a restart */
	char *cont;   /* continue token of the next page */
	json_t *pending; /* items of the list in progress */
	size_t list_bytes;
	struct buf body; /* a list page, or an error body */
	bool body_truncated;
	struct k8s_stream stream;
	long http_code;
	bool got_code;
	long retry_after_s; /* -1: none */
	enum abort_reason abort;
	uint64_t start_ms, lines;
	uint64_t backoff_ms, last_fail_ms;
	struct log_limit loglim;
	char errbuf[CURL_ERROR_SIZE];
};

struct k8s_watch {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t curl_timer;
	struct sock_ctx *socks;
	struct res res[K8S_KIND_COUNT];
	struct k8s_store *store;
	k8s_watch_publish_cb cb;
	void *cb_arg;
	struct k8s_watch_stats stats;

	char *server; /* no trailing '/' */
	struct k8s_kubeconfig kc; /* CA / client cert (paths or data), when from a kubeconfig */
	char *ca_file;		  /* from the config, when no kubeconfig */

	char *token_file, *token;
	struct stat tok_st;
	uint64_t tok_checked_ms;
	struct log_limit tok_loglim;

	size_t max_event_bytes;
	uint64_t idle_ms;
	uint64_t rng;
	bool dirty; /* the store changed since the last publish */
	uv_timer_t publish_timer; /* a publish held back by PUBLISH_MIN_INTERVAL_MS */
	uint64_t last_publish_ms;
	bool closing;
	int open_handles; /* timers still to close before the final free */
	bool curl_global;
};

/* ------------------------------------------------------------- helpers */

static uint64_t rnd(struct k8s_watch *w)
{
	/* xorshift64*: jitter only, nothing secret. */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 2685821657736338717ull;
}

static uint64_t now_ms(struct k8s_watch *w)
{
	return uv_now(w->loop);
}

static bool may_log(struct res *r)
{
	return log_ratelimited(&r->loglim, now_ms(r->w), LOG_INTERVAL_MS);
}

/* Exponential backoff with jitter: d x [1, 2), doubling from 0.8 s, at most
 * 30 s, reset after 2 minutes without a failure (client-go's constants). */
static uint64_t backoff(struct res *r)
{
	uint64_t now = now_ms(r->w);
	if (r->backoff_ms == 0 || now - r->last_fail_ms > BACKOFF_RESET_MS)
		r->backoff_ms = BACKOFF_INITIAL_MS;
	uint64_t d = r->backoff_ms + rnd(r->w) % r->backoff_ms;
	if (d > BACKOFF_MAX_MS)
		d = BACKOFF_MAX_MS;
	r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
	r->last_fail_ms = now;
	return d;
}

static int buf_append(struct buf *b, const char *p, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len)
		return -ENOMEM;
	if (b->len + n > b->cap) {
		size_t ncap = b->cap ? b->cap : 16384;
		while (ncap < b->len + n)
			ncap *= 2;
		char *np = realloc(b->p, ncap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static void buf_release(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* A server-supplied string made safe for one log line. */
static void printable(char *dst, size_t cap, const char *src, size_t n)
{
	size_t i = 0;
	for (; i < n && src[i] && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[i] = '\0';
}

/* The "message" of a Status error body, for logs. */
static void status_message(const struct buf *b, char *out, size_t cap, bool *too_large_rv)
{
	json_t *root = b->len ? json_loadb(b->p, b->len, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(root, "message"));
	out[0] = '\0';
	if (msg)
		printable(out, cap, msg, strlen(msg));
	else if (b->len)
		printable(out, cap, b->p, b->len);
	if (too_large_rv) {
		*too_large_rv = msg && strstr(msg, "Too large resource version");
		const json_t *causes = json_object_get(json_object_get(root, "details"), "causes");
		size_t i;
		const json_t *c;
		json_array_foreach(causes, i, c) {
			const char *t = json_string_value(json_object_get(c, "reason"));
			if (!t)
				t = json_string_value(json_object_get(c, "type"));
			if (t && strcmp(t, "ResourceVersionTooLarge") == 0)
				*too_large_rv = true;
		}
	}
	json_decref(root);
}

/* --------------------------------------------------------------- token */

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void wipe_str(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Read a bearer token: at most TOKEN_MAX_BYTES, surrounding whitespace
 * trimmed, and only visible ASCII inside (it goes into a header line). */
static int read_token(const char *path, char **out, struct stat *st, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *b = NULL;
	size_t n = 0;
	int rc;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "token file %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "token file %s: not a regular file", path);
		close(fd);
		return -EINVAL;
	}
	if (!(b = malloc(TOKEN_MAX_BYTES + 1))) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r = read(fd, b + n, TOKEN_MAX_BYTES + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errlen, "token file %s: %s", path, strerror(-rc));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > TOKEN_MAX_BYTES) {
			snprintf(err, errlen, "token file %s: larger than %d bytes", path,
				 TOKEN_MAX_BYTES);
			rc = -EINVAL;
			goto fail;
		}
	}
	close(fd);
	fd = -1;
	size_t s = 0, e = n;
	while (s < e && (b[s] == ' ' || b[s] == '\t' || b[s] == '\r' || b[s] == '\n'))
		s++;
	while (e > s && (b[e - 1] == ' ' || b[e - 1] == '\t' || b[e - 1] == '\r' || b[e - 1] == '\n'))
		e--;
	if (s == e) {
		snprintf(err, errlen, "token file %s: empty", path);
		rc = -EINVAL;
		goto fail;
	}
	for (size_t i = s; i < e; i++) {
		if (b[i] < 0x21 || b[i] > 0x7e) {
			snprintf(err, errlen, "token file %s: not a bearer token", path);
			rc = -EINVAL;
			goto fail;
		}
	}
	memmove(b, b + s, e - s);
	explicit_bzero(b + (e - s), n - (e - s)); /* the moved-from tail */
	b[e - s] = '\0';
	*out = b;
	return 0;
fail:
	explicit_bzero(b, n);
	free(b);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Re-read the token file when it changed (checked at most every 10 s) or
 * when @p force (after a 401). The old token stays on any failure. */
static void token_refresh(struct k8s_watch *w, bool force)
{
	struct stat st;
	char err[256];
	char *tok = NULL;
	uint64_t now = now_ms(w);

	if (!w->token_file)
		return;
	if (!force && now - w->tok_checked_ms < TOKEN_CHECK_MS)
		return;
	w->tok_checked_ms = now;
	if (!force) {
		if (stat(w->token_file, &st) < 0) {
			if (log_ratelimited(&w->tok_loglim, now, LOG_INTERVAL_MS))
				log_warn(TAG, "token file %s: %s (keeping the current token)",
					 w->token_file, strerror(errno));
			return;
		}
		if (same_file(&st, &w->tok_st))
			return;
	}
	if (read_token(w->token_file, &tok, &st, err, sizeof(err)) < 0) {
		if (log_ratelimited(&w->tok_loglim, now, LOG_INTERVAL_MS))
			log_warn(TAG, "%s (keeping the current token)", err);
		return;
	}
	w->tok_st = st;
	if (w->token && strcmp(w->token, tok) == 0) {
		wipe_str(tok);
		return;
	}
	wipe_str(w->token);
	w->token = tok;
	STAT_INC(w, token_reloads);
	log_info(TAG, "bearer token reloaded from %s", w->token_file);
}

/* -------------------------------------------------- curl <-> libuv glue */

static void drain(struct k8s_watch *w);

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

/* Stop polling @p c and free it once libuv is done with it. The fd itself
 * belongs to libcurl. */
static void sock_close(struct k8s_watch *w, struct sock_ctx *c)
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

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct k8s_watch *w = userp;
	struct sock_ctx *c = find_sock(w, fd);
	int events = 0, rc;

	(void)easy;
	(void)socketp; /* lost on REMOVE and re-add; the fd is the key */
	if (what == CURL_POLL_REMOVE) {
		if (c)
			sock_close(w, c);
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
	if ((rc = uv_poll_start(&c->poll, events, on_poll)) < 0) {
		log_error(TAG, "uv_poll_start(%d): %s", (int)fd, uv_strerror(rc));
		sock_close(w, c);
		return -1;
	}
	return 0;
}

/* libcurl is about to close @p fd: make sure no poll handle still watches
 * it (libuv must never poll a closed, possibly reused, fd). */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
	struct k8s_watch *w = clientp;
	struct sock_ctx *c = find_sock(w, fd);
	if (c)
		sock_close(w, c);
	return close(fd);
}

static void on_curl_timeout(uv_timer_t *t)
{
	struct k8s_watch *w = t->data;
	int running = 0;
	curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	drain(w);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct k8s_watch *w = userp;
	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&w->curl_timer);
	else /* 0 means "soon", which must not be from inside this callback */
		uv_timer_start(&w->curl_timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ------------------------------------------------------------ requests */

static void start_list(struct res *r);
static void start_watch(struct res *r);

static void on_retry(uv_timer_t *t)
{
	struct res *r = t->data;
	if (r->w->closing || r->easy)
		return;
	if (r->next == PH_WATCH)
		start_watch(r);
	else
		start_list(r);
}

static void schedule(struct res *r, enum phase next, uint64_t delay_ms)
{
	r->phase = PH_IDLE;
	r->next = next;
	if (!r->w->closing)
		uv_timer_start(&r->retry_timer, on_retry, delay_ms, 0);
}

/* Forget the list in progress (its pages and continue token). */
static void drop_list(struct res *r)
{
	json_decref(r->pending);
	r->pending = NULL;
	r->list_bytes = 0;
	free(r->cont);
	r->cont = NULL;
}

static void on_idle(uv_timer_t *t);

/* End the transfer of @p r, if any: never call from a curl callback. */
static void finish_transfer(struct res *r)
{
	if (r->easy) {
		curl_multi_remove_handle(r->w->multi, r->easy);
		curl_easy_cleanup(r->easy);
		r->easy = NULL;
	}
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	uv_timer_stop(&r->idle_timer);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp);
static size_t on_header(char *data, size_t size, size_t nmemb, void *userp);

static int set_tls(struct k8s_watch *w, CURL *e)
{
	struct curl_blob blob;
	CURLcode rc = CURLE_OK;

	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (w->kc.ca_data) {
		blob = (struct curl_blob){w->kc.ca_data, w->kc.ca_len, CURL_BLOB_COPY};
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
	} else if (w->kc.ca_file || w->ca_file) {
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO, w->kc.ca_file ? w->kc.ca_file : w->ca_file);
	}
	/* With our own CA, trust only it, not also the system directory. */
	if (w->kc.ca_data || w->kc.ca_file || w->ca_file)
		curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	if (w->kc.cert_data) {
		blob = (struct curl_blob){w->kc.cert_data, w->kc.cert_len, CURL_BLOB_COPY};
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
	} else if (w->kc.cert_file) {
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERT, w->kc.cert_file);
	}
	if (w->kc.key_data) {
		blob = (struct curl_blob){w->kc.key_data, w->kc.key_len, CURL_BLOB_COPY};
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
	} else if (w->kc.key_file) {
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEY, w->kc.key_file);
	}
	return rc == CURLE_OK ? 0 : -EINVAL;
}

/* Start a GET of @p query on the resource's collection. */
static int start_request(struct res *r, const char *query)
{
	struct k8s_watch *w = r->w;
	char *url = NULL, *auth = NULL;
	CURL *e = NULL;
	int rc = -ENOMEM;

	token_refresh(w, false);
	size_t ulen = strlen(w->server) + strlen(r->def->path) + 1 + strlen(query) + 1;
	if (!(url = malloc(ulen)))
		goto fail;
	snprintf(url, ulen, "%s%s?%s", w->server, r->def->path, query);
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
	    set_tls(w, e) < 0)
		goto fail;
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "nodedns");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
	/* Share one HTTP/2 connection when the server offers h2 (libcurl's
	 * default for https); with HTTP/1.1 each watch has its own. */
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, w);

	r->errbuf[0] = '\0';
	r->http_code = 0;
	r->got_code = false;
	r->retry_after_s = -1;
	r->abort = AB_NONE;
	r->body.len = 0;
	r->body_truncated = false;
	k8s_stream_reset(&r->stream);
	r->start_ms = now_ms(w);
	r->lines = 0;
	r->easy = e;
	if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
		r->easy = NULL;
		rc = -EIO;
		goto fail;
	}
	uv_timer_start(&r->idle_timer, on_idle, w->idle_ms, 0);
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

static char *escape(const char *s)
{
	return curl_easy_escape(NULL, s, 0);
}

static void start_list(struct res *r)
{
	char *q = NULL, *esc = NULL;
	int rc = -ENOMEM;

	if (!r->cont) {
		drop_list(r);
		if (!(r->pending = json_array()))
			goto fail;
	}
	if (r->cont) {
		if (!(esc = escape(r->cont)))
			goto fail;
		rc = asprintf(&q, "limit=%d&continue=%s", PAGE_LIMIT, esc);
	} else if (r->list_mode == LIST_NOT_OLDER && r->rv[0]) {
		if (!(esc = escape(r->rv)))
			goto fail;
		rc = asprintf(&q, "limit=%d&resourceVersion=%s&resourceVersionMatch=NotOlderThan",
			      PAGE_LIMIT, esc);
	} else if (r->list_mode == LIST_LATEST) {
		rc = asprintf(&q, "limit=%d", PAGE_LIMIT);
	} else {
		rc = asprintf(&q, "limit=%d&resourceVersion=0", PAGE_LIMIT);
	}
	if (rc < 0) {
		q = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	r->phase = PH_LIST;
	if ((rc = start_request(r, q)) < 0)
		goto fail;
	log_debug(TAG, "%s: list %s", r->def->name, q);
	curl_free(esc);
	free(q);
	return;
fail:
	curl_free(esc);
	free(q);
	STAT_INC(r->w, errors);
	if (may_log(r))
		log_error(TAG, "%s: cannot start list: %s", r->def->name, strerror(-rc));
	schedule(r, PH_LIST, backoff(r));
}

static void start_watch(struct res *r)
{
	struct k8s_watch *w = r->w;
	char *q = NULL, *esc = NULL;
	int rc = -ENOMEM;
	unsigned timeout_s =
		WATCH_TIMEOUT_MIN_S + (unsigned)(rnd(w) % (WATCH_TIMEOUT_MAX_S - WATCH_TIMEOUT_MIN_S + 1));

	if (!(esc = escape(r->rv)))
		goto fail;
	if (asprintf(&q, "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
		     esc, timeout_s) < 0) {
		q = NULL;
		goto fail;
	}
	r->phase = PH_WATCH;
	if ((rc = start_request(r, q)) < 0)
		goto fail;
	STAT_INC(w, watches);
	if (r->watched)
		STAT_INC(w, watch_restarts);
	r->watched = true;
	log_debug(TAG, "%s: watch %s", r->def->name, q);
	curl_free(esc);
	free(q);
	return;
fail:
	curl_free(esc);
	free(q);
	STAT_INC(w, errors);
	if (may_log(r))
		log_error(TAG, "%s: cannot start watch: %s", r->def->name, strerror(-rc));
	schedule(r, PH_WATCH, backoff(r));
}

/* ----------------------------------------------------- data callbacks */

static enum k8s_event store_event(enum k8s_ev_type t)
{
	return t == K8S_EV_ADDED ? K8S_ADDED : t == K8S_EV_MODIFIED ? K8S_MODIFIED : K8S_DELETED;
}

/* One line of a watch stream. A non-zero return ends the transfer
 * (r->abort says why). */
static int on_line(void *arg, const char *line, size_t len)
{
	struct res *r = arg;
	struct k8s_watch *w = r->w;
	struct k8s_stream_event ev;
	char err[200];
	int rc;

	r->lines++;
	rc = k8s_stream_decode(line, len, &ev, err, sizeof(err));
	if (rc == -ENOMEM) {
		r->abort = AB_NOMEM;
		return 1;
	}
	if (rc < 0) {
		STAT_INC(w, bad_events);
		if (may_log(r))
			log_warn(TAG, "%s: undecodable watch event skipped: %s", r->def->name, err);
		return 0;
	}
	switch (ev.type) {
	case K8S_EV_ADDED:
	case K8S_EV_MODIFIED:
	case K8S_EV_DELETED: {
		const char *kind = json_string_value(json_object_get(ev.object, "kind"));
		if (kind && strcmp(kind, r->def->obj_kind) != 0) {
			STAT_INC(w, bad_events);
			if (may_log(r))
				log_warn(TAG, "%s: event for an object of another kind skipped",
					 r->def->name);
		} else {
			err[0] = '\0';
			rc = k8s_store_apply(w->store, r->def->kind, store_event(ev.type), ev.object,
					     err, sizeof(err));
			if (rc == 0) {
				STAT_INC(w, events);
				w->dirty = true;
			} else if (rc == -ENOMEM) {
				r->abort = AB_NOMEM;
			} else {
				STAT_INC(w, bad_events);
				if (may_log(r))
					log_warn(TAG, "%s: %s event rejected by the store: %s",
						 r->def->name, k8s_ev_type_name(ev.type), err);
			}
		}
		if (ev.rv[0])
			memcpy(r->rv, ev.rv, sizeof(r->rv));
		break;
	}
	case K8S_EV_BOOKMARK:
		memcpy(r->rv, ev.rv, sizeof(r->rv));
		STAT_INC(w, bookmarks);
		break;
	case K8S_EV_ERROR: {
		const char *msg = json_string_value(json_object_get(ev.object, "message"));
		char pm[200];
		printable(pm, sizeof(pm), msg ? msg : "", msg ? strlen(msg) : 0);
		if (k8s_stream_event_is_expired(&ev)) {
			STAT_INC(w, relists_410);
			log_info(TAG, "%s: resourceVersion %s expired (%s), relisting", r->def->name,
				 r->rv, pm);
		} else {
			STAT_INC(w, errors);
			if (may_log(r))
				log_warn(TAG, "%s: watch ERROR %d %s: %s, relisting", r->def->name,
					 ev.code, ev.reason, pm);
		}
		r->abort = AB_RELIST;
		break;
	}
	}
	k8s_stream_event_clear(&ev);
	return r->abort != AB_NONE;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct res *r = userp;
	struct k8s_watch *w = r->w;
	size_t n = size * nmemb;

	uv_timer_start(&r->idle_timer, on_idle, w->idle_ms, 0);
	if (!r->got_code) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->http_code);
		r->got_code = true;
	}
	if (r->http_code != 200) {
		/* An error body (a Status): keep the start of it for the log. */
		size_t room = ERROR_BODY_MAX_BYTES - r->body.len;
		if (n > room)
			r->body_truncated = true;
		if (buf_append(&r->body, data, n < room ? n : room) < 0)
			r->body_truncated = true;
		return n;
	}
	if (r->phase == PH_LIST) {
		if (n > LIST_MAX_BYTES - r->list_bytes - r->body.len) {
			r->abort = AB_TOOBIG;
			return CURL_WRITEFUNC_ERROR;
		}
		if (buf_append(&r->body, data, n) < 0) {
			r->abort = AB_NOMEM;
			return CURL_WRITEFUNC_ERROR;
		}
		return n;
	}
	uint64_t before = r->stream.oversized;
	int rc = k8s_stream_feed(&r->stream, data, n, on_line, r);
	if (r->stream.oversized != before) {
		STAT_ADD(w, oversized_events, r->stream.oversized - before);
		log_warn(TAG, "%s: watch event larger than %zu bytes dropped, relisting",
			 r->def->name, w->max_event_bytes);
		if (r->abort == AB_NONE)
			r->abort = AB_RELIST;
	}
	if (rc == -ENOMEM && r->abort == AB_NONE)
		r->abort = AB_NOMEM;
	return r->abort != AB_NONE ? CURL_WRITEFUNC_ERROR : n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct res *r = userp;

	/* Only a sign of life: Retry-After is read from curl at the end. */
	(void)data;
	uv_timer_start(&r->idle_timer, on_idle, r->w->idle_ms, 0);
	return size * nmemb;
}

/* ---------------------------------------------------------- publishing */

static bool all_listed(const struct k8s_watch *w)
{
	for (int k = 0; k < K8S_KIND_COUNT; k++)
		if (!w->res[k].listed)
			return false;
	return true;
}

static void publish_now(struct k8s_watch *w);

static void on_publish_timer(uv_timer_t *t)
{
	publish_now(t->data);
}

/* Publish what changed, at most once per PUBLISH_MIN_INTERVAL_MS: under a
 * stream of events a snapshot per event costs the control thread (and the
 * CPU it shares with the workers) more than it gains; a change still reaches
 * the workers within the interval. The first snapshot goes out at once. */
static void publish(struct k8s_watch *w)
{
	if (!w->dirty || !all_listed(w) || w->closing)
		return;
	uint64_t now = now_ms(w);
	if (w->last_publish_ms && now - w->last_publish_ms < PUBLISH_MIN_INTERVAL_MS) {
		if (!uv_is_active((uv_handle_t *)&w->publish_timer))
			uv_timer_start(&w->publish_timer, on_publish_timer,
				       w->last_publish_ms + PUBLISH_MIN_INTERVAL_MS - now, 0);
		return;
	}
	publish_now(w);
}

static void publish_now(struct k8s_watch *w)
{
	if (!w->dirty || !all_listed(w) || w->closing)
		return;
	uv_timer_stop(&w->publish_timer);
	w->last_publish_ms = now_ms(w) ? now_ms(w) : 1;
	struct cluster_snapshot *snap = k8s_store_publish(w->store);
	if (!snap) {
		/* Stays dirty: the next batch (a bookmark at the latest) retries. */
		log_error(TAG, "cannot publish a cluster snapshot: out of memory");
		return;
	}
	w->dirty = false;
	if (w->cb)
		w->cb(w->cb_arg, snap);
	else
		cluster_snapshot_unref(snap);
	if (!atomic_load(&w->stats.synced)) {
		atomic_store(&w->stats.synced, 1);
		log_info(TAG, "cluster store synced");
	}
}

/* ----------------------------------------------------- transfer results */

/* Apply the complete list: swap the new set into the store. */
static void commit_list(struct res *r, const char *rv)
{
	struct k8s_watch *w = r->w;
	size_t i, rejected = 0;
	json_t *it;
	char err[200];
	bool nomem = false;

	k8s_store_clear_kind(w->store, r->def->kind);
	json_array_foreach(r->pending, i, it) {
		int rc = k8s_store_apply(w->store, r->def->kind, K8S_ADDED, it, err, sizeof(err));
		if (rc == -ENOMEM) {
			nomem = true;
		} else if (rc < 0) {
			rejected++;
			if (may_log(r))
				log_warn(TAG, "%s: listed object rejected by the store: %s",
					 r->def->name, err);
		}
	}
	if (rejected)
		STAT_ADD(w, bad_events, rejected);
	size_t n = json_array_size(r->pending);
	drop_list(r);
	/* A large list leaves its JSON tree's memory in malloc's free lists
	 * (measured: 320 MB resident after a 10,000-service sync, 131 MB once
	 * trimmed); hand it back to the system. */
	malloc_trim(0);
	memcpy(r->rv, rv, strlen(rv) + 1);
	r->list_mode = LIST_NOT_OLDER;
	r->listed = true;
	r->watched = false;
	w->dirty = true;
	STAT_INC(w, lists);
	log_info(TAG, "%s: listed %zu objects at resourceVersion %s", r->def->name, n, r->rv);
	if (nomem) {
		STAT_INC(w, errors);
		log_error(TAG, "%s: out of memory while applying the list, relisting", r->def->name);
		schedule(r, PH_LIST, backoff(r));
		return;
	}
	start_watch(r);
}

/* One list page arrived with 200. @return 0 (next page started or list
 * committed) or -EINVAL (malformed). */
static int list_page(struct res *r, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *root = json_loadb(r->body.p, r->body.len, 0, &jerr);
	int rc = -EINVAL;

	if (!root) {
		char t[JSON_ERROR_TEXT_LENGTH + 1];
		printable(t, sizeof(t), jerr.text, strlen(jerr.text));
		snprintf(why, whylen, "bad JSON at byte %d: %s", jerr.position, t);
		return -EINVAL;
	}
	const json_t *meta = json_object_get(root, "metadata");
	const json_t *items = json_object_get(root, "items");
	const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
	const json_t *contj = json_object_get(meta, "continue");
	const char *cont = json_string_value(contj);

	if (!json_is_object(root) || !json_is_object(meta)) {
		snprintf(why, whylen, "not a list (no metadata)");
		goto out;
	}
	if (!json_is_array(items) && !json_is_null(items) && items) {
		snprintf(why, whylen, "items is not an array");
		goto out;
	}
	if (contj && !cont && !json_is_null(contj)) {
		snprintf(why, whylen, "metadata.continue is not a string");
		goto out;
	}
	if (cont && strlen(cont) > CONTINUE_MAX_BYTES) {
		snprintf(why, whylen, "metadata.continue longer than %d bytes", CONTINUE_MAX_BYTES);
		goto out;
	}
	if (cont && !cont[0])
		cont = NULL;
	if (!cont && (!rv || !k8s_rv_valid(rv))) {
		snprintf(why, whylen, "missing or invalid metadata.resourceVersion");
		goto out;
	}
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it) {
		if (!json_is_object(it)) {
			STAT_INC(r->w, bad_events);
			continue;
		}
		if (json_array_append(r->pending, it) < 0) {
			rc = -ENOMEM;
			snprintf(why, whylen, "out of memory");
			goto out;
		}
	}
	r->list_bytes += r->body.len;
	/* Do not keep a page-sized buffer between pages and watches. */
	buf_release(&r->body);
	if (cont) {
		char *c = strdup(cont);
		if (!c) {
			rc = -ENOMEM;
			snprintf(why, whylen, "out of memory");
			goto out;
		}
		free(r->cont);
		r->cont = c;
		json_decref(root);
		start_list(r);
		return 0;
	}
	free(r->cont);
	r->cont = NULL;
	char rvcopy[K8S_RV_MAX];
	memcpy(rvcopy, rv, strlen(rv) + 1);
	json_decref(root);
	commit_list(r, rvcopy);
	return 0;
out:
	json_decref(root);
	return rc;
}

/* Common handling of a non-200 answer. @return the delay before the retry. */
static uint64_t http_failure(struct res *r, long code, const char *what)
{
	struct k8s_watch *w = r->w;
	char msg[256];

	status_message(&r->body, msg, sizeof(msg), NULL);
	if (code == 401) {
		STAT_INC(w, unauthorized_401);
		if (may_log(r))
			log_warn(TAG, "%s: %s: 401 Unauthorized (%s); re-reading the token",
				 r->def->name, what, msg);
		token_refresh(w, true);
		return backoff(r);
	}
	if (code == 429 || (code == 503 && r->retry_after_s >= 0)) {
		if (code == 429)
			STAT_INC(w, throttled_429);
		else
			STAT_INC(w, errors);
		uint64_t d = r->retry_after_s >= 0 ? (uint64_t)r->retry_after_s * 1000 : backoff(r);
		if (d == 0)
			d = BACKOFF_INITIAL_MS;
		if (may_log(r))
			log_info(TAG, "%s: %s: %ld, retrying in %llu ms", r->def->name, what, code,
				 (unsigned long long)d);
		return d;
	}
	STAT_INC(w, errors);
	if (may_log(r)) {
		if (code == 403)
			log_error(TAG, "%s: %s: 403 Forbidden (%s): check the RBAC rules",
				  r->def->name, what, msg);
		else
			log_warn(TAG, "%s: %s: HTTP %ld (%s)", r->def->name, what, code, msg);
	}
	return backoff(r);
}

static void list_done(struct res *r, CURLcode result, long code, enum abort_reason ab)
{
	struct k8s_watch *w = r->w;
	char why[300];

	if (ab == AB_TOOBIG || ab == AB_NOMEM) {
		STAT_INC(w, errors);
		log_error(TAG, "%s: list %s, retrying later", r->def->name,
			  ab == AB_TOOBIG ? "larger than 256 MiB" : "ran out of memory");
		drop_list(r);
		buf_release(&r->body);
		schedule(r, PH_LIST, backoff(r));
		return;
	}
	if (result != CURLE_OK) {
		/* Transport error: retry this page (the continue token stays). */
		STAT_INC(w, errors);
		if (may_log(r))
			log_warn(TAG, "%s: list: %s", r->def->name,
				 r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
		schedule(r, PH_LIST, backoff(r));
		return;
	}
	if (code == 200) {
		int rc = list_page(r, why, sizeof(why));
		if (rc < 0) {
			STAT_INC(w, errors);
			if (may_log(r))
				log_warn(TAG, "%s: unusable list response: %s", r->def->name, why);
			drop_list(r);
			buf_release(&r->body);
			schedule(r, PH_LIST, backoff(r));
		}
		return;
	}
	bool too_large = false;
	status_message(&r->body, why, sizeof(why), &too_large);
	if (code == 410) {
		/* An expired continue token, or a resourceVersion the server can no
		 * longer serve: start over with a consistent read. */
		STAT_INC(w, relists_410);
		bool retry_now = r->cont || r->list_mode != LIST_LATEST;
		log_info(TAG, "%s: list: 410 Gone (%s), listing again from the latest state",
			 r->def->name, why);
		drop_list(r);
		r->list_mode = LIST_LATEST;
		schedule(r, PH_LIST, retry_now ? 0 : backoff(r));
		return;
	}
	if (code == 504 && too_large) {
		drop_list(r);
		r->list_mode = LIST_LATEST;
	}
	schedule(r, PH_LIST, http_failure(r, code, "list"));
}

static void watch_done(struct res *r, CURLcode result, long code, enum abort_reason ab)
{
	struct k8s_watch *w = r->w;
	uint64_t ran_ms = now_ms(w) - r->start_ms;

	if (ab == AB_RELIST || ab == AB_NOMEM) {
		if (ab == AB_NOMEM) {
			STAT_INC(w, errors);
			log_error(TAG, "%s: out of memory in the watch, relisting", r->def->name);
		}
		r->list_mode = LIST_NOT_OLDER;
		schedule(r, PH_LIST, backoff(r));
		return;
	}
	if (code == 200 || (result != CURLE_OK && code == 0)) {
		bool short_empty = ran_ms < SHORT_WATCH_MS && r->lines == 0;
		const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(result);
		if (result != CURLE_OK && (code == 0 || short_empty)) {
			/* Connection refused, TLS failure, or cut at once. */
			STAT_INC(w, errors);
			if (may_log(r))
				log_warn(TAG, "%s: watch: %s", r->def->name, why);
			schedule(r, PH_WATCH, backoff(r));
		} else if (short_empty) {
			STAT_INC(w, errors);
			if (may_log(r))
				log_warn(TAG, "%s: watch ended after %llu ms without events",
					 r->def->name, (unsigned long long)ran_ms);
			schedule(r, PH_WATCH, backoff(r));
		} else {
			/* The server's timeoutSeconds, or a stream cut after it
			 * delivered (apiserver rollout, GOAWAY, a proxy): resume
			 * from the last RV at once, as client-go does. */
			if (result != CURLE_OK && may_log(r))
				log_info(TAG, "%s: watch interrupted (%s), resuming at %s",
					 r->def->name, why, r->rv);
			else
				log_debug(TAG, "%s: watch ended, resuming at %s", r->def->name, r->rv);
			schedule(r, PH_WATCH, 0);
		}
		return;
	}
	if (code == 410) {
		STAT_INC(w, relists_410);
		log_info(TAG, "%s: watch: 410 Gone, relisting", r->def->name);
		r->list_mode = LIST_NOT_OLDER;
		schedule(r, PH_LIST, backoff(r));
		return;
	}
	schedule(r, PH_WATCH, http_failure(r, code, "watch"));
}

static void transfer_done(struct res *r, CURLcode result)
{
	long code = r->http_code;
	enum abort_reason ab = r->abort;
	enum phase ph = r->phase;

	curl_off_t retry_after = 0;

	if (!r->got_code)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	/* Seconds, or an HTTP-date turned into seconds from now; 0: none. */
	if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &retry_after) != CURLE_OK ||
	    retry_after <= 0)
		r->retry_after_s = -1;
	else
		r->retry_after_s = retry_after > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (long)retry_after;
	finish_transfer(r);
	r->abort = AB_NONE;
	if (r->w->closing)
		return;
	if (ph == PH_LIST)
		list_done(r, result, code, ab);
	else
		watch_done(r, result, code, ab);
	/* An error body is not kept between requests. */
	if (r->body.cap > ERROR_BODY_MAX_BYTES && !r->easy)
		buf_release(&r->body);
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
		transfer_done(r, result);
	}
	publish(w);
}

/* No byte for idle_ms: the connection is presumed dead (libcurl does not
 * notice a silent peer on its own). Not a curl callback, so the transfer may
 * be removed here. */
static void on_idle(uv_timer_t *t)
{
	struct res *r = t->data;
	struct k8s_watch *w = r->w;
	enum phase ph = r->phase;

	if (!r->easy || w->closing)
		return;
	log_warn(TAG, "%s: no data for %llu s, restarting the %s", r->def->name,
		 (unsigned long long)(w->idle_ms / 1000), ph == PH_LIST ? "list" : "watch");
	finish_transfer(r);
	r->abort = AB_NONE;
	if (ph == PH_LIST) {
		STAT_INC(w, errors);
		schedule(r, PH_LIST, backoff(r));
	} else {
		schedule(r, PH_WATCH, 0);
	}
	publish(w);
}

/* ------------------------------------------------------- start / close */

static int failv(char *err, size_t errlen, int rc, const char *fmt, const char *arg)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, arg);
	return rc;
}

/* The API server URL: https with a host, no query or fragment, printable
 * ASCII (curl's URL parser takes bytes above 0x7e as they are). */
static int check_url(const char *url, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *part = NULL;
	int rc = 0;

	if (!u)
		return -ENOMEM;
	CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (uc == CURLUE_OUT_OF_MEMORY)
		rc = -ENOMEM;
	else if (uc != CURLUE_OK)
		rc = failv(err, errlen, -EINVAL,
			   "API server URL \"%.200s\" is not a valid https:// URL", url);
	else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		 strcmp(scheme, "https") != 0)
		rc = failv(err, errlen, -EINVAL,
			   "API server URL \"%.200s\" is not https:// (TLS is required)", url);
	else if (curl_url_get(u, CURLUPART_QUERY, &part, 0) != CURLUE_NO_QUERY ||
		 curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) != CURLUE_NO_FRAGMENT)
		rc = failv(err, errlen, -EINVAL,
			   "API server URL \"%.200s\" has a query or a fragment", url);
	curl_free(scheme);
	curl_free(part);
	curl_url_cleanup(u);
	return rc;
}

static int set_server(struct k8s_watch *w, const char *url, char *err, size_t errlen)
{
	size_t n = strlen(url);
	if (n > URL_MAX_BYTES)
		return failv(err, errlen, -EINVAL, "API server URL is too long%s", "");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
			return failv(err, errlen, -EINVAL,
				     "API server URL \"%.200s\" has a bad character", url);
	int rc = check_url(url, err, errlen);
	if (rc < 0)
		return rc;
	if (!(w->server = strdup(url)))
		return -ENOMEM;
	while (n > 8 && w->server[n - 1] == '/')
		w->server[--n] = '\0';
	return 0;
}

static int check_readable(const char *what, const char *path, char *err, size_t errlen)
{
	if (path && access(path, R_OK) < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -EINVAL;
	}
	return 0;
}

static int configure(struct k8s_watch *w, const struct k8s_watch_config *cfg, char *err,
		     size_t errlen)
{
	int rc;
	const char *token_file = cfg->token_file;

	if (cfg->kubeconfig) {
		rc = k8s_kubeconfig_load(cfg->kubeconfig, &w->kc, err, errlen);
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			return -EINVAL;
		/* The kubeconfig's CA and credentials replace the in-cluster
		 * defaults; an explicit --kube-api still wins for the URL. */
		rc = set_server(w, cfg->api_url ? cfg->api_url : w->kc.server, err, errlen);
		token_file = w->kc.token_file;
		if (w->kc.token && !(w->token = strdup(w->kc.token)))
			return -ENOMEM;
	} else {
		if (!cfg->api_url)
			return failv(err, errlen, -EINVAL, "no API server URL%s", "");
		rc = set_server(w, cfg->api_url, err, errlen);
		if (rc == 0 && cfg->ca_file && !(w->ca_file = strdup(cfg->ca_file)))
			rc = -ENOMEM;
	}
	if (rc < 0)
		return rc;
	if ((rc = check_readable("CA file", w->kc.ca_file ? w->kc.ca_file : w->ca_file, err,
				 errlen)) < 0 ||
	    (rc = check_readable("client certificate", w->kc.cert_file, err, errlen)) < 0 ||
	    (rc = check_readable("client key", w->kc.key_file, err, errlen)) < 0)
		return rc;
	if (token_file) {
		if (!(w->token_file = strdup(token_file)))
			return -ENOMEM;
		wipe_str(w->token);
		w->token = NULL;
		rc = read_token(w->token_file, &w->token, &w->tok_st, err, errlen);
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			return -EINVAL;
		w->tok_checked_ms = now_ms(w);
	}
	w->max_event_bytes = cfg->max_event_bytes ? cfg->max_event_bytes : DEFAULT_EVENT_BYTES;
	if (w->max_event_bytes < MIN_EVENT_BYTES)
		w->max_event_bytes = MIN_EVENT_BYTES;
	w->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : IDLE_DEFAULT_MS;
	return 0;
}

static void free_watch(struct k8s_watch *w)
{
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		struct res *r = &w->res[k];
		drop_list(r);
		buf_release(&r->body);
		k8s_stream_deinit(&r->stream);
	}
	free(w->server);
	free(w->ca_file);
	free(w->token_file);
	wipe_str(w->token);
	k8s_kubeconfig_free(&w->kc);
	if (w->curl_global)
		curl_global_cleanup();
	free(w);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct k8s_watch *w = h->data;
	if (--w->open_handles == 0)
		free_watch(w);
}

static void init_timer(struct k8s_watch *w, uv_timer_t *t, void *data)
{
	uv_timer_init(w->loop, t); /* cannot fail on a live loop */
	t->data = data;
	w->open_handles++;
}

int k8s_watch_start(uv_loop_t *loop, const struct k8s_watch_config *cfg,
		    struct k8s_store *store, k8s_watch_publish_cb cb, void *arg,
		    struct k8s_watch **out, char *err, size_t errlen)
{
	struct k8s_watch *w;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!loop || !cfg || !store)
		return failv(err, errlen, -EINVAL, "k8s_watch_start: missing argument%s", "");
	if (!(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	w->loop = loop;
	w->store = store;
	w->cb = cb;
	w->cb_arg = arg;
	w->rng = (uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)w) | 1;

	if ((rc = configure(w, cfg, err, errlen)) < 0)
		goto fail;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = failv(err, errlen, -ENOMEM, "curl_global_init failed%s", "");
		goto fail;
	}
	w->curl_global = true;
	if (!(w->multi = curl_multi_init())) {
		rc = -ENOMEM;
		goto fail;
	}
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
	curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);

	/* From here on everything is released through k8s_watch_close(). */
	init_timer(w, &w->curl_timer, w);
	init_timer(w, &w->publish_timer, w);
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		struct res *r = &w->res[k];
		r->w = w;
		r->def = &res_defs[k];
		r->list_mode = LIST_ANY;
		k8s_stream_init(&r->stream, w->max_event_bytes);
		init_timer(w, &r->retry_timer, r);
		init_timer(w, &r->idle_timer, r);
		schedule(r, PH_LIST, 0);
	}
	log_info(TAG, "syncing from %s", w->server);
	*out = w;
	return 0;
fail:
	if (w->multi)
		curl_multi_cleanup(w->multi);
	free_watch(w);
	return rc;
}

const struct k8s_watch_stats *k8s_watch_stats(const struct k8s_watch *w)
{
	return &w->stats;
}

void k8s_watch_close(struct k8s_watch *w)
{
	if (!w || w->closing)
		return;
	w->closing = true;
	for (int k = 0; k < K8S_KIND_COUNT; k++)
		finish_transfer(&w->res[k]);
	/* May call the socket and timer callbacks as cached connections close. */
	curl_multi_cleanup(w->multi);
	w->multi = NULL;
	while (w->socks)
		sock_close(w, w->socks);
	/* Each close callback counts down on w, so they all point at it now. */
	w->curl_timer.data = w;
	uv_close((uv_handle_t *)&w->curl_timer, on_handle_closed);
	uv_close((uv_handle_t *)&w->publish_timer, on_handle_closed);
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		w->res[k].retry_timer.data = w;
		w->res[k].idle_timer.data = w;
		uv_close((uv_handle_t *)&w->res[k].retry_timer, on_handle_closed);
		uv_close((uv_handle_t *)&w->res[k].idle_timer, on_handle_closed);
	}
}
