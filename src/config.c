/* src/config.c - command line and JSON config file -> struct config: defaults, argv, cross-option checks. */
#include "nodedns/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/dns/cache.h"
#include "nodedns/dns/query.h"
#include "nodedns/io/server.h"
#include "nodedns/io/upstream.h"
#include "nodedns/io/warm_start.h"
#include "nodedns/util/log.h"

/* getopt_long returns OPT_VAL_BASE + id, clear of '?' and ':'. */
#define OPT_VAL_BASE 256

void config_set_err(struct pctx *pc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pc->err, pc->errlen, fmt, ap);
	va_end(ap);
}

/* See config_internal.h. */
const char *config_shown(const char *s, char buf[SHOWN_MAX_CHARS + 4])
{
	size_t i = 0;
	for (; i < SHOWN_MAX_CHARS && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (s[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* ------------------------------------------------------------- defaults */

static int set_defaults(struct config *cfg)
{
	cfg->threads = config_default_threads(DEFAULT_CGROUP_ROOT, DEFAULT_SELF_CGROUP,
					      sysconf(_SC_NPROCESSORS_ONLN));
	cfg->tcp_max_clients = SERVER_TCP_MAX_CLIENTS_DEFAULT;
	cfg->tcp_idle_timeout_ms = SERVER_TCP_IDLE_TIMEOUT_MS_DEFAULT;
	cfg->tcp_max_inflight = SERVER_TCP_MAX_INFLIGHT_DEFAULT;

	cfg->upstream_proto = CONFIG_PROTO_TCP;
	cfg->upstream_timeout_ms = UPSTREAM_TIMEOUT_MS_DEFAULT;
	cfg->max_inflight = UPSTREAM_MAX_INFLIGHT_DEFAULT;
	cfg->max_waiters = QUERY_MAX_WAITERS_DEFAULT;

	cfg->cache_memory_bytes = CACHE_MEMORY_BYTES_DEFAULT;
	cfg->min_ttl_s = QUERY_MIN_TTL_S_DEFAULT;
	cfg->max_ttl_s = QUERY_MAX_TTL_S_DEFAULT;
	cfg->neg_ttl_s = QUERY_NEG_TTL_S_DEFAULT;
	cfg->serve_stale_s = QUERY_SERVE_STALE_S_DEFAULT;
	cfg->prefetch = true;

	strcpy(cfg->cluster_domain, CLUSTER_DOMAIN_DEFAULT);
	cfg->cluster_ttl_s = CLUSTER_TTL_S_DEFAULT;
	cfg->pods = CONFIG_PODS_INSECURE;
	cfg->warm_start_max_age_s = WARM_START_MAX_AGE_S_DEFAULT;
	const char *rd = getenv("NODEDNS_RUN_DIR"); /* the supervisor's setting */
	cfg->run_dir = strdup(rd && rd[0] == '/' ? rd : DEFAULT_RUN_DIR);
	if (!cfg->run_dir)
		return -ENOMEM;

	if (netaddr_parse(DEFAULT_METRICS, METRICS_PORT, &cfg->metrics) < 0)
		return -EINVAL;
	cfg->has_metrics = true;
	cfg->log_level = LOGL_INFO;

	cfg->kube_token_file = strdup(DEFAULT_TOKEN_FILE);
	cfg->kube_ca_file = strdup(DEFAULT_CA_FILE);
	if (!cfg->kube_token_file || !cfg->kube_ca_file)
		return -ENOMEM;
	return 0;
}

/* In-cluster API server, as client-go's InClusterConfig finds it. */
static int default_kube_api(struct config *cfg)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host || !port || !*port)
		return 0;
	bool v6 = strchr(host, ':') != NULL;
	size_t len = strlen(host) + strlen(port) + sizeof("https://[]:");
	char *url = malloc(len);
	if (!url)
		return -ENOMEM;
	snprintf(url, len, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port);
	cfg->kube_api = url;
	return 0;
}

static bool is_nodelocal(const struct netaddr *a)
{
	struct in_addr nl;
	if (a->sa.ss_family != AF_INET || inet_pton(AF_INET, NODELOCAL_IP, &nl) != 1)
		return false;
	return ((const struct sockaddr_in *)&a->sa)->sin_addr.s_addr == nl.s_addr;
}

/* The nameservers of resolv.conf, minus our own listen addresses, the
 * node-local DNS address and duplicates. A missing file leaves none. */
static void resolv_conf_upstreams(struct config *cfg, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;

	cfg->upstream_from_resolv_conf = true;
	if (!f)
		return;
	while (cfg->nupstream < CONFIG_MAX_UPSTREAMS && getline(&line, &cap, f) != -1) {
		char *save = NULL;
		char *kw = strtok_r(line, " \t\r\n", &save);
		if (!kw || strcmp(kw, "nameserver") != 0)
			continue;
		char *ip = strtok_r(NULL, " \t\r\n", &save);
		if (!ip)
			continue;
		char *scope = strchr(ip, '%');
		if (scope)
			*scope = '\0';
		struct netaddr a;
		if (netaddr_parse(ip, DNS_PORT, &a) < 0)
			continue;
		if (is_nodelocal(&a) || config_addr_in(&a, cfg->listen, cfg->nlisten) ||
		    config_addr_in(&a, cfg->upstream, cfg->nupstream))
			continue;
		cfg->upstream[cfg->nupstream++] = a;
	}
	free(line);
	fclose(f);
}

/* The search list of resolv.conf ("search" or "domain", the last one wins,
 * as in glibc), for --autopath without --autopath-search. */
static void resolv_conf_search(struct config *cfg, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	if (!f)
		return;
	while (getline(&line, &cap, f) != -1) {
		char *save = NULL;
		char *kw = strtok_r(line, " \t\r\n", &save);
		if (!kw || (strcmp(kw, "search") != 0 && strcmp(kw, "domain") != 0))
			continue;
		cfg->nautopath_search = 0;
		char *d;
		while (cfg->nautopath_search < CONFIG_MAX_AUTOPATH_SEARCH &&
		       (d = strtok_r(NULL, " \t\r\n", &save))) {
			size_t n = strlen(d);
			if (n > 0 && d[n - 1] == '.')
				d[--n] = '\0';
			if (n == 0 || n > 253)
				continue;
			for (size_t i = 0; i < n; i++)
				d[i] = (char)tolower((unsigned char)d[i]);
			snprintf(cfg->autopath_search[cfg->nautopath_search++], 256, "%s", d);
		}
	}
	free(line);
	fclose(f);
}

/* --autopath: the node name (from $NODE_NAME when not given) and the node's
 * search domains (from resolv.conf when not given). */
static int finish_autopath(struct pctx *pc, const char *resolv_conf)
{
	struct config *cfg = pc->cfg;
	if (!cfg->autopath)
		return 0;
	if (cfg->kube_snapshot) {
		config_set_err(pc, "--autopath: needs the API server (a --kube-snapshot has no pods)");
		return -1;
	}
	if (!cfg->node_name) {
		const char *env = getenv("NODE_NAME");
		char why[256];
		if (!env || !*env) {
			config_set_err(pc, "--autopath: needs the node name (--node-name or NODE_NAME)");
			return -1;
		}
		if (config_apply(pc, &config_opts[OPT_NODE_NAME], env, false, why, sizeof(why)) < 0) {
			config_set_err(pc, "NODE_NAME: %s", why);
			return -1;
		}
	}
	if (!cfg->autopath_search_set)
		resolv_conf_search(cfg, resolv_conf ? resolv_conf : DEFAULT_RESOLV_CONF);
	return 0;
}

/* Cross-option checks and the defaults that depend on other options. */
static int finish(struct pctx *pc, const char *resolv_conf)
{
	struct config *cfg = pc->cfg;

	if (cfg->nlisten == 0) {
		if (netaddr_parse(DEFAULT_LISTEN, DNS_PORT, &cfg->listen[0]) < 0)
			return -1;
		cfg->nlisten = 1;
	}
	if (cfg->min_ttl_s > cfg->max_ttl_s) {
		config_set_err(pc, "--min-ttl: must not be greater than --max-ttl (%u > %u)",
			cfg->min_ttl_s, cfg->max_ttl_s);
		return -1;
	}
	for (size_t i = 0; i < cfg->nupstream; i++) {
		if (config_addr_in(&cfg->upstream[i], cfg->listen, cfg->nlisten)) {
			config_set_err(pc, "--upstream: %s is one of our --listen addresses",
				cfg->upstream[i].text);
			return -1;
		}
	}
	if (cfg->nupstream == 0)
		resolv_conf_upstreams(cfg, resolv_conf ? resolv_conf : DEFAULT_RESOLV_CONF);
	if (!pc->health_set) {
		cfg->health = cfg->listen[0];
		netaddr_set_port(&cfg->health, HEALTH_PORT);
		cfg->has_health = true;
	}
	if (!cfg->kube_api && !cfg->kubeconfig && !cfg->kube_snapshot &&
	    default_kube_api(cfg) < 0) {
		config_set_err(pc, "out of memory");
		return -1;
	}
	return finish_autopath(pc, resolv_conf);
}

/* ---------------------------------------------------------- command line */

/* Collect the options of argv into @p items (no values applied yet). */
static int scan_argv(struct pctx *pc, int argc, char **argv, struct cli_item *items,
		     size_t *nitems, const char **config_file, bool *help, bool *version)
{
	struct option lo[OPT_COUNT + 1];
	char sb[SHOWN_MAX_CHARS + 4];

	for (int i = 0; i < OPT_COUNT; i++) {
		lo[i].name = config_opts[i].name;
		lo[i].has_arg = config_opts[i].kind == K_FLAG ? no_argument : required_argument;
		lo[i].flag = NULL;
		lo[i].val = OPT_VAL_BASE + i;
	}
	memset(&lo[OPT_COUNT], 0, sizeof(lo[OPT_COUNT]));

	/* optind = 0 makes glibc re-initialise getopt completely, so
	 * config_parse() can run many times in one process. "+": stop at the
	 * first non-option instead of permuting argv; ":": report a missing
	 * value as ':' and print nothing. */
	optind = 0;
	opterr = 0;
	*nitems = 0;
	for (;;) {
		int cur = optind > 0 ? optind : 1;
		const char *arg = cur < argc ? argv[cur] : "";
		int c = getopt_long(argc, argv, "+:", lo, NULL);
		if (c == -1)
			break;
		if (c == ':' && optopt >= OPT_VAL_BASE) {
			config_set_err(pc, "--%s: missing value", config_opts[optopt - OPT_VAL_BASE].name);
			return -1;
		}
		if (c == '?' && optopt >= OPT_VAL_BASE) {
			config_set_err(pc, "--%s: takes no value", config_opts[optopt - OPT_VAL_BASE].name);
			return -1;
		}
		if (c < OPT_VAL_BASE || c >= OPT_VAL_BASE + OPT_COUNT) {
			size_t n = strcspn(arg, "=");
			char name[SHOWN_MAX_CHARS + 1];
			snprintf(name, sizeof(name), "%.*s", (int)(n < SHOWN_MAX_CHARS ? n : SHOWN_MAX_CHARS), arg);
			config_set_err(pc, "unknown option '%s' (see --help)", config_shown(name, sb));
			return -1;
		}
		const struct opt_def *d = &config_opts[c - OPT_VAL_BASE];
		/* getopt_long accepts unambiguous prefixes; we want exact names
		 * so that adding an option never breaks a deployed command line. */
		size_t nlen = strlen(d->name);
		if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, d->name, nlen) != 0 ||
		    (arg[2 + nlen] != '\0' && arg[2 + nlen] != '=')) {
			size_t n = strcspn(arg, "=");
			char name[SHOWN_MAX_CHARS + 1];
			snprintf(name, sizeof(name), "%.*s", (int)(n < SHOWN_MAX_CHARS ? n : SHOWN_MAX_CHARS), arg);
			config_set_err(pc, "unknown option '%s' (did you mean --%s?)", config_shown(name, sb),
				d->name);
			return -1;
		}
		if (d->id == OPT_HELP)
			*help = true;
		else if (d->id == OPT_VERSION)
			*version = true;
		else if (d->id == OPT_CONFIG)
			*config_file = optarg;
		else
			items[(*nitems)++] = (struct cli_item){ d, d->kind == K_FLAG ? NULL : optarg };
	}
	if (optind < argc) {
		config_set_err(pc, "unexpected argument '%s' (options start with --)",
			config_shown(argv[optind], sb));
		return -1;
	}
	return 0;
}

