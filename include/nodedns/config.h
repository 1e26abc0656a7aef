/* include/nodedns/config.h - command line and JSON config file -> struct config.
 *
 * Every option of the contract (see README) can be given as a flag or as a key
 * of the JSON config file named by --config (keys are the long option names
 * without "--"; repeatable options are arrays; booleans are true/false).
 * Flags override the file. Parsing is pure: no sockets, no files other than
 * the config file itself and resolv.conf (the default upstreams, when none is given).
 * src/config.c holds the defaults, argv and the cross-option checks,
 * src/config_file.c the option table, the file and --help, and
 * src/config_values.c the check of each value (src/config_internal.h).
 */
#ifndef NODEDNS_CONFIG_H
#define NODEDNS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "nodedns/io/server.h"
#include "nodedns/util/netaddr.h"

/** Printed by --version as "nodedns <version>"; the build may override it. */
#ifndef NODEDNS_VERSION
#define NODEDNS_VERSION "0.1.0"
#endif

#define CONFIG_MAX_LISTEN SERVER_MAX_LISTEN
#define CONFIG_MAX_THREADS 64 /* --threads */
#define CONFIG_MAX_UPSTREAMS 16
#define CONFIG_MAX_STUBS 32
#define CONFIG_MAX_STUB_SERVERS 8
#define CONFIG_MAX_ALLOW 64
#define CONFIG_MAX_AUTOPATH_SEARCH 32 /* = AUTOPATH_MAX_SEARCH */


/** --stub DOMAIN=ADDR[,ADDR...]. @c domain is lower-case, without a trailing
 * dot except for the root ("."), e.g. "corp.example". */
struct config_stub {
	char domain[256];
	struct netaddr servers[CONFIG_MAX_STUB_SERVERS];
	size_t nservers;
};

/** --allow CIDR. */
struct config_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t prefix;
};

enum config_proto { CONFIG_PROTO_TCP = 0, CONFIG_PROTO_UDP };
enum config_pods { CONFIG_PODS_INSECURE = 0, CONFIG_PODS_DISABLED };

struct config {
	char *config_file; /* --config, NULL when none */
	bool check_config; /* --check-config: check, bind nothing, exit */

	/* serving */
	struct netaddr listen[CONFIG_MAX_LISTEN];
	size_t nlisten;
	unsigned threads;
	struct config_cidr allow[CONFIG_MAX_ALLOW];
	size_t nallow; /* 0: allow all */
	unsigned tcp_max_clients;     /* per worker, default 1000 */
	uint32_t tcp_idle_timeout_ms; /* default 10000 */
	unsigned tcp_max_inflight;    /* pipelined queries per connection, default 100 */

	/* forwarding */
	struct netaddr upstream[CONFIG_MAX_UPSTREAMS];
	size_t nupstream; /* 0 after parsing means: none found (error at start) */
	bool upstream_from_resolv_conf;
	enum config_proto upstream_proto;
	uint32_t upstream_timeout_ms; /* default 2000 */
	struct config_stub stubs[CONFIG_MAX_STUBS];
	size_t nstubs;
	unsigned max_inflight; /* upstream queries in flight per worker, default 10000 */
	unsigned max_waiters;  /* clients waiting on one question, default 1000 */

	/* cache */
	uint64_t cache_memory_bytes; /* default 64 MiB */
	uint32_t min_ttl_s, max_ttl_s, neg_ttl_s;
	uint32_t serve_stale_s; /* 0 disables */
	bool prefetch;

	/* cluster */
	char cluster_domain[256]; /* lower-case, no trailing dot */
	uint32_t cluster_ttl_s;
	char *kube_api, *kube_token_file, *kube_ca_file, *kubeconfig, *kube_snapshot;
	struct netaddr cluster_fallback;
	bool has_cluster_fallback;
	enum config_pods pods;
	char *run_dir;                 /* the warm-start file's directory */
	uint32_t warm_start_max_age_s; /* 0: no warm start */
	bool autopath;                 /* --autopath */
	char *node_name;               /* --node-name, else $NODE_NAME (with --autopath) */
	char autopath_search[CONFIG_MAX_AUTOPATH_SEARCH][256]; /* the node's search domains */
	size_t nautopath_search;
	bool autopath_search_set; /* given; else resolv.conf's search list */

	/* node */
	char *setup_interface; /* NULL: off */
	bool setup_iptables;
	char *user; /* --user: NULL keeps the uid (capabilities are dropped) */

	/* observability */
	struct netaddr metrics; /* valid when has_metrics */
	bool has_metrics;
	struct netaddr health; /* valid when has_health */
	bool has_health;
	int log_level;  /* enum log_level */
	bool log_json;
	bool query_log;
};

enum config_result {
	CONFIG_OK = 0,
	CONFIG_EXIT_OK,    /* --help or --version printed; exit 0 */
	CONFIG_ERROR,      /* bad input: err holds one line naming the option; exit 2 */
};

/**
 * Fill @p cfg from argv (and the --config file it names). @p err receives a
 * one-line message such as "--threads: must be an integer from 1 to 64 (got
 * 'x')" on CONFIG_ERROR. @p resolv_conf is the path used for the default
 * upstreams ("/etc/resolv.conf"; tests pass their own).
 * @return a config_result. Free with config_free() whatever it returns.
 */
enum config_result config_parse(struct config *cfg, int argc, char **argv,
				const char *resolv_conf, char *err, size_t errlen);

/** Release the strings a parsed config owns. Safe on a zeroed struct. */
void config_free(struct config *cfg);

/** Parse a size with an optional K/M/G suffix (powers of 1024). @return 0 or -EINVAL. */
int config_parse_size(const char *s, uint64_t *out);

/** True when @p sa (AF_INET/AF_INET6) is inside one of the --allow CIDRs, or
 * when none is configured. */
bool config_allowed(const struct config *cfg, const struct sockaddr *sa);

/**
 * --check-config: what a start would refuse after config_parse(), checked
 * without binding a socket or touching the node (src/config_check.c): the
 * --kube-snapshot file loads; the kubeconfig, API URL, token, CA and client
 * certificate files are usable; the node-setup environment is valid; --user
 * exists (when root). Logs the warnings a start would log.
 * @return 0, or negative errno with the one-line error a start would give
 * in @p err.
 */
int config_check_start(const struct config *cfg, char *err, size_t errlen);

/**
 * The default of --threads (src/config_cpu.c): the CPU quota of this
 * process's cgroup (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us, on
 * the cgroup and its parents; the smallest wins), rounded up; without a
 * quota, @p online. Never below 1 nor above @p online or 8.
 * @p cgroup_root: where the hierarchies are mounted ("/sys/fs/cgroup");
 * @p self_cgroup: "/proc/self/cgroup" (NULL: only the mounts themselves).
 * Tests point both at files of their own.
 */
unsigned config_default_threads(const char *cgroup_root, const char *self_cgroup, long online);

/** Print --help to stdout. */
void config_usage(void);

#endif
