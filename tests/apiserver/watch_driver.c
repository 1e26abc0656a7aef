/* tests/apiserver/watch_driver.c - run k8s_watch against an API server and report on stdout.
 *
 * Built by hand (see tests/apiserver/build_driver.sh), not by the Makefile:
 *   watch_driver (--api URL [--token-file F] [--ca-file CA] | --kubeconfig K)
 *                [--idle-ms N] [--max-event-bytes N] [--log-level L]
 *                [--list-deadline-ms N] [--watch-timeout-s N]
 *                [--reconnect-spread-ms N] [--watch-list auto|off]
 *
 * Links a recording fake of the store and publisher symbols (below) unless built
 * with -DREAL_STORE, in which case the real store (src/cluster/...) is used and
 * dumps carry only its counters. Commands on stdin, one per line:
 *   dump   print {"dump":{...}} with the store content and the watch stats
 *   quit   k8s_watch_close(), run the loop dry, print {"closed":...}, exit
 * After every publish it prints {"publish":N}. EOF on stdin means quit.
 * Exit: 0 clean, 2 k8s_watch_start failed ({"start_error":...}), 3 the loop
 * did not close cleanly. What it shares with bench/cluster/apicost_driver.c
 * (options, stdin commands, JSON output) is in driver_common.h.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/io/k8s_watch.h"
#include "nodedns/util/log.h"

#include "driver_common.h"

#ifndef REAL_STORE
/* ------------------------------------------------ a recording fake store */

struct k8s_store {
	json_t *objs[K8S_KIND_COUNT]; /* "ns/name" -> object (a copy) */
	uint64_t applied[3], rejected, clears[K8S_KIND_COUNT], publishes;
};

struct cluster_snapshot {
	int refs;
	uint64_t serial;
};

/* The fake publisher counts in the fake store. */
struct cluster_publisher {
	int unused;
};
static struct cluster_publisher fake_publisher;

static struct k8s_store *fake_store_new(void)
{
	struct k8s_store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	for (int k = 0; k < K8S_KIND_COUNT; k++)
		s->objs[k] = json_object();
	return s;
}

static void fake_store_free(struct k8s_store *s)
{
	for (int k = 0; k < K8S_KIND_COUNT; k++)
		json_decref(s->objs[k]);
	free(s);
}

/* The key of @p obj in the fake store ("ns/name"; "/name" for a Namespace).
 * @return false (err set) when it has none. */
static bool fake_key(enum k8s_kind kind, const json_t *obj, char *key, size_t cap, char *err,
		     size_t errlen)
{
	const json_t *meta = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(meta, "name"));
	const char *ns = json_string_value(json_object_get(meta, "namespace"));

	if ((unsigned)kind >= K8S_KIND_COUNT || !json_is_object(obj) || !name ||
	    (kind != K8S_NAMESPACE && !ns)) {
		if (err && errlen)
			snprintf(err, errlen, "fake store: no metadata.name/namespace");
		return false;
	}
	snprintf(key, cap, "%s/%s", kind == K8S_NAMESPACE ? "" : ns, name);
	return true;
}

int k8s_store_apply(struct k8s_store *s, enum k8s_kind kind, enum k8s_event ev,
		    const struct json_t *obj, char *err, size_t errlen)
{
	char key[600];

	if (!fake_key(kind, obj, key, sizeof(key), err, errlen)) {
		s->rejected++;
		return -EINVAL;
	}
	s->applied[ev]++;
	if (ev == K8S_DELETED)
		json_object_del(s->objs[kind], key);
	else
		json_object_set_new(s->objs[kind], key, json_deep_copy(obj));
	return 0;
}

/* The real store's fast path for EndpointSlice lines: this store keeps
 * JSON, so every line takes the generic path (k8s_store_apply above). */
int k8s_store_apply_line(struct k8s_store *s, enum k8s_kind kind, const char *obj_kind,
			 const char *line, size_t len, enum k8s_event *ev, char rv[K8S_RV_MAX],
			 char *err, size_t errlen)
{
	(void)s;
	(void)kind;
	(void)obj_kind;
	(void)line;
	(void)len;
	(void)ev;
	(void)err;
	(void)errlen;
	rv[0] = '\0';
	return K8S_LINE_UNHANDLED;
}

/* The list in progress, as the real store stages it: the objects of the
 * pages kept so far and those of the page in flight, apart from the store
 * until the commit replaces the kind with them. */
struct k8s_store_stage {
	struct k8s_store *s; /* for its counters */
	enum k8s_kind kind;
	json_t *list, *page; /* key -> object */
};

struct k8s_store_stage *k8s_store_stage_new(const struct k8s_store *s, enum k8s_kind kind)
{
	struct k8s_store_stage *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->s = (struct k8s_store *)s;
	st->kind = kind;
	st->list = json_object();
	st->page = json_object();
	if (!st->list || !st->page) {
		k8s_store_stage_free(st);
		return NULL;
	}
	return st;
}

