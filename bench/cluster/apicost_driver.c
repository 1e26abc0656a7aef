/* bench/cluster/apicost_driver.c - many k8s_watch clients in one process, for the API cost model.
 *
 * Built and run by bench/cluster/apicost.py:
 *   apicost_driver --api URL --token-file F --ca-file CA [--clients N]
 *                  [--watch-list auto|off] [--watch-timeout-s N]
 *                  [--idle-ms N] [--log-level L]
 *
 * Each client is the real watch (src/io/k8s_watch*.c) with its own real
 * store and publisher (src/cluster/), all on one libuv loop, as N nodes
 * would each run one. Commands on stdin, one per line:
 *   dump   one JSON line {"dump":{"t":seconds,"clients":[{...},...]}} with
 *          each client's watch counters (synced, lists, watches,
 *          streaming lists, relists, reconnects, requests, bytes, ...)
 *   quit   close every watch, run the loop dry, print {"closed":true}, exit
 * EOF on stdin means quit.
 */
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

struct client {
	struct k8s_store *store;
	struct cluster_publisher *pub;
	struct k8s_watch *w;
	struct cluster_snapshot *current;
};

struct driver {
	uv_loop_t loop;
	uv_pipe_t in;
	struct client *c;
	int n;
	char line[256];
	size_t line_len;
	bool quitting;
	uint64_t t0;
};

static void on_publish(void *arg, struct cluster_snapshot *snap)
{
	struct client *c = arg;
	cluster_snapshot_unref(c->current);
	c->current = snap;
}

static json_t *client_json(const struct k8s_watch_stats *st)
{
	json_t *j = json_object();
	uint64_t req = 0, bytes = 0, relists = 0, reconnects = 0;
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		req += atomic_load(&st->res[k].requests);
		bytes += atomic_load(&st->res[k].bytes);
		relists += atomic_load(&st->res[k].relists);
		reconnects += atomic_load(&st->res[k].reconnects);
	}
#define S(f) json_object_set_new(j, #f, json_integer((json_int_t)atomic_load(&st->f)))
	S(synced);
	S(lists);
	S(watches);
	S(watch_lists);
	S(watch_list_fallbacks);
	S(interrupted);
	S(errors);
	S(relists_410);
	S(bookmarks);
	S(events);
#undef S
	json_object_set_new(j, "requests", json_integer((json_int_t)req));
	json_object_set_new(j, "bytes", json_integer((json_int_t)bytes));
	json_object_set_new(j, "relists", json_integer((json_int_t)relists));
	json_object_set_new(j, "reconnects", json_integer((json_int_t)reconnects));
	static const char *const names[K8S_KIND_COUNT] = {"services", "endpointslices",
							  "namespaces"};
	json_t *res = json_object();
	for (int k = 0; k < K8S_KIND_COUNT; k++) {
		json_t *o = json_object();
		json_object_set_new(o, "requests",
				    json_integer((json_int_t)atomic_load(&st->res[k].requests)));
		json_object_set_new(o, "bytes", json_integer((json_int_t)atomic_load(&st->res[k].bytes)));
		json_object_set_new(o, "relists",
				    json_integer((json_int_t)atomic_load(&st->res[k].relists)));
		json_object_set_new(o, "reconnects",
				    json_integer((json_int_t)atomic_load(&st->res[k].reconnects)));
		json_object_set_new(o, "established",
				    json_integer((json_int_t)atomic_load(&st->res[k].established)));
		json_object_set_new(res, names[k], o);
	}
	json_object_set_new(j, "res", res);
	return j;
}

static void emit(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s) {
		fprintf(stdout, "%s\n", s);
		fflush(stdout);
		free(s);
	}
}

static void dump(struct driver *d)
{
	json_t *arr = json_array();
	for (int i = 0; i < d->n; i++)
		json_array_append_new(arr, client_json(k8s_watch_stats(d->c[i].w)));
	json_t *j = json_object();
	json_object_set_new(j, "t", json_real((double)(uv_hrtime() - d->t0) / 1e9));
	json_object_set_new(j, "clients", arr);
	json_t *o = json_object();
	json_object_set_new(o, "dump", j);
	emit(o);
}

