/* src/main.c - owns the process: config, cache, cluster store, workers, control loop.
 *
 * Start-up is a sequence of stages, each a function that logs why it failed:
 * parse the config (exit 2 on bad input; with --check-config, check what
 * the later stages would refuse and exit 0 or 2), become the node-setup supervisor
 * when asked to, build the shared state (upstream servers, cache, cluster
 * store), bind every socket for every worker, load a snapshot file (or the
 * warm-start file, io/warm_start.h), start the workers, then the control
 * loop: signals, the Kubernetes watch (or the snapshot file) with the
 * warm-start saver, the HTTP endpoints, dropping privileges. A failed stage
 * exits 1. Teardown is the reverse, on SIGTERM or SIGINT.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "nodedns/io/admin.h"
#include "nodedns/dns/cache.h"
#include "nodedns/cluster/cluster_publisher.h"
#include "nodedns/cluster/cluster_snapshot.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/cluster/k8s_store.h"
#include "nodedns/cluster/pod_set.h"
#include "nodedns/dns/autopath.h"
#include "nodedns/config.h"
#include "nodedns/io/k8s_watch.h"
#include "nodedns/util/log.h"
#include "nodedns/util/metrics.h"
#include "nodedns/node/privdrop.h"
#include "nodedns/dns/query.h"
#include "nodedns/io/server.h"
#include "nodedns/node/supervisor.h"
#include "nodedns/io/upstream.h"
#include "nodedns/io/warm_start.h"
#include "nodedns/io/worker.h"

#include "main_node.h"

/* Where the default upstreams come from (at start and on SIGHUP). */
#define APP_RESOLV_CONF "/etc/resolv.conf"

/* The signals the control loop handles, in the order of app.sigs. */
static const int app_signums[] = { SIGTERM, SIGINT, SIGHUP };
#define APP_NSIGNALS (sizeof(app_signums) / sizeof(app_signums[0]))

struct app {
	int argc;
	char **argv;
	struct config cfg;
	uv_loop_t loop;
	bool loop_ready;                 /* uv_loop_init() succeeded */
	uv_signal_t sigs[APP_NSIGNALS];
	size_t nsigs;                    /* sigs[0..nsigs) are initialised */
	bool stopping;

	/* forwarding */
	struct upstream_server *servers; /* every distinct server, once */
	size_t nservers;
	struct upstream_server **default_list, **fallback_list;
	struct upstream_group default_group, fallback_group;
	struct query_stub stubs[CONFIG_MAX_STUBS];
	struct upstream_group stub_groups[CONFIG_MAX_STUBS];
	struct upstream_server **stub_lists[CONFIG_MAX_STUBS];

	struct cache *cache;
	struct query_env env;
	struct worker_shared shared;
	struct worker *workers;
	unsigned nworkers;

	struct k8s_store *store;
	struct cluster_publisher *publisher;
	struct k8s_watch *watch;
	struct autopath_config autopath; /* --autopath: env.autopath points here */
	struct pod_set *pods;            /* --autopath: the node's pods, with the watch */
	bool snapshot_loaded;
	struct warm_start_config warm_cfg; /* .run_dir NULL: no warm start */
	char warm_server[WARM_START_ID_MAX];
	struct warm_start *warm;         /* the saver, with the watch */
	uint64_t warm_created_s;         /* of the loaded file; 0: none loaded */
	struct admin *admin;
	char ident[256];
	struct supervisor_child sup; /* set when a node-setup supervisor runs us */
	size_t inherited_fds;        /* listening sockets the supervisor handed us */
};

/* The listening sockets of every worker, bound before any starts. */
typedef struct server_fds worker_fds[CONFIG_MAX_LISTEN];

/* ----------------------------------------------------------- upstreams */

