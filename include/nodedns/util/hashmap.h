/* include/nodedns/util/hashmap.h - a mutable chained hash map keyed by byte strings.
 *
 * For tables that one thread owns and changes (the cluster store's indexes,
 * a publisher's scratch maps). Keys are copied into the nodes (at most
 * UINT16_MAX bytes); values are opaque pointers the caller owns: the map
 * never frees one except through the free_val callback it is handed.
 * Hashing is the keyed SipHash of util/hash.h, so clients who choose keys
 * (object names from the API server) cannot aim them at one bucket. The map
 * keeps a copy of its struct hash_key: maps may be swapped or outlive the
 * key's owner. Not thread-safe.
 */
#ifndef NODEDNS_UTIL_HASHMAP_H
#define NODEDNS_UTIL_HASHMAP_H

#include "nodedns/util/hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hmap_node {
	struct hmap_node *next;
	uint64_t hash;
	void *val; /* the caller's */
	uint16_t klen;
	uint8_t key[];
};

struct hmap {
	struct hmap_node **b; /* nb chains, nb a power of two */
	size_t nb, n;         /* buckets, nodes */
	struct hash_key key;
};

/** An empty map hashing with @p key (copied). @return 0 or -ENOMEM. */
int hmap_init(struct hmap *m, const struct hash_key *key);
/** Free every node and the buckets; @p free_val (may be NULL) is called on
 * each value. A zeroed or already deinitialized map is fine. */
void hmap_deinit(struct hmap *m, void (*free_val)(void *));
/** Remove every node, keeping the bucket array. */
void hmap_clear(struct hmap *m, void (*free_val)(void *));
/** @return the value of @p key, NULL when absent. */
void *hmap_get(const struct hmap *m, const void *key, size_t klen);
/** Insert or replace; *old (may be NULL) gets the replaced value or NULL.
 * @return 0, -EINVAL (key over UINT16_MAX bytes) or -ENOMEM, the map unchanged. */
int hmap_put(struct hmap *m, const void *key, size_t klen, void *val, void **old);
/** Remove; @return the value (NULL when absent; *found, may be NULL, says which). */
void *hmap_del(struct hmap *m, const void *key, size_t klen, bool *found);

static inline size_t hmap_count(const struct hmap *m)
{
	return m->n;
}

/** Visit every node (struct hmap_node *node); the map must not change meanwhile. */
#define HMAP_FOREACH(m, node)                                                  \
	for (size_t hm_i_ = 0; hm_i_ < (m)->nb; hm_i_++)                       \
		for (struct hmap_node *node = (m)->b[hm_i_]; node; node = node->next)

#endif
