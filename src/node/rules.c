/* src/node/rules.c - node setup's iptables rules as text, and the iptables backend to use. */
#include "nodedns/node/rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ rules */

static bool same_ip(const struct netsetup_addr *a, const struct netsetup_addr *b)
{
	return a->family == b->family && memcmp(a->ip, b->ip, netsetup_ip_len(a->family)) == 0;
}

static bool add_rule(struct rules_rule *out, size_t max, size_t *n, int family,
		     const char *table, const char *chain, const char *target, const char *match,
		     const char *comment)
{
	if (*n >= max)
		return false;
	struct rules_rule *r = &out[(*n)++];
	memset(r, 0, sizeof(*r));
	r->family = family;
	r->table = table;
	r->chain = chain;
	r->target = target;
	snprintf(r->match, sizeof(r->match), "%s", match);
	snprintf(r->comment, sizeof(r->comment), "nodedns: %.110s", comment);
	return true;
}

size_t rules_build(const struct netsetup_addr *addrs, size_t n, uint16_t health_port,
		   struct rules_rule *out, size_t max)
{
	size_t k = 0;
	static const char *const protos[] = { "udp", "tcp" };
	for (size_t i = 0; i < n; i++) {
		const struct netsetup_addr *a = &addrs[i];
		bool dup_ip = false, dup = false;
		for (size_t j = 0; j < i; j++) {
			if (same_ip(&addrs[j], a)) {
				dup_ip = true;
				if (addrs[j].port == a->port)
					dup = true;
			}
		}
		if (dup)
			continue;
		char ip[INET6_ADDRSTRLEN], cidr[INET6_ADDRSTRLEN + 5], ipport[INET6_ADDRSTRLEN + 10];
		netsetup_ip_text(a->family, a->ip, ip, sizeof(ip));
		snprintf(cidr, sizeof(cidr), "%s/%d", ip, a->family == AF_INET ? 32 : 128);
		if (a->family == AF_INET)
			snprintf(ipport, sizeof(ipport), "%s:%u", ip, a->port);
		else
			snprintf(ipport, sizeof(ipport), "[%s]:%u", ip, a->port);
		char m[128], c[112];
		for (size_t p = 0; p < 2; p++) {
			const char *pr = protos[p];
			snprintf(m, sizeof(m), "-d %s -p %s -m %s --dport %u", cidr, pr, pr, a->port);
			snprintf(c, sizeof(c), "skip conntrack for %s to %s", pr, ipport);
			add_rule(out, max, &k, a->family, "raw", "PREROUTING", "NOTRACK", m, c);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
			snprintf(c, sizeof(c), "accept %s to %s", pr, ipport);
			add_rule(out, max, &k, a->family, "filter", "INPUT", "ACCEPT", m, c);
			snprintf(m, sizeof(m), "-s %s -p %s -m %s --sport %u", cidr, pr, pr, a->port);
			snprintf(c, sizeof(c), "skip conntrack for %s from %s", pr, ipport);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
			snprintf(c, sizeof(c), "accept %s from %s", pr, ipport);
			add_rule(out, max, &k, a->family, "filter", "OUTPUT", "ACCEPT", m, c);
		}
		if (health_port && !dup_ip) {
			if (a->family == AF_INET)
				snprintf(ipport, sizeof(ipport), "%s:%u", ip, health_port);
			else
				snprintf(ipport, sizeof(ipport), "[%s]:%u", ip, health_port);
			snprintf(m, sizeof(m), "-d %s -p tcp -m tcp --dport %u", cidr, health_port);
			snprintf(c, sizeof(c), "skip conntrack for health checks to %s", ipport);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
			snprintf(m, sizeof(m), "-s %s -p tcp -m tcp --sport %u", cidr, health_port);
			snprintf(c, sizeof(c), "skip conntrack for health checks from %s", ipport);
			add_rule(out, max, &k, a->family, "raw", "OUTPUT", "NOTRACK", m, c);
		}
	}
	return k;
}

/* The comment of an iptables-save "-A" line, unquoted, into @p out.
 * @return false when the line has none. */
static bool line_comment(const char *line, size_t len, char *out, size_t outlen)
{
	static const char key[] = " --comment ";
	const char *end = line + len;
	const char *p = memmem(line, len, key, sizeof(key) - 1);
	if (!p)
		return false;
	p += sizeof(key) - 1;
	size_t o = 0;
	if (p < end && *p == '"') {
		p++;
		while (p < end && *p != '"') {
			if (*p == '\\' && p + 1 < end)
				p++;
			if (o + 1 < outlen)
				out[o++] = *p;
			p++;
		}
	} else {
		while (p < end && *p != ' ') {
			if (o + 1 < outlen)
				out[o++] = *p;
			p++;
		}
	}
	out[o] = '\0';
	return true;
}

void rules_count(const char *text, size_t len, const struct rules_rule *rules, size_t n,
		 int family, unsigned *counts)
{
	for (size_t i = 0; i < n; i++)
		counts[i] = 0;
	char table[32] = "";
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l > 1 && p[0] == '*') {
			size_t tl = l - 1 < sizeof(table) - 1 ? l - 1 : sizeof(table) - 1;
			memcpy(table, p + 1, tl);
			table[tl] = '\0';
		} else if (l > 3 && memcmp(p, "-A ", 3) == 0) {
			const char *c = p + 3;
			const char *sp = memchr(c, ' ', l - 3);
			size_t cl = sp ? (size_t)(sp - c) : l - 3;
			char comment[256];
			if (line_comment(p, l, comment, sizeof(comment))) {
				for (size_t i = 0; i < n; i++) {
					const struct rules_rule *r = &rules[i];
					if (r->family != family || strlen(r->chain) != cl ||
					    memcmp(r->chain, c, cl) != 0 || strcmp(r->comment, comment) != 0)
						continue;
					if (table[0] && strcmp(table, r->table) != 0)
						continue;
					counts[i]++;
				}
			}
		}
		p += l + 1;
	}
}

