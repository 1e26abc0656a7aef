/* src/config.c - command line and JSON config file -> struct config. */
#include "nodedns/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodedns/util/log.h"

#define DNS_PORT 53
#define METRICS_PORT 9253
#define HEALTH_PORT 8080
#define DEFAULT_LISTEN "169.254.20.10:53"
#define DEFAULT_METRICS "0.0.0.0:9253"
/* The well-known node-local DNS address; never an upstream of ours. */
#define NODELOCAL_IP "169.254.20.10"
#define DEFAULT_CLUSTER_DOMAIN "cluster.local"
#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount/"
#define DEFAULT_TOKEN_FILE SA_DIR "token"
#define DEFAULT_CA_FILE SA_DIR "ca.crt"
#define DEFAULT_RESOLV_CONF "/etc/resolv.conf"
#define DEFAULT_THREADS_MAX 8
#define IFNAME_MAX_CHARS 15 /* IFNAMSIZ - 1 */
#define DOMAIN_MAX_CHARS 253
#define LABEL_MAX_CHARS 63
#define WHY_LEN 320
#define SHOWN_MAX_CHARS 64

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
	OPT_SETUP_INTERFACE,
	OPT_SETUP_IPTABLES,
	OPT_USER,
	OPT_METRICS,
	OPT_HEALTH,
	OPT_LOG_LEVEL,
	OPT_LOG_FORMAT,
	OPT_QUERY_LOG,
	OPT_CONFIG,
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

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

/* The single table behind getopt, the config file keys and --help. Indexed
 * by enum opt_id. */
