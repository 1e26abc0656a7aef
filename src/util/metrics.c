/* src/util/metrics.c - Prometheus text exposition helpers and a latency histogram. */
#include "nodedns/util/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_lat_bounds_s[METRICS_LAT_BUCKETS] = {
	0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025,   0.05,   0.1,   0.25,   0.5,   1.0,
};

void histogram_observe(struct histogram *h, uint64_t us)
{
	size_t i = 0;
	double s = (double)us / 1e6;
	while (i < METRICS_LAT_BUCKETS && s > metrics_lat_bounds_s[i])
		i++;
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->data && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap ? b->cap * 2 : 4096;
		while (ncap - b->len <= (size_t)n)
			ncap *= 2;
		char *p = realloc(b->data, ncap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->data = p;
		b->cap = ncap;
	}
}

void mbuf_free(struct mbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void metrics_header(struct mbuf *b, const char *name, const char *type, const char *help)
{
	mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_u64(struct mbuf *b, const char *name, const char *labels, uint64_t v)
{
	if (labels && *labels)
		mbuf_printf(b, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
	else
		mbuf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

void metrics_i64(struct mbuf *b, const char *name, const char *labels, int64_t v)
{
	if (labels && *labels)
		mbuf_printf(b, "%s{%s} %lld\n", name, labels, (long long)v);
	else
		mbuf_printf(b, "%s %lld\n", name, (long long)v);
}

void metrics_counter(struct mbuf *b, const char *name, const char *help, uint64_t v)
{
	metrics_header(b, name, "counter", help);
	metrics_u64(b, name, NULL, v);
}

void metrics_gauge(struct mbuf *b, const char *name, const char *help, int64_t v)
{
	metrics_header(b, name, "gauge", help);
	metrics_i64(b, name, NULL, v);
}

uint64_t metrics_load_u64(const void *stats, size_t off)
{
	const _Atomic uint64_t *v = (const _Atomic uint64_t *)((const char *)stats + off);
	return atomic_load_explicit(v, memory_order_relaxed);
}

int64_t metrics_load_i64(const void *stats, size_t off)
{
	const _Atomic int64_t *v = (const _Atomic int64_t *)((const char *)stats + off);
	return atomic_load_explicit(v, memory_order_relaxed);
}

void metrics_histogram(struct mbuf *b, const char *name, const char *labels,
		       const struct histogram *h)
{
	uint64_t cum = 0;
	const char *sep = (labels && *labels) ? "," : "";
	const char *lab = labels ? labels : "";
	for (size_t i = 0; i <= METRICS_LAT_BUCKETS; i++) {
		cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		if (i < METRICS_LAT_BUCKETS)
			mbuf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep,
				    metrics_lat_bounds_s[i], (unsigned long long)cum);
		else
			mbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep,
				    (unsigned long long)cum);
	}
	double sum = (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6;
	uint64_t count = atomic_load_explicit(&h->count, memory_order_relaxed);
	if (*lab) {
		mbuf_printf(b, "%s_sum{%s} %.6f\n", name, lab, sum);
		mbuf_printf(b, "%s_count{%s} %llu\n", name, lab, (unsigned long long)count);
	} else {
		mbuf_printf(b, "%s_sum %.6f\n", name, sum);
		mbuf_printf(b, "%s_count %llu\n", name, (unsigned long long)count);
	}
}
