/* src/io/k8s_watch.c - list+watch Services, EndpointSlices and Namespaces with libcurl on libuv.
 *
 * One state machine per resource, a port of client-go's Reflector:
 *
 *   LIST (a streaming list, or pages of 500 with "continue") --complete-->
 *                                                   swap into the store
 *        |                                              (clear_kind + apply)
 *        v                                                     |
 *   WATCH from the list's RV (a streaming list's stream goes on as it)
 *     events -> store, BOOKMARK -> RV, stream end -> WATCH again from the RV
 *     (a cut stream: after a random delay under reconnect_spread_ms)
 *     ERROR event / 410 / oversized event -> LIST again (NotOlderThan the RV)
 *     401 -> re-read the token; 429 -> Retry-After; other errors -> backoff
 *
 * A streaming list's initial ADDED events go to the list in progress through
 * k8s_watch_list_add() and its initial-events-end bookmark commits it
 * (k8s_watch_commit_list()); a server that refuses it (400/422) or ignores it
 * (a bookmark without the annotation, a MODIFIED/DELETED event, a clean end
 * or silence before it) gets paginated lists from then on.
 * The list in progress is kept aside (a jansson array) and only applied once
 * every page arrived, so a failed relist leaves the last good data in place.
 * libcurl's multi-socket API is driven by one uv_poll_t per curl socket and
 * one uv_timer_t, the wiring of curl's docs/examples/multi-uv.c (rewritten,
 * with its known pitfalls avoided: sockets are looked up by fd rather than
 * through socketp, POLLERR is passed on as CURL_CSELECT_ERR, info_read is
 * drained after every socket_action, and the poll is closed before curl
 * closes the fd). Everything runs on the control loop thread.
 */
#include "k8s_watch_internal.h"

static const struct res_def res_defs[K8S_KIND_COUNT] = {
	[K8S_SERVICE] = {K8S_SERVICE, "services", "/api/v1/services", "Service"},
	[K8S_ENDPOINTSLICE] = {K8S_ENDPOINTSLICE, "endpointslices",
			       "/apis/discovery.k8s.io/v1/endpointslices", "EndpointSlice"},
	[K8S_NAMESPACE] = {K8S_NAMESPACE, "namespaces", "/api/v1/namespaces", "Namespace"},
};

static void publish_now(struct k8s_watch *w);
static void on_retry(uv_timer_t *t);

/* ------------------------------------------------------------- helpers */

uint64_t k8s_watch_rnd(struct k8s_watch *w)
{
	/* xorshift64*: jitter only, nothing secret. */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * 2685821657736338717ull;
}

static uint64_t rnd(struct k8s_watch *w)
{
	return k8s_watch_rnd(w);
}

uint64_t k8s_watch_now_ms(struct k8s_watch *w)
{
	return uv_now(w->loop);
}

bool k8s_watch_may_log(struct res *r)
{
	return log_ratelimited(&r->loglim, k8s_watch_now_ms(r->w), LOG_INTERVAL_MS);
}

uint64_t k8s_watch_backoff(struct res *r)
{
	uint64_t now = k8s_watch_now_ms(r->w);
	if (r->backoff_ms == 0 || now - r->last_fail_ms > BACKOFF_RESET_MS)
		r->backoff_ms = BACKOFF_INITIAL_MS;
	/* Full jitter: anywhere up to the cap, so that clients failing at
	 * the same moment (an API server restart) do not retry together. */
	uint64_t d = BACKOFF_MIN_MS + rnd(r->w) % (r->backoff_ms - BACKOFF_MIN_MS + 1);
	r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
	r->last_fail_ms = now;
	return d;
}

void k8s_watch_token_changed(struct k8s_watch *w)
{
	for (int k = 0; k < w->nres; k++) {
		struct res *r = &w->res[k];
		r->backoff_ms = 0;
		if (r->easy || w->closing || !uv_is_active((uv_handle_t *)&r->retry_timer))
			continue;
		uint64_t soon = BACKOFF_INITIAL_MS / 4 + rnd(w) % BACKOFF_INITIAL_MS;
		if (uv_timer_get_due_in(&r->retry_timer) > soon)
			uv_timer_start(&r->retry_timer, on_retry, soon, 0);
	}
}

