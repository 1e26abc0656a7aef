/* src/io/server_metrics.c - the listeners' counters on /metrics, summed over the workers. */
#include "nodedns/io/server.h"
#include "nodedns/util/metrics.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Samples of METRICS_DROPPED_NAME: the reason label and the counter. */
static const struct {
	const char *labels;
	size_t off;
} dropped[] = {
	{ "reason=\"udp_send_queue\"", offsetof(struct server_stats, udp_sends_dropped) },
	{ "reason=\"tcp_clients\"", offsetof(struct server_stats, tcp_rejected) },
	{ "reason=\"tcp_slow_reader\"", offsetof(struct server_stats, tcp_slow_closed) },
	{ "reason=\"tcp_bad_frame\"", offsetof(struct server_stats, tcp_bad_frames) },
	{ "reason=\"tcp_idle\"", offsetof(struct server_stats, tcp_idle_closed) },
	{ "reason=\"tcp_evicted\"", offsetof(struct server_stats, tcp_evicted) },
};

static const struct metrics_field counters[] = {
	{ "nodedns_tcp_connections_total", "Client TCP connections accepted.",
	  offsetof(struct server_stats, tcp_accepted) },
};

static const struct metrics_field gauges[] = {
	{ "nodedns_tcp_connections", "Open client TCP connections.",
	  offsetof(struct server_stats, tcp_open) },
};

static uint64_t sum_u64(const struct server_stats *const *per_worker, size_t n, size_t off)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += metrics_load_u64(per_worker[i], off);
	return s;
}

static int64_t sum_i64(const struct server_stats *const *per_worker, size_t n, size_t off)
{
	int64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += metrics_load_i64(per_worker[i], off);
	return s;
}

void server_metrics_render(struct mbuf *b, const struct server_stats *const *per_worker, size_t n)
{
	for (size_t k = 0; k < COUNT(gauges); k++)
		metrics_gauge(b, gauges[k].name, gauges[k].help, sum_i64(per_worker, n, gauges[k].off));
	for (size_t k = 0; k < COUNT(counters); k++)
		metrics_counter(b, counters[k].name, counters[k].help,
				sum_u64(per_worker, n, counters[k].off));
}

void server_metrics_render_dropped(struct mbuf *b, const struct server_stats *const *per_worker,
				   size_t n)
{
	for (size_t k = 0; k < COUNT(dropped); k++)
		metrics_u64(b, METRICS_DROPPED_NAME, dropped[k].labels,
			    sum_u64(per_worker, n, dropped[k].off));
}
