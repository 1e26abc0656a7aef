/* include/nodedns/dns/autopath.h - answer a pod's search-path expansion in one round trip.
 *
 * A pod's /etc/resolv.conf (kubelet, dnsPolicy ClusterFirst) says
 *   search <ns>.svc.<zone> svc.<zone> <zone> <node's search domains>
 *   options ndots:5
 * so a lookup of `www.example.com` (fewer than 5 dots) asks
 * `www.example.com.<ns>.svc.<zone>` first, then each other search name, and
 * only last `www.example.com.`, each for A and AAAA. With --autopath, when
 * the cluster zone answers NXDOMAIN to `X.<ns>.svc.<zone>` and the query
 * comes from a pod of namespace <ns> on this node (cluster/pod_table.h), the
 * worker walks that same path itself:
 *
 *   X.svc.<zone>, X.<zone>         from the cluster snapshot (no upstream)
 *   X.<search domain>, ..., X.     through the cache and the upstreams
 *
 * and answers the query with a CNAME from the asked name to the first name
 * where glibc would stop, followed by that name's answer records, so glibc
 * stops at its first question. glibc asks A and AAAA together and stops where
 * either has records: a cluster name counts when it has records of the asked
 * type or (A/AAAA) of the other one, an empty one is passed over; a name from
 * the upstreams counts when it exists (NOERROR): its other type would cost
 * another upstream query. When no
 * name exists, the answer is a CNAME to `X.` with X.'s rcode (NXDOMAIN): the
 * client goes on with its own search, now answered from the cache. A step
 * that fails (SERVFAIL, every upstream down) ends the walk with SERVFAIL, on
 * which glibc also goes on with its search: a failure never hides a name.
 * An ExternalName service found on the way is not chased through the walk:
 * the query gets its plain NXDOMAIN and the client's next question finds it.
 *
 * The walk itself is internal to the dns layer (src/dns/autopath.c, hooked in
 * query.c); this header is the configuration main builds once.
 */
#ifndef NODEDNS_DNS_AUTOPATH_H
#define NODEDNS_DNS_AUTOPATH_H

#include <stddef.h>
#include <stdint.h>

#include "nodedns/dns/dnsmsg.h"

/* glibc reads at most 6 search domains before 2.26 and 32 since; kubelet
 * passes the node's on (it warns past 32). */
#define AUTOPATH_MAX_SEARCH 32
#define AUTOPATH_MAX_STEPS (AUTOPATH_MAX_SEARCH + 3) /* svc.zone, zone, searches, root */

struct autopath_step {
	uint8_t name[DNS_NAME_MAX_BYTES]; /* lower-case wire form, root label included */
	uint8_t len;
};

/** Shared, read-only after start (query_env.autopath). */
struct autopath_config {
	uint8_t ns_tail[DNS_NAME_MAX_BYTES]; /* "svc.<zone>" in wire form: what follows <ns> */
	size_t ns_tail_len;
	struct autopath_step steps[AUTOPATH_MAX_STEPS];
	unsigned nsteps;
	uint32_t ttl_s; /* TTL of the CNAME (the cluster TTL: it depends on the pod table) */
};

/**
 * Fill @p cfg for cluster domain @p zone (lower-case, no trailing dot) and
 * the node's search domains @p search (@p nsearch of them, text, trailing dot
 * allowed; names under the cluster zone and repeats are kept: glibc asks them
 * as written). @return 0, or -EINVAL when @p zone or a search domain is not a
 * name or there are more than AUTOPATH_MAX_SEARCH.
 */
int autopath_config_init(struct autopath_config *cfg, const char *zone, const char *const *search,
			 size_t nsearch, uint32_t ttl_s);

#endif