static const struct opt_def opts[OPT_COUNT] = {
	[OPT_LISTEN] = { "listen", OPT_LISTEN, K_STR, F_REPEAT, 0, 0, "Serving", "ADDR",
		"listen on ADDR (UDP and TCP); IPv4[:PORT] or [IPv6][:PORT]; repeatable",
		DEFAULT_LISTEN },
	[OPT_THREADS] = { "threads", OPT_THREADS, K_INT, 0, 1, CONFIG_MAX_THREADS, NULL, "N",
		"worker threads, each with its own sockets", "online CPUs, at most 8" },
	[OPT_ALLOW] = { "allow", OPT_ALLOW, K_STR, F_REPEAT, 0, 0, NULL, "CIDR",
		"answer only clients inside CIDR; repeatable", "all clients" },
	[OPT_TCP_MAX_CLIENTS] = { "tcp-max-clients", OPT_TCP_MAX_CLIENTS, K_INT, 0, 1, 1000000,
		NULL, "N", "TCP client connections per worker", "1000" },
	[OPT_TCP_IDLE_TIMEOUT] = { "tcp-idle-timeout", OPT_TCP_IDLE_TIMEOUT, K_INT, 0, 1, 3600000,
		NULL, "MS", "close idle TCP client connections after MS", "10000" },
	[OPT_TCP_MAX_INFLIGHT] = { "tcp-max-inflight", OPT_TCP_MAX_INFLIGHT, K_INT, 0, 1, 65535,
		NULL, "N", "pipelined queries in flight per TCP connection", "100" },

	[OPT_UPSTREAM] = { "upstream", OPT_UPSTREAM, K_STR, F_REPEAT, 0, 0, "Forwarding", "ADDR",
		"upstream server IP[:PORT]; repeatable", "nameservers of /etc/resolv.conf" },
	[OPT_UPSTREAM_PROTO] = { "upstream-proto", OPT_UPSTREAM_PROTO, K_STR, 0, 0, 0, NULL,
		"tcp|udp", "transport to upstreams (udp retries over TCP on TC=1)", "tcp" },
	[OPT_UPSTREAM_TIMEOUT] = { "upstream-timeout", OPT_UPSTREAM_TIMEOUT, K_INT, 0, 50, 60000,
		NULL, "MS", "timeout per attempt, then the next upstream", "2000" },
	[OPT_STUB] = { "stub", OPT_STUB, K_STR, F_REPEAT, 0, 0, NULL, "DOMAIN=ADDR[,ADDR...]",
		"forward DOMAIN and below to these servers; repeatable", NULL },
	[OPT_MAX_INFLIGHT] = { "max-inflight", OPT_MAX_INFLIGHT, K_INT, 0, 1, 1000000, NULL, "N",
		"upstream queries in flight per worker", "10000" },
	[OPT_MAX_WAITERS] = { "max-waiters", OPT_MAX_WAITERS, K_INT, 0, 1, 1000000, NULL, "N",
		"clients waiting on one question in flight", "1000" },

	[OPT_CACHE_MEMORY] = { "cache-memory", OPT_CACHE_MEMORY, K_SIZE, 0, MIB, 64 * GIB, "Cache",
		"BYTES", "upper bound on cache memory (K/M/G suffixes)", "64M" },
	[OPT_MIN_TTL] = { "min-ttl", OPT_MIN_TTL, K_INT, 0, 0, 604800, NULL, "S",
		"lower clamp on cached positive TTLs", "0" },
	[OPT_MAX_TTL] = { "max-ttl", OPT_MAX_TTL, K_INT, 0, 0, 604800, NULL, "S",
		"upper clamp on cached positive TTLs", "86400" },
	[OPT_NEG_TTL] = { "neg-ttl", OPT_NEG_TTL, K_INT, 0, 0, 86400, NULL, "S",
		"cap on negative-cache TTLs", "300" },
	[OPT_SERVE_STALE] = { "serve-stale", OPT_SERVE_STALE, K_INT, 0, 0, 604800, NULL, "S",
		"answer from entries expired for at most S when upstreams fail; 0 disables", "3600" },
	[OPT_PREFETCH] = { "prefetch", OPT_PREFETCH, K_FLAG, 0, 0, 0, NULL, NULL,
		"refresh entries asked for in the last 10% of their TTL", "on" },
	[OPT_NO_PREFETCH] = { "no-prefetch", OPT_NO_PREFETCH, K_FLAG, 0, 0, 0, NULL, NULL,
		"disable --prefetch", NULL },

	[OPT_CLUSTER_DOMAIN] = { "cluster-domain", OPT_CLUSTER_DOMAIN, K_STR, 0, 0, 0, "Cluster",
		"DOMAIN", "the zone answered from the cluster store", DEFAULT_CLUSTER_DOMAIN },
	[OPT_CLUSTER_TTL] = { "cluster-ttl", OPT_CLUSTER_TTL, K_INT, 0, 0, 3600, NULL, "S",
		"TTL of cluster answers", "5" },
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
	[OPT_VERSION] = { "version", OPT_VERSION, K_FLAG, F_CLI_ONLY, 0, 0, NULL, NULL,
		"print the version and exit", NULL },
	[OPT_HELP] = { "help", OPT_HELP, K_FLAG, F_CLI_ONLY, 0, 0, NULL, NULL,
		"print this help and exit", NULL },
};

/* getopt_long returns OPT_VAL_BASE + id, clear of '?' and ':'. */
#define OPT_VAL_BASE 256

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

static void set_err(struct pctx *pc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_err(struct pctx *pc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pc->err, pc->errlen, fmt, ap);
	va_end(ap);
}

/* Copy @p s for an error message: at most SHOWN_MAX_CHARS, control
 * characters replaced, so the message stays one line. */
static const char *shown(const char *s, char buf[SHOWN_MAX_CHARS + 4])
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

static char *xstrdup_replace(char **slot, const char *s)
{
	char *copy = strdup(s);
	if (!copy)
		return NULL;
	free(*slot);
	*slot = copy;
	return copy;
}

/* ---------------------------------------------------------------- values */

