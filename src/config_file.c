/* src/config_file.c - the option table, the JSON config file and --help. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config_internal.h"
#include "nodedns/cluster/cluster_zone.h"
#include "nodedns/dns/autopath.h"
#include "nodedns/dns/cache.h"
#include "nodedns/dns/query.h"
#include "nodedns/io/server.h"
#include "nodedns/io/upstream.h"
#include "nodedns/io/warm_start.h"

/* A default of a module's header as the text --help shows. */
#define STR_(x) #x
#define STR(x) STR_(x)

_Static_assert(CONFIG_MAX_AUTOPATH_SEARCH == AUTOPATH_MAX_SEARCH, "one bound on the node's search domains");
_Static_assert(CACHE_MEMORY_BYTES_DEFAULT == 64 * MIB, "--help shows --cache-memory's default as 64M");

/* See config_internal.h. */
const struct opt_def config_opts[OPT_COUNT] = {
	[OPT_LISTEN] = { "listen", OPT_LISTEN, K_STR, F_REPEAT, 0, 0, "Serving", "ADDR",
		"listen on ADDR (UDP and TCP); IPv4[:PORT] or [IPv6][:PORT]; repeatable",
		DEFAULT_LISTEN },
	[OPT_THREADS] = { "threads", OPT_THREADS, K_INT, 0, 1, CONFIG_MAX_THREADS, NULL, "N",
		"worker threads, each with its own sockets",
		"the cgroup CPU quota rounded up, at most the online CPUs and 8" },
	[OPT_ALLOW] = { "allow", OPT_ALLOW, K_STR, F_REPEAT, 0, 0, NULL, "CIDR",
		"answer only clients inside CIDR; repeatable", "all clients" },
	[OPT_TCP_MAX_CLIENTS] = { "tcp-max-clients", OPT_TCP_MAX_CLIENTS, K_INT, 0, 1, 1000000,
		NULL, "N", "TCP client connections per worker", STR(SERVER_TCP_MAX_CLIENTS_DEFAULT) },
	[OPT_TCP_IDLE_TIMEOUT] = { "tcp-idle-timeout", OPT_TCP_IDLE_TIMEOUT, K_INT, 0, 1, 3600000,
		NULL, "MS", "close idle TCP client connections after MS", STR(SERVER_TCP_IDLE_TIMEOUT_MS_DEFAULT) },
	[OPT_TCP_MAX_INFLIGHT] = { "tcp-max-inflight", OPT_TCP_MAX_INFLIGHT, K_INT, 0, 1, 65535,
		NULL, "N", "pipelined queries in flight per TCP connection", STR(SERVER_TCP_MAX_INFLIGHT_DEFAULT) },

	[OPT_UPSTREAM] = { "upstream", OPT_UPSTREAM, K_STR, F_REPEAT, 0, 0, "Forwarding", "ADDR",
		"upstream server IP[:PORT]; repeatable", "nameservers of /etc/resolv.conf" },
	[OPT_UPSTREAM_PROTO] = { "upstream-proto", OPT_UPSTREAM_PROTO, K_STR, 0, 0, 0, NULL,
		"tcp|udp", "transport to upstreams (udp retries over TCP on TC=1)", "tcp" },
	[OPT_UPSTREAM_TIMEOUT] = { "upstream-timeout", OPT_UPSTREAM_TIMEOUT, K_INT, 0, 50, 60000,
		NULL, "MS", "timeout per attempt, then the next upstream", STR(UPSTREAM_TIMEOUT_MS_DEFAULT) },
	[OPT_STUB] = { "stub", OPT_STUB, K_STR, F_REPEAT, 0, 0, NULL, "DOMAIN=ADDR[,ADDR...]",
		"forward DOMAIN and below to these servers; repeatable", NULL },
	[OPT_MAX_INFLIGHT] = { "max-inflight", OPT_MAX_INFLIGHT, K_INT, 0, 1, 1000000, NULL, "N",
		"upstream queries in flight per worker", STR(UPSTREAM_MAX_INFLIGHT_DEFAULT) },
	[OPT_MAX_WAITERS] = { "max-waiters", OPT_MAX_WAITERS, K_INT, 0, 1, 1000000, NULL, "N",
		"clients waiting on one question in flight", STR(QUERY_MAX_WAITERS_DEFAULT) },

	[OPT_CACHE_MEMORY] = { "cache-memory", OPT_CACHE_MEMORY, K_SIZE, 0, MIB, 64 * GIB, "Cache",
		"BYTES", "upper bound on cache memory (K/M/G suffixes)", "64M" },
	[OPT_MIN_TTL] = { "min-ttl", OPT_MIN_TTL, K_INT, 0, 0, 604800, NULL, "S",
		"lower clamp on cached positive TTLs", STR(QUERY_MIN_TTL_S_DEFAULT) },
	[OPT_MAX_TTL] = { "max-ttl", OPT_MAX_TTL, K_INT, 0, 0, 604800, NULL, "S",
		"upper clamp on cached positive TTLs", STR(QUERY_MAX_TTL_S_DEFAULT) },
	[OPT_NEG_TTL] = { "neg-ttl", OPT_NEG_TTL, K_INT, 0, 0, 86400, NULL, "S",
		"cap on negative-cache TTLs", STR(QUERY_NEG_TTL_S_DEFAULT) },
	[OPT_SERVE_STALE] = { "serve-stale", OPT_SERVE_STALE, K_INT, 0, 0, 604800, NULL, "S",
		"answer from entries expired for at most S when upstreams fail; 0 disables", STR(QUERY_SERVE_STALE_S_DEFAULT) },
	[OPT_PREFETCH] = { "prefetch", OPT_PREFETCH, K_FLAG, 0, 0, 0, NULL, NULL,
		"refresh entries asked for in the last 10% of their TTL", "on" },
	[OPT_NO_PREFETCH] = { "no-prefetch", OPT_NO_PREFETCH, K_FLAG, 0, 0, 0, NULL, NULL,
		"disable --prefetch", NULL },

	[OPT_CLUSTER_DOMAIN] = { "cluster-domain", OPT_CLUSTER_DOMAIN, K_STR, 0, 0, 0, "Cluster",
		"DOMAIN", "the zone answered from the cluster store", CLUSTER_DOMAIN_DEFAULT },
	[OPT_CLUSTER_TTL] = { "cluster-ttl", OPT_CLUSTER_TTL, K_INT, 0, 0, 3600, NULL, "S",
		"TTL of cluster answers", STR(CLUSTER_TTL_S_DEFAULT) },
	[OPT_KUBE_API] = { "kube-api", OPT_KUBE_API, K_STR, 0, 0, 0, NULL, "URL",
		"API server URL", "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" },
	[OPT_KUBE_TOKEN_FILE] = { "kube-token-file", OPT_KUBE_TOKEN_FILE, K_STR, 0, 0, 0, NULL,
		"PATH", "bearer token file, re-read when it changes", DEFAULT_TOKEN_FILE },
	[OPT_KUBE_CA_FILE] = { "kube-ca-file", OPT_KUBE_CA_FILE, K_STR, 0, 0, 0, NULL, "PATH",
		"CA bundle of the API server", DEFAULT_CA_FILE },
	[OPT_KUBECONFIG] = { "kubeconfig", OPT_KUBECONFIG, K_STR, 0, 0, 0, NULL, "PATH",
		"use this kubeconfig (current context) instead of the three above", NULL },
	[OPT_KUBE_SNAPSHOT] = { "kube-snapshot", OPT_KUBE_SNAPSHOT, K_STR, 0, 0, 0, NULL, "PATH",
		"serve the cluster zone from this kubectl JSON file instead of the API", NULL },
	[OPT_CLUSTER_FALLBACK] = { "cluster-fallback", OPT_CLUSTER_FALLBACK, K_STR, 0, 0, 0, NULL,
		"ADDR", "forward cluster queries here until the store has synced", NULL },
	[OPT_PODS] = { "pods", OPT_PODS, K_STR, 0, 0, 0, NULL, "disabled|insecure",
		"a-b-c-d.NS.pod.DOMAIN records", "insecure" },
	[OPT_RUN_DIR] = { "run-dir", OPT_RUN_DIR, K_STR, 0, 0, 0, NULL, "DIR",
		"the lock and node-setup state of the supervisor, and the warm-start file", "$NODEDNS_RUN_DIR or " DEFAULT_RUN_DIR },
	[OPT_WARM_START_MAX_AGE] = { "warm-start-max-age", OPT_WARM_START_MAX_AGE, K_INT, 0, 0, 604800,
		NULL, "S", "answer from a warm-start file at most S old until the watch has synced; 0 disables",
		STR(WARM_START_MAX_AGE_S_DEFAULT) },
	[OPT_AUTOPATH] = { "autopath", OPT_AUTOPATH, K_FLAG, 0, 0, 0, NULL, NULL,
		"answer a search-path expansion from a pod of this node with the first name of its "
		"search path that exists (watches this node's Pods)", "off" },
	[OPT_AUTOPATH_SEARCH] = { "autopath-search", OPT_AUTOPATH_SEARCH, K_STR, F_REPEAT, 0, 0, NULL,
		"DOMAIN[,DOMAIN...]", "the node's search domains that kubelet gives pods, after the "
		"cluster ones ('none': no other); repeatable", "the search list of /etc/resolv.conf" },
	[OPT_NODE_NAME] = { "node-name", OPT_NODE_NAME, K_STR, 0, 0, 0, NULL, "NAME",
		"the node whose Pods --autopath watches (fieldSelector spec.nodeName)", "$NODE_NAME" },

	[OPT_SETUP_INTERFACE] = { "setup-interface", OPT_SETUP_INTERFACE, K_STR, 0, 0, 0, "Node",
		"NAME", "create dummy interface NAME holding the listen IPs", "off" },
	[OPT_SETUP_IPTABLES] = { "setup-iptables", OPT_SETUP_IPTABLES, K_FLAG, 0, 0, 0, NULL, NULL,
		"install NOTRACK/ACCEPT rules for the listen IPs", "off" },
	[OPT_USER] = { "user", OPT_USER, K_STR, 0, 0, 0, NULL, "NAME",
		"when started as root, switch to this user once the sockets are bound "
		"('root': stay root; capabilities are dropped either way)",
		"stay root, without capabilities" },

	[OPT_METRICS] = { "metrics", OPT_METRICS, K_STR, 0, 0, 0, "Observability", "ADDR",
		"serve GET /metrics on ADDR; 'none' disables", DEFAULT_METRICS },
	[OPT_HEALTH] = { "health", OPT_HEALTH, K_STR, 0, 0, 0, NULL, "ADDR",
		"serve GET /health and /ready on ADDR; 'none' disables",
		"first listen IP, port 8080" },
	[OPT_LOG_LEVEL] = { "log-level", OPT_LOG_LEVEL, K_STR, 0, 0, 0, NULL,
		"LEVEL", "error, warn, info or debug", "info" },
	[OPT_LOG_FORMAT] = { "log-format", OPT_LOG_FORMAT, K_STR, 0, 0, 0, NULL, "text|json",
		"log format on stderr", "text" },
	[OPT_QUERY_LOG] = { "query-log", OPT_QUERY_LOG, K_FLAG, 0, 0, 0, NULL, NULL,
		"log one line per query", "off" },

	[OPT_CONFIG] = { "config", OPT_CONFIG, K_STR, F_CLI_ONLY, 0, 0, "General", "FILE",
		"JSON config file; keys are the option names, flags override it", NULL },
	[OPT_CHECK_CONFIG] = { "check-config", OPT_CHECK_CONFIG, K_FLAG, F_CLI_ONLY, 0, 0, NULL, NULL,
		"check everything a start would (files, kubeconfig, snapshot, node settings), "
		"bind nothing; exit 0, or 2 with the error", NULL },
	[OPT_VERSION] = { "version", OPT_VERSION, K_FLAG, F_CLI_ONLY, 0, 0, NULL, NULL,
		"print the version and exit", NULL },
	[OPT_HELP] = { "help", OPT_HELP, K_FLAG, F_CLI_ONLY, 0, 0, NULL, NULL,
		"print this help and exit", NULL },
};

