/* src/io/k8s_watch_metrics.c - the API watch's counters on /metrics. */
#include "nodedns/io/k8s_watch.h"
#include "nodedns/util/metrics.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct metrics_field counters[] = {
	{ "nodedns_watch_restarts_total", "Watch streams restarted.",
	  offsetof(struct k8s_watch_stats, watch_restarts) },
	{ "nodedns_watch_relists_total", "Relists after 410 Gone.",
	  offsetof(struct k8s_watch_stats, relists_410) },
	{ "nodedns_watch_events_total", "Watch events received.", offsetof(struct k8s_watch_stats, events) },
	{ "nodedns_watch_errors_total", "API errors (HTTP, TLS, transport).",
	  offsetof(struct k8s_watch_stats, errors) },
	{ "nodedns_watch_throttled_total", "429 responses from the API.",
	  offsetof(struct k8s_watch_stats, throttled_429) },
	{ "nodedns_watch_unauthorized_total", "401 responses from the API.",
	  offsetof(struct k8s_watch_stats, unauthorized_401) },
	{ "nodedns_watch_list_loops_total",
	  "Lists abandoned for a repeated continue token or too many pages.",
	  offsetof(struct k8s_watch_stats, list_loops) },
	{ "nodedns_watch_list_timeouts_total",
	  "Lists ended by their deadline or the minimum transfer rate.",
	  offsetof(struct k8s_watch_stats, list_timeouts) },
};

void k8s_watch_metrics_render(struct mbuf *b, const struct k8s_watch_stats *s)
{
	for (size_t k = 0; k < COUNT(counters); k++)
		metrics_counter(b, counters[k].name, counters[k].help, metrics_load_u64(s, counters[k].off));
	metrics_counter(b, "nodedns_watch_dropped_events_total", "Watch events over the size bound or malformed.",
			metrics_load_u64(s, offsetof(struct k8s_watch_stats, oversized_events)) +
				metrics_load_u64(s, offsetof(struct k8s_watch_stats, bad_events)));
}
