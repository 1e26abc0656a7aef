/* src/config_values.c - one option value -> struct config: numbers, sizes, addresses, domains, CIDRs, URLs. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodedns/io/k8s_watch.h"

#include "config_internal.h"
#include "nodedns/util/log.h"

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

bool config_addr_in(const struct netaddr *a, const struct netaddr *list, size_t n)
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
		snprintf(why, whylen, "must be a domain name (got '%s')", config_shown(s, sb));
		return -1;
	}
	if (len > DOMAIN_MAX_CHARS) {
		snprintf(why, whylen, "domain longer than %d characters (got '%s')",
			 DOMAIN_MAX_CHARS, config_shown(s, sb));
		return -1;
	}
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0) {
				snprintf(why, whylen, "empty label in domain '%s'", config_shown(s, sb));
				return -1;
			}
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			   c == '_') {
			if (++label > LABEL_MAX_CHARS) {
				snprintf(why, whylen, "label longer than %d characters in domain '%s'",
					 LABEL_MAX_CHARS, config_shown(s, sb));
				return -1;
			}
		} else {
			snprintf(why, whylen,
				 "invalid character in domain '%s' (letters, digits, '-' and '_' only)",
				 config_shown(s, sb));
			return -1;
		}
		out[i] = c;
	}
	if (label == 0) {
		snprintf(why, whylen, "empty label in domain '%s'", config_shown(s, sb));
		return -1;
	}
	out[len] = '\0';
	return 0;
}

/* Comma-separated lists (--stub's servers, --autopath-search): copy the item
 * at *@p into @p tok (@p cap bytes with its NUL) and move *@p past its comma,
 * to NULL after the last item. @return the item's length, -1 when it does not
 * fit. */
static long next_item(const char **p, char *tok, size_t cap)
{
	const char *comma = strchr(*p, ',');
	size_t n = comma ? (size_t)(comma - *p) : strlen(*p);
	if (n >= cap)
		return -1;
	memcpy(tok, *p, n);
	tok[n] = '\0';
	*p = comma ? comma + 1 : NULL;
	return (long)n;
}

/* "DOMAIN=ADDR[,ADDR...]" */
static int parse_stub(const char *s, struct config_stub *st, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	char dom[DOMAIN_MAX_CHARS + 3];
	const char *eq = strchr(s, '=');

	memset(st, 0, sizeof(*st));
	if (!eq || eq == s || eq[1] == '\0') {
		snprintf(why, whylen, "must be DOMAIN=ADDR[,ADDR...] (got '%s')", config_shown(s, sb));
		return -1;
	}
	size_t dlen = (size_t)(eq - s);
	if (dlen >= sizeof(dom)) {
		snprintf(why, whylen, "domain longer than %d characters (got '%s')",
			 DOMAIN_MAX_CHARS, config_shown(s, sb));
		return -1;
	}
	memcpy(dom, s, dlen);
	dom[dlen] = '\0';
	if (parse_domain(dom, true, st->domain, why, whylen) < 0)
		return -1;

	for (const char *p = eq + 1; p;) {
		char tok[INET6_ADDRSTRLEN + 8];
		if (st->nservers == CONFIG_MAX_STUB_SERVERS) {
			snprintf(why, whylen, "at most %d servers per domain (got '%s')",
				 CONFIG_MAX_STUB_SERVERS, config_shown(s, sb));
			return -1;
		}
		if (next_item(&p, tok, sizeof(tok)) <= 0) {
			snprintf(why, whylen, "bad server address in '%s'", config_shown(s, sb));
			return -1;
		}
		if (netaddr_parse(tok, DNS_PORT, &st->servers[st->nservers]) < 0) {
			char tb[SHOWN_MAX_CHARS + 4];
			snprintf(why, whylen,
				 "bad server address '%s' (want IPv4[:PORT] or [IPv6][:PORT]) in '%s'",
				 config_shown(tok, tb), config_shown(s, sb));
			return -1;
		}
		st->nservers++;
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
			 config_shown(s, sb));
		return -1;
	}
	if (config_addr_in(&a, list, *n)) {
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
			 config_shown(s, sb));
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
				 config_shown(s, sb));
			return -1;
		}
	} else if (parse_uint(s, d->min, d->max, &v) < 0) {
		snprintf(why, whylen, "must be an integer from %llu to %llu (got '%s')",
			 (unsigned long long)d->min, (unsigned long long)d->max, config_shown(s, sb));
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
	case OPT_WARM_START_MAX_AGE: cfg->warm_start_max_age_s = (uint32_t)v; break;
	default: break;
	}
	return 0;
}

