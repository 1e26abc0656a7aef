/* src/io/k8s_watch_metrics.c - the API watch's counters on /metrics. */
#include "nodedns/io/k8s_watch.h"
#include "nodedns/util/metrics.h"

#include <stdio.h>

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct metrics_field counters[] = {
	{ "nodedns_watch_restarts_total", "Watch streams restarted.",
	  offsetof(struct k8s_watch_stats, watch_restarts) },
	{ "nodedns_watch_expired_total",
	  "410 Gone answers and Expired ERROR events (each starts a relist).",
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
	{ "nodedns_watch_streaming_lists_total",
	  "Streaming lists (WatchList) completed by their initial-events-end bookmark.",
	  offsetof(struct k8s_watch_stats, watch_lists) },
	{ "nodedns_watch_streaming_list_fallbacks_total",
	  "Streaming lists the API server refused or ignored (paginated lists follow).",
	  offsetof(struct k8s_watch_stats, watch_list_fallbacks) },
	{ "nodedns_watch_deadlines_total",
	  "Watches still open 30 s past their timeoutSeconds, ended and resumed.",
	  offsetof(struct k8s_watch_stats, watch_deadlines) },
	{ "nodedns_watch_interrupted_total",
	  "Watch streams cut (reset, GOAWAY, truncated, closed, silent), resumed.",
	  offsetof(struct k8s_watch_stats, interrupted) },
};

/* By resource: what each watched collection costs the API server. */
static const char *const res_names[K8S_WATCH_RESOURCES] = {
	[K8S_SERVICE] = "services",
	[K8S_ENDPOINTSLICE] = "endpointslices",
	[K8S_NAMESPACE] = "namespaces",
	[K8S_KIND_COUNT] = "pods", /* --autopath only */
};

static const struct metrics_field res_counters[] = {
	{ "nodedns_watch_requests_total", "API requests sent (list pages, watches), by resource.",
	  offsetof(struct k8s_watch_res_stats, requests) },
	{ "nodedns_watch_bytes_total",
	  "API response bytes received (headers and inflated body), by resource.",
	  offsetof(struct k8s_watch_res_stats, bytes) },
	{ "nodedns_watch_relists_total",
	  "Lists after the first one (410 Gone, an oversized event, a failed list), by resource.",
	  offsetof(struct k8s_watch_res_stats, relists) },
	{ "nodedns_watch_reconnects_total",
	  "Watches started again after a cut or a failed attempt, by resource.",
	  offsetof(struct k8s_watch_res_stats, reconnects) },
};

void k8s_watch_metrics_render(struct mbuf *b, const struct k8s_watch_stats *s)
{
	for (size_t k = 0; k < COUNT(counters); k++)
		metrics_counter(b, counters[k].name, counters[k].help, metrics_load_u64(s, counters[k].off));
	metrics_counter(b, "nodedns_watch_dropped_events_total", "Watch events over the size bound or malformed.",
			metrics_load_u64(s, offsetof(struct k8s_watch_stats, oversized_events)) +
				metrics_load_u64(s, offsetof(struct k8s_watch_stats, bad_events)));
	for (size_t k = 0; k < COUNT(res_counters); k++) {
		metrics_header(b, res_counters[k].name, "counter", res_counters[k].help);
		for (int i = 0; i < K8S_WATCH_RESOURCES; i++) {
			char label[64];
			snprintf(label, sizeof(label), "resource=\"%s\"", res_names[i]);
			metrics_u64(b, res_counters[k].name, label,
				    metrics_load_u64(&s->res[i], res_counters[k].off));
		}
	}
}
