/* include/nodedns/node/netsetup.h - node setup: the listen addresses on an interface, NOTRACK/ACCEPT rules.
 *
 * What it maintains (--setup-interface NAME, --setup-iptables), as upstream
 * NodeLocal DNSCache does:
 *
 *  - interface: a `dummy` link NAME (created with rtnetlink when absent and
 *    brought up), holding every listen IP as a host address (/32, or /128 with
 *    IFA_F_NODAD). When NAME already exists (an operator's link, a veth in
 *    tests) the addresses are added to it and its state is left alone.
 *  - rules: for every listen IP:PORT (and the health port), at the top of the
 *    chains: raw PREROUTING NOTRACK + filter INPUT ACCEPT for queries to it,
 *    raw OUTPUT NOTRACK + filter OUTPUT ACCEPT for answers from it, raw OUTPUT
 *    NOTRACK for the node's own queries to it, and raw OUTPUT NOTRACK both
 *    ways for the health port; UDP and TCP; ip6tables for IPv6. Each rule
 *    carries its own comment "nodedns: ..." which is how it is found again.
 *
 * Ownership. Teardown removes only what nodedns created: its rules (found by
 * comment), the addresses it added and the link if it created it. What was
 * created is recorded in a state file (netsetup_config.state_path) shared by
 * every nodedns on the node, so that the instance that tears down after a
 * rolling update removes what the previous one created. Records carry the
 * ifindex, so a link deleted and re-created by someone else is never ours.
 *
 * iptables. Commands run without a shell (node/subprocess.h), stderr
 * captured, each bounded by cmd_timeout_ms; inserts and deletes go through one
 * `iptables-restore -w N --noflush` per family so nodedns queues on the
 * xtables lock with kube-proxy. The backend (iptables-legacy or iptables-nft)
 * is the one whose tables hold KUBE-* chains, else the system's `iptables`;
 * while no KUBE-* chain is found it is looked for again at every ensure.
 *
 * Modules: node/link.h (rtnetlink), node/rules.h (rule text, backends),
 * node/subprocess.h (running the commands), node/nodestate.h (the state
 * file); this one orchestrates them.
 *
 * Threads: a struct netsetup is used by one thread at a time (the
 * supervisor runs it on a libuv work thread); its stats may be read by any
 * thread or process (relaxed atomics).
 */
#ifndef NODEDNS_NETSETUP_H
#define NODEDNS_NETSETUP_H

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "nodedns/util/metrics.h"

#define NETSETUP_MAX_ADDRS 16
/* 12 rules per listen IP:PORT at most (see rules_build). */
#define NETSETUP_MAX_RULES (NETSETUP_MAX_ADDRS * 12)
#define NETSETUP_CMD_TIMEOUT_MS 10000 /* one iptables command, lock wait included */
#define NETSETUP_LOCK_WAIT_S 5        /* iptables-restore -w */
#define NETSETUP_NL_TIMEOUT_MS 2000   /* one rtnetlink request */

/** One listen address: IP and DNS port. */
struct netsetup_addr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t ip[16];
	uint16_t port;
};

/** The address bytes of @p family: 4 for AF_INET, else 16. */
static inline size_t netsetup_ip_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

/** @p ip of @p family as text into @p buf ("?" when it cannot be printed).
 * @return @p buf. */