void k8s_watch_printable(char *dst, size_t cap, const char *src, size_t n)
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
		k8s_watch_printable(out, cap, msg, strlen(msg));
	else if (b->len)
		k8s_watch_printable(out, cap, b->p, b->len);
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

/* ------------------------------------------------------------ requests */

static void on_retry(uv_timer_t *t)
{
	struct res *r = t->data;
	if (r->w->closing || r->easy)
		return;
	if (r->next == PH_WATCH)
		k8s_watch_start_watch(r);
	else
		k8s_watch_start_list(r);
}

void k8s_watch_schedule(struct res *r, enum phase next, uint64_t delay_ms)
{
	r->phase = PH_IDLE;
	r->next = next;
	if (!r->w->closing)
		uv_timer_start(&r->retry_timer, on_retry, delay_ms, 0);
}

void k8s_watch_drop_list(struct res *r)
{
	k8s_store_stage_free(r->stage);
	r->stage = NULL;
	json_decref(r->pods_pending);
	r->pods_pending = NULL;
	r->list_items = r->list_bytes = r->list_cost = r->list_rejected = 0;
	r->pages = 0;
	free(r->cont);
	r->cont = NULL;
}

static char *escape(const char *s)
{
	return curl_easy_escape(NULL, s, 0);
}

/* The end of starting a list or watch (@p ph): free its query @p q and the
 * escaped value @p esc in it; when the request could not even start (@p rc
 * below 0), count it, log it (rate limited) and try again after the backoff. */
static void start_end(struct res *r, enum phase ph, int rc, char *q, char *esc)
{
	curl_free(esc);
	free(q);
	if (rc >= 0)
		return;
	STAT_INC(r->w, errors);
	if (k8s_watch_may_log(r))
		log_error(TAG, "%s: cannot start %s: %s", r->def->name,
			  ph == PH_LIST ? "list" : "watch", strerror(-rc));
	k8s_watch_schedule(r, ph, k8s_watch_backoff(r));
}

/* The timeoutSeconds of a watch: random in [300, 600] s (client-go's
 * range), so the watches of many nodes do not end together. */
static unsigned watch_timeout(struct k8s_watch *w)
{
	if (w->watch_timeout_s)
		return w->watch_timeout_s;
	return WATCH_TIMEOUT_MIN_S +
	       (unsigned)(rnd(w) % (WATCH_TIMEOUT_MAX_S - WATCH_TIMEOUT_MIN_S + 1));
}

/* A streaming list (WatchList): a watch that first sends the whole
 * collection as ADDED events, then a bookmark annotated initial-events-end
 * at the list's resourceVersion, then goes on as a plain watch. Its
 * resourceVersion follows list_mode as a list's does. */
static void start_stream_list(struct res *r)
{
	struct k8s_watch *w = r->w;
	char *q = NULL, *esc = NULL;
	char rvq[K8S_RV_MAX * 3 + 32] = "";
	int rc = -ENOMEM;

	k8s_watch_drop_list(r);
	r->stream_bytes = 0;
	r->watch_timeout_s = watch_timeout(w);
	if (r->list_mode == LIST_NOT_OLDER && r->rv[0]) {
		if (!(esc = escape(r->rv)))
			goto done;
		snprintf(rvq, sizeof(rvq), "&resourceVersion=%s", esc);
	} else if (r->list_mode == LIST_ANY) {
		snprintf(rvq, sizeof(rvq), "&resourceVersion=0");
	} /* LIST_LATEST: no resourceVersion, a consistent read */
	if (asprintf(&q, "watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
			 "&allowWatchBookmarks=true&timeoutSeconds=%u%s",
		     r->watch_timeout_s, rvq) < 0) {
		q = NULL;
		goto done;
	}
	r->phase = PH_WATCH;
	r->initial = true;
	if ((rc = k8s_watch_start_request(r, q)) < 0) {
		r->initial = false;
		goto done;
	}
	/* The initial events are list items: bounded as those are. */
	r->stream.max_line_bytes = w->max_event_bytes * LIST_ITEM_FACTOR;
	r->watched = false;
	log_debug(TAG, "%s: streaming list %s", r->def->name, q);
done:
	start_end(r, PH_LIST, rc, q, esc);
}

