/* src/dns/cache.c - sharded, byte-bounded, TTL-aware answer cache. */
#include "nodedns/dns/cache.h"
#include "nodedns/util/hash.h"
#include "nodedns/util/wire.h"

/*
 * Memory layout. Every entry is one malloc:
 *
 *   struct entry (52 bytes on LP64) | ttl_off[nttl] (2 bytes each) | key | wire
 *
 * The header holds the hash chain link, the LRU links, the absolute expiry in
 * ms, the TTL and stale window, the low 32 bits of the hash and uint16 lengths.
 * The TTL offsets follow the header directly so they stay 2-byte aligned; key
 * and wire are plain bytes after them.
 *
 * Accounting: an entry costs its malloc size plus ENTRY_OVERHEAD (32 bytes):
 * 16 for the allocator (glibc's 8-byte chunk header plus 8 of rounding to 16
 * on average) and 16 for its slot in the bucket array (it doubles when
 * entries outnumber buckets and never shrinks, so a full shard has 1 to 2
 * slots of 8 bytes per entry). So the
 * cost of an entry beyond its wire is 52 + 32 + keylen + 2 * nttl bytes: about
 * 122 bytes for a typical 30-byte key with 4 TTLs, comfortably under 250.
 * The fixed shard array and the initial bucket arrays are not counted.
 *
 * Locking: one mutex per shard protects its buckets, its LRU list and the
 * entries in it. Entries are allocated and filled before the lock is taken and
 * freed after it is dropped; only linking, unlinking and the copy of a hit's
 * wire happen under it.
 *
 * Hash: SipHash-1-3 under a random key (util/hash.h), so a client cannot
 * build colliding names.
 */

#include <errno.h>
#include <threads.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ENTRY_OVERHEAD 32u
#define SHARDS_DEFAULT 16u
#define SHARDS_MAX 4096u
#define BUCKETS_INIT 64u
#define BUCKETS_MAX (1u << 24)
#define STALE_KEEP_MAX_MS UINT32_MAX /* ~49.7 days; longer windows are clamped */
#define PREFETCH_MIN_TTL_S 10u

#define F_PREFETCHED 0x01u

struct entry {
	struct entry *hnext;        /* bucket chain; free list once unlinked */
	struct entry *prev, *next;  /* LRU: head is most recently used */
	uint64_t expire_ms;         /* fresh while now < expire_ms */
	uint32_t ttl_s;             /* original validity, for countdown and prefetch */
	uint32_t stale_ms;          /* kept this long after expire_ms */
	uint32_t hash;              /* low 32 bits of the key hash */
	uint16_t keylen, len, nttl;
	uint8_t kind, flags;
	uint16_t ttl_off[];         /* then key[keylen], then wire[len] */
};

/* The overhead paragraph above relies on this. */
_Static_assert(offsetof(struct entry, ttl_off) <= 56, "entry header grew");

struct shard {
	alignas(64) mtx_t lock;
	struct entry **buckets;
	uint32_t nbuckets;          /* power of two */
	uint32_t max_buckets;
	struct entry *head, *tail;  /* LRU list */
	uint64_t bytes;             /* accounted bytes of the entries below */
	uint64_t nentries;
	uint64_t budget;
};

struct cache {
	struct cache_stats stats;
	struct hash_key key;        /* SipHash key */
	unsigned nshards;
	unsigned shard_bits;
	struct shard *shards;
};

/* ---- entries ---- */

static inline size_t entry_alloc_size(size_t keylen, size_t len, size_t nttl)
{
	return offsetof(struct entry, ttl_off) + nttl * sizeof(uint16_t) + keylen + len;
}

static inline uint64_t entry_cost(const struct entry *e)
{
	return entry_alloc_size(e->keylen, e->len, e->nttl) + ENTRY_OVERHEAD;
}

static inline uint8_t *entry_key(struct entry *e)
{
	return (uint8_t *)(e->ttl_off + e->nttl);
}

static inline uint8_t *entry_wire(struct entry *e)
{
	return entry_key(e) + e->keylen;
}

static void free_chain(struct entry *e)
{
	while (e) {
		struct entry *n = e->hnext;
		free(e);
		e = n;
	}
}

static inline void stat_inc(_Atomic uint64_t *v)
{
	atomic_fetch_add_explicit(v, 1, memory_order_relaxed);
}