/* The shared server object for @p a, created on first use. */
static struct upstream_server *server_for(struct app *app, const struct netaddr *a)
{
	for (size_t i = 0; i < app->nservers; i++)
		if (app->servers[i].addrlen == a->salen &&
		    memcmp(&app->servers[i].addr, &a->sa, a->salen) == 0)
			return &app->servers[i];
	struct upstream_server *s = &app->servers[app->nservers++];
	memcpy(&s->addr, &a->sa, a->salen);
	s->addrlen = a->salen;
	snprintf(s->name, sizeof(s->name), "%s", a->text);
	return s;
}

static int build_group(struct app *app, const struct netaddr *addrs, size_t n,
		       struct upstream_server ***list, struct upstream_group *g)
{
	*list = calloc(n ? n : 1, sizeof(**list));
	if (!*list)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		(*list)[i] = server_for(app, &addrs[i]);
	g->servers = *list;
	g->nservers = n;
	return 0;
}

static int setup_forwarding(struct app *app)
{
	const struct config *cfg = &app->cfg;
	size_t max = cfg->nupstream + 1;
	for (size_t i = 0; i < cfg->nstubs; i++)
		max += cfg->stubs[i].nservers;
	app->servers = calloc(max, sizeof(*app->servers));
	if (!app->servers)
		return -ENOMEM;
	if (build_group(app, cfg->upstream, cfg->nupstream, &app->default_list,
			&app->default_group) < 0)
		return -ENOMEM;
	if (cfg->has_cluster_fallback &&
	    build_group(app, &cfg->cluster_fallback, 1, &app->fallback_list,
			&app->fallback_group) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < cfg->nstubs; i++) {
		const struct config_stub *st = &cfg->stubs[i];
		if (build_group(app, st->servers, st->nservers, &app->stub_lists[i],
				&app->stub_groups[i]) < 0)
			return -ENOMEM;
		app->stubs[i].name_len = dnsmsg_name_from_text(st->domain, app->stubs[i].name);
		app->stubs[i].group = &app->stub_groups[i];
	}
	return 0;
}

/* ------------------------------------------------------------- metrics */

/* Synced: the snapshot file is loaded, or the watch has listed everything
 * once (a process has one or the other, never both). */
static bool cluster_synced(const struct app *app)
{
	if (app->watch)
		return atomic_load(&k8s_watch_stats(app->watch)->synced) != 0;
	return app->snapshot_loaded;
}

/* Live data once synced, before that the warm-start file if one was loaded;
 * *age_s: the file data's age. */
static enum warm_start_source cluster_source(const struct app *app, uint64_t *age_s)
{
	uint64_t now = (uint64_t)time(NULL);
	*age_s = now > app->warm_created_s ? now - app->warm_created_s : 0;
	if (cluster_synced(app))
		return WARM_SOURCE_LIVE;
	return app->warm_created_s ? WARM_SOURCE_FILE : WARM_SOURCE_NONE;
}

/* Each module renders its own counters; main only gathers the per-worker
 * stats and writes the families that are the process's own. */
