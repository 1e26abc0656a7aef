/* src/cluster/k8s_store_metrics.c - the cluster store's counts on /metrics. */
#include <string.h>

#include "nodedns/cluster/k8s_store.h"
#include "nodedns/util/metrics.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A plain (not atomic) uint64_t of struct k8s_store_stats, a copy. */
static uint64_t field(const struct k8s_store_stats *s, size_t off)
{
	uint64_t v;
	memcpy(&v, (const char *)s + off, sizeof(v));
	return v;
}

/* nodedns_cluster_objects by kind, indexed by enum k8s_kind. */
static const struct {
	const char *labels;
	size_t off;
} objects[K8S_KIND_COUNT] = {
	[K8S_SERVICE] = { "kind=\"service\"", offsetof(struct k8s_store_stats, services) },
	[K8S_ENDPOINTSLICE] = { "kind=\"endpointslice\"", offsetof(struct k8s_store_stats, endpointslices) },
	[K8S_NAMESPACE] = { "kind=\"namespace\"", offsetof(struct k8s_store_stats, namespaces) },
};

static const struct metrics_field counters[] = {
	{ "nodedns_cluster_events_total", "Object changes applied to the store.",
	  offsetof(struct k8s_store_stats, events_applied) },
	{ "nodedns_cluster_events_rejected_total", "Malformed objects rejected.",
	  offsetof(struct k8s_store_stats, events_rejected) },
};

void k8s_store_metrics_render(struct mbuf *b, const struct k8s_store_stats *s, uint64_t snapshots)
{
	metrics_header(b, "nodedns_cluster_objects", "gauge", "Objects in the cluster store, by kind.");
	for (size_t k = 0; k < COUNT(objects); k++)
		metrics_u64(b, "nodedns_cluster_objects", objects[k].labels, field(s, objects[k].off));
	for (size_t k = 0; k < COUNT(counters); k++)
		metrics_counter(b, counters[k].name, counters[k].help, field(s, counters[k].off));
	metrics_counter(b, "nodedns_cluster_snapshots_total", "Snapshots published to the workers.",
			snapshots);
	metrics_header(b, "nodedns_cluster_addresses", "gauge",
		       "Ready endpoint addresses in the cluster store.");
	metrics_u64(b, "nodedns_cluster_addresses", NULL, s->addresses);
	metrics_header(b, "nodedns_cluster_bytes", "gauge",
		       "Bytes the cluster zone holds by its own count, by part: the store's "
		       "objects and indexes, the last snapshot's records and its maps.");
	metrics_u64(b, "nodedns_cluster_bytes", "part=\"objects\"", s->bytes_objects);
	metrics_u64(b, "nodedns_cluster_bytes", "part=\"records\"", s->bytes_records);
	metrics_u64(b, "nodedns_cluster_bytes", "part=\"maps\"", s->bytes_maps);
}
