/* src/dns/query_metrics.c - the query path's counters on /metrics, summed over the workers. */
#include <stdio.h>

#include "nodedns/dns/query.h"
#include "nodedns/util/metrics.h"

#define LABEL_BYTES 64

/* Labels of the by-enum counters, indexed by their enums (query.h). */
static const char *const type_label[QUERY_TYPE_SLOTS] = {
	[QUERY_TYPE_A] = "A",         [QUERY_TYPE_AAAA] = "AAAA", [QUERY_TYPE_SRV] = "SRV",
	[QUERY_TYPE_PTR] = "PTR",     [QUERY_TYPE_TXT] = "TXT",   [QUERY_TYPE_CNAME] = "CNAME",
	[QUERY_TYPE_OTHER] = "other", [QUERY_TYPE_ANY] = "ANY",
};
static const char *const rcode_label[QUERY_RCODE_SLOTS] = {
	[QUERY_RCODE_NOERROR] = "NOERROR",   [QUERY_RCODE_FORMERR] = "FORMERR",
	[QUERY_RCODE_SERVFAIL] = "SERVFAIL", [QUERY_RCODE_NXDOMAIN] = "NXDOMAIN",
	[QUERY_RCODE_NOTIMP] = "NOTIMP",     [QUERY_RCODE_REFUSED] = "REFUSED",
	[QUERY_RCODE_OTHER] = "other",
};
static const char *const zone_label[QUERY_ZONE_SLOTS] = {
	[QUERY_ZONE_CLUSTER] = "cluster",
	[QUERY_ZONE_FORWARD] = "forward",
};
static const char *const proto_label[2] = { [QUERY_UDP] = "udp", [QUERY_TCP] = "tcp" };

/* The families of one array counter: element i has label key="labels[i]". */
struct query_array {
	const char *name, *help, *key;
	const char *const *labels;
	size_t nslots;
	size_t off; /* offsetof the array's first element */
};

#define U64 sizeof(_Atomic uint64_t)

static const struct query_array arrays[] = {
	{ "nodedns_requests_total", "DNS queries received, by transport.", "proto", proto_label, 2,
	  offsetof(struct query_stats, requests) },
	{ "nodedns_requests_type_total", "DNS queries by query type.", "type", type_label,
	  QUERY_TYPE_SLOTS, offsetof(struct query_stats, by_type) },
	{ "nodedns_requests_zone_total",
	  "DNS queries by where they were answered from: the cluster zone or forwarding.", "zone",
	  zone_label, QUERY_ZONE_SLOTS, offsetof(struct query_stats, by_zone) },
	{ "nodedns_responses_total", "DNS responses sent, by rcode.", "rcode", rcode_label,
	  QUERY_RCODE_SLOTS, offsetof(struct query_stats, responses) },
};

static const struct metrics_field counters[] = {
	{ "nodedns_cluster_answers_total", "Answers from the cluster store.",
	  offsetof(struct query_stats, cluster_answers) },
	{ "nodedns_cache_answers_total", "Answers from the cache.",
	  offsetof(struct query_stats, cache_answers) },
	{ "nodedns_stale_answers_total", "Expired answers served because every upstream failed (RFC 8767).",
	  offsetof(struct query_stats, stale_answers) },
	{ "nodedns_coalesced_total", "Queries that joined an identical question already in flight.",
	  offsetof(struct query_stats, coalesced) },
	{ "nodedns_autopath_walks_total",
	  "Search-path expansions from known pods that autopath walked (--autopath).",
	  offsetof(struct query_stats, autopath_walks) },
	{ "nodedns_autopath_answers_total",
	  "Autopath walks answered with a CNAME to the first name that exists.",
	  offsetof(struct query_stats, autopath_answers) },
	{ "nodedns_autopath_root_total",
	  "Autopath walks that ended at the name as asked (found there or nowhere).",
	  offsetof(struct query_stats, autopath_root) },
	{ "nodedns_autopath_steps_total", "Names that autopath walks looked up.",
	  offsetof(struct query_stats, autopath_steps) },
	{ "nodedns_prefetches_total", "Cache entries refreshed before they expired.",
	  offsetof(struct query_stats, prefetches) },
	{ "nodedns_upstream_exhausted_total", "Queries answered SERVFAIL because every upstream failed.",
	  offsetof(struct query_stats, upstream_failures) },
	{ "nodedns_truncated_total", "UDP answers sent with TC=1.", offsetof(struct query_stats, truncated) },
	{ "nodedns_cluster_fallback_total",
	  "Cluster-zone queries forwarded to --cluster-fallback before the first sync.",
	  offsetof(struct query_stats, fallback_queries) },
	{ "nodedns_cluster_unsynced_servfail_total",
	  "Cluster-zone queries answered SERVFAIL before the first sync.",
	  offsetof(struct query_stats, unsynced_servfail) },
};

/* Samples of nodedns_dropped_total: the reason label and the counter. */
static const struct {
	const char *labels;
	size_t off;
} dropped[] = {
	{ "reason=\"malformed\"", offsetof(struct query_stats, dropped_malformed) },
	{ "reason=\"waiters\"", offsetof(struct query_stats, dropped_waiters) },
	{ "reason=\"inflight\"", offsetof(struct query_stats, dropped_inflight) },
	{ "reason=\"acl\"", offsetof(struct query_stats, refused_acl) },
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t sum_u64(const struct query_stats *const *per_worker, size_t n, size_t off)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += metrics_load_u64(per_worker[i], off);
	return s;
}

void query_metrics_render(struct mbuf *b, const struct query_stats *const *per_worker, size_t n)
{
	char lab[LABEL_BYTES];
	for (size_t k = 0; k < COUNT(arrays); k++) {
		const struct query_array *a = &arrays[k];
		metrics_header(b, a->name, "counter", a->help);
		for (size_t i = 0; i < a->nslots; i++) {
			snprintf(lab, sizeof(lab), "%s=\"%s\"", a->key, a->labels[i]);
			metrics_u64(b, a->name, lab, sum_u64(per_worker, n, a->off + i * U64));
		}
	}
	for (size_t k = 0; k < COUNT(counters); k++)
		metrics_counter(b, counters[k].name, counters[k].help,
				sum_u64(per_worker, n, counters[k].off));
	int64_t pending = 0;
	for (size_t i = 0; i < n; i++)
		pending += metrics_load_i64(per_worker[i], offsetof(struct query_stats, pending));
	metrics_gauge(b, "nodedns_pending_questions", "Distinct questions waiting for an upstream.",
		      pending);
}

void query_metrics_render_dropped(struct mbuf *b, const struct query_stats *const *per_worker,
				  size_t n)
{
	for (size_t k = 0; k < COUNT(dropped); k++)
		metrics_u64(b, METRICS_DROPPED_NAME, dropped[k].labels,
			    sum_u64(per_worker, n, dropped[k].off));
}