/* Strict unsigned decimal: digits only, no sign, no spaces. */
static int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
	if (!s || !out)
		return -EINVAL;
	size_t ndigits = 0;
	while (s[ndigits] >= '0' && s[ndigits] <= '9')
		ndigits++;
	if (ndigits == 0)
		return -EINVAL;
	unsigned shift = 0;
	const char *suffix = s + ndigits;
	if (*suffix) {
		switch (*suffix) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: return -EINVAL;
		}
		if (suffix[1])
			return -EINVAL;
	}
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end != suffix)
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* Same family, address and port (IPv6 scope ids are ignored). */
static bool addr_equal(const struct netaddr *a, const struct netaddr *b)
{
	return netaddr_sa_equal((const struct sockaddr *)&a->sa, (const struct sockaddr *)&b->sa);
}

static bool addr_in(const struct netaddr *a, const struct netaddr *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (addr_equal(a, &list[i]))
			return true;
	return false;
}

/* Lower-case @p s into @p out, strip one trailing dot and check the labels.
 * The root "." is accepted only when @p allow_root. */
static int parse_domain(const char *s, bool allow_root, char out[256], char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	size_t len = strlen(s);

	if (allow_root && strcmp(s, ".") == 0) {
		strcpy(out, ".");
		return 0;
	}
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0) {
		snprintf(why, whylen, "must be a domain name (got '%s')", shown(s, sb));
		return -1;
	}
	if (len > DOMAIN_MAX_CHARS) {
		snprintf(why, whylen, "domain longer than %d characters (got '%s')",
			 DOMAIN_MAX_CHARS, shown(s, sb));
		return -1;
	}
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0) {
				snprintf(why, whylen, "empty label in domain '%s'", shown(s, sb));
				return -1;
			}
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			   c == '_') {
			if (++label > LABEL_MAX_CHARS) {
				snprintf(why, whylen, "label longer than %d characters in domain '%s'",
					 LABEL_MAX_CHARS, shown(s, sb));
				return -1;
			}
		} else {
			snprintf(why, whylen,
				 "invalid character in domain '%s' (letters, digits, '-' and '_' only)",
				 shown(s, sb));
			return -1;
		}
		out[i] = c;
	}
	if (label == 0) {
		snprintf(why, whylen, "empty label in domain '%s'", shown(s, sb));
		return -1;
	}
	out[len] = '\0';
	return 0;
}

/* "DOMAIN=ADDR[,ADDR...]" */
static int parse_stub(const char *s, struct config_stub *st, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	char dom[DOMAIN_MAX_CHARS + 3];
	const char *eq = strchr(s, '=');

	memset(st, 0, sizeof(*st));
	if (!eq || eq == s || eq[1] == '\0') {
		snprintf(why, whylen, "must be DOMAIN=ADDR[,ADDR...] (got '%s')", shown(s, sb));
		return -1;
	}
	size_t dlen = (size_t)(eq - s);
	if (dlen >= sizeof(dom)) {
		snprintf(why, whylen, "domain longer than %d characters (got '%s')",
			 DOMAIN_MAX_CHARS, shown(s, sb));
		return -1;
	}
	memcpy(dom, s, dlen);
	dom[dlen] = '\0';
	if (parse_domain(dom, true, st->domain, why, whylen) < 0)
		return -1;

	const char *p = eq + 1;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char tok[INET6_ADDRSTRLEN + 8];
		if (st->nservers == CONFIG_MAX_STUB_SERVERS) {
			snprintf(why, whylen, "at most %d servers per domain (got '%s')",
				 CONFIG_MAX_STUB_SERVERS, shown(s, sb));
			return -1;
		}
		if (n == 0 || n >= sizeof(tok)) {
			snprintf(why, whylen, "bad server address in '%s'", shown(s, sb));
			return -1;
		}
		memcpy(tok, p, n);
		tok[n] = '\0';
		if (netaddr_parse(tok, DNS_PORT, &st->servers[st->nservers]) < 0) {
			char tb[SHOWN_MAX_CHARS + 4];
			snprintf(why, whylen,
				 "bad server address '%s' (want IPv4[:PORT] or [IPv6][:PORT]) in '%s'",
				 shown(tok, tb), shown(s, sb));
			return -1;
		}
		st->nservers++;
		if (!comma)
			break;
		p = comma + 1;
	}
	return 0;
}

