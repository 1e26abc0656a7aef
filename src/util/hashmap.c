/* src/util/hashmap.c - the mutable chained hash map (keyed SipHash, doubling buckets). */
#include "nodedns/util/hashmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HMAP_INITIAL_BUCKETS 16

int hmap_init(struct hmap *m, const struct hash_key *key)
{
	m->nb = HMAP_INITIAL_BUCKETS;
	m->n = 0;
	m->key = *key;
	m->b = calloc(m->nb, sizeof(*m->b));
	return m->b ? 0 : -ENOMEM;
}

void hmap_clear(struct hmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->nb; i++) {
		struct hmap_node *n = m->b[i];
		while (n) {
			struct hmap_node *next = n->next;
			if (free_val)
				free_val(n->val);
			free(n);
			n = next;
		}
		m->b[i] = NULL;
	}
	m->n = 0;
}

void hmap_deinit(struct hmap *m, void (*free_val)(void *))
{
	if (!m->b)
		return;
	hmap_clear(m, free_val);
	free(m->b);
	m->b = NULL;
	m->nb = 0;
}

static struct hmap_node **find(const struct hmap *m, uint64_t h, const void *key, size_t klen)
{
	struct hmap_node **pp = &m->b[h & (m->nb - 1)];

	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
			return pp;
	}
	return pp;
}

void *hmap_get(const struct hmap *m, const void *key, size_t klen)
{
	struct hmap_node **pp = find(m, hash_bytes(&m->key, key, klen), key, klen);

	return *pp ? (*pp)->val : NULL;
}

static void grow(struct hmap *m)
{
	size_t nb = m->nb * 2;
	struct hmap_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* keep the longer chains */
	for (size_t i = 0; i < m->nb; i++) {
		struct hmap_node *n = m->b[i];
		while (n) {
			struct hmap_node *next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
			n = next;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
}

int hmap_put(struct hmap *m, const void *key, size_t klen, void *val, void **old)
{
	uint64_t h = hash_bytes(&m->key, key, klen);
	struct hmap_node **pp = find(m, h, key, klen);

	if (*pp) {
		if (old)
			*old = (*pp)->val;
		(*pp)->val = val;
		return 0;
	}
	if (klen > UINT16_MAX)
		return -EINVAL;
	struct hmap_node *n = malloc(sizeof(*n) + klen);
	if (!n)
		return -ENOMEM;
	n->hash = h;
	n->val = val;
	n->klen = (uint16_t)klen;
	memcpy(n->key, key, klen);
	n->next = NULL;
	*pp = n;
	m->n++;
	if (old)
		*old = NULL;
	if (m->n > m->nb)
		grow(m);
	return 0;
}

void *hmap_del(struct hmap *m, const void *key, size_t klen, bool *found)
{
	struct hmap_node **pp = find(m, hash_bytes(&m->key, key, klen), key, klen);
	struct hmap_node *n = *pp;
	void *val;

	if (found)
		*found = n != NULL;
	if (!n)
		return NULL;
	*pp = n->next;
	val = n->val;
	free(n);
	m->n--;
	return val;
}