/* ---- shard internals (called with the shard lock held) ---- */

static inline struct shard *shard_of(struct cache *c, uint64_t h)
{
	return &c->shards[c->shard_bits ? (size_t)(h >> (64 - c->shard_bits)) : 0];
}

static struct entry **bucket_find(struct shard *s, uint32_t h, const uint8_t *key, size_t keylen)
{
	struct entry **pp = &s->buckets[h & (s->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->hnext) {
		struct entry *e = *pp;
		if (e->hash == h && e->keylen == keylen && memcmp(entry_key(e), key, keylen) == 0)
			return pp;
	}
	return pp;
}

static void lru_unlink(struct shard *s, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_head(struct shard *s, struct entry *e)
{
	e->prev = NULL;
	e->next = s->head;
	if (s->head)
		s->head->prev = e;
	else
		s->tail = e;
	s->head = e;
}

/* Unlink @p e (whose chain slot is @p pp) and put it on the free list @p dead. */
static void shard_remove(struct cache *c, struct shard *s, struct entry **pp, struct entry *e,
			 struct entry **dead)
{
	uint64_t cost = entry_cost(e);
	*pp = e->hnext;
	lru_unlink(s, e);
	s->bytes -= cost;
	s->nentries--;
	atomic_fetch_sub_explicit(&c->stats.bytes, (int64_t)cost, memory_order_relaxed);
	atomic_fetch_sub_explicit(&c->stats.entries, 1, memory_order_relaxed);
	e->hnext = *dead;
	*dead = e;
}

static struct entry **chain_slot(struct shard *s, struct entry *e)
{
	struct entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	return pp;
}

/* Double the bucket array when entries outnumber buckets; failure is harmless. */
static void shard_maybe_grow(struct shard *s)
{
	if (s->nentries <= s->nbuckets || s->nbuckets >= s->max_buckets)
		return;
	uint32_t nb = s->nbuckets * 2;
	struct entry **nbk = calloc(nb, sizeof(*nbk));
	if (!nbk)
		return;
	for (uint32_t i = 0; i < s->nbuckets; i++) {
		struct entry *e = s->buckets[i];
		while (e) {
			struct entry *n = e->hnext;
			struct entry **slot = &nbk[e->hash & (nb - 1)];
			e->hnext = *slot;
			*slot = e;
			e = n;
		}
	}
	free(s->buckets);
	s->buckets = nbk;
	s->nbuckets = nb;
}

/* ---- public API ---- */

struct cache *cache_new(uint64_t max_bytes, unsigned nshards)
{
	if (nshards == 0)
		nshards = SHARDS_DEFAULT;
	if (nshards > SHARDS_MAX)
		nshards = SHARDS_MAX;
	unsigned n = 1, bits = 0;
	while (n < nshards) {
		n <<= 1;
		bits++;
	}

	struct cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->nshards = n;
	c->shard_bits = bits;
	c->shards = aligned_alloc(alignof(struct shard), (size_t)n * sizeof(struct shard));
	if (!c->shards) {
		free(c);
		return NULL;
	}
	memset(c->shards, 0, (size_t)n * sizeof(struct shard));
	hash_key_random(&c->key);

	uint64_t budget = max_bytes / n;
	uint64_t min_cost = entry_alloc_size(1, 1, 0) + ENTRY_OVERHEAD;
	uint64_t want = budget / min_cost;
	uint32_t maxb = BUCKETS_INIT;
	while (maxb < want && maxb < BUCKETS_MAX)
		maxb <<= 1;

	unsigned i;
	for (i = 0; i < n; i++) {
		struct shard *s = &c->shards[i];
		s->budget = budget;
		s->max_buckets = maxb;
		s->nbuckets = BUCKETS_INIT;
		s->buckets = calloc(BUCKETS_INIT, sizeof(*s->buckets));
		if (!s->buckets)
			goto fail;
		if (mtx_init(&s->lock, mtx_plain) != thrd_success) {
			free(s->buckets);
			goto fail;
		}
	}
	return c;

fail:
	while (i-- > 0) {
		mtx_destroy(&c->shards[i].lock);
		free(c->shards[i].buckets);
	}
	free(c->shards);
	free(c);
	return NULL;
}

void cache_clear(struct cache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->nshards; i++) {
		struct shard *s = &c->shards[i];
		mtx_lock(&s->lock);
		struct entry *e = s->head;
		memset(s->buckets, 0, (size_t)s->nbuckets * sizeof(*s->buckets));
		s->head = s->tail = NULL;
		atomic_fetch_sub_explicit(&c->stats.bytes, (int64_t)s->bytes, memory_order_relaxed);
		atomic_fetch_sub_explicit(&c->stats.entries, (int64_t)s->nentries,
					  memory_order_relaxed);
		s->bytes = 0;
		s->nentries = 0;
		mtx_unlock(&s->lock);
		while (e) {
			struct entry *n = e->next;
			free(e);
			e = n;
		}
	}
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	cache_clear(c);
	for (unsigned i = 0; i < c->nshards; i++) {
		mtx_destroy(&c->shards[i].lock);
		free(c->shards[i].buckets);
	}
	free(c->shards);
	free(c);
}

const struct cache_stats *cache_stats(const struct cache *c)
{
	return &c->stats;
}

/* A stale hit: copy @p e's wire into @p buf with every TTL set to
 * @p stale_ttl_s (RFC 8767). Called once, so inlined into cache_lookup(). */
static inline void copy_stale(struct entry *e, uint8_t *buf, uint32_t stale_ttl_s,
			      struct cache_hit *h)
{
	memcpy(buf, entry_wire(e), e->len);
	for (unsigned i = 0; i < e->nttl; i++)
		wire_put32(buf + e->ttl_off[i], stale_ttl_s);
	h->stale = true;
}

/* A fresh hit: copy @p e's wire into @p buf with its TTLs counted down, and
 * claim the prefetch of the entry in the last 10% of its TTL. Called once,
 * so inlined into cache_lookup(). */
static inline void copy_fresh(struct entry *e, uint8_t *buf, uint64_t now_ms, struct cache_hit *h)
{
	uint64_t ttl_ms = (uint64_t)e->ttl_s * 1000;
	uint64_t left_ms = e->expire_ms - now_ms;
	/* A lookup with an older clock than the insert's sees no time pass. */
	uint64_t elapsed_s = left_ms >= ttl_ms ? 0 : (ttl_ms - left_ms) / 1000;
	uint32_t min_left = (uint32_t)(e->ttl_s - elapsed_s);

	memcpy(buf, entry_wire(e), e->len);
	for (unsigned i = 0; i < e->nttl; i++) {
		uint8_t *p = buf + e->ttl_off[i];
		uint32_t t = wire_get32(p);
		t = t > elapsed_s ? (uint32_t)(t - elapsed_s) : 0;
		wire_put32(p, t);
		if (t < min_left)
			min_left = t;
	}
	h->ttl_left_s = min_left;
	if (e->ttl_s >= PREFETCH_MIN_TTL_S && !(e->flags & F_PREFETCHED) &&
	    left_ms < (uint64_t)e->ttl_s * 100) {
		e->flags |= F_PREFETCHED;
		h->prefetch = true;
	}
}

int cache_lookup(struct cache *c, const uint8_t *key, size_t keylen, uint64_t now_ms,
		 uint64_t allow_stale_ms, uint32_t stale_ttl_s, uint8_t *buf, size_t cap,
		 struct cache_hit *hit)
{
	struct cache_hit h = { 0 };
	struct entry *dead = NULL;
	int found = 0;

