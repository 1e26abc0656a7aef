/* tests/unit/test_cache.c - unit tests for the sharded answer cache. */
#include "nodedns/dns/cache.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define T0 1000000u /* an arbitrary monotonic start time, in ms */

/* A fake reply: bytes 0..len-1 hold a pattern; TTL fields at the given offsets. */
struct fake {
	uint8_t wire[512];
	size_t len;
	uint16_t off[8];
	size_t nttl;
};

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A reply of @p len bytes with TTL fields at 12, 40 (if room) carrying @p ttl. */
static void fake_init(struct fake *f, size_t len, uint8_t seed, uint32_t ttl)
{
	memset(f, 0, sizeof(*f));
	f->len = len;
	for (size_t i = 0; i < len; i++)
		f->wire[i] = (uint8_t)(seed + i * 7);
	if (len >= 16)
		f->off[f->nttl++] = 12;
	if (len >= 44)
		f->off[f->nttl++] = 40;
	for (size_t i = 0; i < f->nttl; i++)
		put32(f->wire + f->off[i], ttl);
}

static int ins(struct cache *c, const char *key, const struct fake *f, uint32_t ttl_s,
	       enum cache_kind kind, uint64_t now, uint64_t keep)
{
	return cache_insert(c, (const uint8_t *)key, strlen(key), f->wire, f->len, f->off, f->nttl,
			    ttl_s, kind, now, keep);
}

static int look(struct cache *c, const char *key, uint64_t now, uint64_t allow_stale,
		uint8_t *buf, size_t cap, struct cache_hit *hit)
{
	return cache_lookup(c, (const uint8_t *)key, strlen(key), now, allow_stale, 30, buf, cap,
			    hit);
}

static int64_t gauge_bytes(struct cache *c)
{
	return atomic_load(&cache_stats(c)->bytes);
}

static int64_t gauge_entries(struct cache *c)
{
	return atomic_load(&cache_stats(c)->entries);
}

/* Accounted size of one entry of this shape, measured on a scratch cache. */
static int64_t cost_of(const char *key, const struct fake *f)
{
	struct cache *c = cache_new(1 << 20, 1);
	assert_non_null(c);
	assert_int_equal(ins(c, key, f, 60, CACHE_POSITIVE, T0, 0), 0);
	int64_t b = gauge_bytes(c);
	cache_free(c);
	return b;
}

/* ---- basic hit / miss ---- */

