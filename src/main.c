/* src/main.c - owns the process: config, cache, cluster store, workers, control loop.
 *
 * Start-up order: parse the config (exit 2 on bad input), build the shared
 * state (upstream servers, cache, cluster store), bind every socket for every
 * worker (exit 1 when that fails), start the workers, then run the control
 * loop: signals, the HTTP endpoints, the Kubernetes watch or the snapshot
 * file. Teardown is the reverse, on SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "nodedns/io/admin.h"
#include "nodedns/dns/cache.h"
#include "nodedns/cluster/cluster.h"
#include "nodedns/config.h"
#include "nodedns/io/k8s_watch.h"
#include "nodedns/util/log.h"
#include "nodedns/util/metrics.h"
#include "nodedns/node/privdrop.h"
#include "nodedns/dns/query.h"
#include "nodedns/io/server.h"
#include "nodedns/node/supervisor.h"
#include "nodedns/io/upstream.h"
#include "nodedns/io/worker.h"

#define CACHE_SHARDS 16
#define SERVFAIL_TTL_S 2

struct app {
	int argc;
	char **argv;
	struct config cfg;
	uv_loop_t loop;
	uv_signal_t sig_term, sig_int, sig_hup;
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
	struct k8s_watch *watch;
	bool snapshot_loaded;
	struct admin *admin;
	char ident[256];
	struct supervisor_child sup; /* set when a node-setup supervisor runs us */
	size_t inherited_fds;        /* listening sockets the supervisor handed us */
};

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

