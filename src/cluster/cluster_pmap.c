/* src/cluster/cluster_pmap.c - the persistent sharded map of snapshots: lookups, copy-on-write edits.
 *
 * A map is PMAP_SHARDS immutable open-addressing shards, chosen by the top
 * bits of the keyed hash. A new map starts as the old one's shards shared by
 * reference; a batch of edits is sorted by shard, and only the shards that
 * receive an edit are rebuilt. So one change costs one shard rebuild plus
 * PMAP_SHARDS pointer copies and reference increments.
 */
#include "cluster_snapshot_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void shard_unref(struct pm_shard *sh)
{
	if (!sh || atomic_fetch_sub_explicit(&sh->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i <= sh->mask; i++) {
		if (sh->slots[i].key)
			cluster_snapshot_val_unref(sh->slots[i].val);
	}
	free(sh);
}

static uint32_t shard_of(uint64_t h)
{
	return (uint32_t)(h >> (64 - PMAP_SHARD_BITS));
}

bool cluster_pmap_get(const struct pmap *m, const struct hash_key *hk, const void *key,
		      size_t klen, struct pm_val **val)
{
	uint64_t h = hash_bytes(hk, key, klen);
	const struct pm_shard *sh = m->shard[shard_of(h)];

	if (!sh)
		return false;
	for (uint32_t i = (uint32_t)h & sh->mask;; i = (i + 1) & sh->mask) {
		const struct pm_slot *s = &sh->slots[i];
		if (!s->key)
			return false;
		if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0) {
			if (val)
				*val = s->val;
			return true;
		}
	}
}

int cluster_pmap_edit(struct pm_edits *e, const struct hash_key *hk, const void *key,
		      size_t klen, bool del, struct pm_val *val)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 64;
		struct pm_edit *v = realloc(e->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		e->v = v;
		e->cap = cap;
	}
	struct pm_edit *x = &e->v[e->n++];
	x->hash = hash_bytes(hk, key, klen);
	x->klen = (uint16_t)klen;
	x->del = del;
	x->val = val;
	x->key = key;
	return 0;
}

void cluster_pmap_edits_free(struct pm_edits *e)
{
	for (size_t i = 0; i < e->n; i++)
		cluster_snapshot_val_unref(e->v[i].val);
	free(e->v);
	e->v = NULL;
	e->n = e->cap = 0;
}

static int edit_cmp(const void *a, const void *b)
{
	const struct pm_edit *x = a, *y = b;
	uint32_t sx = shard_of(x->hash), sy = shard_of(y->hash);

	if (sx != sy)
		return sx < sy ? -1 : 1;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return memcmp(x->key, y->key, x->klen);
}

static bool group_has(const struct pm_edit *g, size_t n, const struct pm_slot *s)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pm_edit *e = &g[mid];
		int c = e->hash != s->hash ? (e->hash < s->hash ? -1 : 1)
			: e->klen != s->klen ? (e->klen < s->klen ? -1 : 1)
					     : memcmp(e->key, s->key, s->klen);
		if (c == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static void slot_insert(struct pm_shard *sh, uint8_t **arena, uint64_t h, const uint8_t *key,
			uint16_t klen, struct pm_val *val)
{
	uint32_t i = (uint32_t)h & sh->mask;

	while (sh->slots[i].key)
		i = (i + 1) & sh->mask;
	memcpy(*arena, key, klen);
	sh->slots[i] = (struct pm_slot){ .hash = h, .key = *arena, .klen = klen, .val = val };
	*arena += klen;
	sh->n++;
}

/* Replace the shard that the edits g[0..n) fall into by a new one. */
static int shard_rebuild(struct pmap *m, struct pm_edit *g, size_t n)
{
	uint32_t idx = shard_of(g[0].hash);
	struct pm_shard *old = m->shard[idx], *sh = NULL;
	size_t total = 0, keybytes = 0, cap = 8;
	uint8_t *arena;

	for (uint32_t i = 0; old && i <= old->mask; i++) {
		const struct pm_slot *s = &old->slots[i];
		if (s->key && !group_has(g, n, s)) {
			total++;
			keybytes += s->klen;
		}
	}
	for (size_t k = 0; k < n; k++) {
		if (!g[k].del) {
			total++;
			keybytes += g[k].klen;
		}
	}
	if (total) {
		while (cap < 2 * total)
			cap *= 2;
		sh = calloc(1, sizeof(*sh) + cap * sizeof(struct pm_slot) + keybytes);
		if (!sh)
			return -ENOMEM;
		atomic_init(&sh->refs, 1);
		sh->mask = (uint32_t)(cap - 1);
		sh->slots = (struct pm_slot *)(sh + 1);
		arena = (uint8_t *)(sh->slots + cap);
		for (uint32_t i = 0; old && i <= old->mask; i++) {
			const struct pm_slot *s = &old->slots[i];
			if (s->key && !group_has(g, n, s)) {
				cluster_snapshot_val_ref(s->val);
				slot_insert(sh, &arena, s->hash, s->key, s->klen, s->val);
			}
		}
		for (size_t k = 0; k < n; k++) {
			if (!g[k].del) {
				slot_insert(sh, &arena, g[k].hash, g[k].key, g[k].klen, g[k].val);
				g[k].val = NULL; /* moved */
			}
		}
	}
	m->shard[idx] = sh;
	shard_unref(old);
	return 0;
}

int cluster_pmap_apply(struct pmap *m, struct pm_edits *e)
{
	size_t i = 0;
	int rc;

	if (e->n == 0)
		return 0;
	qsort(e->v, e->n, sizeof(*e->v), edit_cmp);
	while (i < e->n) {
		size_t j = i + 1;
		while (j < e->n && shard_of(e->v[j].hash) == shard_of(e->v[i].hash))
			j++;
		if ((rc = shard_rebuild(m, e->v + i, j - i)) < 0)
			return rc;
		i = j;
	}
	return 0;
}

void cluster_pmap_share(struct pmap *dst, const struct pmap *src)
{
	for (uint32_t i = 0; i < PMAP_SHARDS; i++) {
		dst->shard[i] = src->shard[i];
		if (dst->shard[i])
			atomic_fetch_add_explicit(&dst->shard[i]->refs, 1, memory_order_relaxed);
	}
}

void cluster_pmap_release(struct pmap *m)
{
	for (uint32_t i = 0; i < PMAP_SHARDS; i++) {
		shard_unref(m->shard[i]);
		m->shard[i] = NULL;
	}
}
