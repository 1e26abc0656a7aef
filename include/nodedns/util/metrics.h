/* include/nodedns/util/metrics.h - Prometheus text exposition helpers and a latency histogram.
 *
 * Modules own their counters (plain _Atomic fields in their *_stats structs,
 * updated with relaxed atomics); main.c renders them through these helpers
 * when /metrics is scraped. Nothing here allocates except mbuf growth.
 */
#ifndef NODEDNS_METRICS_H
#define NODEDNS_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Upper bounds (seconds) of the latency histogram buckets; +Inf is implicit. */
#define METRICS_LAT_BUCKETS 12
extern const double metrics_lat_bounds_s[METRICS_LAT_BUCKETS];

struct histogram {
	_Atomic uint64_t bucket[METRICS_LAT_BUCKETS + 1]; /* last: +Inf */
	_Atomic uint64_t sum_us;
	_Atomic uint64_t count;
};

/** Record one observation of @p us microseconds. Thread-safe. */
void histogram_observe(struct histogram *h, uint64_t us);

/** A growable text buffer. On allocation failure it sets oom and stops growing. */
struct mbuf {
	char *data;
	size_t len, cap;
	bool oom;
};

void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mbuf_free(struct mbuf *b);

/** "# HELP name help\n# TYPE name type\n". */
void metrics_header(struct mbuf *b, const char *name, const char *type, const char *help);

/** "name{labels} value\n"; @p labels is e.g. "rcode=\"NOERROR\"" or NULL. */
void metrics_u64(struct mbuf *b, const char *name, const char *labels, uint64_t v);
void metrics_i64(struct mbuf *b, const char *name, const char *labels, int64_t v);
void metrics_f64(struct mbuf *b, const char *name, const char *labels, double v);

/** The _bucket/_sum/_count lines of one histogram (sum in seconds). */
void metrics_histogram(struct mbuf *b, const char *name, const char *labels,
		       const struct histogram *h);

/** Add @p src into @p dst (to merge per-worker histograms before rendering). */
void histogram_add(struct histogram *dst, const struct histogram *src);

#endif