static void render_metrics(void *arg, struct mbuf *b)
{
	struct app *app = arg;
	const struct query_stats *qs[CONFIG_MAX_THREADS];
	const struct server_stats *ss[CONFIG_MAX_THREADS];
	const struct upstream_worker_stats *us[CONFIG_MAX_THREADS];
	uint64_t age;
	size_t n = app->nworkers;
	for (size_t i = 0; i < n; i++) {
		qs[i] = query_worker_stats(app->workers[i].qw);
		ss[i] = server_stats(app->workers[i].server);
		us[i] = upstream_worker_stats(app->workers[i].up);
	}
	query_metrics_render(b, qs, n);
	metrics_header(b, METRICS_DROPPED_NAME, "counter", METRICS_DROPPED_HELP);
	query_metrics_render_dropped(b, qs, n);
	server_metrics_render_dropped(b, ss, n);
	upstream_worker_metrics_render_dropped(b, us, n);
	upstream_worker_metrics_render(b, us, n);
	server_metrics_render(b, ss, n);
	cache_metrics_render(b, cache_stats(app->cache), app->cfg.cache_memory_bytes);
	upstream_metrics_render(b, app->servers, app->nservers);

	struct k8s_store_stats ks;
	k8s_store_get_stats(app->store, &ks);
	k8s_store_metrics_render(b, &ks, cluster_publisher_count(app->publisher));
	if (app->watch)
		k8s_watch_metrics_render(b, k8s_watch_stats(app->watch));
	if (app->pods)
		pod_set_metrics_render(b, pod_set_stats(app->pods));
	enum warm_start_source src = cluster_source(app, &age);
	warm_start_metrics_render(b, app->warm, src, age);
	metrics_gauge(b, "nodedns_cluster_synced",
		      "1 once the cluster store has synced (or a snapshot is loaded).",
		      cluster_synced(app) ? 1 : 0);
	if (app->admin)
		admin_metrics_render(b, admin_stats(app->admin));
	metrics_gauge(b, "nodedns_workers", "Worker threads.", app->nworkers);
	supervisor_child_render_metrics(&app->sup, b);
}

static bool is_ready(void *arg)
{
	return cluster_synced(arg);
}

/* ------------------------------------------------------------- cluster */

static void publish(struct app *app, struct cluster_snapshot *snap)
{
	for (unsigned i = 0; i < app->nworkers; i++) {
		cluster_snapshot_ref(snap);
		worker_publish(&app->workers[i], snap);
	}
	cluster_snapshot_unref(snap);
}

/* --autopath: a new table of the node's pods for every worker. */
static void on_pods_publish(void *arg, struct pod_table *t)
{
	struct app *app = arg;
	for (unsigned i = 0; i < app->nworkers; i++) {
		pod_table_ref(t);
		worker_publish_pods(&app->workers[i], t);
	}
	pod_table_unref(t);
}

static void on_watch_publish(void *arg, struct cluster_snapshot *snap)
{
	struct app *app = arg;
	publish(app, snap);
	warm_start_changed(app->warm);
}

/* Grows while the API server talks to us (events, bookmarks about every
 * minute, completed lists; not attempts): what the warm-start saver looks at. */
static uint64_t watch_progress(void *arg)
{
	const struct k8s_watch_stats *s = k8s_watch_stats(((struct app *)arg)->watch);
	return atomic_load(&s->events) + atomic_load(&s->bookmarks) + atomic_load(&s->lists);
}

/* The warm start is on with the API watch (not --kube-snapshot) and a max
 * age; the file is tied to the cluster domain and the API server. */
static void warm_start_setup(struct app *app)
{
	const struct config *cfg = &app->cfg;
	if (cfg->kube_snapshot || (!cfg->kube_api && !cfg->kubeconfig) ||
	    !cfg->warm_start_max_age_s)
		return;
	if (warm_start_identity(cfg->kube_api, cfg->kubeconfig, cfg->kube_ca_file, app->warm_server,
				sizeof(app->warm_server)) < 0) {
		log_warn("warm-start", "no API server URL to tie the file to: warm start off");
		return;
	}
	app->warm_cfg = (struct warm_start_config){ .run_dir = cfg->run_dir,
		.domain = cfg->cluster_domain, .server = app->warm_server,
		.max_age_s = cfg->warm_start_max_age_s };
	if (warm_start_load(&app->warm_cfg, app->store, &app->warm_created_s) < 0)
		return;
	app->shared.initial_snap = cluster_publisher_publish(app->publisher, app->store);
	if (!app->shared.initial_snap)
		app->warm_created_s = 0; /* out of memory: start as without a file */
}

/* Load --kube-snapshot into the store. @return a new snapshot (one
 * reference, the caller's) or NULL after logging why. */
