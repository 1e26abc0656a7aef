/* src/util/netaddr.c - socket addresses with their text form. */
#include "nodedns/util/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void format(struct netaddr *a)
{
	char ip[INET6_ADDRSTRLEN];
	if (a->sa.ss_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, &a->sa, sizeof(sin));
		inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof(ip));
		snprintf(a->text, sizeof(a->text), "%s:%u", ip, ntohs(sin.sin_port));
	} else {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, &a->sa, sizeof(sin6));
		inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof(ip));
		snprintf(a->text, sizeof(a->text), "[%s]:%u", ip, ntohs(sin6.sin6_port));
	}
}

void netaddr_set_port(struct netaddr *a, uint16_t port)
{
	if (a->sa.ss_family == AF_INET)
		((struct sockaddr_in *)&a->sa)->sin_port = htons(port);
	else if (a->sa.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->sa)->sin6_port = htons(port);
	else
		return;
	format(a);
}

uint16_t netaddr_port(const struct netaddr *a)
{
	if (a->sa.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
	if (a->sa.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
	return 0;
}

/* A decimal port of 1..65535 and nothing after it. */
static int parse_port(const char *s, uint16_t *out)
{
	if (*s < '0' || *s > '9')
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* Split @p s into its host (copied to @p host) and the port text after it. */
static int split_host(const char *s, char host[INET6_ADDRSTRLEN], const char **port_s,
		      int *family)
{
	size_t hostlen;

	*port_s = NULL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb)
			return -EINVAL;
		hostlen = (size_t)(rb - s - 1);
		if (rb[1] == ':')
			*port_s = rb + 2;
		else if (rb[1] != '\0')
			return -EINVAL;
		s++;
		*family = AF_INET6;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':')) {
			hostlen = strlen(s); /* bare IPv6, no port */
			*family = AF_INET6;
		} else {
			hostlen = colon ? (size_t)(colon - s) : strlen(s);
			if (colon)
				*port_s = colon + 1;
			*family = AF_INET;
		}
	}
	if (hostlen == 0 || hostlen >= INET6_ADDRSTRLEN)
		return -EINVAL;
	memcpy(host, s, hostlen);
	host[hostlen] = '\0';
	return 0;
}

int netaddr_parse(const char *s, uint16_t default_port, struct netaddr *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *port_s;
	int family;

	if (!s || !out || split_host(s, host, &port_s, &family) < 0)
		return -EINVAL;
	uint16_t port = default_port;
	if (port_s && parse_port(port_s, &port) < 0)
		return -EINVAL;
	if (port == 0)
		return -EINVAL;

	struct netaddr a;
	memset(&a, 0, sizeof(a));
	if (family == AF_INET) {
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(port);
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			return -EINVAL;
		memcpy(&a.sa, &sin, sizeof(sin));
		a.salen = sizeof(sin);
	} else {
		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1)
			return -EINVAL;
		memcpy(&a.sa, &sin6, sizeof(sin6));
		a.salen = sizeof(sin6);
	}
	format(&a);
	*out = a;
	return 0;
}

bool netaddr_sa_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

socklen_t netaddr_sa_len(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return sizeof(struct sockaddr_in);
	if (sa->sa_family == AF_INET6)
		return sizeof(struct sockaddr_in6);
	return 0;
}