static void on_closed(uv_handle_t *h)
{
	(void)h;
}

static void quit(struct driver *d)
{
	if (d->quitting)
		return;
	d->quitting = true;
	for (int i = 0; i < d->n; i++) {
		k8s_watch_close(d->c[i].w);
		d->c[i].w = NULL;
	}
	uv_read_stop((uv_stream_t *)&d->in);
	uv_close((uv_handle_t *)&d->in, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char mem[4096];
	(void)h;
	(void)suggested;
	*buf = uv_buf_init(mem, sizeof(mem));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct driver *d = s->data;
	if (n < 0) {
		quit(d);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		char ch = buf->base[i];
		if (ch != '\n') {
			if (d->line_len + 1 < sizeof(d->line))
				d->line[d->line_len++] = ch;
			continue;
		}
		d->line[d->line_len] = '\0';
		d->line_len = 0;
		if (d->quitting)
			continue;
		if (strcmp(d->line, "dump") == 0)
			dump(d);
		else if (strcmp(d->line, "quit") == 0)
			quit(d);
	}
}

int main(int argc, char **argv)
{
	struct driver d = {0};
	struct k8s_watch_config cfg = {0};
	enum log_level level = LOGL_WARN;
	char err[512];
	int n = 1;

	for (int i = 1; i + 1 < argc; i += 2) {
		const char *a = argv[i], *v = argv[i + 1];
		if (strcmp(a, "--api") == 0)
			cfg.api_url = v;
		else if (strcmp(a, "--token-file") == 0)
			cfg.token_file = v;
		else if (strcmp(a, "--ca-file") == 0)
			cfg.ca_file = v;
		else if (strcmp(a, "--clients") == 0)
			n = atoi(v);
		else if (strcmp(a, "--watch-list") == 0)
			cfg.watch_list = strcmp(v, "off") == 0 ? -1 : 0;
		else if (strcmp(a, "--watch-timeout-s") == 0)
			cfg.watch_timeout_s = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--idle-ms") == 0)
			cfg.idle_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(a, "--log-level") == 0 && log_level_parse(v, &level) == 0)
			;
		else {
			fprintf(stderr, "apicost_driver: bad option %s\n", a);
			return 2;
		}
	}
	if (n < 1 || n > 10000 || !(d.c = calloc((size_t)n, sizeof(*d.c))))
		return 2;
	log_setup(level, false);
	signal(SIGPIPE, SIG_IGN);
	if (uv_loop_init(&d.loop) < 0)
		return 1;
	d.t0 = uv_hrtime();
	struct cluster_config ccfg = {.domain = "cluster.local", .ttl_s = 5, .pods_insecure = true};
	for (int i = 0; i < n; i++) {
		struct client *c = &d.c[i];
		if (!(c->store = k8s_store_new(&ccfg)) || !(c->pub = cluster_publisher_new()))
			return 1;
		if (k8s_watch_start(&d.loop, &cfg, c->store, c->pub, on_publish, c, &c->w, err,
				    sizeof(err)) < 0) {
			fprintf(stderr, "apicost_driver: %s\n", err);
			return 2;
		}
		d.n = i + 1;
	}
	uv_pipe_init(&d.loop, &d.in, 0);
	d.in.data = &d;
	uv_pipe_open(&d.in, 0);
	uv_read_start((uv_stream_t *)&d.in, on_alloc, on_read);
	emit(json_pack("{s:b,s:i}", "started", 1, "clients", n));
	uv_run(&d.loop, UV_RUN_DEFAULT);
	int lc = uv_loop_close(&d.loop);
	for (int i = 0; i < d.n; i++) {
		cluster_snapshot_unref(d.c[i].current);
		cluster_publisher_free(d.c[i].pub);
		k8s_store_free(d.c[i].store);
	}
	free(d.c);
	emit(json_pack("{s:b,s:i}", "closed", 1, "loop_close", lc));
	return lc == 0 ? 0 : 3;
}