static struct cluster_snapshot *read_snapshot_file(struct app *app)
{
	char err[512] = "";
	int rc = k8s_store_load_file(app->store, app->cfg.kube_snapshot, err, sizeof(err));
	if (rc < 0) {
		log_error("cluster", "--kube-snapshot %s: %s", app->cfg.kube_snapshot,
			  err[0] ? err : strerror(-rc));
		return NULL;
	}
	struct cluster_snapshot *snap = cluster_publisher_publish(app->publisher, app->store);
	if (!snap) {
		log_error("cluster", "--kube-snapshot %s: out of memory", app->cfg.kube_snapshot);
		return NULL;
	}
	struct k8s_store_stats ks;
	k8s_store_get_stats(app->store, &ks);
	log_info("cluster", "loaded %s: %llu services, %llu endpointslices, %llu namespaces",
		 app->cfg.kube_snapshot, (unsigned long long)ks.services,
		 (unsigned long long)ks.endpointslices, (unsigned long long)ks.namespaces);
	return snap;
}

static int load_snapshot_file(struct app *app)
{
	struct cluster_snapshot *snap = read_snapshot_file(app);
	if (!snap)
		return -EINVAL;
	publish(app, snap);
	app->snapshot_loaded = true;
	return 0;
}

/* ------------------------------------------------------------- signals */

static void on_closed_stop(uv_handle_t *h)
{
	(void)h;
}

static void shutdown_app(struct app *app)
{
	if (app->stopping)
		return;
	app->stopping = true;
	log_info("main", "stopping: draining queries in flight (up to %d ms)", WORKER_DRAIN_MS);
	for (unsigned i = 0; i < app->nworkers; i++)
		worker_stop(&app->workers[i]);
	admin_close(app->admin);
	app->admin = NULL;
	warm_start_close(app->warm); /* saves the live data a last time */
	app->warm = NULL;
	k8s_watch_close(app->watch);
	app->watch = NULL;
	for (size_t i = 0; i < app->nsigs; i++)
		uv_close((uv_handle_t *)&app->sigs[i], on_closed_stop);
	app->nsigs = 0;
}