static inline const char *netsetup_ip_text(int family, const uint8_t *ip, char *buf, size_t len)
{
	if (!inet_ntop(family, ip, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* Lists the legacy iptables tables of the network namespace, world-readable. */
#define NETSETUP_IP_TABLES_NAMES "/proc/net/ip_tables_names"

/** Which iptables binaries to use. */
enum netsetup_backend {
	NETSETUP_BACKEND_AUTO = 0, /* the one with KUBE-* chains, else plain */
	NETSETUP_BACKEND_PLAIN,    /* iptables, iptables-save, ... */
	NETSETUP_BACKEND_LEGACY,   /* iptables-legacy-* */
	NETSETUP_BACKEND_NFT,      /* iptables-nft-* */
};

struct netsetup_config {
	const char *ifname; /* NULL: leave interfaces alone */
	bool iptables;      /* maintain the rules */
	struct netsetup_addr addrs[NETSETUP_MAX_ADDRS];
	size_t naddrs;
	uint16_t health_port;   /* 0: no health-port rules */
	const char *state_path; /* NULL: ownership kept in memory only */
	enum netsetup_backend backend;
	uint32_t cmd_timeout_ms; /* 0: NETSETUP_CMD_TIMEOUT_MS */
	uint32_t lock_wait_s;    /* 0: NETSETUP_LOCK_WAIT_S */
};

/* Error kinds, label values of nodedns_node_setup_errors_total{kind}. */
#define NETSETUP_ERRORS(XX)                                                    \
	XX(INTERFACE, "interface")     /* look up, create or bring up the link */ \
	XX(ADDRESS, "address")         /* list, add or remove an address */     \
	XX(IPTABLES, "iptables")       /* a command failed */                    \
	XX(IPTABLES_LOCK, "iptables_lock") /* the xtables lock was held too long */ \
	XX(IPTABLES_TIMEOUT, "iptables_timeout") /* a command was killed */     \
	XX(STATE, "state")             /* the ownership state file */

enum netsetup_error {
#define XX(e, s) NETSETUP_ERR_##e,
	NETSETUP_ERRORS(XX)
#undef XX
	NETSETUP_ERR_KINDS
};

/* What a later ensure found missing and put back (someone removed it). */
#define NETSETUP_REPAIRS(XX)                                                   \
	XX(INTERFACE, "interface")                                             \
	XX(ADDRESS, "address")                                                 \
	XX(RULE, "rule")

enum netsetup_repair {
#define XX(e, s) NETSETUP_FIX_##e,
	NETSETUP_REPAIRS(XX)
#undef XX
	NETSETUP_FIX_KINDS
};

struct netsetup_stats {
	_Atomic uint64_t errors[NETSETUP_ERR_KINDS];
	_Atomic uint64_t repairs[NETSETUP_FIX_KINDS];
	_Atomic uint64_t ensures; /* ensure passes run */
	_Atomic int64_t ok;       /* gauge: 1 when the last pass reached the wanted state */
	_Atomic int64_t rules;    /* gauge: our rules present after the last pass */
	/* The auto backend check ended without seeing kube-proxy's chains
	 * (a guess or the system default): passes counted, and a gauge that
	 * is 1 while the backend in use is such a fallback. */
	_Atomic uint64_t backend_fallbacks;
	_Atomic int64_t backend_fallback;
};

struct netsetup;

/**
 * Prepare node setup for @p cfg (copied; strings are copied too). Nothing
 * is changed on the node yet. @p stats (borrowed until netsetup_free()) may
 * live in memory shared with another process.
 * @return 0, -EINVAL (no address, bad family), -ENOMEM.
 */
int netsetup_new(const struct netsetup_config *cfg, struct netsetup_stats *stats,
		 struct netsetup **out);

/**
 * One ensure pass, idempotent: the link exists (created when absent), the
 * addresses are on it; with @p rules, every rule is present exactly once
 * (missing ones inserted at the top of their chain, duplicates removed).
 * Without @p rules the rules are not touched, except that they are removed
 * when the interface could not be ensured (NOTRACK towards an address that
 * is not local would black-hole the node's DNS). Failures are logged and
 * counted in the stats by kind. Blocks for at most a few command timeouts.
 * @return 0 when everything asked for is in place, else the first -errno.
 */
int netsetup_ensure(struct netsetup *ns, bool rules);

/** Remove every rule of ours (duplicates too). @return 0 or -errno. */
int netsetup_remove_rules(struct netsetup *ns);

/**
 * Graceful teardown: the rules first, then the addresses nodedns added and
 * the link if nodedns created it. Removing what is already gone is fine.
 * @return 0 or the first -errno (it still tries every step).
 */
int netsetup_teardown(struct netsetup *ns);

/** Free @p ns (changes nothing on the node). NULL is fine. */
void netsetup_free(struct netsetup *ns);

/** The nodedns_node_setup_* series of @p st. */
void netsetup_render_metrics(const struct netsetup_stats *st, struct mbuf *b);

#endif
