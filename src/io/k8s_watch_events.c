/* src/io/k8s_watch_events.c - the API watch's response bodies: watch lines and list pages into the store. */
#include "k8s_watch_internal.h"

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

void k8s_watch_buf_release(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ----------------------------------------------------- data callbacks */

static enum k8s_event store_event(enum k8s_ev_type t)
{
	return t == K8S_EV_ADDED ? K8S_ADDED : t == K8S_EV_MODIFIED ? K8S_MODIFIED : K8S_DELETED;
}

/* An ERROR event ends the watch: relist. */
static void error_event(struct res *r, const struct k8s_stream_event *ev)
{
	struct k8s_watch *w = r->w;
	const char *msg = json_string_value(json_object_get(ev->object, "message"));
	char pm[200];

	k8s_watch_printable(pm, sizeof(pm), msg ? msg : "", msg ? strlen(msg) : 0);
	if (k8s_stream_event_is_expired(ev)) {
		STAT_INC(w, relists_410);
		log_info(TAG, "%s: resourceVersion %s expired (%s), relisting", r->def->name, r->rv,
			 pm);
	} else {
		STAT_INC(w, errors);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: watch ERROR %d %s: %s, relisting", r->def->name, ev->code,
				 ev->reason, pm);
	}
	r->abort = AB_RELIST;
}

/* True when a BOOKMARK's object carries the initial-events-end annotation. */
static bool initial_events_end(const json_t *obj)
{
	const json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
	const char *v = json_string_value(json_object_get(ann, INITIAL_EVENTS_END));
	return v && strcmp(v, "true") == 0;
}

/* An initial event of @p len bytes joins the streaming list: @return 1
 * (r->abort set) when the list is now over its size or its time. */
static int initial_bounds(struct res *r, size_t len)
{
	struct k8s_watch *w = r->w;

	r->stream_bytes += len;
	if (r->stream_bytes > LIST_MAX_BYTES) {
		STAT_INC(w, errors);
		log_error(TAG, "%s: streaming list larger than 256 MiB, starting over later",
			  r->def->name);
		r->abort = AB_STREAM_RESTART;
		return 1;
	}
	if (k8s_watch_now_ms(w) - r->start_ms > w->list_deadline_ms) {
		/* Initial events that never end are a list that never ends. */
		STAT_INC(w, errors);
		STAT_INC(w, list_timeouts);
		log_warn(TAG, "%s: streaming list not complete within %llu s, starting over "
			 "later", r->def->name, (unsigned long long)(w->list_deadline_ms / 1000));
		r->abort = AB_STREAM_RESTART;
		return 1;
	}
	return 0;
}

/* One event of a streaming list before its initial-events-end bookmark:
 * ADDED objects go to the list in progress, the bookmark commits it. A
 * server that ignored sendInitialEvents streams a plain watch: a bookmark
 * without the annotation, or a MODIFIED or DELETED event, shows it.
 * @return non-zero to end the transfer (r->abort says why). */
static int initial_event(struct res *r, const struct k8s_stream_event *ev, size_t len)
{
	struct k8s_watch *w = r->w;
	int rc;

	switch (ev->type) {
	case K8S_EV_ADDED: {
		const char *kind = json_string_value(json_object_get(ev->object, "kind"));
		if (kind && strcmp(kind, r->def->obj_kind) != 0) {
			STAT_INC(w, bad_events);
			if (k8s_watch_may_log(r))
				log_warn(TAG, "%s: initial event for an object of another kind skipped",
					 r->def->name);
			return 0;
		}
		if (initial_bounds(r, len))
			return 1;
		rc = k8s_watch_list_add(r, json_incref((json_t *)ev->object));
		if (rc == -ENOMEM) {
			r->abort = AB_NOMEM;
			return 1;
		}
		if (rc < 0) {
			STAT_INC(w, errors);
			log_error(TAG, "%s: streaming list would take too much memory to decode, "
				  "starting over later", r->def->name);
			r->abort = AB_STREAM_RESTART;
			return 1;
		}
		return 0;
	}
	case K8S_EV_BOOKMARK:
		if (!initial_events_end(ev->object)) {
			k8s_watch_list_fallback(r, "a bookmark without initial-events-end");
			r->abort = AB_FALLBACK;
			return 1;
		}
		if (!k8s_rv_valid(ev->rv)) {
			STAT_INC(w, bad_events);
			log_warn(TAG, "%s: initial-events-end without a valid resourceVersion, "
				 "starting over later", r->def->name);
			r->abort = AB_STREAM_RESTART;
			return 1;
		}
		STAT_INC(w, watch_lists);
		STAT_INC(w, bookmarks);
		k8s_watch_commit_list(r, ev->rv);
		if (r->initial || r->phase != PH_WATCH) {
			/* The commit failed and scheduled a relist. */
			r->initial = false;
			r->abort = AB_SCHEDULED;
			return 1;
		}
		return 0;
	case K8S_EV_MODIFIED:
	case K8S_EV_DELETED:
		k8s_watch_list_fallback(r, "MODIFIED or DELETED before initial-events-end");
		r->abort = AB_FALLBACK;
		return 1;
	case K8S_EV_ERROR:
		error_event(r, ev);
		return 1;
	}
	return 0;
}