void k8s_watch_list_fallback(struct res *r, const char *why)
{
	struct k8s_watch *w = r->w;

	STAT_INC(w, watch_list_fallbacks);
	if (!w->watch_list_off)
		log_info(TAG, "%s: the API server does not serve streaming lists (%s): "
			 "paginated lists from now on", r->def->name, why);
	w->watch_list_off = true;
	k8s_watch_drop_list(r);
}

void k8s_watch_start_list(struct res *r)
{
	char *q = NULL, *esc = NULL;
	int rc = -ENOMEM;

	if (!r->cont && r->listed)
		STAT_INC(r->w, res[r->def->kind].relists);
	if (!r->cont && !r->w->watch_list_off) {
		start_stream_list(r);
		return;
	}
	if (!r->cont) {
		k8s_watch_drop_list(r);
		if (r->def->kind != RES_PODS &&
		    !(r->stage = k8s_store_stage_new(r->w->store, r->def->kind)))
			goto done;
	}
	/* A retried page: take out what its failed attempt added. */
	if (r->def->kind == RES_PODS)
		k8s_watch_pods_page_drop(r);
	else
		k8s_store_stage_page_drop(r->stage);
	r->page_bytes = r->page_cost = r->page_rejected = 0;
	k8s_stream_list_reset(&r->split);
	if (r->cont) {
		if (!(esc = escape(r->cont)))
			goto done;
		rc = asprintf(&q, "limit=%d&continue=%s", PAGE_LIMIT, esc);
	} else if (r->list_mode == LIST_NOT_OLDER && r->rv[0]) {
		if (!(esc = escape(r->rv)))
			goto done;
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
		goto done;
	}
	r->phase = PH_LIST;
	if ((rc = k8s_watch_start_request(r, q)) < 0)
		goto done;
	log_debug(TAG, "%s: list %s", r->def->name, q);
done:
	start_end(r, PH_LIST, rc, q, esc);
}

void k8s_watch_start_watch(struct res *r)
{
	struct k8s_watch *w = r->w;
	char *q = NULL, *esc = NULL;
	int rc = -ENOMEM;

	if (r->initial && r->easy) {
		/* A streaming list was committed from inside its stream, which
		 * goes on as the watch. */
		r->initial = false;
		r->live = true;
		r->stream.max_line_bytes = w->max_event_bytes;
		STAT_INC(w, watches);
		STAT_INC(w, res[r->def->kind].established);
		r->watched = true;
		return;
	}
	unsigned timeout_s = watch_timeout(w);

	r->watch_timeout_s = timeout_s;
	if (!(esc = escape(r->rv)))
		goto done;
	if (asprintf(&q, "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
		     esc, timeout_s) < 0) {
		q = NULL;
		goto done;
	}
	r->phase = PH_WATCH;
	if ((rc = k8s_watch_start_request(r, q)) < 0)
		goto done;
	r->stream.max_line_bytes = w->max_event_bytes;
	STAT_INC(w, watches);
	if (r->watched)
		STAT_INC(w, watch_restarts);
	if (r->interrupted)
		STAT_INC(w, res[r->def->kind].reconnects);
	r->interrupted = false;
	r->watched = true;
	log_debug(TAG, "%s: watch %s", r->def->name, q);
done:
	start_end(r, PH_WATCH, rc, q, esc);
}

/* ---------------------------------------------------------- publishing */

static bool all_listed(const struct k8s_watch *w)
{
	for (int k = 0; k < K8S_KIND_COUNT; k++)
		if (!w->res[k].listed)
			return false;
	return true;
}

/* The interval after a publish is over: read what came meanwhile (which
 * publishes it, being the first change after the interval) and what was
 * held back before. With nothing read the sockets are polled as usual
 * again, and the next change is read and published at once. */