static int put(char *out, size_t outlen, size_t *o, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int put(char *out, size_t outlen, size_t *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(out + *o, outlen - *o, fmt, ap);
	va_end(ap);
	if (k < 0 || (size_t)k >= outlen - *o)
		return -ENOSPC;
	*o += (size_t)k;
	return 0;
}

int rules_restore_text(const struct rules_rule *rules, size_t n, int family,
		       const unsigned *counts, unsigned want, char *out, size_t outlen)
{
	static const char *const tables[] = { "raw", "filter" };
	size_t o = 0;
	if (outlen == 0)
		return -ENOSPC;
	out[0] = '\0';
	for (size_t t = 0; t < 2; t++) {
		bool any = false;
		for (size_t i = 0; i < n; i++)
			if (rules[i].family == family && strcmp(rules[i].table, tables[t]) == 0 &&
			    counts[i] != want)
				any = true;
		if (!any)
			continue;
		if (put(out, outlen, &o, "*%s\n", tables[t]) < 0)
			return -ENOSPC;
		for (size_t i = 0; i < n; i++) {
			const struct rules_rule *r = &rules[i];
			if (r->family != family || strcmp(r->table, tables[t]) != 0)
				continue;
			for (unsigned k = want; k < counts[i]; k++)
				if (put(out, outlen, &o, "-D %s %s -m comment --comment \"%s\" -j %s\n",
					r->chain, r->match, r->comment, r->target) < 0)
					return -ENOSPC;
		}
		for (size_t i = n; i-- > 0;) {
			const struct rules_rule *r = &rules[i];
			if (r->family != family || strcmp(r->table, tables[t]) != 0 || counts[i] >= want)
				continue;
			if (put(out, outlen, &o, "-I %s 1 %s -m comment --comment \"%s\" -j %s\n",
				r->chain, r->match, r->comment, r->target) < 0)
				return -ENOSPC;
		}
		if (put(out, outlen, &o, "COMMIT\n") < 0)
			return -ENOSPC;
	}
	return (int)o;
}

/* -------------------------------------------------------- backends */

const char *rules_backend_name(enum netsetup_backend b)
{
	switch (b) {
	case NETSETUP_BACKEND_LEGACY: return "iptables-legacy";
	case NETSETUP_BACKEND_NFT: return "iptables-nft";
	default: return "iptables";
	}
}

bool rules_find_bin(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096];
	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/local/sbin:/usr/bin:/bin", path ? path : "");
	char *save = NULL;
	for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (*d != '/')
			continue;
		int k = snprintf(out, len, "%s/%s", d, name);
		if (k > 0 && (size_t)k < len && access(out, X_OK) == 0)
			return true;
	}
	return false;
}

bool rules_resolve_bins(enum netsetup_backend b, int family, struct rules_bins *out)
{
	const char *base = family == AF_INET6 ? "ip6tables" : "iptables";
	const char *mid = b == NETSETUP_BACKEND_LEGACY ? "-legacy" : b == NETSETUP_BACKEND_NFT ? "-nft" : "";
	char n[64];
	snprintf(n, sizeof(n), "%s%s-save", base, mid);
	if (!rules_find_bin(n, out->save, sizeof(out->save)))
		return false;
	snprintf(n, sizeof(n), "%s%s-restore", base, mid);
	return rules_find_bin(n, out->restore, sizeof(out->restore));
}

enum netsetup_backend rules_pick_backend(unsigned legacy_kube, unsigned nft_kube)
{
	if (legacy_kube == 0 && nft_kube == 0)
		return NETSETUP_BACKEND_PLAIN;
	return legacy_kube > nft_kube ? NETSETUP_BACKEND_LEGACY : NETSETUP_BACKEND_NFT;
}

bool rules_has_legacy_tables(const char *text)
{
	for (const char *p = text; p && *p; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return true;
	return false;
}

enum netsetup_backend rules_choose_backend(const struct rules_probe *p, enum rules_basis *basis)
{
	*basis = RULES_BASIS_DEFAULT;
	if (p->has_legacy && p->has_nft) {
		enum netsetup_backend b = rules_pick_backend(p->legacy_kube > 0 ? (unsigned)p->legacy_kube : 0,
							     p->nft_kube > 0 ? (unsigned)p->nft_kube : 0);
		if (b != NETSETUP_BACKEND_PLAIN) {
			*basis = RULES_BASIS_KUBE;
			return b;
		}
		if (p->legacy_kube < 0 && p->legacy_tables) {
			*basis = RULES_BASIS_LEGACY_TABLES;
			return NETSETUP_BACKEND_LEGACY;
		}
	}
	if (p->has_plain)
		return NETSETUP_BACKEND_PLAIN;
	return p->has_legacy ? NETSETUP_BACKEND_LEGACY : NETSETUP_BACKEND_NFT;
}