	if (hit)
		*hit = h;
	if (!key || keylen == 0 || keylen > CACHE_KEY_MAX || !buf) {
		stat_inc(&c->stats.misses);
		return 0;
	}

	uint64_t hv = hash_bytes(&c->key, key, keylen);
	struct shard *s = shard_of(c, hv);
	mtx_lock(&s->lock);
	struct entry **pp = bucket_find(s, (uint32_t)hv, key, keylen);
	struct entry *e = *pp;
	if (!e)
		goto out;

	if (now_ms >= e->expire_ms) {
		uint64_t late = now_ms - e->expire_ms;
		if (late >= e->stale_ms) {
			shard_remove(c, s, pp, e, &dead);
			goto out;
		}
		if (late >= allow_stale_ms || e->len > cap)
			goto out;
		copy_stale(e, buf, stale_ttl_s, &h);
	} else {
		if (e->len > cap)
			goto out;
		copy_fresh(e, buf, now_ms, &h);
	}
	h.len = e->len;
	h.kind = (enum cache_kind)e->kind;
	if (s->head != e) {
		lru_unlink(s, e);
		lru_push_head(s, e);
	}
	found = 1;
out:
	mtx_unlock(&s->lock);
	free_chain(dead);

	if (!found)
		stat_inc(&c->stats.misses);
	else if (h.stale)
		stat_inc(&c->stats.stale_hits);
	else
		stat_inc(&c->stats.hits);
	if (hit && found)
		*hit = h;
	return found;
}

/* The lengths, links and bytes of a new entry @p e (room from
 * entry_alloc_size()); the caller sets expiry, hash and kind. */
static void entry_fill(struct entry *e, const uint8_t *key, size_t keylen, const uint8_t *wire,
		       size_t len, const uint16_t *ttl_off, size_t nttl)
{
	e->hnext = e->prev = e->next = NULL;
	e->keylen = (uint16_t)keylen;
	e->len = (uint16_t)len;
	e->nttl = (uint16_t)nttl;
	e->flags = 0;
	if (nttl)
		memcpy(e->ttl_off, ttl_off, nttl * sizeof(uint16_t));
	memcpy(entry_key(e), key, keylen);
	memcpy(entry_wire(e), wire, len);
}

int cache_insert(struct cache *c, const uint8_t *key, size_t keylen, const uint8_t *wire,
		 size_t len, const uint16_t *ttl_off, size_t nttl, uint32_t ttl_s,
		 enum cache_kind kind, uint64_t now_ms, uint64_t stale_keep_ms)
{
	if (!key || keylen == 0 || !wire || len == 0 || (nttl && !ttl_off) ||
	    (unsigned)kind > CACHE_SERVFAIL)
		return -EINVAL;
	if (keylen > CACHE_KEY_MAX || len > CACHE_WIRE_MAX || nttl > CACHE_TTLS_MAX) {
		stat_inc(&c->stats.too_big);
		return -E2BIG;
	}
	for (size_t i = 0; i < nttl; i++)
		if ((size_t)ttl_off[i] + 4 > len)
			return -EINVAL;