void k8s_store_stage_free(struct k8s_store_stage *st)
{
	if (!st)
		return;
	json_decref(st->list);
	json_decref(st->page);
	free(st);
}

int k8s_store_stage_add(struct k8s_store_stage *st, const struct json_t *obj, char *err,
			size_t errlen)
{
	char key[600];

	if (!fake_key(st->kind, obj, key, sizeof(key), err, errlen)) {
		st->s->rejected++;
		return -EINVAL;
	}
	return json_object_set_new(st->page, key, json_deep_copy(obj)) < 0 ? -ENOMEM : 0;
}

/* The same for a streaming list's events. */
int k8s_store_stage_add_line(struct k8s_store_stage *st, const char *obj_kind, const char *line,
			     size_t len, char *err, size_t errlen)
{
	(void)st;
	(void)obj_kind;
	(void)line;
	(void)len;
	(void)err;
	(void)errlen;
	return K8S_LINE_UNHANDLED;
}

void k8s_store_stage_page_drop(struct k8s_store_stage *st)
{
	json_object_clear(st->page);
}

int k8s_store_stage_page_keep(struct k8s_store_stage *st)
{
	if (json_object_update(st->list, st->page) < 0)
		return -ENOMEM;
	json_object_clear(st->page);
	return 0;
}

size_t k8s_store_stage_count(const struct k8s_store_stage *st)
{
	return json_object_size(st->list) + json_object_size(st->page);
}

int k8s_store_stage_commit(struct k8s_store *s, struct k8s_store_stage *st)
{
	s->clears[st->kind]++;
	json_object_clear(s->objs[st->kind]);
	s->applied[K8S_ADDED] += k8s_store_stage_count(st);
	int rc = json_object_update(s->objs[st->kind], st->list) < 0 ||
			 json_object_update(s->objs[st->kind], st->page) < 0
		 ? -ENOMEM
		 : 0;
	k8s_store_stage_free(st);
	return rc;
}

struct cluster_snapshot *cluster_publisher_publish(struct cluster_publisher *p,
						   struct k8s_store *s)
{
	(void)p;
	struct cluster_snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap)
		return NULL;
	snap->refs = 1;
	snap->serial = ++s->publishes;
	return snap;
}

void cluster_snapshot_ref(struct cluster_snapshot *snap)
{
	snap->refs++;
}

void cluster_snapshot_unref(struct cluster_snapshot *snap)
{
	if (snap && --snap->refs == 0)
		free(snap);
}

/* {"services":{"ns/name":{"rv":"12","annotation_bytes":N},...},...} */
static json_t *store_dump(struct k8s_store *s, struct cluster_publisher *p)
{
	(void)p;
	json_t *out = json_object();
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		json_t *m = json_object();
		const char *key;
		json_t *o;
		json_object_foreach(s->objs[k], key, o) {
			const json_t *meta = json_object_get(o, "metadata");
			json_t *e = json_object();
			json_object_set(e, "rv", json_object_get(meta, "resourceVersion"));
			json_object_set(e, "labels", json_object_get(meta, "labels"));
			json_object_set_new(m, key, e);
		}
		json_object_set_new(out, kind_names[k], m);
	}
	json_object_set_new(out, "store_publishes", json_integer((json_int_t)s->publishes));
	json_object_set_new(out, "store_rejected", json_integer((json_int_t)s->rejected));
	json_t *cl = json_object();
	for (int k = 0; k < K8S_KIND_COUNT; k++)
		json_object_set_new(cl, kind_names[k], json_integer((json_int_t)s->clears[k]));
	json_object_set_new(out, "clears", cl);
	return out;
}
#else
static json_t *store_dump(struct k8s_store *s, struct cluster_publisher *p)
{
	struct k8s_store_stats st;
	k8s_store_get_stats(s, &st);
	json_t *out = json_object();
	json_object_set_new(out, "count_services", json_integer((json_int_t)st.services));
	json_object_set_new(out, "count_endpointslices",
			    json_integer((json_int_t)st.endpointslices));
	json_object_set_new(out, "count_namespaces", json_integer((json_int_t)st.namespaces));
	json_object_set_new(out, "store_rejected", json_integer((json_int_t)st.events_rejected));
	json_object_set_new(out, "store_publishes",
			    json_integer((json_int_t)cluster_publisher_count(p)));
	return out;
}
#endif

/* ------------------------------------------------------------- driver */

struct driver {
	uv_loop_t loop;
	struct cmd_in in;
	uv_signal_t sigterm;
	struct k8s_watch *w;
	struct k8s_store *store;
	struct cluster_publisher *pub;
	uint64_t publishes;
	bool quitting;
	struct cluster_snapshot *current;
};

