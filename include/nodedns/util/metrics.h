/* include/nodedns/util/metrics.h - Prometheus text exposition helpers and a latency histogram.
 *
 * Modules own their counters (plain _Atomic fields in their *_stats structs,
 * updated with relaxed atomics) and render them through these helpers in
 * their own src/<layer>/<module>_metrics.c when /metrics is scraped; main.c
 * only calls those renderers in turn. Nothing here allocates except mbuf growth.
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

/** A whole family with one unlabelled sample: header, then "name v". */
void metrics_counter(struct mbuf *b, const char *name, const char *help, uint64_t v);
void metrics_gauge(struct mbuf *b, const char *name, const char *help, int64_t v);

/** One counter (or gauge) of a module's stats struct, for the table-driven
 * renderers in src/<layer>/<module>_metrics.c: the metric's name and help
 * (static strings), and where the _Atomic uint64_t (gauge: _Atomic int64_t)
 * field sits in the struct (offsetof). */
struct metrics_field {
	const char *name;
	const char *help;
	size_t off;
};

/** The family several modules add samples to (reason="..."); the caller
 * writes its header once, then each module's *_metrics_render_dropped(). */
#define METRICS_DROPPED_NAME "nodedns_dropped_total"
#define METRICS_DROPPED_HELP "Queries dropped or refused by a bound, by reason."

/** Relaxed load of the _Atomic uint64_t (int64_t) at byte @p off of @p stats. */
uint64_t metrics_load_u64(const void *stats, size_t off);
int64_t metrics_load_i64(const void *stats, size_t off);

/** The _bucket/_sum/_count lines of one histogram (sum in seconds). */
void metrics_histogram(struct mbuf *b, const char *name, const char *labels,
		       const struct histogram *h);

#endif
