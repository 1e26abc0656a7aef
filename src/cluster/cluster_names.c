/* src/cluster/cluster_names.c - parse names of the cluster zone: labels, the zone, reverse and pod names.
 *
 * Pure parsing, no allocation: every function reads a name (wire form, as
 * the client sent it) and fills the caller's structs. Labels compare
 * case-insensitively in ASCII (RFC 4343).
 */
#include "cluster_names_internal.h"

#include "nodedns/util/wire.h"

#include <arpa/inet.h>
#include <string.h>

int cluster_names_split(const uint8_t *q, size_t len, struct lab *labs, uint16_t *offs)
{
	size_t o = 0;
	int n = 0;

	if (!q || len == 0 || len > 255)
		return -1;
	while (o < len) {
		uint8_t l = q[o];
		if (l == 0)
			return o + 1 == len ? n : -1;
		if (l > 63 || o + 1 + l >= len || n >= MAX_LABELS)
			return -1;
		labs[n].p = q + o + 1;
		labs[n].len = l;
		if (offs)
			offs[n] = (uint16_t)o;
		n++;
		o += 1 + (size_t)l;
	}
	return -1;
}

bool cluster_names_zone(const char *domain, struct zone *z)
{
	size_t len = strnlen(domain, 256), o = 0, start = 0;

	if (len == 256)
		return false;
	if (len && domain[len - 1] == '.')
		len--;
	if (len > 253)
		return false;
	for (size_t i = 0; len && i <= len; i++) {
		if (i < len && domain[i] != '.')
			continue;
		size_t ll = i - start;
		if (ll == 0 || ll > 63)
			return false;
		z->wire[o++] = (uint8_t)ll;
		for (size_t k = start; k < i; k++)
			z->wire[o++] = wire_lower((uint8_t)domain[k]);
		start = i + 1;
	}
	z->wire[o++] = 0;
	z->wire_len = o;
	z->n = cluster_names_split(z->wire, o, z->labs, NULL);
	return z->n >= 0;
}

bool cluster_names_in_zone(const struct lab *labs, int n, const struct zone *z)
{
	if (n < z->n)
		return false;
	for (int i = 0; i < z->n; i++) {
		if (!cluster_names_label_eq(&labs[n - z->n + i], &z->labs[i]))
			return false;
	}
	return true;
}

/* "10-1-2-3" (exactly three dashes, no "--") is IPv4, anything else is
 * IPv6 with dashes for colons. */
bool cluster_names_pod_ip(const struct lab *l, struct k8s_ip *ip)
{
	char buf[K8S_LABEL_MAX + 1];
	int dashes = 0;
	bool dd = false;

	for (uint8_t i = 0; i < l->len; i++) {
		buf[i] = (char)wire_lower(l->p[i]);
		if (buf[i] == '-') {
			dashes++;
			dd |= i && buf[i - 1] == '-';
		} else if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f'))) {
			return false;
		}
	}
	buf[l->len] = '\0';
	memset(ip, 0, sizeof(*ip));
	if (dashes == 3 && !dd) {
		for (char *p = buf; *p; p++)
			*p = *p == '-' ? '.' : *p;
		ip->fam = 4;
		return inet_pton(AF_INET, buf, ip->b) == 1;
	}
	for (char *p = buf; *p; p++)
		*p = *p == '-' ? ':' : *p;
	ip->fam = 6;
	return inet_pton(AF_INET6, buf, ip->b) == 1;
}

static int dec_label(const struct lab *l)
{
	int v = 0;

	if (l->len == 0 || l->len > 3 || (l->len > 1 && l->p[0] == '0'))
		return -1;
	for (uint8_t i = 0; i < l->len; i++) {
		if (l->p[i] < '0' || l->p[i] > '9')
			return -1;
		v = v * 10 + (l->p[i] - '0');
	}
	return v <= 255 ? v : -1;
}

static int hex_label(const struct lab *l)
{
	uint8_t c;

	if (l->len != 1)
		return -1;
	c = wire_lower(l->p[0]);
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int cluster_names_reverse(const struct lab *labs, int n, struct k8s_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	if (n == 6 && cluster_names_label_is(&labs[4], "in-addr") &&
	    cluster_names_label_is(&labs[5], "arpa")) {
		for (int i = 0; i < 4; i++) {
			int v = dec_label(&labs[i]);
			if (v < 0)
				return -1;
			ip->b[3 - i] = (uint8_t)v;
		}
		ip->fam = 4;
		return 4;
	}
	if (n == 34 && cluster_names_label_is(&labs[32], "ip6") &&
	    cluster_names_label_is(&labs[33], "arpa")) {
		for (int i = 0; i < 32; i++) {
			int v = hex_label(&labs[i]), j = 31 - i;
			if (v < 0)
				return -1;
			ip->b[j / 2] |= (uint8_t)(j % 2 ? v : v << 4);
		}
		ip->fam = 6;
		return 32;
	}
	return -1;
}