/* ---------------------------------------------------------- config file */

static int opt_by_name(const char *name)
{
	for (int i = 0; i < OPT_COUNT; i++)
		if (strcmp(config_opts[i].name, name) == 0)
			return i;
	return -1;
}

static int file_fail(struct pctx *pc, const char *path, const char *key, const char *why)
{
	char pb[SHOWN_MAX_CHARS + 4], kb[SHOWN_MAX_CHARS + 4];
	config_set_err(pc, "config %s: key '%s': %s", config_shown(path, pb), config_shown(key, kb), why);
	return -1;
}

static int file_apply_value(struct pctx *pc, const char *path, const char *key,
			    const struct opt_def *d, json_t *v)
{
	char why[WHY_LEN];
	char num[32];
	const char *s = NULL;
	bool b = false;

	switch (d->kind) {
	case K_FLAG:
		if (!json_is_boolean(v))
			return file_fail(pc, path, key, "must be true or false");
		b = json_is_true(v);
		break;
	case K_INT:
	case K_SIZE:
		if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
			s = num;
		} else if (json_is_string(v)) {
			s = json_string_value(v);
		} else {
			return file_fail(pc, path, key, "must be an integer or a string");
		}
		break;
	case K_STR:
		if (!json_is_string(v))
			return file_fail(pc, path, key,
					 (d->flags & F_REPEAT) ? "must be a string or an array of strings"
							       : "must be a string");
		s = json_string_value(v);
		break;
	}
	if (config_apply(pc, d, s, b, why, sizeof(why)) < 0)
		return file_fail(pc, path, key, why);
	return 0;
}

