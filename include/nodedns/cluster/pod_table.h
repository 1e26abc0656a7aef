/* include/nodedns/cluster/pod_table.h - the node's pods by IP: immutable, reference-counted.
 *
 * What a worker asks on the autopath hook (src/dns/autopath.c): which
 * namespace is the pod at this source address in? One open-addressing table
 * of the addresses of the eligible pods of the node (pod_object.h), each with
 * its namespace as a DNS label in wire form, so the hook compares it with a
 * query name without converting anything. An address that two pods of
 * different namespaces claim (a reused IP, seen before the old pod's
 * deletion) is kept as "unknown": autopath is never guessed.
 *
 * Tables are built on the control thread (pod_set.h) and handed to the
 * workers like cluster snapshots: each holder owns one reference, reads
 * without locks, and may drop it from any thread.
 */
#ifndef NODEDNS_CLUSTER_POD_TABLE_H
#define NODEDNS_CLUSTER_POD_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "nodedns/cluster/pod_object.h"

struct pod_table;

/** One address of an eligible pod and its namespace (borrowed). */
struct pod_table_pair {
	struct pod_ip ip;
	const char *ns;
};

/** Build a table of @p n pairs (borrowed for the call). @return the table
 * with one reference, or NULL when out of memory. n == 0 is a valid table. */
struct pod_table *pod_table_new(const struct pod_table_pair *pairs, size_t n);

/** Take one more reference (any thread). */
void pod_table_ref(struct pod_table *t);
/** Drop one reference (any thread); the last one frees it. NULL is fine. */
void pod_table_unref(struct pod_table *t);

/**
 * The namespace of the pod at @p sa (AF_INET, AF_INET6, or an IPv4-mapped
 * IPv6 address), as a DNS label in wire form (a length byte, then the
 * lower-case bytes), or NULL when the address is not a known pod's (or
 * ambiguous, or @p t is NULL). Borrowed from @p t.
 */
const uint8_t *pod_table_lookup(const struct pod_table *t, const struct sockaddr *sa);

/** Addresses in the table (ambiguous ones included). */
size_t pod_table_count(const struct pod_table *t);

#endif
