/* src/io/upstream_metrics.c - the upstream servers' and the per-worker upstream counters on /metrics. */
#include <stdio.h>

#include "nodedns/io/upstream.h"
#include "nodedns/util/metrics.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define LABEL_BYTES 160

/* Per-server counter families, one sample per server. */
static const struct metrics_field server_counters[] = {
	{ "nodedns_upstream_requests_total", "Queries sent to an upstream (attempts).",
	  offsetof(struct upstream_stats, queries) },
	{ "nodedns_upstream_responses_total", "Matching replies from an upstream.",
	  offsetof(struct upstream_stats, replies) },
	{ "nodedns_upstream_tcp_connects_total", "TCP connections made to an upstream.",
	  offsetof(struct upstream_stats, tcp_connects) },
	{ "nodedns_upstream_tc_retries_total", "UDP replies with TC=1 retried over TCP.",
	  offsetof(struct upstream_stats, tc_retries) },
	{ "nodedns_upstream_rcode_failovers_total",
	  "SERVFAIL/REFUSED replies from an upstream that sent the query on to the next one.",
	  offsetof(struct upstream_stats, rcode_failovers) },
	{ "nodedns_upstream_timeout_asides_total",
	  "Times a worker set an upstream aside after queries to it timed out in a row.",
	  offsetof(struct upstream_stats, timeout_asides) },
};

/* Samples of nodedns_upstream_failures_total per server: reason and counter. */
static const struct {
	const char *reason;
	size_t off;
} failures[] = {
	{ "timeout", offsetof(struct upstream_stats, timeouts) },
	{ "connection", offsetof(struct upstream_stats, conn_failures) },
	{ "bad_reply", offsetof(struct upstream_stats, bad_replies) },
};

static void server_label(char *lab, size_t cap, const struct upstream_server *s)
{
	snprintf(lab, cap, "upstream=\"%s\"", s->name);
}

void upstream_metrics_render(struct mbuf *b, const struct upstream_server *servers, size_t n)
{
	char lab[LABEL_BYTES];
	for (size_t k = 0; k < COUNT(server_counters); k++) {
		const struct metrics_field *f = &server_counters[k];
		metrics_header(b, f->name, "counter", f->help);
		for (size_t i = 0; i < n; i++) {
			server_label(lab, sizeof(lab), &servers[i]);
			metrics_u64(b, f->name, lab, metrics_load_u64(&servers[i].stats, f->off));
		}
	}
	metrics_header(b, "nodedns_upstream_failures_total", "counter",
		       "Failed upstream attempts, by reason.");
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < COUNT(failures); k++) {
			snprintf(lab, sizeof(lab), "upstream=\"%s\",reason=\"%s\"", servers[i].name,
				 failures[k].reason);
			metrics_u64(b, "nodedns_upstream_failures_total", lab,
				    metrics_load_u64(&servers[i].stats, failures[k].off));
		}
	metrics_header(b, "nodedns_upstream_connections", "gauge", "Open TCP connections to an upstream.");
	for (size_t i = 0; i < n; i++) {
		server_label(lab, sizeof(lab), &servers[i]);
		metrics_i64(b, "nodedns_upstream_connections", lab,
			    metrics_load_i64(&servers[i].stats, offsetof(struct upstream_stats, open_conns)));
	}
	metrics_header(b, "nodedns_upstream_set_aside", "gauge",
		       "Workers that have an upstream set aside for timeouts (asked only when no other is usable).");
	for (size_t i = 0; i < n; i++) {
		server_label(lab, sizeof(lab), &servers[i]);
		metrics_i64(b, "nodedns_upstream_set_aside", lab,
			    metrics_load_i64(&servers[i].stats, offsetof(struct upstream_stats, aside_workers)));
	}
	metrics_header(b, "nodedns_upstream_latency_seconds", "histogram",
		       "Time from sending a query to its matching reply, per upstream.");
	for (size_t i = 0; i < n; i++) {
		server_label(lab, sizeof(lab), &servers[i]);
		metrics_histogram(b, "nodedns_upstream_latency_seconds", lab, &servers[i].stats.latency);
	}
}

void upstream_worker_metrics_render(struct mbuf *b,
				    const struct upstream_worker_stats *const *per_worker, size_t n)
{
	int64_t inflight = 0;
	for (size_t i = 0; i < n; i++)
		inflight += metrics_load_i64(per_worker[i], offsetof(struct upstream_worker_stats, inflight));
	metrics_gauge(b, "nodedns_upstream_inflight", "Upstream queries in flight.", inflight);
}

void upstream_worker_metrics_render_dropped(struct mbuf *b,
					    const struct upstream_worker_stats *const *per_worker,
					    size_t n)
{
	uint64_t dropped = 0;
	for (size_t i = 0; i < n; i++)
		dropped += metrics_load_u64(per_worker[i],
					    offsetof(struct upstream_worker_stats, dropped_inflight));
	metrics_u64(b, METRICS_DROPPED_NAME, "reason=\"upstream_inflight\"", dropped);
}