int config_load_file(struct pctx *pc, const char *path)
{
	char pb[SHOWN_MAX_CHARS + 4];
	json_error_t je;
	FILE *f = fopen(path, "re");
	if (!f) {
		config_set_err(pc, "--config: cannot open %s: %s", config_shown(path, pb), strerror(errno));
		return -1;
	}
	json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	fclose(f);
	if (!root) {
		config_set_err(pc, "config %s: line %d column %d: %s", config_shown(path, pb), je.line,
			je.column, je.text);
		return -1;
	}
	int rc = 0;
	if (!json_is_object(root)) {
		config_set_err(pc, "config %s: the top level must be a JSON object", config_shown(path, pb));
		rc = -1;
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		int i = opt_by_name(key);
		if (i < 0 || (config_opts[i].flags & F_CLI_ONLY)) {
			char kb[SHOWN_MAX_CHARS + 4];
			config_set_err(pc, "config %s: unknown key '%s'", config_shown(path, pb), config_shown(key, kb));
			rc = -1;
			goto out;
		}
		const struct opt_def *d = &config_opts[i];
		if ((d->flags & F_REPEAT) && json_is_array(v)) {
			size_t idx;
			json_t *el;
			json_array_foreach(v, idx, el) {
				if (!json_is_string(el)) {
					rc = file_fail(pc, path, key,
						       "must be a string or an array of strings");
					goto out;
				}
				if ((rc = file_apply_value(pc, path, key, d, el)) < 0)
					goto out;
			}
		} else if ((rc = file_apply_value(pc, path, key, d, v)) < 0) {
			goto out;
		}
	}
out:
	json_decref(root);
	return rc;
}

void config_usage(void)
{
	printf("Usage: nodedns [OPTIONS]\n"
	       "Node-local caching DNS resolver for Kubernetes.\n"
	       "Every option may also be a key of the JSON file named by --config\n"
	       "(repeatable options are arrays); flags override the file.\n");
	for (int i = 0; i < OPT_COUNT; i++) {
		const struct opt_def *d = &config_opts[i];
		char left[64];
		if (d->section)
			printf("\n%s:\n", d->section);
		snprintf(left, sizeof(left), "--%s%s%s", d->name, d->arg ? " " : "",
			 d->arg ? d->arg : "");
		printf("  %-30s %s", left, d->help);
		if (d->dflt)
			printf(" (default: %s)", d->dflt);
		printf("\n");
	}
	fflush(stdout);
}
