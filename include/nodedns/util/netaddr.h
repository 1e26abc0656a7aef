/* include/nodedns/util/netaddr.h - socket addresses with their text form.
 *
 * One place for what config, server, upstream and admin all need: parse
 * "IPv4[:PORT]", "[IPv6][:PORT]" or a bare IPv6, print it back, and compare
 * two addresses. Pure: no sockets are opened here.
 */
#ifndef NODEDNS_UTIL_NETADDR_H
#define NODEDNS_UTIL_NETADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/** A socket address with its text form ("127.0.0.1:53", "[::1]:53"). */
struct netaddr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char text[64];
};

/**
 * Parse "IPv4[:PORT]" or "[IPv6][:PORT]" or a bare IPv6 (no port) into
 * @p out, with @p default_port when the text names none. A port of 0 (given
 * or defaulted) is refused. @return 0 or -EINVAL (@p out unchanged).
 */
int netaddr_parse(const char *s, uint16_t default_port, struct netaddr *out);

/** Set the port of @p a (AF_INET or AF_INET6) and refresh its text. */
void netaddr_set_port(struct netaddr *a, uint16_t port);

/** The port of @p a in host order (0 for another family). */
uint16_t netaddr_port(const struct netaddr *a);

/** Same family, address and port (IPv6 scope ids are ignored); false for
 * families other than AF_INET and AF_INET6. */
bool netaddr_sa_equal(const struct sockaddr *a, const struct sockaddr *b);

/** The length of the sockaddr of @p sa's family (0 for another family). */
socklen_t netaddr_sa_len(const struct sockaddr *sa);

#endif