/* The store's fast path for a watch line (an EndpointSlice change, decoded
 * without a JSON tree): true when it took the line, with on_line()'s return
 * in *ret; false leaves the line to the generic path below. */
static bool fast_line(struct res *r, const char *line, size_t len, int *ret)
{
	struct k8s_watch *w = r->w;
	enum k8s_event sev;
	char rv[K8S_RV_MAX], err[200];
	int rc;

	/* A line over the decoding-cost bound is left to the generic path,
	 * which drops it (and relists). */
	if (r->def->kind == RES_PODS)
		return false;
	rc = k8s_store_apply_line(w->store, r->def->kind, r->def->obj_kind, line, len, &sev, rv,
				  err, sizeof(err));
	if (rc == K8S_LINE_UNHANDLED)
		return false;
	if (!r->live) {
		r->live = true;
		STAT_INC(w, res[r->def->kind].established);
	}
	if (rc == 0) {
		STAT_INC(w, events);
		w->dirty = true;
	} else if (rc == -ENOMEM) {
		r->abort = AB_NOMEM;
	} else {
		STAT_INC(w, bad_events);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: %s event rejected by the store: %s", r->def->name,
				 sev == K8S_ADDED ? "ADDED" : sev == K8S_MODIFIED ? "MODIFIED" : "DELETED",
				 err);
	}
	if (rv[0])
		memcpy(r->rv, rv, sizeof(r->rv));
	*ret = r->abort != AB_NONE;
	return true;
}

/* The store refused a listed object (@p err says why): counted against the
 * page, logged (rate-limited); the list goes on. */
static void list_rejected(struct res *r, const char *err)
{
	STAT_INC(r->w, bad_events);
	r->page_rejected++;
	if (k8s_watch_may_log(r))
		log_warn(TAG, "%s: listed object rejected by the store: %s", r->def->name, err);
}

/* The fast path for a streaming list's event: an ADDED EndpointSlice is
 * staged without a JSON tree (k8s_store_stage_add_line), then meets
 * initial_event()'s bounds. (Those come after the staging here: when one
 * ends the stream, the stage is dropped with the object in it.) True when it
 * took the line, with on_line()'s return in *ret. */
