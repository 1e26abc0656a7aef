/* src/dns/cache_metrics.c - the answer cache's counters on /metrics. */
#include "nodedns/dns/cache.h"
#include "nodedns/util/metrics.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct metrics_field counters[] = {
	{ "nodedns_cache_hits_total", "Cache lookups that found a fresh entry.",
	  offsetof(struct cache_stats, hits) },
	{ "nodedns_cache_misses_total", "Cache lookups that found nothing fresh.",
	  offsetof(struct cache_stats, misses) },
	{ "nodedns_cache_stale_hits_total", "Stale entries served.", offsetof(struct cache_stats, stale_hits) },
	{ "nodedns_cache_inserts_total", "Entries stored.", offsetof(struct cache_stats, inserts) },
	{ "nodedns_cache_evictions_total", "Entries evicted to stay under --cache-memory.",
	  offsetof(struct cache_stats, evictions) },
	{ "nodedns_cache_too_big_total",
	  "Answers passed on uncached: more records or bytes than an entry may hold.",
	  offsetof(struct cache_stats, too_big) },
};

static const struct metrics_field gauges[] = {
	{ "nodedns_cache_entries", "Entries in the cache.", offsetof(struct cache_stats, entries) },
	{ "nodedns_cache_bytes", "Bytes used by the cache.", offsetof(struct cache_stats, bytes) },
};

void cache_metrics_render(struct mbuf *b, const struct cache_stats *s, uint64_t max_bytes)
{
	for (size_t k = 0; k < COUNT(counters); k++)
		metrics_counter(b, counters[k].name, counters[k].help, metrics_load_u64(s, counters[k].off));
	for (size_t k = 0; k < COUNT(gauges); k++)
		metrics_gauge(b, gauges[k].name, gauges[k].help, metrics_load_i64(s, gauges[k].off));
	metrics_gauge(b, "nodedns_cache_max_bytes", "The cache's bound (--cache-memory).",
		      (int64_t)max_bytes);
}
