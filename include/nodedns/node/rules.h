/* include/nodedns/node/rules.h - node setup's iptables rules as text, and the iptables backend to use.
 *
 * Pure text: the rules for the listen addresses, how many copies of each an
 * iptables-save dump holds, and the iptables-restore --noflush input that
 * brings them to the wanted count. Plus where the iptables-save/-restore
 * binaries of a backend (plain, -legacy, -nft) are, and which backend
 * kube-proxy's KUBE-* chain counts point at. Running the rule changes is
 * netsetup.c's; rules_probe.c runs the -save commands of the backend check.
 */
#ifndef NODEDNS_NODE_RULES_H
#define NODEDNS_NODE_RULES_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodedns/node/netsetup.h"

/** One rule: `-t TABLE -A CHAIN MATCH -m comment --comment "COMMENT" -j TARGET`. */
struct rules_rule {
	int family;
	const char *table;  /* "raw" or "filter" (static strings) */
	const char *chain;  /* "PREROUTING", "INPUT", "OUTPUT" (static strings) */
	const char *target; /* "NOTRACK" or "ACCEPT" (static strings) */
	char match[128];    /* "-d 169.254.20.10/32 -p udp -m udp --dport 53" */
	char comment[128];  /* "nodedns: ..." (unique within its chain) */
};

/** The absolute paths of a backend's save and restore commands. */
struct rules_bins {
	char save[PATH_MAX];
	char restore[PATH_MAX];
};

/** The rules for @p addrs (deduplicated by IP and port) and @p health_port
 * (0: none) into @p out. @return how many, at most @p max. */
size_t rules_build(const struct netsetup_addr *addrs, size_t n, uint16_t health_port,
		   struct rules_rule *out, size_t max);

/** Count, for each of the @p n rules of @p family, the lines of
 * iptables-save output @p text that carry its chain and comment (only in the
 * rule's table when the text has "*table" lines). */
void rules_count(const char *text, size_t len, const struct rules_rule *rules, size_t n,
		 int family, unsigned *counts);

/**
 * The iptables-restore --noflush input that brings the rules of @p family
 * from @p counts to the wanted count (@p want: 1, or 0 to remove them all):
 * `-I CHAIN 1 ...` for missing rules (in reverse, so they end up in list
 * order), `-D CHAIN ...` for each extra copy. @return the text length
 * (0: nothing to do), or -ENOSPC.
 */
int rules_restore_text(const struct rules_rule *rules, size_t n, int family,
		       const unsigned *counts, unsigned want, char *out, size_t outlen);

/** Which backend KUBE-* line counts point at: the one with more, else PLAIN. */
enum netsetup_backend rules_pick_backend(unsigned legacy_kube, unsigned nft_kube);

/** What the auto backend check saw on the node (netsetup.c fills it in). */
struct rules_probe {
	bool has_legacy, has_nft, has_plain; /* iptables{-legacy,-nft,}-save found */
	int legacy_kube; /* KUBE-* in iptables-legacy-save; -1: the command failed */
	int nft_kube;    /* KUBE-* in iptables-nft-save; -1: the command failed */
	/* /proc/net/ip_tables_names lists a table: legacy iptables is in use in
	 * this network namespace. Readable without privileges, unlike
	 * iptables-legacy-save, which needs NET_RAW. */
	bool legacy_tables;
};

/** Why rules_choose_backend() chose what it chose. */
enum rules_basis {
	RULES_BASIS_KUBE = 0,  /* the backend holds kube-proxy's KUBE-* chains: sure */
	RULES_BASIS_LEGACY_TABLES, /* legacy could not be read, but has tables: a guess */
	RULES_BASIS_DEFAULT,   /* no KUBE-* chains seen: the system default, a fallback */
};

/**
 * The backend kube-proxy uses, from @p p: the one whose KUBE-* chains are
 * seen (rules_pick_backend()); else, when iptables-legacy-save failed (no
 * NET_RAW) and legacy tables exist, legacy; else the plain commands (the
 * system default), or whichever variant exists. @p basis says which.
 */
enum netsetup_backend rules_choose_backend(const struct rules_probe *p, enum rules_basis *basis);

/**
 * Fill @p p from the node (src/node/rules_probe.c): which -save commands
 * exist and, when both variants do, how many KUBE-* lines each prints (each
 * run bounded by @p timeout_ms) and whether legacy tables exist. @p why gets
 * why iptables-legacy-save failed, when it did.
 */
void rules_probe_node(struct rules_probe *p, uint32_t timeout_ms, char *why, size_t whylen);

/** True when @p text (the contents of /proc/net/ip_tables_names) names a table. */
bool rules_has_legacy_tables(const char *text);

/** "iptables-legacy", "iptables-nft" or "iptables" (static string). */
const char *rules_backend_name(enum netsetup_backend b);

/** Look @p name up in $PATH and the sbin directories ($PATH often lacks
 * them outside containers); the executable's path into @p out. */
bool rules_find_bin(const char *name, char *out, size_t len);

/** The save/restore commands of backend @p b for @p family into @p out.
 * @return false when either is missing. */
bool rules_resolve_bins(enum netsetup_backend b, int family, struct rules_bins *out);

#endif
