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
 * EOF on stdin means quit. The options, the stdin commands and the JSON
 * output share their code with tests/apiserver/watch_driver.c
 * (tests/apiserver/driver_common.h).
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

#include "../../tests/apiserver/driver_common.h"

struct client {
	struct k8s_store *store;
	struct cluster_publisher *pub;
	struct k8s_watch *w;
	struct cluster_snapshot *current;
};

struct driver {
	uv_loop_t loop;
	struct cmd_in in;
	struct client *c;
	int n;
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
	json_object_set_new(j, "res", res_stats_json(st));
	return j;
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

static void quit(struct driver *d)
{
	if (d->quitting)
		return;
	d->quitting = true;
	for (int i = 0; i < d->n; i++) {
		k8s_watch_close(d->c[i].w);
		d->c[i].w = NULL;
	}
	cmd_in_stop(&d->in);
}

/* A command line from stdin; NULL: EOF. */
static void on_line(void *arg, const char *line)
{
	struct driver *d = arg;
	if (!line)
		quit(d);
	else if (d->quitting)
		;
	else if (strcmp(line, "dump") == 0)
		dump(d);
	else if (strcmp(line, "quit") == 0)
		quit(d);
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
		if (driver_option(&cfg, &level, a, v))
			;
		else if (strcmp(a, "--clients") == 0)
			n = atoi(v);
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
	cmd_in_start(&d.loop, &d.in, on_line, &d);
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