static int apply_cli(struct pctx *pc, const struct cli_item *items, size_t nitems)
{
	char why[WHY_LEN];
	for (size_t i = 0; i < nitems; i++) {
		const struct opt_def *d = items[i].d;
		/* A repeatable option on the command line replaces the list
		 * of the config file; repetitions on the command line add up. */
		if ((d->flags & F_REPEAT) && !pc->cli_seen[d->id]) {
			pc->cli_seen[d->id] = true;
			config_reset_list(pc->cfg, d->id);
		}
		if (config_apply(pc, d, items[i].val, true, why, sizeof(why)) < 0) {
			config_set_err(pc, "--%s: %s", d->name, why);
			return -1;
		}
	}
	return 0;
}

enum config_result config_parse(struct config *cfg, int argc, char **argv,
				const char *resolv_conf, char *err, size_t errlen)
{
	char dummy[1];
	struct pctx pc;
	struct cli_item *items = NULL;
	size_t nitems = 0;
	const char *config_file = NULL;
	bool help = false, version = false;
	enum config_result res = CONFIG_ERROR;

	memset(cfg, 0, sizeof(*cfg));
	memset(&pc, 0, sizeof(pc));
	pc.cfg = cfg;
	pc.err = err && errlen ? err : dummy;
	pc.errlen = err && errlen ? errlen : sizeof(dummy);
	pc.err[0] = '\0';

	if (set_defaults(cfg) < 0) {
		config_set_err(&pc, "out of memory");
		return CONFIG_ERROR;
	}
	if (argc > 1) {
		items = calloc((size_t)argc, sizeof(*items));
		if (!items) {
			config_set_err(&pc, "out of memory");
			return CONFIG_ERROR;
		}
	}
	if (argc > 1 && scan_argv(&pc, argc, argv, items, &nitems, &config_file, &help,
				  &version) < 0)
		goto out;
	if (help) {
		config_usage();
		res = CONFIG_EXIT_OK;
		goto out;
	}
	if (version) {
		printf("nodedns %s\n", NODEDNS_VERSION);
		fflush(stdout);
		res = CONFIG_EXIT_OK;
		goto out;
	}
	if (config_file) {
		if (*config_file == '\0') {
			config_set_err(&pc, "--config: must not be empty");
			goto out;
		}
		if (!(cfg->config_file = strdup(config_file))) {
			config_set_err(&pc, "out of memory");
			goto out;
		}
		if (config_load_file(&pc, config_file) < 0)
			goto out;
	}
	if (apply_cli(&pc, items, nitems) < 0 || finish(&pc, resolv_conf) < 0)
		goto out;
	res = CONFIG_OK;
out:
	free(items);
	return res;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->config_file);
	free(cfg->kube_api);
	free(cfg->kube_token_file);
	free(cfg->kube_ca_file);
	free(cfg->kubeconfig);
	free(cfg->kube_snapshot);
	free(cfg->run_dir);
	cfg->run_dir = NULL;
	free(cfg->node_name);
	cfg->node_name = NULL;
	free(cfg->setup_interface);
	free(cfg->user);
	cfg->user = NULL;
	cfg->config_file = NULL;
	cfg->kube_api = cfg->kube_token_file = cfg->kube_ca_file = NULL;
	cfg->kubeconfig = cfg->kube_snapshot = NULL;
	cfg->setup_interface = NULL;
}