/* "IPv4[/N]" or "IPv6[/N]"; host bits are cleared. */
static int parse_cidr(const char *s, struct config_cidr *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	struct config_cidr c;

	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(&c, 0, sizeof(c));
	unsigned maxbits;
	if (strchr(host, ':')) {
		if (inet_pton(AF_INET6, host, c.addr) != 1)
			return -EINVAL;
		c.family = AF_INET6;
		maxbits = 128;
	} else {
		if (inet_pton(AF_INET, host, c.addr) != 1)
			return -EINVAL;
		c.family = AF_INET;
		maxbits = 32;
	}
	uint64_t bits = maxbits;
	if (slash && parse_uint(slash + 1, 0, maxbits, &bits) < 0)
		return -EINVAL;
	c.prefix = (uint8_t)bits;
	for (unsigned i = 0; i < 16; i++) {
		unsigned lo = i * 8;
		if (lo >= bits)
			c.addr[i] = 0;
		else if (lo + 8 > bits)
			c.addr[i] &= (uint8_t)(0xff << (8 - (bits - lo)));
	}
	*out = c;
	return 0;
}

static bool prefix_match(const uint8_t *net, const uint8_t *a, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	if (memcmp(net, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (net[full] & mask) == (a[full] & mask);
}

bool config_allowed(const struct config *cfg, const struct sockaddr *sa)
{
	uint8_t v4[4], v6[16];
	bool has4 = false, has6 = false;

	if (cfg->nallow == 0)
		return true;
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, sa, sizeof(sin));
		memcpy(v4, &sin.sin_addr, 4);
		has4 = true;
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, sa, sizeof(sin6));
		memcpy(v6, &sin6.sin6_addr, 16);
		has6 = true;
		if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
			memcpy(v4, v6 + 12, 4);
			has4 = true;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < cfg->nallow; i++) {
		const struct config_cidr *c = &cfg->allow[i];
		if (c->family == AF_INET && has4 && prefix_match(c->addr, v4, c->prefix))
			return true;
		if (c->family == AF_INET6 && has6 && prefix_match(c->addr, v6, c->prefix))
			return true;
	}
	return false;
}

/* --------------------------------------------------------------- options */

static int add_addr(struct netaddr *list, size_t *n, size_t max, const char *s,
		    uint16_t default_port, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	struct netaddr a;

	if (netaddr_parse(s, default_port, &a) < 0) {
		snprintf(why, whylen, "must be IPv4[:PORT] or [IPv6][:PORT] (got '%s')",
			 shown(s, sb));
		return -1;
	}
	if (addr_in(&a, list, *n)) {
		snprintf(why, whylen, "%s given twice", a.text);
		return -1;
	}
	if (*n >= max) {
		snprintf(why, whylen, "at most %zu addresses", max);
		return -1;
	}
	list[(*n)++] = a;
	return 0;
}

/* "none" or an address. */
static int set_optional_addr(struct netaddr *a, bool *has, const char *s,
			     uint16_t default_port, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	if (strcmp(s, "none") == 0) {
		*has = false;
		return 0;
	}
	if (netaddr_parse(s, default_port, a) < 0) {
		snprintf(why, whylen, "must be IPv4[:PORT], [IPv6][:PORT] or 'none' (got '%s')",
			 shown(s, sb));
		return -1;
	}
	*has = true;
	return 0;
}