static void test_miss_then_hit(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 0);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	assert_non_null(c);
	fake_init(&f, 100, 1, 300);
	assert_int_equal(look(c, "a.example.", T0, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(hit.len, 0);
	assert_int_equal(ins(c, "a.example.", &f, 300, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(look(c, "a.example.", T0, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(hit.len, 100);
	assert_int_equal(hit.kind, CACHE_POSITIVE);
	assert_int_equal(hit.ttl_left_s, 300);
	assert_false(hit.stale);
	assert_false(hit.prefetch);
	assert_memory_equal(buf, f.wire, 100);

	const struct cache_stats *st = cache_stats(c);
	assert_int_equal(atomic_load(&st->hits), 1);
	assert_int_equal(atomic_load(&st->misses), 1);
	assert_int_equal(atomic_load(&st->inserts), 1);
	assert_int_equal(atomic_load(&st->entries), 1);
	assert_true(atomic_load(&st->bytes) > 100);
	cache_free(c);
}

static void test_free_null_and_empty(void **state)
{
	(void)state;
	cache_free(NULL);
	cache_clear(NULL);
	struct cache *c = cache_new(0, 3);
	struct fake f;
	assert_non_null(c);
	fake_init(&f, 20, 1, 1);
	assert_int_equal(ins(c, "k", &f, 10, CACHE_POSITIVE, T0, 0), -E2BIG);
	cache_free(c);
}

/* ---- TTL handling ---- */

static void test_ttl_countdown(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 4);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 100, 2, 300);
	put32(f.wire + 40, 100); /* second record has a smaller TTL */
	assert_int_equal(ins(c, "k", &f, 300, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(look(c, "k", T0 + 3500, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(get32(buf + 12), 297);
	assert_int_equal(get32(buf + 40), 97);
	assert_int_equal(hit.ttl_left_s, 97);
	/* Everything outside the TTL fields is untouched. */
	assert_memory_equal(buf, f.wire, 12);
	assert_memory_equal(buf + 16, f.wire + 16, 24);
	assert_memory_equal(buf + 44, f.wire + 44, 56);
	/* The stored copy is not modified by a lookup. */
	assert_int_equal(look(c, "k", T0 + 999, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(get32(buf + 12), 300);
	assert_int_equal(get32(buf + 40), 100);
	cache_free(c);
}

static void test_ttl_never_negative(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 60, 3, 5); /* records say 5 s, entry valid 60 s */
	assert_int_equal(ins(c, "k", &f, 60, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(look(c, "k", T0 + 10000, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(get32(buf + 12), 0);
	assert_int_equal(get32(buf + 40), 0);
	assert_int_equal(hit.ttl_left_s, 0);
	cache_free(c);
}

static void test_clock_behind_insert(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 60, 3, 50);
	assert_int_equal(ins(c, "k", &f, 50, CACHE_POSITIVE, T0, 0), 0);
	/* Another worker's clock may lag; TTLs must not exceed the stored ones. */
	assert_int_equal(look(c, "k", T0 - 5000, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(get32(buf + 12), 50);
	assert_int_equal(hit.ttl_left_s, 50);
	cache_free(c);
}

static void test_expiry_at_boundary(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 60, 4, 30);
	assert_int_equal(ins(c, "k", &f, 30, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(look(c, "k", T0 + 29999, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(get32(buf + 12), 1);
	assert_int_equal(hit.ttl_left_s, 1);
	assert_int_equal(look(c, "k", T0 + 30000, 0, buf, sizeof(buf), &hit), 0);
	/* No stale window: the entry is dead and freed by that lookup. */
	assert_int_equal(gauge_entries(c), 0);
	assert_int_equal(gauge_bytes(c), 0);
	cache_free(c);
}

static void test_stale_window(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;
	const uint64_t exp = T0 + 30000;

	fake_init(&f, 60, 5, 30);
	assert_int_equal(ins(c, "k", &f, 30, CACHE_POSITIVE, T0, 60000), 0);

	/* Expired, caller does not want stale: miss, but the entry is kept. */
	assert_int_equal(look(c, "k", exp + 1000, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(gauge_entries(c), 1);

	/* Within the caller's window: served with stale_ttl_s (30). */
	assert_int_equal(look(c, "k", exp + 1000, 30000, buf, sizeof(buf), &hit), 1);
	assert_true(hit.stale);
	assert_false(hit.prefetch);
	assert_int_equal(hit.ttl_left_s, 0);
	assert_int_equal(hit.len, 60);
	assert_int_equal(get32(buf + 12), 30);
	assert_int_equal(get32(buf + 40), 30);
	assert_int_equal(atomic_load(&cache_stats(c)->stale_hits), 1);
	assert_int_equal(atomic_load(&cache_stats(c)->hits), 0);
	assert_int_equal(atomic_load(&cache_stats(c)->misses), 1);

	/* At the edge of the caller's window: miss, still kept. */
	assert_int_equal(look(c, "k", exp + 30000, 30000, buf, sizeof(buf), &hit), 0);
	assert_false(hit.stale);
	assert_int_equal(gauge_entries(c), 1);

	/* The caller's window cannot extend the insert's keep window. */
	assert_int_equal(look(c, "k", exp + 59999, UINT64_MAX, buf, sizeof(buf), &hit), 1);
	assert_true(hit.stale);
	assert_int_equal(look(c, "k", exp + 60000, UINT64_MAX, buf, sizeof(buf), &hit), 0);
	assert_int_equal(gauge_entries(c), 0);
	assert_int_equal(gauge_bytes(c), 0);
	cache_free(c);
}

static void test_dead_on_arrival_replaces(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 60, 6, 30);
	assert_int_equal(ins(c, "k", &f, 30, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(ins(c, "k", &f, 0, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(gauge_entries(c), 0);
	assert_int_equal(look(c, "k", T0, 0, buf, sizeof(buf), &hit), 0);

	/* TTL 0 with a stale window is stored and only ever served stale. */
	assert_int_equal(ins(c, "k", &f, 0, CACHE_POSITIVE, T0, 5000), 0);
	assert_int_equal(look(c, "k", T0, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(look(c, "k", T0, 5000, buf, sizeof(buf), &hit), 1);
	assert_true(hit.stale);
	cache_free(c);
}

/* ---- kinds ---- */

static void test_negative_kinds(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 0);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;
	const char *keys[] = { "pos", "nx", "nodata", "servfail" };
	const enum cache_kind kinds[] = { CACHE_POSITIVE, CACHE_NXDOMAIN, CACHE_NODATA,
					  CACHE_SERVFAIL };

	fake_init(&f, 50, 7, 60);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ins(c, keys[i], &f, 60, kinds[i], T0, 0), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(look(c, keys[i], T0 + 1, 0, buf, sizeof(buf), &hit), 1);
		assert_int_equal(hit.kind, kinds[i]);
	}
	assert_int_equal(ins(c, "bad", &f, 60, (enum cache_kind)7, T0, 0), -EINVAL);
	cache_free(c);
}

/* ---- byte bound and LRU ---- */

static void key_of(char *out, size_t n, int i)
{
	snprintf(out, n, "host-%05d.example.", i);
}

static void test_eviction_bound(void **state)
{
	(void)state;
	struct fake f;
	char key[32];
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 200, 8, 60);
	key_of(key, sizeof(key), 0);
	int64_t cost = cost_of(key, &f);
	const uint64_t max = (uint64_t)cost * 10 + cost / 2;
	struct cache *c = cache_new(max, 1);

	for (int i = 0; i < 100; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(ins(c, key, &f, 60, CACHE_POSITIVE, T0 + i, 0), 0);
		assert_true(gauge_bytes(c) <= (int64_t)max);
	}
	assert_int_equal(gauge_entries(c), 10);
	assert_int_equal(gauge_bytes(c), 10 * cost);
	assert_int_equal(atomic_load(&cache_stats(c)->evictions), 90);
	for (int i = 0; i < 90; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(look(c, key, T0 + 100, 0, buf, sizeof(buf), &hit), 0);
	}
	for (int i = 90; i < 100; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(look(c, key, T0 + 100, 0, buf, sizeof(buf), &hit), 1);
	}
	cache_free(c);
}

static void test_lru_keeps_recently_used(void **state)
{
	(void)state;
	struct fake f;
	char key[32];
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 120, 9, 60);
	key_of(key, sizeof(key), 0);
	int64_t cost = cost_of(key, &f);
	struct cache *c = cache_new((uint64_t)cost * 4, 1);

	for (int i = 0; i < 4; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(ins(c, key, &f, 60, CACHE_POSITIVE, T0, 0), 0);
	}
	key_of(key, sizeof(key), 0);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 1); /* 0 is now newest */
	key_of(key, sizeof(key), 4);
	assert_int_equal(ins(c, key, &f, 60, CACHE_POSITIVE, T0, 0), 0);  /* evicts 1 */
	key_of(key, sizeof(key), 0);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 1);
	key_of(key, sizeof(key), 1);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 0);
	/* Touch 2 so that 3 is now the oldest. */
	key_of(key, sizeof(key), 2);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 1);
	key_of(key, sizeof(key), 5);
	assert_int_equal(ins(c, key, &f, 60, CACHE_POSITIVE, T0, 0), 0);  /* evicts 3 */
	key_of(key, sizeof(key), 3);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 0);
	key_of(key, sizeof(key), 2);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(gauge_entries(c), 4);
	cache_free(c);
}

static void test_replace_updates_bytes(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 2);
	struct fake a, b;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&a, 100, 10, 60);
	fake_init(&b, 300, 11, 60);
	assert_int_equal(ins(c, "k", &a, 60, CACHE_POSITIVE, T0, 0), 0);
	int64_t b1 = gauge_bytes(c);
	assert_int_equal(ins(c, "k", &b, 60, CACHE_NXDOMAIN, T0, 0), 0);
	assert_int_equal(gauge_entries(c), 1);
	assert_int_equal(gauge_bytes(c), b1 + 200);
	assert_int_equal(look(c, "k", T0, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(hit.len, 300);
	assert_int_equal(hit.kind, CACHE_NXDOMAIN);
	assert_memory_equal(buf, b.wire, 300);
	assert_int_equal(ins(c, "k", &a, 60, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(gauge_bytes(c), b1);
	assert_int_equal(atomic_load(&cache_stats(c)->evictions), 0);
	cache_free(c);
}

static void test_clear(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 8);
	struct fake f;
	char key[32];
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 80, 12, 60);
	for (int i = 0; i < 50; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(ins(c, key, &f, 60, CACHE_POSITIVE, T0, 0), 0);
	}
	cache_clear(c);
	assert_int_equal(gauge_entries(c), 0);
	assert_int_equal(gauge_bytes(c), 0);
	key_of(key, sizeof(key), 7);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(ins(c, key, &f, 60, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 1);
	cache_free(c);
}

static void test_bucket_growth(void **state)
{
	(void)state;
	struct cache *c = cache_new(64u << 20, 1);
	struct fake f;
	char key[32];
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 40, 13, 60);
	for (int i = 0; i < 20000; i++) {
		key_of(key, sizeof(key), i);
		f.wire[0] = (uint8_t)i;
		assert_int_equal(ins(c, key, &f, 60, CACHE_POSITIVE, T0, 0), 0);
	}
	assert_int_equal(gauge_entries(c), 20000);
	for (int i = 0; i < 20000; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(look(c, key, T0, 0, buf, sizeof(buf), &hit), 1);
		assert_int_equal(buf[0], (uint8_t)i);
	}
	cache_free(c);
}

/* ---- limits and validation ---- */

static void test_too_big(void **state)
{
	(void)state;
	struct cache *c = cache_new(4000, 3); /* rounded to 4 shards of 1000 bytes */
	static uint8_t big[CACHE_WIRE_MAX + 1];
	static uint16_t offs[CACHE_TTLS_MAX + 1];
	uint8_t key[CACHE_KEY_MAX + 1];

	memset(key, 'a', sizeof(key));
	assert_int_equal(cache_insert(c, key, 4, big, 900, NULL, 0, 60, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(cache_insert(c, key, 4, big, 1000, NULL, 0, 60, CACHE_POSITIVE, T0, 0),
			 -E2BIG);
	assert_int_equal(atomic_load(&cache_stats(c)->too_big), 1);
	/* The refused replacement leaves the old entry alone. */
	assert_int_equal(gauge_entries(c), 1);
	cache_free(c);

	c = cache_new(1u << 30, 1);
	assert_int_equal(cache_insert(c, key, CACHE_KEY_MAX + 1, big, 10, NULL, 0, 60,
				      CACHE_POSITIVE, T0, 0), -E2BIG);
	assert_int_equal(cache_insert(c, key, 4, big, CACHE_WIRE_MAX + 1, NULL, 0, 60,
				      CACHE_POSITIVE, T0, 0), -E2BIG);
	assert_int_equal(cache_insert(c, key, 4, big, CACHE_WIRE_MAX, offs, CACHE_TTLS_MAX + 1,
				      60, CACHE_POSITIVE, T0, 0), -E2BIG);
	assert_int_equal(atomic_load(&cache_stats(c)->too_big), 3);
	/* The largest legal entry is accepted and round-trips. */
	for (size_t i = 0; i < CACHE_TTLS_MAX; i++)
		offs[i] = (uint16_t)(CACHE_WIRE_MAX - 4 - i);
	assert_int_equal(cache_insert(c, key, CACHE_KEY_MAX, big, CACHE_WIRE_MAX, offs,
				      CACHE_TTLS_MAX, 60, CACHE_POSITIVE, T0, 0), 0);
	static uint8_t out[CACHE_WIRE_MAX];
	struct cache_hit hit;
	assert_int_equal(cache_lookup(c, key, CACHE_KEY_MAX, T0, 0, 0, out, sizeof(out), &hit), 1);
	assert_int_equal(hit.len, CACHE_WIRE_MAX);
	cache_free(c);
}

static void test_invalid_args(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	uint8_t wire[64] = { 0 };
	uint16_t off[2] = { 0, 60 };
	const uint8_t *k = (const uint8_t *)"key";

	assert_int_equal(cache_insert(c, k, 3, wire, 64, off, 2, 60, CACHE_POSITIVE, T0, 0), 0);
	off[1] = 61; /* 61 + 4 > 64 */
	assert_int_equal(cache_insert(c, k, 3, wire, 64, off, 2, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	off[1] = 65535;
	assert_int_equal(cache_insert(c, k, 3, wire, 64, off, 2, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	assert_int_equal(cache_insert(c, k, 3, wire, 3, off, 1, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	assert_int_equal(cache_insert(c, k, 0, wire, 64, NULL, 0, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	assert_int_equal(cache_insert(c, NULL, 3, wire, 64, NULL, 0, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	assert_int_equal(cache_insert(c, k, 3, wire, 0, NULL, 0, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	assert_int_equal(cache_insert(c, k, 3, NULL, 64, NULL, 0, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	assert_int_equal(cache_insert(c, k, 3, wire, 64, NULL, 2, 60, CACHE_POSITIVE, T0, 0),
			 -EINVAL);
	/* Refused inserts did not replace the first entry. */
	assert_int_equal(gauge_entries(c), 1);
	assert_int_equal(atomic_load(&cache_stats(c)->inserts), 1);

	uint8_t buf[64];
	struct cache_hit hit;
	assert_int_equal(cache_lookup(c, k, 0, T0, 0, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(cache_lookup(c, k, CACHE_KEY_MAX + 1, T0, 0, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(cache_lookup(c, NULL, 3, T0, 0, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(cache_lookup(c, k, 3, T0, 0, 0, NULL, 0, &hit), 0);
	assert_int_equal(cache_lookup(c, k, 3, T0, 0, 0, buf, sizeof(buf), NULL), 1);
	cache_free(c);
}

static void test_keys_are_bytes(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 4);
	struct fake a, b, d;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&a, 30, 20, 60);
	fake_init(&b, 31, 21, 60);
	fake_init(&d, 32, 22, 60);
	assert_int_equal(ins(c, "example.com", &a, 60, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(ins(c, "Example.com", &b, 60, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(ins(c, "example.co", &d, 60, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(gauge_entries(c), 3);
	assert_int_equal(look(c, "example.com", T0, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(hit.len, 30);
	assert_int_equal(look(c, "Example.com", T0, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(hit.len, 31);
	assert_int_equal(look(c, "example.co", T0, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(hit.len, 32);
	assert_int_equal(look(c, "example.c", T0, 0, buf, sizeof(buf), &hit), 0);

	/* Embedded NULs are part of the key. */
	const uint8_t k1[] = { 'a', 0, 'b' }, k2[] = { 'a', 0, 'c' };
	assert_int_equal(cache_insert(c, k1, 3, a.wire, a.len, NULL, 0, 60, CACHE_POSITIVE, T0, 0),
			 0);
	assert_int_equal(cache_lookup(c, k2, 3, T0, 0, 0, buf, sizeof(buf), &hit), 0);
	assert_int_equal(cache_lookup(c, k1, 3, T0, 0, 0, buf, sizeof(buf), &hit), 1);
	assert_int_equal(cache_lookup(c, k1, 2, T0, 0, 0, buf, sizeof(buf), &hit), 0);
	cache_free(c);
}

static void test_buffer_too_small(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 100, 23, 60);
	assert_int_equal(ins(c, "k", &f, 60, CACHE_POSITIVE, T0, 60000), 0);
	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(look(c, "k", T0, 0, buf, 99, &hit), 0);
	assert_int_equal(hit.len, 0);
	assert_int_equal(buf[0], 0xee); /* nothing written */
	assert_int_equal(look(c, "k", T0, 0, buf, 100, &hit), 1);
	/* Stale path honours cap too. */
	assert_int_equal(look(c, "k", T0 + 61000, 10000, buf, 99, &hit), 0);
	assert_int_equal(look(c, "k", T0 + 61000, 10000, buf, 100, &hit), 1);
	assert_true(hit.stale);
	cache_free(c);
}

/* ---- prefetch ---- */

static void test_prefetch_once(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 60, 24, 100);
	assert_int_equal(ins(c, "k", &f, 100, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(look(c, "k", T0 + 50000, 0, buf, sizeof(buf), &hit), 1);
	assert_false(hit.prefetch);
	assert_int_equal(look(c, "k", T0 + 90000, 0, buf, sizeof(buf), &hit), 1);
	assert_false(hit.prefetch); /* exactly 10% left: not yet */
	assert_int_equal(look(c, "k", T0 + 90001, 0, buf, sizeof(buf), &hit), 1);
	assert_true(hit.prefetch);
	assert_int_equal(look(c, "k", T0 + 95000, 0, buf, sizeof(buf), &hit), 1);
	assert_false(hit.prefetch);

	/* A refresh replaces the entry, so it can prefetch again later. */
	assert_int_equal(ins(c, "k", &f, 100, CACHE_POSITIVE, T0 + 96000, 0), 0);
	assert_int_equal(look(c, "k", T0 + 97000, 0, buf, sizeof(buf), &hit), 1);
	assert_false(hit.prefetch);
	assert_int_equal(look(c, "k", T0 + 96000 + 95000, 0, buf, sizeof(buf), &hit), 1);
	assert_true(hit.prefetch);
	cache_free(c);
}

static void test_prefetch_short_ttl_and_stale(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 1);
	struct fake f;
	uint8_t buf[512];
	struct cache_hit hit;

	fake_init(&f, 60, 25, 9);
	assert_int_equal(ins(c, "short", &f, 9, CACHE_POSITIVE, T0, 0), 0);
	assert_int_equal(look(c, "short", T0 + 8900, 0, buf, sizeof(buf), &hit), 1);
	assert_false(hit.prefetch);

	assert_int_equal(ins(c, "ten", &f, 10, CACHE_POSITIVE, T0, 5000), 0);
	assert_int_equal(look(c, "ten", T0 + 10500, 5000, buf, sizeof(buf), &hit), 1);
	assert_true(hit.stale);
	assert_false(hit.prefetch);
	assert_int_equal(look(c, "ten", T0 + 9500, 0, buf, sizeof(buf), &hit), 1);
	assert_true(hit.prefetch);
	cache_free(c);
}

/* ---- concurrency ---- */

#define CONC_KEYS 3000
#define CONC_THREADS 4

struct conc {
	struct cache *c;
	_Atomic uint64_t clock_ms;
	_Atomic int stop;
	_Atomic int errors;
};

static uint32_t xorshift(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

/* Every key's wire is a function of the key index, so a hit can be checked. */
static void conc_fake(struct fake *f, int i)
{
	fake_init(f, 64, (uint8_t)i, 3600);
}

static void *conc_worker(void *arg)
{
	struct conc *k = arg;
	uint32_t rnd = (uint32_t)(uintptr_t)&rnd | 1;
	struct fake f;
	char key[32];
	uint8_t buf[512];
	struct cache_hit hit;

	while (!atomic_load(&k->stop)) {
		int i = (int)(xorshift(&rnd) % CONC_KEYS);
		uint64_t now = T0 + atomic_fetch_add(&k->clock_ms, 1) / 64;
		key_of(key, sizeof(key), i);
		if (xorshift(&rnd) % 3 == 0) {
			conc_fake(&f, i);
			if (ins(k->c, key, &f, 3600, CACHE_POSITIVE, now, 0) != 0)
				atomic_fetch_add(&k->errors, 1);
		} else if (look(k->c, key, now, 0, buf, sizeof(buf), &hit) == 1) {
			conc_fake(&f, i);
			if (hit.len != f.len || memcmp(buf, f.wire, 12) != 0 ||
			    memcmp(buf + 16, f.wire + 16, 24) != 0)
				atomic_fetch_add(&k->errors, 1);
		}
	}
	return NULL;
}

static void test_concurrency(void **state)
{
	(void)state;
	struct fake f;
	char key[32];
	uint8_t buf[512];
	struct cache_hit hit;

	conc_fake(&f, 0);
	key_of(key, sizeof(key), 0);
	int64_t cost = cost_of(key, &f);
	/* Room for about a third of the keys, so eviction runs too. */
	const uint64_t max = (uint64_t)cost * CONC_KEYS / 3;
	struct conc k = { .c = cache_new(max, 8) };
	pthread_t th[CONC_THREADS];

	assert_non_null(k.c);
	for (int i = 0; i < CONC_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &k), 0);
	struct timespec ts = { .tv_sec = 0, .tv_nsec = 300 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	atomic_store(&k.stop, 1);
	for (int i = 0; i < CONC_THREADS; i++)
		pthread_join(th[i], NULL);

	assert_int_equal(atomic_load(&k.errors), 0);
	const struct cache_stats *st = cache_stats(k.c);
	int64_t entries = atomic_load(&st->entries);
	assert_true(entries > 0);
	assert_int_equal(atomic_load(&st->bytes), entries * cost);
	assert_true(atomic_load(&st->bytes) <= (int64_t)max);
	assert_true(atomic_load(&st->evictions) > 0);

	/* The entries gauge matches what can actually be found. */
	int64_t found = 0;
	uint64_t now = T0 + atomic_load(&k.clock_ms) / 64;
	for (int i = 0; i < CONC_KEYS; i++) {
		key_of(key, sizeof(key), i);
		found += look(k.c, key, now, 0, buf, sizeof(buf), &hit);
	}
	assert_int_equal(found, entries);
	cache_clear(k.c);
	assert_int_equal(atomic_load(&st->entries), 0);
	assert_int_equal(atomic_load(&st->bytes), 0);
	cache_free(k.c);
}

static void test_free_with_entries(void **state)
{
	(void)state;
	struct cache *c = cache_new(1 << 20, 16);
	struct fake f;
	char key[32];

	fake_init(&f, 100, 26, 60);
	for (int i = 0; i < 500; i++) {
		key_of(key, sizeof(key), i);
		assert_int_equal(ins(c, key, &f, 60, (enum cache_kind)(i % 4), T0, 10000), 0);
	}
	assert_int_equal(gauge_entries(c), 500);
	cache_free(c); /* valgrind / ASan report any leak */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_miss_then_hit),
		cmocka_unit_test(test_free_null_and_empty),
		cmocka_unit_test(test_ttl_countdown),
		cmocka_unit_test(test_ttl_never_negative),
		cmocka_unit_test(test_clock_behind_insert),
		cmocka_unit_test(test_expiry_at_boundary),
		cmocka_unit_test(test_stale_window),
		cmocka_unit_test(test_dead_on_arrival_replaces),
		cmocka_unit_test(test_negative_kinds),
		cmocka_unit_test(test_eviction_bound),
		cmocka_unit_test(test_lru_keeps_recently_used),
		cmocka_unit_test(test_replace_updates_bytes),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_bucket_growth),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_invalid_args),
		cmocka_unit_test(test_keys_are_bytes),
		cmocka_unit_test(test_buffer_too_small),
		cmocka_unit_test(test_prefetch_once),
		cmocka_unit_test(test_prefetch_short_ttl_and_stale),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_free_with_entries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
