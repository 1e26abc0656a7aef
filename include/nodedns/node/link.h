/* include/nodedns/node/link.h - rtnetlink for node setup: the dummy link and its host addresses.
 *
 * One short-lived NETLINK_ROUTE socket (libmnl) per pass, with a receive
 * timeout of NETSETUP_NL_TIMEOUT_MS per request. This module only talks to
 * the kernel; what is ours and what to log is decided in netsetup.c.
 * Used by one thread at a time.
 */
#ifndef NODEDNS_NODE_LINK_H
#define NODEDNS_NODE_LINK_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodedns/node/netsetup.h"

#define LINK_BUF_BYTES 32768
#define LINK_MAX_DUMP_ADDRS 64

/** An open rtnetlink socket and its request/reply buffer. */
struct link_nl {
	struct mnl_socket *s; /* owned: closed by link_close() */
	uint32_t portid;
	uint32_t *seq; /* borrowed until link_close(): the caller's sequence counter */
	char buf[LINK_BUF_BYTES];
};

/** What RTM_GETLINK says about a link. */
struct link_info {
	int index;
	unsigned flags; /* IFF_* */
	char kind[32];  /* IFLA_INFO_KIND, "" when none */
};

/** The IPv4 and IPv6 addresses of one link (ports unset). */
struct link_addrs {
	int ifindex;
	struct netsetup_addr v[LINK_MAX_DUMP_ADDRS];
	size_t n;
};

/**
 * Open and bind a socket into @p nl (caller's memory). @p seq: borrowed
 * until link_close(), incremented for each request.
 * @return 0 or -errno (nothing left open).
 */
int link_open(struct link_nl *nl, uint32_t *seq);

/** Close the socket of @p nl; safe when it is not open. */
void link_close(struct link_nl *nl);

/** Look link @p name up. @return 0 (found), -ENODEV (absent) or -errno. */
int link_get(struct link_nl *nl, const char *name, struct link_info *li);

/** Create dummy link @p name. @return 0, -EEXIST, -EOPNOTSUPP (no dummy
 * type in the kernel), -EINVAL (bad name) or another -errno. */
int link_create_dummy(struct link_nl *nl, const char *name);

/** Bring link @p ifindex up. @return 0 or -errno. */
int link_set_up(struct link_nl *nl, int ifindex);

/** Delete link @p ifindex. @return 0 or -errno (-ENODEV: gone). */
int link_delete(struct link_nl *nl, int ifindex);

/** The addresses on link @p ifindex into @p d (caller's memory; the
 * IPv4 local address where there is one). @return 0 or -errno. */
int link_dump_addrs(struct link_nl *nl, int ifindex, struct link_addrs *d);

/** Whether @p d holds the IP of @p a (the port is not compared). */
bool link_addrs_has(const struct link_addrs *d, const struct netsetup_addr *a);

/** Add (@p add) or remove host address @p a (borrowed) on @p ifindex.
 * @return 0, -EEXIST (add), -EADDRNOTAVAIL (remove) or another -errno. */
int link_addr_change(struct link_nl *nl, bool add, int ifindex, const struct netsetup_addr *a);

/*** Exposed for unit tests: the request builders. ***/

/**
 * The RTM_NEWLINK request that creates dummy link @p ifname
 * (NLM_F_REQUEST|ACK|CREATE|EXCL, IFLA_IFNAME, IFLA_LINKINFO/IFLA_INFO_KIND
 * "dummy") in @p buf. @return the message length, 0 when it does not fit.
 */
size_t link_msg_newlink_dummy(void *buf, size_t len, uint32_t seq, const char *ifname);

/** RTM_NEWADDR (@p add, with NLM_F_CREATE|EXCL) or RTM_DELADDR for @p a as a
 * host address on @p ifindex; IPv6 gets IFA_F_NODAD. @return length or 0. */
size_t link_msg_addr(void *buf, size_t len, uint32_t seq, bool add, int ifindex,
		     const struct netsetup_addr *a);

#endif