static void on_publish_timer(uv_timer_t *t)
{
	struct k8s_watch *w = t->data;

	k8s_watch_release_reads(w);
	publish_now(w);
}

void k8s_watch_publish(struct k8s_watch *w)
{
	k8s_watch_pods_publish(w);
	if (!w->dirty || !all_listed(w) || w->closing)
		return;
	uint64_t now = k8s_watch_now_ms(w);
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
	w->last_publish_ms = k8s_watch_now_ms(w) ? k8s_watch_now_ms(w) : 1;
	struct cluster_snapshot *snap = cluster_publisher_publish(w->pub, w->store);
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
	/* Until the interval is over nothing more can be published: read
	 * what comes meanwhile in one pass at its end (k8s_watch_hold_reads). */
	k8s_watch_hold_reads(w);
	uv_timer_start(&w->publish_timer, on_publish_timer, PUBLISH_MIN_INTERVAL_MS, 0);
	if (w->trim_after_publish) {
		/* The first publish after a list builds every record and frees its
		 * work maps and the records it replaced: hand that back too. */
		w->trim_after_publish = false;
		malloc_trim(0);
	}
	if (!atomic_load(&w->stats.synced)) {
		atomic_store(&w->stats.synced, 1);
		log_info(TAG, "cluster store synced");
	}
}

/* ----------------------------------------------------- transfer results */

/* Common handling of a non-200 answer. @return the delay before the retry. */
static uint64_t http_failure(struct res *r, long code, const char *what)
{
	struct k8s_watch *w = r->w;
	char msg[256];

	status_message(&r->body, msg, sizeof(msg), NULL);
	if (code == 401) {
		STAT_INC(w, unauthorized_401);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: %s: 401 Unauthorized (%s); re-reading the token",
				 r->def->name, what, msg);
		k8s_watch_token_refresh(w, true);
		/* Each 401 re-reads the token file: retry often enough that a
		 * new token is picked up soon (k8s_watch_token_changed() then
		 * brings the other resources back). */
		uint64_t d = k8s_watch_backoff(r);
		return d > UNAUTHORIZED_RETRY_MAX_MS ? UNAUTHORIZED_RETRY_MAX_MS : d;
	}
	if (code == 429 || (code == 503 && r->retry_after_s >= 0)) {
		if (code == 429)
			STAT_INC(w, throttled_429);
		else
			STAT_INC(w, errors);
		uint64_t d = r->retry_after_s >= 0 ? (uint64_t)r->retry_after_s * 1000 : k8s_watch_backoff(r);
		if (d == 0)
			d = BACKOFF_INITIAL_MS;
		if (k8s_watch_may_log(r))
			log_info(TAG, "%s: %s: %ld, retrying in %llu ms", r->def->name, what, code,
				 (unsigned long long)d);
		return d;
	}
	STAT_INC(w, errors);
	if (k8s_watch_may_log(r)) {
		if (code == 403)
			log_error(TAG, "%s: %s: 403 Forbidden (%s): check the RBAC rules",
				  r->def->name, what, msg);
		else
			log_warn(TAG, "%s: %s: HTTP %ld (%s)", r->def->name, what, code, msg);
	}
	return k8s_watch_backoff(r);
}