static uint64_t ld(const _Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static int64_t ldi(const _Atomic int64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* Sum one uint64 field of every worker's query stats. */
#define SUM_Q(app, field)                                                                  \
	({                                                                                 \
		uint64_t _s = 0;                                                           \
		for (unsigned _i = 0; _i < (app)->nworkers; _i++)                          \
			_s += ld(&query_worker_stats((app)->workers[_i].qw)->field);       \
		_s;                                                                        \
	})
#define SUM_S(app, field)                                                                  \
	({                                                                                 \
		uint64_t _s = 0;                                                           \
		for (unsigned _i = 0; _i < (app)->nworkers; _i++)                          \
			_s += ld(&server_stats((app)->workers[_i].server)->field);         \
		_s;                                                                        \
	})

static void counter(struct mbuf *b, const char *name, const char *help, uint64_t v)
{
	metrics_header(b, name, "counter", help);
	metrics_u64(b, name, NULL, v);
}

static void gauge(struct mbuf *b, const char *name, const char *help, int64_t v)
{
	metrics_header(b, name, "gauge", help);
	metrics_i64(b, name, NULL, v);
}

static void render_metrics(void *arg, struct mbuf *b)
{
	struct app *app = arg;
	char lab[160];

	metrics_header(b, "nodedns_requests_total", "counter", "DNS queries received, by transport.");
	metrics_u64(b, "nodedns_requests_total", "proto=\"udp\"", SUM_Q(app, requests[0]));
	metrics_u64(b, "nodedns_requests_total", "proto=\"tcp\"", SUM_Q(app, requests[1]));
	metrics_header(b, "nodedns_requests_type_total", "counter", "DNS queries by query type.");
	for (unsigned t = 0; t < 8; t++) {
		snprintf(lab, sizeof(lab), "type=\"%s\"", query_type_labels[t]);
		metrics_u64(b, "nodedns_requests_type_total", lab, SUM_Q(app, by_type[t]));
	}
	metrics_header(b, "nodedns_requests_zone_total", "counter",
		       "DNS queries by where they were answered from: the cluster zone or forwarding.");
	metrics_u64(b, "nodedns_requests_zone_total", "zone=\"cluster\"", SUM_Q(app, by_zone[0]));
	metrics_u64(b, "nodedns_requests_zone_total", "zone=\"forward\"", SUM_Q(app, by_zone[1]));
	metrics_header(b, "nodedns_responses_total", "counter", "DNS responses sent, by rcode.");
	for (unsigned r = 0; r < QUERY_RCODE_SLOTS; r++) {
		snprintf(lab, sizeof(lab), "rcode=\"%s\"", query_rcode_labels[r]);
		metrics_u64(b, "nodedns_responses_total", lab, SUM_Q(app, responses[r]));
	}
	counter(b, "nodedns_cluster_answers_total", "Answers from the cluster store.",
		SUM_Q(app, cluster_answers));
	counter(b, "nodedns_cache_answers_total", "Answers from the cache.", SUM_Q(app, cache_answers));
	counter(b, "nodedns_stale_answers_total", "Expired answers served because every upstream failed (RFC 8767).",
		SUM_Q(app, stale_answers));
	counter(b, "nodedns_coalesced_total", "Queries that joined an identical question already in flight.",
		SUM_Q(app, coalesced));
	counter(b, "nodedns_prefetches_total", "Cache entries refreshed before they expired.",
		SUM_Q(app, prefetches));
	counter(b, "nodedns_upstream_exhausted_total", "Queries answered SERVFAIL because every upstream failed.",
		SUM_Q(app, upstream_failures));
	counter(b, "nodedns_truncated_total", "UDP answers sent with TC=1.", SUM_Q(app, truncated));
	counter(b, "nodedns_cluster_fallback_total", "Cluster-zone queries forwarded to --cluster-fallback before the first sync.",
		SUM_Q(app, fallback_queries));
	counter(b, "nodedns_cluster_unsynced_servfail_total", "Cluster-zone queries answered SERVFAIL before the first sync.",
		SUM_Q(app, unsynced_servfail));
	metrics_header(b, "nodedns_dropped_total", "counter", "Queries dropped or refused by a bound, by reason.");
	metrics_u64(b, "nodedns_dropped_total", "reason=\"malformed\"", SUM_Q(app, dropped_malformed));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"waiters\"", SUM_Q(app, dropped_waiters));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"inflight\"", SUM_Q(app, dropped_inflight));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"acl\"", SUM_Q(app, refused_acl));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"udp_send_queue\"", SUM_S(app, udp_sends_dropped));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"tcp_clients\"", SUM_S(app, tcp_rejected));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"tcp_slow_reader\"", SUM_S(app, tcp_slow_closed));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"tcp_bad_frame\"", SUM_S(app, tcp_bad_frames));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"tcp_idle\"", SUM_S(app, tcp_idle_closed));
	metrics_u64(b, "nodedns_dropped_total", "reason=\"tcp_evicted\"", SUM_S(app, tcp_evicted));
	int64_t pending = 0, tcp_open = 0, inflight = 0;
	uint64_t up_dropped = 0;
	for (unsigned i = 0; i < app->nworkers; i++) {
		pending += ldi(&query_worker_stats(app->workers[i].qw)->pending);
		tcp_open += ldi(&server_stats(app->workers[i].server)->tcp_open);
		const struct upstream_worker_stats *us = upstream_worker_stats(app->workers[i].up);
		inflight += ldi(&us->inflight);
		up_dropped += ld(&us->dropped_inflight);
	}
	metrics_u64(b, "nodedns_dropped_total", "reason=\"upstream_inflight\"", up_dropped);
	gauge(b, "nodedns_pending_questions", "Distinct questions waiting for an upstream.", pending);
	gauge(b, "nodedns_upstream_inflight", "Upstream queries in flight.", inflight);
	gauge(b, "nodedns_tcp_connections", "Open client TCP connections.", tcp_open);
	counter(b, "nodedns_tcp_connections_total", "Client TCP connections accepted.",
		SUM_S(app, tcp_accepted));

	const struct cache_stats *cs = cache_stats(app->cache);
	counter(b, "nodedns_cache_hits_total", "Cache lookups that found a fresh entry.", ld(&cs->hits));
	counter(b, "nodedns_cache_misses_total", "Cache lookups that found nothing fresh.", ld(&cs->misses));
	counter(b, "nodedns_cache_stale_hits_total", "Stale entries served.", ld(&cs->stale_hits));
	counter(b, "nodedns_cache_inserts_total", "Entries stored.", ld(&cs->inserts));
	counter(b, "nodedns_cache_evictions_total", "Entries evicted to stay under --cache-memory.",
		ld(&cs->evictions));
	gauge(b, "nodedns_cache_entries", "Entries in the cache.", ldi(&cs->entries));
	gauge(b, "nodedns_cache_bytes", "Bytes used by the cache.", ldi(&cs->bytes));
	gauge(b, "nodedns_cache_max_bytes", "The cache's bound (--cache-memory).",
	      (int64_t)app->cfg.cache_memory_bytes);

	static const struct {
		const char *name, *help;
		size_t off;
	} ups[] = {
		{ "nodedns_upstream_requests_total", "Queries sent to an upstream (attempts).",
		  offsetof(struct upstream_stats, queries) },
		{ "nodedns_upstream_responses_total", "Matching replies from an upstream.",
		  offsetof(struct upstream_stats, replies) },
		{ "nodedns_upstream_tcp_connects_total", "TCP connections made to an upstream.",
		  offsetof(struct upstream_stats, tcp_connects) },
		{ "nodedns_upstream_tc_retries_total", "UDP replies with TC=1 retried over TCP.",
		  offsetof(struct upstream_stats, tc_retries) },
	};
	for (size_t k = 0; k < sizeof(ups) / sizeof(ups[0]); k++) {
		metrics_header(b, ups[k].name, "counter", ups[k].help);
		for (size_t i = 0; i < app->nservers; i++) {
			snprintf(lab, sizeof(lab), "upstream=\"%s\"", app->servers[i].name);
			metrics_u64(b, ups[k].name, lab,
				    ld((const _Atomic uint64_t *)((const char *)&app->servers[i].stats +
								  ups[k].off)));
		}
	}
	metrics_header(b, "nodedns_upstream_failures_total", "counter",
		       "Failed upstream attempts, by reason.");
	for (size_t i = 0; i < app->nservers; i++) {
		const struct upstream_stats *st = &app->servers[i].stats;
		snprintf(lab, sizeof(lab), "upstream=\"%s\",reason=\"timeout\"", app->servers[i].name);
		metrics_u64(b, "nodedns_upstream_failures_total", lab, ld(&st->timeouts));
		snprintf(lab, sizeof(lab), "upstream=\"%s\",reason=\"connection\"", app->servers[i].name);
		metrics_u64(b, "nodedns_upstream_failures_total", lab, ld(&st->conn_failures));
		snprintf(lab, sizeof(lab), "upstream=\"%s\",reason=\"bad_reply\"", app->servers[i].name);
		metrics_u64(b, "nodedns_upstream_failures_total", lab, ld(&st->bad_replies));
	}
	metrics_header(b, "nodedns_upstream_connections", "gauge", "Open TCP connections to an upstream.");
	for (size_t i = 0; i < app->nservers; i++) {
		snprintf(lab, sizeof(lab), "upstream=\"%s\"", app->servers[i].name);
		metrics_i64(b, "nodedns_upstream_connections", lab, ldi(&app->servers[i].stats.open_conns));
	}
	metrics_header(b, "nodedns_upstream_latency_seconds", "histogram",
		       "Time from sending a query to its matching reply, per upstream.");
	for (size_t i = 0; i < app->nservers; i++) {
		snprintf(lab, sizeof(lab), "upstream=\"%s\"", app->servers[i].name);
		metrics_histogram(b, "nodedns_upstream_latency_seconds", lab,
				  &app->servers[i].stats.latency);
	}

	struct k8s_store_stats ks;
	k8s_store_get_stats(app->store, &ks);
	metrics_header(b, "nodedns_cluster_objects", "gauge", "Objects in the cluster store, by kind.");
	metrics_u64(b, "nodedns_cluster_objects", "kind=\"service\"", ks.services);
	metrics_u64(b, "nodedns_cluster_objects", "kind=\"endpointslice\"", ks.endpointslices);
	metrics_u64(b, "nodedns_cluster_objects", "kind=\"namespace\"", ks.namespaces);
	counter(b, "nodedns_cluster_events_total", "Object changes applied to the store.", ks.events_applied);
	counter(b, "nodedns_cluster_events_rejected_total", "Malformed objects rejected.", ks.events_rejected);
	counter(b, "nodedns_cluster_snapshots_total", "Snapshots published to the workers.",
		ks.snapshots_published);
	bool synced = app->snapshot_loaded;
	if (app->watch) {
		const struct k8s_watch_stats *w = k8s_watch_stats(app->watch);
		synced = atomic_load(&w->synced) != 0;
		counter(b, "nodedns_watch_restarts_total", "Watch streams restarted.", ld(&w->watch_restarts));
		counter(b, "nodedns_watch_relists_total", "Relists after 410 Gone.", ld(&w->relists_410));
		counter(b, "nodedns_watch_events_total", "Watch events received.", ld(&w->events));
		counter(b, "nodedns_watch_errors_total", "API errors (HTTP, TLS, transport).", ld(&w->errors));
		counter(b, "nodedns_watch_throttled_total", "429 responses from the API.", ld(&w->throttled_429));
		counter(b, "nodedns_watch_unauthorized_total", "401 responses from the API.",
			ld(&w->unauthorized_401));
		counter(b, "nodedns_watch_dropped_events_total", "Watch events over the size bound or malformed.",
			ld(&w->oversized_events) + ld(&w->bad_events));
	}
	gauge(b, "nodedns_cluster_synced", "1 once the cluster store has synced (or a snapshot is loaded).",
	      synced ? 1 : 0);
	if (app->admin) {
		const struct admin_stats *as = admin_stats(app->admin);
		counter(b, "nodedns_health_failures_total", "Failed /health checks.", ld(&as->health_failures));
	}
	gauge(b, "nodedns_workers", "Worker threads.", app->nworkers);
	supervisor_child_render_metrics(&app->sup, b);
}