static int set_path(char **slot, const char *s, char *why, size_t whylen)
{
	if (*s == '\0') {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	if (!xstrdup_replace(slot, s)) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	return 0;
}

static int set_int(struct config *cfg, const struct opt_def *d, const char *s, char *why,
		   size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	uint64_t v;

	if (d->kind == K_SIZE) {
		if (config_parse_size(s, &v) < 0 || v < d->min || v > d->max) {
			snprintf(why, whylen,
				 "must be a size from 1M to 64G, with an optional K, M or G suffix (got '%s')",
				 shown(s, sb));
			return -1;
		}
	} else if (parse_uint(s, d->min, d->max, &v) < 0) {
		snprintf(why, whylen, "must be an integer from %llu to %llu (got '%s')",
			 (unsigned long long)d->min, (unsigned long long)d->max, shown(s, sb));
		return -1;
	}
	switch (d->id) {
	case OPT_THREADS: cfg->threads = (unsigned)v; break;
	case OPT_TCP_MAX_CLIENTS: cfg->tcp_max_clients = (unsigned)v; break;
	case OPT_TCP_IDLE_TIMEOUT: cfg->tcp_idle_timeout_ms = (uint32_t)v; break;
	case OPT_TCP_MAX_INFLIGHT: cfg->tcp_max_inflight = (unsigned)v; break;
	case OPT_UPSTREAM_TIMEOUT: cfg->upstream_timeout_ms = (uint32_t)v; break;
	case OPT_MAX_INFLIGHT: cfg->max_inflight = (unsigned)v; break;
	case OPT_MAX_WAITERS: cfg->max_waiters = (unsigned)v; break;
	case OPT_CACHE_MEMORY: cfg->cache_memory_bytes = v; break;
	case OPT_MIN_TTL: cfg->min_ttl_s = (uint32_t)v; break;
	case OPT_MAX_TTL: cfg->max_ttl_s = (uint32_t)v; break;
	case OPT_NEG_TTL: cfg->neg_ttl_s = (uint32_t)v; break;
	case OPT_SERVE_STALE: cfg->serve_stale_s = (uint32_t)v; break;
	case OPT_CLUSTER_TTL: cfg->cluster_ttl_s = (uint32_t)v; break;
	default: break;
	}
	return 0;
}

/* Apply one value of option @p d: @p s for strings and numbers, @p b for
 * flags. On failure writes the reason (without the option name) to @p why. */
static int apply(struct pctx *pc, const struct opt_def *d, const char *s, bool b, char *why,
		 size_t whylen)
{
	struct config *cfg = pc->cfg;
	char sb[SHOWN_MAX_CHARS + 4];

	if (d->kind == K_INT || d->kind == K_SIZE)
		return set_int(cfg, d, s, why, whylen);

	switch (d->id) {
	case OPT_LISTEN:
		return add_addr(cfg->listen, &cfg->nlisten, CONFIG_MAX_LISTEN, s, DNS_PORT, why,
				whylen);
	case OPT_UPSTREAM:
		return add_addr(cfg->upstream, &cfg->nupstream, CONFIG_MAX_UPSTREAMS, s, DNS_PORT,
				why, whylen);
	case OPT_ALLOW:
		if (cfg->nallow >= CONFIG_MAX_ALLOW) {
			snprintf(why, whylen, "at most %d networks", CONFIG_MAX_ALLOW);
			return -1;
		}
		if (parse_cidr(s, &cfg->allow[cfg->nallow]) < 0) {
			snprintf(why, whylen, "must be IPv4[/BITS] or IPv6[/BITS] (got '%s')",
				 shown(s, sb));
			return -1;
		}
		cfg->nallow++;
		return 0;
	case OPT_STUB: {
		struct config_stub st;
		if (parse_stub(s, &st, why, whylen) < 0)
			return -1;
		for (size_t i = 0; i < cfg->nstubs; i++) {
			if (strcmp(cfg->stubs[i].domain, st.domain) == 0) {
				snprintf(why, whylen, "domain '%s' given twice", st.domain);
				return -1;
			}
		}
		if (cfg->nstubs >= CONFIG_MAX_STUBS) {
			snprintf(why, whylen, "at most %d stub domains", CONFIG_MAX_STUBS);
			return -1;
		}
		cfg->stubs[cfg->nstubs++] = st;
		return 0;
	}
	case OPT_UPSTREAM_PROTO:
		if (strcmp(s, "tcp") == 0) {
			cfg->upstream_proto = CONFIG_PROTO_TCP;
		} else if (strcmp(s, "udp") == 0) {
			cfg->upstream_proto = CONFIG_PROTO_UDP;
		} else {
			snprintf(why, whylen, "must be tcp or udp (got '%s')", shown(s, sb));
			return -1;
		}
		return 0;
	case OPT_PREFETCH:
		cfg->prefetch = b;
		return 0;
	case OPT_NO_PREFETCH:
		cfg->prefetch = !b;
		return 0;
	case OPT_CLUSTER_DOMAIN:
		return parse_domain(s, false, cfg->cluster_domain, why, whylen);
	case OPT_KUBE_API:
		if ((strncmp(s, "https://", 8) != 0 || s[8] == '\0') &&
		    (strncmp(s, "http://", 7) != 0 || s[7] == '\0')) {
			snprintf(why, whylen, "must be an https:// or http:// URL (got '%s')",
				 shown(s, sb));
			return -1;
		}
		return set_path(&cfg->kube_api, s, why, whylen);
	case OPT_KUBE_TOKEN_FILE:
		return set_path(&cfg->kube_token_file, s, why, whylen);
	case OPT_KUBE_CA_FILE:
		return set_path(&cfg->kube_ca_file, s, why, whylen);
	case OPT_KUBECONFIG:
		return set_path(&cfg->kubeconfig, s, why, whylen);
	case OPT_KUBE_SNAPSHOT:
		return set_path(&cfg->kube_snapshot, s, why, whylen);
	case OPT_CLUSTER_FALLBACK:
		if (netaddr_parse(s, DNS_PORT, &cfg->cluster_fallback) < 0) {
			snprintf(why, whylen, "must be IPv4[:PORT] or [IPv6][:PORT] (got '%s')",
				 shown(s, sb));
			return -1;
		}
		cfg->has_cluster_fallback = true;
		return 0;
	case OPT_PODS:
		if (strcmp(s, "insecure") == 0) {
			cfg->pods = CONFIG_PODS_INSECURE;
		} else if (strcmp(s, "disabled") == 0) {
			cfg->pods = CONFIG_PODS_DISABLED;
		} else {
			snprintf(why, whylen, "must be disabled or insecure (got '%s')", shown(s, sb));
			return -1;
		}
		return 0;
	case OPT_SETUP_INTERFACE: {
		size_t len = strlen(s);
		if (len == 0 || len > IFNAME_MAX_CHARS || strcmp(s, ".") == 0 ||
		    strcmp(s, "..") == 0 || strpbrk(s, "/: \t\n\r\v\f")) {
			snprintf(why, whylen,
				 "must be an interface name of 1 to %d characters without '/', ':' or spaces (got '%s')",
				 IFNAME_MAX_CHARS, shown(s, sb));
			return -1;
		}
		return set_path(&cfg->setup_interface, s, why, whylen);
	}
	case OPT_SETUP_IPTABLES:
		cfg->setup_iptables = b;
		return 0;
	case OPT_USER: {
		size_t len = strlen(s);
		if (len == 0 || len > 32 || strpbrk(s, "/: \t\n\r\v\f")) {
			snprintf(why, whylen, "must be a user name of 1 to 32 characters (got '%s')",
				 shown(s, sb));
			return -1;
		}
		return set_path(&cfg->user, s, why, whylen);
	}
	case OPT_METRICS:
		return set_optional_addr(&cfg->metrics, &cfg->has_metrics, s, METRICS_PORT, why,
					 whylen);
	case OPT_HEALTH:
		pc->health_set = true;
		return set_optional_addr(&cfg->health, &cfg->has_health, s, HEALTH_PORT, why,
					 whylen);
	case OPT_LOG_LEVEL: {
		enum log_level lvl;
		if (log_level_parse(s, &lvl) < 0) {
			snprintf(why, whylen, "must be error, warn, info or debug (got '%s')",
				 shown(s, sb));
			return -1;
		}
		cfg->log_level = (int)lvl;
		return 0;
	}
	case OPT_LOG_FORMAT:
		if (strcmp(s, "text") == 0) {
			cfg->log_json = false;
		} else if (strcmp(s, "json") == 0) {
			cfg->log_json = true;
		} else {
			snprintf(why, whylen, "must be text or json (got '%s')", shown(s, sb));
			return -1;
		}
		return 0;
	case OPT_QUERY_LOG:
		cfg->query_log = b;
		return 0;
	default:
		/* --config, --help, --version: handled by the caller. */
		return 0;
	}
}

/* Empty the list of a repeatable option. */
static void reset_list(struct config *cfg, enum opt_id id)
{
	switch (id) {
	case OPT_LISTEN: cfg->nlisten = 0; break;
	case OPT_UPSTREAM: cfg->nupstream = 0; break;
	case OPT_STUB: cfg->nstubs = 0; break;
	case OPT_ALLOW: cfg->nallow = 0; break;
	default: break;
	}
}

/* ------------------------------------------------------------- defaults */

static int set_defaults(struct config *cfg)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > DEFAULT_THREADS_MAX)
		ncpu = DEFAULT_THREADS_MAX;
	cfg->threads = (unsigned)ncpu;
	cfg->tcp_max_clients = 1000;
	cfg->tcp_idle_timeout_ms = 10000;
	cfg->tcp_max_inflight = 100;

	cfg->upstream_proto = CONFIG_PROTO_TCP;
	cfg->upstream_timeout_ms = 2000;
	cfg->max_inflight = 10000;
	cfg->max_waiters = 1000;

	cfg->cache_memory_bytes = 64 * MIB;
	cfg->min_ttl_s = 0;
	cfg->max_ttl_s = 86400;
	cfg->neg_ttl_s = 300;
	cfg->serve_stale_s = 3600;
	cfg->prefetch = true;

	strcpy(cfg->cluster_domain, DEFAULT_CLUSTER_DOMAIN);
	cfg->cluster_ttl_s = 5;
	cfg->pods = CONFIG_PODS_INSECURE;

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
		if (is_nodelocal(&a) || addr_in(&a, cfg->listen, cfg->nlisten) ||
		    addr_in(&a, cfg->upstream, cfg->nupstream))
			continue;
		cfg->upstream[cfg->nupstream++] = a;
	}
	free(line);
	fclose(f);
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
		set_err(pc, "--min-ttl: must not be greater than --max-ttl (%u > %u)",
			cfg->min_ttl_s, cfg->max_ttl_s);
		return -1;
	}
	for (size_t i = 0; i < cfg->nupstream; i++) {
		if (addr_in(&cfg->upstream[i], cfg->listen, cfg->nlisten)) {
			set_err(pc, "--upstream: %s is one of our --listen addresses",
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
		set_err(pc, "out of memory");
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------- config file */

static int opt_by_name(const char *name)
{
	for (int i = 0; i < OPT_COUNT; i++)
		if (strcmp(opts[i].name, name) == 0)
			return i;
	return -1;
}

static int file_fail(struct pctx *pc, const char *path, const char *key, const char *why)
{
	char pb[SHOWN_MAX_CHARS + 4], kb[SHOWN_MAX_CHARS + 4];
	set_err(pc, "config %s: key '%s': %s", shown(path, pb), shown(key, kb), why);
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
	if (apply(pc, d, s, b, why, sizeof(why)) < 0)
		return file_fail(pc, path, key, why);
	return 0;
}

static int load_file(struct pctx *pc, const char *path)
{
	char pb[SHOWN_MAX_CHARS + 4];
	json_error_t je;
	FILE *f = fopen(path, "re");
	if (!f) {
		set_err(pc, "--config: cannot open %s: %s", shown(path, pb), strerror(errno));
		return -1;
	}
	json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	fclose(f);
	if (!root) {
		set_err(pc, "config %s: line %d column %d: %s", shown(path, pb), je.line,
			je.column, je.text);
		return -1;
	}
	int rc = 0;
	if (!json_is_object(root)) {
		set_err(pc, "config %s: the top level must be a JSON object", shown(path, pb));
		rc = -1;
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v) {
		int i = opt_by_name(key);
		if (i < 0 || (opts[i].flags & F_CLI_ONLY)) {
			char kb[SHOWN_MAX_CHARS + 4];
			set_err(pc, "config %s: unknown key '%s'", shown(path, pb), shown(key, kb));
			rc = -1;
			goto out;
		}
		const struct opt_def *d = &opts[i];
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

/* ---------------------------------------------------------- command line */

/* Collect the options of argv into @p items (no values applied yet). */
static int scan_argv(struct pctx *pc, int argc, char **argv, struct cli_item *items,
		     size_t *nitems, const char **config_file, bool *help, bool *version)
{
	struct option lo[OPT_COUNT + 1];
	char sb[SHOWN_MAX_CHARS + 4];

	for (int i = 0; i < OPT_COUNT; i++) {
		lo[i].name = opts[i].name;
		lo[i].has_arg = opts[i].kind == K_FLAG ? no_argument : required_argument;
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
			set_err(pc, "--%s: missing value", opts[optopt - OPT_VAL_BASE].name);
			return -1;
		}
		if (c == '?' && optopt >= OPT_VAL_BASE) {
			set_err(pc, "--%s: takes no value", opts[optopt - OPT_VAL_BASE].name);
			return -1;
		}
		if (c < OPT_VAL_BASE || c >= OPT_VAL_BASE + OPT_COUNT) {
			size_t n = strcspn(arg, "=");
			char name[SHOWN_MAX_CHARS + 1];
			snprintf(name, sizeof(name), "%.*s", (int)(n < SHOWN_MAX_CHARS ? n : SHOWN_MAX_CHARS), arg);
			set_err(pc, "unknown option '%s' (see --help)", shown(name, sb));
			return -1;
		}
		const struct opt_def *d = &opts[c - OPT_VAL_BASE];
		/* getopt_long accepts unambiguous prefixes; we want exact names
		 * so that adding an option never breaks a deployed command line. */
		size_t nlen = strlen(d->name);
		if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, d->name, nlen) != 0 ||
		    (arg[2 + nlen] != '\0' && arg[2 + nlen] != '=')) {
			size_t n = strcspn(arg, "=");
			char name[SHOWN_MAX_CHARS + 1];
			snprintf(name, sizeof(name), "%.*s", (int)(n < SHOWN_MAX_CHARS ? n : SHOWN_MAX_CHARS), arg);
			set_err(pc, "unknown option '%s' (did you mean --%s?)", shown(name, sb),
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
		set_err(pc, "unexpected argument '%s' (options start with --)",
			shown(argv[optind], sb));
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
			reset_list(pc->cfg, d->id);
		}
		if (apply(pc, d, items[i].val, true, why, sizeof(why)) < 0) {
			set_err(pc, "--%s: %s", d->name, why);
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
		set_err(&pc, "out of memory");
		return CONFIG_ERROR;
	}
	if (argc > 1) {
		items = calloc((size_t)argc, sizeof(*items));
		if (!items) {
			set_err(&pc, "out of memory");
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
			set_err(&pc, "--config: must not be empty");
			goto out;
		}
		if (!(cfg->config_file = strdup(config_file))) {
			set_err(&pc, "out of memory");
			goto out;
		}
		if (load_file(&pc, config_file) < 0)
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
	free(cfg->setup_interface);
	free(cfg->user);
	cfg->user = NULL;
	cfg->config_file = NULL;
	cfg->kube_api = cfg->kube_token_file = cfg->kube_ca_file = NULL;
	cfg->kubeconfig = cfg->kube_snapshot = NULL;
	cfg->setup_interface = NULL;
}

void config_usage(void)
{
	printf("Usage: nodedns [OPTIONS]\n"
	       "Node-local caching DNS resolver for Kubernetes.\n"
	       "Every option may also be a key of the JSON file named by --config\n"
	       "(repeatable options are arrays); flags override the file.\n");
	for (int i = 0; i < OPT_COUNT; i++) {
		const struct opt_def *d = &opts[i];
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