static void list_done(struct res *r, CURLcode result, long code, enum abort_reason ab)
{
	struct k8s_watch *w = r->w;
	char why[300];

	if (ab == AB_TOOBIG || ab == AB_NOMEM || ab == AB_COSTLY) {
		STAT_INC(w, errors);
		log_error(TAG, "%s: list %s, retrying later", r->def->name,
			  ab == AB_TOOBIG ? "larger than 256 MiB"
			  : ab == AB_COSTLY ? "would take too much memory to decode (too many "
					      "values for its size, or metadata over 256 KiB)"
					    : "ran out of memory");
		k8s_watch_drop_list(r);
		k8s_watch_buf_release(&r->body);
		malloc_trim(0);
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	if (result == CURLE_OPERATION_TIMEDOUT) {
		/* The deadline or the minimum rate: a drip is not a live list. */
		STAT_INC(w, errors);
		STAT_INC(w, list_timeouts);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: list not complete within %llu s or below %ld bytes/s "
				 "for %ld s (%s), retrying later", r->def->name,
				 (unsigned long long)(w->list_deadline_ms / 1000), LOW_SPEED_BYTES,
				 LOW_SPEED_S, r->errbuf);
		k8s_watch_drop_list(r);
		k8s_watch_buf_release(&r->body);
		malloc_trim(0);
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	if (result != CURLE_OK) {
		/* Transport error: retry this page (the continue token stays). */
		STAT_INC(w, errors);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: list: %s", r->def->name,
				 r->errbuf[0] ? r->errbuf : curl_easy_strerror(result));
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	if (code == 200) {
		int rc = k8s_watch_list_page(r, why, sizeof(why));
		if (rc < 0) {
			STAT_INC(w, errors);
			if (rc == -ELOOP)
				STAT_INC(w, list_loops);
			if (k8s_watch_may_log(r))
				log_warn(TAG, "%s: unusable list response: %s", r->def->name, why);
			k8s_watch_drop_list(r);
			k8s_watch_buf_release(&r->body);
			/* A failed list gives its memory back as a good one does. */
			malloc_trim(0);
			k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
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
		k8s_watch_drop_list(r);
		r->list_mode = LIST_LATEST;
		k8s_watch_schedule(r, PH_LIST, retry_now ? 0 : k8s_watch_backoff(r));
		return;
	}
	if (code == 504 && too_large) {
		k8s_watch_drop_list(r);
		r->list_mode = LIST_LATEST;
	}
	/* A page the server refuses (400 "continue key is not valid", 403,
	 * ...) is not asked for again with the same token: the list starts
	 * over, as client-go's does. 429 and 5xx retry the page. */
	if (r->cont && code != 429 && code < 500)
		k8s_watch_drop_list(r);
	k8s_watch_schedule(r, PH_LIST, http_failure(r, code, "list"));
}

/* A streaming list ended before its initial-events-end bookmark. */
static void stream_list_done(struct res *r, CURLcode result, long code, enum abort_reason ab)
{
	struct k8s_watch *w = r->w;
	const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(result);

	k8s_watch_drop_list(r);
	if (ab == AB_FALLBACK) { /* logged and counted where it was seen */
		k8s_watch_schedule(r, PH_LIST, 0);
		return;
	}
	if (ab == AB_RELIST || ab == AB_NOMEM || ab == AB_STREAM_RESTART) {
		/* An ERROR event (410: the resourceVersion asked for is gone),
		 * or initial events over the list's bounds: start over from the
		 * latest state, after a jittered delay. */
		if (ab == AB_NOMEM) {
			STAT_INC(w, errors);
			log_error(TAG, "%s: out of memory in the streaming list, restarting it",
				  r->def->name);
		}
		r->list_mode = LIST_LATEST;
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	if (code == 200 && result == CURLE_OK) {
		/* A clean end without initial-events-end: a plain watch. */
		k8s_watch_list_fallback(r, "the stream ended without initial-events-end");
		k8s_watch_schedule(r, PH_LIST, 0);
		return;
	}
	if (code == 200 || (result != CURLE_OK && code == 0)) {
		STAT_INC(w, errors);
		if (code == 200)
			STAT_INC(w, interrupted);
		if (result == CURLE_OPERATION_TIMEDOUT)
			STAT_INC(w, list_timeouts);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: streaming list: %s, starting over", r->def->name, why);
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	if (code == 400 || code == 422) {
		/* Older servers (or the WatchList feature off) refuse the
		 * parameters: "sendInitialEvents is forbidden ...". */
		char msg[200];
		status_message(&r->body, msg, sizeof(msg), NULL);
		char why2[260];
		snprintf(why2, sizeof(why2), "HTTP %ld: %s", code, msg);
		k8s_watch_list_fallback(r, why2);
		k8s_watch_schedule(r, PH_LIST, 0);
		return;
	}
	if (code == 410) {
		STAT_INC(w, relists_410);
		log_info(TAG, "%s: streaming list: 410 Gone, starting over from the latest state",
			 r->def->name);
		r->list_mode = LIST_LATEST;
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	k8s_watch_schedule(r, PH_LIST, http_failure(r, code, "streaming list"));
}

/* A watch cut after it delivered: resume from the last resourceVersion
 * after a random delay in [0, reconnect_spread_ms), so that every node cut
 * by the same API server restart does not come back in the same instant. */
static uint64_t reconnect_delay(struct res *r)
{
	return rnd(r->w) % r->w->reconnect_spread_ms;
}

static void watch_done(struct res *r, CURLcode result, long code, enum abort_reason ab)
{
	struct k8s_watch *w = r->w;
	uint64_t ran_ms = k8s_watch_now_ms(w) - r->start_ms;

	if (ab == AB_SCHEDULED)
		return;
	if (r->initial) {
		r->initial = false;
		r->interrupted = false;
		stream_list_done(r, result, code, ab);
		return;
	}
	r->interrupted = true;
	if (ab == AB_RELIST || ab == AB_NOMEM) {
		if (ab == AB_NOMEM) {
			STAT_INC(w, errors);
			log_error(TAG, "%s: out of memory in the watch, relisting", r->def->name);
		}
		r->interrupted = false;
		r->list_mode = LIST_NOT_OLDER;
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	if (code == 200 || (result != CURLE_OK && code == 0)) {
		bool short_empty = ran_ms < SHORT_WATCH_MS && r->lines == 0;
		const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(result);
		if (result != CURLE_OK && (code == 0 || short_empty)) {
			/* Connection refused, TLS failure, or cut at once. */
			STAT_INC(w, errors);
			if (k8s_watch_may_log(r))
				log_warn(TAG, "%s: watch: %s", r->def->name, why);
			k8s_watch_schedule(r, PH_WATCH, k8s_watch_backoff(r));
		} else if (short_empty) {
			STAT_INC(w, errors);
			if (k8s_watch_may_log(r))
				log_warn(TAG, "%s: watch ended after %llu ms without events",
					 r->def->name, (unsigned long long)ran_ms);
			k8s_watch_schedule(r, PH_WATCH, k8s_watch_backoff(r));
		} else if (result == CURLE_OPERATION_TIMEDOUT) {
			/* Past timeoutSeconds + 30 s the server should have ended
			 * it: whatever still trickles in (keep-alive bytes from a
			 * proxy) is not a live watch. */
			STAT_INC(w, watch_deadlines);
			if (k8s_watch_may_log(r))
				log_warn(TAG, "%s: watch still open %u s after its timeoutSeconds, "
					 "ended; resuming at %s", r->def->name,
					 WATCH_DEADLINE_MARGIN_S, r->rv);
			k8s_watch_schedule(r, PH_WATCH, reconnect_delay(r));
		} else if (result != CURLE_OK) {
			/* A stream cut after it delivered (apiserver rollout, GOAWAY,
			 * RST_STREAM, a truncated frame or chunk, a proxy): resume
			 * from the last RV, spread out. */
			STAT_INC(w, interrupted);
			if (k8s_watch_may_log(r))
				log_info(TAG, "%s: watch interrupted (%s), resuming at %s",
					 r->def->name, why, r->rv);
			k8s_watch_schedule(r, PH_WATCH, reconnect_delay(r));
		} else {
			/* The server's timeoutSeconds: resume at once, as
			 * client-go does (the timeouts are random already). */
			r->interrupted = false;
			log_debug(TAG, "%s: watch ended, resuming at %s", r->def->name, r->rv);
			k8s_watch_schedule(r, PH_WATCH, 0);
		}
		return;
	}
	if (code == 410) {
		STAT_INC(w, relists_410);
		log_info(TAG, "%s: watch: 410 Gone, relisting", r->def->name);
		r->interrupted = false;
		r->list_mode = LIST_NOT_OLDER;
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	k8s_watch_schedule(r, PH_WATCH, http_failure(r, code, "watch"));
}

void k8s_watch_transfer_done(struct res *r, CURLcode result)
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
	k8s_watch_finish_transfer(r);
	r->abort = AB_NONE;
	if (r->w->closing)
		return;
	if (ph == PH_LIST)
		list_done(r, result, code, ab);
	else
		watch_done(r, result, code, ab);
	/* An error body is not kept between requests. */
	if (r->body.cap > ERROR_BODY_MAX_BYTES && !r->easy)
		k8s_watch_buf_release(&r->body);
}

/* ------------------------------------------------------- start / close */

static void free_watch(struct k8s_watch *w)
{
	for (int k = 0; k < w->nres; k++) {
		struct res *r = &w->res[k];
		k8s_watch_drop_list(r);
		k8s_watch_buf_release(&r->body);
		k8s_stream_deinit(&r->stream);
		k8s_stream_list_deinit(&r->split);
	}
	free(w->pod_selector);
	free(w->server);
	free(w->ca_file);
	free(w->token_file);
	k8s_watch_wipe_str(w->token);
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
		    struct k8s_store *store, struct cluster_publisher *pub,
		    k8s_watch_publish_cb cb, void *arg, struct k8s_watch **out, char *err, size_t errlen)
{
	struct k8s_watch *w;
	int rc;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!loop || !cfg || !store || !pub)
		return k8s_watch_failv(err, errlen, -EINVAL, "k8s_watch_start: missing argument%s", "");
	if (!(w = calloc(1, sizeof(*w))))
		return -ENOMEM;
	w->loop = loop;
	w->store = store;
	w->pub = pub;
	w->cb = cb;
	w->cb_arg = arg;
	w->rng = (uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)w) | 1;
	w->nres = K8S_KIND_COUNT;

	if ((rc = k8s_watch_configure(w, cfg, err, errlen)) < 0 ||
	    (rc = k8s_watch_pods_configure(w, cfg, err, errlen)) < 0)
		goto fail;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		rc = k8s_watch_failv(err, errlen, -ENOMEM, "curl_global_init failed%s", "");
		goto fail;
	}
	w->curl_global = true;
	if (!(w->multi = curl_multi_init())) {
		rc = -ENOMEM;
		goto fail;
	}
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, k8s_watch_on_curl_socket);
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, k8s_watch_on_curl_timer);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
	curl_multi_setopt(w->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);

	/* From here on everything is released through k8s_watch_close(). */
	init_timer(w, &w->curl_timer, w);
	init_timer(w, &w->publish_timer, w);
	for (int k = 0; k < w->nres; k++) {
		struct res *r = &w->res[k];
		r->w = w;
		if (k < K8S_KIND_COUNT) /* res[RES_PODS].def: k8s_watch_pods_configure() */
			r->def = &res_defs[k];
		r->list_mode = LIST_ANY;
		k8s_stream_init(&r->stream, w->max_event_bytes);
		k8s_stream_list_init(&r->split, (size_t)w->max_event_bytes * LIST_ITEM_FACTOR,
				     LIST_SHELL_MAX_BYTES);
		init_timer(w, &r->retry_timer, r);
		init_timer(w, &r->idle_timer, r);
		init_timer(w, &r->slice_timer, r);
		k8s_watch_schedule(r, PH_LIST, 0);
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
	for (int k = 0; k < w->nres; k++)
		k8s_watch_finish_transfer(&w->res[k]);
	/* May call the socket and timer callbacks as cached connections close. */
	curl_multi_cleanup(w->multi);
	w->multi = NULL;
	while (w->socks)
		k8s_watch_sock_close(w, w->socks);
	/* Each close callback counts down on w, so they all point at it now. */
	w->curl_timer.data = w;
	uv_close((uv_handle_t *)&w->curl_timer, on_handle_closed);
	uv_close((uv_handle_t *)&w->publish_timer, on_handle_closed);
	for (int k = 0; k < w->nres; k++) {
		w->res[k].retry_timer.data = w;
		w->res[k].idle_timer.data = w;
		w->res[k].slice_timer.data = w;
		uv_close((uv_handle_t *)&w->res[k].retry_timer, on_handle_closed);
		uv_close((uv_handle_t *)&w->res[k].idle_timer, on_handle_closed);
		uv_close((uv_handle_t *)&w->res[k].slice_timer, on_handle_closed);
	}
}
