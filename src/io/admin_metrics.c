/* src/io/admin_metrics.c - the HTTP endpoints' counters on /metrics. */
#include "nodedns/io/admin.h"
#include "nodedns/util/metrics.h"

void admin_metrics_render(struct mbuf *b, const struct admin_stats *s)
{
	metrics_counter(b, "nodedns_health_failures_total", "Failed /health checks.",
			metrics_load_u64(s, offsetof(struct admin_stats, health_failures)));
	metrics_counter(b, "nodedns_admin_evicted_clients_total",
			"HTTP clients of /metrics or /health closed to make room for a new one.",
			metrics_load_u64(s, offsetof(struct admin_stats, evicted_conns)));
}