static void reload(struct app *app)
{
	struct config next;
	memset(&next, 0, sizeof(next));
	char err[512] = "";
	enum config_result r = config_parse(&next, app->argc, app->argv, APP_RESOLV_CONF, err,
					    sizeof(err));
	if (r != CONFIG_OK) {
		log_error("main", "SIGHUP: config not reloaded: %s", err);
		config_free(&next);
		return;
	}
	log_setup((enum log_level)next.log_level, next.log_json);
	atomic_store(&app->env.query_log, next.query_log);
	app->cfg.query_log = next.query_log;
	app->cfg.log_level = next.log_level;
	app->cfg.log_json = next.log_json;
	/* What a running process cannot change in place. */
	if (next.nlisten != app->cfg.nlisten ||
	    memcmp(next.listen, app->cfg.listen, sizeof(next.listen[0]) * next.nlisten) != 0 ||
	    next.nupstream != app->cfg.nupstream ||
	    memcmp(next.upstream, app->cfg.upstream, sizeof(next.upstream[0]) * next.nupstream) != 0 ||
	    next.nstubs != app->cfg.nstubs || next.threads != app->cfg.threads ||
	    next.cache_memory_bytes != app->cfg.cache_memory_bytes)
		log_warn("main", "SIGHUP: listen, upstream, stub, threads and cache-memory changes take effect after a restart");
	config_free(&next);
	if (app->cfg.kube_snapshot)
		load_snapshot_file(app); /* on error the old data stays */
	log_info("main", "SIGHUP: reloaded log level, query log%s",
		 app->cfg.kube_snapshot ? " and the snapshot file" : "");
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct app *app = h->data;
	if (signum == SIGHUP) {
		reload(app);
		return;
	}
	log_info("main", "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	shutdown_app(app);
}

/* ------------------------------------------------------ start-up stages */

static bool acl_allowed(const void *arg, const struct sockaddr *sa)
{
	return config_allowed(arg, sa);
}

/* @return -1 to go on, else the exit status (0 after --help/--version, 2 on
 * bad input, after printing the one-line error). */
static int stage_config(struct app *app, int argc, char **argv)
{
	char err[512] = "";
	app->argc = argc;
	app->argv = argv;
	enum config_result cr = config_parse(&app->cfg, argc, argv, APP_RESOLV_CONF, err,
					     sizeof(err));
	if (cr == CONFIG_OK)
		return -1;
	if (cr != CONFIG_EXIT_OK)
		fprintf(stderr, "nodedns: %s\n", err);
	config_free(&app->cfg);
	return cr == CONFIG_EXIT_OK ? 0 : 2;
}

/* --check-config: everything a start checks, nothing bound (config.h).
 * Warnings go to the log as a start would write them, at most at warn
 * level; the result is one line: "config ok" on stdout (exit 0), or the
 * error on stderr as a bad flag prints it (exit 2). */
static int stage_check_config(struct app *app)
{
	char err[512] = "";
	int level = app->cfg.log_level < LOGL_WARN ? app->cfg.log_level : LOGL_WARN;
	log_setup((enum log_level)level, app->cfg.log_json);
	int rc = config_check_start(&app->cfg, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "nodedns: %s\n", err);
	else
		printf("nodedns: config ok\n");
	config_free(&app->cfg);
	return rc < 0 ? 2 : 0;
}

/* What every query reads: the cluster settings, TTL policy, upstream groups. */
static void fill_query_env(struct app *app, const struct cluster_config *ccfg)
{
	const struct config *cfg = &app->cfg;
	struct query_env *env = &app->env;
	env->cache = app->cache;
	env->cluster = *ccfg;
	env->upstreams = &app->default_group;
	env->fallback = cfg->has_cluster_fallback ? &app->fallback_group : NULL;
	env->stubs = app->stubs;
	env->nstubs = cfg->nstubs;
	env->ttl.min_ttl_s = cfg->min_ttl_s;
	env->ttl.max_ttl_s = cfg->max_ttl_s;
	env->ttl.neg_ttl_s = cfg->neg_ttl_s;
	env->ttl.servfail_ttl_s = QUERY_SERVFAIL_TTL_S_DEFAULT;
	env->serve_stale_s = cfg->serve_stale_s;
	env->prefetch = cfg->prefetch;
	env->max_waiters = cfg->max_waiters;
	atomic_store(&env->query_log, cfg->query_log);
	env->version = "nodedns " NODEDNS_VERSION;
	env->ident = app->ident;
	if (cfg->autopath)
		env->autopath = &app->autopath;
	if (cfg->nallow) {
		env->allowed = acl_allowed;
		env->allowed_arg = cfg;
	}
}

/* What every worker reads: the query env and the server and upstream bounds. */
static void fill_worker_shared(struct app *app)
{
	const struct config *cfg = &app->cfg;
	struct worker_shared *sh = &app->shared;
	sh->env = &app->env;
	sh->server.tcp_max_clients = cfg->tcp_max_clients;
	sh->server.tcp_idle_timeout_ms = cfg->tcp_idle_timeout_ms;
	sh->server.tcp_max_inflight = cfg->tcp_max_inflight;
	sh->server.tcp_max_unsent_bytes = SERVER_TCP_MAX_UNSENT_BYTES_DEFAULT;
	sh->server.udp_max_queued_sends = SERVER_UDP_MAX_QUEUED_SENDS_DEFAULT;
	sh->upstream.proto = cfg->upstream_proto == CONFIG_PROTO_UDP ? UPSTREAM_PROTO_UDP : UPSTREAM_PROTO_TCP;
	sh->upstream.timeout_ms = cfg->upstream_timeout_ms;
	sh->upstream.conns_per_server = UPSTREAM_CONNS_PER_SERVER_DEFAULT;
	sh->upstream.max_inflight_conn = UPSTREAM_MAX_INFLIGHT_CONN_DEFAULT;
	sh->upstream.max_inflight = cfg->max_inflight;
}

/* Upstream groups, cache, cluster store and what the workers share. */
static int stage_shared_state(struct app *app)
{
	const struct config *cfg = &app->cfg;
	if (setup_forwarding(app) < 0) {
		log_error("main", "out of memory");
		return -ENOMEM;
	}
	if (cfg->nupstream == 0)
		log_warn("main", "no upstream servers (none given and none usable in /etc/resolv.conf): "
			 "names outside the cluster zone get SERVFAIL");
	app->cache = cache_new(cfg->cache_memory_bytes, CACHE_SHARDS_DEFAULT);
	struct cluster_config ccfg;
	memset(&ccfg, 0, sizeof(ccfg));
	snprintf(ccfg.domain, sizeof(ccfg.domain), "%s", cfg->cluster_domain);
	ccfg.ttl_s = cfg->cluster_ttl_s;
	ccfg.pods_insecure = cfg->pods == CONFIG_PODS_INSECURE;
	app->store = k8s_store_new(&ccfg);
	app->publisher = cluster_publisher_new();
	app->workers = calloc(cfg->threads, sizeof(*app->workers));
	if (!app->cache || !app->store || !app->publisher || !app->workers) {
		log_error("main", "out of memory");
		return -ENOMEM;
	}
	if (gethostname(app->ident, sizeof(app->ident) - 1) < 0)
		snprintf(app->ident, sizeof(app->ident), "nodedns");
	if (cfg->autopath) {
		const char *search[CONFIG_MAX_AUTOPATH_SEARCH];
		for (size_t i = 0; i < cfg->nautopath_search; i++)
			search[i] = cfg->autopath_search[i];
		if (autopath_config_init(&app->autopath, cfg->cluster_domain, search,
					 cfg->nautopath_search, cfg->cluster_ttl_s) < 0 ||
		    !(app->pods = pod_set_new(cfg->node_name))) {
			log_error("main", "--autopath: cannot set up the search path");
			return -EINVAL;
		}
	}
	fill_query_env(app, &ccfg);
	fill_worker_shared(app);
	return 0;
}

/* Close the sockets of workers [from, threads) and free @p fds. */
static void release_fds(const struct app *app, worker_fds *fds, unsigned from)
{
	for (unsigned j = from; j < app->cfg.threads; j++)
		server_close_fds(fds[j], app->cfg.nlisten);
	free(fds);
}

/* Bind (or adopt from the supervisor) every worker's sockets first, so a
 * port in use fails the start cleanly. @return the sockets, or NULL. */
static worker_fds *stage_sockets(struct app *app)
{
	const struct config *cfg = &app->cfg;
	char err[512] = "";
	worker_fds *fds = calloc(cfg->threads, sizeof(*fds));
	if (!fds) {
		log_error("main", "out of memory");
		return NULL;
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		int rc = app->inherited_fds ? main_node_adopt_fds(cfg, app->inherited_fds, i, fds[i], err,
								  sizeof(err))
					    : server_bind(cfg->listen, cfg->nlisten, fds[i], err,
							  sizeof(err));
		if (rc < 0) {
			log_error("main", "%s", err);
			for (unsigned j = 0; j < i; j++)
				server_close_fds(fds[j], cfg->nlisten);
			free(fds);
			return NULL;
		}
	}
	return fds;
}

/* A snapshot file (or the warm-start file) is loaded before the first query
 * can arrive. */
static int stage_initial_snapshot(struct app *app)
{
	if (!app->cfg.kube_snapshot) {
		warm_start_setup(app);
		return 0;
	}
	app->shared.initial_snap = read_snapshot_file(app);
	if (!app->shared.initial_snap)
		return -EINVAL;
	app->snapshot_loaded = true;
	return 0;
}

/* Start every worker on its sockets (@p fds is consumed, also on failure).
 * On failure the workers already started are stopped and joined. */
static int stage_workers(struct app *app, worker_fds *fds)
{
	const struct config *cfg = &app->cfg;
	for (unsigned i = 0; i < cfg->threads; i++) {
		int rc = worker_start(&app->workers[i], (int)i, &app->shared, fds[i], cfg->nlisten);
		if (rc < 0) {
			log_error("main", "worker %u: %s", i, uv_strerror(rc));
			release_fds(app, fds, i + 1);
			shutdown_app(app);
			for (unsigned j = 0; j < app->nworkers; j++)
				worker_join(&app->workers[j]);
			app->nworkers = 0;
			return rc;
		}
		app->nworkers++;
	}
	free(fds);
	cluster_snapshot_unref(app->shared.initial_snap); /* each worker holds its own */
	app->shared.initial_snap = NULL;
	return 0;
}

/* The control loop and its signal handlers. */
static int stage_control_loop(struct app *app)
{
	int rc = uv_loop_init(&app->loop);
	if (rc < 0) {
		log_error("main", "event loop: %s", uv_strerror(rc));
		return rc;
	}
	app->loop_ready = true;
	for (size_t i = 0; i < APP_NSIGNALS; i++) {
		rc = uv_signal_init(&app->loop, &app->sigs[i]);
		if (rc < 0) {
			log_error("main", "signal %s: %s", strsignal(app_signums[i]), uv_strerror(rc));
			return rc;
		}
		app->nsigs++;
		app->sigs[i].data = app;
		rc = uv_signal_start(&app->sigs[i], on_signal, app_signums[i]);
		if (rc < 0) {
			log_error("main", "signal %s: %s", strsignal(app_signums[i]), uv_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* The source of cluster data: the snapshot file (loaded already), the API
 * watch, or nothing (a warning). */
static int stage_cluster_source(struct app *app)
{
	const struct config *cfg = &app->cfg;
	char err[512] = "";
	if (cfg->kube_snapshot)
		return 0;
	if (!cfg->kube_api && !cfg->kubeconfig) {
		log_warn("main", "no --kube-snapshot, no --kube-api and not in a cluster: the %s zone "
			 "is %s until one is configured", cfg->cluster_domain,
			 cfg->has_cluster_fallback ? "forwarded to --cluster-fallback" : "answered SERVFAIL");
		return 0;
	}
	struct k8s_watch_config wc = {
		.api_url = cfg->kube_api,
		.token_file = cfg->kube_token_file,
		.ca_file = cfg->kube_ca_file,
		.kubeconfig = cfg->kubeconfig,
		.max_event_bytes = K8S_WATCH_MAX_EVENT_BYTES_DEFAULT,
		.pod_node = cfg->autopath ? cfg->node_name : NULL,
		.pods = app->pods,
		.pods_cb = on_pods_publish,
	};
	if (k8s_watch_start(&app->loop, &wc, app->store, app->publisher, on_watch_publish, app,
			    &app->watch, err, sizeof(err)) < 0) {
		log_error("main", "kubernetes: %s", err);
		return -EINVAL;
	}
	if (app->warm_cfg.run_dir &&
	    warm_start_new(&app->loop, &app->warm_cfg, app->store, watch_progress, app, &app->warm) < 0)
		log_warn("warm-start", "out of memory: the warm-start file is not saved");
	return 0;
}

/* --metrics and --health. */
static int stage_admin(struct app *app)
{
	const struct config *cfg = &app->cfg;
	if (!cfg->has_metrics && !cfg->has_health)
		return 0;
	struct admin_handlers h = { .metrics = render_metrics, .ready = is_ready, .arg = app };
	int rc = admin_start(&app->loop, cfg->has_metrics ? (const struct sockaddr *)&cfg->metrics.sa : NULL,
			     cfg->has_health ? (const struct sockaddr *)&cfg->health.sa : NULL,
			     (const struct sockaddr *)&cfg->listen[0].sa, &h, &app->admin);
	if (rc < 0) {
		log_error("main", "http endpoints (--metrics %s, --health %s): %s",
			  cfg->has_metrics ? cfg->metrics.text : "none",
			  cfg->has_health ? cfg->health.text : "none", uv_strerror(rc));
		return rc;
	}
	return 0;
}

/* Everything is bound: keep no privilege (see privdrop.h). */
static int stage_privdrop(struct app *app)
{
	char what[160] = "", perr[256] = "";
	if (privdrop_apply(app->cfg.user, what, sizeof(what), perr, sizeof(perr)) < 0) {
		log_error("main", "%s", perr);
		return -EPERM;
	}
	log_info("main", "%s", what);
	return 0;
}

static void log_serving(const struct config *cfg)
{
	log_info("main", "nodedns %s serving on %s%s (%u workers), upstream %s%s over %s",
		 NODEDNS_VERSION, cfg->listen[0].text, cfg->nlisten > 1 ? " and more" : "", cfg->threads,
		 cfg->nupstream ? cfg->upstream[0].text : "none", cfg->nupstream > 1 ? " and more" : "",
		 cfg->upstream_proto == CONFIG_PROTO_UDP ? "udp" : "tcp");
}

/* Serve until SIGTERM/SIGINT, with the workers running. @return the exit status. */
static int serve(struct app *app)
{
	int exit_code = 1;
	if (stage_control_loop(app) == 0 && stage_cluster_source(app) == 0 &&
	    stage_admin(app) == 0 && stage_privdrop(app) == 0) {
		log_serving(&app->cfg);
		exit_code = 0;
		supervisor_child_ready(&app->sup);
	} else {
		shutdown_app(app);
	}
	if (app->loop_ready)
		uv_run(&app->loop, UV_RUN_DEFAULT);
	for (unsigned i = 0; i < app->nworkers; i++)
		worker_join(&app->workers[i]);
	if (app->loop_ready)
		uv_loop_close(&app->loop);
	log_info("main", "stopped");
	return exit_code;
}

/* The resolver: shared state, sockets, workers, then serve. @return the exit status. */
static int run_resolver(struct app *app)
{
	if (stage_shared_state(app) < 0)
		return 1;
	worker_fds *fds = stage_sockets(app);
	if (!fds)
		return 1;
	if (stage_initial_snapshot(app) < 0) {
		release_fds(app, fds, 0);
		return 1;
	}
	if (stage_workers(app, fds) < 0)
		return 1;
	return serve(app);
}

static void teardown(struct app *app)
{
	cluster_snapshot_unref(app->shared.initial_snap);
	cluster_publisher_free(app->publisher);
	k8s_store_free(app->store);
	pod_set_free(app->pods);
	cache_free(app->cache);
	free(app->workers);
	free(app->default_list);
	free(app->fallback_list);
	for (size_t i = 0; i < CONFIG_MAX_STUBS; i++)
		free(app->stub_lists[i]);
	free(app->servers);
	supervisor_child_detach(&app->sup);
	config_free(&app->cfg);
}

int main(int argc, char **argv)
{
	static struct app app_storage;
	struct app *app = &app_storage;

	int rc = stage_config(app, argc, argv);
	if (rc >= 0)
		return rc;
	if (app->cfg.check_config)
		return stage_check_config(app);
	log_setup((enum log_level)app->cfg.log_level, app->cfg.log_json);
	signal(SIGPIPE, SIG_IGN);
	rc = main_node_setup_or_resolver(&app->cfg, argv, &app->sup, &app->inherited_fds);
	if (rc < 0)
		rc = run_resolver(app);
	teardown(app);
	return rc;
}