	size_t asz = entry_alloc_size(keylen, len, nttl);
	uint64_t cost = (uint64_t)asz + ENTRY_OVERHEAD;
	uint64_t hv = hash_bytes(&c->key, key, keylen);
	struct shard *s = shard_of(c, hv);
	if (cost > s->budget) {
		stat_inc(&c->stats.too_big);
		return -E2BIG;
	}

	uint32_t stale_ms = stale_keep_ms > STALE_KEEP_MAX_MS ? STALE_KEEP_MAX_MS
							      : (uint32_t)stale_keep_ms;
	struct entry *dead = NULL;
	struct entry *e = NULL;

	/* Dead on arrival: nothing to store, but it still replaces the old entry. */
	if (ttl_s > 0 || stale_ms > 0) {
		e = malloc(asz);
		if (!e)
			return -ENOMEM;
		entry_fill(e, key, keylen, wire, len, ttl_off, nttl);
		e->expire_ms = now_ms + (uint64_t)ttl_s * 1000;
		if (e->expire_ms < now_ms)
			e->expire_ms = UINT64_MAX;
		e->ttl_s = ttl_s;
		e->stale_ms = stale_ms;
		e->hash = (uint32_t)hv;
		e->kind = (uint8_t)kind;
	}

	mtx_lock(&s->lock);
	struct entry **pp = bucket_find(s, (uint32_t)hv, key, keylen);
	if (*pp)
		shard_remove(c, s, pp, *pp, &dead);
	if (e) {
		while (s->bytes + cost > s->budget && s->tail) {
			struct entry *victim = s->tail;
			shard_remove(c, s, chain_slot(s, victim), victim, &dead);
			stat_inc(&c->stats.evictions);
		}
		pp = &s->buckets[e->hash & (s->nbuckets - 1)];
		e->hnext = *pp;
		*pp = e;
		lru_push_head(s, e);
		s->bytes += cost;
		s->nentries++;
		atomic_fetch_add_explicit(&c->stats.bytes, (int64_t)cost, memory_order_relaxed);
		atomic_fetch_add_explicit(&c->stats.entries, 1, memory_order_relaxed);
		shard_maybe_grow(s);
	}
	mtx_unlock(&s->lock);
	free_chain(dead);
	if (e)
		stat_inc(&c->stats.inserts);
	return 0;
}