/* --allow CIDR, appended. */
static int add_cidr(struct config *cfg, const char *s, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	if (cfg->nallow >= CONFIG_MAX_ALLOW) {
		snprintf(why, whylen, "at most %d networks", CONFIG_MAX_ALLOW);
		return -1;
	}
	if (parse_cidr(s, &cfg->allow[cfg->nallow]) < 0) {
		snprintf(why, whylen, "must be IPv4[/BITS] or IPv6[/BITS] (got '%s')",
			 config_shown(s, sb));
		return -1;
	}
	cfg->nallow++;
	return 0;
}

/* --stub DOMAIN=ADDR[,ADDR...], appended; a domain only once. */
static int add_stub(struct config *cfg, const char *s, char *why, size_t whylen)
{
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

/* The options that take one word of a short list, and what it selects. */
static const struct {
	enum opt_id id;
	const char *word;
	int value;
} choices[] = {
	{ OPT_UPSTREAM_PROTO, "tcp", CONFIG_PROTO_TCP },
	{ OPT_UPSTREAM_PROTO, "udp", CONFIG_PROTO_UDP },
	{ OPT_PODS, "insecure", CONFIG_PODS_INSECURE },
	{ OPT_PODS, "disabled", CONFIG_PODS_DISABLED },
	{ OPT_LOG_FORMAT, "text", 0 },
	{ OPT_LOG_FORMAT, "json", 1 },
};

static void set_choice(struct config *cfg, enum opt_id id, int value)
{
	switch (id) {
	case OPT_UPSTREAM_PROTO: cfg->upstream_proto = (enum config_proto)value; break;
	case OPT_PODS: cfg->pods = (enum config_pods)value; break;
	case OPT_LOG_FORMAT: cfg->log_json = value != 0; break;
	default: break;
	}
}

/* --upstream-proto, --pods, --log-format and --log-level. */
static int apply_choice(struct config *cfg, const struct opt_def *d, const char *s, char *why,
			size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	if (d->id == OPT_LOG_LEVEL) {
		enum log_level lvl;
		if (log_level_parse(s, &lvl) < 0) {
			snprintf(why, whylen, "must be error, warn, info or debug (got '%s')",
				 config_shown(s, sb));
			return -1;
		}
		cfg->log_level = (int)lvl;
		return 0;
	}
	for (size_t i = 0; i < sizeof(choices) / sizeof(choices[0]); i++) {
		if (choices[i].id == d->id && strcmp(s, choices[i].word) == 0) {
			set_choice(cfg, d->id, choices[i].value);
			return 0;
		}
	}
	/* d->arg lists the words: "tcp|udp" -> "must be tcp or udp". */
	char words[64];
	size_t n = 0;
	for (const char *p = d->arg; *p && n + 5 < sizeof(words); p++) {
		if (*p == '|') {
			memcpy(words + n, " or ", 4);
			n += 4;
		} else {
			words[n++] = *p;
		}
	}
	words[n] = '\0';
	snprintf(why, whylen, "must be %s (got '%s')", words, config_shown(s, sb));
	return -1;
}

/* Flags: true on the command line, true or false in the file. */
static int apply_flag(struct config *cfg, const struct opt_def *d, bool b)
{
	switch (d->id) {
	case OPT_PREFETCH: cfg->prefetch = b; break;
	case OPT_NO_PREFETCH: cfg->prefetch = !b; break;
	case OPT_SETUP_IPTABLES: cfg->setup_iptables = b; break;
	case OPT_QUERY_LOG: cfg->query_log = b; break;
	case OPT_AUTOPATH: cfg->autopath = b; break;
	case OPT_CHECK_CONFIG: cfg->check_config = b; break;
	default: break;
	}
	return 0;
}

/* --kube-api: checked as the watch will check it (https, a host, nothing
 * that would be lost or leak on the way), at start-up and naming the option,
 * not when the watch starts. */
static int check_kube_api(const char *s, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	if (k8s_watch_check_url(s, NULL, NULL, 0) < 0) {
		snprintf(why, whylen,
			 "must be an https:// URL with a host and no user, password, query or fragment (got '%s')",
			 config_shown(s, sb));
		return -1;
	}
	return 0;
}

/* The cluster options: the zone, the API server and its credentials, the
 * snapshot file, the fallback server. */
static int apply_cluster(struct config *cfg, const struct opt_def *d, const char *s, char *why,
			 size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	switch (d->id) {
	case OPT_CLUSTER_DOMAIN:
		return parse_domain(s, false, cfg->cluster_domain, why, whylen);
	case OPT_KUBE_API:
		if (check_kube_api(s, why, whylen) < 0)
			return -1;
		return set_path(&cfg->kube_api, s, why, whylen);
	case OPT_KUBE_TOKEN_FILE:
		return set_path(&cfg->kube_token_file, s, why, whylen);
	case OPT_KUBE_CA_FILE:
		return set_path(&cfg->kube_ca_file, s, why, whylen);
	case OPT_KUBECONFIG:
		return set_path(&cfg->kubeconfig, s, why, whylen);
	case OPT_KUBE_SNAPSHOT:
		return set_path(&cfg->kube_snapshot, s, why, whylen);
	case OPT_RUN_DIR:
		if (s[0] != '/' || strlen(s) > 1024) {
			snprintf(why, whylen, "must be an absolute path of at most 1024 bytes (got '%s')",
				 config_shown(s, sb));
			return -1;
		}
		return set_path(&cfg->run_dir, s, why, whylen);
	case OPT_CLUSTER_FALLBACK:
		if (netaddr_parse(s, DNS_PORT, &cfg->cluster_fallback) < 0) {
			snprintf(why, whylen, "must be IPv4[:PORT] or [IPv6][:PORT] (got '%s')",
				 config_shown(s, sb));
			return -1;
		}
		cfg->has_cluster_fallback = true;
		return 0;
	default:
		return 0;
	}
}

/* --autopath-search: comma-separated domains, or "none". */
static int add_search(struct config *cfg, const char *s, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	cfg->autopath_search_set = true;
	if (strcmp(s, "none") == 0)
		return 0;
	for (const char *p = s; p;) {
		char tok[DOMAIN_MAX_CHARS + 2];
		if (cfg->nautopath_search == CONFIG_MAX_AUTOPATH_SEARCH) {
			snprintf(why, whylen, "at most %d domains (got '%s')",
				 CONFIG_MAX_AUTOPATH_SEARCH, config_shown(s, sb));
			return -1;
		}
		if (next_item(&p, tok, sizeof(tok)) < 0) {
			snprintf(why, whylen, "domain longer than %d characters (got '%s')",
				 DOMAIN_MAX_CHARS, config_shown(s, sb));
			return -1;
		}
		if (parse_domain(tok, false, cfg->autopath_search[cfg->nautopath_search], why,
				 whylen) < 0)
			return -1;
		cfg->nautopath_search++;
	}
	return 0;
}

/* --node-name: a Kubernetes node name (a DNS subdomain). */
static int set_node_name(struct config *cfg, const char *s, char *why, size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	size_t len = strlen(s);
	bool ok = len > 0 && len <= 253;
	for (size_t i = 0; ok && i < len; i++)
		ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		     s[i] == '.';
	if (!ok) {
		snprintf(why, whylen,
			 "must be a node name: 1 to 253 lower-case letters, digits, '-' or '.' (got '%s')",
			 config_shown(s, sb));
		return -1;
	}
	return set_path(&cfg->node_name, s, why, whylen);
}

/* --setup-interface and --user: names that end up in system calls. */
static int apply_name(struct config *cfg, const struct opt_def *d, const char *s, char *why,
		      size_t whylen)
{
	char sb[SHOWN_MAX_CHARS + 4];
	size_t len = strlen(s);
	if (d->id == OPT_SETUP_INTERFACE) {
		if (len == 0 || len > IFNAME_MAX_CHARS || strcmp(s, ".") == 0 ||
		    strcmp(s, "..") == 0 || strpbrk(s, "/: \t\n\r\v\f")) {
			snprintf(why, whylen,
				 "must be an interface name of 1 to %d characters without '/', ':' or spaces (got '%s')",
				 IFNAME_MAX_CHARS, config_shown(s, sb));
			return -1;
		}
		return set_path(&cfg->setup_interface, s, why, whylen);
	}
	if (len == 0 || len > 32 || strpbrk(s, "/: \t\n\r\v\f")) {
		snprintf(why, whylen, "must be a user name of 1 to 32 characters (got '%s')",
			 config_shown(s, sb));
		return -1;
	}
	return set_path(&cfg->user, s, why, whylen);
}

/* See config_internal.h. */
int config_apply(struct pctx *pc, const struct opt_def *d, const char *s, bool b, char *why,
		 size_t whylen)
{
	struct config *cfg = pc->cfg;
	if (d->kind == K_INT || d->kind == K_SIZE)
		return set_int(cfg, d, s, why, whylen);
	if (d->kind == K_FLAG)
		return apply_flag(cfg, d, b);
	switch (d->id) {
	case OPT_LISTEN:
		return add_addr(cfg->listen, &cfg->nlisten, CONFIG_MAX_LISTEN, s, DNS_PORT, why,
				whylen);
	case OPT_UPSTREAM:
		return add_addr(cfg->upstream, &cfg->nupstream, CONFIG_MAX_UPSTREAMS, s, DNS_PORT,
				why, whylen);
	case OPT_ALLOW:
		return add_cidr(cfg, s, why, whylen);
	case OPT_STUB:
		return add_stub(cfg, s, why, whylen);
	case OPT_AUTOPATH_SEARCH:
		return add_search(cfg, s, why, whylen);
	case OPT_NODE_NAME:
		return set_node_name(cfg, s, why, whylen);
	case OPT_UPSTREAM_PROTO:
	case OPT_PODS:
	case OPT_LOG_LEVEL:
	case OPT_LOG_FORMAT:
		return apply_choice(cfg, d, s, why, whylen);
	case OPT_SETUP_INTERFACE:
	case OPT_USER:
		return apply_name(cfg, d, s, why, whylen);
	case OPT_METRICS:
		return set_optional_addr(&cfg->metrics, &cfg->has_metrics, s, METRICS_PORT, why,
					 whylen);
	case OPT_HEALTH:
		pc->health_set = true;
		return set_optional_addr(&cfg->health, &cfg->has_health, s, HEALTH_PORT, why,
					 whylen);
	case OPT_CONFIG:
	case OPT_VERSION:
	case OPT_HELP:
		return 0; /* handled by the caller */
	default:
		return apply_cluster(cfg, d, s, why, whylen);
	}
}

/* Empty the list of a repeatable option. */
void config_reset_list(struct config *cfg, enum opt_id id)
{
	switch (id) {
	case OPT_LISTEN: cfg->nlisten = 0; break;
	case OPT_UPSTREAM: cfg->nupstream = 0; break;
	case OPT_STUB: cfg->nstubs = 0; break;
	case OPT_AUTOPATH_SEARCH:
		cfg->nautopath_search = 0;
		cfg->autopath_search_set = false;
		break;
	case OPT_ALLOW: cfg->nallow = 0; break;
	default: break;
	}
}