static bool is_ready(void *arg)
{
	struct app *app = arg;
	if (app->snapshot_loaded)
		return true;
	return app->watch && atomic_load(&k8s_watch_stats(app->watch)->synced) != 0;
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

static void on_watch_publish(void *arg, struct cluster_snapshot *snap)
{
	publish(arg, snap);
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
	struct cluster_snapshot *snap = k8s_store_publish(app->store);
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
	k8s_watch_close(app->watch);
	app->watch = NULL;
	uv_close((uv_handle_t *)&app->sig_term, on_closed_stop);
	uv_close((uv_handle_t *)&app->sig_int, on_closed_stop);
	uv_close((uv_handle_t *)&app->sig_hup, on_closed_stop);
}

static void reload(struct app *app)
{
	struct config next;
	memset(&next, 0, sizeof(next));
	char err[512] = "";
	enum config_result r = config_parse(&next, app->argc, app->argv, "/etc/resolv.conf", err,
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

/* ---------------------------------------------------------- node setup */

static int listen_to_netsetup(const struct netaddr *c, struct netsetup_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (c->sa.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&c->sa;
		a->family = AF_INET;
		memcpy(a->ip, &in->sin_addr, 4);
		a->port = ntohs(in->sin_port);
		return 0;
	}
	if (c->sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&c->sa;
		a->family = AF_INET6;
		memcpy(a->ip, &in6->sin6_addr, 16);
		a->port = ntohs(in6->sin6_port);
		return 0;
	}
	return -EINVAL;
}

/*
 * With --setup-interface or --setup-iptables the process the operator
 * started becomes the supervisor (src/supervisor.c): it owns the node setup
 * and runs the resolver as its child, which comes back through here with
 * NODEDNS_SUPERVISED=1 and serves.
 * @return -1 to go on as the resolver, else the exit status of the process.
 */
static int node_setup_or_resolver(struct app *app)
{
	const struct config *cfg = &app->cfg;
	int rc = supervisor_child_attach(&app->sup);
	if (rc < 0) {
		log_error("main", "the node setup supervisor is gone: exiting");
		return 1;
	}
	if (rc == 1) {
		const char *n = getenv(SUPERVISOR_LISTEN_FDS_ENV);
		app->inherited_fds = n ? strtoul(n, NULL, 10) : 0;
		return -1;
	}
	if (!cfg->setup_interface && !cfg->setup_iptables)
		return -1;
	struct supervisor_config sc;
	char err[256] = "";
	if (supervisor_config_init(&sc, err, sizeof(err)) < 0) {
		fprintf(stderr, "nodedns: %s\n", err);
		return 2;
	}
	sc.net.ifname = cfg->setup_interface;
	sc.net.iptables = cfg->setup_iptables;
	for (size_t i = 0; i < cfg->nlisten && sc.net.naddrs < NETSETUP_MAX_ADDRS; i++)
		if (listen_to_netsetup(&cfg->listen[i], &sc.net.addrs[sc.net.naddrs]) == 0)
			sc.net.naddrs++;
	struct netsetup_addr health;
	if (cfg->has_health && listen_to_netsetup(&cfg->health, &health) == 0)
		sc.net.health_port = health.port;

	/* The supervisor holds the listening sockets for every resolver it
	 * starts (see supervisor.h): bound here, once, in the order the
	 * resolver's workers take them. */
	size_t per = cfg->nlisten * 2, n = cfg->threads * per;
	int *fds = calloc(n, sizeof(*fds));
	if (!fds) {
		fprintf(stderr, "nodedns: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		struct server_fds one[CONFIG_MAX_LISTEN];
		if (server_bind(cfg->listen, cfg->nlisten, one, err, sizeof(err)) < 0) {
			fprintf(stderr, "nodedns: %s\n", err);
			for (size_t k = 0; k < i * per; k++)
				close(fds[k]);
			free(fds);
			return 1;
		}
		for (size_t j = 0; j < cfg->nlisten; j++) {
			fds[i * per + 2 * j] = one[j].udp;
			fds[i * per + 2 * j + 1] = one[j].tcp;
		}
	}
	sc.listen_fds = fds;
	sc.nlisten_fds = n;
	int status = supervisor_run(&sc, app->argv);
	for (size_t k = 0; k < n; k++)
		close(fds[k]);
	free(fds);
	return status;
}

/* Take the sockets a supervisor bound for worker @p worker (see
 * node_setup_or_resolver), after checking each is what --listen asks for. */
static int adopt_fds(const struct app *app, unsigned worker, struct server_fds *out, char *err,
		     size_t errlen)
{
	const struct config *cfg = &app->cfg;
	if (app->inherited_fds != (size_t)cfg->threads * cfg->nlisten * 2) {
		snprintf(err, errlen, "the supervisor handed over %zu sockets, %u expected",
			 app->inherited_fds, cfg->threads * (unsigned)cfg->nlisten * 2);
		return -EINVAL;
	}
	for (size_t j = 0; j < cfg->nlisten; j++) {
		int pair[2];
		for (int k = 0; k < 2; k++) {
			int fd = SUPERVISOR_LISTEN_FD_BASE + (int)((worker * cfg->nlisten + j) * 2) + k;
			int type = 0;
			socklen_t tl = sizeof(type);
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
			    type != (k ? SOCK_STREAM : SOCK_DGRAM) ||
			    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
			    sl != cfg->listen[j].salen || memcmp(&ss, &cfg->listen[j].sa, sl) != 0) {
				snprintf(err, errlen, "inherited socket %d is not %s/%s", fd,
					 cfg->listen[j].text, k ? "tcp" : "udp");
				return -EINVAL;
			}
			fcntl(fd, F_SETFD, FD_CLOEXEC);
			pair[k] = fd;
		}
		out[j].udp = pair[0];
		out[j].tcp = pair[1];
	}
	return 0;
}

/* --------------------------------------------------------------- main */

static bool acl_allowed(const void *arg, const struct sockaddr *sa)
{
	return config_allowed(arg, sa);
}

int main(int argc, char **argv)
{
	static struct app app_storage;
	struct app *app = &app_storage;
	char err[512] = "";
	int exit_code = 1;

	app->argc = argc;
	app->argv = argv;
	enum config_result cr = config_parse(&app->cfg, argc, argv, "/etc/resolv.conf", err,
					     sizeof(err));
	if (cr == CONFIG_EXIT_OK) {
		config_free(&app->cfg);
		return 0;
	}
	if (cr != CONFIG_OK) {
		fprintf(stderr, "nodedns: %s\n", err);
		config_free(&app->cfg);
		return 2;
	}
	const struct config *cfg = &app->cfg;
	log_setup((enum log_level)cfg->log_level, cfg->log_json);
	signal(SIGPIPE, SIG_IGN);
	int sup_rc = node_setup_or_resolver(app);
	if (sup_rc >= 0) {
		config_free(&app->cfg);
		return sup_rc;
	}

	if (setup_forwarding(app) < 0) {
		log_error("main", "out of memory");
		goto out;
	}
	if (cfg->nupstream == 0)
		log_warn("main", "no upstream servers (none given and none usable in /etc/resolv.conf): "
			 "names outside the cluster zone get SERVFAIL");

	app->cache = cache_new(cfg->cache_memory_bytes, CACHE_SHARDS);
	struct cluster_config ccfg;
	memset(&ccfg, 0, sizeof(ccfg));
	snprintf(ccfg.domain, sizeof(ccfg.domain), "%s", cfg->cluster_domain);
	ccfg.ttl_s = cfg->cluster_ttl_s;
	ccfg.pods_insecure = cfg->pods == CONFIG_PODS_INSECURE;
	app->store = k8s_store_new(&ccfg);
	if (!app->cache || !app->store) {
		log_error("main", "out of memory");
		goto out;
	}
	if (gethostname(app->ident, sizeof(app->ident) - 1) < 0)
		snprintf(app->ident, sizeof(app->ident), "nodedns");

	struct query_env *env = &app->env;
	env->cache = app->cache;
	env->cluster = ccfg;
	env->upstreams = &app->default_group;
	env->fallback = cfg->has_cluster_fallback ? &app->fallback_group : NULL;
	env->stubs = app->stubs;
	env->nstubs = cfg->nstubs;
	env->ttl.min_ttl_s = cfg->min_ttl_s;
	env->ttl.max_ttl_s = cfg->max_ttl_s;
	env->ttl.neg_ttl_s = cfg->neg_ttl_s;
	env->ttl.servfail_ttl_s = SERVFAIL_TTL_S;
	env->serve_stale_s = cfg->serve_stale_s;
	env->prefetch = cfg->prefetch;
	env->max_waiters = cfg->max_waiters;
	atomic_store(&env->query_log, cfg->query_log);
	env->version = "nodedns " NODEDNS_VERSION;
	env->ident = app->ident;
	if (cfg->nallow) {
		env->allowed = acl_allowed;
		env->allowed_arg = cfg;
	}

	struct worker_shared *sh = &app->shared;
	sh->env = env;
	sh->server.tcp_max_clients = cfg->tcp_max_clients;
	sh->server.tcp_idle_timeout_ms = cfg->tcp_idle_timeout_ms;
	sh->server.tcp_max_inflight = cfg->tcp_max_inflight;
	sh->server.tcp_max_unsent_bytes = 256 * 1024;
	sh->server.udp_max_queued_sends = 4096;
	sh->upstream.proto = cfg->upstream_proto == CONFIG_PROTO_UDP ? UPSTREAM_PROTO_UDP : UPSTREAM_PROTO_TCP;
	sh->upstream.timeout_ms = cfg->upstream_timeout_ms;
	sh->upstream.conns_per_server = 2;
	sh->upstream.max_inflight_conn = 256;
	sh->upstream.max_inflight = cfg->max_inflight;

	/* Bind everything first, so a port in use fails the start cleanly. */
	app->workers = calloc(cfg->threads, sizeof(*app->workers));
	struct server_fds(*fds)[CONFIG_MAX_LISTEN] = calloc(cfg->threads, sizeof(*fds));
	if (!app->workers || !fds) {
		free(fds);
		log_error("main", "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		if ((app->inherited_fds ? adopt_fds(app, i, fds[i], err, sizeof(err))
					: server_bind(cfg->listen, cfg->nlisten, fds[i], err, sizeof(err))) < 0) {
			log_error("main", "%s", err);
			for (unsigned j = 0; j < i; j++)
				server_close_fds(fds[j], cfg->nlisten);
			free(fds);
			goto out;
		}
	}
	/* A snapshot file is loaded before the first query can arrive. */
	if (cfg->kube_snapshot) {
		sh->initial_snap = read_snapshot_file(app);
		if (!sh->initial_snap) {
			for (unsigned j = 0; j < cfg->threads; j++)
				server_close_fds(fds[j], cfg->nlisten);
			free(fds);
			goto out;
		}
		app->snapshot_loaded = true;
	}
	for (unsigned i = 0; i < cfg->threads; i++) {
		int rc = worker_start(&app->workers[i], (int)i, sh, fds[i], cfg->nlisten);
		if (rc < 0) {
			log_error("main", "worker %u: %s", i, uv_strerror(rc));
			for (unsigned j = i + 1; j < cfg->threads; j++)
				server_close_fds(fds[j], cfg->nlisten);
			free(fds);
			shutdown_app(app);
			for (unsigned j = 0; j < i; j++)
				worker_join(&app->workers[j]);
			goto out;
		}
		app->nworkers++;
	}
	free(fds);

	uv_loop_init(&app->loop);
	app->sig_term.data = app->sig_int.data = app->sig_hup.data = app;
	uv_signal_init(&app->loop, &app->sig_term);
	uv_signal_init(&app->loop, &app->sig_int);
	uv_signal_init(&app->loop, &app->sig_hup);
	uv_signal_start(&app->sig_term, on_signal, SIGTERM);
	uv_signal_start(&app->sig_int, on_signal, SIGINT);
	uv_signal_start(&app->sig_hup, on_signal, SIGHUP);

	cluster_snapshot_unref(sh->initial_snap); /* each worker holds its own */
	sh->initial_snap = NULL;
	if (cfg->kube_snapshot) {
		/* loaded above */
	} else if (cfg->kube_api || cfg->kubeconfig) {
		struct k8s_watch_config wc = {
			.api_url = cfg->kube_api,
			.token_file = cfg->kube_token_file,
			.ca_file = cfg->kube_ca_file,
			.kubeconfig = cfg->kubeconfig,
			.max_event_bytes = 4u << 20,
		};
		if (k8s_watch_start(&app->loop, &wc, app->store, on_watch_publish, app, &app->watch,
				    err, sizeof(err)) < 0) {
			log_error("main", "kubernetes: %s", err);
			goto stop;
		}
	} else {
		log_warn("main", "no --kube-snapshot, no --kube-api and not in a cluster: the %s zone "
			 "is %s until one is configured", cfg->cluster_domain,
			 cfg->has_cluster_fallback ? "forwarded to --cluster-fallback" : "answered SERVFAIL");
	}

	if (cfg->has_metrics || cfg->has_health) {
		struct admin_handlers h = { .metrics = render_metrics, .ready = is_ready, .arg = app };
		int rc = admin_start(&app->loop, cfg->has_metrics ? (const struct sockaddr *)&cfg->metrics.sa : NULL,
				     cfg->has_health ? (const struct sockaddr *)&cfg->health.sa : NULL,
				     (const struct sockaddr *)&cfg->listen[0].sa, &h, &app->admin);
		if (rc < 0) {
			log_error("main", "http endpoints (--metrics %s, --health %s): %s",
				  cfg->has_metrics ? cfg->metrics.text : "none",
				  cfg->has_health ? cfg->health.text : "none", uv_strerror(rc));
			goto stop;
		}
	}

	/* Everything is bound: keep no privilege (see privdrop.h). */
	{
		char what[160] = "", perr[256] = "";
		if (privdrop_apply(cfg->user, what, sizeof(what), perr, sizeof(perr)) < 0) {
			log_error("main", "%s", perr);
			goto stop;
		}
		log_info("main", "%s", what);
	}
	log_info("main", "nodedns %s serving on %s%s (%u workers), upstream %s%s over %s",
		 NODEDNS_VERSION, cfg->listen[0].text, cfg->nlisten > 1 ? " and more" : "", cfg->threads,
		 cfg->nupstream ? cfg->upstream[0].text : "none", cfg->nupstream > 1 ? " and more" : "",
		 cfg->upstream_proto == CONFIG_PROTO_UDP ? "udp" : "tcp");
	exit_code = 0;
	supervisor_child_ready(&app->sup);
	uv_run(&app->loop, UV_RUN_DEFAULT);
	goto joined;
stop:
	exit_code = 1;
	shutdown_app(app);
	uv_run(&app->loop, UV_RUN_DEFAULT);
joined:
	for (unsigned i = 0; i < app->nworkers; i++)
		worker_join(&app->workers[i]);
	uv_loop_close(&app->loop);
	log_info("main", "stopped");
out:
	cluster_snapshot_unref(app->shared.initial_snap);
	k8s_store_free(app->store);
	cache_free(app->cache);
	free(app->workers);
	free(app->default_list);
	free(app->fallback_list);
	for (size_t i = 0; i < CONFIG_MAX_STUBS; i++)
		free(app->stub_lists[i]);
	free(app->servers);
	supervisor_child_detach(&app->sup);
	config_free(&app->cfg);
	return exit_code;
}
