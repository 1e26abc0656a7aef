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
 * iptables. Commands run with posix_spawn (no shell), stderr captured, each
 * bounded by cmd_timeout_ms; inserts and deletes go through one
 * `iptables-restore -w N --noflush` per family so nodedns queues on the
 * xtables lock with kube-proxy. The backend (iptables-legacy or iptables-nft)
 * is the one whose tables hold KUBE-* chains, else the system's `iptables`;
 * while no KUBE-* chain is found it is looked for again at every ensure.
 *
 * Threads: a struct netsetup is used by one thread at a time (the
 * supervisor runs it on a libuv work thread); its stats may be read by any
 * thread or process (relaxed atomics).
 */
#ifndef NODEDNS_NETSETUP_H
#define NODEDNS_NETSETUP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodedns/util/metrics.h"

#define NETSETUP_MAX_ADDRS 16
/* 12 rules per listen IP:PORT at most (see netsetup_build_rules). */
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

/*** Exposed for unit tests: pure builders and parsers. ***/

/**
 * The RTM_NEWLINK request that creates dummy link @p ifname
 * (NLM_F_REQUEST|ACK|CREATE|EXCL, IFLA_IFNAME, IFLA_LINKINFO/IFLA_INFO_KIND
 * "dummy") in @p buf. @return the message length, 0 when it does not fit.
 */
size_t netsetup_msg_newlink_dummy(void *buf, size_t len, uint32_t seq, const char *ifname);

/** RTM_NEWADDR (@p add, with NLM_F_CREATE|EXCL) or RTM_DELADDR for @p a as a
 * host address on @p ifindex; IPv6 gets IFA_F_NODAD. @return length or 0. */
size_t netsetup_msg_addr(void *buf, size_t len, uint32_t seq, bool add, int ifindex,
			 const struct netsetup_addr *a);

/** One rule: `-t TABLE -A CHAIN MATCH -m comment --comment "COMMENT" -j TARGET`. */
struct netsetup_rule {
	int family;
	const char *table;  /* "raw" or "filter" */
	const char *chain;  /* "PREROUTING", "INPUT", "OUTPUT" */
	const char *target; /* "NOTRACK" or "ACCEPT" */
	char match[128];    /* "-d 169.254.20.10/32 -p udp -m udp --dport 53" */
	char comment[128];  /* "nodedns: ..." (unique within its chain) */
};

/** The rules for @p addrs (deduplicated by IP and port) and @p health_port
 * (0: none) into @p out. @return how many, at most @p max. */
size_t netsetup_build_rules(const struct netsetup_addr *addrs, size_t n, uint16_t health_port,
			    struct netsetup_rule *out, size_t max);

/** Count, for each of the @p n rules of @p family, the lines of
 * iptables-save output @p text that carry its chain and comment (only in the
 * rule's table when the text has "*table" lines). */
void netsetup_count_rules(const char *text, size_t len, const struct netsetup_rule *rules,
			  size_t n, int family, unsigned *counts);

/**
 * The iptables-restore --noflush input that brings the rules of @p family
 * from @p counts to the wanted count (@p want: 1, or 0 to remove them all):
 * `-I CHAIN 1 ...` for missing rules (in reverse, so they end up in list
 * order), `-D CHAIN ...` for each extra copy. @return the text length
 * (0: nothing to do), or -ENOSPC.
 */
int netsetup_restore_text(const struct netsetup_rule *rules, size_t n, int family,
			  const unsigned *counts, unsigned want, char *out, size_t outlen);

/** Result of netsetup_run(). */
struct netsetup_cmd {
	int status;     /* exit code; 128+N when killed by signal N; -1 on timeout */
	char *out;      /* stdout, NUL-terminated (owned: free()), NULL when not asked */
	size_t outlen;
	char err[1024]; /* stderr (truncated), NUL-terminated, trailing newline cut */
};

/**
 * Run @p path with @p argv (no shell) and @p in on its stdin, capturing
 * stdout when @p max_out > 0 (more than that is an error: -EFBIG) and
 * stderr; kill it after @p timeout_ms. @return 0 when it ran (see status),
 * -ETIMEDOUT (status -1), or -errno when it could not start.
 */
int netsetup_run(const char *path, char *const argv[], const char *in, size_t inlen,
		 size_t max_out, uint32_t timeout_ms, struct netsetup_cmd *res);

/** Which backend KUBE-* line counts point at: the one with more, else PLAIN. */
enum netsetup_backend netsetup_pick_backend(unsigned legacy_kube, unsigned nft_kube);

#endif
