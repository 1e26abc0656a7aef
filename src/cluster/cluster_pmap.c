/* src/cluster/cluster_pmap.c - the persistent sharded map of snapshots: lookups, copy-on-write edits.
 *
 * A map is a two-level tree over PMAP_LEAVES immutable open-addressing
 * shards, chosen by the top bits of the keyed hash. A new map starts as the
 * old one shared by one reference; a batch of edits is sorted by leaf, and
 * only the leaves that receive an edit are rebuilt, with copies of the
 * nodes above them. So one change costs one leaf rebuild (the entries of
 * 1/4096th of the map) plus two nodes of PMAP_FANOUT pointers and their
 * reference increments, whatever the size of the map.
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

static void mid_unref(struct pm_mid *mid)
{
	if (!mid || atomic_fetch_sub_explicit(&mid->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i < PMAP_FANOUT; i++)
		shard_unref(mid->leaf[i]);
	free(mid);
}

static void root_unref(struct pm_root *root)
{
	if (!root || atomic_fetch_sub_explicit(&root->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i < PMAP_FANOUT; i++)
		mid_unref(root->mid[i]);
	free(root);
}

static uint32_t shard_of(uint64_t h)
{
	return (uint32_t)(h >> (64 - 2 * PMAP_FANOUT_BITS));
}

bool cluster_pmap_get(const struct pmap *m, const struct hash_key *hk, const void *key,
		      size_t klen, struct pm_val **val)
{
	uint64_t h = hash_bytes(hk, key, klen);
	const struct pm_shard *sh = cluster_pmap_leaf(m, shard_of(h));

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

int cluster_pmap_edits_reserve(struct pm_edits *e, size_t n)
{
	if (e->n + n <= e->cap)
		return 0;
	struct pm_edit *v = realloc(e->v, (e->n + n) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	e->v = v;
	e->cap = e->n + n;
	return 0;
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

/* Replace the leaf of @p mid that the edits g[0..n) fall into by a new one. */
static int shard_rebuild(struct pm_mid *mid, struct pm_edit *g, size_t n, uint64_t *mbytes)
{
	uint32_t idx = shard_of(g[0].hash) & (PMAP_FANOUT - 1);
	struct pm_shard *old = mid->leaf[idx], *sh = NULL;
	size_t total = 0, keybytes = 0, cap = 4;
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
		/* Rebuilt whole, never inserted into: a load of up to 3/4 is fine. */
		while (cap * 3 < total * 4)
			cap *= 2;
		size_t bytes = sizeof(*sh) + cap * sizeof(struct pm_slot) + keybytes;
		sh = calloc(1, bytes);
		if (!sh)
			return -ENOMEM;
		atomic_init(&sh->refs, 1);
		sh->bytes = (uint32_t)bytes;
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
	mid->leaf[idx] = sh;
	*mbytes += (sh ? sh->bytes : 0) - (old ? old->bytes : 0);
	shard_unref(old);
	return 0;
}

/* A private copy of @p n bytes of node @p old (NULL: a zeroed one), its
 * children referenced again, or NULL without memory. */
static void *node_copy(const void *old, size_t n)
{
	void *v = old ? malloc(n) : calloc(1, n);

	if (v && old)
		memcpy(v, old, n);
	return v;
}

static struct pm_mid *mid_copy(const struct pm_mid *old)
{
	struct pm_mid *mid = node_copy(old, sizeof(*mid));

	if (!mid)
		return NULL;
	atomic_init(&mid->refs, 1);
	for (uint32_t i = 0; old && i < PMAP_FANOUT; i++) {
		if (mid->leaf[i])
			atomic_fetch_add_explicit(&mid->leaf[i]->refs, 1, memory_order_relaxed);
	}
	return mid;
}

static struct pm_root *root_copy(const struct pm_root *old)
{
	struct pm_root *root = node_copy(old, sizeof(*root));

	if (!root)
		return NULL;
	atomic_init(&root->refs, 1);
	for (uint32_t i = 0; old && i < PMAP_FANOUT; i++) {
		if (root->mid[i])
			atomic_fetch_add_explicit(&root->mid[i]->refs, 1, memory_order_relaxed);
	}
	return root;
}

static bool mid_empty(const struct pm_mid *mid)
{
	for (uint32_t i = 0; i < PMAP_FANOUT; i++) {
		if (mid->leaf[i])
			return false;
	}
	return true;
}

static bool root_empty(const struct pm_root *root)
{
	for (uint32_t i = 0; i < PMAP_FANOUT; i++) {
		if (root->mid[i])
			return false;
	}
	return true;
}

int cluster_pmap_apply(struct pmap *m, struct pm_edits *e)
{
	struct pm_root *root;
	size_t i = 0;
	int rc = 0;

	if (e->n == 0)
		return 0;
	qsort(e->v, e->n, sizeof(*e->v), edit_cmp);
	if (!(root = root_copy(m->root)))
		return -ENOMEM;
	if (!m->root)
		m->bytes += sizeof(*root);
	root_unref(m->root);
	m->root = root;
	while (i < e->n && rc == 0) {
		uint32_t top = shard_of(e->v[i].hash) >> PMAP_FANOUT_BITS;
		struct pm_mid *mid = mid_copy(root->mid[top]);
		if (!mid)
			return -ENOMEM;
		if (!root->mid[top])
			m->bytes += sizeof(*mid);
		mid_unref(root->mid[top]);
		root->mid[top] = mid;
		while (i < e->n && rc == 0 && shard_of(e->v[i].hash) >> PMAP_FANOUT_BITS == top) {
			size_t j = i + 1;
			while (j < e->n && shard_of(e->v[j].hash) == shard_of(e->v[i].hash))
				j++;
			rc = shard_rebuild(mid, e->v + i, j - i, &m->bytes);
			i = j;
		}
		if (mid_empty(mid)) {
			mid_unref(mid);
			root->mid[top] = NULL;
			m->bytes -= sizeof(*mid);
		}
	}
	if (root_empty(root)) {
		root_unref(root);
		m->root = NULL;
		m->bytes = 0;
	}
	return rc;
}

void cluster_pmap_share(struct pmap *dst, const struct pmap *src)
{
	dst->root = src->root;
	dst->bytes = src->bytes;
	if (dst->root)
		atomic_fetch_add_explicit(&dst->root->refs, 1, memory_order_relaxed);
}

void cluster_pmap_release(struct pmap *m)
{
	root_unref(m->root);
	m->root = NULL;
	m->bytes = 0;
}