static bool fast_initial(struct res *r, const char *line, size_t len, int *ret)
{
	struct k8s_watch *w = r->w;
	char err[200];
	int rc;

	if (r->def->kind != K8S_ENDPOINTSLICE)
		return false;
	if (!r->stage && !(r->stage = k8s_store_stage_new(w->store, r->def->kind)))
		return false; /* the generic path meets it again and reports it */
	rc = k8s_store_stage_add_line(r->stage, r->def->obj_kind, line, len, err, sizeof(err));
	if (rc == K8S_LINE_UNHANDLED)
		return false;
	*ret = 1;
	if (rc == -ENOMEM) {
		r->abort = AB_NOMEM;
		return true;
	}
	if (rc < 0)
		list_rejected(r, err);
	*ret = initial_bounds(r, len);
	return true;
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
	if (r->initial ? fast_initial(r, line, len, &rc) : fast_line(r, line, len, &rc))
		return rc;
	rc = k8s_stream_decode(line, len, &ev, err, sizeof(err));
	if (rc == -ENOMEM) {
		r->abort = AB_NOMEM;
		return 1;
	}
	if (rc == -E2BIG) {
		/* Like an oversized line: what we hold is incomplete. */
		STAT_INC(w, oversized_events);
		log_warn(TAG, "%s: watch event dropped (%s), relisting", r->def->name, err);
		r->abort = AB_RELIST;
		return 1;
	}
	if (rc < 0) {
		STAT_INC(w, bad_events);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: undecodable watch event skipped: %s", r->def->name, err);
		return 0;
	}
	if (r->initial) {
		rc = initial_event(r, &ev, len);
		k8s_stream_event_clear(&ev);
		return rc;
	}
	if (!r->live && ev.type != K8S_EV_ERROR) {
		/* The first event or bookmark: the server serves this watch. */
		r->live = true;
		STAT_INC(w, res[r->def->kind].established);
	}
	switch (ev.type) {
	case K8S_EV_ADDED:
	case K8S_EV_MODIFIED:
	case K8S_EV_DELETED: {
		const char *kind = json_string_value(json_object_get(ev.object, "kind"));
		if (kind && strcmp(kind, r->def->obj_kind) != 0) {
			STAT_INC(w, bad_events);
			if (k8s_watch_may_log(r))
				log_warn(TAG, "%s: event for an object of another kind skipped",
					 r->def->name);
		} else {
			err[0] = '\0';
			if (r->def->kind == RES_PODS)
				rc = k8s_watch_pods_apply(r, ev.type == K8S_EV_DELETED, ev.object,
							  err, sizeof(err));
			else
				rc = k8s_store_apply(w->store, r->def->kind, store_event(ev.type),
						     ev.object, err, sizeof(err));
			if (rc == 0) {
				STAT_INC(w, events);
				w->dirty |= r->def->kind != RES_PODS;
			} else if (rc == -ENOMEM) {
				r->abort = AB_NOMEM;
			} else {
				STAT_INC(w, bad_events);
				if (k8s_watch_may_log(r))
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
	case K8S_EV_ERROR:
		error_event(r, &ev);
		break;
	}
	k8s_stream_event_clear(&ev);
	return r->abort != AB_NONE;
}

/* Has @p it the metadata.name the store needs? Without one, skip it
 * before decoding (a list of "{}" is millions of them). */
static bool item_named(struct res *r, const json_t *it)
{
	if (json_is_object(it) &&
	    json_is_string(json_object_get(json_object_get(it, "metadata"), "name")))
		return true;
	STAT_INC(r->w, bad_events);
	r->page_rejected++;
	if (k8s_watch_may_log(r))
		log_warn(TAG, "%s: listed item skipped: %s", r->def->name,
			 "not a decodable object with metadata.name");
	return false;
}

/* Decode @p it into the list in progress; its JSON is freed at once. */
static int list_stage(struct res *r, json_t *it)
{
	char err[200];
	int rc;

	if (r->def->kind == RES_PODS)
		return k8s_watch_pods_stage(r, it);
	if (!r->stage && !(r->stage = k8s_store_stage_new(r->w->store, r->def->kind))) {
		json_decref(it);
		return -ENOMEM;
	}
	err[0] = '\0';
	rc = k8s_store_stage_add(r->stage, it, err, sizeof(err));
	json_decref(it);
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0)
		list_rejected(r, err);
	return 0;
}

int k8s_watch_list_add(struct res *r, json_t *item)
{
	if (!item_named(r, item)) {
		json_decref(item);
		return 0;
	}
	return list_stage(r, item);
}

/* One element of a list page's "items", split out as it arrived. */
static int on_item(void *arg, const char *text, size_t len, size_t cost)
{
	struct res *r = arg;
	json_error_t jerr;
	/* Without "metadata" in it, it cannot have a name: skip the decoding. */
	json_t *it = memmem(text, len, "\"metadata\"", 10) ? json_loadb(text, len, 0, &jerr) : NULL;
	size_t bytes = r->list_bytes + r->page_bytes;

	if (!it && len >= 10 && memmem(text, len, "\"metadata\"", 10) &&
	    json_error_code(&jerr) == json_error_out_of_memory) {
		r->abort = AB_NOMEM;
		return 1;
	}
	if (!item_named(r, it)) {
		json_decref(it);
		return 0;
	}
	/* Each item's JSON is freed once decoded: LIST_MAX_COST bounds a page
	 * (what a page's retry may throw away), the ratio the whole list. */
	size_t total = r->list_cost + r->page_cost + cost;
	if (r->page_cost + cost > LIST_MAX_COST ||
	    (total > LIST_COST_FLOOR && total / LIST_COST_RATIO > bytes)) {
		json_decref(it);
		r->abort = AB_COSTLY;
		return 1;
	}
	if (list_stage(r, it) < 0) {
		r->abort = AB_NOMEM;
		return 1;
	}
	r->page_cost += cost;
	return 0;
}

/* Bytes of a list page with status 200: split into items as they come,
 * counted after inflating (a gzip bomb meets the same bounds). */
static size_t on_list_bytes(struct res *r, const char *data, size_t n)
{
	struct k8s_watch *w = r->w;

	if (n > LIST_MAX_BYTES - r->list_bytes - r->page_bytes) {
		r->abort = AB_TOOBIG;
		return CURL_WRITEFUNC_ERROR;
	}
	r->page_bytes += n;
	uint64_t before = r->split.oversized;
	int rc = k8s_stream_list_feed(&r->split, data, n, on_item, r);
	if (r->split.oversized != before) {
		uint64_t d = r->split.oversized - before;
		STAT_ADD(w, oversized_events, d);
		r->page_rejected += d;
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: listed item over %zu bytes or %dx that to decode skipped",
				 r->def->name, w->max_event_bytes * LIST_ITEM_FACTOR, K8S_COST_RATIO);
	}
	if (rc == -E2BIG && r->abort == AB_NONE)
		r->abort = AB_COSTLY;
	else if (rc == -ENOMEM && r->abort == AB_NONE)
		r->abort = AB_NOMEM;
	return r->abort != AB_NONE ? CURL_WRITEFUNC_ERROR : n;
}

size_t k8s_watch_on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct res *r = userp;
	struct k8s_watch *w = r->w;
	size_t n = size * nmemb;

	if (r->discard)
		return n;
	/* Busy for a slice since the poll returned: hand the loop back. */
	if (!r->paused && !r->resuming && uv_hrtime() / 1000000 - uv_now(w->loop) > SLICE_MS) {
		k8s_watch_pause_until_next_turn(r);
		return CURL_WRITEFUNC_PAUSE;
	}
	uv_timer_start(&r->idle_timer, k8s_watch_on_idle, w->idle_ms, 0);
	STAT_ADD(w, res[r->def->kind].bytes, n);
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
	if (r->phase == PH_LIST)
		return on_list_bytes(r, data, n);
	uint64_t before = r->stream.oversized;
	int rc = k8s_stream_feed(&r->stream, data, n, on_line, r);
	if (r->stream.oversized != before && r->initial) {
		/* As a listed item over the bound: skipped, the list goes on. */
		STAT_ADD(w, oversized_events, r->stream.oversized - before);
		if (k8s_watch_may_log(r))
			log_warn(TAG, "%s: initial event over %zu bytes skipped", r->def->name,
				 w->max_event_bytes * LIST_ITEM_FACTOR);
	} else if (r->stream.oversized != before) {
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

size_t k8s_watch_on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct res *r = userp;

	/* A sign of life: Retry-After is read from curl at the end. */
	(void)data;
	uv_timer_start(&r->idle_timer, k8s_watch_on_idle, r->w->idle_ms, 0);
	STAT_ADD(r->w, res[r->def->kind].bytes, size * nmemb);
	return size * nmemb;
}

/* ---------------------------------------------------------- list pages */

/* Apply the complete list: swap the new set into the store. */
void k8s_watch_commit_list(struct res *r, const char *rv)
{
	struct k8s_watch *w = r->w;
	size_t n, rejected = r->list_rejected;
	bool nomem = false;
	int rc = -ENOMEM;

	if (r->def->kind == RES_PODS) {
		k8s_watch_pods_commit(r, rv);
		return;
	}
	if (!r->stage)
		r->stage = k8s_store_stage_new(w->store, r->def->kind);
	n = r->stage ? k8s_store_stage_count(r->stage) : 0;
	if (r->stage)
		rc = k8s_store_stage_commit(w->store, r->stage);
	r->stage = NULL;
	if (rc < 0) {
		nomem = true;
		n = 0;
	} else if (rc > 0) {
		/* refused by a store limit */
		STAT_ADD(w, bad_events, (size_t)rc);
		rejected += (size_t)rc;
		n -= (size_t)rc;
	}
	k8s_watch_drop_list(r);
	/* The objects the list replaced, and the JSON of its last page, are
	 * in malloc's free lists: hand them back to the system. */
	malloc_trim(0);
	w->trim_after_publish = true;
	memcpy(r->rv, rv, strlen(rv) + 1);
	r->list_mode = LIST_NOT_OLDER;
	r->listed = true;
	r->watched = false;
	w->dirty = true;
	STAT_INC(w, lists);
	log_info(TAG, "%s: listed %zu objects at resourceVersion %s (%zu rejected)", r->def->name,
		 n, r->rv, rejected);
	if (nomem) {
		STAT_INC(w, errors);
		log_error(TAG, "%s: out of memory while applying the list, relisting", r->def->name);
		k8s_watch_schedule(r, PH_LIST, k8s_watch_backoff(r));
		return;
	}
	k8s_watch_start_watch(r);
}

/* Check a list page's shape; *cont is its continue token (NULL on the last
 * page). @return false with @p why set when it is unusable. */
static bool page_valid(const json_t *root, const json_t *meta, const json_t *items,
		       const char *rv, const char **contp, char *why, size_t whylen)
{
	const json_t *contj = json_object_get(meta, "continue");
	const char *cont = json_string_value(contj);

	if (!json_is_object(root) || !json_is_object(meta)) {
		snprintf(why, whylen, "not a list (no metadata)");
		return false;
	}
	if (!json_is_array(items) && !json_is_null(items) && items) {
		snprintf(why, whylen, "items is not an array");
		return false;
	}
	if (contj && !cont && !json_is_null(contj)) {
		snprintf(why, whylen, "metadata.continue is not a string");
		return false;
	}
	if (cont && strlen(cont) > CONTINUE_MAX_BYTES) {
		snprintf(why, whylen, "metadata.continue longer than %d bytes", CONTINUE_MAX_BYTES);
		return false;
	}
	if (cont && !cont[0])
		cont = NULL;
	if (!cont && (!rv || !k8s_rv_valid(rv))) {
		snprintf(why, whylen, "missing or invalid metadata.resourceVersion");
		return false;
	}
	*contp = cont;
	return true;
}

int k8s_watch_list_page(struct res *r, char *why, size_t whylen)
{
	json_error_t jerr;
	size_t slen;
	const char *shell = k8s_stream_list_shell(&r->split, &slen);
	json_t *root = shell ? json_loadb(shell, slen, 0, &jerr) : NULL;
	int rc = -EINVAL;

	if (!shell) {
		snprintf(why, whylen, "empty body");
		return -EINVAL;
	}
	if (!root) {
		char t[JSON_ERROR_TEXT_LENGTH + 1];
		k8s_watch_printable(t, sizeof(t), jerr.text, strlen(jerr.text));
		snprintf(why, whylen, "bad JSON at byte %d: %s", jerr.position, t);
		return -EINVAL;
	}
	const json_t *meta = json_object_get(root, "metadata");
	const json_t *items = json_object_get(root, "items");
	const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
	const char *cont = NULL;

	if (!page_valid(root, meta, items, rv, &cont, why, whylen))
		goto out;
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it) {
		if (!json_is_object(it)) {
			STAT_INC(r->w, bad_events);
			continue;
		}
		if (k8s_watch_list_add(r, json_incref(it)) < 0) {
			rc = -ENOMEM;
			snprintf(why, whylen, "out of memory");
			goto out;
		}
	}
	/* The page is good: its objects, bytes and cost join the list's. */
	int kept = r->stage ? k8s_store_stage_page_keep(r->stage) : 0;
	if (kept < 0) {
		rc = -ENOMEM;
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (kept > 0) {
		STAT_ADD(r->w, bad_events, (size_t)kept);
		r->page_rejected += (size_t)kept;
	}
	r->list_items = r->stage ? k8s_store_stage_count(r->stage) : json_array_size(r->pods_pending);
	r->list_bytes += r->page_bytes;
	r->list_cost += r->page_cost;
	r->list_rejected += r->page_rejected;
	r->page_bytes = r->page_cost = r->page_rejected = 0;
	k8s_stream_list_reset(&r->split);
	if (cont && r->cont && strcmp(cont, r->cont) == 0) {
		snprintf(why, whylen, "the same continue token twice (page %u)", r->pages + 1);
		rc = -ELOOP;
		goto out;
	}
	if (cont && ++r->pages >= LIST_MAX_PAGES) {
		snprintf(why, whylen, "more than %d pages", LIST_MAX_PAGES);
		rc = -ELOOP;
		goto out;
	}
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
		k8s_watch_start_list(r);
		return 0;
	}
	free(r->cont);
	r->cont = NULL;
	char rvcopy[K8S_RV_MAX];
	memcpy(rvcopy, rv, strlen(rv) + 1);
	json_decref(root);
	k8s_watch_commit_list(r, rvcopy);
	return 0;
out:
	json_decref(root);
	return rc;
}
