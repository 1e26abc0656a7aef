/* include/nodedns/dns/cache.h - byte-bounded, TTL-aware answer cache shared by all workers.
 *
 * The cache knows bytes, not DNS: an entry is an opaque key (the caller builds
 * it from lower-cased qname, qtype, qclass and the DO and CD bits) and a DNS reply in
 * wire form together with the offsets of every TTL field in it. A hit copies
 * the wire into the caller's buffer and rewrites each TTL to what remains of
 * it, so a hit needs no DNS parsing and no allocation.
 *
 * Sharded by key hash; each shard has its own mutex and its own LRU list, and
 * owns 1/nshards of the byte budget. Time is a parameter (now_ms, any
 * monotonic clock). Thread-safe: every function may be called from any thread.
 *
 * Glossary:
 *  - fresh: now < expire.
 *  - stale: expired for less than the stale window; only returned when the
 *    caller asks (RFC 8767 serve-stale).
 *  - prefetch window: the last 10% of the TTL; the first lookup that finds an
 *    entry there is told to refresh it (once per entry until it is replaced).
 */
#ifndef NODEDNS_CACHE_H
#define NODEDNS_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults (--cache-memory; shards have no option). */
#define CACHE_MEMORY_BYTES_DEFAULT (64ull * 1024 * 1024)
#define CACHE_SHARDS_DEFAULT 16

#define CACHE_KEY_MAX 262     /* 255 name + 2 type + 2 class + 1 flags + slack */
#define CACHE_WIRE_MAX 65535
#define CACHE_TTLS_MAX 512    /* TTL fields per entry; more is refused */

struct cache;

/** Kind of entry: for metrics and for what the caller does with it. */
enum cache_kind { CACHE_POSITIVE = 0, CACHE_NXDOMAIN, CACHE_NODATA, CACHE_SERVFAIL };

struct cache_stats {
	_Atomic uint64_t hits, misses, stale_hits, inserts, evictions, too_big;
	_Atomic int64_t entries, bytes; /* gauges: current totals */
};
struct mbuf;
/** Render @p s (borrowed) and the bound @p max_bytes (src/dns/cache_metrics.c). */
void cache_metrics_render(struct mbuf *b, const struct cache_stats *s, uint64_t max_bytes);

/**
 * Create a cache bounded by @p max_bytes (counting keys, wire, TTL offsets and
 * per-entry bookkeeping) split over @p nshards (rounded up to a power of two;
 * 0 picks 16). @return NULL on allocation failure.
 */
struct cache *cache_new(uint64_t max_bytes, unsigned nshards);

/** Free the cache and every entry. NULL is fine. No other thread may use it. */
void cache_free(struct cache *c);

/** Counters; borrowed for the life of the cache. */
const struct cache_stats *cache_stats(const struct cache *c);

/** What cache_lookup() found. */
struct cache_hit {
	size_t len;           /* bytes copied into buf */
	enum cache_kind kind;
	uint32_t ttl_left_s;  /* smallest TTL left (0 when stale) */
	bool stale;           /* expired; only with allow_stale_ms > 0 */
	bool prefetch;        /* fresh but in the prefetch window: refresh it now */
};

/**
 * Look up @p key. On a fresh hit copy the wire into @p buf (capacity @p cap)
 * with every TTL field rewritten to max(0, stored TTL - seconds elapsed since
 * insert) and return 1. When the entry expired less than @p allow_stale_ms ago
 * (and allow_stale_ms > 0) copy it with every TTL set to @p stale_ttl_s, set
 * hit->stale and return 1. Otherwise (absent, too old, or larger than @p cap)
 * return 0. Counts hits/misses (a stale lookup counts stale_hits, not misses).
 * Marks the entry recently used.
 */
int cache_lookup(struct cache *c, const uint8_t *key, size_t keylen, uint64_t now_ms,
		 uint64_t allow_stale_ms, uint32_t stale_ttl_s, uint8_t *buf, size_t cap,
		 struct cache_hit *hit);

/**
 * Insert or replace the entry for @p key: @p wire (copied) whose TTL fields
 * (32-bit big-endian) sit at @p ttl_off[0..nttl-1], valid for @p ttl_s seconds
 * from @p now_ms. Stored TTL fields are used as they are; the caller has
 * already clamped them. The entry is kept (as stale) for @p stale_keep_ms more
 * after it expires. Evicts least recently used entries of the shard until the
 * new one fits. @return 0, -E2BIG when the entry alone exceeds a shard's
 * budget or limits above, -ENOMEM, -EINVAL for offsets outside the wire.
 */
int cache_insert(struct cache *c, const uint8_t *key, size_t keylen, const uint8_t *wire,
		 size_t len, const uint16_t *ttl_off, size_t nttl, uint32_t ttl_s,
		 enum cache_kind kind, uint64_t now_ms, uint64_t stale_keep_ms);

/** Remove every entry (used by tests and by an operator's flush). */
void cache_clear(struct cache *c);

#endif
