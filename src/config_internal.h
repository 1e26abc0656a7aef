/* src/config_internal.h - what config.c, config_file.c and config_values.c share.
 *
 * The option table (config_file.c) drives getopt (config.c), the config
 * file keys and --help (config_file.c); config_apply() (config_values.c)
 * checks one value of one option and stores it in the struct config.
 * Nothing here is for callers outside the config module.
 */
#ifndef NODEDNS_CONFIG_INTERNAL_H
#define NODEDNS_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodedns/config.h"
#include "nodedns/node/supervisor.h"

#define DNS_PORT 53
#define METRICS_PORT 9253
#define HEALTH_PORT 8080
#define DEFAULT_LISTEN "169.254.20.10:53"
#define DEFAULT_METRICS "0.0.0.0:9253"
/* The well-known node-local DNS address; never an upstream of ours. */
#define NODELOCAL_IP "169.254.20.10"
#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount/"
#define DEFAULT_TOKEN_FILE SA_DIR "token"
#define DEFAULT_CA_FILE SA_DIR "ca.crt"
#define DEFAULT_RESOLV_CONF "/etc/resolv.conf"
#define DEFAULT_RUN_DIR SUPERVISOR_RUN_DIR /* one run dir for the supervisor and the warm start */
#define DEFAULT_THREADS_MAX 8
#define DEFAULT_CGROUP_ROOT "/sys/fs/cgroup"
#define DEFAULT_SELF_CGROUP "/proc/self/cgroup"
#define IFNAME_MAX_CHARS 15 /* IFNAMSIZ - 1 */
#define DOMAIN_MAX_CHARS 253
#define LABEL_MAX_CHARS 63
#define WHY_LEN 320
#define SHOWN_MAX_CHARS 64

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

enum opt_id {
	OPT_LISTEN,
	OPT_THREADS,
	OPT_ALLOW,
	OPT_TCP_MAX_CLIENTS,
	OPT_TCP_IDLE_TIMEOUT,
	OPT_TCP_MAX_INFLIGHT,
	OPT_UPSTREAM,
	OPT_UPSTREAM_PROTO,
	OPT_UPSTREAM_TIMEOUT,
	OPT_STUB,
	OPT_MAX_INFLIGHT,
	OPT_MAX_WAITERS,
	OPT_CACHE_MEMORY,
	OPT_MIN_TTL,
	OPT_MAX_TTL,
	OPT_NEG_TTL,
	OPT_SERVE_STALE,
	OPT_PREFETCH,
	OPT_NO_PREFETCH,
	OPT_CLUSTER_DOMAIN,
	OPT_CLUSTER_TTL,
	OPT_KUBE_API,
	OPT_KUBE_TOKEN_FILE,
	OPT_KUBE_CA_FILE,
	OPT_KUBECONFIG,
	OPT_KUBE_SNAPSHOT,
	OPT_CLUSTER_FALLBACK,
	OPT_PODS,
	OPT_RUN_DIR,
	OPT_WARM_START_MAX_AGE,
	OPT_AUTOPATH,
	OPT_AUTOPATH_SEARCH,
	OPT_NODE_NAME,
	OPT_SETUP_INTERFACE,
	OPT_SETUP_IPTABLES,
	OPT_USER,
	OPT_METRICS,
	OPT_HEALTH,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT,
	OPT_QUERY_LOG,
	OPT_CONFIG,
	OPT_CHECK_CONFIG,
	OPT_VERSION,
	OPT_HELP,
	OPT_COUNT
};

enum opt_kind {
	K_STR,  /* a string value */
	K_INT,  /* an unsigned integer in [min, max] */
	K_SIZE, /* a size with K/M/G suffix in [min, max] */
	K_FLAG, /* no value on the command line; a JSON boolean in the file */
};

#define F_REPEAT 1u   /* repeatable; a JSON array in the file */
#define F_CLI_ONLY 2u /* not a key of the config file */

struct opt_def {
	const char *name;
	enum opt_id id;
	enum opt_kind kind;
	unsigned flags;
	uint64_t min, max;   /* K_INT, K_SIZE */
	const char *section; /* starts a group in --help */
	const char *arg;     /* placeholder in --help */
	const char *help;
	const char *dflt;    /* NULL: no default shown */
};

/** The single table behind getopt, the config file keys and --help,
 * indexed by enum opt_id (config_file.c). */
extern const struct opt_def config_opts[OPT_COUNT];

/* State of one config_parse() call. */
struct pctx {
	struct config *cfg;
	char *err;
	size_t errlen;
	bool health_set;             /* --health given: no default */
	bool cli_seen[OPT_COUNT];    /* repeatable given on the command line */
};

/* One option found on the command line, applied after the config file. */
struct cli_item {
	const struct opt_def *d;
	const char *val; /* NULL for K_FLAG */
};

/** printf into pc->err (one line). */
void config_set_err(struct pctx *pc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Copy @p s for an error message into @p buf: at most SHOWN_MAX_CHARS,
 * control characters replaced, so the message stays one line. @return buf. */
const char *config_shown(const char *s, char buf[SHOWN_MAX_CHARS + 4]);

/** True when @p a is one of @p list[0..n) (family, address and port). */
bool config_addr_in(const struct netaddr *a, const struct netaddr *list, size_t n);

/** Apply one value of option @p d: @p s for strings and numbers, @p b for
 * flags. On failure writes the reason (without the option name) to @p why
 * and returns -1 (config_values.c). */
int config_apply(struct pctx *pc, const struct opt_def *d, const char *s, bool b, char *why,
		 size_t whylen);

/** Empty the list of a repeatable option. */
void config_reset_list(struct config *cfg, enum opt_id id);

/** Apply the JSON config file @p path. @return 0, or -1 with pc->err set
 * (config_file.c). */
int config_load_file(struct pctx *pc, const char *path);

#endif