static json_t *stats_json(const struct k8s_watch_stats *st)
{
	json_t *j = json_object();
#define S(f) json_object_set_new(j, #f, json_integer((json_int_t)atomic_load(&st->f)))
	S(lists);
	S(watches);
	S(watch_restarts);
	S(relists_410);
	S(events);
	S(bookmarks);
	S(errors);
	S(throttled_429);
	S(unauthorized_401);
	S(token_reloads);
	S(oversized_events);
	S(bad_events);
	S(list_loops);
	S(list_timeouts);
	S(watch_lists);
	S(watch_list_fallbacks);
	S(watch_deadlines);
	S(interrupted);
	S(synced);
#undef S
	json_object_set_new(j, "res", res_stats_json(st));
	return j;
}

static void dump(struct driver *d)
{
	json_t *j = store_dump(d->store, d->pub);
	json_object_set_new(j, "stats", stats_json(k8s_watch_stats(d->w)));
	json_object_set_new(j, "publishes", json_integer((json_int_t)d->publishes));
	json_t *o = json_object();
	json_object_set_new(o, "dump", j);
	emit(o);
}

static void on_publish(void *arg, struct cluster_snapshot *snap)
{
	struct driver *d = arg;
	/* Hold the newest snapshot, as a worker would, and drop the older one. */
	cluster_snapshot_unref(d->current);
	d->current = snap;
	d->publishes++;
	json_t *o = json_object();
	json_object_set_new(o, "publish", json_integer((json_int_t)d->publishes));
	emit(o);
}

static void quit(struct driver *d)
{
	if (d->quitting)
		return;
	d->quitting = true;
	k8s_watch_close(d->w);
	d->w = NULL;
	cmd_in_stop(&d->in);
	uv_close((uv_handle_t *)&d->sigterm, on_closed);
}

/* A command line from stdin; NULL: EOF. */
static void command(void *arg, const char *cmd)
{
	struct driver *d = arg;
	if (!cmd)
		quit(d);
	else if (d->quitting)
		;
	else if (strcmp(cmd, "dump") == 0)
		dump(d);
	else if (strcmp(cmd, "quit") == 0)
		quit(d);
	else if (cmd[0])
		fprintf(stderr, "watch_driver: unknown command \"%s\"\n", cmd);
}

static void on_signal(uv_signal_t *s, int sig)
{
	(void)sig;
	quit(s->data);
}

int main(int argc, char **argv)
{
	struct driver d = {0};
	struct k8s_watch_config cfg = {0};
	enum log_level level = LOGL_INFO;
	char err[512];
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "watch_driver: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (driver_option(&cfg, &level, a, v))
			;
		else if (strcmp(a, "--kubeconfig") == 0)
			cfg.kubeconfig = v;
		else if (strcmp(a, "--list-deadline-ms") == 0)
			cfg.list_deadline_ms = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--reconnect-spread-ms") == 0)
			cfg.reconnect_spread_ms = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--max-event-bytes") == 0)
			cfg.max_event_bytes = (uint32_t)strtoul(v, NULL, 10);
		else {
			fprintf(stderr, "watch_driver: bad option %s\n", a);
			return 2;
		}
	}
	log_setup(level, false);
	signal(SIGPIPE, SIG_IGN);

#ifdef REAL_STORE
	struct cluster_config ccfg = {.domain = "cluster.local", .ttl_s = 5, .pods_insecure = true};
	d.store = k8s_store_new(&ccfg);
	d.pub = cluster_publisher_new();
#else
	d.store = fake_store_new();
	d.pub = &fake_publisher;
#endif
	if (!d.store || !d.pub || uv_loop_init(&d.loop) < 0)
		return 1;
	rc = k8s_watch_start(&d.loop, &cfg, d.store, d.pub, on_publish, &d, &d.w, err,
			     sizeof(err));
	if (rc < 0) {
		json_t *o = json_object();
		json_object_set_new(o, "start_error", json_string(err));
		json_object_set_new(o, "rc", json_integer(rc));
		emit(o);
		uv_loop_close(&d.loop);
#ifdef REAL_STORE
		cluster_publisher_free(d.pub);
		k8s_store_free(d.store);
#else
		fake_store_free(d.store);
#endif
		return 2;
	}
	cmd_in_start(&d.loop, &d.in, command, &d);
	uv_signal_init(&d.loop, &d.sigterm);
	d.sigterm.data = &d;
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	{
		json_t *o = json_object();
		json_object_set_new(o, "started", json_true());
		emit(o);
	}

	uv_run(&d.loop, UV_RUN_DEFAULT);
	int lc = uv_loop_close(&d.loop);
	cluster_snapshot_unref(d.current);
#ifdef REAL_STORE
	cluster_publisher_free(d.pub);
	k8s_store_free(d.store);
#else
	fake_store_free(d.store);
#endif
	json_t *o = json_object();
	json_object_set_new(o, "closed", json_true());
	json_object_set_new(o, "loop_close", json_integer(lc));
	emit(o);
	return lc == 0 ? 0 : 3;
}
