/* src/cluster/cluster_names_internal.h - parsing DNS names for the cluster zone (inside the layer).
 *
 * A name is handled as an array of labels pointing into the caller's wire
 * bytes (struct lab: borrowed, never terminated). Labels compare
 * case-insensitively in ASCII.
 */
#ifndef NODEDNS_CLUSTER_NAMES_INTERNAL_H
#define NODEDNS_CLUSTER_NAMES_INTERNAL_H

#include "k8s_objects_internal.h"
#include "nodedns/util/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_LABELS 128

struct lab {
	const uint8_t *p; /* borrowed */
	uint8_t len;
};

/* The cluster domain in wire form (lower case) and as labels into it. */
struct zone {
	int n;
	struct lab labs[MAX_LABELS];
	uint8_t wire[256];
	size_t wire_len;
};

static inline bool cluster_names_label_eq(const struct lab *a, const struct lab *b)
{
	if (a->len != b->len)
		return false;
	for (uint8_t i = 0; i < a->len; i++) {
		if (wire_lower(a->p[i]) != wire_lower(b->p[i]))
			return false;
	}
	return true;
}

/** Is @p a the label @p s (lower case, terminated)? */
static inline bool cluster_names_label_is(const struct lab *a, const char *s)
{
	struct lab b = { (const uint8_t *)s, (uint8_t)strlen(s) };

	return cluster_names_label_eq(a, &b);
}

/** Split an uncompressed wire name into @p labs (MAX_LABELS; @p offs, may be
 * NULL, gets each label's offset in @p q). @return its label count without
 * the root, or -1 when it is not exactly one well-formed name of @p len bytes. */
int cluster_names_split(const uint8_t *q, size_t len, struct lab *labs, uint16_t *offs);
/** The zone of @p domain (presentation form, one optional trailing dot).
 * @return false when it is not a valid name. */
bool cluster_names_zone(const char *domain, struct zone *z);
/** Is the name labs[0..n) the zone or below it? */
bool cluster_names_in_zone(const struct lab *labs, int n, const struct zone *z);
/** A dashed pod label ("10-1-2-3", "fd00--1") to its address. */
bool cluster_names_pod_ip(const struct lab *l, struct k8s_ip *ip);
/** A complete reverse name: d.c.b.a.in-addr.arpa or 32 nibbles .ip6.arpa.
 * @return the index of its "in-addr"/"ip6" label (*ip filled), or -1. */
int cluster_names_reverse(const struct lab *labs, int n, struct k8s_ip *ip);

#endif
